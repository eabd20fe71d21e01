#!/usr/bin/python3
"""Checks Kubernetes manifests against the Kubernetes API schema, strictly.

Usage: validate.py DIR...   (every *.yaml under each DIR; exit status 1 on any error)

The schema is the one Debian's python3-kubernetes carries: a model class per API type, whose
`openapi_types` and `attribute_map` give each field's JSON name and type. The client's own
deserialiser ignores fields it does not know; this walker does not: an unknown field (say, a
misspelt one), a value of the wrong type, or a missing required field is an error naming its
path. Required fields are those the model's constructor refuses to leave empty.

python3-kubernetes 22.6 (Debian 12) describes Kubernetes 1.22. Fields added since that these
manifests use are declared below in NEWER_FIELDS, with the release that added them, from the
Kubernetes API reference; nothing else is added.

A kustomization.yaml is checked too: its keys against the kustomize fields these manifests use,
and every file it lists must exist; every manifest in its folder must be listed, so none is
forgotten.
"""
import os
import re
import sys

import kubernetes.client as k8s
import yaml

# (kind, apiVersion) -> model class name.
KINDS = {
    ("Namespace", "v1"): "V1Namespace",
    ("ServiceAccount", "v1"): "V1ServiceAccount",
    ("ConfigMap", "v1"): "V1ConfigMap",
    ("Secret", "v1"): "V1Secret",
    ("Service", "v1"): "V1Service",
    ("Deployment", "apps/v1"): "V1Deployment",
    ("Job", "batch/v1"): "V1Job",
    ("PodDisruptionBudget", "policy/v1"): "V1PodDisruptionBudget",
    ("NetworkPolicy", "networking.k8s.io/v1"): "V1NetworkPolicy",
}

# Fields newer than the packaged models: model -> {python name: (JSON name, type)}.
NEWER_FIELDS = {
    # Probe.grpc: native gRPC probes, Kubernetes 1.24 (beta, on by default), GA in 1.27.
    "V1Probe": {"grpc": ("grpc", "V1GRPCAction")},
}
# Types newer than the packaged models: name -> ({python name: (JSON name, type)}, required).
NEWER_TYPES = {
    # GRPCAction{port int32 (required), service string}.
    "V1GRPCAction": ({"port": ("port", "int"), "service": ("service", "str")}, {"port"}),
}

KUSTOMIZATION_KEYS = {"apiVersion", "kind", "namespace", "resources", "labels", "images",
                      "commonLabels", "commonAnnotations", "namePrefix", "nameSuffix",
                      "configMapGenerator", "secretGenerator", "patches", "components"}

PRIMITIVES = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
              "datetime": (str,), "date": (str,)}


def fields_of(type_name):
    """{JSON name: (python name, type)} and the set of required JSON names, for a model."""
    if type_name in NEWER_TYPES:
        fields, required = NEWER_TYPES[type_name]
        return {j: (p, t) for p, (j, t) in fields.items()}, required
    model = getattr(k8s, type_name)
    fields = {model.attribute_map[p]: (p, t) for p, t in model.openapi_types.items()}
    for p, (j, t) in NEWER_FIELDS.get(type_name, {}).items():
        fields[j] = (p, t)
    return fields, required_of(model)


def required_of(model):
    """JSON names the model's constructor refuses as None (client-side validation)."""
    required = set()
    for p in model.openapi_types:
        setter = getattr(model, p).fset
        obj = model.__new__(model)
        obj.local_vars_configuration = k8s.Configuration()
        obj.local_vars_configuration.client_side_validation = True
        try:
            setter(obj, None)
        except ValueError:
            required.add(model.attribute_map[p])
    return required


