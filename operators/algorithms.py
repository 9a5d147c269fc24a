"""The DAG ``perilflow_algorithm_task``: run any algorithm (an image plus a command) on a dataset.

One task, ``run-algorithm`` (:class:`AlgorithmOperator`, a :class:`ModelStepOperator`), runs one
pod, the same on both backends (:func:`configure_algorithm_pod`)::

    init container  stage     model-worker image: input dataset -> <workdir>/input
    sidecar         collect   model-worker image: <workdir>/output -> {folder}/output/, log, manifest.json
    container       base      the algorithm's image and command, working folder <workdir>

* ``kubernetes``: KubernetesPodOperator submits that pod. The collector is a native sidecar
  (an init container with ``restartPolicy: Always``): the kubelet stops it with SIGTERM once
  the algorithm has ended, and it then uploads the output. The algorithm's command is wrapped
  in ``/bin/sh`` to keep its exit code and a copy of its output in ``<workdir>/.perilflow/``.
* ``local``: :class:`~perilflow.operators.model_step.LocalPodRunner` runs the three containers
  one after the other as processes in a temporary workdir; the algorithm's output (stdout and
  stderr) streams into the task log and is kept as the output log.

Storage credentials go to the stage and collect containers only, never to the algorithm.
The manifest (output files, sizes, exit code, log URI) is ``{folder}/manifest.json`` and the
task's XCom ``manifest``; the API turns it into the output dataset when the run succeeds. A
failing command fails the task at once (no retries: an arbitrary algorithm need not be safe
to rerun).

Run conf::

    {"task_id": 5, "run_uuid": "<16 hex>",
     "algorithm": {"id": 3, "image": "registry/x:1", "command": ["python", "count.py"],
                   "entrypoint": null, "env": {"K": "V"}, "gpu": false,
                   "resources": {"requests": {...}, "limits": {...}}, "node_selector": {}},
     "input_files": [{"name": "a.csv", "uri": "file:///.../datasets/1/a.csv"}]}
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG
from kubernetes.client import models as k8s

from perilflow.kernel.datasets import task_folder
from perilflow.operators.config import PlatformConfig
from perilflow.operators.model_step import (
    WORK_MOUNT,
    LocalPodRunner,
    ModelStepOperator,
    StepFailed,
    _labels,
    _last_json,
    storage_env,
)

ALGORITHM_TASK = "perilflow_algorithm_task"
RUN_TASK = "run-algorithm"
#: XCom key of the manifest (output files, exit code, log URI); the same JSON is {folder}/manifest.json
MANIFEST_KEY = "manifest"
TAG = "perilflow"
GPU_RESOURCE = "nvidia.com/gpu"
#: the algorithm's command runs under this shell script in a pod: its exit code and a copy of its
#: output go to <workdir>/.perilflow/ for the collector; the script exits with the command's code
WRAPPER = ('mkdir -p .perilflow output; { "$@"; echo $? > .perilflow/exit_code; } 2>&1 '
           '| tee .perilflow/output.log; exit "$(cat .perilflow/exit_code)"')
DATASETS_MODULE = ["python", "-m", "perilflow.kernel.datasets"]
STEP_RESOURCES = k8s.V1ResourceRequirements(requests={"cpu": "100m", "memory": "256Mi"}, limits={"memory": "1Gi"})

_ALGORITHM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["command"],
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "image": {"type": ["string", "null"]},
        "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "entrypoint": {"type": ["array", "null"], "items": {"type": "string"}},
        "env": {"type": ["object", "null"]},
        "gpu": {"type": "boolean"},
        "resources": {"type": ["object", "null"]},
        "node_selector": {"type": ["object", "null"]},
    },
}
_FILES_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "object", "required": ["name", "uri"],
              "properties": {"name": {"type": "string", "minLength": 1}, "uri": {"type": "string", "minLength": 1}}},
}


def algorithm_params() -> dict[str, Any]:
    """The DAG's params (Airflow validates a triggered run's conf against them)."""
    from airflow.sdk import Param

    return {
        "task_id": Param(1, type="integer", minimum=1, description="the algorithm task this run belongs to"),
        "algorithm": Param({"command": ["true"]}, schema=_ALGORITHM_SCHEMA,
                           description="image, command, entrypoint, env, gpu, resources"),
        "input_files": Param([], schema=_FILES_SCHEMA, description="the input dataset's files: name and URI"),
        "run_uuid": Param(None, type=["null", "string"], pattern="^[0-9a-f]{8,32}$",
                          description="storage folder suffix; default: derived from the run id"),
        "backend": Param(None, type=["null", "string"], enum=[None, "local", "kubernetes"],
                         description="override PERILFLOW_BACKEND for this run"),
    }


def check_conf(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The conf's parts this task needs, checked (a message naming the field and the fix)."""
    task_id = conf.get("task_id")
    if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id < 1:
        raise ValueError(f"run conf: task_id is {task_id!r}; give the algorithm task's id (integer >= 1)")
    algorithm = conf.get("algorithm") or {}
    command = algorithm.get("command")
    if not command or not all(isinstance(part, str) for part in command):
        raise ValueError("run conf: algorithm.command must be a non-empty list of strings, e.g. "
                         "[\"python\", \"count.py\"]")
    files = conf.get("input_files") or []
    for entry in files:
        if not entry.get("name") or not entry.get("uri"):
            raise ValueError(f"run conf: input_files entry {entry!r} needs a name and a uri")
    return {"task_id": task_id, "algorithm": dict(algorithm), "input_files": list(files),
            "run_uuid": conf.get("run_uuid"), "backend": conf.get("backend")}


