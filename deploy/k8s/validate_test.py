#!/usr/bin/python3
"""Tests of the manifests under deploy/k8s: each one against the Kubernetes API schema
(validate.py), the properties docs/operations.md promises of them, and that the check itself
rejects what it must (a misspelt field, a wrong type, a missing required field).

Run: validate_test.py [--junit FILE]  (Bazel: //deploy/k8s:manifests_test, which writes its
cases to $XML_OUTPUT_FILE).
"""
import copy
import os
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import validate  # noqa: E402


def load(path):
    with open(os.path.join(HERE, path)) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def deployment():
    return load("deployment.yaml")[0]


class ManifestsAreValid(unittest.TestCase):
    def test_every_manifest_matches_the_api_schema(self):
        errors, objects = validate.validate_tree(HERE)
        self.assertEqual(errors, [])
        self.assertGreaterEqual(objects, 14)


class ManifestsSayWhatTheDocsPromise(unittest.TestCase):
    def containers(self, doc):
        return doc["spec"]["template"]["spec"]["containers"]

    def test_deployment_has_two_replicas_and_native_grpc_probes(self):
        d = deployment()
        self.assertGreaterEqual(d["spec"]["replicas"], 2)
        (c,) = self.containers(d)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            self.assertEqual(c[probe]["grpc"]["port"], ports["health"], probe)
        text = load("configmap.yaml")[0]["data"]["config.textproto"]
        self.assertIn('health_listen_address: "0.0.0.0:%d"' % ports["health"], text)
        self.assertIn('grpc_listen_address: "0.0.0.0:%d"' % ports["grpc"], text)

    def test_every_container_is_locked_down_and_bounded(self):
        docs = [deployment(), load("migrate-job.yaml")[0],
                load("example/deployment.yaml")[0]]
        for doc in docs:
            pod = doc["spec"]["template"]["spec"]
            self.assertTrue(pod["securityContext"]["runAsNonRoot"], doc["metadata"]["name"])
            self.assertFalse(pod.get("automountServiceAccountToken", True))
            for c in pod["containers"]:
                where = "%s/%s" % (doc["metadata"]["name"], c["name"])
                sc = c["securityContext"]
                self.assertTrue(sc["readOnlyRootFilesystem"], where)
                self.assertFalse(sc["allowPrivilegeEscalation"], where)
                self.assertEqual(sc["capabilities"]["drop"], ["ALL"], where)
                self.assertTrue(c["resources"]["requests"], where)
                self.assertTrue(c["resources"]["limits"], where)

    def test_secret_volumes_are_readable_by_the_pods_group_only(self):
        # Secret files belong to root and the pod's fsGroup: a non-root user reads them
        # through the group (0440), and nobody else may.
        for path in ("deployment.yaml", "example/deployment.yaml"):
            pod = load(path)[0]["spec"]["template"]["spec"]
            self.assertIn("fsGroup", pod["securityContext"], path)
            for v in pod["volumes"]:
                if "secret" in v:
                    self.assertEqual(v["secret"]["defaultMode"], 0o440, (path, v["name"]))

    def test_pdb_service_secret_policy_and_job_exist(self):
        kinds = set()
        for name in os.listdir(HERE):
            if name.endswith(".yaml") and name != "kustomization.yaml":
                kinds.update(d["kind"] for d in load(name))
        self.assertLessEqual({"Deployment", "PodDisruptionBudget", "Service", "ConfigMap",
                              "Secret", "NetworkPolicy", "Job"}, kinds)
        service_ports = {p["name"] for p in load("service.yaml")[0]["spec"]["ports"]}
        self.assertLessEqual({"grpc", "http01"}, service_ports)

    def test_example_runs_the_agent_as_a_sidecar_sharing_an_emptydir(self):
        pod = load("example/deployment.yaml")[0]["spec"]["template"]["spec"]
        agent = [c for c in pod["containers"] if c["name"] == "acmevault-agent"][0]
        env = {e["name"]: e.get("value") for e in agent["env"]}
        out_dir = env["ACMEVAULT_OUT_DIR"]
        for name in ("ACMEVAULT_SERVER", "ACMEVAULT_TOKEN_FILE", "ACMEVAULT_NAMES",
                     "ACMEVAULT_KEY_TYPE", "ACMEVAULT_AGENT_LISTEN"):
            self.assertIn(name, env)
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        mounts = {c["name"]: {m["name"] for m in c["volumeMounts"] if m["mountPath"] == out_dir}
                  for c in pod["containers"]}
        shared = set.intersection(*mounts.values()) & empty_dirs
        self.assertEqual(len(pod["containers"]), 2)
        self.assertTrue(shared, "no emptyDir mounted at %s in both containers" % out_dir)


