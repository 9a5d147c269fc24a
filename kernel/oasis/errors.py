"""Errors raised when an Oasis input file is missing, malformed or inconsistent.

Every message names the file and, when it is about one value, the row and the
column, and ends with a hint on how to fix the file.

Row numbering: ``row N`` is the N-th *data* row counting from 1, so in a CSV
file it sits on line N + 1 (line 1 is the header), which is also the row number
a spreadsheet shows. In a ``.bin`` file the same position is called
``record N`` (also counting from 1).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["OasisFileError", "row_label"]


def row_label(path: str | Path, row: int) -> str:
    """Describe 1-based data row ``row`` of ``path`` the way a user finds it."""
    if Path(path).suffix.lower() == ".csv":
        return f"row {row} (line {row + 1})"
    return f"record {row}"


class OasisFileError(ValueError):
    """An Oasis input file is missing, malformed or inconsistent with another file."""

    def __init__(
        self,
        path: str | Path,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.problem = problem
        self.row = row
        self.column = column
        self.fix = fix
        where = [str(self.path)]
        if row is not None:
            where.append(row_label(self.path, row))
        if column is not None:
            where.append(f"column '{column}'")
        message = f"{', '.join(where)}: {problem.rstrip()}"
        if not message.endswith((".", "?", "!")):
            message += "."
        if fix:
            message += f" Fix: {fix}"
        super().__init__(message)

    def __reduce__(self):
        # Keep the keyword arguments when the error crosses a process boundary
        # (multiprocessing and task runners pickle exceptions).
        return (_rebuild, (self.path, self.problem, self.row, self.column, self.fix))


def _rebuild(path, problem, row, column, fix) -> OasisFileError:
    """Recreate an unpickled OasisFileError."""
    return OasisFileError(path, problem, row=row, column=column, fix=fix)
