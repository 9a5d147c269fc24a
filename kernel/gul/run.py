"""Ground-up loss sampling: the public entry points around the numba kernels of :mod:`.core`.

Typical use::

    model = load_model_data(model_dir, vulnerability_ids=np.unique(items["vulnerability_id"]))
    prepared = prepare_items(model, items, coverages, correlations)        # once per analysis
    for block in np.array_split(event_ids, n_blocks):                        # any split, same result
        event_ptr, item_row, losses = sample_event_block(model, prepared, None, block, 10)

Results never depend on how the events are split into blocks, on the order of the events in
a block (each event's records stay with it) or on the order of the items: random numbers are
keyed by (event, group), and each event's records come in the reference's (gulmc's) order, a
function of ids only: coverage by coverage, the coverages in the order their first item is met
walking the hit items in (areaperil_id, vulnerability_id, item_id) order, each coverage's items
in that order. The FM's inputs and the summaries add float32 values in record order, so this
order is what lets their sums equal the reference's to the last bit.

:func:`read_gul_inputs` reads items, coverages and correlations from an Oasis ``input/``
folder and :func:`gul_stream_bytes` encodes results as the reference's binary gul stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perilflow.kernel.gul.core import (
    ITEM_TABLE_DTYPE,
    N_SPECIAL,
    SPECIAL_SIDX,
    STREAM_DTYPE,
    count_hits,
    sample_events,
)
from perilflow.kernel.gul.random import GENERATORS, normal_tables
from perilflow.kernel.model.data import ModelData
from perilflow.kernel.model.dtypes import CORRELATIONS_DTYPE, CORRELATIONS_LEGACY_DTYPE
from perilflow.kernel.oasis.errors import OasisFileError

__all__ = [
    "GUL_STREAM_TYPE",
    "PreparedItems",
    "gul_stream_bytes",
    "prepare_items",
    "read_correlations",
    "read_gul_inputs",
    "sample_event_block",
    "split_events",
]

#: Stream header of an item-level loss stream (stream id 2 << 24 | 1 item), as gulmc writes it.
GUL_STREAM_TYPE = 0x02000001

_ITEM_FIELDS = ("item_id", "coverage_id", "areaperil_id", "vulnerability_id", "group_id")
_CORRELATION_FIELDS = ("item_id", "peril_correlation_group", "damage_correlation_value", "hazard_group_id",
                       "hazard_correlation_value")


@dataclass(frozen=True)
class PreparedItems:
    """Items, coverages and correlations arranged for the kernel (see :func:`prepare_items`).

    Attributes
    ----------
    item_ids : numpy.ndarray
        int32 [n_items] item ids, in the caller's row order.
    table : numpy.ndarray
        ``ITEM_TABLE_DTYPE`` [n_items] per-item kernel data.
    ap_ids, ap_item_ptr, ap_items : numpy.ndarray
        Sorted areaperils that have items (uint32), and their item rows (int64 CSR), each list
        in (vulnerability_id, item_id) order.
    damage_streams, hazard_streams : numpy.ndarray
        ``STREAM_DTYPE``: the distinct (group, peril correlation group, correlation value)
        combinations of the items, whose random rows the kernel draws once per event.
    coverage_tiv : numpy.ndarray
        float64 [n_coverages] TIV per coverage (coverage_id - 1).
    vuln_pdfs : numpy.ndarray
        float32 [n_used_vuln, n_intensity, n_damage] the vulnerabilities the items use.
    vuln_adj : numpy.ndarray
        float32 [n_used_vuln] random-value factors (1 = none).
    do_correlation, do_hazard_correlation, seeds_valid : bool
        Correlation switches (see :func:`prepare_items`); the first two are already applied to
        the streams.
    model_id : int
        ``id()`` of the ModelData the arrays were taken from.
    """

    item_ids: np.ndarray
    table: np.ndarray
    ap_ids: np.ndarray
    ap_item_ptr: np.ndarray
    ap_items: np.ndarray
    damage_streams: np.ndarray
    hazard_streams: np.ndarray
    coverage_tiv: np.ndarray
    vuln_pdfs: np.ndarray
    vuln_adj: np.ndarray
    do_correlation: bool
    do_hazard_correlation: bool
    seeds_valid: bool
    model_id: int

    @property
    def n_items(self) -> int:
        return int(len(self.item_ids))


def _field_array(array: np.ndarray, name: str, fields: tuple[str, ...], what: str) -> np.ndarray:
    if array.dtype.names is None or name not in array.dtype.names:
        raise ValueError(f"{what} must be a structured array with fields {', '.join(fields)} (missing '{name}'); "
                         f"read it with perilflow.kernel.oasis.read_table or build it with those fields.")
    return np.asarray(array[name])


def _coverage_tiv(coverages: np.ndarray) -> np.ndarray:
    """TIV per coverage as float64 (the float32 value), from a structured or a plain tiv array."""
    coverages = np.asarray(coverages)
    if coverages.dtype.names is None:
        if coverages.ndim != 1:
            raise ValueError("coverages must be 1-d: the tiv of coverage_id 1, 2, ... or a structured array "
                             "with coverage_id and tiv.")
        return coverages.astype(np.float32).astype(np.float64)
    ids = _field_array(coverages, "coverage_id", ("coverage_id", "tiv"), "coverages")
    tiv = _field_array(coverages, "tiv", ("coverage_id", "tiv"), "coverages")
    if np.any(ids != np.arange(1, len(ids) + 1)):
        raise ValueError("coverage_id must be 1, 2, ..., n in order (coverages are addressed by position); "
                         "sort the coverages and renumber them.")
    return tiv.astype(np.float32).astype(np.float64)


def _join_correlations(item_ids: np.ndarray, correlations: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per-item correlation fields, 0 where an item has no correlations row (as the reference's left join)."""
    n = len(item_ids)
    joined = {
        "peril_correlation_group": np.zeros(n, np.int64),
        "damage_correlation_value": np.zeros(n, np.float32),
        "hazard_group_id": np.zeros(n, np.int64),
        "hazard_correlation_value": np.zeros(n, np.float32),
    }
    if correlations is None or len(correlations) == 0 or n == 0:
        return joined
    corr_ids = _field_array(correlations, "item_id", _CORRELATION_FIELDS, "correlations")
    if len(np.unique(corr_ids)) != len(corr_ids):
        raise ValueError("correlations list an item_id twice; keep one row per item.")
    order = np.argsort(item_ids)
    position = np.searchsorted(item_ids[order], corr_ids)
    position = np.minimum(position, n - 1)
    known = item_ids[order][position] == corr_ids
    rows = order[position[known]]
    for name in joined:
        values = _field_array(correlations, name, _CORRELATION_FIELDS, "correlations")[known]
        joined[name][rows] = values
    if np.any(joined["peril_correlation_group"] < 0):
        raise ValueError("peril_correlation_group must be >= 0.")
    for name in ("damage_correlation_value", "hazard_correlation_value"):
        if np.any((joined[name] < 0) | (joined[name] > 1)):
            raise ValueError(f"{name} must lie in [0, 1].")
    return joined


