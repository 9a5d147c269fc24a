"""Chunk-mergeable ORD outputs: each event chunk writes partial results, one merge writes the files.

Usage (one perspective)::

    spec = OutputSpec.from_settings(settings, "gul", "input/gul_summary_map.csv")
    static = OutputStatic(occurrence=Occurrence.build(...), return_periods=rp, quantiles=q)
    for k, block in enumerate(chunks):                       # any number of chunks, any split
        accumulate_chunk(spec, static, *block, work_dir=f"work/chunk{k}")
    merge_outputs(spec, static, [f"work/chunk{k}" for k in ...], "output")

**What a chunk writes** (``<work_dir>/<perspective>_S<n>/``), per summary set:

* ``<table>.part`` + ``<table>.index.npy`` for every requested ELT / PLT table: the rows of the
  chunk's events, formatted csv lines (or a ``.npy`` structured array for parquet), in
  ascending event order, and an index ``int64[n, 3]`` of ``(event_id, start, end)`` byte (or
  row) ranges;
* ``records_*.npy``: the chunk's summary records whose event occurs (event, summary, losses
  as float32), when ALT / EPT outputs are requested -- the same data the reference tees to its
  work folder for aalpy / lecpy;
* ``meta.json``: counts and the largest summary id seen.

**Why the merge is exact.** Rows of an event depend only on that event, so ELT / PLT files are
the chunks' rows put in event order. ALT and EP curves need per-period sums, and float sums
depend on their order; chunks therefore keep event-level records, and the merge sorts them
into stream order (event id, summary id) before any addition. The result is byte-identical
for any chunking and equals the reference run on one process with events in ascending order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from perilflow.kernel.outputs import aal, ept
from perilflow.kernel.outputs.elt import melt_rows, qelt_rows, selt_rows
from perilflow.kernel.outputs.periods import period_groups, sort_records
from perilflow.kernel.outputs.plt import Occurrence, mplt_rows, qplt_rows, splt_rows
from perilflow.kernel.outputs.settings import (
    SummarySetSettings,
    SummaryXref,
    build_summary_xref,
    load_analysis_settings,
    perspective_summary_sets,
    read_summary_map,
    risk_index,
)
from perilflow.kernel.outputs.summary import SummaryRecords, summarise
from perilflow.kernel.outputs.writers import TABLES, csv_header, format_csv, write_parquet, write_table

FORMAT_VERSION = 1


@dataclass(frozen=True)
class SetSpec:
    """A summary set's settings and xref."""

    settings: SummarySetSettings
    xref: SummaryXref

    @property
    def folder(self) -> str:
        return f"S{self.settings.set_id}"


@dataclass(frozen=True)
class OutputSpec:
    """Everything a chunk and the merge need to know about one perspective's outputs.

    Attributes
    ----------
    perspective : str
        ``gul``, ``il`` or ``ri`` (file-name prefix).
    n_samples : int
        N, the number of samples in the loss stream.
    sets : tuple of SetSpec
        The perspective's summary sets (empty when its output is off).
    id_to_risk : numpy.ndarray or None
        int32[max_id + 1]: risk index per id for the -4 count (None for RI).
    keep_zeros : bool
        Keep zero losses (the reference's summarypy ``-z``; off in a normal run).
    """

    perspective: str
    n_samples: int
    sets: tuple[SetSpec, ...]
    id_to_risk: np.ndarray | None = None
    keep_zeros: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.sets)

    @classmethod
    def from_settings(
        cls,
        analysis_settings: dict[str, Any] | str | os.PathLike,
        perspective: str,
        summary_map: pd.DataFrame | str | os.PathLike,
        *,
        number_of_samples: int | None = None,
        xref_map: pd.DataFrame | str | os.PathLike | None = None,
        location_df: pd.DataFrame | None = None,
        account_df: pd.DataFrame | None = None,
        keep_zeros: bool = False,
    ) -> OutputSpec:
        """Build the spec from analysis settings and the perspective's summary map.

        Parameters
        ----------
        analysis_settings : dict or path
            Validated with ods-tools' schema.
        perspective : str
            ``gul``, ``il`` or ``ri``.
        summary_map : DataFrame or path
            ``gul_summary_map.csv`` for GUL, ``fm_summary_map.csv`` for IL / RI (risk count and xref).
        number_of_samples : int, optional
            Overrides ``number_of_samples`` of the settings.
        xref_map : DataFrame or path, optional
            Map the GUL xref is built from when it differs from ``summary_map``: the reference
            builds GUL summary ids from ``fm_summary_map.csv`` (``agg_id`` as item id) when one exists.
        location_df, account_df : DataFrame, optional
            Exposure frames for ``oed_fields`` missing from the map.
        keep_zeros : bool
            Keep zero losses (summarypy ``-z``).
        """
        settings = load_analysis_settings(analysis_settings)
        sets = perspective_summary_sets(settings, perspective)
        n = number_of_samples if number_of_samples is not None else settings.get("number_of_samples")
        if n is None or int(n) < 0:
            raise ValueError("number_of_samples missing: set it in the analysis settings or pass number_of_samples")
        if not sets:
            return cls(perspective, int(n), (), None, keep_zeros)
        smap = summary_map if isinstance(summary_map, pd.DataFrame) else read_summary_map(summary_map)
        xmap = smap if xref_map is None else (xref_map if isinstance(xref_map, pd.DataFrame)
                                              else read_summary_map(xref_map))
        if perspective == "gul":
            xcol = "item_id" if "item_id" in xmap.columns else "agg_id"
            rcol = "item_id"
        else:
            xcol = rcol = "output_id"
        set_specs = tuple(SetSpec(s, build_summary_xref(xmap, s, xcol, location_df, account_df)) for s in sets)
        risks = None if perspective == "ri" else risk_index(smap, rcol)
        return cls(perspective, int(n), set_specs, risks, keep_zeros)


