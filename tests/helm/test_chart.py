"""The Helm chart helm/perilflow, rendered by a real helm (v4.1.4 from a pinned wheel).

The official Apache Airflow chart (the `airflow` dependency, 1.22.0) is not reachable here and its
source is not vendored: a stub chart of the same name and version is built in a temporary copy of
the chart, so `helm lint --strict` and `helm template` resolve the dependency. The stub renders
one ConfigMap echoing the values it receives (and its `extraEnvFrom` after `tpl`, as the real chart
does), so the values Perilflow hands to the Airflow chart are checked for shape; what the real
chart renders from them is not tested here.

Every rendered document is validated with kubernetes-validate --strict for Kubernetes 1.33, then
the product's resources are checked: RBAC for KubernetesPodOperator, read-only models claim,
storage Secret with AWS_* keys only, no database credentials where model workers can see them,
hook annotations of the migration and pools Jobs, labels, and the check-values rules.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.helm.helm_binary import HelmUnavailable, get_helm

CHART = REPO_ROOT / "helm" / "perilflow"
K8S_VERSION = "1.33"
RELEASE = "perilflow"
NAMESPACE = "perilflow"
SCENARIOS = {
    "defaults": [],
    "s3-existing-secret": ["ci/s3-existing-secret-values.yaml"],
    "kubernetes-executor": ["ci/kubernetes-executor-values.yaml"],
    "network-policy": ["ci/network-policy-values.yaml"],
}
#: what the model-worker pods are told (operators/model_step.py); the chart must agree with it
MODEL_WORKER_LABEL = ("app.kubernetes.io/name", "perilflow-model-worker")
STORAGE_SECRET = "perilflow-storage"
DB_URL = re.compile(r"(postgres(ql)?|mysql|sqlite)(\+\w+)?://", re.IGNORECASE)
DB_KEY = re.compile(r"DATABASE|SQL_ALCHEMY|PASSWORD|PGPASS|POSTGRES", re.IGNORECASE)

#: helm keeps its cache and config under .cache/helm, not in the user's home
HELM_ENV = {**os.environ, **{f"HELM_{kind}_HOME": str(REPO_ROOT / ".cache" / "helm" / "home" / kind.lower())
                            for kind in ("CACHE", "CONFIG", "DATA")}}

STUB_CHART_YAML = """\
apiVersion: v2
name: airflow
version: 1.22.0
appVersion: 3.3.2
description: Test stub standing in for the official Apache Airflow chart (not its source).
"""
STUB_TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: airflow-stub-values
  labels:
    app.kubernetes.io/name: airflow-stub
data:
  values.json: {{ toJson .Values | quote }}
  extraEnvFrom: {{ tpl (.Values.extraEnvFrom | default "") . | quote }}
"""


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"helm is required in CI: {reason}", pytrace=False)
    pytest.skip(f"no helm binary: {reason}")


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return get_helm()
    except HelmUnavailable as exc:
        _fail_or_skip(str(exc))
        raise  # unreachable: skip/fail raise


