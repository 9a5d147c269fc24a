"""``perilflow algorithms register|run|status|logs|download``: generic algorithm runs over the REST API.

::

    perilflow algorithms register --name count-rows --image python:3.11-slim -- python count.py
    perilflow algorithms run 3 --input data/a.csv --input data/more/ --wait
    perilflow algorithms status 7
    perilflow algorithms logs 7
    perilflow algorithms download 7 -o output.tar.gz

The server is ``--server``, else ``$PERILFLOW_SERVER``, else the local platform's (else
http://127.0.0.1:8080/perilflow); the token ``--token`` / ``$PERILFLOW_TOKEN``, else a login with
``--username``/``--password`` (``$PERILFLOW_USERNAME``/``$PERILFLOW_PASSWORD``) through
``/perilflow/access_token/`` (:class:`perilflow.client.PerilflowClient`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
EXIT_TASK_FAILED = 3


def _client(args: argparse.Namespace):  # noqa: ANN202 - PerilflowClient, imported lazily
    from perilflow.cli import _client as platform_client

    return platform_client(args)


def _out(value: Any) -> None:
    sys.stdout.write((json.dumps(value, indent=2, default=str) if not isinstance(value, str) else value) + "\n")


def _env(pairs: list[str] | None) -> dict[str, str]:
    env = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--env {pair!r}: give NAME=VALUE")
        env[name] = value
    return env


def _register(args: argparse.Namespace) -> int:
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("no command: put it after the options, e.g. `... -- python count.py`")
    resources: dict[str, dict[str, str]] = {}
    for kind, cpu, memory in (("requests", args.cpu, args.memory), ("limits", args.cpu_limit, args.memory_limit)):
        values = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
        if values:
            resources[kind] = values
    with _client(args) as client:
        image_id = None
        if args.image or args.image_file:
            found = client.request("GET", "v2/docker-images/", params={"name": args.image_name or args.name})
            match = next((i for i in found if i["image"] == args.image), None) if args.image else None
            image = match or client.request("POST", "v2/docker-images/", json={
                "name": args.image_name or args.name, "image": args.image})
            if args.image_file:
                path = Path(args.image_file)
                if not path.is_file():
                    raise FileNotFoundError(f"{path}: no such image file (make one with `docker save`)")
                with path.open("rb") as handle:
                    image = client.request("POST", f"v2/docker-images/{image['id']}/image_file/",
                                           files={"file": (path.name, handle, "application/x-tar")})
            image_id = image["id"]
        body = {"name": args.name, "docker_image": image_id, "command": command,
                "entrypoint": args.entrypoint.split() if args.entrypoint else None, "environment": _env(args.env),
                "gpu": args.gpu, "resources": resources or None, "description": args.description or ""}
        _out(client.request("POST", "v2/algorithms/", json=body))
    return 0


def _upload_dataset(client: Any, name: str, inputs: list[str]) -> dict[str, Any]:
    """A new dataset holding the files (folders: their files, names relative to the folder)."""
    files: list[tuple[str, Path]] = []
    for entry in inputs:
        path = Path(entry)
        if path.is_dir():
            files += [(p.relative_to(path).as_posix(), p) for p in sorted(path.rglob("*")) if p.is_file()]
        elif path.is_file():
            files.append((path.name, path))
        else:
            raise FileNotFoundError(f"--input {entry}: no such file or folder")
    if not files:
        raise ValueError("the inputs hold no files")
    dataset = client.request("POST", "v2/datasets/", json={"name": name})
    for rel, path in files:  # one request per file: each is streamed, none is held in memory
        with path.open("rb") as handle:
            dataset = client.request("POST", f"v2/datasets/{dataset['id']}/files/", files=[("files", (rel, handle))])
    return dataset


def _wait(client: Any, task_id: int, timeout: float, poll: float, quiet: bool) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = client.request("GET", f"v2/algorithm-tasks/{task_id}/status/")
        if not quiet:
            sys.stderr.write(f"\ralgorithm task {task_id}: {status['status']:<10}")
            sys.stderr.flush()
        if status["status"] in TERMINAL:
            if not quiet:
                sys.stderr.write("\n")
            return status
        if time.monotonic() > deadline:
            from perilflow.client import ApiError

            raise ApiError(f"algorithm task {task_id} still {status['status']} after {timeout:.0f} s; "
                               f"`perilflow algorithms status {task_id}` shows it")
        time.sleep(poll)


def _run(args: argparse.Namespace) -> int:
    if args.input and args.dataset:
        raise ValueError("give --input files or --dataset ID, not both")
    with _client(args) as client:
        algorithm = client.request("GET", f"v2/algorithms/{args.algorithm}/")
        name = args.name or f"{algorithm['name']} run"
        dataset_id = args.dataset
        if args.input:
            dataset_id = _upload_dataset(client, f"{name} input", args.input)["id"]
        task = client.request("POST", "v2/algorithm-tasks/", json={"name": name, "algorithm": algorithm["id"],
                                                                   "input_dataset": dataset_id})
        task = client.request("POST", f"v2/algorithm-tasks/{task['id']}/run/")
        if not args.wait:
            _out(task)
            return 0
        final = _wait(client, task["id"], args.timeout, args.poll, args.quiet)
        _out(client.request("GET", f"v2/algorithm-tasks/{task['id']}/"))
    return 0 if final["status"] == "SUCCEEDED" else EXIT_TASK_FAILED


def _status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        task = client.request("GET", f"v2/algorithm-tasks/{args.id}/")
    if args.json:
        _out(task)
    else:
        timing = task.get("timing") or {}
        seconds = timing.get("run_seconds")
        extra = f"  exit code {task['exit_code']}" if task.get("exit_code") is not None else ""
        extra += f"  {seconds:.1f} s" if seconds is not None else ""
        extra += f"  output dataset {task['output_dataset']}" if task.get("output_dataset") else ""
        _out(f"{task['id']}  {task['status']}{extra}")
    return 0


def _logs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        reply = client._send("GET", f"v2/algorithm-tasks/{args.id}/output_log/")
    sys.stdout.write(reply.text)
    return 0


def _download(args: argparse.Namespace) -> int:
    with _client(args) as client:
        dataset = client.request("GET", f"v2/algorithm-tasks/{args.id}/output_dataset/")
        target = Path(args.output or f"algorithm-task-{args.id}-output.tar.gz")
        _out(str(client.download(f"v2/datasets/{dataset['id']}/download/", target)))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add ``algorithms`` and its sub-commands to the ``perilflow`` parser."""
    from perilflow.cli import _add_client_options

    parser = subparsers.add_parser("algorithms", help="run any algorithm (image + command) on a dataset (REST API)")
    sub = parser.add_subparsers(dest="algorithms_command", metavar="ALGORITHMS_COMMAND")
    sub.required = True

    reg = sub.add_parser("register", help="register an algorithm: the command after the options (after --)")
    _add_client_options(reg)
    reg.add_argument("--name", required=True)
    reg.add_argument("--image", help="image in a registry, e.g. registry.example.com/team/algo:1.2 (kubernetes)")
    reg.add_argument("--image-file", help="upload this `docker save` tarball as the image's file")
    reg.add_argument("--image-name", help="name of the docker image object (default: --name)")
    reg.add_argument("--entrypoint", help="words put before the command (the image's ENTRYPOINT is not used)")
    reg.add_argument("--env", action="append", metavar="NAME=VALUE", help="environment variable (repeatable)")
    reg.add_argument("--gpu", action="store_true", help="run on a node with a GPU (nvidia.com/gpu: 1)")
    reg.add_argument("--cpu", help="CPU request, e.g. 2")
    reg.add_argument("--memory", help="memory request, e.g. 4Gi")
    reg.add_argument("--cpu-limit", help="CPU limit")
    reg.add_argument("--memory-limit", help="memory limit, e.g. 8Gi")
    reg.add_argument("--description")
    reg.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments")
    reg.set_defaults(func=_register)

    run = sub.add_parser("run", help="upload input files as a dataset, run the algorithm on it")
    _add_client_options(run)
    run.add_argument("algorithm", type=int, help="algorithm id")
    run.add_argument("--input", action="append", metavar="PATH", help="file or folder to upload (repeatable)")
    run.add_argument("--dataset", type=int, help="run on this existing dataset instead")
    run.add_argument("--name", help="task name (default: '<algorithm> run')")
    run.add_argument("--wait", action="store_true", help="wait until it ends (exit 3 if it failed or was cancelled)")
    run.add_argument("--timeout", type=float, default=3600, help="seconds to wait (3600)")
    run.add_argument("--poll", type=float, default=2.0, help="seconds between looks (2)")
    run.add_argument("--quiet", action="store_true", help="no status line while waiting")
    run.set_defaults(func=_run)

    st = sub.add_parser("status", help="status of an algorithm task")
    _add_client_options(st)
    st.add_argument("id", type=int, help="algorithm task id")
    st.add_argument("--json", action="store_true", help="print the whole task object")
    st.set_defaults(func=_status)

    logs = sub.add_parser("logs", help="the algorithm's output log (stdout and stderr)")
    _add_client_options(logs)
    logs.add_argument("id", type=int, help="algorithm task id")
    logs.set_defaults(func=_logs)

    down = sub.add_parser("download", help="the output dataset as a .tar.gz")
    _add_client_options(down)
    down.add_argument("id", type=int, help="algorithm task id")
    down.add_argument("--output", "-o", help="target path (default: algorithm-task-<id>-output.tar.gz)")
    down.set_defaults(func=_download)