def prepare_items(model: ModelData, items: np.ndarray, coverages: np.ndarray,
                  correlations: np.ndarray | None = None, *, vulnerability_adjustments: dict | None = None,
                  ignore_correlation: bool = False, ignore_hazard_correlation: bool = False) -> PreparedItems:
    """Check the items and arrange them for :func:`sample_event_block` (do it once per analysis).

    Parameters
    ----------
    model : ModelData
        The model data (its vulnerabilities must include every item's vulnerability_id).
    items : numpy.ndarray
        Structured [n_items] with item_id (unique), coverage_id (1..n_coverages), areaperil_id,
        vulnerability_id and group_id (the Oasis items file).
    coverages : numpy.ndarray
        Structured (coverage_id = 1..n in order, tiv) or plain [n_coverages] TIV values.
    correlations : numpy.ndarray, optional
        Structured with item_id, peril_correlation_group, damage_correlation_value,
        hazard_group_id, hazard_correlation_value. Items without a row (or all items, when
        None) get group 0, correlation 0 and hazard group 0, as in the reference.
    vulnerability_adjustments : dict, optional
        vulnerability_id -> factor applied to the damage random values (analysis settings'
        ``vulnerability_adjustments.adjustments``).
    ignore_correlation, ignore_hazard_correlation : bool
        Switch damage / hazard correlation off (the reference's ``--ignore-correlation`` flags).

    Returns
    -------
    PreparedItems

    Raises
    ------
    ValueError
        Naming the problem and the fix (missing fields, repeated item ids, unknown coverage or
        vulnerability ids, correlation values outside [0, 1]).
    """
    items = np.asarray(items)
    item_ids = _field_array(items, "item_id", _ITEM_FIELDS, "items").astype(np.int64)
    coverage_ids = _field_array(items, "coverage_id", _ITEM_FIELDS, "items").astype(np.int64)
    areaperils = _field_array(items, "areaperil_id", _ITEM_FIELDS, "items").astype(np.uint32)
    vulnerability_ids = _field_array(items, "vulnerability_id", _ITEM_FIELDS, "items").astype(np.int64)
    group_ids = _field_array(items, "group_id", _ITEM_FIELDS, "items").astype(np.int64)
    n_items = len(items)
    if len(np.unique(item_ids)) != n_items:
        raise ValueError("items repeat an item_id; every item needs its own id.")
    coverage_tiv = _coverage_tiv(coverages)
    if n_items and (coverage_ids.min() < 1 or coverage_ids.max() > len(coverage_tiv)):
        raise ValueError(f"items use coverage ids outside 1..{len(coverage_tiv)}; pass the coverages of these items.")
    vuln_rows = model.vulnerability.index_of(vulnerability_ids)
    used, vuln = np.unique(vuln_rows, return_inverse=True)
    vuln_pdfs = np.ascontiguousarray(model.vulnerability.array[used].transpose(0, 2, 1))
    vuln_adj = np.ones(len(used), dtype=np.float32)
    for vulnerability_id, factor in (vulnerability_adjustments or {}).items():
        match = np.flatnonzero(model.vulnerability.ids[used] == int(vulnerability_id))
        vuln_adj[match] = np.float32(factor)

    correlation = _join_correlations(item_ids, correlations)
    # areaperil -> items, each areaperil's list sorted by (vulnerability_id, item_id): the reference's order
    ap_order = np.lexsort((item_ids, vulnerability_ids, areaperils))
    ap_ids, ap_counts = np.unique(areaperils[ap_order], return_counts=True)
    ap_item_ptr = np.zeros(len(ap_ids) + 1, dtype=np.int64)
    np.cumsum(ap_counts, out=ap_item_ptr[1:])

    peril_groups = correlation["peril_correlation_group"]
    damage_rho, hazard_rho = correlation["damage_correlation_value"], correlation["hazard_correlation_value"]
    do_correlation = bool(not ignore_correlation and np.any(damage_rho > 0))
    do_hazard_correlation = bool(not ignore_hazard_correlation and np.any(hazard_rho > 0))
    damage_streams, damage_stream = _streams(group_ids, peril_groups, damage_rho, do_correlation)
    hazard_streams, hazard_stream = _streams(correlation["hazard_group_id"], peril_groups, hazard_rho,
                                             do_hazard_correlation)

    table = np.zeros(n_items, dtype=ITEM_TABLE_DTYPE)
    table["vuln"] = vuln
    table["coverage"] = coverage_ids - 1
    table["damage_stream"] = damage_stream
    table["hazard_stream"] = hazard_stream
    return PreparedItems(
        item_ids=item_ids.astype(np.int32), table=table, ap_ids=ap_ids.astype(np.uint32), ap_item_ptr=ap_item_ptr,
        ap_items=ap_order.astype(np.int64), damage_streams=damage_streams, hazard_streams=hazard_streams,
        coverage_tiv=coverage_tiv, vuln_pdfs=vuln_pdfs, vuln_adj=vuln_adj,
        do_correlation=do_correlation, do_hazard_correlation=do_hazard_correlation,
        # The reference only seeds the peril groups' rows when no item is in group 0.
        seeds_valid=bool(n_items == 0 or peril_groups.min() >= 1),
        model_id=id(model),
    )