def resources_for(algorithm: Mapping[str, Any]) -> k8s.V1ResourceRequirements:
    """The algorithm's resources; ``gpu`` adds ``nvidia.com/gpu: 1`` (extended resources go in limits)."""
    resources = algorithm.get("resources") or {}
    requests = {str(k): str(v) for k, v in (resources.get("requests") or {"cpu": "1", "memory": "1Gi"}).items()}
    limits = {str(k): str(v) for k, v in (resources.get("limits") or {"memory": "4Gi"}).items()}
    if algorithm.get("gpu"):
        limits[GPU_RESOURCE] = "1"
        requests.pop(GPU_RESOURCE, None)  # a request of an extended resource must equal its limit: leave it implied
    return k8s.V1ResourceRequirements(requests=requests, limits=limits)


def _step_container(name: str, image: str, action: str, params: dict[str, Any], cfg: PlatformConfig,
                    sidecar: bool) -> k8s.V1Container:
    env_from = None
    if cfg.storage_url.startswith("s3://"):
        env_from = [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="perilflow-storage"))]
    return k8s.V1Container(
        name=name, image=image, command=[*DATASETS_MODULE, action, "--params", json.dumps(params, sort_keys=True)],
        volume_mounts=[k8s.V1VolumeMount(name="work", mount_path=WORK_MOUNT)], env_from=env_from,
        env=[k8s.V1EnvVar(name="PERILFLOW_WORK_DIR", value=WORK_MOUNT)],
        resources=STEP_RESOURCES, restart_policy="Always" if sidecar else None,
        security_context=k8s.V1SecurityContext(allow_privilege_escalation=False))


