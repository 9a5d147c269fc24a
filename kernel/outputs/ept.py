"""Exceedance probability tables (EPT, PSEPT) from period groups, as Oasis lecpy computes them.

**Period losses.** Per (summary, period) cell, and per sample, the event losses are added in
float32 (AEP, "agg") and their maximum kept (OEP, "max", starting from 0), in stream order.
A loss counts only if it is > 0, or always when a return-period file is used (then a cell
whose losses are all 0 still exists). Each cell / (cell, sample) that received a loss is an
*item*.

**Curves** (EPCalc): 1 mean damage (the mean's cells), 2 full uncertainty (every
(cell, sample) item pooled), 3 per-sample mean (average of the per-sample curves), 4 sample
mean (each cell's samples averaged first). PSEPT is one curve per (summary, sample).
Items are sorted by loss, descending (numba's quicksort, reversed, as the reference does, so
ties land in the same order). Without period weights the i-th item has return period
``M / i`` (``M = P``, or ``P N`` for full uncertainty); with a periods file it has
``1 / (cumulative weight)`` and zero-weight items are skipped. TVaR is the running mean of the
sorted losses.

**Return-period file.** Only the listed return periods are written: a listed RP equal to a
computed one takes its loss; one between two computed RPs is interpolated linearly in RP;
listed RPs above the largest computed RP are skipped; those below the smallest take 0
(continuing with virtual zero items, whose RPs come from the unused periods' weights when
weighted). TVaR rows are written at the listed RPs.

**Row order** (the reference's sequential lecpy path): EPT = mean damage (OEP then AEP), full
uncertainty (OEP, AEP), per-sample mean (OEP, AEP), sample mean (OEP, AEP); within each pass
the curve rows of every summary, then their TVaR rows. PSEPT = OEP pass then AEP pass. A pass
that has items but writes no row leaves an empty line in the csv, as the reference does.
Per-sample mean with period weights needs the return-period file (otherwise it is dropped,
as in the reference) and takes its values from the PSEPT pass; it has no TVaR rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from perilflow.kernel.outputs.periods import PeriodGroups
from perilflow.kernel.outputs.summary import COL_MEAN, COL_SAMPLE0
from perilflow.kernel.outputs.writers import TABLES

EPT_DTYPE = TABLES["ept"].dtype
PSEPT_DTYPE = TABLES["psept"].dtype

MEANDR, FULL, PERSAMPLEMEAN, MEANSAMPLE = 1, 2, 3, 4
OEP, OEPTVAR, AEP, AEPTVAR = 1, 2, 3, 4


@dataclass(frozen=True)
class EpFlags:
    """Which EP outputs a summary set asks for (the ``ord_output`` flags)."""

    full_uncertainty_aep: bool = False
    full_uncertainty_oep: bool = False
    mean_sample_aep: bool = False
    mean_sample_oep: bool = False
    per_sample_mean_aep: bool = False
    per_sample_mean_oep: bool = False
    psept_aep: bool = False
    psept_oep: bool = False

    @property
    def any_ept(self) -> bool:
        return any((self.full_uncertainty_aep, self.full_uncertainty_oep, self.mean_sample_aep,
                    self.mean_sample_oep, self.per_sample_mean_aep, self.per_sample_mean_oep))

    @property
    def any_psept(self) -> bool:
        return self.psept_aep or self.psept_oep


@dataclass(frozen=True)
class LecTables:
    """Period losses per cell (float32) and which cells / (cell, sample) pairs are items.

    ``agg`` / ``mx``: float32[n_cells, 1 + N], column 0 the mean, 1.. the samples;
    ``used``: bool[n_cells, 1 + N].
    """

    summary_id: np.ndarray
    period_no: np.ndarray
    agg: np.ndarray
    mx: np.ndarray
    used: np.ndarray


@njit(cache=True)
def _lec_kernel(ptr, record, loss, keep_zeros, use_rp, agg, mx, used):
    n_samples = loss.shape[1] - COL_SAMPLE0
    for g in range(ptr.shape[0] - 1):
        for k in range(ptr[g], ptr[g + 1]):
            r = record[k]
            for j in range(n_samples + 1):
                v = loss[r, COL_MEAN] if j == 0 else loss[r, COL_SAMPLE0 + j - 1]
                if j > 0 and not keep_zeros and v == 0:
                    continue  # absent from the stream
                if v > 0 or use_rp:
                    agg[g, j] = agg[g, j] + v
                    if v > mx[g, j]:
                        mx[g, j] = v
                    used[g, j] = True


def lec_tables(groups: PeriodGroups, loss: np.ndarray, use_rp: bool, keep_zeros: bool = False) -> LecTables:
    """Per-cell AEP sums and OEP maxima (see the module docstring)."""
    width = loss.shape[1] - COL_SAMPLE0 + 1
    agg = np.zeros((len(groups), width), np.float32)
    mx = np.zeros((len(groups), width), np.float32)
    used = np.zeros((len(groups), width), np.bool_)
    _lec_kernel(groups.ptr, groups.record, loss, keep_zeros, use_rp, agg, mx, used)
    return LecTables(groups.summary_id, groups.period_no, agg, mx, used)


# ---------------------------------------------------------------------------------------------
# one pass of EP curves


@njit(cache=True)
def _get_loss(next_rp, last_rp, last_loss, curr_rp, curr_loss):
    if curr_rp == 0:
        return 0.0
    if curr_loss == 0:
        return 0.0
    if curr_rp == next_rp:
        return curr_loss
    if curr_rp < next_rp:
        return (next_rp - curr_rp) * (last_loss - curr_loss) / (last_rp - curr_rp) + curr_loss
    return -1.0


@njit(cache=True)
def _rp_out(c, next_idx, last_rp, last_loss, curr_rp, curr_loss, max_rp, counter, tvar, rps,
            ep_c, ep_rp, ep_loss, ep_idx, n_ep, tv_c, tv_rp, tv_v, n_tv):
    """Write the listed return periods that fall at or above ``curr_rp`` (see the module docstring)."""
    n_rp = rps.shape[0]
    while True:
        if next_idx >= n_rp:
            return next_idx, last_rp, last_loss, n_ep, n_tv
        nrp = rps[next_idx]
        if curr_rp > nrp:
            break
        if max_rp < nrp:
            next_idx += 1
            continue
        loss = _get_loss(np.float64(nrp), last_rp, last_loss, curr_rp, curr_loss)
        ep_c[n_ep] = c
        ep_rp[n_ep] = nrp
        ep_loss[n_ep] = loss
        ep_idx[n_ep] = next_idx
        n_ep += 1
        if curr_rp != 0:
            tvar = tvar - ((tvar - loss) / counter)
            tv_c[n_tv] = c
            tv_rp[n_tv] = nrp
            tv_v[n_tv] = tvar
            n_tv += 1
        next_idx += 1
        counter += 1
    if curr_rp > 0:
        last_rp = curr_rp
        last_loss = curr_loss
    return next_idx, last_rp, last_loss, n_ep, n_tv


@njit(cache=True, error_model="numpy")
def _ep_kernel(values, ptr, weights, weighted, cwc, max_rp_unweighted, divisor, use_rp, rps, unused_w,
               ep_c, ep_rp, ep_loss, ep_idx, tv_c, tv_rp, tv_v):
    """EP and TVaR points of every curve (curve ``c`` = items ``ptr[c]:ptr[c+1]``); returns (n_ep, n_tv)."""
    n_ep = 0
    n_tv = 0
    n_rp = rps.shape[0]
    for c in range(ptr.shape[0] - 1):
        vals = values[ptr[c]:ptr[c + 1]]
        wts = weights[ptr[c]:ptr[c + 1]]
        order = np.argsort(vals)[::-1]
        next_idx = 0
        last_rp = 0.0
        last_loss = 0.0
        tvar = 0.0
        i = 1
        cum = 0.0
        max_rp = max_rp_unweighted
        largest = False
        if weighted:
            max_rp = 0.0
        for j in order:
            value = np.float64(vals[j]) / divisor
            if weighted:
                w = wts[j]
                cum += w * cwc
                if w == 0:
                    continue
                retperiod = 1 / cum
                if not largest:
                    max_rp = retperiod + 0.0001
                    largest = True
            else:
                retperiod = max_rp / i
            if use_rp:
                if next_idx < n_rp:
                    next_idx, last_rp, last_loss, n_ep, n_tv = _rp_out(
                        c, next_idx, last_rp, last_loss, retperiod, value, max_rp, i, tvar, rps,
                        ep_c, ep_rp, ep_loss, ep_idx, n_ep, tv_c, tv_rp, tv_v, n_tv)
                tvar = tvar - ((tvar - value) / i)
            else:
                tvar = tvar - ((tvar - value) / i)
                tv_c[n_tv] = c
                tv_rp[n_tv] = retperiod
                tv_v[n_tv] = tvar
                n_tv += 1
                ep_c[n_ep] = c
                ep_rp[n_ep] = retperiod
                ep_loss[n_ep] = value
                ep_idx[n_ep] = -1
                n_ep += 1
            i += 1
        if use_rp:
            u = 0
            while next_idx < n_rp:
                if weighted:
                    retperiod = 0.0
                    if u < unused_w.shape[0]:
                        cum += unused_w[u] * cwc
                        retperiod = 1 / cum
                        u += 1
                else:
                    retperiod = max_rp / i
                    if rps[next_idx] <= 0:
                        retperiod = 0.0
                next_idx, last_rp, last_loss, n_ep, n_tv = _rp_out(
                    c, next_idx, last_rp, last_loss, retperiod, 0.0, max_rp, i, tvar, rps,
                    ep_c, ep_rp, ep_loss, ep_idx, n_ep, tv_c, tv_rp, tv_v, n_tv)
                tvar = tvar - (tvar / i)
                i += 1
    return n_ep, n_tv


@dataclass(frozen=True)
class CurvePoints:
    """Output of one pass: EP points then TVaR points, by curve index."""

    ep_curve: np.ndarray
    ep_rp: np.ndarray
    ep_loss: np.ndarray
    ep_rp_index: np.ndarray
    tv_curve: np.ndarray
    tv_rp: np.ndarray
    tv_value: np.ndarray


def ep_curves(values: np.ndarray, ptr: np.ndarray, *, weights: np.ndarray | None = None, cum_weight_factor: float = 1.0,
              max_rp: float = 0.0, divisor: float = 1.0, return_periods: np.ndarray | None = None,
              unused_weights: np.ndarray | None = None) -> CurvePoints:
    """EP and TVaR points of several curves.

    Parameters
    ----------
    values : numpy.ndarray
        float32[n_items]: period losses, grouped by curve.
    ptr : numpy.ndarray
        int64[n_curves + 1]: items of curve ``c`` are ``ptr[c]:ptr[c+1]``.
    weights : numpy.ndarray or None
        float64[n_items]: item weights (periods file weight / N), or None for the unweighted formula.
    cum_weight_factor : float
        Factor applied to each weight when accumulating (the reference's constant).
    max_rp : float
        Unweighted: M in ``RP = M / i``.
    divisor : float
        Each loss is divided by this (N for the per-sample mean curve).
    return_periods : numpy.ndarray or None
        int32 descending return periods to interpolate at, or None for every point.
    unused_weights : numpy.ndarray or None
        float64: weights (/ N) of the periods with no item, in period order (weighted + RP file).
    """
    values = np.ascontiguousarray(values, np.float32)
    ptr = np.ascontiguousarray(ptr, np.int64)
    weighted = weights is not None
    w = np.ascontiguousarray(weights if weighted else np.zeros(values.shape[0]), np.float64)
    use_rp = return_periods is not None
    rps = np.ascontiguousarray(return_periods if use_rp else np.zeros(0), np.int32)
    unused = np.ascontiguousarray(unused_weights if unused_weights is not None else np.zeros(0), np.float64)
    n_curves = ptr.shape[0] - 1
    cap = values.shape[0] + n_curves * rps.shape[0] + 1
    ep_c, tv_c = np.zeros(cap, np.int64), np.zeros(cap, np.int64)
    ep_rp, ep_loss, tv_rp, tv_v = (np.zeros(cap, np.float64) for _ in range(4))
    ep_idx = np.zeros(cap, np.int64)
    n_ep, n_tv = _ep_kernel(values, ptr, w, weighted, float(cum_weight_factor), float(max_rp), float(divisor), use_rp,
                            rps, unused, ep_c, ep_rp, ep_loss, ep_idx, tv_c, tv_rp, tv_v)
    # TVaR rows come out curve by curve (the reference stores them per curve, then lists them)
    tv_order = np.argsort(tv_c[:n_tv], kind="stable")
    return CurvePoints(ep_c[:n_ep], ep_rp[:n_ep], ep_loss[:n_ep], ep_idx[:n_ep], tv_c[:n_tv][tv_order],
                       tv_rp[:n_tv][tv_order], tv_v[:n_tv][tv_order])


# ---------------------------------------------------------------------------------------------
# the passes


@dataclass
class EpBlock:
    """Rows written by one pass, and whether the reference leaves an empty line for it."""

    rows: np.ndarray
    blank: bool = False


def _block(points: CurvePoints, keys: np.ndarray, epcalc, eptype: int, eptype_tvar: int, psept: bool) -> EpBlock:
    """Rows of one pass; ``keys[c]`` = summary id (EPT) or (summary id, sample id) (PSEPT) of curve c."""
    n_ep, n_tv = points.ep_curve.shape[0], points.tv_curve.shape[0]
    out = np.zeros(n_ep + n_tv, PSEPT_DTYPE if psept else EPT_DTYPE)
    curves = np.concatenate([points.ep_curve, points.tv_curve])
    if psept:
        out["SummaryId"] = keys[curves, 0]
        out["SampleId"] = keys[curves, 1]
    else:
        out["SummaryId"] = keys[curves]
        out["EPCalc"] = epcalc
    out["EPType"][:n_ep] = eptype
    out["EPType"][n_ep:] = eptype_tvar
    out["ReturnPeriod"] = np.concatenate([points.ep_rp, points.tv_rp])
    out["Loss"] = np.concatenate([points.ep_loss, points.tv_value])
    return EpBlock(out, blank=out.shape[0] == 0)


def _curves_by_key(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Curve pointers for items already grouped by ``keys`` (returns (ptr, first index of each curve))."""
    if keys.shape[0] == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.int64)
    new = np.ones(keys.shape[0], bool)
    if keys.ndim == 1:
        new[1:] = keys[1:] != keys[:-1]
    else:
        new[1:] = np.any(keys[1:] != keys[:-1], axis=1)
    heads = np.flatnonzero(new)
    return np.append(heads, keys.shape[0]).astype(np.int64), heads


