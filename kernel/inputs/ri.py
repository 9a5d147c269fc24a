"""Reinsurance input files: ``RI_1 .. RI_n`` and ``ri_layers.json`` from OED ri_info / ri_scope.

:func:`write_ri_inputs` builds what the reference (oasislmf 2.5.x,
``oasislmf/preparation/reinsurance_layer.py``) builds, with the same numbering of
nodes, layers and profiles, from the OED reinsurance files, the location and account
files, and the insurance pass's ``fm_summary_map``.

Passes
    One pass per (InuringPriority, RiskLevel) that has contracts: priorities ascending
    and, within a priority, risk levels in the order LOC, LGR, POL, ACC, SEL (a blank
    RiskLevel means SEL, the whole portfolio). ``fmpy -a3 -n`` runs the passes in that
    order, each on the net loss of the previous one, so every pass has the same items:
    the insurance outputs (item ``k`` of a pass is output ``k`` of the pass before).

Tree of one pass
    ========  ========  ==========================================================
    FM level  name      nodes
    ========  ========  ==========================================================
    (items)   item      one per insurance output: item id = ``output_id``
    1         filter    one per (PortNumber, AccNumber, PolNumber, LocGroup, LocNumber)
    2         risk      one per risk-level key: SEL PortNumber; ACC PortNumber,
                        AccNumber; POL PortNumber, AccNumber, PolNumber; LGR LocGroup;
                        LOC PortNumber, AccNumber, LocNumber
    3         programme one node
    ========  ========  ==========================================================

    The outputs are sorted by (agg_id, output_id), then by the risk level's key
    (LOC: PortNumber, AccNumber, LocNumber, PolNumber; LGR: LocGroup, PortNumber,
    AccNumber, PolNumber, LocNumber; otherwise PortNumber, AccNumber, PolNumber,
    LocNumber), comparing the OED identifiers as text; filter and risk nodes are
    numbered in order of first appearance in that order.

Layers
    Each FAC scope row gets layer ``1 + (number of earlier FAC scope rows of the pass
    with the same risk-level key)``, so FAC contracts share as few layers as possible.
    Every other ri_info row (a contract, or one layer of a contract with
    ``ReinsLayerNumber``) gets a layer of its own, numbered after the FAC layers in
    ri_info order. The tree is repeated in every layer; ``fm_xref`` sends output ``k``
    to item ``k`` at the last layer, which carries the net loss over all layers.

Profiles
    Profile 1 (calcrule 14, limit 0) cedes nothing: the default of filter and risk
    nodes. Profile 2 (calcrule 12, deductible 0) passes the loss through: the default
    of the programme node, and what opens a filter node inside a contract's scope.
    Then, for the risk level and then the programme level, and for each ReinsType in
    the order FAC, PR, QS, SS, CXL, one profile per distinct combination of the
    contract's terms (numbered in ri_info x ri_scope row order):

    =====  =========  ========  ==============  ===========  ====================  =============
    type   level      calcrule  attachment1     limit1       share1                share2
    =====  =========  ========  ==============  ===========  ====================  =============
    FAC    risk       24        RiskAttachment  RiskLimit    CededPercent          PlacedPercent
    PR     risk       24        RiskAttachment  RiskLimit    CededPercent          1
    PR     programme  24        OccAttachment   OccLimit     1                     PlacedPercent
    QS     risk       24        0               RiskLimit    CededPercent          1
    QS     programme  23        0               OccLimit     0                     PlacedPercent
    SS     risk       24        RiskAttachment  RiskLimit    scope CededPercent    1
    SS     programme  23        0               OccLimit     0                     PlacedPercent
    CXL    programme  24        OccAttachment   OccLimit     CededPercent          PlacedPercent
    =====  =========  ========  ==============  ===========  ====================  =============

    share3 is 1 and the deductibles 0; a limit of 0 means unlimited (9999999999999).
    A type without terms at a level (FAC at the programme, CXL at the risk level)
    passes the loss through there.

Scope
    A filter node is opened (profile 2) in a contract's layer when some scope row of the
    contract matches it: every non-blank scope field among PortNumber, AccNumber,
    PolNumber, LocGroup, LocNumber, CedantName, ProducerName, LOB, CountryCode and
    ReinsTag equals the node's value (FAC and SS: the risk-level key must equal even
    where blank), and for ``AttachmentBasis = RA`` the policy's PolInceptionDate lies
    within [ReinsInceptionDate, ReinsExpiryDate]. A risk node gets the contract's risk
    profile when a scope row names its key; for types other than FAC and SS, scope rows
    that leave the finer key fields blank apply to every risk node the coarser fields
    name (for LOC: PortNumber + AccNumber, then PortNumber, then everything).

Inputs are pandas DataFrames as read from the OED csv files; identifiers are compared
as text (``1`` and ``1.0`` both read as ``"1"``). LocGroup, ReinsTag and CountryCode come
from the location file, CedantName, ProducerName, LOB and PolInceptionDate from the
account file, joined to ``fm_summary_map`` on PortNumber/AccNumber/LocNumber (the key
``loc_id`` is built from) and PortNumber/AccNumber/PolNumber. Invalid or inconsistent
input raises :class:`RiInputError` (a ``ValueError``) naming the file, row, column and
fix; a frame's ``attrs["path"]``, when set, is used as its file name in messages.

Where this differs from the reference on purpose: it rejects what the reference would
silently turn into a contract that cedes nothing (an ri_info contract without scope
rows, scope rows naming an unknown contract, portfolio, account, policy, location or
location group, an unknown ReinsType or RiskLevel, percentages outside 0..1); a blank
PlacedPercent counts as 1 before profiles are numbered (the reference numbers each blank
apart, with the same terms); and outputs join locations on their identifiers rather than
on ``loc_id``, so a location file with extra rows (as the ``issues`` suite has) still fits.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from perilflow.kernel.oasis.dtypes import FILE_DTYPES
from perilflow.kernel.oasis.errors import OasisFileError
from perilflow.kernel.oasis.files import RiPass, write_csv, write_ri_layers

__all__ = [
    "REINS_TYPES",
    "RISK_LEVELS",
    "RiInputError",
    "RiPassFiles",
    "build_ri_passes",
    "write_ri_inputs",
]

#: Risk levels in the order the reference creates passes within one inuring priority.
RISK_LEVELS: tuple[str, ...] = ("LOC", "LGR", "POL", "ACC", "SEL")
#: Reinsurance types, in the order their profiles are numbered.
REINS_TYPES: tuple[str, ...] = ("FAC", "PR", "QS", "SS", "CXL")

#: Fields that identify a risk node at each risk level (coarse to fine).
RISK_FIELDS: dict[str, tuple[str, ...]] = {
    "SEL": ("PortNumber",),
    "ACC": ("PortNumber", "AccNumber"),
    "POL": ("PortNumber", "AccNumber", "PolNumber"),
    "LGR": ("LocGroup",),
    "LOC": ("PortNumber", "AccNumber", "LocNumber"),
}
#: Sort order of the outputs before nodes are numbered.
SORT_FIELDS: dict[str, tuple[str, ...]] = {
    "LGR": ("LocGroup", "PortNumber", "AccNumber", "PolNumber", "LocNumber"),
    "LOC": ("PortNumber", "AccNumber", "LocNumber", "PolNumber"),
}
DEFAULT_SORT_FIELDS = ("PortNumber", "AccNumber", "PolNumber", "LocNumber")
#: One filter node per combination of these.
FILTER_FIELDS: tuple[str, ...] = ("PortNumber", "AccNumber", "PolNumber", "LocGroup", "LocNumber")
LOCATION_FIELDS: tuple[str, ...] = ("CountryCode", "ReinsTag")  # besides LocGroup
ACCOUNT_FIELDS: tuple[str, ...] = ("CedantName", "ProducerName", "LOB")
#: Every ri_scope field compared with a filter node, in the reference's order.
SCOPE_FIELDS: tuple[str, ...] = FILTER_FIELDS + ("CedantName", "ProducerName", "LOB", "CountryCode", "ReinsTag")

#: Types whose scope must name the risk-level key exactly.
EXACT_TYPES = frozenset({"FAC", "SS"})
#: For exact types: scope fields that must be filled / blank at each risk level.
EXACT_SCOPE_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ACC": (("AccNumber",), ("PolNumber", "LocNumber")),
    "POL": (("AccNumber", "PolNumber"), ("LocNumber",)),
    "LOC": (("AccNumber", "LocNumber"), ()),
    "LGR": (("LocGroup",), ()),
}

NO_LOSS_PROFILE_ID = 1
PASSTHROUGH_PROFILE_ID = 2
UNLIMITED = 9999999999999.0

RISK_LEVEL_ID = 2  # FM level of the risk nodes in a pass
PROGRAMME_LEVEL_ID = 3

#: Profile terms per (ReinsType, level): calcrule and, per term, an OED column or a constant.
#: "CededPercent_scope" is the scope row's CededPercent.
PROFILE_TERMS: dict[tuple[str, str], tuple[int, dict[str, str | float]]] = {
    ("FAC", "risk"): (24, {"attachment1": "RiskAttachment", "limit1": "RiskLimit",
                           "share1": "CededPercent", "share2": "PlacedPercent"}),
    ("PR", "risk"): (24, {"attachment1": "RiskAttachment", "limit1": "RiskLimit",
                          "share1": "CededPercent", "share2": 1.0}),
    ("PR", "programme"): (24, {"attachment1": "OccAttachment", "limit1": "OccLimit",
                               "share1": 1.0, "share2": "PlacedPercent"}),
    ("QS", "risk"): (24, {"attachment1": 0.0, "limit1": "RiskLimit", "share1": "CededPercent", "share2": 1.0}),
    ("QS", "programme"): (23, {"attachment1": 0.0, "limit1": "OccLimit", "share1": 0.0,
                               "share2": "PlacedPercent"}),
    ("SS", "risk"): (24, {"attachment1": "RiskAttachment", "limit1": "RiskLimit",
                          "share1": "CededPercent_scope", "share2": 1.0}),
    ("SS", "programme"): (23, {"attachment1": 0.0, "limit1": "OccLimit", "share1": 0.0,
                               "share2": "PlacedPercent"}),
    ("CXL", "programme"): (24, {"attachment1": "OccAttachment", "limit1": "OccLimit",
                                "share1": "CededPercent", "share2": "PlacedPercent"}),
}

#: ri_info numeric terms: default for a blank cell, and whether the value is a fraction (0..1).
INFO_NUMBERS: dict[str, tuple[float, bool]] = {
    "CededPercent": (1.0, True),
    "RiskLimit": (0.0, False),
    "RiskAttachment": (0.0, False),
    "OccLimit": (0.0, False),
    "OccAttachment": (0.0, False),
    "PlacedPercent": (1.0, True),
}
ATTACHMENT_BASES = ("LO", "RA")


class RiInputError(OasisFileError):
    """ri_info / ri_scope are invalid, or inconsistent with each other or with the exposure.

    A ``ValueError``; the message names the file, row (counting data rows from 1, the
    header being line 1) and column, and says how to fix it.
    """

    def __reduce__(self):
        return (_rebuild_error, (self.path, self.problem, self.row, self.column, self.fix))


def _rebuild_error(path, problem, row, column, fix) -> RiInputError:
    """Recreate an unpickled RiInputError."""
    return RiInputError(path, problem, row=row, column=column, fix=fix)


@dataclass
class RiPassFiles:
    """The four Oasis files of one reinsurance pass, as structured arrays (``FILE_DTYPES`` layouts)."""

    number: int
    inuring_priority: int
    risk_level: str
    fm_programme: np.ndarray
    fm_policytc: np.ndarray
    fm_profile: np.ndarray
    fm_xref: np.ndarray


# --------------------------------------------------------------------------- public API


def write_ri_inputs(
    output_dir: Path,
    ri_info: pd.DataFrame,
    ri_scope: pd.DataFrame,
    location: pd.DataFrame,
    account: pd.DataFrame,
    fm_summary_map: pd.DataFrame,
) -> list[RiPass]:
    """Write the reinsurance passes ``RI_1 .. RI_n`` and ``ri_layers.json`` into ``output_dir``.

    Parameters
    ----------
    output_dir : pathlib.Path
        The Oasis input folder (holding the insurance files). It is created if missing.
    ri_info, ri_scope : pandas.DataFrame
        The OED reinsurance info and scope files, as pandas reads them.
    location, account : pandas.DataFrame
        The OED location and account files the insurance files were generated from.
    fm_summary_map : pandas.DataFrame
        The insurance pass's output map (``fm_summary_map.csv``): one row per output
        with at least ``output_id``, PortNumber, AccNumber, LocNumber and PolNumber
        (``agg_id`` orders outputs the way the reference does).

    Returns
    -------
    list of RiPass
        One per pass, in running order, with ``directory = output_dir / "RI_<n>"``.

    Raises
    ------
    RiInputError
        If the reinsurance files are invalid or do not fit the exposure.

    Notes
    -----
    Each ``RI_n`` folder is written in a temporary folder and then moved into place,
    replacing an older one whole (so no stale ``.bin`` file survives); ``ri_layers.json``
    is written last, with folders relative to ``output_dir``. Folders ``RI_m`` from an
    earlier run with ``m > n`` are left alone: ``ri_layers.json`` no longer lists them.
    """
    output_dir = Path(output_dir)
    built = build_ri_passes(ri_info, ri_scope, location, account, fm_summary_map)
    output_dir.mkdir(parents=True, exist_ok=True)
    passes = []
    for files in built:
        directory = output_dir / f"RI_{files.number}"
        _write_pass_folder(directory, files)
        passes.append(RiPass(files.number, files.inuring_priority, files.risk_level, directory))
    write_ri_layers(output_dir, passes)
    return passes


def build_ri_passes(
    ri_info: pd.DataFrame,
    ri_scope: pd.DataFrame,
    location: pd.DataFrame,
    account: pd.DataFrame,
    fm_summary_map: pd.DataFrame,
) -> list[RiPassFiles]:
    """Build the reinsurance passes in memory; see :func:`write_ri_inputs` for the arguments.

    Returns
    -------
    list of RiPassFiles
        One per (InuringPriority, RiskLevel) with contracts, in running order.
    """
    info = _prepare_info(ri_info)
    scope = _prepare_scope(ri_scope, info, _source(ri_info, "ri_info.csv"))
    _check_scope_targets(scope, location, account, _source(ri_scope, "ri_scope.csv"))
    outputs = _describe_outputs(fm_summary_map, location, account)
    built = []
    for priority in range(1, int(info["InuringPriority"].max()) + 1):
        for risk_level in RISK_LEVELS:
            contracts = info[(info["InuringPriority"] == priority) & (info["RiskLevel"] == risk_level)]
            if contracts.empty:
                continue
            number = len(built) + 1
            files = _build_pass(contracts, scope, outputs, risk_level)
            built.append(RiPassFiles(number, priority, risk_level, *files))
    return built


# --------------------------------------------------------------------------- reading the OED frames


def _source(frame: pd.DataFrame, default: str) -> Path:
    """The file a frame came from, for messages: ``frame.attrs["path"]`` or the OED role name."""
    return Path(frame.attrs.get("path", default))


def _require_columns(frame: pd.DataFrame, columns: tuple[str, ...], where: Path, fix: str) -> None:
    """Raise if any of ``columns`` is missing (names are case-sensitive, as in OED)."""
    for column in columns:
        if column not in frame.columns:
            near = [c for c in frame.columns if str(c).lower() == column.lower()]
            hint = f" (found '{near[0]}': names are case-sensitive)" if near else ""
            raise RiInputError(where, f"missing column '{column}'{hint}", column=column, fix=fix)


def _cell_text(value) -> str:
    """One identifier cell as text: blank -> '', whole numbers without '.0'."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def _text(column: pd.Series) -> pd.Series:
    """An OED identifier column as text, the way the reference reads it (blank -> '').

    pandas reads ``1`` as an integer and, in a column with blanks, as ``1.0``; both
    become ``"1"`` so that the same identifier compares equal across files.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    kind = column.dtype.kind
    missing = column.isna()
    if kind in "iub" and not missing.any():
        return column.astype(str)
    if kind == "f":
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        out = np.full(values.shape, "", dtype=object)
        finite = np.isfinite(values)
        whole = finite & (np.trunc(values) == values) & (np.abs(values) < 2.0**63)
        out[whole] = values[whole].astype(np.int64).astype(str)
        out[finite & ~whole] = values[finite & ~whole].astype(str)
        return pd.Series(out, index=column.index, dtype=object)
    filled = column.astype(object).where(~missing, "")
    if pd.api.types.infer_dtype(filled, skipna=False) in ("string", "empty"):
        return filled.astype(str)
    return filled.map(_cell_text).astype(object)  # mixed numbers and text in one column (rare)


def _optional_text(frame: pd.DataFrame, column: str) -> pd.Series:
    """Text of an optional column, '' where the column is absent."""
    if column not in frame.columns:
        return pd.Series("", index=frame.index, dtype=object)
    return _text(frame[column])


def _first_bad(mask) -> int | None:
    """Position of the first True in ``mask``, or None."""
    bad = np.flatnonzero(np.asarray(mask, dtype=bool))
    return int(bad[0]) if len(bad) else None


def _numbers(frame: pd.DataFrame, column: str, default: float, fraction: bool, where: Path) -> np.ndarray:
    """float64 values of an optional numeric column: blank -> ``default``; text or out of range -> error."""
    if column not in frame.columns:
        return np.full(len(frame), default)
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    blank = raw.isna() | (raw.astype(str).str.strip() == "")
    row = _first_bad(values.isna() & ~blank)
    if row is not None:
        raise RiInputError(where, f"{raw.iloc[row]!r} is not a number", row=row + 1, column=column,
                           fix=f"write a number, or leave the cell blank for the default ({default:g}).")
    values = values.fillna(default).to_numpy(np.float64)
    limit = "between 0 and 1 (0.25 for 25%)" if fraction else "0 or more"
    outside = ~np.isfinite(values) | (values < 0) | ((values > 1) if fraction else False)
    row = _first_bad(outside)
    if row is not None:
        raise RiInputError(where, f"{values[row]:g} is out of range", row=row + 1, column=column,
                           fix=f"{column} must be {limit}.")
    return values


def _integers(frame: pd.DataFrame, column: str, where: Path, fix: str) -> np.ndarray:
    """A required whole-number column (values >= 1) as int64."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(values) | (values != np.trunc(values)) | (values < 1)
    row = _first_bad(bad)
    if row is not None:
        shown = "the cell is empty" if pd.isna(raw.iloc[row]) else f"{raw.iloc[row]!r} is not a whole number >= 1"
        raise RiInputError(where, shown, row=row + 1, column=column, fix=fix)
    return values.astype(np.int64)