def configure_algorithm_pod(op: AlgorithmOperator, cfg: PlatformConfig, conf: Mapping[str, Any], folder: str,
                            backend: str, labels: Mapping[str, str] | None = None) -> None:
    """Set the pod of ``op`` for one algorithm run (see the module docstring for its three containers)."""
    algorithm = conf["algorithm"]
    argv = [*(algorithm.get("entrypoint") or []), *algorithm["command"]]
    op.image = algorithm.get("image") or cfg.worker_image
    if backend == "kubernetes":
        op.cmds, op.arguments = ["/bin/sh", "-c", WRAPPER, "algorithm"], argv
    else:
        op.cmds, op.arguments = argv, []
    env = {"PERILFLOW_WORK_DIR": WORK_MOUNT, "INPUT_DIR": f"{WORK_MOUNT}/input", "OUTPUT_DIR": f"{WORK_MOUNT}/output"}
    env.update({str(k): str(v) for k, v in (algorithm.get("env") or {}).items()})
    op.env_vars = [k8s.V1EnvVar(name=k, value=v) for k, v in sorted(env.items())]
    op.env_from = []
    op.volumes = [k8s.V1Volume(name="work", empty_dir=k8s.V1EmptyDirVolumeSource())]
    op.volume_mounts = [k8s.V1VolumeMount(name="work", mount_path=WORK_MOUNT)]
    op.container_resources = resources_for(algorithm)
    op.node_selector = dict(algorithm.get("node_selector") or {})
    op.tolerations = ([k8s.V1Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")]
                      if algorithm.get("gpu") else [])
    op.init_containers = [
        _step_container("stage", cfg.worker_image, "stage",
                        {"files": list(conf.get("input_files") or [])}, cfg, sidecar=False),
        _step_container("collect", cfg.worker_image, "collect",
                        {"folder": folder, "wait": backend == "kubernetes"}, cfg,
                        sidecar=True),
    ]
    op.namespace = cfg.namespace
    op.service_account_name = cfg.worker_service_account or None
    op.automount_service_account_token = False
    op.labels = {**_labels(RUN_TASK, labels or {}), "app.kubernetes.io/name": "perilflow-algorithm"}
    op.active_deadline_seconds = cfg.step_timeout
    op.termination_grace_period = 600  # time for the collector to upload the output after SIGTERM


def _single(pod: k8s.V1Pod, container: k8s.V1Container) -> k8s.V1Pod:
    """A copy of ``pod`` with ``container`` as its only container (the local backend runs one at a time)."""
    one = copy.deepcopy(pod)
    one.spec.containers = [copy.deepcopy(container)]
    one.spec.init_containers = None
    return one


class AlgorithmOperator(ModelStepOperator):
    """Stage the input dataset, run the algorithm, collect its output (module docstring)."""

    ui_color = "#e8dff5"

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("task_id", RUN_TASK)
        kwargs.setdefault("retries", 0)
        super().__init__(step=RUN_TASK, **kwargs)

    def build_pod_request_obj(self, context: Any = None, dry_run: bool = False) -> k8s.V1Pod:
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        pod.spec.containers[0].working_dir = WORK_MOUNT
        pod.spec.containers[0].security_context = k8s.V1SecurityContext(allow_privilege_escalation=False)
        return pod

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from perilflow.operators import storage

        raw = dict(context.get("params") or {})
        raw.update((context["dag_run"].conf or {}) if context.get("dag_run") is not None else {})
        try:
            conf = check_conf(raw)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None
        cfg = PlatformConfig.from_env()
        ti = context["ti"]
        run_uuid = conf["run_uuid"] or storage.run_uuid_for(ti.dag_id, ti.run_id)
        folder = task_folder(cfg.storage_url, conf["task_id"], run_uuid)
        self.backend = conf["backend"] or cfg.backend
        labels = {"perilflow/dag-id": ti.dag_id, "perilflow/task-id": ti.task_id,
                  "perilflow/algorithm-task": str(conf["task_id"])}
        configure_algorithm_pod(self, cfg, conf, folder, self.backend, labels)
        if self.backend == "kubernetes":
            if not conf["algorithm"].get("image"):
                raise AirflowFailException("the algorithm's docker image has no registry reference; a cluster can "
                                           "only pull images from a registry: push the image and set its `image`")
            KubernetesPodOperator.execute(self, context)
            manifest = json.loads(storage.read_text(cfg, f"{folder}/manifest.json"))
        else:
            manifest = self._run_local(context, cfg, folder)
        ti.xcom_push(key=MANIFEST_KEY, value=manifest)  # KPO's own return-value XCom needs a sidecar: not used
        return manifest

    def _run_local(self, context: Any, cfg: PlatformConfig, folder: str) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from perilflow.kernel.datasets import EXIT_CODE_FILE, LOG_FILE

        pod = self.build_pod_request_obj(context, dry_run=True)
        stage_c, collect_c = pod.spec.init_containers
        credentials = storage_env(cfg)
        with tempfile.TemporaryDirectory(prefix="perilflow-algorithm-") as work:
            mounts = {"work": work}
            try:
                LocalPodRunner(_single(pod, stage_c), mounts, timeout=cfg.step_timeout, log=self.log,
                               extra_env=credentials).run()
            except StepFailed as exc:
                raise AirflowFailException(f"could not stage the input dataset: {exc}") from None
            runner = LocalPodRunner(_single(pod, pod.spec.containers[0]), mounts, timeout=cfg.step_timeout,
                                    memory_limit=(cfg.step_memory_limit_mb or 0) * 2**20 or None, log=self.log)
            self._runner = runner
            failure: str | None = None
            try:
                runner.run()
                code = 0
            except StepFailed as exc:
                code, failure = exc.exit_code if exc.exit_code is not None else -1, str(exc)
            except (FileNotFoundError, PermissionError, ValueError) as exc:  # the command cannot be started
                code, failure = 127, str(exc)
                runner.output.append(str(exc))
            finally:
                self._runner = None
            state = Path(work)
            (state / LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
            (state / LOG_FILE).write_text("\n".join(runner.output) + ("\n" if runner.output else ""))
            (state / EXIT_CODE_FILE).write_text(f"{code}\n")
            collector = LocalPodRunner(_single(pod, collect_c), mounts, timeout=cfg.step_timeout, log=self.log,
                                       extra_env=credentials)
            manifest = _last_json(collector.run()) or {}
        if failure is not None:
            raise AirflowFailException(f"the algorithm failed (exit code {code}); its log is "
                                       f"{manifest.get('output_log')}\n{failure}")
        return manifest


def algorithm_task_dag() -> DAG:
    """The DAG of one algorithm run (the file in ``dags/`` is one line)."""
    with DAG(dag_id=ALGORITHM_TASK, description="Run an algorithm (image + command) on a dataset",
             schedule=None, catchup=False, tags=[TAG, "algorithms"], params=algorithm_params(),
             default_args={"owner": "perilflow", "retries": 0}, is_paused_upon_creation=False,
             max_active_runs=64, doc_md=__doc__) as dag:
        AlgorithmOperator()
    return dag