class EpCalculator:
    """Compute the EPT / PSEPT blocks of one summary set.

    Parameters
    ----------
    tables : LecTables
        Cells sorted by (summary, period).
    n_periods, n_samples : int
        P and N.
    period_weights : numpy.ndarray or None
        float64[P] from a periods file, or None (unweighted curves).
    return_periods : numpy.ndarray or None
        int32 descending, when the return-period file is used.
    max_summary_id : int
        Largest summary id in the summary stream.
    """

    def __init__(self, tables: LecTables, n_periods: int, n_samples: int, period_weights: np.ndarray | None,
                 return_periods: np.ndarray | None, max_summary_id: int):
        self.t = tables
        self.P = n_periods
        self.N = n_samples
        self.weighted = period_weights is not None
        self.wn = None if period_weights is None else np.asarray(period_weights, np.float64) / np.int32(n_samples)
        self.rps = None if return_periods is None else np.asarray(return_periods, np.int32)
        self.max_sid = max_summary_id

    # items ------------------------------------------------------------------------------------
    def _unused(self, periods: np.ndarray) -> np.ndarray | None:
        if not self.weighted:
            return None
        used = np.zeros(self.P, bool)
        used[periods - 1] = True
        return self.wn[~used]

    def _pass(self, values, keys, periods, *, max_rp, cwc, divisor=1.0) -> tuple[CurvePoints, np.ndarray]:
        ptr, heads = _curves_by_key(keys)
        return ep_curves(
            values, ptr, weights=None if not self.weighted else self.wn[periods - 1], cum_weight_factor=cwc,
            max_rp=max_rp, divisor=divisor, return_periods=self.rps, unused_weights=self._unused(periods),
        ), heads

    def mean_damage(self, eptype: int) -> EpBlock | None:
        t = self.t
        table = t.mx if eptype == OEP else t.agg
        sel = np.flatnonzero(t.used[:, 0])
        if sel.shape[0] == 0:
            return None
        keys, periods = t.summary_id[sel], t.period_no[sel]
        points, heads = self._pass(table[sel, 0], keys, periods, max_rp=self.P, cwc=self.N)
        return _block(points, keys[heads], MEANDR, eptype, eptype + 1, False)

    def full_uncertainty(self, eptype: int) -> EpBlock | None:
        t = self.t
        table = t.mx if eptype == OEP else t.agg
        g, j = np.nonzero(t.used[:, 1:])  # row-major: per cell, samples ascending
        if g.shape[0] == 0:
            return None
        keys, periods = t.summary_id[g], t.period_no[g]
        points, heads = self._pass(table[g, 1 + j], keys, periods, max_rp=self.P * self.N, cwc=1.0)
        return _block(points, keys[heads], FULL, eptype, eptype + 1, False)

    def _wheatsheaf_items(self, eptype: int):
        t = self.t
        table = t.mx if eptype == OEP else t.agg
        g, j = np.nonzero(t.used[:, 1:])
        order = np.lexsort((t.period_no[g], j, t.summary_id[g]))  # per (summary, sample), by period
        g, j = g[order], j[order]
        keys = np.column_stack((t.summary_id[g], j + 1)).astype(np.int32)
        return table[g, 1 + j], keys, t.period_no[g]

    def wheatsheaf(self, eptype: int, do_psept: bool, do_mean: bool) -> tuple[EpBlock | None, EpBlock | None]:
        """(PSEPT block, per-sample-mean EPT block) of one EP type."""
        values, keys, periods = self._wheatsheaf_items(eptype)
        ptr, heads = _curves_by_key(keys)
        if self.weighted:  # runs even without items: the reference then writes an empty per-sample-mean pass
            psept_block = mean_block = None
            if do_psept and values.shape[0]:
                points = ep_curves(values, ptr, weights=self.wn[periods - 1], cum_weight_factor=self.N,
                                   return_periods=self.rps, unused_weights=self._unused(periods))
                psept_block = _block(points, keys[heads], None, eptype, eptype + 1, True)
                mean_map = self._mean_map(points, keys[heads]) if do_mean else None
            else:
                mean_map = None
            if do_mean:
                mean_block = self._mean_map_block(mean_map, eptype)
            return psept_block, mean_block
        psept_block = mean_block = None
        if values.shape[0] == 0:
            return None, None
        if do_psept:
            points = ep_curves(values, ptr, max_rp=self.P, return_periods=self.rps)
            psept_block = _block(points, keys[heads], None, eptype, eptype + 1, True)
        if do_mean:
            wm_values, wm_ptr, wm_keys = _wheatsheaf_mean_items(values, ptr, keys[heads, 0])
            if wm_values.shape[0]:
                points = ep_curves(wm_values, wm_ptr, max_rp=self.P, divisor=self.N, return_periods=self.rps)
                mean_block = _block(points, wm_keys, PERSAMPLEMEAN, eptype, eptype + 1, False)
        return psept_block, mean_block

    def _mean_map(self, points: CurvePoints, curve_keys: np.ndarray):
        n_rp = 0 if self.rps is None else self.rps.shape[0]
        total = np.zeros((self.max_sid, n_rp), np.float64)
        count = np.zeros((self.max_sid, n_rp), np.int64)
        for c, loss, k in zip(points.ep_curve, points.ep_loss, points.ep_rp_index, strict=True):
            s = curve_keys[c, 0] - 1
            total[s, k] += loss
            count[s, k] += 1
        return total, count

    def _mean_map_block(self, mean_map, eptype: int) -> EpBlock:
        rows = []
        if mean_map is not None:
            total, count = mean_map
            for s in range(self.max_sid):
                for k in range(total.shape[1]):
                    if count[s, k]:
                        rows.append((s + 1, PERSAMPLEMEAN, eptype, self.rps[k], total[s, k] / max(count[s, k], 1)))
        out = np.array(rows, dtype=EPT_DTYPE) if rows else np.zeros(0, EPT_DTYPE)
        return EpBlock(out, blank=not rows)

    def sample_mean(self, eptype: int) -> EpBlock | None:
        t = self.t
        if self.N == 0:
            return None
        table = t.mx if eptype == OEP else t.agg
        used = t.used[:, 1:]
        sel = np.flatnonzero(used.any(axis=1))
        if sel.shape[0] == 0:
            return None
        values = _sample_means(table[:, 1:], used, sel, self.N)
        keys, periods = t.summary_id[sel], t.period_no[sel]
        points, heads = self._pass(values, keys, periods, max_rp=self.P, cwc=self.N)
        return _block(points, keys[heads], MEANSAMPLE, eptype, eptype + 1, False)


