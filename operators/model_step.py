"""One model-step operator, two backends, one pod spec.

:class:`ModelStepOperator` is a KubernetesPodOperator whose container runs
``perilflow-worker <step> --params <json>`` (the worker contract, ARCHITECTURE.md).
:func:`configure_pod` sets every part of the pod (image, command, env, volumes, resources,
node selector, labels) from the platform config and the model's runtime settings, then:

* backend ``kubernetes``: KubernetesPodOperator submits that pod, unmodified;
* backend ``local``: :class:`LocalPodRunner` runs the same pod (the one
  ``build_pod_request_obj`` returns) as a local process: command + args of its container,
  its env, each volume mount mapped to a local folder, its memory limit enforced, its
  output streamed into the task log.

Either way the worker gets storage credentials only: its env is built from the pod spec,
never inherited from the Airflow worker, so no database URL reaches it.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.pod_generator import make_safe_label_value
from kubernetes.client import models as k8s

from perilflow.operators.config import PlatformConfig

WORKER_COMMAND = "perilflow-worker"
MODELS_MOUNT = "/var/perilflow/models"
WORK_MOUNT = "/var/perilflow/work"
#: worker exit codes (perilflow.kernel.worker): bad input and no keys are not retried
EXIT_BAD_INPUT = 2
EXIT_NO_KEYS = 3
#: key of the step params that carries the pod's runtime settings (not passed to the worker)
RUNTIME_KEY = "_runtime"
_PASSED_THROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS", "TZ")


class StepFailed(RuntimeError):
    """A model step exited with a failure; carries the exit code and the end of its output."""

    def __init__(self, message: str, exit_code: int | None, tail: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.tail = tail


def storage_env(cfg: PlatformConfig) -> dict[str, str]:
    """Credentials for the storage, and nothing else, as env vars for the worker.

    ``file://`` storage needs none; ``s3://`` storage gets the keys, region and endpoint of
    the Airflow connection ``PERILFLOW_STORAGE_CONN_ID`` (read on the Airflow worker).
    """
    if not cfg.storage_url.startswith("s3://"):
        return {}
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(cfg.storage_conn_id)
    extra = conn.extra_dejson
    env = {"AWS_ACCESS_KEY_ID": conn.login or extra.get("aws_access_key_id", ""),
           "AWS_SECRET_ACCESS_KEY": conn.password or extra.get("aws_secret_access_key", "")}
    endpoint = extra.get("endpoint_url") or (extra.get("service_config") or {}).get("s3", {}).get("endpoint_url")
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    region = extra.get("region_name")
    if region:
        env["AWS_DEFAULT_REGION"] = region
    return {k: v for k, v in env.items() if v}


def _labels(step: str, context_labels: Mapping[str, str]) -> dict[str, str]:
    """The pod's labels; values made valid label values (at most 63 characters, alphanumeric at both ends)."""
    labels = {"app.kubernetes.io/name": "perilflow-model-worker", "perilflow/step": step}
    labels.update({k: make_safe_label_value(str(v)) for k, v in context_labels.items()})
    return labels


def configure_pod(op: ModelStepOperator, cfg: PlatformConfig, runtime: Mapping[str, Any],
                  worker_params: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> None:
    """Set the pod of ``op`` for one step: the single place the model-step pod spec is written.

    ``runtime`` is the model's runtime settings from the run conf: ``worker_image``,
    ``worker_command`` (the image's worker entry point, default ``perilflow-worker``),
    ``resources`` ({"requests": {...}, "limits": {...}}), ``node_selector``, ``env``.
    """
    op.image = runtime.get("worker_image") or cfg.worker_image
    op.cmds = list(runtime.get("worker_command") or [WORKER_COMMAND])
    op.arguments = [op.step, "--params", json.dumps(dict(worker_params), sort_keys=True)]
    env = {"PERILFLOW_MODEL_ROOT": MODELS_MOUNT, "PERILFLOW_WORK_DIR": WORK_MOUNT}
    env.update({str(k): str(v) for k, v in (runtime.get("env") or {}).items()})
    op.env_vars = [k8s.V1EnvVar(name=k, value=v) for k, v in sorted(env.items())]
    if cfg.storage_url.startswith("s3://"):
        op.env_from = [k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="perilflow-storage"))]
    op.volumes = [
        k8s.V1Volume(name="models", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
            claim_name=cfg.models_pvc, read_only=True)),
        k8s.V1Volume(name="work", empty_dir=k8s.V1EmptyDirVolumeSource()),
    ]
    op.volume_mounts = [k8s.V1VolumeMount(name="models", mount_path=MODELS_MOUNT, read_only=True),
                        k8s.V1VolumeMount(name="work", mount_path=WORK_MOUNT)]
    resources = runtime.get("resources") or {}
    op.container_resources = k8s.V1ResourceRequirements(
        requests=resources.get("requests") or {"cpu": "1", "memory": "1Gi"},
        limits=resources.get("limits") or {"memory": "4Gi"})
    op.node_selector = dict(runtime.get("node_selector") or {})
    op.namespace = runtime.get("namespace") or cfg.namespace
    op.service_account_name = cfg.worker_service_account or None
    op.automount_service_account_token = False  # a model step never calls the Kubernetes API
    op.labels = _labels(op.step, labels or {})
    op.active_deadline_seconds = cfg.step_timeout


