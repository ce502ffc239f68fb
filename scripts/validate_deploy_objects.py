#!/usr/bin/env python3
"""Helper of scripts/validate-deploy.sh: sorts rendered Kubernetes objects and
validates the custom resources; also validates deploy/compose.yaml.

kubernetes-validate only knows the built-in kinds: for any other kind it
prints a WARN line and still exits 0, so custom resources would pass
unchecked. This helper therefore

- writes the built-in objects to a file for kubernetes-validate (where a WARN
  now means an unknown built-in apiVersion/kind, and fails the run);
- validates the custom resources against JSON schemas derived from the
  pydantic models that the cloudcoil-models-* PyPI packages generate from the
  projects' published CRDs, made strict (unknown fields are errors, as with
  `kubernetes-validate --strict`);
- skips, with a printed reason, the kinds for which no schema is obtainable
  offline from PyPI or npm, and fails on any other custom kind.

    validate_deploy_objects.py k8s RENDERED.yaml BUILTIN_OUT.yaml REPORT.json
    validate_deploy_objects.py compose COMPOSE.yaml SCHEMA.json

Needs PyYAML, jsonschema and the cloudcoil packages (the venv of
scripts/prereqs.sh has them).
"""

import importlib
import importlib.metadata
import json
import sys

import jsonschema
import yaml

# Custom resources validated against a schema: (apiVersion, kind) ->
# (module, class, PyPI distribution that ships the model).
CR_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): (
        "cloudcoil.models.keda.v1alpha1", "ScaledObject", "cloudcoil-models-keda"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): (
        "cloudcoil.models.keda.v1alpha1", "TriggerAuthentication", "cloudcoil-models-keda"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): (
        "cloudcoil.models.prometheus_operator.v1", "ServiceMonitor",
        "cloudcoil-models-prometheus-operator"),
}

# Custom resources skipped, with the reason printed for each.
# (apiVersion, kind) -> (short reason for the summary, full reason).
CR_SKIPPED = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): (
        "no schema on PyPI/npm",
        "no published schema obtainable offline: no PyPI package ships the "
        "RabbitMQ Cluster Operator's CRD, and @kubernetes-models/"
        "rabbitmq-cluster-operator is not on the npm registry; its "
        "consumer_timeout is checked by check_deploy_consistency.py"),
}


def is_custom(api_version):
    """Built-in API groups are the core group, dot-less groups (apps,
    autoscaling, policy, ...) and *.k8s.io; anything else is a CRD's."""
    if "/" not in api_version:
        return False
    group = api_version.split("/", 1)[0]
    return "." in group and not group.endswith(".k8s.io")


def strict(schema):
    """Rejects unknown fields: every object schema that lists its properties
    and says nothing of others gets additionalProperties: false."""
    if isinstance(schema, dict):
        for value in schema.values():
            strict(value)
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def load_all(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def name_of(obj):
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name', '?')}"


def check_k8s(rendered, builtin_out, report_path):
    objects = load_all(rendered)
    builtin, failures = [], 0
    validated, skipped = {}, {}
    validators = {}
    for obj in objects:
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        if not api_version or not kind:
            print(f"ERROR {rendered}: an object without apiVersion/kind: {obj!r:.120}")
            failures += 1
            continue
        if not is_custom(api_version):
            builtin.append(obj)
            continue
        key = (api_version, kind)
        if key in CR_SKIPPED:
            print(f"SKIP {name_of(obj)} ({api_version}): {CR_SKIPPED[key][1]}")
            skipped[kind] = CR_SKIPPED[key][0]
            continue
        if key not in CR_SCHEMAS:
            print(f"ERROR {name_of(obj)} ({api_version}): custom resource with no schema "
                  f"and no documented skip (add it to {__file__})")
            failures += 1
            continue
        module, cls, dist = CR_SCHEMAS[key]
        if key not in validators:
            model = getattr(importlib.import_module(module), cls)
            schema = strict(model.model_json_schema(by_alias=True, mode="validation"))
            validators[key] = (
                jsonschema.Draft202012Validator(schema),
                f"{dist} {importlib.metadata.version(dist)}",
            )
        validator, source = validators[key]
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        if errors:
            for e in errors:
                path = ".".join(str(p) for p in e.path) or "(root)"
                print(f"ERROR {name_of(obj)} ({api_version}) did not validate against "
                      f"{source}: {path}: {e.message}")
            failures += 1
        else:
            print(f"INFO {name_of(obj)} ({api_version}) passed against the {source} schema (strict)")
            validated[kind] = validated.get(kind, 0) + 1
    with open(builtin_out, "w", encoding="utf-8") as f:
        yaml.safe_dump_all(builtin, f, sort_keys=False)
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump({"builtin": len(builtin), "custom_validated": sum(validated.values()),
                   "custom_skipped": len([o for o in objects if (o.get("apiVersion"), o.get("kind")) in CR_SKIPPED]),
                   "skip_reasons": skipped, "failures": failures}, f)
    return 1 if failures else 0


def check_compose(compose, schema_path):
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    with open(compose, encoding="utf-8") as f:
        doc = yaml.safe_load(f)  # resolves the <<: merge keys as compose does
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft201909Validator)
    errors = list(cls(schema).iter_errors(doc))
    for e in errors:
        path = ".".join(str(p) for p in e.path) or "(root)"
        print(f"ERROR {compose}: {path}: {e.message}")
    if not errors:
        print(f"INFO {compose} passed against the compose-spec schema "
              f"({len(doc.get('services', {}))} services)")
    return 1 if errors else 0


def main(argv):
    if len(argv) == 5 and argv[1] == "k8s":
        return check_k8s(argv[2], argv[3], argv[4])
    if len(argv) == 4 and argv[1] == "compose":
        return check_compose(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