def _dates(text: pd.Series) -> pd.Series:
    """Parse YYYY-MM-DD dates; blank or unreadable cells give NaT."""
    return pd.to_datetime(text.where(text != "", None), format="ISO8601", errors="coerce")


def _choice(frame: pd.DataFrame, column: str, allowed: tuple[str, ...], blank: str | None, where: Path,
            fix: str) -> pd.Series:
    """A text column restricted to ``allowed`` (blank -> ``blank``, or an error when None)."""
    values = _optional_text(frame, column).str.strip()
    if blank is not None:
        values = values.where(values != "", blank)
    row = _first_bad(~values.isin(allowed))
    if row is not None:
        shown = "the cell is empty" if values.iloc[row] == "" else f"unknown value {values.iloc[row]!r}"
        raise RiInputError(where, f"{shown} (expected one of {', '.join(allowed)})", row=row + 1,
                           column=column, fix=fix)
    return values


def _prepare_info(ri_info: pd.DataFrame) -> pd.DataFrame:
    """Check ri_info and return one clean row per contract layer (OED defaults applied)."""
    where = _source(ri_info, "ri_info.csv")
    _require_columns(ri_info, ("ReinsNumber", "ReinsType", "InuringPriority"), where,
                     fix="ri_info needs ReinsNumber, ReinsType and InuringPriority columns (OED names).")
    if ri_info.empty:
        raise RiInputError(where, "the file has no contracts",
                           fix="add the reinsurance contracts, or run without reinsurance files.")
    info = pd.DataFrame(index=ri_info.index)
    info["ReinsNumber"] = _integers(ri_info, "ReinsNumber", where, fix="give each contract a number 1, 2, ...")
    info["InuringPriority"] = _integers(ri_info, "InuringPriority", where,
                                        fix="write the inuring priority as 1, 2, ... (1 runs first).")
    info["ReinsType"] = _choice(ri_info, "ReinsType", REINS_TYPES, None, where,
                                fix="use an OED ReinsType supported by the reference: FAC, PR, QS, SS or CXL.")
    info["RiskLevel"] = _choice(ri_info, "RiskLevel", RISK_LEVELS, "SEL", where,
                                fix="use LOC, LGR, POL, ACC or SEL, or leave it blank for SEL (whole portfolio).")
    for column, (default, fraction) in INFO_NUMBERS.items():
        info[column] = _numbers(ri_info, column, default, fraction, where)
    info["AttachmentBasis"] = _choice(ri_info, "AttachmentBasis", ATTACHMENT_BASES, "LO", where,
                                      fix="use LO (losses occurring) or RA (risks attaching), or leave it blank.")
    for column in ("ReinsInceptionDate", "ReinsExpiryDate"):
        text = _optional_text(ri_info, column).str.strip()
        info[column] = _dates(text)
        row = _first_bad((info["AttachmentBasis"] == "RA").to_numpy() & info[column].isna().to_numpy())
        if row is not None:
            problem = "the cell is empty" if text.iloc[row] == "" else f"{text.iloc[row]!r} is not a date"
            raise RiInputError(where, f"{problem}, but AttachmentBasis is RA", row=row + 1, column=column,
                               fix="risks-attaching contracts need ReinsInceptionDate and ReinsExpiryDate "
                                   "as YYYY-MM-DD.")
    info["ReinsLayerNumber"] = _optional_text(ri_info, "ReinsLayerNumber")
    info["_info_row"] = np.arange(1, len(info) + 1)
    info = info.reset_index(drop=True)
    _check_contract_layers(info, where)
    return info


