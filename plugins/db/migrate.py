"""Bring the product DB to the newest schema with the Alembic migrations shipped in this package.

``perilflow db migrate`` calls :func:`migrate`; so do the tests, on SQLite and PostgreSQL.
The version table is ``perilflow_alembic_version``, so the product DB may share a database
with Airflow's metadata without the two Alembic histories meeting.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from perilflow.plugins.settings import default_database_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "perilflow_alembic_version"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str | None = None, revision: str = "head") -> str:
    """Upgrade the product DB at ``url`` (default: PERILFLOW_DATABASE_URL) to ``revision``; returns the URL."""
    url = url or default_database_url()
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)
    return url


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    from perilflow.plugins.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    finally:
        engine.dispose()
