"""Product DB migrations: upgrade, downgrade, the CLI hook, and the schema matching the models."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from perilflow.cli import main
from perilflow.plugins.db import make_engine
from perilflow.plugins.db.migrate import MIGRATIONS, VERSION_TABLE, current_revision, downgrade, migrate
from perilflow.plugins.db.models import Base


def _head() -> str:
    from alembic.script import ScriptDirectory

    from perilflow.plugins.db.migrate import alembic_config

    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"the migrations have several heads {heads}; chain the newest down_revision"
    return heads[0]


def test_migrated_schema_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}),
                                    Base.metadata)
        assert diff == [], f"models and migrations differ; add a migration: {diff}"
        assert current_revision(db_url) == _head()
    finally:
        engine.dispose()


def test_upgrade_downgrade_and_cli(tmp_path: Path, monkeypatch, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'p.db'}"
    assert main(["db", "migrate", "--url", url]) == 0
    assert f"revision {_head()}" in capsys.readouterr().out
    engine = make_engine(url)
    assert {"models", "portfolios", "analyses", "groups", "group_memberships", VERSION_TABLE} <= set(
        inspect(engine).get_table_names())
    downgrade(url)
    assert set(inspect(engine).get_table_names()) == {VERSION_TABLE}
    monkeypatch.setenv("PERILFLOW_DATABASE_URL", url)
    migrate()  # the URL from the environment
    assert current_revision(url) == _head()
    engine.dispose()


def test_migrations_ship_as_package_data() -> None:
    import configparser

    from tests.conftest import REPO_ROOT

    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    data = cfg["options.package_data"]["perilflow.plugins.db"]
    assert "migrations/versions/*.py" in data and "migrations/*.py" in data
    assert (MIGRATIONS / "env.py").is_file() and list((MIGRATIONS / "versions").glob("0001_*.py"))