def _check_contract_layers(info: pd.DataFrame, where: Path) -> None:
    """One row per (ReinsNumber, ReinsLayerNumber); a contract's layers share type, level and priority."""
    row = _first_bad(info.duplicated(["ReinsNumber", "ReinsLayerNumber"]))
    if row is not None:
        raise RiInputError(where, f"ReinsNumber {info['ReinsNumber'].iloc[row]} appears twice",
                           row=row + 1, column="ReinsNumber",
                           fix="give each contract its own ReinsNumber, or number its layers in ReinsLayerNumber.")
    for column in ("ReinsType", "RiskLevel", "InuringPriority"):
        first = info.groupby("ReinsNumber")[column].transform("first")
        row = _first_bad(info[column] != first)
        if row is not None:
            raise RiInputError(where, f"this layer of ReinsNumber {info['ReinsNumber'].iloc[row]} has {column} "
                               f"{info[column].iloc[row]}, another layer has {first.iloc[row]}",
                               row=row + 1, column=column,
                               fix=f"use the same {column} on every layer of a contract.")


def _prepare_scope(ri_scope: pd.DataFrame, info: pd.DataFrame, info_where: Path) -> pd.DataFrame:
    """Check ri_scope against ri_info; return the scope fields as text plus CededPercent_scope."""
    where = _source(ri_scope, "ri_scope.csv")
    _require_columns(ri_scope, ("ReinsNumber",), where, fix="ri_scope needs a ReinsNumber column.")
    scope = pd.DataFrame(index=ri_scope.index)
    scope["ReinsNumber"] = _integers(ri_scope, "ReinsNumber", where,
                                     fix="write the ReinsNumber of the ri_info contract this row belongs to.")
    for column in SCOPE_FIELDS:
        scope[column] = _optional_text(ri_scope, column)
    scope["CededPercent_scope"] = _numbers(ri_scope, "CededPercent", 1.0, True, where)
    scope["_scope_row"] = np.arange(1, len(scope) + 1)
    scope = scope.reset_index(drop=True)

    known = set(info["ReinsNumber"])
    row = _first_bad(~scope["ReinsNumber"].isin(known))
    if row is not None:
        raise RiInputError(where, f"ReinsNumber {scope['ReinsNumber'].iloc[row]} is not in ri_info",
                           row=row + 1, column="ReinsNumber",
                           fix="add the contract to ri_info, or correct the ReinsNumber.")
    row = _first_bad(~info["ReinsNumber"].isin(set(scope["ReinsNumber"])))
    if row is not None:
        raise RiInputError(info_where, f"contract ReinsNumber {info['ReinsNumber'].iloc[row]} has "
                           "no ri_scope rows, so it would cede nothing", row=int(info["_info_row"].iloc[row]),
                           column="ReinsNumber", fix="add its scope to ri_scope (a row with only the "
                           "ReinsNumber and PortNumber covers a whole portfolio), or delete the contract.")
    _check_exact_scope(scope, info, where)
    return scope


