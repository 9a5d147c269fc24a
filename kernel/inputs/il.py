"""Insured-loss (IL) Oasis input files: the financial module's programme from OED terms.

:func:`build_il_inputs` reproduces oasislmf 2.5's ``get_il_input_items``: starting from the
GUL items (one per location, peril, coverage type and building), it walks the OED
financial levels bottom-up and, for every level that carries terms, aggregates the
items of the level below into nodes, assigns each node a profile (calcrule and terms)
and records the links. :func:`write_il_inputs` writes ``fm_programme.csv``,
``fm_policytc.csv``, ``fm_profile.csv`` (step layout when step policies are present),
``fm_xref.csv`` and ``fm_summary_map.csv``.

Levels (the reference's numbering; only levels with terms are written, numbered 1, 2, ...):

====  =================  ==========  ==================  =========================
id    level              source      aggregated by       terms
====  =================  ==========  ==================  =========================
1     site item          location    loc_id, risk_id     BI waiting period / POI
2     site coverage      location    loc_id, risk_id     LocDed1Building, ...
3     site PD            location    loc_id, risk_id     LocDed5PD, ...
4     site all           location    loc_id, risk_id     LocDed6All, ...
5-7   cond cov / PD/all  account     acc_id, CondTag     CondDed1Building, ...
8-10  policy cov/PD/all  account     acc_id              PolDed1Building, ... (+ step policies at 10)
11    policy layer       account     acc_id              LayerLimit, LayerAttachment, LayerParticipation
14    account all        account     acc_id              AccDed6All, ..., AccParticipation
====  =================  ==========  ==================  =========================

The policy layer level is always written (with the pass-through profile when it has no
terms) so that the top of the programme is one node per account and layer. Terms apply
to the coverage types their OED field names (e.g. ``LocDed5PD`` to buildings, other and
contents); ``LocPeril``, ``CondPeril``, ``PolPeril`` and ``AccPeril`` restrict them to
some perils. Deductibles and limits given as a share of TIV (type 2) are converted with
the TIV of the node, BI durations (type 3) with TIV / 365, and amounts of aggregate
locations (``IsAggregate`` 1) are divided by the number of buildings. Calcrules come from
the reference's tables in ``data/`` (see ``data/README.md``).

Special conditions (``CondTag``) nest: a location in several conditions meets them in
priority order (``CondPriority``, 1 innermost), each condition stage being its own level.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from perilflow.kernel.inputs.gul import TIV_COLUMNS, GulInputs, write_frame_csv

__all__ = [
    "FM_SUMMARY_COLUMNS",
    "LEVEL_GROUPS",
    "FmTermsError",
    "IlInputs",
    "build_il_inputs",
    "calc_rules",
    "prepare_account",
    "write_il_inputs",
]

DATA_DIR = Path(__file__).with_name("data")

# FM level ids of the reference (oasislmf.utils.fm).
SITE_ITEM, SITE_COVERAGE, SITE_PD, SITE_ALL = 1, 2, 3, 4
COND_COVERAGE, COND_PD, COND_ALL = 5, 6, 7
POLICY_COVERAGE, POLICY_PD, POLICY_ALL, POLICY_LAYER = 8, 9, 10, 11
ACCOUNT_ALL = 14
#: Levels whose terms apply across layers (written once, on layer 1).
CROSS_LAYER_LEVELS = frozenset({ACCOUNT_ALL})


@dataclass(frozen=True)
class LevelGroup:
    """Consecutive FM levels read from one OED file and filtered by one peril field."""

    name: str
    source: str
    levels: tuple[int, ...]
    peril_field: str | None


#: The level groups in the order they are applied.
LEVEL_GROUPS = (
    LevelGroup("item", "location", (SITE_ITEM,), None),
    LevelGroup("site", "location", (SITE_COVERAGE, SITE_PD, SITE_ALL), "LocPeril"),
    LevelGroup("cond", "account", (COND_COVERAGE, COND_PD, COND_ALL), "CondPeril"),
    LevelGroup("policy", "account", (POLICY_COVERAGE, POLICY_PD, POLICY_ALL), "PolPeril"),
    LevelGroup("layer", "account", (POLICY_LAYER,), None),
    LevelGroup("account", "account", (ACCOUNT_ALL,), "AccPeril"),
)

#: Columns whose values define the nodes of each level.
AGG_KEYS = {**dict.fromkeys((SITE_ITEM, SITE_COVERAGE, SITE_PD, SITE_ALL), ("loc_id", "risk_id")),
            **dict.fromkeys((COND_COVERAGE, COND_PD, COND_ALL), ("acc_id", "CondTag")),
            **dict.fromkeys((POLICY_COVERAGE, POLICY_PD, POLICY_ALL, POLICY_LAYER, ACCOUNT_ALL), ("acc_id",))}

#: Coverage types the terms of a field apply to when the field does not name them.
ALL_COVERAGE_TYPES = (1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15)

#: Step trigger type -> (coverage aggregation method, calcrule assignment method, sub-types by coverage).
STEP_TRIGGER_TYPES = {
    1: (1, 1, {4: 0}),
    2: (1, 2, {4: 0}),
    3: (2, 3, {4: 0}),
    5: (1, 4, {4: 0, 1: 1, 3: 2}),
}
#: Coverage aggregation method -> coverage type -> term group.
COVERAGE_AGGREGATION = {1: {1: 1, 2: 2, 3: 3, 4: 4}, 2: {1: 1, 2: 2, 3: 1, 4: 3}}
#: Calcrule assignment method -> term group -> whether the step terms apply.
CALCRULE_ASSIGNMENT = {1: {1: True, 2: False, 3: False, 4: False}, 2: {1: False, 2: False, 3: True, 4: False},
                       3: {1: True, 2: False, 3: False}, 4: {1: True, 2: False, 3: True, 4: False}}

PASS_THROUGH_CALCRULE = 100
PCTIV, BI_DAYS = 2, 3  # deductible / limit types converted with the node's TIV
SPLIT_TERMS = ("deductible", "deductible_min", "deductible_max", "attachment", "limit")
TERM_COLUMNS = ("deductible", "deductible_min", "deductible_max", "attachment", "limit", "share")
PROFILE_TERM_NAMES = {"deductible": "deductible1", "deductible_min": "deductible2", "deductible_max": "deductible3",
                      "attachment": "attachment1", "limit": "limit1", "share": "share1"}
STEP_FIELDS = ("step_id", "trigger_start", "trigger_end", "payout_start", "payout_end", "limit2", "scale1", "scale2")
PROFILE_COLUMNS = ("profile_id", "calcrule_id", "deductible1", "deductible2", "deductible3", "attachment1", "limit1",
                   "share1", "share2", "share3")
#: Term columns whose blank means "not given" even though the OED default is not zero.
DEFAULT_OVERRIDES = {"BIPOI": 0.0}
BI_TYPE_COLUMNS = frozenset({"BIWaitingPeriodType", "BIPOIType"})
#: Location columns filled when blank, with the type given when the type column is blank or missing.
DEFAULT_LOCATION_TYPES = (("BIWaitingPeriod", "BIWaitingPeriodType", 3), ("BIPOI", "BIPOIType", 3))
DEFAULT_COND_PERIL = "AA1"

#: Columns of fm_summary_map, in the reference's order.
FM_SUMMARY_COLUMNS = ("loc_id", "PortNumber", "AccNumber", "LocNumber", "loc_idx", "peril_id", "coverage_type_id",
                      "tiv", "coverage_id", "agg_id", "building_id", "risk_id", "layer_id", "PolNumber", "output_id",
                      "acc_idx")

_CALC_RULE_FILES = {"base": "calc_rules_direct.csv", "policy_layer": "calc_rules_direct_layer.csv",
                    "step": "calc_rules_step.csv"}
_CALC_RULE_TERMS = {
    "base": (("deductible", "deductible_min", "deductible_max", "limit", "share"),
             ("ded_type", "ded_code", "lim_type", "lim_code")),
    "policy_layer": (("limit", "share", "attachment"), ()),
    "step": (("deductible1", "payout_start", "payout_end", "limit1", "limit2"), ("trigger_type", "payout_type")),
}


class FmTermsError(ValueError):
    """The financial terms of the exposure cannot be turned into an FM programme."""


# --------------------------------------------------------------------------- reference tables


@dataclass(frozen=True)
class TermColumn:
    """One OED column that carries a financial term at one level."""

    column: str
    term: str
    group: int
    coverage_types: tuple[int, ...] | None
    steps: tuple[int, ...] | None = None


@functools.cache
def _term_columns() -> dict[int, tuple[TermColumn, ...]]:
    """Level id -> its OED term columns, in the reference's reading order (data/fm_terms.csv)."""
    table = pd.read_csv(DATA_DIR / "fm_terms.csv", dtype={"coverage_type_ids": str}, keep_default_na=False)
    levels: dict[int, list[TermColumn]] = {}
    for row in table.itertuples(index=False):  # ~200 reference rows, read once
        types = tuple(int(t) for t in row.coverage_type_ids.split(";")) if row.coverage_type_ids else None
        levels.setdefault(int(row.level_id), []).append(TermColumn(row.column, row.term, int(row.term_group_id),
                                                                   types))
    return {level: tuple(columns) for level, columns in levels.items()}


@functools.cache
def _step_term_columns() -> tuple[TermColumn, ...]:
    """The columns added to the policy-all level when step policies are present (data/step_terms.csv)."""
    table = pd.read_csv(DATA_DIR / "step_terms.csv", dtype=str)
    steps = [TermColumn(c, c.lower(), 1, None) for c in ("StepTriggerType", "cov_agg_id", "assign_step_calcrule")]
    steps += [TermColumn(row.column, row.term, 1, None, tuple(int(s) for s in row.step_trigger_types.split(";")))
              for row in table.itertuples(index=False)]
    return tuple(steps)


@functools.cache
def calc_rules(kind: str) -> pd.DataFrame:
    """The reference's calcrule table ``kind`` (``base``, ``policy_layer`` or ``step``), without descriptions."""
    table = pd.read_csv(DATA_DIR / _CALC_RULE_FILES[kind])
    return table.drop(columns=["desc", "id_key"], errors="ignore")


