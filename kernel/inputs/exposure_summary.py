"""The lookup validation and summary levels files of an input generation.

Two JSON files that OasisPlatform serves as an analysis's ``lookup_validation_file`` and
``summary_levels_file``, with the shapes oasislmf's input generation writes:

``exposure_summary_report.json`` (:func:`exposure_summary`)
    The portfolio's TIV split by the keys lookup's outcome::

        {"total": {"modelled": {"tiv", "number_of_locations"}, "not-modelled": {...},
                   "portfolio": {...}},
         "<peril>": {"all" | "success" | "fail" | "nomatch" | "fail_ap" | "fail_v" | "notatrisk" |
                     "noreturn": {"tiv", "tiv_by_coverage": {"buildings", "other", "contents", "bi"},
                                  "number_of_locations", "number_of_locations_by_coverage": {...}}}}

    Every location contributes one row per TIV column (``BuildingTIV``, ``OtherTIV``,
    ``ContentsTIV``, ``BITIV``) and peril the lookup returned; a row takes the status of its
    key (``success`` from keys.csv, the others from keys-errors.csv) or ``noreturn`` when the
    lookup returned nothing for it. "modelled" is ``success`` and ``notatrisk``. Totals count a
    (location, coverage type) once, whatever the perils. Where the reference would count a key
    twice (the same location, peril and coverage type both in keys and keys-errors, or repeated),
    the first row counts (keys before errors), so the statuses of a peril add up to its ``all``.

``exposure_summary_levels.json`` (:func:`summary_levels`)
    The fields an analysis's summaries may group by, per perspective, with their OED
    descriptions (``"Not an OED field"`` otherwise)::

        {"GUL": {"available": {field: description}}, "IL": {...}, "RI": {...}}

    A location field is available when every location has a value that is not empty or zero;
    an account field when some account row has one. GUL and IL list both (summaries join the
    account fields too), plus the Oasis columns ``coverage_type_id``, ``peril_id`` and
    ``coverage_id``. ``IL`` is written when there are account fields, ``RI`` (the IL fields: RI
    summaries use the same map) when the exposure has reinsurance; the reference writes GUL
    and IL only.

No Airflow; both files are written through a temporary name (:func:`atomic_write`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perilflow.kernel.lookup.common import KEYS_STATUSES, MODELLED_STATUSES, STATUS_NORETURN, STATUS_SUCCESS
from perilflow.kernel.oasis.files import atomic_write

__all__ = [
    "COVERAGE_TYPES",
    "EXPOSURE_SUMMARY_REPORT",
    "EXPOSURE_SUMMARY_LEVELS",
    "exposure_summary",
    "summary_levels",
    "write_exposure_summaries",
]

EXPOSURE_SUMMARY_REPORT = "exposure_summary_report.json"
EXPOSURE_SUMMARY_LEVELS = "exposure_summary_levels.json"

#: Coverage types of the report, by the reference's name: (coverage_type_id, OED TIV column).
COVERAGE_TYPES = {"buildings": (1, "BuildingTIV"), "other": (2, "OtherTIV"), "contents": (3, "ContentsTIV"),
                  "bi": (4, "BITIV")}

#: Columns of ours in the location frame, never summary levels.
_INTERNAL_COLUMNS = ("loc_id", "loc_idx")
#: Oasis columns every perspective may group by, as the reference describes them.
_OASIS_COLUMNS = {"coverage_type_id": "Oasis coverage type", "peril_id": "OED peril code",
                  "coverage_id": "Oasis coverage identifier"}
_NOT_OED = "Not an OED field"


# ----------------------------------------------------------------------------- the lookup validation report


def _tiv_rows(location: pd.DataFrame) -> pd.DataFrame:
    """``loc_id, coverage_type_id, tiv``: one row per location (first row of a loc_id) and TIV column."""
    if "loc_id" not in location.columns:
        raise ValueError("location has no loc_id column; load it with perilflow.kernel.oed.load_exposure")
    sites = location.drop_duplicates("loc_id")
    parts = []
    for coverage_type, column in COVERAGE_TYPES.values():
        if column in sites.columns:
            tiv = pd.to_numeric(sites[column], errors="coerce").astype(float).fillna(0.0).to_numpy()
            parts.append(pd.DataFrame({"loc_id": sites["loc_id"].to_numpy(np.int64),
                                       "coverage_type_id": np.full(len(sites), coverage_type, np.int64),
                                       "tiv": tiv}))
    if not parts:
        raise ValueError("location has no TIV column. Fix: add BuildingTIV, OtherTIV, ContentsTIV and/or BITIV.")
    return pd.concat(parts, ignore_index=True)


def _key_statuses(keys: pd.DataFrame | None, errors: pd.DataFrame | None) -> pd.DataFrame:
    """``loc_id, peril_id, coverage_type_id, status`` of every key (keys first), one row per key."""
    frames = []
    for frame, status in ((keys, STATUS_SUCCESS), (errors, None)):
        if frame is None or frame.empty:
            continue
        coverage = "coverage_type" if "coverage_type" in frame.columns else "coverage_type_id"
        part = pd.DataFrame({"loc_id": pd.to_numeric(frame["loc_id"], errors="coerce"),
                             "peril_id": frame["peril_id"].astype(object),
                             "coverage_type_id": pd.to_numeric(frame[coverage], errors="coerce"),
                             "status": status if status else frame["status"].astype(str).to_numpy()})
        frames.append(part)
    if not frames:
        return pd.DataFrame({"loc_id": pd.Series(dtype=np.int64), "peril_id": pd.Series(dtype=object),
                             "coverage_type_id": pd.Series(dtype=np.int64), "status": pd.Series(dtype=object)})
    statuses = pd.concat(frames, ignore_index=True).dropna(subset=["loc_id", "peril_id", "coverage_type_id"])
    statuses = statuses.astype({"loc_id": np.int64, "coverage_type_id": np.int64})
    statuses["peril_id"] = statuses["peril_id"].astype(str)
    return statuses.drop_duplicates(["loc_id", "peril_id", "coverage_type_id"], keep="first")


def _section(rows: pd.DataFrame) -> dict[str, Any]:
    """TIV and location counts of ``rows`` (one peril, one status or all), in total and by coverage type."""
    section: dict[str, Any] = {"tiv": 0.0, "tiv_by_coverage": {}, "number_of_locations": 0,
                               "number_of_locations_by_coverage": {}}
    for name, (coverage_type, _) in COVERAGE_TYPES.items():
        chosen = rows[rows["coverage_type_id"] == coverage_type]
        tiv = float(chosen["tiv"].sum())
        section["tiv_by_coverage"][name] = tiv
        section["tiv"] += tiv
        section["number_of_locations_by_coverage"][name] = int(chosen["loc_id"].nunique())
    section["number_of_locations"] = int(rows["loc_id"].nunique())
    return section


def _totals(rows: pd.DataFrame) -> dict[str, Any]:
    """The report's ``total``: modelled, not modelled and whole-portfolio TIV and location counts."""
    def part(chosen: pd.DataFrame) -> dict[str, Any]:
        tiv = chosen.drop_duplicates(["loc_id", "coverage_type_id"])["tiv"].sum()
        return {"tiv": float(tiv), "number_of_locations": int(chosen["loc_id"].nunique())}

    modelled = rows["status"].isin(MODELLED_STATUSES)
    return {"modelled": part(rows[modelled]), "not-modelled": part(rows[~modelled]), "portfolio": part(rows)}


