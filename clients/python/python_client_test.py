#!/usr/bin/env python3
"""Runs acmevault_example.py against a real acmevaultd of the e2e service (tests/run prepares it
and passes its config as ACMEVAULT_E2E_CONFIG): generates the Python code from proto/ with the
system protoc and grpc_python_plugin, starts acmevaultd (holding the service directory's lock,
as tests/e2e/e2e_fixture.h does, since the service has one HTTP-01 port), runs the example and
stops acmevaultd. Skips without the stack, fails instead under ACMEVAULT_REQUIRE_STACK=1.
Writes a JUnit file to XML_OUTPUT_FILE so the run counts its case."""
import fcntl
import glob
import json
import os
import subprocess
import sys
import time


def junit(ok, message=""):
    path = os.environ.get("XML_OUTPUT_FILE")
    if not path:
        return
    failure = "" if ok else '<failure message="failed"><![CDATA[%s]]></failure>' % message
    with open(path, "w") as f:
        f.write('<?xml version="1.0"?><testsuites><testsuite name="PythonClient" tests="1">'
                '<testcase classname="PythonClient" name="CreatesATenantIssuesAndVerifies">%s'
                '</testcase></testsuite></testsuites>\n' % failure)


def fail(message):
    junit(False, message)
    sys.exit(message)


def main():
    config = os.environ.get("ACMEVAULT_E2E_CONFIG")
    if not config:
        if os.environ.get("ACMEVAULT_REQUIRE_STACK") == "1":
            fail("ACMEVAULT_E2E_CONFIG is not set: the local stack did not start (see tests/run)")
        print("ACMEVAULT_E2E_CONFIG is not set; run tests/run for this test")
        return
    tmp = os.environ["TEST_TMPDIR"]
    gen = os.path.join(tmp, "gen")
    os.makedirs(gen, exist_ok=True)
    protos = sorted(glob.glob("proto/acmevault/v1/*.proto")) + ["proto/google/rpc/status.proto"]
    subprocess.run(["protoc", "-Iproto", "--python_out=" + gen, "--grpc_python_out=" + gen,
                    "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"] + protos,
                   check=True)

    service_dir = os.path.dirname(config)
    lock = open(os.path.join(service_dir, "daemon.lock"), "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    ready = os.path.join(tmp, "acmevaultd.ready")
    log = open(os.path.join(tmp, "acmevaultd.log"), "w")
    daemon = subprocess.Popen(["service/acmevaultd", "serve", "--config=" + config,
                               "--ready_file=" + ready], stderr=log)
    try:
        for _ in range(300):
            if os.path.exists(ready) or daemon.poll() is not None:
                break
            time.sleep(0.05)
        if not os.path.exists(ready):
            fail("acmevaultd did not start: " + open(log.name).read())
        port = json.load(open(ready))["grpc_port"]
        env = dict(os.environ, PYTHONPATH=gen)
        run = subprocess.run(
            [sys.executable, "clients/python/acmevault_example.py",
             "--server", "127.0.0.1:%d" % port,
             "--token-file", os.path.join(service_dir, "bootstrap-token"),
             "--root-url", os.environ["ACMEVAULT_PEBBLE_E2E_MANAGEMENT"] + "/roots/0",
             "--root-ca", os.environ["ACMEVAULT_PEBBLE_TLS_CA"]],
            env=env, capture_output=True, text=True, timeout=240)
        print(run.stdout, run.stderr)
        if run.returncode != 0 or "chain verified" not in run.stdout:
            fail("the example failed:\n" + run.stdout + run.stderr)
        junit(True)
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)


if __name__ == "__main__":
    main()
