"""Checks rendered kustomize output (one YAML stream per overlay) for k8s/validate.sh.

    python k8s/validate.py [--rules-out DIR] RENDERED.yaml...

For every object:
  - built-in kinds: strict JSON-schema validation against Kubernetes 1.32
    (kubernetes-validate's bundled schemas; unknown fields are errors);
  - custom resources: strict validation against the CRD schemas vendored in k8s/schemas/
    (KEDA, Prometheus Operator), with metadata checked as an ObjectMeta;
  - a kind with neither is an error, so nothing passes unchecked.
Then, per overlay, what the schemas cannot see:
  - every namespaced object is in a namespace (components add objects after the base's
    namespace transformer has run);
  - every workload names one image, and none is the bare placeholder "weir";
  - every ConfigMap a pod reads exists in the output (generated names carry a hash that
    kustomize only fills in where it can resolve the reference), and every Secret it
    reads is one the README tells the operator to create;
  - every CronJob forbids concurrent runs;
  - every checkov skip annotation gives a reason;
  - the weir_* series that alert rules and dashboards query are ones weir exports.
Exits 1 with one line per problem. With --rules-out, also writes each overlay's alert
rules as a plain Prometheus rule file (DIR/<overlay>/weir-rules.yaml) for promtool.
"""

import json
import re
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

K8S_VERSION = "1.32"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

# Secrets the manifests read but do not create (k8s/README.md says how to create them).
EXTERNAL_SECRETS = {"weir-secrets"}

# Series weir exports: pipeline/src/runtime.rs today, plus the ones issue 18 adds.
# A rule or panel that queries anything else would never fire or stay empty.
WEIR_METRICS = {
    # counters and gauges of pipeline/src/runtime.rs and worker.rs
    "weir_records_total",
    "weir_rows_total",
    "weir_commits_total",
    "weir_bytes_written_total",
    "weir_committed_offset",
    "weir_dead_letters_total",
    "weir_skipped_offsets_total",
    "weir_offset_resets_total",
    "weir_orphans_removed_total",
    "weir_kafka_errors_total",
    "weir_store_errors_total",
    "weir_commit_conflicts_total",
    "weir_store_healthy",
    # issue 18
    "weir_commit_duration_seconds",
    "weir_upload_duration_seconds",
    "weir_batch_seconds",
    "weir_consumer_lag",
    "weir_freshness_seconds",
    "weir_assigned_partitions",
    "weir_build_info",
    "weir_reference_reloads_total",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
}


