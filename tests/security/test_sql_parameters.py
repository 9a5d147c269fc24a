"""SQL only through bound parameters (issue 8): no SQL text built with f-strings, ``%`` or ``.format``.

Every call of ``text(...)``, ``.execute(...)``, ``.exec_driver_sql(...)``, ``.executescript(...)``
or ``sa.text``/``sqlalchemy.text`` in ``plugins/`` and ``operators/`` (Alembic migrations
included) is parsed; a first argument that formats values into the SQL fails the test with
the file and line. Values go in as bound parameters (``text("... :name").bindparams(...)``,
``execute(stmt, {"name": ...})``, or SQLAlchemy expressions).
"""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO_ROOT

FOLDERS = ("plugins", "operators")
SQL_CALLS = {"text", "execute", "exec_driver_sql", "executescript", "executemany"}


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _formatted(node: ast.expr) -> str | None:
    """How ``node`` formats values into a string, or None when it is a constant or a plain name."""
    if isinstance(node, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in node.values):
        return "an f-string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(node.left, (ast.Constant,
                                                                                                ast.JoinedStr)):
        return "% formatting"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return ".format()"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts = [node.left, node.right]
        if any(isinstance(p, (ast.Constant, ast.JoinedStr)) for p in parts) and not all(
                isinstance(p, ast.Constant) for p in parts):
            return "string concatenation"
        return _formatted(node.left) or _formatted(node.right)
    return None


def formatted_sql(source: str, filename: str) -> list[str]:
    """``file:line: call(...) builds its SQL with ...`` for each offending call in ``source``."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call) and _name(node.func) in SQL_CALLS and node.args:
            how = _formatted(node.args[0])
            if how:
                problems.append(f"{filename}:{node.lineno}: {_name(node.func)}(...) builds its SQL with {how}; "
                                "pass values as bound parameters")
    return problems


def test_sql_is_built_only_with_bound_parameters() -> None:
    files = sorted(p for folder in FOLDERS for p in (REPO_ROOT / folder).rglob("*.py"))
    assert len(files) > 20, "the folders to check were not found"
    problems = [p for path in files for p in formatted_sql(path.read_text(), str(path.relative_to(REPO_ROOT)))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", [
    'session.execute(text(f"SELECT * FROM analyses WHERE name = \'{name}\'"))',
    'conn.execute("DELETE FROM models WHERE id = %s" % model_id)',
    'conn.exec_driver_sql("DROP TABLE {}".format(table))',
    'op.execute("UPDATE analyses SET status = \'" + status + "\'")',
    'sa.text(f"SELECT {column} FROM t")',
])
def test_the_check_finds_formatted_sql(source: str) -> None:
    assert formatted_sql(source, "example.py")


@pytest.mark.parametrize("source", [
    'session.execute(text("SELECT * FROM analyses WHERE name = :name"), {"name": name})',
    'session.execute(select(Analysis).where(Analysis.name == name))',
    'op.execute("UPDATE analyses SET status = \'NEW\' WHERE status IS NULL")',
    'conn.execute(stmt, params)',
])
def test_bound_parameters_pass(source: str) -> None:
    assert not formatted_sql(source, "example.py")