def check(value, type_name, path, errors):
    """Appends to `errors` every way `value` departs from `type_name`."""
    if value is None:
        return
    for pattern, container, what, item_path in ((r"list\[(.+)\]", list, "a list", "%s[%s]"),
                                                (r"dict\(str, (.+)\)", dict, "a map", "%s.%s")):
        m = re.fullmatch(pattern, type_name)
        if not m:
            continue
        if not isinstance(value, container):
            errors.append("%s: expected %s, got %r" % (path, what, value))
            return
        for key, item in (enumerate(value) if container is list else value.items()):
            check(item, m.group(1), item_path % (path, key), errors)
        return
    if type_name == "object":  # IntOrString, quantities, raw extensions
        if isinstance(value, (dict, list)) and path.split(".")[-1] in ("port", "targetPort",
                                                                         "maxSurge",
                                                                         "maxUnavailable",
                                                                         "minAvailable"):
            errors.append("%s: expected an integer or a string" % path)
        return
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name])
        if type_name in ("int", "float") and isinstance(value, bool):
            ok = False
        if not ok:
            errors.append("%s: expected %s, got %r" % (path, type_name, value))
        return
    if not isinstance(value, dict):
        errors.append("%s: expected an object (%s), got %r" % (path, type_name, value))
        return
    fields, required = fields_of(type_name)
    for key, item in value.items():
        if key not in fields:
            errors.append("%s.%s: unknown field (not in %s)" % (path, key, type_name))
            continue
        check(item, fields[key][1], "%s.%s" % (path, key), errors)
    for key in sorted(required - set(k for k, v in value.items() if v is not None)):
        errors.append("%s.%s: required field missing (%s)" % (path, key, type_name))


def validate_document(doc, where="document"):
    """Errors of one parsed manifest (a Kubernetes object), as strings."""
    if not isinstance(doc, dict):
        return ["%s: not a mapping" % where]
    model = KINDS.get((doc.get("kind"), doc.get("apiVersion")))
    if model is None:
        return ["%s: unknown kind %r of apiVersion %r" % (where, doc.get("kind"),
                                                          doc.get("apiVersion"))]
    errors = []
    check(doc, model, "%s:%s" % (where, doc["kind"]), errors)
    if not (doc.get("metadata") or {}).get("name"):
        errors.append("%s: metadata.name missing" % where)
    return errors


def validate_kustomization(path):
    errors = []
    with open(path) as f:
        k = yaml.safe_load(f)
    folder = os.path.dirname(path)
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        errors.append("%s: not a kustomize.config.k8s.io/v1beta1 Kustomization" % path)
    for key in k:
        if key not in KUSTOMIZATION_KEYS:
            errors.append("%s: unknown field %s" % (path, key))
    listed = set()
    for resource in k.get("resources", []):
        target = os.path.normpath(os.path.join(folder, resource))
        listed.add(target)
        if not os.path.exists(target):
            errors.append("%s: resource %s does not exist" % (path, resource))
    for name in sorted(os.listdir(folder)):
        full = os.path.normpath(os.path.join(folder, name))
        if name.endswith(".yaml") and name != "kustomization.yaml" and full not in listed:
            errors.append("%s: %s is not listed in resources" % (path, name))
    return errors


def validate_tree(root):
    """Errors of every manifest and kustomization under `root`, and how many objects it read."""
    errors = []
    objects = 0
    for folder, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            path = os.path.join(folder, name)
            if not name.endswith(".yaml"):
                continue
            if name == "kustomization.yaml":
                errors += validate_kustomization(path)
                continue
            with open(path) as f:
                try:
                    docs = list(yaml.safe_load_all(f))
                except yaml.YAMLError as e:
                    errors.append("%s: %s" % (path, e))
                    continue
            for i, doc in enumerate(d for d in docs if d is not None):
                objects += 1
                errors += validate_document(doc, "%s#%d" % (path, i + 1))
    return errors, objects


def main(argv):
    if not argv:
        sys.exit(__doc__)
    failed = False
    for root in argv:
        errors, objects = validate_tree(root)
        for e in errors:
            print(e)
        print("%s: %d objects, %d errors" % (root, objects, len(errors)))
        failed = failed or bool(errors) or objects == 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
