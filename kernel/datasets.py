"""Datasets around an algorithm run: stage the input into ``<workdir>/input``, collect ``<workdir>/output``.

The worker contract for algorithms that are not loss models (ARCHITECTURE.md): the input
dataset is placed in ``<workdir>/input``, the algorithm runs with ``<workdir>`` as its
working folder, and whatever it leaves in ``<workdir>/output`` becomes the output dataset.
Its stdout and stderr are the task's output log.

The algorithm's own image need not carry Perilflow: these two steps run in the model-worker
image beside it (a Kubernetes init container and a sidecar, or local processes), as

    python -m perilflow.kernel.datasets stage --params '{"files": [{"name": ..., "uri": ...}]}'
    python -m perilflow.kernel.datasets collect --params '{"folder": <uri>}'

The workdir is ``$PERILFLOW_WORK_DIR`` (the pod's work volume; the local backend maps it to a
temporary folder), or ``workdir`` in the params.

``collect`` uploads the output files to ``{folder}/output/<name>``, the log to
``{folder}/output.log`` and writes ``{folder}/manifest.json`` last (files, sizes, exit code),
so a reader that finds the manifest finds everything it lists. The algorithm's exit code and
log are left in ``<workdir>/.perilflow/`` by whatever ran it (:data:`EXIT_CODE_FILE`,
:data:`LOG_FILE`). With ``"wait": true`` (the Kubernetes sidecar) ``collect`` first waits for
SIGTERM, which the kubelet sends once the algorithm's container has ended.

No Airflow here: the model-worker image runs this module.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from perilflow.kernel import storage

#: the folder inside the workdir that holds the run's own files (not part of the output)
STATE_DIR = ".perilflow"
EXIT_CODE_FILE = f"{STATE_DIR}/exit_code"
LOG_FILE = f"{STATE_DIR}/output.log"
MANIFEST = "manifest.json"
WORK_DIR_ENV = "PERILFLOW_WORK_DIR"


def task_folder(storage_url: str, task_id: int, run_uuid: str) -> str:
    """Storage folder of one run of an algorithm task: ``output/``, ``output.log``, ``manifest.json``."""
    suffix = "".join(c for c in str(run_uuid) if c.isalnum()) or "x"
    return f"{str(storage_url).rstrip('/')}/algorithm-tasks/task-{int(task_id)}-{suffix}"


def safe_relative(name: str) -> PurePosixPath:
    """``name`` as a relative path inside a dataset; refuses absolute paths, ``..`` and empty names."""
    path = PurePosixPath(str(name).replace("\\", "/"))
    if not str(name).strip() or path.is_absolute() or ".." in path.parts or str(path) in (".", ""):
        raise ValueError(f"dataset file name {name!r} must be a relative path without '..'; rename the file")
    return path


def stage(workdir: str | Path, files: Sequence[dict[str, Any]]) -> list[str]:
    """Copy each ``{"name", "uri"}`` into ``<workdir>/input/<name>``; make ``<workdir>/output``. Returns the names."""
    work = Path(workdir)
    (work / "output").mkdir(parents=True, exist_ok=True)
    (work / STATE_DIR).mkdir(parents=True, exist_ok=True)
    (work / "input").mkdir(parents=True, exist_ok=True)
    names = []
    for entry in files:
        name = safe_relative(entry["name"])
        storage.fetch(entry["uri"], work / "input" / name)
        names.append(str(name))
    return names


def _exit_code(work: Path) -> int | None:
    path = work / EXIT_CODE_FILE
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def collect(workdir: str | Path, folder: str) -> dict[str, Any]:
    """Upload ``<workdir>/output`` and the log under ``folder``; write and return the manifest."""
    work = Path(workdir)
    out = work / "output"
    listed = []
    for path in sorted(out.rglob("*")) if out.is_dir() else []:
        if not path.is_file() or path.is_symlink():  # links could point anywhere on the machine: not collected
            continue
        name = path.relative_to(out).as_posix()
        uri = storage.put(path, storage.join(folder, "output", name))
        listed.append({"name": name, "uri": uri, "size": path.stat().st_size,
                       "content_type": mimetypes.guess_type(name)[0] or "application/octet-stream"})
    log = work / LOG_FILE
    log_uri = storage.put(log, storage.join(folder, "output.log")) if log.is_file() else None
    manifest = {"folder": folder, "files": listed, "size": sum(f["size"] for f in listed),
                "exit_code": _exit_code(work), "output_log": log_uri}
    storage.put_bytes(json.dumps(manifest, indent=2, sort_keys=True).encode(), storage.join(folder, MANIFEST))
    return manifest


def _wait_for_sigterm() -> None:
    """Block until SIGTERM (the kubelet stops a sidecar once the pod's main containers have ended)."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()


def main(argv: Sequence[str] | None = None) -> int:
    from perilflow.kernel.worker import load_params

    parser = argparse.ArgumentParser(prog="python -m perilflow.kernel.datasets",
                                     description="Stage an algorithm's input dataset or collect its output.")
    parser.add_argument("action", choices=("stage", "collect"))
    parser.add_argument("--params", required=True, help="JSON object, or the path of a JSON file")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        workdir = params.get("workdir") or os.environ.get(WORK_DIR_ENV)
        if not workdir:
            raise ValueError(f"no workdir: set {WORK_DIR_ENV} or give workdir in the params")
        if args.action == "stage":
            names = stage(workdir, params.get("files") or [])
            sys.stdout.write(json.dumps({"staged": names}) + "\n")
        else:
            if params.get("wait"):
                _wait_for_sigterm()
            sys.stdout.write(json.dumps(collect(workdir, params["folder"]), sort_keys=True) + "\n")
    except (KeyError, ValueError, storage.StorageError) as exc:
        sys.stderr.write(f"perilflow datasets {args.action}: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
