"""Average loss tables (PALT, ALCT) from period groups, as Oasis aalpy computes them.

For every (summary, period) cell, the mean (-1) and each sample's event losses are summed
in float64 (:mod:`periods` gives the order). A cell of period ``p`` has weight
``w = weight_p * P`` (``weight_p`` from the periods file, else ``1/P``; 0 for a period
outside 1..P). Then per summary:

* SampleType 1: ``MeanLoss = sum(w L) / P``, ``SDLoss = sqrt((sum(w L^2) - sum(w L)^2 / P) / (P - 1))``
  over the cells' mean sums ``L``;
* SampleType 2: the same over every (cell, sample) pair, with ``P N`` in place of ``P``.

PALT lists SampleType 1 for every summary seen (ascending), then SampleType 2.

ALCT (convergence) also accumulates disjoint sample subsets of sizes 1, 2, 4, ... (and the
whole sample set last) and reports, per subset, mean, SD, a confidence interval and the
hazard / vulnerability variance split. When ALCT is on, the reference adds the samples of
those subsets into the full-set sums block by block, which changes the float rounding of
PALT slightly; this module reproduces that too (``n_subsets``). For N = 2^k - 1 samples the
reference reads one element past its sample array when ALCT is on; here that element is 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from perilflow.kernel.outputs.periods import PeriodGroups
from perilflow.kernel.outputs.summary import COL_MEAN, COL_SAMPLE0
from perilflow.kernel.outputs.writers import TABLES

PALT_DTYPE = TABLES["palt"].dtype
ALCT_DTYPE = TABLES["alct"].dtype


def n_subsets(alct: bool, n_samples: int) -> int:
    """Number of sample subsets the reference keeps (1 without ALCT)."""
    i = 0
    if alct and n_samples > 1:
        while (1 << i) + ((1 << i) - 1) <= n_samples:
            i += 1
    return i + 1


@njit(cache=True, error_model="numpy")
def _aal_kernel(summary_id, period_no, ptr, record, loss, n_periods, weights, max_summary_id, num_subsets,
                analytical, sample, used):
    """Fill the ALT accumulators.

    Parameters
    ----------
    summary_id, period_no, ptr, record : numpy.ndarray
        The period groups (see :class:`PeriodGroups`).
    loss : numpy.ndarray
        float32[n_records, 3 + N]: summary record losses.
    n_periods : int
        P.
    weights : numpy.ndarray
        float64[P]: period weights (1/P each without a periods file).
    max_summary_id, num_subsets : int
        Accumulator sizes.
    analytical : numpy.ndarray
        float64[max_summary_id, 2]: sum(w L), sum(w L^2) of the mean.
    sample : numpy.ndarray
        float64[num_subsets * max_summary_id, 3]: sum, sum of squares and sum of squared period
        totals, per (subset, summary); the last subset is the whole sample set.
    used : numpy.ndarray
        bool[max_summary_id]: summaries seen.
    """
    n_samples = loss.shape[1] - COL_SAMPLE0
    vec = np.zeros(n_samples + 2, dtype=np.float64)  # one spare slot: see the module docstring
    for g in range(summary_id.shape[0]):
        vec[:] = 0.0
        for k in range(ptr[g], ptr[g + 1]):
            r = record[k]
            vec[0] += np.float64(loss[r, COL_MEAN])
            for j in range(n_samples):
                vec[1 + j] += np.float64(loss[r, COL_SAMPLE0 + j])
        p = period_no[g]
        w = 0.0
        if 1 <= p <= n_periods:
            w = weights[p - 1] * n_periods
        s = summary_id[g] - 1
        used[s] = True
        mean = vec[0]
        analytical[s, 0] += mean * w
        analytical[s, 1] += mean * mean * w
        last = (num_subsets - 1) * max_summary_id + s
        total = 0.0
        sidx = 1
        aal_idx = 0
        while sidx < n_samples + 1:
            while aal_idx < num_subsets - 1:
                cur = aal_idx * max_summary_id + s
                sidx = 1 << aal_idx
                end = sidx << 1
                wm = 0.0
                wmsq = 0.0
                for q in range(sidx, end):
                    wm += vec[q] * w
                    wmsq += vec[q] * vec[q] * w
                sample[last, 0] += wm
                sample[last, 1] += wmsq
                total += wm
                sample[cur, 0] += wm
                sample[cur, 1] += wmsq
                sample[cur, 2] += wm * wm
                sidx = end
                aal_idx += 1
            m = vec[sidx]
            total += m * w
            sample[last, 0] += m * w
            sample[last, 1] += m * m * w
            sidx += 1
        sample[last, 2] += total * total


def _mean_sd(total, total_sq, n):
    with np.errstate(all="ignore"):
        mean = total / n
        sd = np.sqrt((total_sq - (total * total) / n) / (n - 1))
    return mean, sd


def alt_accumulate(groups: PeriodGroups, loss: np.ndarray, n_periods: int, weights: np.ndarray, alct: bool):
    """Run the ALT accumulation; returns ``(analytical, sample, used, num_subsets, max_summary_id)``."""
    n_samples = loss.shape[1] - COL_SAMPLE0
    max_sid = int(groups.summary_id.max()) if len(groups) else 0
    ns = n_subsets(alct, n_samples)
    analytical = np.zeros((max_sid, 2), np.float64)
    sample = np.zeros((ns * max_sid, 3), np.float64)
    used = np.zeros(max_sid, np.bool_)
    if max_sid:
        _aal_kernel(groups.summary_id, groups.period_no, groups.ptr, groups.record, loss, n_periods,
                    np.ascontiguousarray(weights, np.float64), max_sid, ns, analytical, sample, used)
    return analytical, sample, used, ns, max_sid


def palt_rows(groups: PeriodGroups, loss: np.ndarray, n_periods: int, weights: np.ndarray,
              alct: bool = False) -> np.ndarray | None:
    """PALT rows (structured, ORD layout); None when no summary record has an occurrence (no file).

    Parameters
    ----------
    groups : PeriodGroups
    loss : numpy.ndarray
        float32[n_records, 3 + N].
    n_periods : int
        P.
    weights : numpy.ndarray
        float64[P] period weights (``1/P`` each without a periods file).
    alct : bool
        Accumulate as the reference does when ALCT is also requested.
    """
    n_samples = loss.shape[1] - COL_SAMPLE0
    analytical, sample, used, ns, max_sid = alt_accumulate(groups, loss, n_periods, weights, alct)
    if max_sid == 0:
        return None
    full = sample[(ns - 1) * max_sid:]
    m1, s1 = _mean_sd(analytical[:, 0], analytical[:, 1], n_periods)
    m2, s2 = _mean_sd(full[:, 0], full[:, 1], n_periods * n_samples)
    ids = np.flatnonzero(used)
    out = np.zeros(2 * ids.shape[0], PALT_DTYPE)
    n = ids.shape[0]
    out["SummaryId"][:n] = ids + 1
    out["SampleType"][:n] = 1
    out["MeanLoss"][:n] = m1[ids]
    out["SDLoss"][:n] = s1[ids]
    out["SummaryId"][n:] = ids + 1
    out["SampleType"][n:] = 2
    out["MeanLoss"][n:] = m2[ids]
    out["SDLoss"][n:] = s2[ids]
    return out


def _confidence_interval(std_err: np.ndarray, confidence: float) -> np.ndarray:
    """Half-width of the normal confidence interval (Abramowitz & Stegun 26.2.23 z-value)."""
    p = (1 + confidence) / 2
    p = np.sqrt(-2 * np.log(1 - p))
    c = (2.515517, 0.802853, 0.010328)
    d = (1.432788, 0.189269, 0.001308)
    z = p - (((c[2] * p + c[1]) * p + c[0]) / (((d[2] * p + d[1]) * p + d[0]) * p + 1))
    return std_err * z


def alct_rows(groups: PeriodGroups, loss: np.ndarray, n_periods: int, weights: np.ndarray,
              confidence: float = 0.95) -> np.ndarray | None:
    """ALCT rows for every summary id 1..max (as the reference lists them); None when no data."""
    n_samples = loss.shape[1] - COL_SAMPLE0
    _, sample, _, ns, max_sid = alt_accumulate(groups, loss, n_periods, weights, True)
    if max_sid == 0:
        return None
    sizes = np.array([2**i for i in range(ns)], dtype=np.int64)
    sizes[-1] = n_samples
    P = n_periods
    rows = []
    with np.errstate(all="ignore"):
        for sid in range(1, max_sid + 1):
            v = sample[np.arange(ns) * max_sid + (sid - 1)]
            mean, std = _mean_sd(v[:, 0], v[:, 1], sizes * P)
            mean_period = v[:, 2] / (sizes * sizes)
            var_vuln = ((v[:, 1] - sizes * mean_period) / (sizes * P - sizes)) / (sizes * P)
            var_haz = (sizes * (mean_period - P * mean * mean) / (P - 1)) / (sizes * P)
            std_err = np.sqrt(var_vuln)
            ci = _confidence_interval(std_err, confidence)
            se_haz = np.sqrt(var_haz)
            se_vuln = np.sqrt(var_vuln)
            lower = np.where(ci > 0, mean - ci, 0)
            upper = np.where(ci > 0, mean + ci, 0)
            rows.append(np.column_stack((
                np.full(ns, sid), mean, std, sizes, lower, upper, std_err, std_err / mean,
                var_haz, se_haz, se_haz / mean, var_vuln, se_vuln, se_vuln / mean,
            )))
    data = np.concatenate(rows)
    out = np.zeros(data.shape[0], ALCT_DTYPE)
    for j, name in enumerate(ALCT_DTYPE.names):
        out[name] = data[:, j]
    return out