def _streams(groups: np.ndarray, peril_groups: np.ndarray, rho: np.ndarray,
             correlation_on: bool) -> tuple[np.ndarray, np.ndarray]:
    """The distinct random streams of the items and each item's stream (int64 [n_items]).

    A stream is a group (the seed's key) plus, for items correlated through their peril group
    (correlation on and rho > 0), that peril group and rho; uncorrelated items of a group share
    one stream.
    """
    correlated = correlation_on & (rho > 0)
    keys = np.zeros(len(groups), dtype=[("group", np.int64), ("peril_group", np.int64), ("rho", np.float32)])
    keys["group"] = groups
    keys["peril_group"] = np.where(correlated, peril_groups, -1)
    keys["rho"] = np.where(correlated, rho, 0)
    unique, stream = np.unique(keys, return_inverse=True)
    streams = np.zeros(len(unique), dtype=STREAM_DTYPE)
    streams["group"] = unique["group"]
    streams["peril_group"] = np.maximum(unique["peril_group"], 0)
    streams["rho"] = unique["rho"]
    streams["correlated"] = unique["peril_group"] >= 0
    return streams, stream.astype(np.int64).reshape(-1)


def sample_event_block(model: ModelData, items, coverages, event_ids, n_samples: int, *, alloc_rule: int = 1,
                       effective_damageability: bool = False, correlations: np.ndarray | None = None,
                       random_generator: int = 2, gul_threshold: float = 0.0,
                       seed: int = 0, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample the ground-up losses of a block of events (the reference's ``gulmc``).

    Parameters
    ----------
    model : ModelData
        Footprint, vulnerabilities and damage bins.
    items : numpy.ndarray or PreparedItems
        The Oasis items (see :func:`prepare_items`), or items already prepared, in which case
        ``coverages`` and ``correlations`` are ignored.
    coverages : numpy.ndarray or None
        Coverage TIVs (see :func:`prepare_items`).
    event_ids : array_like of int
        Events of the block, in any order; an event without footprint or without hit items
        gets no records.
    n_samples : int
        Number of samples N (>= 0).
    alloc_rule : int, default 1
        Allocation across a coverage's items: 0 none, 1 cap the total at the TIV, 2 keep the
        largest sub-peril loss then cap, 3 multiplicative.
    effective_damageability : bool, default False
        Sample damage from the effective damage distribution instead of hazard then damage.
    correlations : numpy.ndarray, optional
        Per-item correlation settings (see :func:`prepare_items`).
    random_generator : int, default 2
        0 Mersenne Twister, 1 Latin hypercube on it, 2 Latin hypercube on Philox4x32-7
        (the reference's default).
    gul_threshold : float, default 0
        Samples below it (after allocation) are 0, as the reference leaves them out of its stream.
    seed : int, default 0
        Added to every random seed (the reference's base seed).
    dtype : numpy.float64 or numpy.float32, default float64
        Of ``losses``. float32 holds every value exactly (they are float32 values) in half the memory.

    Returns
    -------
    event_ptr : numpy.ndarray
        int64 [n_events + 1]: the records of ``event_ids[e]`` are rows event_ptr[e]:event_ptr[e+1].
    item_row : numpy.ndarray
        int64 [n_rec]: 0-based row into ``items`` of each record, in the reference's order (see the module).
    losses : numpy.ndarray
        ``dtype`` [n_rec, 5 + n_samples], currency units: columns sidx -5 (max), -4 (chance of loss,
        a probability), -3 (TIV share), -2 (standard deviation), -1 (mean), then samples 1..N.
        Values are the float32 values the reference writes.

    Raises
    ------
    ValueError
        For bad arguments, naming the fix.
    """
    if not isinstance(model, ModelData):
        raise ValueError("model must be a ModelData; open one with perilflow.kernel.model.load_model_data().")
    if isinstance(items, PreparedItems):
        prepared = items
        if prepared.model_id != id(model):
            raise ValueError("these items were prepared for another ModelData; call prepare_items with this model.")
    else:
        prepared = prepare_items(model, items, coverages, correlations)
    if int(n_samples) != n_samples or n_samples < 0:
        raise ValueError(f"n_samples must be a whole number >= 0, got {n_samples}.")
    if alloc_rule not in (0, 1, 2, 3):
        raise ValueError(f"alloc_rule must be 0, 1, 2 or 3, got {alloc_rule}.")
    if random_generator not in GENERATORS:
        raise ValueError(f"random_generator must be one of {GENERATORS}, got {random_generator}.")
    if np.dtype(dtype) not in (np.float64, np.float32):
        raise ValueError(f"dtype must be numpy.float64 or numpy.float32, got {dtype}.")
    event_ids = np.asarray(event_ids)
    if event_ids.ndim != 1 or (len(event_ids) and event_ids.dtype.kind not in "iu"):
        raise ValueError("event_ids must be a 1-d array of integers.")
    event_ids = event_ids.astype(np.int64)

    block = model.footprint.event_block(event_ids)
    fp_ap_index = np.empty(len(block.areaperil_id), dtype=np.int64)
    counts = count_hits(block.event_ptr, block.areaperil_id, prepared.ap_ids, prepared.ap_item_ptr, fp_ap_index)
    event_ptr = np.zeros(len(event_ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=event_ptr[1:])
    n_records = int(event_ptr[-1])
    item_row = np.empty(n_records, dtype=np.int64)
    losses = np.zeros((n_records, N_SPECIAL + int(n_samples)), dtype=dtype)
    if n_records == 0:
        return event_ptr, item_row, losses
    inverse_table, cdf_table = normal_tables() if (prepared.do_correlation or prepared.do_hazard_correlation) \
        else (np.zeros(2), np.zeros(2))
    damage_bins = np.ascontiguousarray(model.damage_bins)
    sample_events(event_ids, block.event_ptr, block.intensity_bin_id, block.probability, fp_ap_index,
                  prepared.ap_item_ptr, prepared.ap_items, prepared.table, prepared.damage_streams,
                  prepared.hazard_streams, prepared.coverage_tiv, prepared.vuln_pdfs,
                  prepared.vuln_adj, damage_bins, int(n_samples), int(alloc_rule), bool(effective_damageability),
                  prepared.seeds_valid, int(random_generator), int(seed), np.float32(gul_threshold),
                  inverse_table, cdf_table, event_ptr, item_row, losses)
    return event_ptr, item_row, losses


def split_events(model: ModelData, prepared: PreparedItems, event_ids, max_records: int) -> list[np.ndarray]:
    """Split ``event_ids`` into consecutive blocks of at most ``max_records`` records each.

    A block holds whole events; an event with more records than ``max_records`` gets a block
    of its own. Use it to bound the memory of :func:`sample_event_block` (8 x (5 + N) bytes per
    record). The results do not depend on the split.

    Returns
    -------
    list of numpy.ndarray
        int64 event id blocks, in the order of ``event_ids``.
    """
    if max_records < 1:
        raise ValueError(f"max_records must be >= 1, got {max_records}.")
    event_ids = np.asarray(event_ids, dtype=np.int64)
    block = model.footprint.event_block(event_ids, validate=False)
    fp_ap_index = np.empty(len(block.areaperil_id), dtype=np.int64)
    counts = count_hits(block.event_ptr, block.areaperil_id, prepared.ap_ids, prepared.ap_item_ptr, fp_ap_index)
    blocks, start, total = [], 0, 0
    for i, count in enumerate(counts.tolist()):
        if total + count > max_records and i > start:
            blocks.append(event_ids[start:i])
            start, total = i, 0
        total += count
    if start < len(event_ids):
        blocks.append(event_ids[start:])
    return blocks


# --------------------------------------------------------------------------- files and streams


def read_correlations(input_dir: str | os.PathLike) -> np.ndarray | None:
    """Read ``correlations.bin`` / ``.csv`` from an Oasis input folder (None when absent).

    Returns
    -------
    numpy.ndarray or None
        Structured ``CORRELATIONS_DTYPE``; a file without ``source_item_id`` gets 0 there.

    Notes
    -----
    A ``.bin`` file whose size is a multiple of 24 bytes is read in oasislmf 2.5.8's layout
    (with ``source_item_id``); otherwise a multiple of 20 bytes is read as the older layout.
    Coverage dependencies (``source_item_id``) are read but not applied by the sampler.
    """
    folder = Path(input_dir)
    binary, text = folder / "correlations.bin", folder / "correlations.csv"
    if binary.is_file() and binary.stat().st_size > 0:
        size = binary.stat().st_size
        if size % CORRELATIONS_DTYPE.itemsize == 0:
            return np.fromfile(binary, dtype=CORRELATIONS_DTYPE)
        if size % CORRELATIONS_LEGACY_DTYPE.itemsize == 0:
            legacy = np.fromfile(binary, dtype=CORRELATIONS_LEGACY_DTYPE)
            out = np.zeros(len(legacy), dtype=CORRELATIONS_DTYPE)
            for name in legacy.dtype.names:
                out[name] = legacy[name]
            return out
        raise OasisFileError(binary, f"file size {size} is not a whole number of correlation records",
                             fix="regenerate the Oasis input files.")
    if text.is_file():
        import pandas as pd

        frame = pd.read_csv(text, skipinitialspace=True)
        frame.columns = [str(name).strip() for name in frame.columns]
        out = np.zeros(len(frame), dtype=CORRELATIONS_DTYPE)
        for name in CORRELATIONS_DTYPE.names:
            if name in frame.columns:
                out[name] = frame[name].to_numpy()
            elif name != "source_item_id":
                raise OasisFileError(text, f"missing column '{name}'", column=name,
                                     fix=f"the header must contain: {','.join(_CORRELATION_FIELDS)}.")
        return out
    return None


def read_gul_inputs(input_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read items, coverages and (optional) correlations from an Oasis ``input/`` folder.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray or None)
        Items (``ITEMS_DTYPE``), coverages (``COVERAGES_DTYPE``) and correlations.
    """
    from perilflow.kernel.oasis import read_table

    return read_table(input_dir, "items"), read_table(input_dir, "coverages"), read_correlations(input_dir)


def gul_stream_bytes(event_ids: np.ndarray, event_ptr: np.ndarray, item_ids: np.ndarray, losses: np.ndarray,
                     *, header: bool = True, threshold: float = 0.0) -> bytes:
    """Encode results as gulmc's binary item stream.

    Parameters
    ----------
    event_ids, event_ptr : numpy.ndarray
        The block's events and CSR pointer (from :func:`sample_event_block`).
    item_ids : numpy.ndarray
        int32 [n_rec] item id of each record (``prepared.item_ids[item_row]``).
    losses : numpy.ndarray
        float64 [n_rec, 5 + N].
    header : bool, default True
        Start with the stream type and the number of samples.
    threshold : float, default 0
        Samples below it are left out (the special sidx are always written).

    Returns
    -------
    bytes
        Per record: event_id, item_id, then (sidx, loss) pairs -5..-1 and 1..N, ended by (0, 0).
    """
    n_samples = losses.shape[1] - N_SPECIAL
    sidx = np.array(list(SPECIAL_SIDX) + list(range(1, n_samples + 1)), dtype=np.int32)
    event_of_record = np.repeat(np.asarray(event_ids, dtype=np.int32), np.diff(event_ptr))
    chunks = [np.array([GUL_STREAM_TYPE, n_samples], dtype=np.int32).tobytes()] if header else []
    values = losses.astype(np.float32)
    threshold32 = np.float32(threshold)
    for record in range(len(item_ids)):
        keep = np.ones(len(sidx), bool)
        keep[N_SPECIAL:] = values[record, N_SPECIAL:] >= threshold32
        pairs = np.empty(int(keep.sum()) + 1, dtype=[("sidx", "<i4"), ("loss", "<f4")])
        pairs["sidx"][:-1], pairs["loss"][:-1] = sidx[keep], values[record, keep]
        pairs[-1] = (0, 0.0)
        chunks.append(np.array([event_of_record[record], item_ids[record]], dtype=np.int32).tobytes())
        chunks.append(pairs.tobytes())
    return b"".join(chunks)
