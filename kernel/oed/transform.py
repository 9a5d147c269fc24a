"""Exposure data transformation: another format's exposure file (e.g. AIR/Touchstone) to OED, or back,
by a mapping file (OasisPlatform's ``exposure_transform``; the reference's ``ods_tools transform``).

The transformation is ods-tools' own (``ods_tools.odtf``: its mapper, pandas runner and CSV
connector), so a mapping file written for the reference gives the same output here. A mapping file
is YAML with three sections::

    null_values: ["''", "NULL"]              # input values read as empty
    types:                                   # the input columns used, and their types
      LocationID: {type: string}
      ReplacementValueA: {type: float}
    transform:                               # each output column: transformations tried in order
      LocNumber:
        - transformation: LocationID
      BuildingTIV:
        - transformation: ReplacementValueA * 2
          when: CountryISO is 'GB'
        - transformation: ReplacementValueA

:func:`check_mapping` checks those sections before anything runs; :func:`transform_exposure`
runs the transformation and raises a ``ValueError`` that names the problem and the fix (ods-tools'
own controller logs errors and carries on, so it is not used).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["check_mapping", "transform_exposure"]

#: the column types ods-tools' runner converts input columns to
TYPES = ("string", "int", "float", "bool")


def check_mapping(mapping: Any) -> dict[str, Any]:
    """The mapping (parsed YAML) if its sections are well formed; a ValueError naming the section otherwise."""
    if not isinstance(mapping, dict):
        raise ValueError("the mapping file is not a YAML mapping; give the sections null_values, types and transform")
    missing = [name for name in ("null_values", "types", "transform") if name not in mapping]
    if missing:
        raise ValueError(f"the mapping file lacks the section(s) {missing}; give null_values (a list), types "
                         "(input column: {type: ...}) and transform (output column: [{transformation: ...}])")
    if not isinstance(mapping["null_values"], list):
        raise ValueError("null_values: give a list of the input values read as empty, e.g. [\"''\", NULL]")
    types = mapping["types"]
    if not isinstance(types, dict) or not types:
        raise ValueError("types: give each input column the transformations use, e.g. LocationID: {type: string}")
    for column, options in types.items():
        kind = options.get("type") if isinstance(options, dict) else None
        if kind not in TYPES:
            raise ValueError(f"types.{column}: type {kind!r} is not one of {list(TYPES)}; e.g. {{type: float}}")
    transform = mapping["transform"]
    if not isinstance(transform, dict) or not transform:
        raise ValueError("transform: give each output column a list of transformations, e.g. "
                         "LocNumber: [{transformation: LocationID}]")
    for column, entries in transform.items():
        if not isinstance(entries, list) or not entries or not all(
                isinstance(e, dict) and isinstance(e.get("transformation"), str | int | float) for e in entries):
            raise ValueError(f"transform.{column}: give a list of {{transformation: <expression>[, when: "
                             "<condition>]}} entries")
    return mapping


def _parse_each(mapping: dict[str, Any]) -> None:
    """Parse every expression once, so a syntax error names its column (ods-tools parses them lazily)."""
    from ods_tools.odtf.transformers.transform import parse

    for column, entries in mapping["transform"].items():
        for entry in entries:
            for key in ("transformation", "when"):
                text = str(entry.get(key, "True"))
                try:
                    parse(text)
                except Exception as exc:  # lark raises several exception types for bad syntax
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ValueError(f"transform.{column}: the {key} {text!r} is not a valid expression ({first}); "
                                     "fix its syntax") from None


def transform_exposure(input_csv: str | os.PathLike, mapping_file: str | os.PathLike,
                       output_csv: str | os.PathLike, batch_size: int = 150_000) -> Path:
    """Transform ``input_csv`` with ``mapping_file`` into ``output_csv`` (written under a temporary name).

    Raises
    ------
    ValueError
        If the mapping is malformed, the input is unreadable, no output column can be made from the
        input's columns, or a value cannot be converted (each named with the fix).
    """
    import pandas as pd
    import yaml
    from ods_tools.odtf.connector import CsvConnector
    from ods_tools.odtf.mapper import Mapper
    from ods_tools.odtf.runner import PandasRunner

    mapping_file, input_csv, output_csv = Path(mapping_file), Path(input_csv), Path(output_csv)
    try:
        mapping = yaml.safe_load(mapping_file.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"the mapping file is not readable YAML ({str(exc).splitlines()[0]}); fix its syntax"
                         ) from None
    _parse_each(check_mapping(mapping))
    try:
        columns = list(pd.read_csv(input_csv, nrows=0).columns)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"the file to transform is not a readable CSV ({str(exc).splitlines()[0]}); give a CSV "
                         "with a header line") from None
    used = set(mapping["types"])
    if not used & set(columns):
        raise ValueError(f"none of the mapping's input columns {sorted(used)[:8]} is in the file to transform "
                         f"(its columns: {columns[:8]}); check the file or the mapping's direction")
    tmp = output_csv.with_name(f".{output_csv.name}.tmp")
    config = {"input": {"path": str(input_csv)}, "output": {"path": str(tmp)},
              "mapping": {"path": str(mapping_file)}, "batch_size": batch_size, "write_header": True}
    quiet = logging.getLogger("ods_tools")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        PandasRunner(config).run(CsvConnector(config, isExtractor=True), Mapper(str(mapping_file)),
                                 CsvConnector(config, isExtractor=False))
    except Exception as exc:  # ods-tools raises bare Exception for a value it cannot convert
        tmp.unlink(missing_ok=True)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"the transformation failed: {text}; check the mapping's types and transformations "
                         "against the file's values") from None
    finally:
        quiet.setLevel(level)
    if not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise ValueError("the transformation wrote nothing: the file to transform has no row, no transformation "
                         "applies to its columns, or a value could not be converted to its column's type (types:)")
    tmp.replace(output_csv)
    return output_csv