class TheCheckRejectsWhatItMust(unittest.TestCase):
    def errors_of(self, doc):
        return validate.validate_document(doc, "test")

    def test_a_misspelt_field_fails(self):
        d = deployment()
        d["spec"]["replica"] = d["spec"].pop("replicas")
        self.assertEqual(self.errors_of(d),
                         ["test:Deployment.spec.replica: unknown field (not in V1DeploymentSpec)"])
        d = deployment()
        c = d["spec"]["template"]["spec"]["containers"][0]
        c["securityContext"]["readOnlyRootFileSystem"] = True
        self.assertIn("readOnlyRootFileSystem: unknown field", "\n".join(self.errors_of(d)))
        d = deployment()
        c = d["spec"]["template"]["spec"]["containers"][0]
        c["readinessProbe"]["grpc"]["prot"] = 1
        self.assertIn("grpc.prot: unknown field (not in V1GRPCAction)",
                      "\n".join(self.errors_of(d)))

    def test_a_wrong_type_fails(self):
        d = deployment()
        d["spec"]["replicas"] = "two"
        self.assertEqual(self.errors_of(d),
                         ["test:Deployment.spec.replicas: expected int, got 'two'"])
        d = deployment()
        d["spec"]["template"]["spec"]["containers"][0]["args"] = "serve"
        self.assertIn("containers[0].args: expected a list", "\n".join(self.errors_of(d)))

    def test_a_missing_required_field_fails(self):
        d = deployment()
        del d["spec"]["template"]["spec"]["containers"][0]["name"]
        self.assertEqual(self.errors_of(d), [
            "test:Deployment.spec.template.spec.containers[0].name: required field missing "
            "(V1Container)"])
        d = deployment()
        del d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["grpc"]["port"]
        self.assertIn("livenessProbe.grpc.port: required field missing",
                      "\n".join(self.errors_of(d)))

    def test_an_unknown_kind_fails(self):
        d = deployment()
        d["apiVersion"] = "apps/v1beta1"
        self.assertEqual(len(self.errors_of(d)), 1)

    def test_an_unlisted_or_missing_resource_fails(self):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
                yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1",
                                "kind": "Kustomization", "resources": ["gone.yaml"]}, f)
            with open(os.path.join(tmp, "extra.yaml"), "w") as f:
                yaml.safe_dump(copy.deepcopy(load("service.yaml")[0]), f)
            errors, _ = validate.validate_tree(tmp)
        self.assertEqual(len(errors), 2, errors)
        self.assertIn("gone.yaml does not exist", errors[0])
        self.assertIn("extra.yaml is not listed", errors[1])


def write_junit(result, cases, path):
    failed = {t.id(): m for t, m in result.failures + result.errors}
    suite = ET.Element("testsuite", name="deploy.k8s", tests=str(len(cases)),
                       failures=str(len(failed)))
    for case in cases:
        cls, name = case.id().rsplit(".", 1)
        el = ET.SubElement(suite, "testcase", classname=cls, name=name)
        if case.id() in failed:
            ET.SubElement(el, "failure", message="failed").text = failed[case.id()]
    root = ET.Element("testsuites")
    root.append(suite)
    ET.ElementTree(root).write(path)


def main():
    junit = os.environ.get("XML_OUTPUT_FILE")
    if "--junit" in sys.argv:
        junit = sys.argv[sys.argv.index("--junit") + 1]
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromModule(sys.modules[__name__])
    cases = []
    stack = [suite]
    while stack:
        s = stack.pop()
        for t in s:
            (stack.append(t) if isinstance(t, unittest.TestSuite) else cases.append(t))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if junit:
        write_junit(result, cases, junit)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