def _schema():
    from perilflow.kernel.oed.exposure import oed_schema

    return oed_schema()


@functools.cache
def _peril_groups() -> dict[str, frozenset[str]]:
    """OED peril group -> the peril groups (and single perils) it includes, as ods-tools' peril filtering has it."""
    covered = _schema().schema["perils"]["covered"]
    return {group: frozenset(other for other, included in covered.items() if not set(included).difference(perils))
            for group, perils in covered.items()}


def _peril_filtering(peril_ids: pd.Series, peril_filters: pd.Series) -> np.ndarray:
    """True where ``peril_ids[i]`` is covered by the ';'-separated peril groups ``peril_filters[i]``.

    ods-tools' ``OedSchema.peril_filtering`` (include_sub_group=True) without its numba
    dictionary, whose first use costs more than a second; an unknown group is a KeyError there too.
    """
    groups = _peril_groups()
    result = np.zeros(len(peril_ids), dtype=bool)
    for i, (peril, filters) in enumerate(zip(peril_ids.to_numpy().astype("str"), peril_filters.to_numpy().astype("str"),
                                             strict=True)):
        if filters:
            result[i] = any(peril in groups[group] for group in filters.split(";"))
    return result


def _default(column: str):
    """Default of an OED field when blank (0 for the few overridden ones)."""
    if column in DEFAULT_OVERRIDES:
        return DEFAULT_OVERRIDES[column]
    return _schema().get_default(column)


def _is_blank_default(value) -> bool:
    return value is None or value == "" or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _fill_empty(frame: pd.DataFrame, column: str, value) -> None:
    """Replace blank cells (NaN or '') of ``column`` with ``value`` in place (ods-tools' fill_empty)."""
    from ods_tools.oed import fill_empty

    fill_empty(frame, column, value)


# --------------------------------------------------------------------------- accounts


