"""``/v2/docker-images/``, ``/v2/algorithms/`` and ``/v2/algorithm-tasks/``: run any algorithm on a dataset.

An algorithm task runs its algorithm (image + command) on its input dataset as one run of the
DAG ``perilflow_algorithm_task`` (:mod:`perilflow.operators.algorithms`). Its status is kept
here and moved on from that DAG run, by :func:`sync` on every read while it is QUEUED or
RUNNING and by the plugin's listener when the run changes state:

==========================================  ===========
DAG run                                     task status
==========================================  ===========
no run yet                                  CREATED
queued (or running, task not started)       QUEUED
running, ``run-algorithm`` started           RUNNING
success                                     SUCCEEDED (output dataset created from the manifest)
failed, the task failed                     FAILED (exit code and log from the manifest)
failed, no task failed / ``cancel/``        CANCELLED
==========================================  ===========

The outcome (exit code, log URI, output dataset) is read from the run's ``manifest.json`` in
storage, so it does not depend on Airflow keeping the run.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, UploadFile, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from perilflow.kernel.datasets import MANIFEST, task_folder
from perilflow.plugins.api import files
from perilflow.plugins.api.auth import (
    Caller,
    CallerDep,
    DbDep,
    SettingsDep,
    api_base,
    get_changeable,
    get_visible,
    may_change,
    resolve_groups,
    visible,
)
from perilflow.plugins.api.gateway import WorkflowError, WorkflowGateway
from perilflow.plugins.api.routes.datasets import dataset_json
from perilflow.plugins.db.algorithms import Algorithm, AlgorithmTask, Dataset, DatasetFile, DockerImage
from perilflow.plugins.db.models import StoredFile, as_utc
from perilflow.plugins.settings import ApiSettings

#: the DAG and its one task (perilflow.operators.algorithms; not imported here: it loads KubernetesPodOperator)
ALGORITHM_TASK = "perilflow_algorithm_task"
RUN_TASK = "run-algorithm"
STATUSES = ("CREATED", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
ACTIVE = frozenset({"QUEUED", "RUNNING"})
RUN_FROM = frozenset({"CREATED", "SUCCEEDED", "FAILED", "CANCELLED"})

images = APIRouter(prefix="/v2/docker-images", tags=["docker-images"])
algorithms = APIRouter(prefix="/v2/algorithms", tags=["algorithms"])
tasks = APIRouter(prefix="/v2/algorithm-tasks", tags=["algorithm-tasks"])


def _now() -> datetime:
    return datetime.now(UTC)


def _filtered(db: Session, entity: Any, caller: Caller, **equal: Any) -> list[Any]:
    stmt = select(entity).order_by(entity.id)
    clause = visible(entity, caller)
    if clause is not None:
        stmt = stmt.where(clause)
    for column, value in equal.items():
        if value is not None:
            stmt = stmt.where(getattr(entity, column) == value)
    return list(db.scalars(stmt))


def _visible_ref(db: Session, entity: Any, pk: int, caller: Caller, field: str, what: str) -> Any:
    """A referenced object the caller may see, else 400 naming the field (as the reference does)."""
    stmt = select(entity).where(entity.id == pk)
    clause = visible(entity, caller)
    obj = db.scalar(stmt if clause is None else stmt.where(clause))
    if obj is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, {field: [f"{what} {pk} not found; list them at "
                                                                  f"/v2/{entity.__tablename__.replace('_', '-')}/"]})
    return obj


# ----------------------------------------------------------------------------- docker images


class DockerImageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    image: str | None = Field(default=None, max_length=1000,
                              description="registry reference, e.g. registry.example.com/team/algo:1.2")
    description: str = ""
    groups: list[str] | None = None


class DockerImagePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    image: str | None = Field(default=None, max_length=1000)
    description: str | None = None
    groups: list[str] | None = None


def image_json(request: Request, i: DockerImage) -> dict[str, Any]:
    base = f"{api_base(request)}/v2/docker-images/{i.id}"
    return {"id": i.id, "name": i.name, "image": i.image, "description": i.description, "creator": i.creator,
            "created": i.created, "modified": i.modified, "groups": sorted(g.name for g in i.groups),
            "image_file": f"{base}/image_file/" if i.image_file else None,
            "image_file_size": i.image_file.size if i.image_file else None}


@images.get("/", summary="List docker images (filter: name)")
def list_images(request: Request, db: DbDep, caller: CallerDep, name: str | None = None) -> list[dict[str, Any]]:
    return [image_json(request, i) for i in _filtered(db, DockerImage, caller, name=name)]


@images.post("/", status_code=status.HTTP_201_CREATED,
             summary="Register an image: a registry reference and/or (then) an uploaded image_file/")
def create_image(request: Request, body: DockerImageIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    i = DockerImage(name=body.name, image=body.image, description=body.description, creator=caller.name,
                    groups=resolve_groups(db, body.groups, caller))
    db.add(i)
    db.flush()
    return image_json(request, i)


@images.get("/{image_pk}/", summary="One docker image")
def get_image(request: Request, image_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    return image_json(request, get_visible(db, DockerImage, image_pk, caller, "docker image"))


@images.patch("/{image_pk}/", summary="Change a docker image's fields")
def patch_image(request: Request, image_pk: int, body: DockerImagePatch, db: DbDep, caller: CallerDep
                ) -> dict[str, Any]:
    i = get_changeable(db, DockerImage, image_pk, caller, "docker image")
    fields = body.model_dump(exclude_unset=True)
    for name in ("name", "image", "description"):
        if name in fields and (fields[name] is not None or name == "image"):
            setattr(i, name, fields[name])
    if "groups" in fields:
        i.groups = resolve_groups(db, fields["groups"], caller)
    db.flush()
    return image_json(request, i)


@images.delete("/{image_pk}/", status_code=status.HTTP_204_NO_CONTENT,
               summary="Delete a docker image (409 while an algorithm uses it)")
def delete_image(image_pk: int, db: DbDep, caller: CallerDep) -> Response:
    i = get_changeable(db, DockerImage, image_pk, caller, "docker image")
    used = db.scalar(select(Algorithm.id).where(Algorithm.docker_image_id == i.id))
    if used is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"algorithm {used} uses docker image {i.id}; "
                            "delete or change that algorithm first")
    if i.image_file is not None:
        files.remove_after_commit(db, i.image_file.uri)
        db.delete(i.image_file)
    db.delete(i)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@images.post("/{image_pk}/image_file/", summary="Upload the image file (`docker save` tarball; multipart `file`)")
def upload_image_file(request: Request, image_pk: int, file: UploadFile, db: DbDep, caller: CallerDep,
                      settings: SettingsDep) -> dict[str, Any]:
    i = get_changeable(db, DockerImage, image_pk, caller, "docker image")
    uri, filename, size = files.store_upload(settings, file, f"docker_images/{i.id}", "image")
    files.remove_after_rollback(db, uri)
    old = i.image_file
    i.image_file = StoredFile(uri=uri, filename=filename, size=size, creator=caller.name,
                              content_type=file.content_type or "application/x-tar")
    if old is not None:
        files.remove_after_commit(db, old.uri)
        db.delete(old)
    db.flush()
    return image_json(request, i)


@images.get("/{image_pk}/image_file/", summary="Download the image file", response_model=None)
def download_image_file(image_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> Response:
    i = get_visible(db, DockerImage, image_pk, caller, "docker image")
    if i.image_file is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"docker image {image_pk} has no image file; POST one first")
    return files.stream(settings, i.image_file.uri, i.image_file.filename, i.image_file.content_type,
                        missing="image file")


# ----------------------------------------------------------------------------- algorithms


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: dict[str, str | int | float] | None = None
    limits: dict[str, str | int | float] | None = None


def _check_command(value: list[str] | None, field: str) -> list[str] | None:
    if value is not None and (not value or any(not part for part in value)):
        raise ValueError(f"{field} must be a non-empty list of non-empty strings, e.g. [\"python\", \"run.py\"]")
    return value


class AlgorithmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    docker_image: int | None = Field(default=None, description="id of a docker image (none: run locally only)")
    command: list[str] = Field(description="the command and its arguments, run in the workdir "
                                           "(input/ holds the input dataset; leave results in output/)")
    entrypoint: list[str] | None = Field(default=None, description="put before the command (the image's "
                                                                   "ENTRYPOINT is not used)")
    environment: dict[str, str] = Field(default_factory=dict)
    gpu: bool = False
    resources: Resources | None = None
    description: str = ""
    groups: list[str] | None = None

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        return _check_command(value, "command") or []

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, value: list[str] | None) -> list[str] | None:
        return _check_command(value, "entrypoint")


class AlgorithmPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=255)
    docker_image: int | None = None
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    environment: dict[str, str] | None = None
    gpu: bool | None = None
    resources: Resources | None = None
    description: str | None = None
    groups: list[str] | None = None

    @field_validator("command", "entrypoint")
    @classmethod
    def _lists(cls, value: list[str] | None) -> list[str] | None:
        return _check_command(value, "command / entrypoint")


def algorithm_json(request: Request, a: Algorithm) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "description": a.description, "docker_image": a.docker_image_id,
            "image": a.docker_image.image if a.docker_image else None, "command": a.command,
            "entrypoint": a.entrypoint, "environment": a.environment or {}, "gpu": a.gpu,
            "resources": a.resources, "creator": a.creator, "created": a.created, "modified": a.modified,
            "groups": sorted(g.name for g in a.groups)}


def _set_algorithm(db: Session, a: Algorithm, fields: dict[str, Any], caller: Caller) -> None:
    if "docker_image" in fields:
        image = fields["docker_image"]
        a.docker_image = None if image is None else _visible_ref(db, DockerImage, image, caller, "docker_image",
                                                                 "docker image")
    for name, column in (("name", "name"), ("command", "command"), ("entrypoint", "entrypoint"),
                         ("environment", "environment"), ("gpu", "gpu"), ("description", "description")):
        if name in fields and (fields[name] is not None or name == "entrypoint"):
            setattr(a, column, fields[name])
    if "resources" in fields:
        resources = fields["resources"]
        a.resources = None if resources is None else {k: {n: str(v) for n, v in (resources.get(k) or {}).items()}
                                                      for k in ("requests", "limits") if resources.get(k)}
    if "groups" in fields:
        a.groups = resolve_groups(db, fields["groups"], caller)


@algorithms.get("/", summary="List algorithms (filters: name, docker_image)")
def list_algorithms(request: Request, db: DbDep, caller: CallerDep, name: str | None = None,
                    docker_image: int | None = None) -> list[dict[str, Any]]:
    return [algorithm_json(request, a) for a in _filtered(db, Algorithm, caller, name=name,
                                                         docker_image_id=docker_image)]


@algorithms.post("/", status_code=status.HTTP_201_CREATED, summary="Register an algorithm (image + command)")
def create_algorithm(request: Request, body: AlgorithmIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    a = Algorithm(creator=caller.name, command=[], groups=[])
    _set_algorithm(db, a, {**body.model_dump(), "groups": body.groups}, caller)
    db.add(a)
    db.flush()
    return algorithm_json(request, a)


@algorithms.get("/{algorithm_pk}/", summary="One algorithm")
def get_algorithm(request: Request, algorithm_pk: int, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    return algorithm_json(request, get_visible(db, Algorithm, algorithm_pk, caller, "algorithm"))


@algorithms.patch("/{algorithm_pk}/", summary="Change an algorithm's fields")
def patch_algorithm(request: Request, algorithm_pk: int, body: AlgorithmPatch, db: DbDep, caller: CallerDep
                    ) -> dict[str, Any]:
    a = get_changeable(db, Algorithm, algorithm_pk, caller, "algorithm")
    _set_algorithm(db, a, body.model_dump(exclude_unset=True), caller)
    db.flush()
    return algorithm_json(request, a)


@algorithms.delete("/{algorithm_pk}/", status_code=status.HTTP_204_NO_CONTENT,
                   summary="Delete an algorithm (409 while tasks use it)")
def delete_algorithm(algorithm_pk: int, db: DbDep, caller: CallerDep) -> Response:
    a = get_changeable(db, Algorithm, algorithm_pk, caller, "algorithm")
    used = db.scalar(select(AlgorithmTask.id).where(AlgorithmTask.algorithm_id == a.id))
    if used is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"algorithm task {used} uses algorithm {a.id}; "
                            "delete its tasks first")
    db.delete(a)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ----------------------------------------------------------------------------- algorithm tasks: status


def gateway_of(request: Request) -> WorkflowGateway:
    return request.app.state.perilflow_gateway


def read_manifest(settings: ApiSettings, task: AlgorithmTask) -> dict[str, Any] | None:
    """The run's ``manifest.json`` (written last by the collector), or None when there is none."""
    if not task.run_uuid:
        return None
    path = files.storage_path(settings, f"{task_folder(settings.storage_url, task.id, task.run_uuid)}/{MANIFEST}")
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None