def _check_exact_scope(scope: pd.DataFrame, info: pd.DataFrame, where: Path) -> None:
    """FAC and SS scope rows must name exactly the contract's risk (the reference raises otherwise)."""
    kinds = info.drop_duplicates("ReinsNumber")[["ReinsNumber", "ReinsType", "RiskLevel"]]
    rows = scope.merge(kinds, on="ReinsNumber", how="left")
    exact = rows["ReinsType"].isin(EXACT_TYPES)
    for level, (filled, blank) in EXACT_SCOPE_RULES.items():
        at_level = exact & (rows["RiskLevel"] == level)
        for column in filled:
            row = _first_bad(at_level & (rows[column] == ""))
            if row is not None:
                raise _exact_scope_error(rows, row, column, level, filled, blank, where, "is blank")
        for column in blank:
            row = _first_bad(at_level & (rows[column] != ""))
            if row is not None:
                raise _exact_scope_error(rows, row, column, level, filled, blank, where,
                                         f"is {rows[column].iloc[row]!r}")


def _exact_scope_error(rows, row, column, level, filled, blank, where, problem) -> RiInputError:
    """The error for a FAC / SS scope row that does not name its risk exactly."""
    need = " and ".join(filled)
    rule = f"name {need}" + (f" and leave {' and '.join(blank)} blank" if blank else "")
    return RiInputError(
        where,
        f"{column} {problem}: ReinsNumber {rows['ReinsNumber'].iloc[row]} is a {rows['ReinsType'].iloc[row]} "
        f"contract at RiskLevel {level}", row=row + 1, column=column,
        fix=f"scope rows of FAC and SS contracts at RiskLevel {level} must {rule}; "
            "or change the contract's RiskLevel in ri_info.")


