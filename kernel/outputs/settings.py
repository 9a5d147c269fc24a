"""Analysis settings for the ORD outputs, and the summary xref built from a summary map.

:func:`load_analysis_settings` validates a settings dict or JSON file with ods-tools'
analysis-settings schema (plus its extra checks) and raises ``ValueError`` naming every
offending field.

:func:`build_summary_xref` assigns a summary id to every item (GUL) or output (IL / RI) for
each summary set, as oasislmf's ``get_summary_xref_df`` does:

* the map is sorted (stably) by the id column; the set's ``oed_fields`` values of each row
  (missing values read as 0) are factorised in order of first appearance, giving ids 1, 2, ...;
* no ``oed_fields`` (or an empty list) puts everything in summary 1 ("All-Risks");
* fields absent from the map are looked up in the location frame (by ``loc_id``, first row per
  location) or the account frame (by ``acc_idx``); the reference keeps only Oasis columns of
  the map and reads every OED field from the exposure, which gives the same grouping since the
  map's OED values are copies of the exposure's;
* ``is_property_damage`` is computed (coverage type 1 or 2).

It also builds the ``<perspective>_S<n>_summary-info`` table (summary_id, the fields, tiv
summed over distinct (loc_id, building_id, coverage_type_id)) and the risk index of every id
(first appearance of ``(loc_id, building_id)`` in map order) used for the -4 risk count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perilflow.kernel.outputs.ept import EpFlags

PERSPECTIVES = ("gul", "il", "ri")
#: Summary set ids the reference accepts.
SUMMARY_SET_IDS = range(1, 10)

#: ord_output flags -> table name, for the per-event and per-period tables.
ELT_PLT_FLAGS = {
    "elt_sample": "selt",
    "elt_moment": "melt",
    "elt_quantile": "qelt",
    "plt_sample": "splt",
    "plt_moment": "mplt",
    "plt_quantile": "qplt",
}

_CALCULATED = {"is_property_damage"}


def load_analysis_settings(settings: dict[str, Any] | str | Path) -> dict[str, Any]:
    """Read and validate analysis settings with ods-tools' schema.

    Parameters
    ----------
    settings : dict or path
        The settings, or a JSON file.

    Returns
    -------
    dict
        The settings (obsolete keys updated by ods-tools).

    Raises
    ------
    ValueError
        If the settings do not validate; the message lists each failing field.
    """
    from ods_tools.oed.settings import AnalysisSettingHandler

    handler = AnalysisSettingHandler.make()
    if not isinstance(settings, dict):
        try:
            settings = json.loads(Path(settings).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"analysis settings file {settings} is not readable JSON: {exc}") from exc
    data = handler.update_obsolete_keys(settings)
    ok, errors = handler.validate(data, raise_error=False)
    if not ok:
        details = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in errors.items())
        raise ValueError(f"invalid analysis settings ({details}); fix these fields against ods-tools' schema")
    return data


@dataclass(frozen=True)
class SummarySetSettings:
    """One entry of ``<perspective>_summaries``.

    Attributes
    ----------
    set_id : int
        Summary set id (1-9).
    oed_fields : tuple of str
        Fields grouped by; empty = one summary for everything.
    tables : tuple of str
        ELT / PLT tables requested (``selt``, ``melt``, ``qelt``, ``splt``, ``mplt``, ``qplt``).
    alt_period, alt_meanonly, alct : bool
        ALT outputs (ALCT only together with ``alt_period``, as in the reference).
    alct_confidence : float
        ALCT confidence level.
    ep : EpFlags
        EPT / PSEPT flags.
    return_period_file : bool
        Interpolate the EP curves at the return periods.
    parquet : bool
        Write parquet instead of csv.
    """

    set_id: int
    oed_fields: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    alt_period: bool = False
    alt_meanonly: bool = False
    alct: bool = False
    alct_confidence: float = 0.95
    ep: EpFlags = field(default_factory=EpFlags)
    return_period_file: bool = False
    parquet: bool = False

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> SummarySetSettings:
        set_id = entry.get("id")
        if set_id not in SUMMARY_SET_IDS:
            raise ValueError(f"summary set id {set_id!r}: ids must be integers 1 to 9 (the reference's limit)")
        fields = entry.get("oed_fields") or []
        if isinstance(fields, str):
            fields = [fields]
        ord_ = entry.get("ord_output", {}) or {}
        tables = tuple(t for flag, t in ELT_PLT_FLAGS.items() if ord_.get(flag))
        ep = EpFlags(**{k: bool(ord_.get(k if k.startswith("psept") else f"ept_{k}")) for k in EpFlags.__annotations__})
        return cls(
            set_id=int(set_id),
            oed_fields=tuple(fields),
            tables=tables,
            alt_period=bool(ord_.get("alt_period")),
            alt_meanonly=bool(ord_.get("alt_meanonly")),
            alct=bool(ord_.get("alt_period")) and bool(ord_.get("alct_convergence")),
            alct_confidence=float(ord_.get("alct_confidence") or 0.95),
            ep=ep,
            return_period_file=bool(ord_.get("return_period_file")),
            parquet=bool(ord_.get("parquet_format")),
        )

    @property
    def needs_periods(self) -> bool:
        """Whether ALT or EP outputs need the per-period reduction."""
        return self.alt_period or self.alt_meanonly or self.ep.any_ept or self.ep.any_psept


def perspective_summary_sets(settings: dict[str, Any], perspective: str) -> list[SummarySetSettings]:
    """The summary sets of a perspective, or [] when ``<perspective>_output`` is off."""
    if perspective not in PERSPECTIVES:
        raise ValueError(f"perspective must be one of {PERSPECTIVES}, not {perspective!r}")
    if not settings.get(f"{perspective}_output"):
        return []
    entries = settings.get(f"{perspective}_summaries") or []
    sets = [SummarySetSettings.from_dict(e) for e in entries if "id" in e]
    ids = [s.set_id for s in sets]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{perspective}_summaries: duplicated summary set id in {ids}")
    return sets


# ---------------------------------------------------------------------------------------------
# summary xref


@dataclass(frozen=True)
class SummaryXref:
    """Summary ids of one summary set.

    Attributes
    ----------
    set_id : int
    id_to_summary : numpy.ndarray
        int32[max_id + 1]: summary id of each item / output id (0 = not mapped).
    n_summaries : int
        Number of summary ids (they are 1..n).
    info : pandas.DataFrame
        The summary-info table: ``summary_id``, the fields (or ``_not_set_``), ``tiv``.
    """

    set_id: int
    id_to_summary: np.ndarray
    n_summaries: int
    info: pd.DataFrame


def read_summary_map(path: str | Path) -> pd.DataFrame:
    """Read a gul/fm summary map csv (OED fields as text, missing values kept as NaN)."""
    numeric = {"loc_id", "loc_idx", "acc_idx", "item_id", "layer_id", "coverage_id", "agg_id", "output_id",
               "coverage_type_id", "building_id", "risk_id"}
    header = pd.read_csv(path, nrows=0).columns
    try:
        # integer columns parsed by the csv reader (pd.to_numeric on text is ~10x slower)
        df = pd.read_csv(path, dtype={c: (np.int64 if c in numeric else str) for c in header},
                         keep_default_na=False, na_values=[""])
        numeric = set()
    except (ValueError, OverflowError):  # e.g. "1.0" in an integer column: the general path below
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    for col in df.columns:
        if col in numeric:
            df[col] = pd.to_numeric(df[col]).astype(np.int64)
        elif col == "tiv":
            df[col] = pd.to_numeric(df[col]).astype(np.float64)
    return df


def _group_frame(map_df: pd.DataFrame, fields: list[str], location_df, account_df) -> pd.DataFrame:
    frame = map_df.copy()
    missing = [f for f in fields if f not in frame.columns and f not in _CALCULATED]
    if missing and location_df is not None:
        cols = [f for f in missing if f in location_df.columns]
        if cols:
            if "loc_id" not in location_df.columns:
                raise ValueError("location frame needs a loc_id column to look up summary fields")
            loc = location_df.loc[:, cols + ["loc_id"]].drop_duplicates(subset="loc_id", keep="first")
            frame = frame.merge(loc, on="loc_id", how="left")
            missing = [f for f in missing if f not in cols]
    if missing and account_df is not None:
        cols = [f for f in missing if f in account_df.columns]
        if cols:
            if "acc_idx" not in account_df.columns or "acc_idx" not in frame.columns:
                raise ValueError("account lookups need an acc_idx column in both the map and the account frame")
            frame = frame.merge(account_df.loc[:, cols + ["acc_idx"]], on="acc_idx", how="left")
            missing = [f for f in missing if f not in cols]
    if missing:
        raise ValueError(f"summary set oed_fields {missing} are neither in the summary map nor in the exposure frames; "
                         "remove them from the analysis settings or pass location_df / account_df")
    if "is_property_damage" in fields:
        frame["is_property_damage"] = frame["coverage_type_id"].isin([1, 2])
    for f in fields:
        if frame[f].isna().any():
            frame[f] = frame[f].astype(object).where(frame[f].notna(), "0" if frame[f].dtype == object else 0)
    return frame


def build_summary_xref(
    map_df: pd.DataFrame,
    summary_set: SummarySetSettings,
    id_column: str,
    location_df: pd.DataFrame | None = None,
    account_df: pd.DataFrame | None = None,
) -> SummaryXref:
    """Summary ids of every id of ``id_column`` for one summary set (see the module docstring).

    Parameters
    ----------
    map_df : pandas.DataFrame
        A summary map (``gul_summary_map.csv`` / ``fm_summary_map.csv``), see :func:`read_summary_map`.
    summary_set : SummarySetSettings
    id_column : str
        ``item_id`` (GUL), ``output_id`` (IL / RI), or ``agg_id`` (GUL ids read from an fm map).
    location_df, account_df : pandas.DataFrame or None
        Exposure frames for fields not in the map (``loc_id`` / ``acc_idx`` keyed).
    """
    for col in (id_column, "loc_id", "building_id", "coverage_type_id", "tiv"):
        if col not in map_df.columns:
            raise ValueError(f"summary map has no {col!r} column; pass a gul/fm summary map as the reference writes it")
    fields = list(summary_set.oed_fields)
    frame = map_df.sort_values(id_column, kind="stable").reset_index(drop=True)
    ids = frame[id_column].to_numpy(np.int64)
    if ids.shape[0] == 0:
        raise ValueError("summary map is empty")
    if ids.min() < 1:
        raise ValueError(f"summary map {id_column} values must be >= 1")
    if not fields:
        summary = np.ones(ids.shape[0], np.int32)
        dedup = frame.drop_duplicates(["building_id", "loc_id", "coverage_type_id"], keep="first")
        info = pd.DataFrame({"summary_id": [1], "_not_set_": ["All-Risks"], "tiv": [dedup["tiv"].sum()]})
    else:
        frame = _group_frame(frame, fields, location_df, account_df)
        keys = list(zip(*(frame[f].to_numpy() for f in fields), strict=True))
        codes, uniques = pd.factorize(pd.Series(keys, dtype=object), sort=False)
        summary = (codes + 1).astype(np.int32)
        desc = pd.DataFrame(list(uniques), columns=fields)
        desc.insert(0, "summary_id", range(1, len(uniques) + 1))
        tiv = (frame.drop_duplicates(["loc_id", "building_id", "coverage_type_id"] + fields, keep="first")
               .groupby(fields, observed=True, sort=False).agg({"tiv": "sum"}))
        info = desc.merge(tiv, left_on=fields, right_on=fields)
    # An id on several rows (a GUL item read from an fm map has one row per layer) keeps the
    # summary of its last row, as summarypy does with duplicated xref pairs.
    id_to_summary = np.zeros(int(ids.max()) + 1, np.int32)
    id_to_summary[ids] = summary
    return SummaryXref(summary_set.set_id, id_to_summary, int(summary.max()), info)


def risk_index(map_df: pd.DataFrame, id_column: str) -> np.ndarray:
    """int32[max_id + 1]: index of each id's risk ``(loc_id, building_id)`` by first appearance in map order."""
    for col in (id_column, "loc_id", "building_id"):
        if col not in map_df.columns:
            raise ValueError(f"summary map has no {col!r} column (needed for the risk count)")
    ids = map_df[id_column].to_numpy(np.int64)
    risks = pd.factorize(pd.Series(list(zip(map_df["loc_id"], map_df["building_id"], strict=True)), dtype=object),
                         sort=False)[0]
    out = np.zeros(int(ids.max()) + 1 if ids.shape[0] else 1, np.int32)
    out[ids] = risks
    return out