def strict_crd_schema(node):
    """An OpenAPI v3 schema of a CRD as a JSON schema that refuses unknown fields."""
    if isinstance(node, list):
        return [strict_crd_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_crd_schema(v) for k, v in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    for key in list(out):
        if key.startswith("x-kubernetes-"):
            del out[key]
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def load_crd_validators():
    definitions = json.loads(
        (
            Path(kubernetes_validate.__file__).parent
            / "kubernetes-json-schema"
            / f"v{K8S_VERSION}.0-local-strict"
            / "_definitions.json"
        ).read_text()
    )
    # The Kubernetes definitions (ObjectMeta among them), under their own $id.
    registry = Resource.from_contents(definitions) @ Registry()
    object_meta = {
        "$ref": definitions["$id"] + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    validators = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        crd = json.loads(path.read_text())
        schema = strict_crd_schema(crd["openAPIV3Schema"])
        schema["properties"]["metadata"] = object_meta
        schema["properties"]["apiVersion"] = {"const": f"{crd['group']}/{crd['version']}"}
        schema["properties"]["kind"] = {"const": crd["kind"]}
        schema["required"] = sorted(set(schema.get("required", [])) | {"spec"})
        validators[(f"{crd['group']}/{crd['version']}", crd["kind"])] = (
            jsonschema.Draft202012Validator(schema, registry=registry)
        )
    return validators


def pod_spec(obj):
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return spec["template"]["spec"]
    if obj["kind"] == "Pod":
        return spec
    return None


def metric_names(text):
    names = set(re.findall(r"\bweir_[a-z0-9_]+", text))
    out = set()
    for name in names:
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in WEIR_METRICS:
                name = name[: -len(suffix)]
        out.add(name)
    return out


def check_overlay(path, crd_validators):
    problems = []
    docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    if not docs:
        return [f"{path}: renders to nothing"]
    where = lambda o: f"{path}: {o.get('kind')}/{o.get('metadata', {}).get('name')}"  # noqa: E731
    configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    images = set()
    for obj in docs:
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key in crd_validators:
            for err in sorted(crd_validators[key].iter_errors(obj), key=str):
                loc = "/".join(str(p) for p in err.absolute_path)
                problems.append(f"{where(obj)}: {loc}: {err.message}")
        else:
            try:
                kv_utils.validate(obj, K8S_VERSION, strict=True)
            except kv_utils.SchemaNotFoundError:
                problems.append(
                    f"{where(obj)}: no schema for {key[0]} {key[1]} (Kubernetes {K8S_VERSION} or k8s/schemas/)"
                )
            except kv_utils.ValidationError as err:
                loc = "/".join(str(p) for p in err.path)
                problems.append(f"{where(obj)}: {loc}: {err.message}")

        meta = obj.get("metadata", {})
        if obj["kind"] not in CLUSTER_SCOPED and not meta.get("namespace"):
            problems.append(f"{where(obj)}: no namespace")
        for key_, value in (meta.get("annotations") or {}).items():
            if key_.startswith("checkov.io/skip") and not re.fullmatch(
                r"CKV2?_[A-Z0-9_]+=\S.*", str(value)
            ):
                problems.append(f"{where(obj)}: {key_} gives no reason ({value!r})")
        if obj["kind"] == "CronJob" and obj["spec"].get("concurrencyPolicy") != "Forbid":
            problems.append(f"{where(obj)}: concurrencyPolicy is not Forbid")

        spec = pod_spec(obj)
        if spec is not None:
            for container in spec.get("initContainers", []) + spec.get("containers", []):
                images.add(container.get("image"))
                for source in container.get("envFrom", []):
                    ref = source.get("configMapRef", {}).get("name")
                    if ref and ref not in configmaps:
                        problems.append(f"{where(obj)}: envFrom ConfigMap {ref} is not rendered")
                for env in container.get("env", []):
                    ref = (env.get("valueFrom") or {}).get("secretKeyRef", {}).get("name")
                    if ref and ref not in EXTERNAL_SECRETS:
                        problems.append(f"{where(obj)}: Secret {ref} is neither rendered nor documented")
            for volume in spec.get("volumes", []):
                ref = (volume.get("configMap") or {}).get("name")
                if ref and ref not in configmaps:
                    problems.append(f"{where(obj)}: volume ConfigMap {ref} is not rendered")

        text = ""
        if obj["kind"] == "PrometheusRule":
            text = json.dumps(obj["spec"])
        elif obj["kind"] == "ConfigMap" and "grafana_dashboard" in (meta.get("labels") or {}):
            text = json.dumps(obj.get("data", {}))
        for name in sorted(metric_names(text) - WEIR_METRICS):
            problems.append(f"{where(obj)}: queries {name}, which weir does not export")

    if len(images) > 1:
        problems.append(f"{path}: more than one image: {sorted(images)}")
    for image in images:
        if image == "weir" or not image:
            problems.append(f"{path}: image not set by the overlay ({image!r})")
    return problems


def write_rules(paths, rules_dir):
    """Each overlay's PrometheusRule spec as a plain rule file, for promtool:
    RULES_DIR/<overlay>/weir-rules.yaml."""
    for path in paths:
        for obj in yaml.safe_load_all(Path(path).read_text()):
            if obj and obj["kind"] == "PrometheusRule":
                folder = Path(rules_dir) / Path(path).stem
                folder.mkdir(parents=True, exist_ok=True)
                (folder / "weir-rules.yaml").write_text(yaml.safe_dump(obj["spec"], sort_keys=False))


def main(args):
    rules_dir = None
    if args[:1] == ["--rules-out"]:
        rules_dir, args = args[1], args[2:]
    paths = args
    crd_validators = load_crd_validators()
    problems = []
    if rules_dir:
        write_rules(paths, rules_dir)
    for path in paths:
        found = check_overlay(path, crd_validators)
        problems += found
        if not found:
            count = sum(1 for d in yaml.safe_load_all(Path(path).read_text()) if d)
            print(f"validate: {path}: {count} objects valid (Kubernetes {K8S_VERSION}, CRDs, references)")
    for problem in problems:
        print(f"validate: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