def _check_scope_targets(scope: pd.DataFrame, location: pd.DataFrame, account: pd.DataFrame, where: Path) -> None:
    """Every portfolio, account, policy, location and location group a scope row names must exist."""
    acc_keys = pd.DataFrame({c: _optional_text(account, c) for c in ("PortNumber", "AccNumber", "PolNumber")})
    loc_keys = pd.DataFrame({c: _optional_text(location, c)
                             for c in ("PortNumber", "AccNumber", "LocNumber", "LocGroup")})
    # (file of the target, its key frame, the scope fields checked, the rows to check)
    checks = [
        ("account", acc_keys, ("PortNumber", "AccNumber", "PolNumber"),
         scope[["PortNumber", "AccNumber", "PolNumber"]].ne("").any(axis=1)),
        ("location", loc_keys, ("PortNumber", "AccNumber", "LocNumber"), scope["LocNumber"] != ""),
        ("location", loc_keys, ("LocGroup",), scope["LocGroup"] != ""),
    ]
    for target, keys, fields, rows in checks:
        checked = scope[rows]
        if checked.empty:
            continue
        given = checked[list(fields)].ne("").to_numpy()
        patterns = given @ (1 << np.arange(len(fields)))
        for pattern in np.unique(patterns):
            named = [f for i, f in enumerate(fields) if pattern >> i & 1]
            subset = checked[patterns == pattern]
            found = subset[named].merge(keys[named].drop_duplicates(), on=named, how="left", indicator=True)
            row = _first_bad(found["_merge"].to_numpy() == "left_only")
            if row is not None:
                bad = subset.iloc[row]
                what = ", ".join(f"{f} {bad[f]!r}" for f in named)
                raise RiInputError(where, f"no {target} has {what}", row=int(bad["_scope_row"]),
                                   column=named[-1],
                                   fix=f"correct the scope row (identifiers must match the {target} file "
                                       "exactly), or add the missing exposure.")


