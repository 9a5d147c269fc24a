"""Fixtures for the API tests: a migrated product DB (SQLite and PostgreSQL), the app, fake users.

PostgreSQL: a throwaway database on 127.0.0.1:5432 (user postgres, trust auth) per test
session, dropped afterwards. In CI (CI=true) it must answer; elsewhere its tests are skipped
when it does not.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient
from sqlalchemy import delete

from perilflow.plugins.api.app import create_app
from perilflow.plugins.api.gateway import FakeGateway
from perilflow.plugins.db import make_engine, make_sessionmaker
from perilflow.plugins.db.migrate import migrate
from perilflow.plugins.db.models import Base, Group, GroupMembership
from perilflow.plugins.settings import ApiSettings

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@dataclass
class FakeUser:
    """Stands in for Airflow's user (BaseUser: get_name/get_id; SimpleAuthManagerUser has a role)."""

    name: str
    role: str = "user"

    def get_name(self) -> str:
        return self.name

    def get_id(self) -> str:
        return self.name


USERS = {"alice": FakeUser("alice"), "bob": FakeUser("bob"), "carol": FakeUser("carol"),
         "root": FakeUser("root", role="admin")}


async def fake_get_user(request: Request) -> FakeUser:
    """Like Airflow's get_user: 401 without a token, 403 for an unknown one; the token is the user name."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise HTTPException(401, "Not authenticated")
    user = USERS.get(header.split(" ", 1)[1])
    if user is None:
        raise HTTPException(403, "Invalid JWT token")
    return user


def _postgres_url() -> Iterator[str]:
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is required in CI: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 does not answer ({str(exc).strip()})")
    admin.autocommit = True
    name = f"perilflow_test_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('productdb') / 'perilflow.db'}"
        migrate(url)
        yield url
    else:
        gen = _postgres_url()
        url = next(gen)
        migrate(url)
        yield url
        gen.close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> ApiSettings:
    return ApiSettings(database_url=db_url, storage_url=f"file://{tmp_path / 'storage'}", max_upload_mb=1,
                       airflow_url="http://127.0.0.1:9")


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def app(settings: ApiSettings, gateway: FakeGateway):
    from airflow.api_fastapi.core_api.security import get_user

    app = create_app(settings, gateway)
    app.dependency_overrides[get_user] = fake_get_user
    yield app
    engine = app.state.perilflow_engine
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))
    engine.dispose()


@pytest.fixture
def client(app) -> TestClient:
    return TestClient(app)


@pytest.fixture
def add_member(app):
    """add_member(user, group): put a user in a product-DB group."""

    def add(username: str, group: str) -> None:
        with make_sessionmaker(app.state.perilflow_engine).begin() as session:
            found = session.query(Group).filter_by(name=group).one_or_none() or Group(name=group)
            session.add(found)
            session.flush()
            session.add(GroupMembership(group_id=found.id, username=username))

    return add


def auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}"}


__all__ = ["auth", "make_engine"]