@njit(cache=True)
def _sample_means_kernel(table, used, sel, n_samples, out):
    for i in range(sel.shape[0]):
        g = sel[i]
        acc = np.float32(0.0)
        for j in range(table.shape[1]):
            if used[g, j]:
                acc = np.float32(np.float64(acc) + np.float64(table[g, j]) / n_samples)
        out[i] = acc


def _sample_means(table: np.ndarray, used: np.ndarray, sel: np.ndarray, n_samples: int) -> np.ndarray:
    """float32 running mean over the used samples of each selected cell (the reference's order)."""
    out = np.zeros(sel.shape[0], np.float32)
    _sample_means_kernel(np.ascontiguousarray(table), np.ascontiguousarray(used), sel.astype(np.int64), n_samples, out)
    return out


@njit(cache=True)
def _argsort_desc(values):
    return np.argsort(values)[::-1]


def _wheatsheaf_mean_items(values: np.ndarray, ptr: np.ndarray, curve_summary: np.ndarray):
    """Per summary, the float32 sum over samples of each sample's k-th largest period loss."""
    uniq = np.unique(curve_summary)
    out_vals, out_ptr = [], [0]
    for s in uniq:
        curves = np.flatnonzero(curve_summary == s)
        size = int(max(ptr[c + 1] - ptr[c] for c in curves))
        acc = np.zeros(size, np.float32)
        for c in curves:
            vals = values[ptr[c]:ptr[c + 1]]
            srt = vals[_argsort_desc(np.ascontiguousarray(vals))]
            acc[:srt.shape[0]] += srt
        out_vals.append(acc)
        out_ptr.append(out_ptr[-1] + size)
    if not out_vals:
        return np.zeros(0, np.float32), np.zeros(1, np.int64), np.zeros(0, np.int32)
    return np.concatenate(out_vals), np.array(out_ptr, np.int64), uniq.astype(np.int32)