def _output_dataset(db: Session, task: AlgorithmTask, manifest: dict[str, Any]) -> Dataset:
    dataset = Dataset(name=f"{task.name} output", description=f"output of algorithm task {task.id}",
                      folder=f"{manifest.get('folder')}/output", source_task_id=task.id, creator=task.creator,
                      groups=list(task.groups),
                      files=[DatasetFile(name=f["name"], uri=f["uri"], size=f.get("size"),
                                         content_type=f.get("content_type") or "application/octet-stream")
                             for f in manifest.get("files") or []])
    db.add(dataset)
    return dataset


def _take_manifest(settings: ApiSettings, task: AlgorithmTask) -> dict[str, Any]:
    """Record the run's output log and exit code from its manifest (none yet: both None); the manifest."""
    manifest = read_manifest(settings, task) or {}
    task.output_log, task.exit_code = manifest.get("output_log"), manifest.get("exit_code")
    return manifest


def sync(db: Session, settings: ApiSettings, gateway: WorkflowGateway, task: AlgorithmTask) -> None:
    """Move a QUEUED/RUNNING task on from its DAG run; record the outcome when the run has ended.

    A task cancelled after its algorithm started gets its output log when the collector uploads it,
    which may be after the cancel returned (the cluster's sidecar uploads when the pod is stopped).
    """
    if task.status == "CANCELLED" and task.output_log is None and task.started_at is not None:
        _take_manifest(settings, task)
    if task.status not in ACTIVE or not task.run_id or not task.dag_id:
        return
    info = gateway.run_info(task.dag_id, task.run_id)
    if info is None:
        return
    tis = gateway.task_instances(task.dag_id, task.run_id)
    ti = next((t for t in tis if t.task_id == RUN_TASK), None)
    if ti is not None and ti.start_date is not None:
        task.started_at = ti.start_date
    new = task.status
    if info.state == "running" and ti is not None and ti.state in ("running", "success", "failed"):
        new = "RUNNING"
        task.started_at = task.started_at or info.start_date or _now()
    elif info.state in ("success", "failed"):
        manifest = _take_manifest(settings, task)
        if info.state == "success" and ti is not None and ti.state == "success":
            new = "SUCCEEDED"
            if task.output_dataset_id is None:
                task.output_dataset = _output_dataset(db, task, manifest)
        elif tis and not any(t.state == "failed" for t in tis):
            new = "CANCELLED"
        else:
            new = "FAILED"
            code = task.exit_code
            task.error = (f"the algorithm exited with code {code}; see output_log/" if code not in (None, 0)
                          else "the run failed before the algorithm ended; see the task's log in Airflow")
        task.finished_at = ti.end_date if ti is not None and ti.end_date else info.end_date or _now()
    if new != task.status:
        task.status = new
    db.flush()