def exposure_summary(location: pd.DataFrame, keys: pd.DataFrame | None, errors: pd.DataFrame | None
                     ) -> dict[str, Any]:
    """The lookup validation report (``exposure_summary_report.json``) as a dict.

    Parameters
    ----------
    location : pandas.DataFrame
        OED locations with ``loc_id`` (as :func:`~perilflow.kernel.oed.load_exposure` gives them).
    keys, errors : pandas.DataFrame or None
        The lookup's keys (``loc_id, peril_id, coverage_type, ...``) and keys errors
        (``loc_id, peril_id, coverage_type, status, message``), as ``run_lookup`` returns them
        or ``read_keys`` / ``read_keys_errors`` read them back.

    Returns
    -------
    dict
        ``total`` and one entry per peril the lookup returned, in the order it first appears.
    """
    tivs = _tiv_rows(location)
    statuses = _key_statuses(keys, errors)
    perils = list(dict.fromkeys(statuses["peril_id"]))
    if perils:
        rows = pd.concat([tivs.assign(peril_id=peril) for peril in perils], ignore_index=True)
        rows = rows.merge(statuses, how="left", on=["loc_id", "coverage_type_id", "peril_id"])
        rows["status"] = rows["status"].fillna(STATUS_NORETURN)
    else:
        rows = tivs.assign(peril_id=pd.Series(dtype=object), status=STATUS_NORETURN)
    report: dict[str, Any] = {"total": _totals(rows)}
    for peril, of_peril in rows.groupby("peril_id", sort=False):
        report[peril] = {"all": _section(of_peril)}
        for status in KEYS_STATUSES:
            report[peril][status] = _section(of_peril[of_peril["status"] == status])
    return report