def _describe_outputs(fm_summary_map: pd.DataFrame, location: pd.DataFrame, account: pd.DataFrame) -> pd.DataFrame:
    """The insurance outputs with the OED fields the scope is matched on ("xref descriptions")."""
    where = _source(fm_summary_map, "fm_summary_map.csv")
    keys = ("output_id", "PortNumber", "AccNumber", "LocNumber", "PolNumber")
    _require_columns(fm_summary_map, keys, where,
                     fix="pass the insurance pass's fm_summary_map (one row per output_id).")
    if fm_summary_map.empty:
        raise RiInputError(where, "the file has no outputs", fix="generate the insurance files first.")
    outputs = pd.DataFrame({"output_id": _integers(fm_summary_map, "output_id", where,
                                                   fix="output ids are whole numbers 1, 2, ...")})
    row = _first_bad(outputs["output_id"].duplicated())
    if row is not None:
        raise RiInputError(where, f"output_id {outputs['output_id'].iloc[row]} appears twice", row=row + 1,
                           column="output_id", fix="pass the fm_summary_map of the insurance pass unchanged.")
    if "agg_id" in fm_summary_map.columns:
        outputs["agg_id"] = _integers(fm_summary_map, "agg_id", where, fix="agg ids are whole numbers 1, 2, ...")
    else:
        outputs["agg_id"] = outputs["output_id"]
    for column in keys[1:]:
        outputs[column] = _text(fm_summary_map[column]).to_numpy()
    outputs["_map_row"] = np.arange(1, len(outputs) + 1)

    loc_where = _source(location, "location.csv")
    _require_columns(location, ("PortNumber", "AccNumber", "LocNumber"), loc_where,
                     fix="pass the OED location file.")
    loc_on = ["PortNumber", "AccNumber", "LocNumber"]
    locations = pd.DataFrame({c: _optional_text(location, c) for c in loc_on + ["LocGroup", *LOCATION_FIELDS]})
    outputs = _join(outputs, locations.drop_duplicates(loc_on), loc_on, where, "location")

    acc_where = _source(account, "account.csv")
    _require_columns(account, ("PortNumber", "AccNumber", "PolNumber"), acc_where,
                     fix="pass the OED account file.")
    acc_on = ["PortNumber", "AccNumber", "PolNumber"]
    accounts = pd.DataFrame({c: _optional_text(account, c) for c in acc_on + list(ACCOUNT_FIELDS)})
    accounts["PolInceptionText"] = _optional_text(account, "PolInceptionDate").str.strip()
    accounts["PolInceptionDate"] = _dates(accounts["PolInceptionText"])
    accounts["_account_row"] = np.arange(1, len(accounts) + 1)
    accounts["_account_file"] = str(acc_where)
    outputs = _join(outputs, accounts.drop_duplicates(acc_on), acc_on, where, "account")
    return outputs


def _join(outputs: pd.DataFrame, exposure: pd.DataFrame, on: list[str], where: Path, target: str) -> pd.DataFrame:
    """Left-join exposure fields onto the outputs; every output must find its row."""
    joined = outputs.merge(exposure, on=on, how="left", indicator=True)
    row = _first_bad(joined["_merge"].to_numpy() == "left_only")
    if row is not None:
        what = ", ".join(f"{c} {joined[c].iloc[row]!r}" for c in on)
        raise RiInputError(where, f"output_id {joined['output_id'].iloc[row]} belongs to {what}, which is not in "
                           f"the {target} file", row=int(joined["_map_row"].iloc[row]), column=on[-1],
                           fix=f"pass the {target} file the insurance inputs were generated from.")
    return joined.drop(columns="_merge")


# --------------------------------------------------------------------------- one pass


@dataclass
class _Tree:
    """Nodes of one pass: items (sorted outputs), filter nodes and risk nodes, numbered from 1."""

    items: pd.DataFrame  # output_id, filter_agg, in the reference's order
    filters: pd.DataFrame  # one row per filter node, in agg order: SCOPE_FIELDS, risk_agg, dates
    risks: pd.DataFrame  # one row per risk node, in agg order: its risk fields, risk_agg