@pytest.fixture(scope="module")
def chart(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of helm/perilflow whose charts/ holds a packaged stub `airflow` 1.22.0."""
    root = tmp_path_factory.mktemp("chart")
    copy = root / "perilflow"
    shutil.copytree(CHART, copy, ignore=shutil.ignore_patterns("charts", "*.tgz", "Chart.lock"))
    stub = root / "stub" / "airflow"
    (stub / "templates").mkdir(parents=True)
    (stub / "Chart.yaml").write_text(STUB_CHART_YAML)
    (stub / "values.yaml").write_text("extraEnvFrom: ~\n")
    (stub / "templates" / "values-echo.yaml").write_text(STUB_TEMPLATE)
    _helm(helm, "package", str(stub), "--destination", str(copy / "charts"))
    return copy


def _helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60, env=HELM_ENV)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def _values_args(chart: Path, files: list[str], sets: list[str] | None = None) -> list[str]:
    args: list[str] = []
    for name in files:
        args += ["--values", str(chart / name)]
    for item in sets or []:
        args += ["--set", item]
    return args


def _template(helm: Path, chart: Path, files: list[str], sets: list[str] | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
    return _helm(helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", K8S_VERSION,
                 *_values_args(chart, files, sets), check=check)


@pytest.fixture(scope="module")
def rendered(helm: Path, chart: Path):
    """Documents of each scenario, rendered once per module."""
    cache: dict[str, list[dict]] = {}

    def get(scenario: str) -> list[dict]:
        if scenario not in cache:
            out = _template(helm, chart, SCENARIOS[scenario]).stdout
            cache[scenario] = [doc for doc in yaml.safe_load_all(out) if doc]
        return cache[scenario]

    return get


def _product(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "perilflow"]


def _one(docs: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
             and (namespace is None or d["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {namespace or 'any namespace'}, found {len(found)}"
    return found[0]


def _all(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def _stub_values(docs: list[dict]) -> tuple[dict, list[dict]]:
    echo = _one(docs, "ConfigMap", "airflow-stub-values")
    return json.loads(echo["data"]["values.json"]), yaml.safe_load(echo["data"]["extraEnvFrom"]) or []


def _env_config(docs: list[dict]) -> dict[str, str]:
    return _one(docs, "ConfigMap", "perilflow-env")["data"]


# -- lint, render, validate -----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(helm: Path, chart: Path, scenario: str) -> None:
    result = _helm(helm, "lint", "--strict", str(chart), "--namespace", NAMESPACE, "--kube-version", K8S_VERSION,
                   *_values_args(chart, SCENARIOS[scenario]))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_document_is_valid_kubernetes(rendered, scenario: str) -> None:
    docs = rendered(scenario)
    assert len(_product(docs)) >= 6
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{scenario}: {doc['kind']} {doc['metadata'].get('name')}: {exc.message}", pytrace=False)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_product_resources_are_labelled_and_namespaced(rendered, scenario: str) -> None:
    docs = rendered(scenario)
    for doc in _product(docs):
        labels = doc["metadata"]["labels"]
        where = f"{doc['kind']} {doc['metadata']['name']}"
        assert labels["app.kubernetes.io/instance"] == RELEASE, where
        assert labels["app.kubernetes.io/part-of"] == "perilflow", where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert labels["app.kubernetes.io/component"], where
        assert labels["helm.sh/chart"] == "perilflow-0.1.0", where
        assert doc["metadata"].get("namespace"), f"{where} has no namespace"
        if scenario == "network-policy":
            assert labels["team"] == "catmodelling", where
    # nothing of the product's is unlabelled (the stub's echo is the only other document)
    assert {d["metadata"]["name"] for d in docs if d not in _product(docs)} == {"airflow-stub-values"}


# -- what the Airflow chart receives --------------------------------------------------------------------


def test_airflow_values_handed_to_the_official_chart(rendered) -> None:
    docs = rendered("defaults")
    values, env_from = _stub_values(docs)
    assert values["executor"] == "CeleryExecutor,KubernetesExecutor"
    assert values["airflowVersion"] == "3.3.2"
    assert values["images"]["airflow"]["repository"] == "perilflow/platform"
    assert values["postgresql"] == {"enabled": False}
    assert values["data"]["metadataSecretName"] == "perilflow-airflow-metadata"
    assert values["jwtSecretName"] and values["apiSecretKeySecretName"] and values["fernetKeySecretName"]
    assert values["config"]["core"]["auth_manager"].endswith("FabAuthManager")
    secrets = {s["envName"]: (s["secretName"], s["secretKey"]) for s in values["secret"]}
    assert secrets["PERILFLOW_DATABASE_URL"] == ("perilflow-database", "url")
    assert "PERILFLOW_API_PASSWORD" in secrets
    # extraEnvFrom, after the Airflow chart's tpl, names objects this release creates in its namespace
    refs = {(next(iter(item)), next(iter(item.values()))["name"]) for item in env_from}
    assert refs == {("configMapRef", "perilflow-env"), ("secretRef", STORAGE_SECRET)}
    assert _one(docs, "ConfigMap", "perilflow-env", NAMESPACE)
    assert _one(docs, "Secret", STORAGE_SECRET, NAMESPACE)


def test_executor_is_configurable(rendered) -> None:
    values, _ = _stub_values(rendered("kubernetes-executor"))
    assert values["executor"] == "KubernetesExecutor"
    assert values["images"]["airflow"]["repository"] == "registry.example.com/perilflow/platform"


# -- the model-worker namespace ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario, worker_ns, launchers", [
    ("defaults", NAMESPACE, {"perilflow-airflow-worker", "perilflow-airflow-triggerer"}),
    ("kubernetes-executor", "perilflow-workers", {"perilflow-task-runner", "perilflow-airflow-triggerer"}),
])
def test_role_lets_the_airflow_workers_run_pods_in_the_worker_namespace(rendered, scenario, worker_ns,
                                                                         launchers) -> None:
    docs = rendered(scenario)
    role = _one(docs, "Role")
    binding = _one(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == worker_ns
    rules = {res: set(rule["verbs"]) for rule in role["rules"] for res in rule["resources"]}
    assert {"create", "get", "list", "watch", "delete", "patch"} <= rules["pods"]
    assert "get" in rules["pods/log"]
    assert set(rules) == {"pods", "pods/log", "events"}, "least privilege: no secrets, no exec, nothing else"
    assert all(rule["apiGroups"] == [""] for rule in role["rules"])
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert {s["name"] for s in binding["subjects"]} == launchers
    assert {s["namespace"] for s in binding["subjects"]} == {NAMESPACE}
    sa = _one(docs, "ServiceAccount", "perilflow-model-worker")
    assert sa["metadata"]["namespace"] == worker_ns
    assert sa["automountServiceAccountToken"] is False
    assert _env_config(docs)["PERILFLOW_NAMESPACE"] == worker_ns


def test_models_claim_is_read_only_in_the_worker_namespace(rendered) -> None:
    docs = rendered("defaults")
    pvc = _one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert pvc["metadata"]["namespace"] == NAMESPACE
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "storageClassName" not in pvc["spec"]  # the cluster's default class
    assert _env_config(docs)["PERILFLOW_MODELS_PVC"] == pvc["metadata"]["name"] == "perilflow-models"
    account = next(d for d in docs
                   if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "perilflow-model-worker")
    assert _env_config(docs)["PERILFLOW_WORKER_SERVICE_ACCOUNT"] == account["metadata"]["name"]

    docs = rendered("kubernetes-executor")
    pvc = _one(docs, "PersistentVolumeClaim")
    assert pvc["metadata"]["namespace"] == "perilflow-workers"
    assert pvc["spec"]["storageClassName"] == ""
    assert pvc["spec"]["volumeName"] == "perilflow-models-nfs"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"


def test_existing_models_claim_is_used_not_created(rendered) -> None:
    docs = rendered("s3-existing-secret")
    assert not _all(docs, "PersistentVolumeClaim")
    assert _env_config(docs)["PERILFLOW_MODELS_PVC"] == "model-library"


# -- credentials ------------------------------------------------------------------------------------------


def _secret_data(secret: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def test_storage_secret_holds_only_aws_keys(rendered) -> None:
    docs = rendered("kubernetes-executor")
    copies = [d for d in _all(docs, "Secret") if d["metadata"]["name"] == STORAGE_SECRET]
    # one for the model-worker pods, one for the Airflow containers (extraEnvFrom) in the release namespace
    assert {d["metadata"]["namespace"] for d in copies} == {"perilflow-workers", NAMESPACE}
    for secret in copies:
        data = _secret_data(secret)
        assert data == {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLEEXAMPLE",
                        "AWS_SECRET_ACCESS_KEY": "example-secret-access-key",
                        "AWS_DEFAULT_REGION": "us-east-1"}
        assert "stringData" not in secret


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_product_secret_is_storage_only(rendered, scenario: str) -> None:
    for secret in _all(_product(rendered(scenario)), "Secret"):
        assert secret["metadata"]["name"] == STORAGE_SECRET
        data = _secret_data(secret)
        assert all(key.startswith("AWS_") for key in data), data.keys()
        assert not [v for v in data.values() if DB_URL.search(v)]


def test_existing_storage_secret_is_not_created(rendered) -> None:
    docs = rendered("s3-existing-secret")
    assert not _all(docs, "Secret")
    env = _env_config(docs)
    connection = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection == {"conn_type": "aws", "extra": {"endpoint_url": "http://minio.minio.svc.cluster.local:9000",
                                                        "region_name": "eu-west-1"}}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_database_credentials_in_the_settings_config_map(rendered, scenario: str) -> None:
    env = _env_config(rendered(scenario))
    assert all(key.startswith(("PERILFLOW_", "AIRFLOW_CONN_")) for key in env)
    assert not [k for k in env if DB_KEY.search(k)], "DB URL and passwords come from Secrets, never this ConfigMap"
    assert not [v for v in env.values() if DB_URL.search(v)]
    for key in (k for k in env if k.startswith("AIRFLOW_CONN_")):
        connection = json.loads(env[key])
        assert "password" not in connection and "login" not in connection, "storage keys live in the Secret"


def test_settings_config_map_matches_the_operator(rendered) -> None:
    env = _env_config(rendered("defaults"))
    assert env["PERILFLOW_BACKEND"] == "kubernetes"
    assert env["PERILFLOW_STORAGE_URL"].startswith("s3://")
    assert env["PERILFLOW_API_URL"] == env["PERILFLOW_AIRFLOW_URL"] == "http://perilflow-airflow-api-server:8080"
    assert env["PERILFLOW_RETRIES"] == "3"
    known = set(re.findall(r"PERILFLOW_[A-Z0-9_]+", "".join(
        p.read_text() for folder in ("operators", "plugins", "perilflow") for p in (REPO_ROOT / folder).rglob("*.py"))))
    unknown = {k for k in env if k.startswith("PERILFLOW_")} - known
    assert not unknown, f"settings no Perilflow code reads: {sorted(unknown)}"


def test_chart_and_operator_agree_on_names() -> None:
    """The chart's fixed names are the operator's literals (read from source: no Airflow import here)."""
    source = (REPO_ROOT / "operators" / "model_step.py").read_text()
    assert f'"{MODEL_WORKER_LABEL[0]}": "{MODEL_WORKER_LABEL[1]}"' in source
    assert f'name="{STORAGE_SECRET}"' in source
    assert 'MODELS_MOUNT = "/var/perilflow/models"' in source
    config = (REPO_ROOT / "operators" / "config.py").read_text()
    assert '"PERILFLOW_MODELS_PVC", "perilflow-models"' in config


# -- hooks ------------------------------------------------------------------------------------------------


def test_db_migrate_job_is_a_pre_install_hook(rendered) -> None:
    docs = rendered("defaults")
    job = _one(docs, "Job", "perilflow-db-migrate")
    notes = job["metadata"]["annotations"]
    assert notes["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert notes["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert int(notes["helm.sh/hook-weight"]) < 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["command"] == ["perilflow", "db", "migrate"]
    assert container["image"] == "perilflow/platform:0.1.0"
    assert container["env"] == [{"name": "PERILFLOW_DATABASE_URL", "valueFrom": {
        "secretKeyRef": {"name": "perilflow-database", "key": "url"}}}]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # a pre-install hook runs before the release's objects exist: it may use nothing the chart creates
    created = {(d["kind"], d["metadata"]["name"]) for d in docs if "helm.sh/hook" not in
               d["metadata"].get("annotations", {})}
    assert ("Secret", "perilflow-database") not in created
    assert "serviceAccountName" not in pod


def test_pools_are_imported_after_the_airflow_migration(rendered) -> None:
    docs = rendered("s3-existing-secret")
    pools = json.loads(_one(docs, "ConfigMap", "perilflow-pools")["data"]["pools.json"])
    assert pools == {"model-piwind": {"slots": 16, "description": "PiWind model steps", "include_deferred": False},
                     "model-demowind": {"slots": 4, "description": "Perilflow pool model-demowind",
                                        "include_deferred": False}}
    job = _one(docs, "Job", "perilflow-import-pools")
    notes = job["metadata"]["annotations"]
    assert notes["helm.sh/hook"] == "post-install,post-upgrade"
    assert int(notes["helm.sh/hook-weight"]) > 1  # the Airflow chart's migration Job has weight 1
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["airflow", "pools", "import"]
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "perilflow-airflow-metadata",
                                                                "key": "connection"}
    assert not [d for d in rendered("defaults") if d["metadata"]["name"] == "perilflow-import-pools"]


# -- network policy ---------------------------------------------------------------------------------------


def test_network_policy_keeps_model_workers_away_from_postgres(rendered) -> None:
    assert not _all(rendered("defaults"), "NetworkPolicy")
    policy = _one(rendered("network-policy"), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": dict([MODEL_WORKER_LABEL])}
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    assert spec["ingress"] == []
    ports = {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 9000)}  # 9000: the MinIO endpoint's port
    assert not [p for p in ports if p[1] == 5432]
    assert all(rule.get("ports") for rule in spec["egress"]), "every egress rule is limited to ports"


# -- check-values rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("sets, message", [
    (["airflow.executor=CeleryKubernetesExecutor"], "does not exist in Airflow 3"),
    (["storage.url=file:///data"], "must be s3://"),
    (["airflow.images.airflow.repository=apache/airflow"], "Perilflow platform image"),
    (["database.existingSecret=product-db"], "make them the same"),
    (["networkPolicy.enabled=true", "networkPolicy.egressPorts={443,5432}"], "is a database port"),
    (["storage.existingSecret=perilflow-storage", "storage.accessKeyId=a", "storage.secretAccessKey=b"],
     "not both"),
    (["storage.accessKeyId=only-one"], "go together"),
    (["airflow.extraEnvFrom=null"], "perilflow-env"),
    (["settings.backend=local", "storage.url=file:///shared/perilflow"], "remove the secretRef to perilflow-storage"),
    # values.schema.json
    (["storage.existingSecret=my-own-secret"],
     "/storage/existingSecret': value must be one of '', 'perilflow-storage'"),
    (["settings.backend=docker"], "/settings/backend': value must be one of 'kubernetes', 'local'"),
    (["settings.extraEnv.PERILFLOW_DATABASE_URL=postgresql://u:p@db/x"], "/settings/extraEnv': 'not' failed"),
    (["models.accessModes={ReadWriteSometimes}"], "/models/accessModes/0'"),
    (["unknownKey=1"], "additional properties 'unknownKey' not allowed"),
])
def test_bad_values_are_refused_with_a_reason(helm: Path, chart: Path, sets: list[str], message: str) -> None:
    result = _template(helm, chart, [], sets, check=False)
    assert result.returncode != 0, f"helm template accepted {sets}"
    assert message in result.stderr, result.stderr