def memory_bytes(quantity: str | None) -> int | None:
    """A Kubernetes memory quantity ("4Gi", "512M", "1e9") in bytes."""
    if not quantity:
        return None
    text = str(quantity).strip()
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * factor)
    return int(float(text))


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the task process dies (so a killed task leaves no worker behind)."""
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: on_kill and the process group still stop it
        pass


class LocalPodRunner:
    """Run a pod's first container as a local process, as a kubelet would run it in a pod.

    ``mounts`` maps volume names to local folders; a volume without one that is an
    ``emptyDir`` gets a fresh temporary folder. Env values that start with a mount path are
    rewritten to the local folder. ``limits.memory`` of the container (or ``memory_limit``)
    is enforced on the resident memory of the process tree.
    """

    def __init__(self, pod: k8s.V1Pod, mounts: Mapping[str, str | os.PathLike], *, timeout: float | None = None,
                 memory_limit: int | None = None, log=None, extra_env: Mapping[str, str] | None = None) -> None:
        self.pod = pod
        self.container = pod.spec.containers[0]
        self.mounts = {k: Path(v) for k, v in mounts.items()}
        self.timeout = timeout
        limits = (self.container.resources.limits or {}) if self.container.resources else {}
        self.memory_limit = memory_limit or memory_bytes(limits.get("memory"))
        self.log = log
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen | None = None
        self.tail: deque[str] = deque(maxlen=40)
        self.output: list[str] = []
        self.killed_for_memory = False

    def _volume_dirs(self, scratch: Path) -> dict[str, Path]:
        paths: dict[str, Path] = {}
        for volume in self.pod.spec.volumes or []:
            if volume.name in self.mounts:
                paths[volume.name] = self.mounts[volume.name]
            elif volume.host_path is not None:
                paths[volume.name] = Path(volume.host_path.path)
            elif volume.empty_dir is not None:
                paths[volume.name] = scratch / volume.name
                paths[volume.name].mkdir(parents=True)
            else:
                raise ValueError(f"volume {volume.name!r} has no local folder; map it in the local backend's mounts")
        return paths

    def environment(self, scratch: Path) -> dict[str, str]:
        dirs = self._volume_dirs(scratch)
        mount_map = {m.mount_path.rstrip("/"): dirs[m.name] for m in self.container.volume_mounts or []}
        self._mount_map = mount_map
        env = {k: os.environ[k] for k in _PASSED_THROUGH_ENV if k in os.environ}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.defpath)}"
        for var in self.container.env or []:
            value = var.value or ""
            for mount_path, local in sorted(mount_map.items(), key=lambda item: -len(item[0])):
                if value == mount_path or value.startswith(mount_path + "/"):
                    value = str(local) + value[len(mount_path):]
                    break
            env[var.name] = value
        env.update(self.extra_env)
        return env

    def working_dir(self, scratch: Path) -> Path:
        """The container's ``workingDir`` as a local folder (call after :meth:`environment`); else ``scratch``."""
        wanted = (self.container.working_dir or "").rstrip("/")
        for mount_path, local in sorted(getattr(self, "_mount_map", {}).items(), key=lambda item: -len(item[0])):
            if wanted == mount_path or wanted.startswith(mount_path + "/"):
                return local / wanted[len(mount_path):].lstrip("/")
        return scratch

    def argv(self) -> list[str]:
        command = list(self.container.command or []) + list(self.container.args or [])
        if not command:
            raise ValueError("the pod's container has no command")
        exe = shutil.which(command[0], path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        if exe is None:
            raise FileNotFoundError(f"{command[0]}: not found on PATH; install the model worker "
                                    "(pip install perilflow)")
        return [exe, *command[1:]]

    def _watch_memory(self) -> None:
        import psutil

        assert self.process is not None
        try:
            root = psutil.Process(self.process.pid)
        except psutil.NoSuchProcess:
            return
        while self.process.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            except psutil.Error:
                rss = 0
            if self.memory_limit and rss > self.memory_limit:
                self.killed_for_memory = True
                self.kill()
                return
            time.sleep(0.2)

    def run(self) -> str:
        """Run to completion; return the output, or raise :class:`StepFailed`."""
        with tempfile.TemporaryDirectory(prefix="perilflow-pod-") as scratch:
            env = self.environment(Path(scratch))
            argv = self.argv()
            self.process = subprocess.Popen(argv, env=env, cwd=self.working_dir(Path(scratch)), stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent)
            watcher = threading.Thread(target=self._watch_memory, daemon=True)
            if self.memory_limit:
                watcher.start()
            timer = threading.Timer(self.timeout, self.kill) if self.timeout else None
            if timer:
                timer.start()
            try:
                assert self.process.stdout is not None
                for line in self.process.stdout:
                    line = line.rstrip("\n")
                    self.tail.append(line)
                    self.output.append(line)
                    if self.log is not None:
                        self.log.info("%s", line)
                code = self.process.wait()
            finally:
                if timer:
                    timer.cancel()
        text = "\n".join(self.output)
        if self.killed_for_memory:
            raise StepFailed(f"the step exceeded its memory limit of {self.memory_limit / 2**20:.0f} MiB and was "
                             "killed; raise resources.limits.memory for the model or use more chunks", code,
                             "\n".join(self.tail))
        if code != 0:
            raise StepFailed(f"{' '.join(argv[:2])} exited with code {code}:\n" + "\n".join(self.tail), code,
                             "\n".join(self.tail))
        return text

    def kill(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after 5 s)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class ModelStepOperator(KubernetesPodOperator):
    """Run one worker step of an analysis: ``perilflow-worker <step> --params <step_params>``.

    ``step_params`` is templated (an XComArg from the params task, or one element of it when
    mapped); its ``_runtime`` entry carries the model's pod settings and is not passed to the
    worker. ``None`` or ``{}`` skips the task (the step is not part of this run's mode).
    """

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "step_params")
    ui_color = "#d9ecf2"

    def __init__(self, *, step: str, step_params: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("name", f"perilflow-{step}")
        kwargs.setdefault("get_logs", True)
        kwargs.setdefault("do_xcom_push", False)
        kwargs.setdefault("on_finish_action", "delete_pod")
        kwargs.setdefault("startup_check_interval_seconds", 2)
        super().__init__(**kwargs)
        self.step = step
        self.step_params = step_params
        self._runner: LocalPodRunner | None = None
        self.backend = "local"

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        if not self.step_params:
            raise AirflowSkipException(f"{self.step} is not part of this run (see its run_mode)")
        cfg = PlatformConfig.from_env()
        params = dict(self.step_params)
        runtime = params.pop(RUNTIME_KEY, None) or {}
        ti = context["ti"]
        labels = {"perilflow/dag-id": ti.dag_id, "perilflow/task-id": ti.task_id,
                  "perilflow/analysis": str(runtime.get("analysis_id", ""))}
        if ti.map_index is not None and ti.map_index >= 0:  # "-1" is not a valid label value
            labels["perilflow/map-index"] = str(ti.map_index)
        configure_pod(self, cfg, runtime, params, labels)
        self.backend = runtime.get("backend") or cfg.backend
        if self.backend == "kubernetes":
            try:
                return super().execute(context)
            except AirflowFailException:
                raise
            except Exception as exc:
                if _exit_code(self.remote_pod, self.base_container_name) in (EXIT_BAD_INPUT, EXIT_NO_KEYS):
                    raise AirflowFailException(f"{exc}\n(the worker refused its input: not retried)") from None
                raise
        pod = self.build_pod_request_obj(context, dry_run=True)
        self._runner = LocalPodRunner(pod, {"models": cfg.model_root}, timeout=cfg.step_timeout,
                                      memory_limit=(cfg.step_memory_limit_mb or 0) * 2**20 or None,
                                      log=self.log, extra_env=storage_env(cfg))
        runner = self._runner
        try:
            output = runner.run()
        except StepFailed as exc:
            if exc.exit_code in (EXIT_BAD_INPUT, EXIT_NO_KEYS):
                raise AirflowFailException(str(exc)) from None
            raise
        finally:
            self._runner = None
            _store_log(cfg, runtime.get("folder"), ti, "\n".join(runner.output), self.log)
        return _last_json(output)

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.kill()
            return
        if self.backend == "kubernetes":
            super().on_kill()


def _store_log(cfg: PlatformConfig, folder: str | None, ti: Any, text: str, log: Any) -> None:
    """Keep a step's output in the run's folder: ``logs/<task>[-<map index>]-try<n>.log``."""
    if not folder:
        return
    from perilflow.operators import storage

    label = ti.task_id if ti.map_index < 0 else f"{ti.task_id}-{ti.map_index}"
    try:
        storage.write_text(cfg, f"{folder}/logs/{storage.safe_name(label)}-try{ti.try_number}.log", text + "\n")
    except Exception:  # noqa: BLE001 - the step's own result matters more than its log copy
        log.exception("could not store the log of %s", label)


def _exit_code(pod: k8s.V1Pod | None, container: str) -> int | None:
    """Exit code of ``container`` in a finished pod, when the API reported it."""
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    for status in statuses:
        if status.name == container and status.state and status.state.terminated:
            return status.state.terminated.exit_code
    return None


def _last_json(output: str) -> dict[str, Any] | None:
    """The worker prints its result as one JSON line at the end."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None