def _build_tree(outputs: pd.DataFrame, risk_level: str) -> _Tree:
    """Sort the outputs as the reference does and number filter and risk nodes by first appearance."""
    ordered = outputs.sort_values(["agg_id", "output_id"], kind="stable")
    ordered = ordered.sort_values(list(SORT_FIELDS.get(risk_level, DEFAULT_SORT_FIELDS)), kind="stable")
    ordered = ordered.reset_index(drop=True)
    risk_fields = list(RISK_FIELDS[risk_level])
    ordered["risk_agg"] = ordered.groupby(risk_fields, sort=False).ngroup().to_numpy() + 1
    ordered["filter_agg"] = ordered.groupby(list(FILTER_FIELDS), sort=False).ngroup().to_numpy() + 1
    filters = ordered.drop_duplicates("filter_agg").reset_index(drop=True)
    risks = filters.drop_duplicates("risk_agg")[risk_fields + ["risk_agg"]].reset_index(drop=True)
    return _Tree(ordered[["output_id", "filter_agg"]], filters, risks)


def _contract_rows(contracts: pd.DataFrame, scope: pd.DataFrame, risk_level: str) -> pd.DataFrame:
    """ri_info x ri_scope rows of one pass, each with its layer_id."""
    rows = contracts.merge(scope, on="ReinsNumber", how="inner", sort=False)
    fac = (rows["ReinsType"] == "FAC").to_numpy()
    layer = np.zeros(len(rows), dtype=np.int64)
    if fac.any():
        layer[fac] = rows[fac].groupby(list(RISK_FIELDS[risk_level]), sort=False).cumcount().to_numpy() + 1
    treaty_rows = contracts.loc[contracts["ReinsType"] != "FAC", "_info_row"].to_numpy()
    treaty_layer = pd.Series(np.arange(1, len(treaty_rows) + 1) + layer.max(initial=0), index=treaty_rows)
    layer[~fac] = treaty_layer.reindex(rows.loc[~fac, "_info_row"]).to_numpy()
    rows["layer_id"] = layer
    rows["profile_id"] = 0
    return rows