# ----------------------------------------------------------------------------- the summary levels


def _filled_everywhere(values: pd.Series) -> bool:
    """True when every row has a value that is not missing, empty or zero (the reference's test)."""
    if len(values) == 0 or values.isna().any():
        return False
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return bool((values.to_numpy() != 0).all())
    plain = values.astype(object).to_numpy()
    return not bool(((plain == 0) | (plain == "")).any())


def _filled_somewhere(values: pd.Series) -> bool:
    return bool(values.notna().any())


def _descriptions(columns: list[str], kind: str) -> dict[str, str]:
    """``{column: OED "Type & Description"}`` for the ``kind`` ("Loc" or "Acc") file."""
    from perilflow.kernel.oed.exposure import oed_schema

    fields = oed_schema().schema["input_fields"].get(kind, {})
    return {c: str(fields[c.lower()].get("Type & Description", _NOT_OED)) if c.lower() in fields else _NOT_OED
            for c in columns}


def summary_levels(location: pd.DataFrame, account: pd.DataFrame | None = None,
                   reinsurance: bool = False) -> dict[str, Any]:
    """The summary levels file (``exposure_summary_levels.json``) as a dict (see the module's docstring)."""
    loc_fields = [str(c) for c in location.columns
                  if c not in _INTERNAL_COLUMNS and _filled_everywhere(location[c])]
    available = _descriptions(loc_fields, "Loc")
    acc_fields: dict[str, str] = {}
    if account is not None:
        acc_fields = _descriptions([str(c) for c in account.columns
                                    if c not in available and c not in _INTERNAL_COLUMNS
                                    and _filled_somewhere(account[c])], "Acc")
    fields = dict(sorted({**available, **acc_fields, **_OASIS_COLUMNS}.items()))
    levels = {"GUL": {"available": fields}}
    if acc_fields:
        levels["IL"] = {"available": dict(fields)}
        if reinsurance:
            levels["RI"] = {"available": dict(fields)}
    return levels


# ----------------------------------------------------------------------------- files


def _write_json(path: Path, data: Mapping[str, Any], sort_keys: bool) -> Path:
    text = json.dumps(data, sort_keys=sort_keys, ensure_ascii=False, indent=4)
    return atomic_write(path, lambda handle: handle.write(text), binary=False)


def write_exposure_summaries(target_dir: str | os.PathLike, location: pd.DataFrame, keys: pd.DataFrame | None,
                             errors: pd.DataFrame | None, account: pd.DataFrame | None = None,
                             reinsurance: bool = False) -> dict[str, Path]:
    """Write ``exposure_summary_report.json`` and ``exposure_summary_levels.json`` into ``target_dir``.

    Returns
    -------
    dict of str to pathlib.Path
        ``exposure_summary_report`` and ``exposure_summary_levels``.
    """
    folder = Path(target_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "exposure_summary_report": _write_json(folder / EXPOSURE_SUMMARY_REPORT,
                                               exposure_summary(location, keys, errors), sort_keys=False),
        "exposure_summary_levels": _write_json(folder / EXPOSURE_SUMMARY_LEVELS,
                                               summary_levels(location, account, reinsurance), sort_keys=True),
    }