@dataclass(frozen=True)
class OutputStatic:
    """Model / run data shared by every chunk.

    Attributes
    ----------
    occurrence : Occurrence
        Event occurrences, periods and period weights.
    return_periods : numpy.ndarray or None
        int32 return periods (any order; used descending) for ``return_period_file``.
    quantiles : numpy.ndarray or None
        float32 quantiles for QELT / QPLT.
    event_rates : tuple of numpy.ndarray or None
        ``(event_id int32, rate float32)`` for MELT's EventRate.
    """

    occurrence: Occurrence
    return_periods: np.ndarray | None = None
    quantiles: np.ndarray | None = None
    event_rates: tuple[np.ndarray, np.ndarray] | None = field(default=None)

    def sorted_rates(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        if self.event_rates is None:
            return None, None
        ev = np.asarray(self.event_rates[0], np.int32)
        order = np.argsort(ev, kind="stable")
        return ev[order], np.asarray(self.event_rates[1], np.float32)[order]

    def descending_return_periods(self) -> np.ndarray | None:
        if self.return_periods is None:
            return None
        rp = np.asarray(self.return_periods, np.int32)
        if np.unique(rp).shape[0] != rp.shape[0]:
            raise ValueError("return periods must be unique")
        return np.sort(rp)[::-1].copy() if rp.shape[0] else None


# ---------------------------------------------------------------------------------------------
# chunk side


def _set_dir(work_dir: Path, spec: OutputSpec, s: SetSpec) -> Path:
    return work_dir / f"{spec.perspective}_{s.folder}"


def _table_rows(name: str, recs: SummaryRecords, spec: OutputSpec, static: OutputStatic) -> np.ndarray:
    occ = static.occurrence
    if name == "selt":
        return selt_rows(recs, spec.id_to_risk is not None, spec.keep_zeros)
    if name == "melt":
        return melt_rows(recs, *static.sorted_rates())
    if name in ("qelt", "qplt") and static.quantiles is None:
        raise ValueError(f"{name} requested but no quantiles given: pass OutputStatic(quantiles=...)")
    if name == "qelt":
        return qelt_rows(recs, static.quantiles)
    if name == "splt":
        return splt_rows(recs, occ, spec.keep_zeros)
    if name == "mplt":
        return mplt_rows(recs, occ, spec.keep_zeros)
    return qplt_rows(recs, occ, static.quantiles)


def _event_index(events: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """int64[n, 3] (event_id, start, end) of each run of equal ``events``; ``ends`` = end offset of each row."""
    if events.shape[0] == 0:
        return np.zeros((0, 3), np.int64)
    new = np.ones(events.shape[0], bool)
    new[1:] = events[1:] != events[:-1]
    heads = np.flatnonzero(new)
    tails = np.append(heads[1:], events.shape[0]) - 1
    starts = np.where(heads > 0, ends[np.maximum(heads - 1, 0)], 0)
    return np.column_stack((events[heads], starts, ends[tails])).astype(np.int64)


def accumulate_chunk(
    spec: OutputSpec,
    static: OutputStatic,
    event_ids: np.ndarray,
    event_ptr: np.ndarray,
    ids: np.ndarray,
    losses: np.ndarray,
    work_dir: str | os.PathLike,
) -> None:
    """Write one chunk's partial outputs for ``spec``'s perspective to ``work_dir``.

    Parameters
    ----------
    spec, static : OutputSpec, OutputStatic
    event_ids : numpy.ndarray
        int32[n_events], unique (any order).
    event_ptr : numpy.ndarray
        int64[n_events + 1]: CSR offsets.
    ids : numpy.ndarray
        int64[n_rec]: item ids (GUL) or output ids (IL / RI), in stream order per event.
    losses : numpy.ndarray
        float64 or float32[n_rec, 5 + N]: ``[-5, -4, -3, -2, -1, samples]``.
    work_dir : path
        This chunk's own folder (created).
    """
    losses = np.asarray(losses)
    if losses.ndim != 2 or losses.shape[1] != 5 + spec.n_samples:
        raise ValueError(f"losses must be float32 or float64[n_rec, {5 + spec.n_samples}] (5 special columns + "
                         f"{spec.n_samples} samples); got shape {losses.shape}")
    work = Path(work_dir)
    for s in spec.sets:
        folder = _set_dir(work, spec, s)
        folder.mkdir(parents=True, exist_ok=True)
        recs = summarise(event_ids, event_ptr, ids, losses, s.xref.id_to_summary, s.xref.n_summaries,
                         spec.id_to_risk, spec.keep_zeros)
        for name in s.settings.tables:
            rows = _table_rows(name, recs, spec, static)
            if s.settings.parquet:
                np.save(folder / f"{name}.part.npy", rows)
                ends = np.arange(1, rows.shape[0] + 1, dtype=np.int64)
            else:
                text = format_csv(rows, TABLES[name])
                (folder / f"{name}.part").write_bytes(text)
                ends = np.flatnonzero(np.frombuffer(text, np.uint8) == 10).astype(np.int64) + 1
            np.save(folder / f"{name}.index.npy", _event_index(rows["EventId"], ends))
        meta = {"version": FORMAT_VERSION, "n_samples": spec.n_samples, "n_records": len(recs),
                "max_summary_id": int(recs.summary_id.max()) if len(recs) else 0,
                "events": int(np.asarray(event_ids).shape[0])}
        if s.settings.needs_periods:
            start, end = static.occurrence.event_rows(recs.event_id)
            keep = recs.take(np.flatnonzero(end > start))
            np.save(folder / "records_event.npy", keep.event_id)
            np.save(folder / "records_summary.npy", keep.summary_id)
            np.save(folder / "records_expval.npy", keep.expval)
            np.save(folder / "records_loss.npy", keep.loss)
        (folder / "meta.json").write_text(json.dumps(meta))


# ---------------------------------------------------------------------------------------------
# merge side


def _load_meta(folder: Path, spec: OutputSpec) -> dict[str, Any]:
    meta_fp = folder / "meta.json"
    if not meta_fp.exists():
        raise ValueError(f"{folder} has no partial outputs: run accumulate_chunk for it first")
    meta = json.loads(meta_fp.read_text())
    if meta.get("version") != FORMAT_VERSION or meta.get("n_samples") != spec.n_samples:
        raise ValueError(f"{folder} was written with another format or sample count; rerun its chunk")
    return meta


def _merge_table(name: str, folders: list[Path], out_fp: Path, parquet: bool) -> None:
    layout = TABLES[name]
    index = []
    for k, folder in enumerate(folders):
        idx = np.load(folder / f"{name}.index.npy")
        index.append(np.column_stack((idx, np.full(idx.shape[0], k, np.int64))))
    allidx = np.concatenate(index) if index else np.zeros((0, 4), np.int64)
    order = np.argsort(allidx[:, 0], kind="stable")
    allidx = allidx[order]
    if allidx.shape[0] > 1 and np.any(allidx[1:, 0] == allidx[:-1, 0]):
        dup = int(allidx[1:, 0][allidx[1:, 0] == allidx[:-1, 0]][0])
        raise ValueError(f"event {dup} appears in more than one chunk; each event must be in exactly one chunk")
    if parquet:
        parts = [np.load(f / f"{name}.part.npy", mmap_mode="r") for f in folders]
        pieces = [parts[int(c)][int(a):int(b)] for _, a, b, c in allidx]
        rows = np.concatenate(pieces) if pieces else layout.empty()
        write_parquet(out_fp, rows, layout)
        return
    with open(out_fp, "wb") as out:
        out.write(csv_header(layout))
        data = [np.memmap(f / f"{name}.part", mode="r", dtype=np.uint8) if (f / f"{name}.part").stat().st_size
                else np.zeros(0, np.uint8) for f in folders]
        i = 0
        while i < allidx.shape[0]:  # copy runs of contiguous ranges of one chunk at once
            _, a, b, c = allidx[i]
            j = i + 1
            while j < allidx.shape[0] and allidx[j, 3] == c and allidx[j, 1] == b:
                b = allidx[j, 2]
                j += 1
            out.write(data[int(c)][int(a):int(b)].tobytes())
            i = j


def _load_records(folders: list[Path], n_samples: int) -> SummaryRecords:
    parts = []
    for f in folders:
        parts.append(SummaryRecords(
            np.load(f / "records_event.npy"), np.load(f / "records_summary.npy"),
            np.load(f / "records_expval.npy"), np.load(f / "records_loss.npy"),
        ))
    return sort_records(SummaryRecords.concat(parts, n_samples))


def _write_ep(fp: Path, blocks: list[ept.EpBlock], layout_name: str, parquet: bool) -> None:
    layout = TABLES[layout_name]
    rows = [b.rows for b in blocks]
    if parquet:
        write_parquet(fp, np.concatenate(rows) if rows else layout.empty(), layout)
        return
    with open(fp, "wb") as out:
        out.write(csv_header(layout))
        for b in blocks:
            out.write(format_csv(b.rows, layout))
            if b.blank:
                out.write(b"\n")


def _file(output_dir: Path, spec: OutputSpec, s: SetSpec, table: str) -> Path:
    ext = "parquet" if s.settings.parquet else "csv"
    return output_dir / f"{spec.perspective}_S{s.settings.set_id}_{table}.{ext}"


def _write_summary_info(output_dir: Path, spec: OutputSpec, s: SetSpec) -> None:
    fp = _file(output_dir, spec, s, "summary-info")
    if s.settings.parquet:
        s.xref.info.to_parquet(fp, engine="pyarrow")
    else:
        s.xref.info.to_csv(fp, index=False, encoding="utf-8")


def _merge_periods(spec: OutputSpec, static: OutputStatic, s: SetSpec, folders: list[Path], metas: list[dict],
                   output_dir: Path) -> None:
    st = s.settings
    occ = static.occurrence
    recs = _load_records(folders, spec.n_samples)
    groups = period_groups(recs, occ)
    weights = occ.weights_or_uniform()
    parquet = st.parquet
    if st.alt_period:
        rows = aal.palt_rows(groups, recs.loss, occ.n_periods, weights, alct=st.alct)
        if rows is not None:
            write_table(_file(output_dir, spec, s, "palt"), rows, TABLES["palt"], parquet)
        if st.alct:
            rows = aal.alct_rows(groups, recs.loss, occ.n_periods, weights, st.alct_confidence)
            if rows is not None:
                write_table(_file(output_dir, spec, s, "alct"), rows, TABLES["alct"], parquet)
    if st.alt_meanonly:
        rows = aal.palt_rows(groups, recs.loss, occ.n_periods, weights, alct=False)
        if rows is not None:
            write_table(_file(output_dir, spec, s, "altmeanonly"), rows, TABLES["altmeanonly"], parquet)
    if not (st.ep.any_ept or st.ep.any_psept):
        return
    max_sid = max((m["max_summary_id"] for m in metas), default=0)
    if max_sid == 0:
        return  # the reference writes no EP file for an empty summary stream
    rps = None
    if st.return_period_file:
        rps = static.descending_return_periods()
        if static.return_periods is None:
            raise ValueError("return_period_file requested but no return periods given: pass "
                             "OutputStatic(return_periods=...)")
    tables = ept.lec_tables(groups, recs.loss, use_rp=rps is not None, keep_zeros=spec.keep_zeros)
    calc = ept.EpCalculator(tables, occ.n_periods, spec.n_samples, occ.period_weights, rps, max_sid)
    ept_blocks, psept_blocks = ept.ep_blocks(calc, st.ep)
    flags = st.ep
    drop_per_sample = occ.period_weights is not None and rps is None
    has_ept = any((flags.full_uncertainty_aep, flags.full_uncertainty_oep, flags.mean_sample_aep,
                   flags.mean_sample_oep)) or ((flags.per_sample_mean_aep or flags.per_sample_mean_oep)
                                               and not drop_per_sample)
    if flags.any_ept and has_ept:
        _write_ep(_file(output_dir, spec, s, "ept"), ept_blocks, "ept", parquet)
    if flags.any_psept:
        _write_ep(_file(output_dir, spec, s, "psept"), psept_blocks, "psept", parquet)


def merge_outputs(
    spec: OutputSpec,
    static: OutputStatic,
    work_dirs: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
) -> list[Path]:
    """Merge the chunks' partial results into the ORD files of ``spec``'s perspective.

    Parameters
    ----------
    spec, static : OutputSpec, OutputStatic
        As given to :func:`accumulate_chunk`.
    work_dirs : sequence of paths
        Every chunk's work folder (order does not matter).
    output_dir : path
        The ``output/`` folder (created).

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for s in spec.sets:
        folders = [_set_dir(Path(w), spec, s) for w in work_dirs]
        metas = [_load_meta(f, spec) for f in folders]
        _write_summary_info(out, spec, s)
        for name in s.settings.tables:
            _merge_table(name, folders, _file(out, spec, s, name), s.settings.parquet)
        if s.settings.needs_periods:
            _merge_periods(spec, static, s, folders, metas, out)
    return sorted(p for s in spec.sets for p in out.glob(f"{spec.perspective}_S{s.settings.set_id}_*"))