def record(db: Session, settings: ApiSettings, gateway: WorkflowGateway, run_id: str) -> str | None:
    """The listener's entry: sync the task whose current run is ``run_id``; its new status (None if none)."""
    task = db.scalar(select(AlgorithmTask).where(AlgorithmTask.dag_id == ALGORITHM_TASK,
                                                 AlgorithmTask.run_id == run_id).with_for_update())
    if task is None:
        return None
    sync(db, settings, gateway, task)
    return task.status


# ----------------------------------------------------------------------------- algorithm tasks: routes


class AlgorithmTaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=255)
    algorithm: int
    input_dataset: int | None = Field(default=None, description="id of the dataset staged into <workdir>/input")
    groups: list[str] | None = None


def task_json(request: Request, t: AlgorithmTask) -> dict[str, Any]:
    base = f"{api_base(request)}/v2/algorithm-tasks/{t.id}"
    return {
        "id": t.id, "name": t.name, "algorithm": t.algorithm_id, "input_dataset": t.input_dataset_id,
        "output_dataset": t.output_dataset_id, "status": t.status, "exit_code": t.exit_code, "error": t.error,
        "creator": t.creator, "created": t.created, "modified": t.modified,
        "groups": sorted(g.name for g in t.groups), "dag_id": t.dag_id, "dag_run_id": t.run_id,
        "output_log": f"{base}/output_log/" if t.output_log else None,
        "output_dataset_url": f"{base}/output_dataset/" if t.output_dataset_id else None,
        "timing": _timing(t),
    }


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((as_utc(end) - as_utc(start)).total_seconds(), 3)