class _ProfileBook:
    """fm_profile of one pass: profiles 1 (no loss) and 2 (pass-through), then one per distinct term set."""

    def __init__(self) -> None:
        self.records: list[tuple] = [
            (NO_LOSS_PROFILE_ID, 14, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
            (PASSTHROUGH_PROFILE_ID, 12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        ]

    def add(self, rows: pd.DataFrame, reins_type: str, level: str) -> np.ndarray:
        """Profile ids of ``rows`` (one ReinsType) at ``level``, adding a profile per new term set."""
        spec = PROFILE_TERMS.get((reins_type, level))
        if spec is None:
            return np.full(len(rows), PASSTHROUGH_PROFILE_ID)
        calcrule, terms = spec
        columns = list(dict.fromkeys(v for v in terms.values() if isinstance(v, str)))
        codes = rows.groupby(columns, sort=False).ngroup().to_numpy()
        first_id = len(self.records) + 1
        distinct = rows.iloc[np.unique(codes, return_index=True)[1]]
        for offset, (_, row) in enumerate(distinct.iterrows()):  # one loop step per distinct contract term set
            value = {term: float(row[source]) if isinstance(source, str) else source
                     for term, source in terms.items()}
            limit = value["limit1"] if value["limit1"] != 0 else UNLIMITED
            self.records.append((first_id + offset, calcrule, 0.0, 0.0, 0.0, value["attachment1"], limit,
                                 value["share1"], value["share2"], 1.0))
        return codes + first_id

    def array(self) -> np.ndarray:
        """The profiles as an fm_profile array, by profile id."""
        return np.array(self.records, dtype=FILE_DTYPES["fm_profile"])


def _open_filter_nodes(opened: np.ndarray, rows: pd.DataFrame, tree: _Tree, exact: bool, risk_level: str) -> None:
    """Set profile 2 on the filter nodes each scope row matches, in that row's layer.

    Rows are grouped by which fields they constrain (non-blank fields; for exact types
    the risk-level key always), and each group is matched with one join.
    """
    fields = list(SCOPE_FIELDS)
    constrained = rows[fields].ne("").to_numpy()
    if exact:
        for field in RISK_FIELDS[risk_level]:
            constrained[:, fields.index(field)] = True
    patterns = constrained @ (1 << np.arange(len(fields), dtype=np.int64))
    nodes = tree.filters
    for pattern in np.unique(patterns):
        named = [f for i, f in enumerate(fields) if pattern >> i & 1]
        group = rows[patterns == pattern]
        left = group[named + ["layer_id", "AttachmentBasis", "ReinsInceptionDate", "ReinsExpiryDate",
                              "ReinsNumber"]]
        right = nodes[named + ["filter_agg", "PolInceptionDate", "PolInceptionText", "_account_row", "_account_file"]]
        pairs = left.merge(right, on=named) if named else left.merge(right, how="cross")
        pairs = _risks_attaching(pairs)
        opened[pairs["layer_id"].to_numpy() - 1, pairs["filter_agg"].to_numpy() - 1] = PASSTHROUGH_PROFILE_ID


def _risks_attaching(pairs: pd.DataFrame) -> pd.DataFrame:
    """Drop (scope row, node) pairs of RA contracts whose policy incepts outside the contract period."""
    ra = (pairs["AttachmentBasis"] == "RA").to_numpy()
    if not ra.any():
        return pairs
    inception = pairs["PolInceptionDate"]
    row = _first_bad(ra & inception.isna().to_numpy())
    if row is not None:
        bad = pairs.iloc[row]
        text = bad["PolInceptionText"]
        problem = "the cell is empty" if text == "" else f"{text!r} is not a YYYY-MM-DD date"
        raise RiInputError(bad["_account_file"], f"{problem}, but the policy is in the scope of ReinsNumber "
                           f"{bad['ReinsNumber']}, whose AttachmentBasis is RA", row=int(bad["_account_row"]),
                           column="PolInceptionDate",
                           fix="write the policy's inception date as YYYY-MM-DD (risks-attaching contracts "
                               "cover policies incepting within the contract period).")
    inside = (inception >= pairs["ReinsInceptionDate"]) & (inception <= pairs["ReinsExpiryDate"])
    return pairs[~ra | inside.to_numpy()]


def _assign_risk_nodes(risk: np.ndarray, rows: pd.DataFrame, tree: _Tree, exact: bool, risk_level: str) -> None:
    """Set each contract's risk-level profile on the risk nodes its scope names.

    Scope rows naming the full risk key match first; for types other than FAC and SS,
    rows leaving the finest field blank then apply to every node matching the coarser
    fields, and so on down to rows naming nothing, which cover every node.
    """
    fields = list(RISK_FIELDS[risk_level])
    active = np.ones(len(rows), dtype=bool)
    while active.any():
        named = rows[fields].ne("").all(axis=1).to_numpy() if fields else np.ones(len(rows), dtype=bool)
        chosen = rows[active & named][fields + ["layer_id", "profile_id"]].drop_duplicates()
        right = tree.risks[fields + ["risk_agg"]]
        pairs = chosen.merge(right, on=fields) if fields else chosen.merge(right, how="cross")
        risk[pairs["layer_id"].to_numpy() - 1, pairs["risk_agg"].to_numpy() - 1] = pairs["profile_id"].to_numpy()
        if not fields or exact:
            break
        active &= (rows[fields.pop()] == "").to_numpy()


def _build_pass(contracts: pd.DataFrame, scope: pd.DataFrame, outputs: pd.DataFrame,
                risk_level: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """fm_programme, fm_policytc, fm_profile and fm_xref of one (inuring priority, risk level) pass."""
    tree = _build_tree(outputs, risk_level)
    rows = _contract_rows(contracts, scope, risk_level)
    n_layers = int(rows["layer_id"].max())
    n_risk, n_filter = len(tree.risks), len(tree.filters)
    programme = np.full(n_layers, PASSTHROUGH_PROFILE_ID, dtype=np.int32)
    risk = np.full((n_layers, n_risk), NO_LOSS_PROFILE_ID, dtype=np.int32)  # profile per layer and node
    opened = np.full((n_layers, n_filter), NO_LOSS_PROFILE_ID, dtype=np.int32)
    profiles = _ProfileBook()
    for level in ("risk", "programme"):
        for reins_type in REINS_TYPES:
            of_type = (rows["ReinsType"] == reins_type).to_numpy()
            if not of_type.any():
                continue
            rows.loc[of_type, "profile_id"] = profiles.add(rows[of_type], reins_type, level)
            typed = rows[of_type]
            exact = reins_type in EXACT_TYPES
            if level == "risk":
                _open_filter_nodes(opened, typed, tree, exact, risk_level)
                _assign_risk_nodes(risk, typed, tree, exact, risk_level)
            else:
                programme[typed["layer_id"].to_numpy() - 1] = typed["profile_id"].to_numpy()

    fm_programme = np.empty(n_risk + n_filter + len(tree.items), dtype=FILE_DTYPES["fm_programme"])
    fm_programme["from_agg_id"] = np.concatenate([np.arange(1, n_risk + 1), np.arange(1, n_filter + 1),
                                                  tree.items["output_id"].to_numpy()])
    fm_programme["level_id"] = np.repeat([PROGRAMME_LEVEL_ID, RISK_LEVEL_ID, 1], [n_risk, n_filter, len(tree.items)])
    fm_programme["to_agg_id"] = np.concatenate([np.ones(n_risk, dtype=np.int64), tree.filters["risk_agg"].to_numpy(),
                                                tree.items["filter_agg"].to_numpy()])

    per_layer = 1 + n_risk + n_filter
    fm_policytc = np.empty(n_layers * per_layer, dtype=FILE_DTYPES["fm_policytc"])
    fm_policytc["level_id"] = np.tile(np.repeat([PROGRAMME_LEVEL_ID, RISK_LEVEL_ID, 1], [1, n_risk, n_filter]),
                                      n_layers)
    fm_policytc["agg_id"] = np.tile(np.concatenate([[1], np.arange(1, n_risk + 1), np.arange(1, n_filter + 1)]),
                                    n_layers)
    fm_policytc["layer_id"] = np.repeat(np.arange(1, n_layers + 1), per_layer)
    fm_policytc["profile_id"] = np.column_stack([programme, risk, opened]).ravel()

    output_ids = np.sort(outputs["output_id"].to_numpy())
    fm_xref = np.empty(len(output_ids), dtype=FILE_DTYPES["fm_xref"])
    fm_xref["output"] = output_ids
    fm_xref["agg_id"] = output_ids
    fm_xref["layer_id"] = n_layers
    return fm_programme, fm_policytc, profiles.array(), fm_xref


# --------------------------------------------------------------------------- writing


def _write_pass_folder(directory: Path, files: RiPassFiles) -> None:
    """Write one RI_n folder beside its final place, then swap it in whole."""
    staging = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.tmp")
    staging.mkdir()
    try:
        for name in ("fm_programme", "fm_policytc", "fm_profile", "fm_xref"):
            write_csv(staging / f"{name}.csv", getattr(files, name), name)
        retired = None
        if directory.exists():
            retired = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.old")
            os.replace(directory, retired)
        os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