def _sorted_ids(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Ids 1..N of the distinct ``columns`` values, numbered in text order (oasislmf get_ids)."""
    from perilflow.kernel.oed.exposure import location_ids

    return location_ids(frame, tuple(columns))


def prepare_account(account: pd.DataFrame) -> pd.DataFrame:
    """Add the reference's internal account columns: ``acc_idx``, ``LayerNumber`` (default 1), ``layer_id``.

    ``layer_id`` numbers the distinct (``PolNumber``, ``LayerNumber``) of each account
    (and ``StepNumber`` when step policies are present) in order of appearance, from 1.

    Parameters
    ----------
    account : pandas.DataFrame
        OED accounts as loaded by :func:`perilflow.kernel.oed.load_exposure`.

    Returns
    -------
    pandas.DataFrame
        A copy with the three columns, rows in file order.
    """
    account = account.reset_index(drop=True).copy()
    account["acc_idx"] = np.arange(len(account), dtype=np.int64)
    account["LayerNumber"] = account["LayerNumber"].fillna(1) if "LayerNumber" in account else 1
    layer_keys = ["PortNumber", "AccNumber"]
    if _has_step_policies(account):
        layer_keys.append("StepNumber")
        account["StepNumber"] = account["StepNumber"].fillna(0)
    policy_keys = layer_keys + ["PolNumber", "LayerNumber"]
    if "layer_id" not in account:
        layers = account[policy_keys].drop_duplicates()
        layers["layer_id"] = layers.groupby(layer_keys, observed=True).cumcount().to_numpy(np.int64) + 1
        account = account.merge(layers, on=policy_keys, how="left")
    account["layer_id"] = account["layer_id"].astype(np.int64)
    return account


def _has_step_policies(account: pd.DataFrame) -> bool:
    """True when some account row has a StepTriggerType and a StepNumber > 0."""
    if "StepTriggerType" not in account or "StepNumber" not in account:
        return False
    stepped = account["StepTriggerType"].notna()
    return bool(stepped.any() and (account.loc[stepped, "StepNumber"] > 0).any())


# --------------------------------------------------------------------------- results


@dataclass
class IlInputs:
    """The IL (FM) input tables.

    Attributes
    ----------
    fm_programme, fm_policytc, fm_profile, fm_xref : pandas.DataFrame
        The Oasis files (``fm_profile`` in the step layout when ``stepped``).
    fm_summary_map : pandas.DataFrame
        One row per FM output (item and layer) with its OED identifiers, columns
        :data:`FM_SUMMARY_COLUMNS`.
    stepped : bool
        True when step policies are present.
    frame : pandas.DataFrame
        The final IL items (one row per output), for callers that need more columns.
    """

    fm_programme: pd.DataFrame
    fm_policytc: pd.DataFrame
    fm_profile: pd.DataFrame
    fm_xref: pd.DataFrame
    fm_summary_map: pd.DataFrame
    stepped: bool = False
    frame: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)


def build_il_inputs(gul: GulInputs | pd.DataFrame, location: pd.DataFrame, account: pd.DataFrame, *,
                    do_disaggregation: bool = True) -> IlInputs:
    """Build the FM programme of the exposure's financial terms (see the module docstring).

    Parameters
    ----------
    gul : GulInputs or pandas.DataFrame
        The GUL items (:func:`perilflow.kernel.inputs.gul.build_gul_inputs`) or their frame.
    location : pandas.DataFrame
        OED locations with ``loc_id``.
    account : pandas.DataFrame
        OED accounts (raw, or already through :func:`prepare_account`).
    do_disaggregation : bool, default True
        Divide the amounts of aggregate locations by their number of buildings.

    Returns
    -------
    IlInputs

    Raises
    ------
    FmTermsError
        If the terms cannot be mapped to calcrules, two rows give one node different terms,
        or conditions are inconsistent.
    """
    frame = gul.frame if isinstance(gul, GulInputs) else gul
    if "acc_idx" not in account.columns or "layer_id" not in account.columns:
        account = prepare_account(account)
    builder = _ProgrammeBuilder(frame, location, account, do_disaggregation)
    return builder.run()


# --------------------------------------------------------------------------- the level walk


class _ProgrammeBuilder:
    """Walks the FM levels, keeping one working row per (item, layer) and the file rows written so far."""

    def __init__(self, gul: pd.DataFrame, location: pd.DataFrame, account: pd.DataFrame, do_disaggregation: bool):
        self.do_disaggregation = do_disaggregation
        self.profiles: list[pd.DataFrame] = []
        self.policytc: list[pd.DataFrame] = []
        self.programme: list[pd.DataFrame] = []
        self.profile_offset = 1  # profile 1 is the pass-through profile
        self.level_number = 0
        self._prepare(gul, location, account)

    # ----------------------------------------------------------------- setup

    def _prepare(self, gul: pd.DataFrame, location: pd.DataFrame, account: pd.DataFrame) -> None:
        """Link items, locations and accounts by acc_id; add the working columns."""
        account = account.copy()
        account["acc_id"] = _sorted_ids(account, ("PortNumber", "AccNumber"))
        acc_ids = account[["PortNumber", "AccNumber", "acc_id"]].drop_duplicates()

        if not gul.index.equals(pd.RangeIndex(len(gul))):
            gul = gul.reset_index(drop=True)
        acc_of = gul[["PortNumber", "AccNumber"]].merge(acc_ids, on=["PortNumber", "AccNumber"], how="left")
        if len(acc_of) != len(gul):  # (PortNumber, AccNumber) -> acc_id is one to one: never happens
            raise FmTermsError("an account (PortNumber, AccNumber) has several internal ids")
        if acc_of["acc_id"].isna().any():
            missing = acc_of.loc[acc_of["acc_id"].isna(), ["PortNumber", "AccNumber"]].drop_duplicates().head(5)
            raise FmTermsError("locations reference accounts missing from the account file: "
                               f"{missing.to_dict('records')}. Fix: add the accounts, or correct the locations' "
                               "PortNumber/AccNumber.")
        # The level walk carries only the columns it works with, and ``_row`` (the item's row of the
        # GUL frame); the descriptive columns (OED ids, TIVs) are looked up by ``_row`` when needed.
        tiv_names = {column: str(coverage) for coverage, column in TIV_COLUMNS.items()}
        self.identity = {name: gul[column] for column, name in
                         (("PortNumber",) * 2, ("AccNumber",) * 2, ("LocNumber",) * 2, ("loc_idx",) * 2,
                          ("tiv",) * 2, ("coverage_id",) * 2, ("NumberOfRisks",) * 2, *tiv_names.items())
                         if column in gul.columns}
        self.identity_rows = np.arange(len(gul), dtype=np.int64)
        self.tiv_sums: dict[str, np.ndarray] = {}
        # peril_id as a categorical: the level frames' peril_id (from item_perils) shares its categories, so the
        # many joins on it compare integer codes
        perils = gul["peril_id"]
        if perils.dtype == object and perils.notna().all():
            perils = perils.astype("category")
        work = {"loc_id": gul["loc_id"], "peril_id": perils, "coverage_type_id": gul["coverage_type_id"],
                "gul_input_id": gul["item_id"], "building_id": gul["building_id"], "risk_id": gul["risk_id"],
                "acc_id": acc_of["acc_id"].to_numpy(np.int64), "agg_id_prev": gul["item_id"].copy(),
                "_row": self.identity_rows}
        work["layer_id"] = np.ones(len(gul), dtype=np.int64)
        work["PolNumber"] = np.full(len(gul), pd.NA, dtype=object)
        items = _frame(work)
        self.items = items
        self.item_perils = items[["peril_id"]].drop_duplicates()

        locations = location.copy()
        if "IsAggregate" not in locations:
            locations["IsAggregate"] = 0
        locations["IsAggregate"] = locations["IsAggregate"].fillna(0)
        if "NumberOfBuildings" not in locations:
            locations["NumberOfBuildings"] = 1
        locations["NumberOfBuildings"] = locations["NumberOfBuildings"].fillna(1)
        locations = locations.merge(acc_ids, on=["PortNumber", "AccNumber"], how="left")
        locations = locations.drop(columns=["PortNumber", "AccNumber", "LocNumber"])
        for value_column, type_column, type_value in DEFAULT_LOCATION_TYPES:
            if value_column in locations:
                locations[value_column] = locations[value_column].fillna(0.0)
                locations[type_column] = (locations[type_column].fillna(type_value) if type_column in locations
                                          else type_value)
        self.locations = locations
        self.accounts = (account[account["acc_id"].isin(locations["acc_id"].unique())]
                         .drop(columns=["PortNumber", "AccNumber"]))

        self.level_columns = {level: list(columns) for level, columns in _term_columns().items()}
        self.extra_columns = ["layer_id", "PolNumber", "NumberOfBuildings", "IsAggregate"]
        self.stepped = False
        if "StepTriggerType" in self.accounts and "StepNumber" in self.accounts:
            _fill_empty(self.accounts, "StepTriggerType", 0)
            _fill_empty(self.accounts, "StepNumber", 0)
            step_rows = self.accounts["StepTriggerType"].notna() & (self.accounts["StepNumber"] > 0)
            self.stepped = bool(step_rows.any())
        if self.stepped:
            stepped_accounts = self.accounts.loc[step_rows, ["acc_id"]].drop_duplicates().assign(is_step=1)
            self.items = _left_join(self.items, stepped_accounts, ["acc_id"])
            self.items["is_step"] = self.items["is_step"].fillna(0).astype(np.int8)
            self.extra_columns.append("is_step")
            self.level_columns[POLICY_ALL] = self.level_columns[POLICY_ALL] + list(_step_term_columns())

    def _tiv_sum(self, coverages) -> np.ndarray:
        """The TIV of ``coverages`` (coverage types) of every GUL item, by ``_row``."""
        name = "_".join(str(c) for c in sorted(coverages))
        if name not in self.tiv_sums:
            present = [str(c) for c in sorted(coverages) if str(c) in self.identity]
            if all(self.identity[c].dtype == np.float64 for c in present):
                # DataFrame.sum(axis=1) of float columns: missing values as 0, added in column order from 0.0
                total = np.zeros(len(self.identity_rows))
                for c in present:
                    values = self.identity[c].to_numpy()
                    total = total + np.where(np.isnan(values), 0.0, values)
                self.tiv_sums[name] = total
            else:
                self.tiv_sums[name] = (pd.DataFrame({c: self.identity[c] for c in present}).sum(axis=1).to_numpy()
                                       if present else np.zeros(len(self.identity_rows)))
        return self.tiv_sums[name]

    # ----------------------------------------------------------------- main loop

    def run(self) -> IlInputs:
        """Apply every level and assemble the files."""
        self._add_profiles(self._pass_through_profile())
        for source, group, cond_locations in self._sources():
            if cond_locations is not None:
                items = _frame({c: self.items[c] for c in self.items.columns if c != "CondTag"})
                self.items = _left_join(items, cond_locations, ["loc_id"])
            peril_field = group.peril_field
            for level_id in group.levels:
                peril_field = peril_field if peril_field in source.columns else None
                self._apply_level(source, level_id, peril_field)
        return self._finish()

    def _sources(self):
        """(source rows, level group, cond locations) for every group, cond stages included."""
        stages, fillers = [], pd.DataFrame()
        if {"CondTag", "CondNumber"} <= set(self.accounts.columns):
            stages, fillers = self._cond_stages()
        for group in LEVEL_GROUPS:
            if group.source == "location":
                self.locations["layer_id"] = 1
                yield self.locations, group, None
            elif group.name == "cond" and stages:
                tags = self.locations[["loc_id", "acc_id", "CondTag"]].drop_duplicates()
                conds = self.accounts if fillers.empty else pd.concat([self.accounts, fillers], ignore_index=True)
                for stage in stages:
                    stage_locations = stage.merge(tags, on=["acc_id", "CondTag"], how="left")[["loc_id", "CondTag"]]
                    yield stage.merge(conds, on=["acc_id", "CondTag"], how="left"), group, stage_locations
            else:
                yield self.accounts, group, None

    def _cond_stages(self) -> tuple[list[pd.DataFrame], pd.DataFrame]:
        """Nest special conditions by priority: the (acc_id, CondTag) of each stage, plus filler account rows.

        A condition's stage is one more than the deepest stage of the conditions of higher
        priority (lower CondPriority) that share a location with it. Every condition gets a
        row for every layer of its account; layers it does not define get a filler row
        (a full exclusion when the layer has an exclusion condition, CondClass 1).
        """
        locations, accounts = self.locations, self.accounts
        if "CondTag" in locations:
            _fill_empty(locations, "CondTag", "0")
        _fill_empty(accounts, "CondTag", "0")
        loc_tags = (locations.loc[locations["CondTag"] != "0", ["acc_id", "CondTag"]].drop_duplicates()
                    if "CondTag" in locations else pd.DataFrame(columns=["acc_id", "CondTag"]))
        acc_tags = accounts.loc[accounts["CondTag"] != "0", ["acc_id", "CondTag"]].drop_duplicates()
        undefined = loc_tags.merge(acc_tags.assign(_known=True), how="left", on=["acc_id", "CondTag"])
        if undefined["_known"].isna().any():
            raise FmTermsError("CondTag(s) used by locations are not defined in the account file: "
                               f"{undefined.loc[undefined['_known'].isna(), ['acc_id', 'CondTag']].to_dict('records')}"
                               ". Fix: add the conditions to the accounts, or clear the locations' CondTag.")
        if acc_tags.empty:
            return [], pd.DataFrame()
        if "CondTag" not in locations:
            locations["CondTag"] = "0"
        if "CondPriority" in accounts:
            if not pd.api.types.is_numeric_dtype(accounts["CondPriority"]):
                accounts["CondPriority"] = accounts["CondPriority"].astype(object)
            _fill_empty(accounts, "CondPriority", 1)
        else:
            accounts["CondPriority"] = 1
        if "CondPeril" in accounts:
            _fill_empty(accounts, "CondPeril", "")
        else:
            accounts["CondPeril"] = ""

        tag_first = (accounts.groupby(["acc_id", "CondTag"], sort=False, observed=True)
                     .agg(CondPriority=("CondPriority", "first"), CondPeril=("CondPeril", "first")).reset_index())
        priority = pd.to_numeric(tag_first["CondPriority"], errors="coerce")
        if priority.isna().any():
            raise FmTermsError(f"CondPriority is not a number for {tag_first.loc[priority.isna()].to_dict('records')}"
                               ". Fix: give CondPriority as 1, 2, ... (1 applies first).")
        tag_first["priority"] = priority.mask(priority == 0, 1)
        peril = tag_first["CondPeril"].astype(object).fillna("")

        excluding = (accounts["CondClass"].eq(1).fillna(False).astype(bool) if "CondClass" in accounts
                     else pd.Series(False, index=accounts.index))
        layer_rows = accounts[["acc_id", "layer_id", "PolNumber", "LayerNumber", "acc_idx"]].assign(excl=excluding)
        layers = (layer_rows.groupby(["acc_id", "layer_id"], sort=False, observed=True)["excl"].max().reset_index()
                  .merge(layer_rows.drop_duplicates(["acc_id", "layer_id"], keep="last").drop(columns="excl"),
                         on=["acc_id", "layer_id"], how="left"))

        loc_conds = locations[["loc_id", "acc_id", "CondTag"]].drop_duplicates()
        loc_conds = loc_conds.merge(tag_first[["acc_id", "CondTag", "priority"]], on=["acc_id", "CondTag"],
                                    how="left")
        loc_conds["priority"] = loc_conds["priority"].fillna(1)
        clash = loc_conds.duplicated(["loc_id", "priority"], keep=False)
        if clash.any():
            raise FmTermsError("a location has two conditions of the same CondPriority: "
                               f"{loc_conds.loc[clash].head(4).to_dict('records')}. Fix: give the conditions of a "
                               "location different CondPriority values.")
        all_tags = pd.concat([tag_first[["acc_id", "CondTag"]], loc_conds[["acc_id", "CondTag"]]]).drop_duplicates()
        staged = all_tags.merge(_condition_stages(loc_conds), on=["acc_id", "CondTag"], how="left")
        staged["stage"] = staged["stage"].fillna(1).astype(np.int64)
        staged["CondTag"] = staged["CondTag"].astype(str)
        stages = [frame[["acc_id", "CondTag"]].sort_values(["acc_id", "CondTag"]).reset_index(drop=True)
                  for _, frame in staged.groupby("stage", sort=True)]

        coverage = (all_tags.merge(layers, on="acc_id", how="inner")
                    .merge(accounts[["acc_id", "CondTag", "layer_id"]].drop_duplicates().assign(_defined=True),
                           on=["acc_id", "CondTag", "layer_id"], how="left"))
        missing = coverage[coverage["_defined"].isna()].reset_index(drop=True)
        perils = tag_first[["acc_id", "CondTag"]].assign(CondPeril=peril.mask(peril == "", DEFAULT_COND_PERIL))
        fillers = missing[["acc_idx", "acc_id", "PolNumber", "LayerNumber", "CondTag", "layer_id"]].copy()
        fillers["CondNumber"] = np.where(missing["excl"], "FullFilter", "")
        if missing["excl"].any():
            fillers["CondDed6All"] = np.where(missing["excl"], 1.0, np.nan)
            fillers["CondDedType6All"] = np.where(missing["excl"], 1.0, np.nan)
        fillers = fillers.merge(perils, on=["acc_id", "CondTag"], how="left")
        fillers["CondPeril"] = fillers["CondPeril"].fillna(DEFAULT_COND_PERIL)
        return stages, fillers

    # ----------------------------------------------------------------- one level

    def _apply_level(self, source: pd.DataFrame, level_id: int, peril_field: str | None) -> None:
        """Aggregate the current nodes into this level's nodes and record its files' rows."""
        is_layer_level = level_id == POLICY_LAYER
        step_level = any(t.column == "StepTriggerType" for t in self.level_columns[level_id])
        agg_key = list(AGG_KEYS[level_id])
        # 1. the term rows of this level, one per (source row, term group[, peril, coverage type])
        terms_maps, coverage_groups, group_tiv = self._term_maps(source, level_id, step_level, peril_field)
        if not terms_maps:
            if is_layer_level:
                self._empty_layer_level(agg_key)
            return
        level = self._level_terms(source, terms_maps, step_level, agg_key)
        merge_cols = agg_key + ["FMTermGroupID"]
        extra_cols = ["need_tiv"]
        if step_level:
            groups = pd.DataFrame([(stt, cov, grp) for (stt, cov), grp in coverage_groups.items()],
                                  columns=["steptriggertype", "coverage_type_id", "FMTermGroupID"])
            level = level.merge(groups, on=["steptriggertype", "FMTermGroupID"], how="inner")
            level["is_step"] = level["steptriggertype"] > 0
            extra_cols.append("coverage_type_id")
        else:
            self.items["FMTermGroupID"] = (self.items["coverage_type_id"].map(coverage_groups)
                                           .astype("Int32"))
        if "fm_peril" in level:
            level = self._match_perils(level)
            factorize_key = agg_key + ["FMTermGroupID", "fm_peril"]
            merge_cols.append("fm_peril")
            extra_cols.append("peril_id")
        else:
            factorize_key = agg_key + ["FMTermGroupID"]
        if level.empty:
            if is_layer_level:
                self._empty_layer_level(agg_key)
            return

        # 2. nodes: items sharing the aggregation key and term group (and peril filter) share a node;
        #    items the level's terms do not reach keep a node of their own (term group -agg_id_prev)
        items = self.items
        layered = items.loc[items["layer_id"] > 1, "agg_id_prev"].unique()
        items["layer_id"] = items["layer_id"].where(items["agg_id_prev"].isin(layered), 0)
        level = _simplify_types(level)
        merge_cols = [c for c in merge_cols if c in level.columns]
        join_keys = [c for c in merge_cols + extra_cols if c in items.columns]
        if join_keys:
            level["need_tiv"] = level.groupby(join_keys, observed=True, dropna=False)["need_tiv"].transform("any")
        terms = level[merge_cols + extra_cols].drop_duplicates()
        _check_one_term_set(terms, join_keys, level_id)
        items = _left_join(items, terms, join_keys, validate="many_to_one")
        if is_layer_level:
            items["FMTermGroupID"] = items["FMTermGroupID"].fillna(-1).astype(np.int64)
        else:
            group = items["FMTermGroupID"].astype("Float64")
            items["FMTermGroupID"] = group.mask(items["need_tiv"].isna(), -items["agg_id_prev"]).astype(np.int64)
        items["agg_id"] = _group_ids(items, factorize_key) + 1
        # 3. terms made absolute, calcrules and profiles; then the profiles (and layers) onto the items
        items, level = _apply_tiv_terms(items, level, group_tiv, merge_cols, self._tiv_sum)
        level = self._assign_profiles(level, level_id, factorize_key)
        self._add_profiles(level)
        items = _merge_profiles(items, level, is_layer_level, level_id)
        if self._record_level_fast(items, level_id):
            self.items = _next_level(items)
            return
        _check_one_profile(items, level_id, self.identity)

        # 4. links: a node of the level below split over several nodes here restarts from its items
        group, counts = _distinct_counts(items, ["agg_id_prev"], "agg_id")
        splits = np.unique(items["agg_id_prev"].to_numpy()[(counts > 1)[group]])
        if len(splits):
            items["root_start"] = items["agg_id"].isin(set(items.loc[items["agg_id_prev"].isin(splits), "agg_id"]))
        self.level_number += 1
        items["level_id"] = self.level_number
        self._record_links(items, level_id)
        self.items = _next_level(items)

    def _record_level_fast(self, items: pd.DataFrame, level_id: int) -> bool:
        """Steps 4 and 5 of :meth:`_apply_level` (one profile per node and layer, split nodes, fm_policytc and
        fm_programme rows) from two factorizations, when no node is split and the columns are plain integers.

        Returns False, having changed nothing, when the general steps must run instead.
        """
        columns = {c: items[c].to_numpy() for c in ("agg_id", "layer_id", "profile_id", "agg_id_prev")}
        if level_id in CROSS_LAYER_LEVELS or any(v.dtype != np.int64 for v in columns.values()):
            return False
        agg, layer, profile, previous = columns["agg_id"], columns["layer_id"], columns["profile_id"], \
            columns["agg_id_prev"]
        node = _pair_first_rows(agg, layer)
        links = _pair_first_rows(previous, np.zeros(len(previous), dtype=np.int64))  # by node of the level below
        if node is None or links is None:
            return False
        node_of_row, first = node
        if (profile != profile[node_of_row]).any():  # a node and layer with two profiles: the general check
            return False
        below_of_row, link_first = links
        if (agg != agg[below_of_row]).any():  # a node of the level below is split
            return False
        self.level_number += 1
        items["level_id"] = self.level_number
        self.policytc.append(_frame({"level_id": np.full(len(first), self.level_number, dtype=np.int64),
                                     "agg_id": agg[first], "layer_id": layer[first], "profile_id": profile[first]}))
        self.programme.append(_frame({"from_agg_id": previous[link_first],
                                      "level_id": np.full(len(link_first), self.level_number, dtype=np.int64),
                                      "to_agg_id": agg[link_first]}))
        return True

    def _term_maps(self, source: pd.DataFrame, level_id: int, step_level: bool, peril_field: str | None):
        """Which term columns of ``source`` apply at this level, grouped by term group.

        Returns
        -------
        (dict, dict, dict)
            term group key -> {column: term}; coverage type (or (step trigger type, coverage
            type)) -> term group; term group -> coverage types whose TIV the group covers.
        """
        maps: dict = {}
        coverage_groups: dict = {}
        group_tiv: dict = {}
        terms_used: set[str] = set()
        defaults_to_add: dict[str, tuple[str, object]] = {}
        shares_without_value: list = []
        base = {peril_field: "fm_peril"} if peril_field else {}
        for entry in self.level_columns[level_id]:
            if entry.term == "tiv":
                continue
            default = _default(entry.column)
            if entry.column not in source.columns:
                if not (default == 0 or _is_blank_default(default)):
                    defaults_to_add[entry.column] = (entry.term, default)
                continue
            if entry.column not in BI_TYPE_COLUMNS:
                _fill_empty(source, entry.column, default)
            values = source[entry.column]
            given = values.notna() if pd.isna(default) else values != default
            if entry.steps is not None:
                triggers = source.loc[source["StepTriggerType"].isin(entry.steps) & given, "StepTriggerType"].unique()
                if len(triggers):
                    terms_used.add(entry.term)
                for trigger in triggers:
                    aggregation, assignment, _ = STEP_TRIGGER_TYPES[trigger]
                    for coverage in ALL_COVERAGE_TYPES:
                        group = COVERAGE_AGGREGATION[aggregation].get(coverage)
                        if group is None:
                            continue
                        known = coverage_groups.setdefault((trigger, coverage), group)
                        if known != group:
                            raise FmTermsError(f"step trigger type {trigger}: coverage type {coverage} falls in term "
                                               f"groups {known} and {group}. Fix: check the step policy terms.")
                        group_map = maps.setdefault((group, trigger), dict(base))
                        if CALCRULE_ASSIGNMENT[assignment][group]:
                            group_map[entry.column] = entry.term
                continue
            key = (entry.group, 0) if step_level else entry.group
            if not given.any():
                if entry.term == "share":
                    shares_without_value.append((key, entry))
                continue
            terms_used.add(entry.term)
            coverages = entry.coverage_types or ALL_COVERAGE_TYPES
            group_tiv[entry.group] = coverages
            for coverage in coverages:
                coverage_key = (0, coverage) if step_level else coverage
                if not step_level and coverage in coverage_groups and coverage_groups[coverage] != entry.group:
                    raise FmTermsError(f"level {level_id}: coverage type {coverage} is in two term groups "
                                       f"({coverage_groups[coverage]} and {entry.group}).")
                coverage_groups[coverage_key] = entry.group
            maps.setdefault(key, dict(base))[entry.column] = entry.term
        for key, entry in shares_without_value:  # a share at its default still goes with a limit or attachment
            if maps.get(key):
                terms_used.add(entry.term)
                maps[key][entry.column] = entry.term
        if terms_used:
            for column, (term, default) in defaults_to_add.items():
                source[column] = default
                for group_map in maps.values():
                    group_map[column] = term
        return maps, coverage_groups, group_tiv

    def _level_terms(self, source: pd.DataFrame, terms_maps: dict, step_level: bool,
                     agg_key: list[str]) -> pd.DataFrame:
        """One row per (source row, term group) that carries a term, with the columns renamed to terms."""
        frames = []
        defaults: dict[str, object] = {}
        for key, terms in terms_maps.items():
            if step_level:
                group, trigger = key
                rows = source[source["StepTriggerType"] == trigger]
                terms = {**terms_maps.get((1, 0), {}), **terms}
            else:
                group, rows = key, source
            wanted = set(agg_key) | set(terms) | set(self.extra_columns)
            rows = rows[[c for c in rows.columns if c in wanted]].assign(FMTermGroupID=group)
            carries = pd.Series(False, index=rows.index)
            for column in terms:
                if not pd.api.types.is_numeric_dtype(rows[column]):
                    continue
                default = _default(column)
                schema_default = _schema().get_default(column)
                if pd.isna(schema_default):
                    carries |= rows[column].notna()
                    defaults[terms[column]] = 0
                else:
                    carries |= rows[column] != default
                    defaults[terms[column]] = default
                carries |= rows[column] != schema_default
            kept = rows.loc[carries, [c for c in agg_key if c in rows.columns]].drop_duplicates()
            rows = rows.merge(kept, on=list(kept.columns), how="inner")
            for column, term in terms.items():
                if term in rows.columns:
                    rows[term] = rows[[term, column]].max(axis=1)
                    rows = rows.drop(columns=column)
                else:
                    rows = rows.rename(columns={column: term})
            frames.append(rows)
        level = pd.concat(frames, ignore_index=True)
        for term, default in defaults.items():
            level[term] = level[term].fillna(default)
        if self.do_disaggregation and "risk_id" in agg_key:
            risks = level["NumberOfBuildings"].mask(level["IsAggregate"] == 0, 1)
            risks = risks.mask(risks == 0, 1)
            for term in SPLIT_TERMS:
                if term not in level:
                    continue
                type_column = f"{term[:3]}_type"
                share = (level[type_column] == 0) if type_column in level else pd.Series(True, index=level.index)
                level.loc[share, term] = level.loc[share, term] / risks[share]
            level = level.drop(columns=["NumberOfBuildings", "IsAggregate"])
        return level.drop_duplicates()

    def _match_perils(self, level: pd.DataFrame) -> pd.DataFrame:
        """Repeat each term row for every item peril its peril filter covers (rows covering none are dropped)."""
        filters = level[["fm_peril"]].drop_duplicates()
        pairs = filters.merge(self.item_perils, how="cross")
        covered = _peril_filtering(pairs["peril_id"], pairs["fm_peril"].astype(str))
        return level.merge(pairs[covered], on="fm_peril", how="inner")

    def _assign_profiles(self, level: pd.DataFrame, level_id: int, factorize_key: list[str]) -> pd.DataFrame:
        """Give every term row its calcrule and profile id (profile ids continue across levels)."""
        if level_id == POLICY_LAYER:
            level["calcrule_id"] = _calcrule_ids(level, "policy_layer")
            level["profile_id"] = _profile_ids(level) + self.profile_offset
        elif "is_step" in level.columns:
            _sub_step_types(level)
            step = (level["steptriggertype"] > 0).to_numpy()
            with_steps = step & level["step_id"].notna().to_numpy()
            level.loc[step, "calcrule_id"] = _calcrule_ids(level[step], "step")
            if with_steps.any():
                keys = ["layer_id", *factorize_key]
                ids = level.loc[with_steps, keys].groupby(keys, sort=False, observed=True, dropna=False).ngroup()
                level.loc[with_steps, "profile_id"] = ids.to_numpy() + self.profile_offset + 1
                self.profile_offset = int(level.loc[with_steps, "profile_id"].max())
            if (~step).any():
                level.loc[~step, "calcrule_id"] = _calcrule_ids(level[~step], "base")
            if (~with_steps).any():
                level.loc[~with_steps, "profile_id"] = _profile_ids(level[~with_steps]) + self.profile_offset
        else:
            level["calcrule_id"] = _calcrule_ids(level, "base")
            level["profile_id"] = _profile_ids(level) + self.profile_offset
        level["profile_id"] = level["profile_id"].astype(np.int64)
        level["calcrule_id"] = level["calcrule_id"].astype(np.int64)
        if len(level):
            self.profile_offset = max(self.profile_offset, int(level["profile_id"].max()))
        return level

    def _empty_layer_level(self, agg_key: list[str]) -> None:
        """The policy layer level without terms: one pass-through node per account (and layer)."""
        items = self.items
        items["agg_id"] = _group_ids(items, agg_key) + 1
        items["profile_id"] = 1
        self.level_number += 1
        items["level_id"] = self.level_number
        self.policytc.append(_drop_duplicates(items[["level_id", "agg_id", "layer_id", "profile_id"]]))
        self.programme.append(_drop_duplicates(items[["agg_id_prev", "level_id", "agg_id"]]
                                               .set_axis(["from_agg_id", "level_id", "to_agg_id"], axis=1)))
        self.items = _next_level(items)

    def _record_links(self, items: pd.DataFrame, level_id: int) -> None:
        """fm_policytc and fm_programme rows of the level just built."""
        rows = items[items["layer_id"] == 1] if level_id in CROSS_LAYER_LEVELS else items
        self.policytc.append(_drop_duplicates(rows[["level_id", "agg_id", "layer_id", "profile_id"]]))
        source = items["agg_id_prev"]
        if "root_start" in items:
            source = source.where(~items["root_start"], -items["gul_input_id"])
        links = pd.DataFrame({"from_agg_id": source.to_numpy(), "level_id": items["level_id"].to_numpy(),
                              "to_agg_id": items["agg_id"].to_numpy()})
        self.programme.append(_drop_duplicates(links))

    # ----------------------------------------------------------------- profiles

    def _pass_through_profile(self) -> pd.DataFrame:
        return pd.DataFrame({"profile_id": [1], "calcrule_id": [PASS_THROUGH_CALCRULE]})

    def _add_profiles(self, level: pd.DataFrame) -> None:
        """Profile rows of a level, in the file layout (one row per profile, or per step)."""
        if self.stepped:
            columns = [c for c in (*PROFILE_COLUMNS, *STEP_FIELDS, "steptriggertype") if c in level.columns]
            profile = level[columns].copy()
            for column in (*PROFILE_COLUMNS, *STEP_FIELDS, "steptriggertype"):
                if column not in profile:
                    profile[column] = 0.0
            profile = profile.astype({c: np.float64 for c in profile.columns if c not in ("profile_id", "calcrule_id")})
            plain = ~(profile["steptriggertype"] > 0)
            for term, name in PROFILE_TERM_NAMES.items():  # plain (non-step) rows keep their terms in the step layout
                if term in level.columns:
                    profile[name] = profile[name].where(~plain, level[term].astype(np.float64))
            profile = profile.fillna(0.0).drop_duplicates()
            profile["step_id"] = profile["step_id"].astype(np.int64)
            profile.loc[profile["step_id"] == 0, "step_id"] = 1
            profile = (profile[[*PROFILE_COLUMNS, *STEP_FIELDS]]
                       .sort_values(["profile_id", "step_id"]).drop_duplicates())
        else:
            rows = level
            if "profile_id" in level.columns:  # a profile id stands for one calcrule and set of terms (_profile_ids)
                first = ~level["profile_id"].duplicated().to_numpy()
                rows = level if first.all() else level[first]
            profile = rows[[c for c in ("profile_id", "calcrule_id", *TERM_COLUMNS) if c in level.columns]].copy()
            for term in TERM_COLUMNS:
                if term not in profile:
                    profile[term] = 0.0
            profile = profile.rename(columns=PROFILE_TERM_NAMES).drop_duplicates()
            profile["share2"] = 0.0
            profile["share3"] = 0.0
            profile = profile[list(PROFILE_COLUMNS)]
        self.profiles.append(profile)

    # ----------------------------------------------------------------- end

    def _finish(self) -> IlInputs:
        """Number the outputs, complete PolNumber and acc_idx, and assemble the tables."""
        items = self.items
        order = np.lexsort((items["layer_id"].to_numpy(), items["gul_input_id"].to_numpy()))  # stable
        if not np.array_equal(order, np.arange(len(order))):
            items = _frame({c: _take(items[c], order) for c in items.columns})
        else:
            items = _frame({c: items[c] for c in items.columns})
        items["output_id"] = np.arange(1, len(items) + 1)
        no_policy = items["PolNumber"].isna()
        if no_policy.any():
            first_policy = self.accounts[["acc_id", "PolNumber"]].drop_duplicates("acc_id")
            looked_up = items.loc[no_policy, ["acc_id"]].merge(first_policy, on="acc_id", how="left")
            items.loc[no_policy, "PolNumber"] = looked_up["PolNumber"].to_numpy()
        xref = _frame({"output": items["output_id"].astype(np.int64), "agg_id": items["gul_input_id"].astype(np.int64),
                       "layer_id": items["layer_id"].astype(np.int64)})
        rows = items["_row"].to_numpy()
        for name, values in self.identity.items():  # the GUL columns the summary (or the account match) needs
            if name in FM_SUMMARY_COLUMNS or name in self.accounts.columns:
                items[name] = _take(values, rows)
        items = _add_account_index(items, self.accounts)

        summary = {}
        for column in FM_SUMMARY_COLUMNS:
            source = "gul_input_id" if column == "agg_id" else column
            if source not in items:
                continue
            values = items[source]
            if column in ("PortNumber", "AccNumber", "LocNumber", "PolNumber", "peril_id"):
                summary[column] = _as_text(values)
            elif column == "tiv":
                summary[column] = values.to_numpy(np.float64)
            else:
                summary[column] = values.astype(np.int64, copy=False).to_numpy()
        summary = _frame(summary)

        profile = pd.concat(self.profiles, ignore_index=True)
        for column in profile.columns:
            if column not in ("profile_id", "calcrule_id", "step_id"):
                profile[column] = profile[column].fillna(0.0).astype(np.float64)
        return IlInputs(
            fm_programme=_concat_int64(self.programme),
            fm_policytc=_concat_int64(self.policytc),
            fm_profile=profile,
            fm_xref=xref,
            fm_summary_map=summary,
            stepped=self.stepped,
            frame=items,
        )


# --------------------------------------------------------------------------- helpers


def _frame(columns: Mapping[str, object]) -> pd.DataFrame:
    """A DataFrame (RangeIndex) of equally long arrays or Series, not copied and without dtype inference."""
    length = len(next(iter(columns.values()))) if columns else 0
    index = pd.RangeIndex(length)
    series = {}
    for name, values in columns.items():
        if isinstance(values, pd.Series):
            values = _values(values)
        series[name] = pd.Series(values, index=index, dtype=values.dtype, copy=False)
    return pd.DataFrame(series, index=index, copy=False)


def _values(values: pd.Series):
    """The array behind a Series (no copy): numpy for numpy dtypes, the extension array otherwise."""
    if isinstance(values.dtype, pd.api.extensions.ExtensionDtype):
        return values.array
    return values.to_numpy()


def _left_join(left: pd.DataFrame, right: pd.DataFrame, on: Sequence[str],
               validate: str | None = None) -> pd.DataFrame:
    """``left.merge(right, on=on, how="left")``: same rows, order, columns and dtypes, for a large ``left``.

    The keys of both sides are encoded as one int64 per row (integer keys as they are,
    categoricals by their codes, other keys factorized together) and matched with numpy; the
    columns of ``left`` are not copied when every row matches at most one row of ``right``.
    Key types this does not handle go through pandas.
    """
    rows = _join_rows(left, right, on, validate)
    if rows is None:
        return left.merge(right, on=list(on), how="left", validate=validate)
    return _assemble(left, right, on, *rows)


def _join_rows(left: pd.DataFrame, right: pd.DataFrame, on: Sequence[str],
               validate: str | None = None) -> tuple[np.ndarray | None, np.ndarray] | None:
    """The rows of :func:`_left_join`'s result: (row of ``left`` of each, None for ``left``'s rows in order;
    row of ``right`` of each, -1 where none matches). None when pandas must do the merge."""
    on = list(on)
    if (not on or len(left) == 0 or len(right) == 0 or (set(left.columns) & set(right.columns)) - set(on)
            or len(set(left.columns)) != len(left.columns) or len(set(right.columns)) != len(right.columns)):
        return None
    keys = _join_keys([left[c] for c in on], [right[c] for c in on])
    if keys is None:
        return None
    left_key, right_key = keys
    order = np.argsort(right_key, kind="stable")
    sorted_keys = right_key[order]
    unique_right = len(sorted_keys) < 2 or bool((sorted_keys[1:] != sorted_keys[:-1]).all())
    if validate is not None and not unique_right:
        return None  # pandas raises its MergeError
    low = np.searchsorted(sorted_keys, left_key, side="left")
    if unique_right:
        found = low < len(sorted_keys)
        found[found] = sorted_keys[low[found]] == left_key[found]
        left_rows, right_rows = None, np.where(found, order[np.minimum(low, len(order) - 1)], -1)
    else:
        matches = np.searchsorted(sorted_keys, left_key, side="right") - low
        repeat = np.maximum(matches, 1)
        left_rows = np.repeat(np.arange(len(left), dtype=np.int64), repeat)
        within = np.arange(len(left_rows), dtype=np.int64) - np.repeat(np.cumsum(repeat) - repeat, repeat)
        position = np.minimum(np.repeat(low, repeat) + within, len(order) - 1)
        right_rows = np.where(np.repeat(matches, repeat) > 0, order[position], -1)
    return left_rows, right_rows


def _assemble(left: pd.DataFrame, right: pd.DataFrame, on: Sequence[str], left_rows: np.ndarray | None,
              right_rows: np.ndarray) -> pd.DataFrame:
    """The frame of :func:`_left_join` from its rows (see :func:`_join_rows`)."""
    on = list(on)
    probe = left.iloc[:0][on].merge(right.iloc[:0][on], on=on, how="left")  # the key columns' dtypes
    columns = {}
    for c in left.columns:
        values = left[c]
        if c in on and probe[c].dtype != values.dtype:  # e.g. categoricals of different categories: object
            values = values.astype(probe[c].dtype)
        columns[c] = _values(values) if left_rows is None else _take(values, left_rows)
    for c in right.columns:
        if c not in on:
            columns[c] = pd.api.extensions.take(_values(right[c]), right_rows, allow_fill=True)
    return _frame(columns)


def _join_keys(left: list[pd.Series], right: list[pd.Series],
               allow_missing: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """One int64 per row of each side, equal where pandas' merge matches the rows; None for unsupported types
    (and, unless ``allow_missing``, for columns with missing values)."""
    left_key = np.zeros(len(left[0]), dtype=np.int64)
    right_key = np.zeros(len(right[0]), dtype=np.int64)
    size = 1
    for a, b in zip(left, right, strict=True):
        codes = _column_codes(a, b)
        if codes is None:
            return None
        a_codes, b_codes, radix, missing = codes
        if missing and not allow_missing:
            return None
        if size * radix >= 2 ** 62:  # renumber the keys so far before they overflow
            both, _ = pd.factorize(np.concatenate([left_key, right_key]))
            left_key, right_key, size = both[:len(left_key)], both[len(left_key):], int(both.max()) + 1
        left_key = left_key * radix + a_codes
        right_key = right_key * radix + b_codes
        size *= radix
    return left_key, right_key


def _pair_first_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(for each row, the position of the first row with its (a, b) pair; the positions of those first rows,
    in order) for int64 arrays, or None when the pairs do not fit one int64."""
    n = len(a)
    if not n:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    a_low, b_low = int(a.min()), int(b.min())
    a_size, b_size = int(a.max()) - a_low + 1, int(b.max()) - b_low + 1
    if a_size * b_size <= 4 * n + 1024:  # pairs numbered directly: the first row of each by np.minimum.at
        key = (a - a_low) * b_size + (b - b_low)
        first = np.full(a_size * b_size, n, dtype=np.int64)
        np.minimum.at(first, key, np.arange(n, dtype=np.int64))
        of_row = first[key]
    else:
        codes_first = _pair_firsts(a, b)
        if codes_first is None:
            return None
        codes, firsts = codes_first
        of_row = firsts[codes]
    marks = np.zeros(n, dtype=bool)
    marks[of_row] = True
    return of_row, np.flatnonzero(marks)


