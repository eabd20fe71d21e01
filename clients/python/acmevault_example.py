#!/usr/bin/env python3
"""A short acmevault client in Python: creates a tenant, issues a certificate for a CSR made
here (the key never leaves this program) and verifies the chain against the CA's root.

It uses Debian's python3-grpcio and python3-protobuf with code generated from proto/ by the
system protoc (see python_client_test.py, which generates it and runs this program):

  protoc -I proto --python_out=GEN --grpc_python_out=GEN \\
      --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin proto/acmevault/v1/*.proto \\
      proto/google/rpc/status.proto
  PYTHONPATH=GEN python3 acmevault_example.py --server 127.0.0.1:PORT \\
      --token-file BOOTSTRAP_TOKEN --root-url https://127.0.0.1:MGMT/roots/0 --root-ca CA.pem

The token file holds a platform-admin token. Exit status 0 when the chain verifies.
"""
import argparse
import os
import ssl
import subprocess
import sys
import tempfile
import urllib.request
import uuid

import grpc
from acmevault.v1 import account_service_pb2, account_service_pb2_grpc
from acmevault.v1 import admin_service_pb2, admin_service_pb2_grpc, common_pb2
from acmevault.v1 import certificate_service_pb2, certificate_service_pb2_grpc


def bearer(token):
    return [("authorization", "Bearer " + token)]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="acmevaultd's gRPC address, HOST:PORT")
    p.add_argument("--token-file", required=True, help="a platform-admin token")
    p.add_argument("--root-url", required=True, help="the CA's root (Pebble: MGMT/roots/0)")
    p.add_argument("--root-ca", help="PEM that verifies --root-url's TLS certificate")
    p.add_argument("--tenant", default="py-%d" % os.getpid())
    args = p.parse_args()

    root_token = open(args.token_file).read().strip()
    channel = grpc.insecure_channel(args.server)
    admin = admin_service_pb2_grpc.AdminServiceStub(channel)
    accounts = account_service_pb2_grpc.AccountServiceStub(channel)
    certs = certificate_service_pb2_grpc.CertificateServiceStub(channel)

    tenant = admin.CreateTenant(
        admin_service_pb2.CreateTenantRequest(
            name=args.tenant, allowed_identifiers=["*.%s.example" % args.tenant]),
        metadata=bearer(root_token), timeout=30)
    print("tenant", tenant.name, "allowed", list(tenant.allowed_identifiers))

    def token(role):
        return admin.CreateToken(
            admin_service_pb2.CreateTokenRequest(tenant=tenant.name, role=role,
                                                 description="python example"),
            metadata=bearer(root_token), timeout=30).token

    admin_token, host_token = token(common_pb2.ROLE_ADMIN), token(common_pb2.ROLE_HOST)
    account = accounts.CreateAccount(
        account_service_pb2.CreateAccountRequest(terms_of_service_agreed=True),
        metadata=bearer(admin_token), timeout=60)
    print("account", account.account_url)

    name = "www.%s.example" % tenant.name
    with tempfile.TemporaryDirectory() as tmp:
        key, csr = os.path.join(tmp, "key.pem"), os.path.join(tmp, "csr.der")
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-subj", "/CN=" + name,
                        "-addext", "subjectAltName=DNS:" + name, "-outform", "DER", "-out", csr],
                       check=True, capture_output=True)
        request = certificate_service_pb2.IssueCertificateRequest(
            identifiers=[name], csr=open(csr, "rb").read(),
            idempotency_key=uuid.uuid4().hex, wait_seconds=20)
        # One idempotency key for every attempt: a repeated call joins the same order.
        for _ in range(15):
            issued = certs.IssueCertificate(request, metadata=bearer(host_token), timeout=40)
            if issued.HasField("certificate"):
                break
            if issued.order.state == certificate_service_pb2.ORDER_STATE_INVALID:
                sys.exit("order %s failed: %s" % (issued.order.id, issued.order.error))
        else:
            sys.exit("no certificate after 15 attempts")
        cert = issued.certificate
        print("certificate", cert.serial, "for", list(cert.identifiers))

        context = ssl.create_default_context(cafile=args.root_ca)
        root = urllib.request.urlopen(args.root_url, context=context, timeout=10).read()
        blocks = cert.chain_pem.split("-----END CERTIFICATE-----")
        leaf = blocks[0] + "-----END CERTIFICATE-----\n"
        paths = {"root.pem": root.decode(), "leaf.pem": leaf, "chain.pem": cert.chain_pem}
        for file, text in paths.items():
            with open(os.path.join(tmp, file), "w") as f:
                f.write(text)
        verify = subprocess.run(
            ["openssl", "verify", "-CAfile", os.path.join(tmp, "root.pem"), "-untrusted",
             os.path.join(tmp, "chain.pem"), os.path.join(tmp, "leaf.pem")],
            capture_output=True, text=True)
        if verify.returncode != 0:
            sys.exit("chain does not verify: " + verify.stdout + verify.stderr)
        # The certificate is for the key made here.
        pub = lambda args_: subprocess.run(args_, check=True, capture_output=True).stdout
        if pub(["openssl", "x509", "-in", os.path.join(tmp, "leaf.pem"), "-pubkey", "-noout"]) != \
                pub(["openssl", "pkey", "-in", key, "-pubout"]):
            sys.exit("the certificate is not for the CSR's key")
    print("chain verified against the CA's root")


if __name__ == "__main__":
    main()
