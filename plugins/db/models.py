"""SQLAlchemy 2 declarative models of the product DB (OasisPlatform's business objects).

Files are rows of ``stored_files`` (a storage URI plus the uploaded name); portfolios point
at them. An analysis remembers its current DAG run (``dag_id``, ``run_id``, ``run_uuid``)
and the outcome recorded when that run ended, so status and files survive
``airflow db clean``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC: the columns hold UTC, and SQLite hands them back without a zone."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


model_groups = Table(
    "model_groups", Base.metadata,
    Column("model_id", ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)
portfolio_groups = Table(
    "portfolio_groups", Base.metadata,
    Column("portfolio_id", ForeignKey("portfolios.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)
model_data_files = Table(
    "model_data_files", Base.metadata,
    Column("model_id", ForeignKey("models.id", ondelete="CASCADE"), primary_key=True),
    Column("data_file_id", ForeignKey("data_files.id", ondelete="CASCADE"), primary_key=True),
)
analysis_data_files = Table(
    "analysis_data_files", Base.metadata,
    Column("analysis_id", ForeignKey("analyses.id", ondelete="CASCADE"), primary_key=True),
    Column("data_file_id", ForeignKey("data_files.id", ondelete="CASCADE"), primary_key=True),
)
data_file_groups = Table(
    "data_file_groups", Base.metadata,
    Column("data_file_id", ForeignKey("data_files.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(150), unique=True)
    members: Mapped[list[GroupMembership]] = relationship(back_populates="group", cascade="all, delete-orphan")


class GroupMembership(Base):
    """A user (by the auth manager's user name) in a group."""

    __tablename__ = "group_memberships"
    __table_args__ = (UniqueConstraint("group_id", "username", name="uq_group_memberships_group_user"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    username: Mapped[str] = mapped_column(String(255), index=True)
    group: Mapped[Group] = relationship(back_populates="members")


class StoredFile(Base):
    """A file in object storage: its URI, the name it was uploaded as, type and size."""

    __tablename__ = "stored_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    uri: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    creator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("supplier_id", "model_id", "version_id", name="uq_models_triple"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    supplier_id: Mapped[str] = mapped_column(String(255))
    model_id: Mapped[str] = mapped_column(String(255))
    version_id: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    run_mode: Mapped[str | None] = mapped_column(String(8), nullable=True)
    creator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    chunking: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    scaling: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The run conf's model object: model_data_dir, lookup_config_json, ... (see operators/runconf.py)
    runtime: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    groups: Mapped[list[Group]] = relationship(secondary=model_groups, lazy="selectin")
    data_files: Mapped[list[DataFile]] = relationship(secondary=model_data_files, lazy="selectin",
                                                      order_by="DataFile.id")
    templates: Mapped[list[SettingsTemplate]] = relationship(back_populates="model", cascade="all, delete-orphan",
                                                             order_by="SettingsTemplate.id")


class SettingsTemplate(Base):
    """An analysis-settings template kept under a model (OasisPlatform's ``setting_templates``)."""

    __tablename__ = "settings_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    creator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    model: Mapped[Model] = relationship(back_populates="templates")


class Portfolio(Base):
    __tablename__ = "portfolios"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    creator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    location_file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id", ondelete="SET NULL"))
    accounts_file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id", ondelete="SET NULL"))
    reinsurance_info_file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id", ondelete="SET NULL"))
    reinsurance_scope_file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id", ondelete="SET NULL"))
    validation_status: Mapped[str] = mapped_column(String(32), default="NONE")
    validation_errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    exposure_status: Mapped[str] = mapped_column(String(32), default="NONE", server_default="NONE")
    exposure_run_file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id", ondelete="SET NULL"))
    run_errors_file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id", ondelete="SET NULL"))
    #: rates of exchange (perilflow.kernel.oed.currency form) and the currency amounts are converted to
    currency_conversion: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reporting_currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    exposure_transform_status: Mapped[str] = mapped_column(String(32), default="NONE", server_default="NONE")
    location_file: Mapped[StoredFile | None] = relationship(foreign_keys=[location_file_id], lazy="selectin")
    accounts_file: Mapped[StoredFile | None] = relationship(foreign_keys=[accounts_file_id], lazy="selectin")
    reinsurance_info_file: Mapped[StoredFile | None] = relationship(foreign_keys=[reinsurance_info_file_id],
                                                                     lazy="selectin")
    reinsurance_scope_file: Mapped[StoredFile | None] = relationship(foreign_keys=[reinsurance_scope_file_id],
                                                                      lazy="selectin")
    exposure_run_file: Mapped[StoredFile | None] = relationship(foreign_keys=[exposure_run_file_id], lazy="selectin")
    run_errors_file: Mapped[StoredFile | None] = relationship(foreign_keys=[run_errors_file_id], lazy="selectin")
    groups: Mapped[list[Group]] = relationship(secondary=portfolio_groups, lazy="selectin")


class DataFile(Base):
    """A "complex model" data file (OasisPlatform's ``data_files``)."""

    __tablename__ = "data_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_description: Mapped[str] = mapped_column(String(255), default="")
    file_category: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    creator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    file_id: Mapped[int | None] = mapped_column(ForeignKey("stored_files.id", ondelete="SET NULL"))
    file: Mapped[StoredFile | None] = relationship(lazy="selectin")
    groups: Mapped[list[Group]] = relationship(secondary=data_file_groups, lazy="selectin")


class Analysis(Base):
    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    modified: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    creator: Mapped[str | None] = mapped_column(String(255), nullable=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("portfolios.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    status: Mapped[str] = mapped_column(String(32), default="NEW", index=True)
    run_mode: Mapped[str | None] = mapped_column(String(8), nullable=True)
    priority: Mapped[int] = mapped_column(Integer, default=4)
    settings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    chunking: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    task_started: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    task_finished: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # the current DAG run: which workflow, its run id and storage folder suffix
    dag_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(250), nullable=True)
    run_uuid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # recorded outcome (storage URIs), kept after Airflow forgets the run
    input_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    lookup_success_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    lookup_errors_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    lookup_validation_file: Mapped[str | None] = mapped_column(Text, nullable=True)  # exposure_summary_report.json
    summary_levels_file: Mapped[str | None] = mapped_column(Text, nullable=True)  # exposure_summary_levels.json
    input_generation_traceback_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_traceback_file: Mapped[str | None] = mapped_column(Text, nullable=True)
    # sizes of the current run, read from its plan XCom (prepare-*-params) while it is watched
    lookup_chunks: Mapped[int | None] = mapped_column(Integer, nullable=True)
    analysis_chunks: Mapped[int | None] = mapped_column(Integer, nullable=True)
    num_events_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    portfolio: Mapped[Portfolio] = relationship(lazy="selectin")
    model: Mapped[Model] = relationship(lazy="selectin")
    complex_model_data_files: Mapped[list[DataFile]] = relationship(secondary=analysis_data_files, lazy="selectin",
                                                                    order_by="DataFile.id")