def _pair_firsts(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(id of each row's distinct (a, b) pair, numbered as they appear; positions of each pair's first row)
    for int64 arrays, or None when the pairs do not fit one int64."""
    if not len(a):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    a_low, b_low = int(a.min()), int(b.min())
    b_size = int(b.max()) - b_low + 1
    if (int(a.max()) - a_low + 1) * b_size >= 2 ** 62:
        return None
    codes = pd.factorize((a - a_low) * b_size + (b - b_low))[0].astype(np.int64)
    seen = np.maximum.accumulate(codes)
    first = np.flatnonzero(np.concatenate(([True], codes[1:] > seen[:-1])))  # ids are given as pairs appear
    return codes, first


def _row_keys(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray | None:
    """One int64 per row, equal where the rows agree on ``columns``; None when a column has missing values
    or a type :func:`_column_codes` does not handle."""
    values = [frame[c] for c in columns]
    keys = _join_keys(values, [v.iloc[:0] for v in values], allow_missing=False)
    return None if keys is None else keys[0]


def _group_ids(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``frame.groupby(columns, sort=False, observed=True, dropna=False).ngroup()``: ids from 0 in order of
    first appearance (missing values make a group of their own, numbered where it first appears too)."""
    values = [frame[c] for c in columns]
    keys = _join_keys(values, [v.iloc[:0] for v in values])
    keys = None if keys is None else keys[0]
    if keys is None:
        return frame.groupby(list(columns), sort=False, observed=True, dropna=False).ngroup().to_numpy(np.int64)
    return pd.factorize(keys)[0].astype(np.int64)


def _first_rows(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> np.ndarray:
    """``~frame.duplicated(columns)``: True on the first row of each distinct combination."""
    columns = list(frame.columns) if columns is None else list(columns)
    keys = _row_keys(frame, columns)
    if keys is None:
        return ~frame.duplicated(columns).to_numpy()
    return ~pd.Series(keys).duplicated().to_numpy()


def _drop_duplicates(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``frame.drop_duplicates(columns)`` (first rows kept, index labels kept)."""
    first = _first_rows(frame, columns)
    return frame if first.all() else frame[first]


def _concat_int64(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat(frames, ignore_index=True).astype(np.int64)``, column by column."""
    names = list(frames[0].columns) if frames else []
    if not frames or any(list(f.columns) != names for f in frames) or len(set(names)) != len(names):
        return pd.concat(frames, ignore_index=True).astype(np.int64)
    if any(not pd.api.types.is_integer_dtype(f[c].dtype) or isinstance(f[c].dtype, pd.api.extensions.ExtensionDtype)
           for f in frames for c in names):
        return pd.concat(frames, ignore_index=True).astype(np.int64)
    return _frame({c: np.concatenate([f[c].to_numpy() for f in frames]).astype(np.int64, copy=False) for c in names})


def _distinct_counts(frame: pd.DataFrame, by: Sequence[str], column: str) -> tuple[np.ndarray, np.ndarray]:
    """(id of each row's ``by`` group, number of distinct ``column`` values of each group): the groupby
    ``nunique`` of ``column`` (missing values not counted), by row."""
    group = _group_ids(frame, by)
    values = frame[column]
    present = values.notna().to_numpy()
    firsts = _pair_firsts(group, values.to_numpy()) if values.dtype == np.int64 else None
    if firsts is not None:
        pairs = np.zeros(len(group), dtype=bool)
        pairs[firsts[1]] = True
    else:
        pairs = _first_rows(_frame({"g": group, "v": values}))
    counts = np.bincount(group[pairs & present], minlength=int(group.max(initial=-1)) + 1)
    return group, counts


def _column_codes(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Codes of two key columns (0 .. radix-1) that are equal where pandas' merge matches the values."""
    ta, tb = a.dtype, b.dtype
    if isinstance(ta, pd.CategoricalDtype) and ta == tb:
        a_codes, b_codes = a.cat.codes.to_numpy(np.int64) + 1, b.cat.codes.to_numpy(np.int64) + 1
        return a_codes, b_codes, len(ta.categories) + 1, bool((a_codes == 0).any() or (b_codes == 0).any())
    integer = [_integer_values(x) for x in (a, b)]
    if integer[0] is not None and integer[1] is not None:
        (va, na), (vb, nb) = integer
        low = min(va.min(initial=0), vb.min(initial=0))
        high = max(va.max(initial=0), vb.max(initial=0))
        if high - low >= 2 ** 40:
            return None
        return (np.where(na, 0, va - low + 1), np.where(nb, 0, vb - low + 1), int(high - low) + 2,
                bool(na.any() or nb.any()))
    kinds = [t.kind if isinstance(t, np.dtype) else None for t in (ta, tb)]
    if all(k in ("i", "f") for k in kinds) and "f" in kinds:  # compared as floats (NaN matches NaN)
        both = np.concatenate([a.to_numpy(np.float64), b.to_numpy(np.float64)])
    elif all(k == "O" or isinstance(t, pd.CategoricalDtype) for k, t in zip(kinds, (ta, tb), strict=True)):
        both = np.concatenate([np.asarray(a, dtype=object), np.asarray(b, dtype=object)])
    else:
        return None
    codes, uniques = pd.factorize(both, use_na_sentinel=False)
    return (codes[:len(a)].astype(np.int64), codes[len(a):].astype(np.int64), max(len(uniques), 1),
            bool(pd.isna(uniques).any()))


def _integer_values(values: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
    """(int64 values, missing mask) of an integer column (numpy or nullable), else None."""
    dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iu" and (dtype.kind == "i" or dtype.itemsize < 8):
        array = values.to_numpy().astype(np.int64, copy=False)
        return array, np.zeros(len(array), dtype=bool)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and getattr(dtype, "kind", None) in "iu" \
            and isinstance(values.array, pd.arrays.IntegerArray):
        missing = values.isna().to_numpy()
        return values.to_numpy(dtype=np.int64, na_value=0), missing
    return None


def _take(values: pd.Series, rows: np.ndarray):
    """``values`` at positions ``rows`` (dtype kept), as an array."""
    if isinstance(values.dtype, pd.api.extensions.ExtensionDtype):
        return values.array.take(rows)
    return values.to_numpy().take(rows)


def _as_text(values: pd.Series) -> np.ndarray:
    """``str`` of every value, None where missing (an object array), converting each distinct value once."""
    codes, uniques = pd.factorize(values)
    uniques = np.asarray(uniques, dtype=object)
    types = {type(u) for u in uniques}
    if not (types <= {str} or (len(types) == 1 and not issubclass(types.pop(), float))):
        # mixed types (1 and 1.0 are one value to factorize) or floats (0.0 and -0.0): value by value
        result = values.astype(object).where(values.notna(), None)
        return result.map(lambda v: v if v is None else str(v)).to_numpy(dtype=object)
    text = np.empty(len(uniques) + 1, dtype=object)
    text[:-1] = [str(u) for u in uniques]
    text[-1] = None
    return text[codes]


def _condition_stages(loc_conds: pd.DataFrame) -> pd.DataFrame:
    """Stage of each (acc_id, CondTag): the longest chain of higher-priority conditions sharing a location.

    Within a location the conditions are ordered by priority; each condition must sit at
    least one stage above the one applied just before it. Stages are relaxed until stable
    (as many passes as the deepest nesting).

    Returns
    -------
    pandas.DataFrame
        Columns ``acc_id``, ``CondTag``, ``stage`` (from 1).
    """
    chain = loc_conds.sort_values(["loc_id", "priority"], kind="stable")
    if chain.empty:
        return pd.DataFrame({"acc_id": pd.Series(dtype=np.int64), "CondTag": pd.Series(dtype=object),
                             "stage": pd.Series(dtype=np.int64)})
    codes, keys = pd.MultiIndex.from_frame(chain[["acc_id", "CondTag"]]).factorize()
    inner = pd.Series(codes, index=chain.index).groupby(chain["loc_id"].to_numpy(), sort=False).shift()
    edges = inner.notna().to_numpy()
    outer_codes = codes[edges]
    inner_codes = inner[edges].to_numpy().astype(np.int64)
    stages = np.ones(len(keys), dtype=np.int64)
    for _ in range(len(keys)):
        before = stages.copy()
        np.maximum.at(stages, outer_codes, stages[inner_codes] + 1)
        if np.array_equal(before, stages):
            break
    return keys.to_frame(index=False, name=["acc_id", "CondTag"]).assign(stage=stages)


def _simplify_types(level: pd.DataFrame) -> pd.DataFrame:
    """Zero the types and codes of absent deductibles and limits; flag rows needing the node TIV."""
    level["need_tiv"] = False
    for term, related in (("deductible", ("ded_type", "ded_code")), ("limit", ("lim_type", "lim_code"))):
        if term in level.columns:
            for column in related:
                if column in level.columns:
                    level.loc[level[term] == 0, column] = 0
                    if column.endswith("_type"):
                        level["need_tiv"] |= level[column].isin({PCTIV, BI_DAYS})
        else:
            level = level.drop(columns=list(related), errors="ignore")
    return level


def _check_one_term_set(terms: pd.DataFrame, join_keys: list[str], level_id: int) -> None:
    """Each node must get one set of terms: rows agreeing on the join keys must agree on the rest."""
    if not join_keys:
        return
    clash = terms.duplicated(join_keys, keep=False)
    if clash.any():
        sample = terms.loc[clash].head(6).to_dict("records")
        raise FmTermsError(f"FM level {level_id}: several rows give different terms to the same node ({join_keys}): "
                           f"{sample}. Fix: give each account/location the same terms on every row of one "
                           "level (or use different CondTag / LayerNumber values).")


def _check_one_profile(items: pd.DataFrame, level_id: int, identity: Mapping[str, pd.Series]) -> None:
    """Each node and layer must get one profile (two account rows of one policy layer with different terms do not)."""
    if not (_distinct_counts(items, ["agg_id", "layer_id"], "profile_id")[1] > 1).any():
        return
    profiles = items.groupby(["agg_id", "layer_id"], sort=False)["profile_id"].nunique()
    clash = profiles[profiles > 1]
    if len(clash):
        agg_id, layer_id = clash.index[0]
        rows = items.loc[items["agg_id"] == agg_id, "_row"].to_numpy()
        where = pd.DataFrame({c: identity[c].iloc[rows].to_numpy() for c in ("PortNumber", "AccNumber")})
        where = where.drop_duplicates().head(3)
        raise FmTermsError(f"FM level {level_id}: layer {layer_id} of {where.to_dict('records')} gets "
                           f"{int(clash.iloc[0])} different sets of terms. Fix: give each policy layer one row per "
                           "account (or distinct PolNumber/LayerNumber values for distinct layers).")


def _apply_tiv_terms(items: pd.DataFrame, level: pd.DataFrame, group_tiv: Mapping,
                     merge_cols: list[str], tiv_sum) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Node TIVs (``agg_tiv``), and % of TIV / BI-day deductibles and limits made absolute.

    ``tiv_sum(coverages)`` is the TIV of those coverage types of every GUL item (by ``_row``).
    """
    parts = []
    for group, coverages in group_tiv.items():
        mask = ((items["need_tiv"] == True) & (items["FMTermGroupID"] == group)).to_numpy()  # noqa: E712 (NaN-safe)
        chosen = pd.DataFrame({c: items[c][mask] for c in dict.fromkeys(["agg_id", "loc_id", "building_id",
                                                                          *merge_cols])})
        chosen["agg_tiv"] = tiv_sum(coverages)[items["_row"].to_numpy()[mask]]
        chosen = chosen.drop_duplicates(["agg_id", "loc_id", "building_id"])
        parts.append(chosen.groupby("agg_id", observed=True)
                     .agg({**dict.fromkeys(merge_cols, "first"), "agg_tiv": "sum"}))
    node_tiv = pd.concat(parts) if parts else pd.DataFrame(columns=[*merge_cols, "agg_tiv"])
    if parts and node_tiv.index.is_unique:
        items["agg_tiv"] = node_tiv["agg_tiv"].reindex(items["agg_id"].to_numpy()).to_numpy()
    else:
        items = items.merge(node_tiv[["agg_tiv"]], left_on="agg_id", right_index=True, how="left")
    items["agg_tiv"] = items["agg_tiv"].fillna(0.0)
    common = [c for c in merge_cols if c in level.columns]
    level = level.merge(node_tiv.drop_duplicates(), on=common, how="left").drop(columns=["need_tiv"])
    level["agg_tiv"] = level["agg_tiv"].astype(float).fillna(0.0)
    for term, type_column in (("deductible", "ded_type"), ("limit", "lim_type")):
        if term in level.columns and type_column in level.columns:
            level[term] = level[term].fillna(0.0)
            level[type_column] = level[type_column].infer_objects().fillna(0).astype(np.int64)
            pct = level[type_column] == PCTIV
            level.loc[pct, term] = level.loc[pct, term] * level.loc[pct, "agg_tiv"]
            level.loc[pct, type_column] = 0
            days = level[type_column] == BI_DAYS
            level.loc[days, term] = level.loc[days, term] * level.loc[days, "agg_tiv"] / 365.0
    return items, level


def _calcrule_ids(level: pd.DataFrame, kind: str):
    """Calcrule of every row from the reference table ``kind``, by which terms are > 0 and their types/codes."""
    table = calc_rules(kind).copy()
    terms, types = _CALC_RULE_TERMS[kind]
    used = {*terms, *types, "deductible", "limit", "ded_type", "ded_code", "lim_type", "lim_code"}
    frame = level[[c for c in level.columns if c in used]].copy()  # the columns the rules are read from
    present_terms = []
    for term in terms:
        if term in frame.columns:
            present_terms.append(term)
        else:
            table = table[table[f"{term}_gt_0"] == 0].drop(columns=f"{term}_gt_0")
    for column in types:
        if column in frame.columns:
            frame[column] = frame[column].fillna(0).astype(np.int64)
        else:
            table = table[table[column] == 0].drop(columns=column)
    for term, related in (("deductible", ("ded_type", "ded_code")), ("limit", ("lim_type", "lim_code"))):
        if f"{term}_gt_0" in table.columns:
            for column in related:
                if column in frame.columns:
                    frame.loc[frame[term] == 0, column] = 0
        else:
            for column in related:
                if column in table.columns:
                    table = table[table[column] == 0].drop(columns=column)
    for term in present_terms:
        frame[f"{term}_gt_0"] = (frame[term].fillna(0) > 0).astype(np.int64)
    keys = [c for c in table.columns if c != "calcrule_id" and c in frame.columns]
    if not keys:
        return PASS_THROUGH_CALCRULE
    rules = table[keys + ["calcrule_id"]].drop_duplicates()
    found = frame[keys].astype(np.int64).merge(rules, on=keys, how="left")["calcrule_id"]
    if found.isna().any():
        bad = frame.loc[found.isna().to_numpy(), keys].drop_duplicates().head(5).to_dict("records")
        raise FmTermsError(f"no calcrule for these combinations of terms ({kind} table): {bad}. Fix: check the "
                           "deductible/limit types and codes (e.g. a minimum and maximum deductible with a "
                           "percentage type are not supported together).")
    return found.to_numpy(np.int64)


def _profile_ids(level: pd.DataFrame) -> np.ndarray:
    """1, 2, ... for the distinct (calcrule, terms) of the rows, in order of appearance."""
    columns = [c for c in ("calcrule_id", *TERM_COLUMNS) if c in level.columns]
    return level.groupby(columns, sort=False, observed=True, dropna=False).ngroup().to_numpy(np.int64) + 1


def _sub_step_types(level: pd.DataFrame) -> None:
    """Replace the step trigger type of step rows by its sub-type for the row's coverage type (in place).

    Step trigger type 5 covers buildings (sub-type 1) and contents (sub-type 2) separately;
    BI is not stepped (sub-type 0). Pairs without a sub-type keep their trigger type.
    """
    step = level["is_step"].to_numpy(dtype=bool)
    if not step.any():
        return
    table = pd.DataFrame([(trigger, coverage, sub) for trigger, (_, _, subs) in STEP_TRIGGER_TYPES.items()
                          for coverage, sub in subs.items()], columns=["steptriggertype", "coverage_type_id", "sub"])
    rows = level.loc[step, ["steptriggertype", "coverage_type_id"]].astype(np.int64)
    found = rows.merge(table, on=["steptriggertype", "coverage_type_id"], how="left")["sub"]
    level.loc[step, "steptriggertype"] = np.where(found.isna(), rows["steptriggertype"], found.fillna(0)).astype(
        np.int64)


def _merge_profiles(items: pd.DataFrame, level: pd.DataFrame, is_layer_level: bool, level_id: int) -> pd.DataFrame:
    """Attach each node's profile to the items; items not yet split into layers take the level's layers.

    Items of a node without layers pick up the layer ids (and PolNumber) of the level's term
    rows; a layer is kept only when it changes the terms, unless the node already has
    layered items (layers of the policy-layer and cross-layer levels are always kept).
    """
    shared = [c for c in level.columns if c in items.columns]
    level = level[shared + ["profile_id"]].drop_duplicates()
    layered = (items["layer_id"] > 0).to_numpy()
    any_layered = bool(layered.any())
    keys_unlayered = [c for c in shared if c not in ("layer_id", "PolNumber")]
    source = items[~layered] if any_layered else items
    source = _frame({("PolNumber_prev" if c == "PolNumber" else c): source[c] for c in source.columns
                     if c != "layer_id"})
    kept = _left_join(items[layered], level, shared) if any_layered else None
    rows = _join_rows(source, level, keys_unlayered)
    deduplicated = False
    if rows is not None and not is_layer_level and level_id not in CROSS_LAYER_LEVELS:
        # drop the layers that do not change the terms before the joined rows are made (see below)
        left_rows, right_rows = rows
        light = _frame({"gul_input_id": source["gul_input_id"] if left_rows is None
                        else _take(source["gul_input_id"], left_rows),
                        "agg_id": source["agg_id"] if left_rows is None else _take(source["agg_id"], left_rows),
                        **{c: pd.api.extensions.take(_values(level[c]), right_rows, allow_fill=True)
                           for c in ("layer_id", "profile_id") if c in level.columns}})
        if "layer_id" in light.columns and "profile_id" in light.columns:
            deduplicated = True
            new_layers = light.loc[light["layer_id"] > 1, "gul_input_id"].unique()
            source_ids = source["gul_input_id"].to_numpy()
            increasing = source_ids.dtype.kind == "i" and bool((np.diff(source_ids) > 0).all())
            first = None
            if increasing and left_rows is not None:  # each item is one source row: its rows are consecutive
                first = _first_in_runs(left_rows, light, kept)
            if first is None and not (increasing and left_rows is None) and not light["gul_input_id"].is_unique:
                group, counts = _distinct_counts(light, ["gul_input_id", "agg_id"], "profile_id")
                distinct = (counts > 1)[group]
                if kept is not None:
                    distinct |= light["agg_id"].isin(kept["agg_id"]).to_numpy()
                light["_layer"] = light["layer_id"].where(distinct, 0)
                first = _first_rows(light, ["gul_input_id", "agg_id", "profile_id", "_layer"])
            if first is not None and not first.all():
                left_rows = np.flatnonzero(first) if left_rows is None else left_rows[first]
                right_rows = right_rows[first]
        fresh = _assemble(source, level, keys_unlayered, left_rows, right_rows)
    else:
        fresh = _left_join(source, level, keys_unlayered)
    if "PolNumber" in level.columns and deduplicated:
        take = fresh["gul_input_id"].isin(new_layers) | fresh["PolNumber_prev"].isna()
        fresh["PolNumber"] = fresh["PolNumber"].where(take, fresh["PolNumber_prev"])
        del fresh["PolNumber_prev"]
    elif "PolNumber" in level.columns:
        new_layers = fresh.loc[fresh["layer_id"] > 1, "gul_input_id"].unique()
        take = fresh["gul_input_id"].isin(new_layers) | fresh["PolNumber_prev"].isna()
        fresh["PolNumber"] = fresh["PolNumber"].where(take, fresh["PolNumber_prev"])
        del fresh["PolNumber_prev"]
    else:
        fresh.rename(columns={"PolNumber_prev": "PolNumber"}, inplace=True)
    # a layer is dropped where it does not change the terms (nothing to do when each item has one row)
    if (not deduplicated and not is_layer_level and level_id not in CROSS_LAYER_LEVELS
            and not fresh["gul_input_id"].is_unique):
        group, counts = _distinct_counts(fresh, ["gul_input_id", "agg_id"], "profile_id")
        distinct = (counts > 1)[group]
        if kept is not None:
            distinct |= fresh["agg_id"].isin(kept["agg_id"]).to_numpy()
        fresh["_layer"] = fresh["layer_id"].where(distinct, 0)
        fresh = _drop_duplicates(fresh, ["gul_input_id", "agg_id", "profile_id", "_layer"])
        del fresh["_layer"]
    merged = fresh if kept is None else pd.concat([kept, fresh], ignore_index=True)
    merged["layer_id"] = merged["layer_id"].fillna(1).astype(np.int64)
    merged["profile_id"] = merged["profile_id"].fillna(1).astype(np.int64)
    return merged


def _first_in_runs(runs: np.ndarray, light: pd.DataFrame, kept: pd.DataFrame | None) -> np.ndarray | None:
    """The layer filter of :func:`_merge_profiles` when the rows of one (item, node) are consecutive (``runs``,
    non-decreasing, numbers them): True on the rows kept. None when runs are too long for this."""
    starts = np.flatnonzero(np.concatenate(([True], runs[1:] != runs[:-1])))
    longest = int(np.diff(np.append(starts, len(runs))).max(initial=1))
    if longest > 16:
        return None
    profile = light["profile_id"].to_numpy()

    def repeated(*columns: np.ndarray) -> np.ndarray:
        """True where an earlier row of the same run has the same values."""
        seen = np.zeros(len(runs), dtype=bool)
        for step in range(1, longest):
            same = runs[step:] == runs[:-step]
            for values in columns:
                same &= values[step:] == values[:-step]
            seen[step:] |= same
        return seen

    profile_seen = repeated(profile)
    distinct = (np.bincount(runs[~profile_seen], minlength=int(runs.max(initial=-1)) + 1) > 1)[runs]
    if kept is not None:
        distinct |= light["agg_id"].isin(kept["agg_id"]).to_numpy()
    layer = light["layer_id"].where(distinct, 0).to_numpy()
    return ~repeated(profile, layer)


def _next_level(items: pd.DataFrame) -> pd.DataFrame:
    """Make the nodes just built the previous level of the next one."""
    for column in ("root_start", "agg_id_prev", "is_step", "FMTermGroupID", "profile_id", "level_id", "fm_peril",
                   "need_tiv", "agg_tiv"):
        if column in items.columns:
            del items[column]
    items.rename(columns={"agg_id": "agg_id_prev"}, inplace=True)
    return items


def _add_account_index(items: pd.DataFrame, accounts: pd.DataFrame) -> pd.DataFrame:
    """The account row (``acc_idx``) of every output, matched on acc_id, layer, PolNumber (and CondTag)."""
    columns = [c for c in items.columns if c in accounts.columns and c != "acc_idx"]
    with_tag = "CondTag" in columns
    table = accounts[columns + ["acc_idx"]].drop_duplicates(columns)
    merged = _left_join(items, table, columns, validate="many_to_one")
    if with_tag:
        rest = [c for c in columns if c != "CondTag"]
        missing = merged["acc_idx"].isna()
        if missing.any():
            fallback = accounts[rest + ["acc_idx"]].drop_duplicates(rest)
            found = merged.loc[missing, rest].merge(fallback, on=rest, how="left", validate="many_to_one")
            merged.loc[missing, "acc_idx"] = found["acc_idx"].to_numpy()
    return merged


# --------------------------------------------------------------------------- writing


def write_il_inputs(il: IlInputs, output_dir: str | os.PathLike, file_format: str = "csv") -> dict[str, Path]:
    """Write fm_programme, fm_policytc, fm_profile, fm_xref and fm_summary_map.csv.

    ``file_format`` is ``"csv"`` or ``"bin"`` (the Oasis binary files, as the reference writes
    them by default; a stepped profile is then ``fm_profile_step.bin``); the summary map is csv.

    ``fm_profile.csv`` has the step columns when step policies are present (as the
    reference writes it). Every file is written under a temporary name, then renamed.

    Returns
    -------
    dict of str to pathlib.Path
        File stem -> path written.
    """
    from perilflow.kernel.oasis.files import write_bin, write_csv

    if file_format not in ("csv", "bin"):
        raise ValueError(f"file_format must be 'csv' or 'bin', got {file_format!r}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    profile_layout = "fm_profile_step" if il.stepped else "fm_profile"
    if file_format == "bin":
        tables = {
            "fm_programme": write_bin(out / "fm_programme.bin", _records(il.fm_programme), "fm_programme"),
            "fm_policytc": write_bin(out / "fm_policytc.bin", _records(il.fm_policytc), "fm_policytc"),
            "fm_profile": write_bin(out / f"{profile_layout}.bin", _records(il.fm_profile), profile_layout),
            "fm_xref": write_bin(out / "fm_xref.bin", _records(il.fm_xref), "fm_xref"),
        }
    else:
        tables = {
            "fm_programme": write_csv(out / "fm_programme.csv", _records(il.fm_programme), "fm_programme"),
            "fm_policytc": write_csv(out / "fm_policytc.csv", _records(il.fm_policytc), "fm_policytc"),
            "fm_profile": write_csv(out / "fm_profile.csv", _records(il.fm_profile), profile_layout),
            "fm_xref": write_csv(out / "fm_xref.csv", _records(il.fm_xref), "fm_xref"),
        }
    return {**tables, "fm_summary_map": write_frame_csv(out / "fm_summary_map.csv", il.fm_summary_map)}


def _records(frame: pd.DataFrame) -> np.ndarray:
    """A numeric DataFrame as a structured array (int64 / float64 fields; cast to file types on write)."""
    fields = [(c, np.int64 if pd.api.types.is_integer_dtype(frame[c]) else np.float64) for c in frame.columns]
    out = np.empty(len(frame), dtype=fields)
    for name, kind in fields:
        out[name] = frame[name].to_numpy(dtype=kind)
    return out
