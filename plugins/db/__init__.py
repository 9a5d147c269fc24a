"""The product DB: business objects (models, portfolios, analyses, files, groups) and their migrations.

Airflow's metadata DB owns execution state; this DB owns what users create and each
analysis's recorded outcome. Its schema is changed only by the Alembic migrations in
``migrations/`` (:func:`perilflow.plugins.db.migrate.migrate`).
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str) -> Engine:
    """An engine for the product DB; SQLite gets foreign keys on and a thread-safe connection."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _fk_on(dbapi_connection, _record) -> None:  # noqa: ANN001 - DB-API objects
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
