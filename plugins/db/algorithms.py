"""Product-DB models of generic algorithm runs (issue 9): docker images, algorithms, datasets, tasks.

They share :class:`perilflow.plugins.db.models.Base` (and its ``groups`` table), so the
migrations and the tests' clean-up see them; the API imports this module with its routers.

* a **docker image** names an image in a registry, or keeps an uploaded image file in storage;
* an **algorithm** is an image plus the command to run in it (entrypoint override, env, GPU
  flag, Kubernetes resources);
* a **dataset** is a set of files in storage (``{storage}/datasets/{id}/...``), uploaded or
  written by an algorithm task;
* an **algorithm task** runs an algorithm on an input dataset as one run of the DAG
  ``perilflow_algorithm_task``; its status is derived from that DAG run and recorded here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, DateTime, ForeignKey, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from perilflow.plugins.db.models import Base, Group, StoredFile, utcnow


def _groups_table(name: str, owner: str, owner_table: str) -> Table:
    return Table(
        name, Base.metadata,
        Column(owner, ForeignKey(f"{owner_table}.id", ondelete="CASCADE"), primary_key=True),
        Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    )


docker_image_groups = _groups_table("docker_image_groups", "docker_image_id", "docker_images")
algorithm_groups = _groups_table("algorithm_groups", "algorithm_id", "algorithms")
dataset_groups = _groups_table("dataset_groups", "dataset_id", "datasets")
algorithm_task_groups = _groups_table("algorithm_task_groups", "algorithm_task_id", "algorithm_tasks")


class DockerImage(Base):
    """An image: ``image`` (registry reference) and/or an uploaded image file (``docker save`` tarball)."""

    __tablename__ = "docker_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    image: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    image_file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id", ondelete="SET NULL"))
    creator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    image_file: Mapped[StoredFile | None] = relationship(lazy="selectin")
    groups: Mapped[list[Group]] = relationship(secondary=docker_image_groups, lazy="selectin")


class Algorithm(Base):
    """What to run: an image and a command; ``command`` is the container's args, ``entrypoint`` its command."""

    __tablename__ = "algorithms"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    docker_image_id: Mapped[int | None] = mapped_column(ForeignKey("docker_images.id", ondelete="RESTRICT"),
                                                        index=True)
    command: Mapped[list[str]] = mapped_column(JSON)
    entrypoint: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    environment: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)
    gpu: Mapped[bool] = mapped_column(Boolean, default=False)
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    creator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    docker_image: Mapped[DockerImage | None] = relationship(lazy="selectin")
    groups: Mapped[list[Group]] = relationship(secondary=algorithm_groups, lazy="selectin")


class Dataset(Base):
    """Files in storage under one folder; ``source_task_id`` names the algorithm task that wrote it, if any."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    folder: Mapped[str | None] = mapped_column(Text, nullable=True)
    source_task_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    creator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    files: Mapped[list[DatasetFile]] = relationship(back_populates="dataset", cascade="all, delete-orphan",
                                                    lazy="selectin", order_by="DatasetFile.name")
    groups: Mapped[list[Group]] = relationship(secondary=dataset_groups, lazy="selectin")

    @property
    def size(self) -> int:
        return sum(f.size or 0 for f in self.files)


class DatasetFile(Base):
    """One file of a dataset: its relative name inside the dataset and its storage URI."""

    __tablename__ = "dataset_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(1000))
    uri: Mapped[str] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    dataset: Mapped[Dataset] = relationship(back_populates="files")


class AlgorithmTask(Base):
    """One run of an algorithm on a dataset; status CREATED/QUEUED/RUNNING/SUCCEEDED/FAILED/CANCELLED."""

    __tablename__ = "algorithm_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    algorithm_id: Mapped[int] = mapped_column(ForeignKey("algorithms.id", ondelete="RESTRICT"), index=True)
    input_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    output_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="CREATED", index=True)
    # the current DAG run and its storage folder suffix
    dag_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    run_uuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # recorded outcome
    output_log: Mapped[str | None] = mapped_column(Text, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    creator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    algorithm: Mapped[Algorithm] = relationship(lazy="selectin")
    input_dataset: Mapped[Dataset | None] = relationship(foreign_keys=[input_dataset_id], lazy="selectin")
    output_dataset: Mapped[Dataset | None] = relationship(foreign_keys=[output_dataset_id], lazy="selectin")
    groups: Mapped[list[Group]] = relationship(secondary=algorithm_task_groups, lazy="selectin")