def _timing(t: AlgorithmTask) -> dict[str, Any]:
    return {"created": t.created, "queued": t.queued_at, "started": t.started_at, "finished": t.finished_at,
            "queue_seconds": _seconds(t.queued_at, t.started_at), "run_seconds": _seconds(t.started_at, t.finished_at),
            "total_seconds": _seconds(t.queued_at, t.finished_at)}


def synced(request: Request, db: Session, settings: ApiSettings, pk: int, caller: Caller,
            change: bool = False) -> AlgorithmTask:
    t = (get_changeable if change else get_visible)(db, AlgorithmTask, pk, caller, "algorithm task")
    sync(db, settings, gateway_of(request), t)
    return t


@tasks.get("/", summary="List algorithm tasks (filters: algorithm, status, name)")
def list_tasks(request: Request, db: DbDep, caller: CallerDep, settings: SettingsDep, algorithm: int | None = None,
               status_filter: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    found = _filtered(db, AlgorithmTask, caller, algorithm_id=algorithm, name=name)
    gateway = gateway_of(request)
    for t in found:
        sync(db, settings, gateway, t)
    return [task_json(request, t) for t in found if status_filter is None or t.status == status_filter]


@tasks.post("/", status_code=status.HTTP_201_CREATED, summary="Create an algorithm task (CREATED; then run/)")
def create_task(request: Request, body: AlgorithmTaskIn, db: DbDep, caller: CallerDep) -> dict[str, Any]:
    algorithm = _visible_ref(db, Algorithm, body.algorithm, caller, "algorithm", "algorithm")
    dataset = None
    if body.input_dataset is not None:
        dataset = _visible_ref(db, Dataset, body.input_dataset, caller, "input_dataset", "dataset")
    t = AlgorithmTask(name=body.name, algorithm=algorithm, input_dataset=dataset, status="CREATED",
                      creator=caller.name, groups=resolve_groups(db, body.groups, caller))
    db.add(t)
    db.flush()
    return task_json(request, t)


@tasks.get("/{task_pk}/", summary="One algorithm task, its status moved on from its DAG run")
def get_task(request: Request, task_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
             ) -> dict[str, Any]:
    return task_json(request, synced(request, db, settings, task_pk, caller))


@tasks.delete("/{task_pk}/", status_code=status.HTTP_204_NO_CONTENT,
              summary="Delete an algorithm task (409 while it is queued or running: cancel it first)")
def delete_task(request: Request, task_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> Response:
    t = synced(request, db, settings, task_pk, caller, change=True)
    if t.status in ACTIVE:
        raise HTTPException(status.HTTP_409_CONFLICT, f"algorithm task {task_pk} is {t.status}; cancel it first")
    db.delete(t)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def run_conf(task: AlgorithmTask, run_uuid: str) -> dict[str, Any]:
    """The conf of the task's DAG run (format: perilflow.operators.algorithms)."""
    a = task.algorithm
    algorithm = {"id": a.id, "name": a.name, "image": a.docker_image.image if a.docker_image else None,
                 "command": list(a.command), "entrypoint": list(a.entrypoint) if a.entrypoint else None,
                 "env": dict(a.environment or {}), "gpu": bool(a.gpu), "resources": a.resources}
    input_files = [{"name": f.name, "uri": f.uri} for f in (task.input_dataset.files if task.input_dataset else [])]
    return {"task_id": task.id, "run_uuid": run_uuid, "algorithm": algorithm, "input_files": input_files}


@tasks.post("/{task_pk}/run/", summary="Run the task (from CREATED, SUCCEEDED, FAILED or CANCELLED) -> QUEUED")
def run_task(request: Request, task_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
             ) -> dict[str, Any]:
    t = synced(request, db, settings, task_pk, caller, change=True)
    if t.status not in RUN_FROM:
        raise HTTPException(status.HTTP_409_CONFLICT, f"algorithm task status is {t.status}; run is allowed only "
                            f"from {', '.join(sorted(RUN_FROM))}")
    if not may_change(t.algorithm, caller):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you are not a member of algorithm {t.algorithm_id}'s groups")
    run_uuid = uuid.uuid4().hex[:16]
    run_id = f"algorithm-task-{t.id}-run-{run_uuid[:8]}"
    try:
        gateway_of(request).trigger(ALGORITHM_TASK, run_id, run_conf(t, run_uuid), caller.name)
    except WorkflowError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    t.dag_id, t.run_id, t.run_uuid, t.status = ALGORITHM_TASK, run_id, run_uuid, "QUEUED"
    t.queued_at, t.started_at, t.finished_at = _now(), None, None
    t.output_log = t.exit_code = t.error = None
    t.output_dataset = None  # the previous run's output dataset stays a dataset of its own
    db.flush()
    return task_json(request, t)


@tasks.post("/{task_pk}/cancel/", summary="Cancel a QUEUED or RUNNING task -> CANCELLED")
def cancel_task(request: Request, task_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
                ) -> dict[str, Any]:
    t = synced(request, db, settings, task_pk, caller, change=True)
    if t.status not in ACTIVE:
        raise HTTPException(status.HTTP_409_CONFLICT, f"algorithm task status is {t.status}; cancel is allowed only "
                            "from QUEUED or RUNNING")
    # CANCELLED is committed before the run is cancelled: cancelling skips the running task before it
    # fails the run, and in between the scheduler may end the run as success; the listener's sync
    # then finds the task no longer active instead of recording SUCCEEDED with an output dataset
    # (seen on a live platform). Committing also keeps the listener from waiting for this row's lock.
    before = t.status
    t.status, t.finished_at = "CANCELLED", _now()
    db.commit()
    try:
        gateway_of(request).cancel(t.dag_id, t.run_id)
    except WorkflowError as exc:
        t.status, t.finished_at = before, None
        db.commit()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    _take_manifest(settings, t)
    db.flush()
    return task_json(request, t)


@tasks.get("/{task_pk}/status/", summary="The task's status, exit code and error")
def task_status(request: Request, task_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
                ) -> dict[str, Any]:
    t = synced(request, db, settings, task_pk, caller)
    return {"id": t.id, "status": t.status, "exit_code": t.exit_code, "error": t.error}


@tasks.get("/{task_pk}/output_log/", summary="The algorithm's stdout and stderr", response_class=PlainTextResponse)
def output_log(request: Request, task_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> Response:
    t = synced(request, db, settings, task_pk, caller)
    if not t.output_log:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"algorithm task {task_pk} has no output log yet "
                            f"(status {t.status}); the log is kept when the algorithm ends")
    return files.stream(settings, t.output_log, f"algorithm-task-{t.id}-output.log", "text/plain",
                        missing="output log")


@tasks.get("/{task_pk}/output_dataset/", summary="The output dataset (once SUCCEEDED)")
def output_dataset(request: Request, task_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep
                   ) -> dict[str, Any]:
    t = synced(request, db, settings, task_pk, caller)
    if t.output_dataset is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"algorithm task {task_pk} has no output dataset "
                            f"(status {t.status}); it is created when the task SUCCEEDED")
    return dataset_json(request, t.output_dataset)


@tasks.get("/{task_pk}/timing/", summary="When the task was created, queued, started and finished")
def timing(request: Request, task_pk: int, db: DbDep, caller: CallerDep, settings: SettingsDep) -> dict[str, Any]:
    t = synced(request, db, settings, task_pk, caller)
    return {"id": t.id, "status": t.status, **_timing(t)}


routers = (images, algorithms, tasks)
