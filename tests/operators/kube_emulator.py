"""An in-memory Kubernetes API on 127.0.0.1 and a toy kubelet, for running KubernetesPodOperator unmodified.

* :class:`EmulatedCluster`: kmock's KubernetesEmulator served over real HTTP from a background
  thread with its own asyncio loop. Unlike a real API server, kmock stores objects as sent;
  :class:`PodEmulator` adds what KubernetesPodOperator relies on at create time (``uid``,
  ``resourceVersion``, ``creationTimestamp``, ``status.phase: Pending``). Label selectors are
  ignored by kmock (a list returns every pod of the namespace), so give each test its own
  namespace.
* :class:`ToyKubelet`: a thread that polls for Pending pods, marks them Running, runs the
  first container through :class:`~perilflow.operators.model_step.LocalPodRunner` (command +
  args, the container's env, volume mounts mapped to local folders, emptyDirs to temporary
  folders) and writes ``Succeeded``/``Failed`` with the exit code into the container's
  ``terminated`` state.

Every thread stops by itself after its deadline, whatever the test does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import kmock
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from perilflow.operators.model_step import LocalPodRunner, StepFailed

_RESOURCE_VERSIONS = itertools.count(1)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodEmulator(kmock.KubernetesEmulator):
    """KubernetesEmulator that fills in what an API server sets on a new pod."""

    async def _handle(self, request: kmock.Request):
        if (request.action == kmock.action.CREATE and request.resource is not None
                and request.resource.plural == "pods" and isinstance(request.data, dict)):
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = str(next(_RESOURCE_VERSIONS))
            meta.setdefault("creationTimestamp", _now())
            request.data.setdefault("status", {}).setdefault("phase", "Pending")
        return await super()._handle(request)


class EmulatedCluster:
    """The emulator served on 127.0.0.1 from a daemon thread; it shuts down on ``stop()`` or after ``lifetime`` s."""

    def __init__(self, lifetime: float = 120.0) -> None:
        self.lifetime = lifetime
        self.url = ""
        self.emulator: PodEmulator | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kmock-api", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        async with PodEmulator(strict=False) as emulator, kmock.Server(emulator) as server:
            emulator.resources.load_bundled()
            self.emulator = emulator
            self.url = f"http://{server.host}:{server.port}"
            self._ready.set()
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout=self.lifetime)
            except TimeoutError:
                pass

    def start(self, timeout: float = 15.0) -> EmulatedCluster:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"the Kubernetes emulator did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stopped is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout)

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: kmock
  cluster:
    server: {self.url}
users:
- name: kmock
  user:
    token: kmock-token
contexts:
- name: kmock
  context:
    cluster: kmock
    user: kmock
    namespace: {namespace}
current-context: kmock
""")
        return path

    def pods(self, namespace: str | None = None) -> list[dict]:
        """The pods stored now (deleted ones excluded), as raw dicts."""
        assert self.emulator is not None
        pods = []
        for (resource, ns, _name), obj in list(self.emulator.objects.items()):
            if resource.plural == "pods" and not obj.deleted and (namespace is None or ns == namespace):
                pods.append(obj.raw)
        return pods

    def pod_history(self, namespace: str | None = None) -> list[tuple[str, bool]]:
        """Every pod ever created, as (name, deleted)."""
        assert self.emulator is not None
        return [(name, obj.deleted) for (resource, ns, name), obj in list(self.emulator.objects.items())
                if resource.plural == "pods" and (namespace is None or ns == namespace)]


@dataclass
class PodRun:
    namespace: str
    name: str
    argv: list[str]
    pod: dict  # the pod as the kubelet read it from the API (camelCase, as served)
    exit_code: int | None
    output: str


class ToyKubelet(threading.Thread):
    """Run the Pending pods of the emulated cluster as local processes, one at a time.

    ``mounts`` maps volume names to local folders (like the local backend's); emptyDir
    volumes get temporary folders. Stops on :meth:`stop` or after ``lifetime`` seconds.
    """

    def __init__(self, kubeconfig: Path, mounts: Mapping[str, str | os.PathLike], *, lifetime: float = 60.0,
                 poll: float = 0.1, step_timeout: float = 60.0) -> None:
        super().__init__(name="toy-kubelet", daemon=True)
        self.api = k8s_client.CoreV1Api(api_client=k8s_config.new_client_from_config(config_file=str(kubeconfig)))
        self.mounts = dict(mounts)
        self.lifetime = lifetime
        self.poll = poll
        self.step_timeout = step_timeout
        self.runs: list[PodRun] = []
        self.errors: list[BaseException] = []
        self._stop_event = threading.Event()
        self._seen: set[str] = set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        self.join(timeout)

    def run(self) -> None:
        deadline = time.monotonic() + self.lifetime
        while not self._stop_event.is_set() and time.monotonic() < deadline:
            try:
                pods = self.api.list_pod_for_all_namespaces().items
            except Exception as exc:  # noqa: BLE001 - kept for the test to report
                self.errors.append(exc)
                pods = []
            for pod in pods:
                if pod.metadata.uid in self._seen or not pod.status or pod.status.phase != "Pending":
                    continue
                self._seen.add(pod.metadata.uid)
                try:
                    self._run_pod(pod)
                except Exception as exc:  # noqa: BLE001 - kept for the test to report
                    self.errors.append(exc)
            self._stop_event.wait(self.poll)

    def _status(self, pod, phase: str, started: str, state: dict) -> None:
        container = pod.spec.containers[0]
        body = {"status": {"phase": phase, "startTime": started, "containerStatuses": [{
            "name": container.name, "image": container.image, "imageID": "", "ready": "running" in state,
            "restartCount": 0, "started": "running" in state, "state": state}]}}
        try:
            self.api.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, body)
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile (operator killed): nothing to report
                raise

    def _run_pod(self, pod) -> None:
        started = _now()
        self._status(pod, "Running", started, {"running": {"startedAt": started}})
        runner = LocalPodRunner(pod, self.mounts, timeout=self.step_timeout)
        argv: list[str] = []
        try:
            argv = runner.argv()
            code: int | None = 0
            runner.run()
            message = ""
        except StepFailed as exc:
            code, message = exc.exit_code, exc.tail
        except Exception as exc:  # noqa: BLE001 - e.g. the command is not installed: the container fails
            code, message = 127, repr(exc)
        served = self.api.api_client.sanitize_for_serialization(pod)
        self.runs.append(PodRun(pod.metadata.namespace, pod.metadata.name, argv, served, code,
                                "\n".join(runner.output)))
        exit_code = 137 if code is None or code < 0 else code
        terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                      "message": message[-4000:], "startedAt": started, "finishedAt": _now()}
        self._status(pod, "Succeeded" if exit_code == 0 else "Failed", started, {"terminated": terminated})