def ep_blocks(calc: EpCalculator, flags: EpFlags) -> tuple[list[EpBlock], list[EpBlock]]:
    """All EPT and PSEPT blocks of a summary set, in the reference's order.

    Returns
    -------
    (ept_blocks, psept_blocks) : tuple of lists of EpBlock
    """
    per_sample_aep, per_sample_oep = flags.per_sample_mean_aep, flags.per_sample_mean_oep
    if calc.weighted and calc.rps is None:  # the reference drops it: it needs the return-period file
        per_sample_aep = per_sample_oep = False
    has_occ = flags.full_uncertainty_oep or flags.mean_sample_oep or per_sample_oep
    has_agg = flags.full_uncertainty_aep or flags.mean_sample_aep or per_sample_aep
    ept: list[EpBlock | None] = []
    psept: list[EpBlock | None] = []
    if has_occ or has_agg:
        if has_occ:
            ept.append(calc.mean_damage(OEP))
        if has_agg:
            ept.append(calc.mean_damage(AEP))
    if flags.full_uncertainty_oep:
        ept.append(calc.full_uncertainty(OEP))
    if flags.full_uncertainty_aep:
        ept.append(calc.full_uncertainty(AEP))
    for eptype, do_psept, do_mean in ((OEP, flags.psept_oep, per_sample_oep), (AEP, flags.psept_aep, per_sample_aep)):
        if do_psept or do_mean:
            p_block, m_block = calc.wheatsheaf(eptype, do_psept, do_mean)
            psept.append(p_block)
            ept.append(m_block)
    if flags.mean_sample_oep:
        ept.append(calc.sample_mean(OEP))
    if flags.mean_sample_aep:
        ept.append(calc.sample_mean(AEP))
    return [b for b in ept if b is not None], [b for b in psept if b is not None]
