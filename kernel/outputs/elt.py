"""Event loss tables (SELT, MELT, QELT) from summary records, as Oasis eltpy computes them.

Rows come out in record order (ascending event, then summary id), and within a record in
stream order. Per record (expval = the summary's exposure, N = number of samples, a sample
is *present* when its loss is non-zero or zeros are kept):

* SELT: ``SampleId -4`` (risks hit; GUL/IL only), ``-1`` (the mean, always present), then the
  present samples; ImpactedExposure is expval where the loss is non-zero, else 0.
* MELT (only when expval > 0): SampleType 1 = the analytical mean (-1), SD 0, ChanceOfLoss 0;
  SampleType 2 = mean and sample standard deviation (n - 1) of all N samples (absent ones are
  0), ChanceOfLoss = share of samples > 0, MeanImpactedExposure = expval * ChanceOfLoss,
  MaxImpactedExposure = expval if any sample > 0. MaxLoss is the -5 value, EventRate the
  event's rate from ``event_rates`` (NaN when absent).
* QELT (only when expval > 0): R-7 quantiles of the N samples (see :func:`quantile_intervals`),
  interpolated in float32 as the reference does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from perilflow.kernel.outputs.summary import COL_MAX, COL_MEAN, COL_RISKS, COL_SAMPLE0, SummaryRecords
from perilflow.kernel.outputs.writers import TABLES

SELT_DTYPE = TABLES["selt"].dtype
MELT_DTYPE = TABLES["melt"].dtype
QELT_DTYPE = TABLES["qelt"].dtype


def quantile_intervals(quantiles: np.ndarray, n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R-7 positions of ``quantiles`` among ``n_samples`` sorted samples, as the reference builds them.

    ``pos = (N - 1) q + 1``; the loss is ``x[k] + (x[k+1] - x[k]) * (pos - k)`` with ``k = floor(pos)``
    (1-based), or ``x[N]`` when ``k == N``.

    Parameters
    ----------
    quantiles : numpy.ndarray
        float32[n_q] in [0, 1].
    n_samples : int
        N.

    Returns
    -------
    tuple of numpy.ndarray
        ``(quantile float32[n_q], integer_part int32[n_q], fractional_part float32[n_q])``.
    """
    q = np.asarray(quantiles, dtype=np.float32)
    if q.ndim != 1 or np.any(q < 0) or np.any(q > 1):
        raise ValueError("quantiles must be a 1-d array of values in [0, 1]")
    pos = [(np.int32(n_samples) - 1) * qi + 1 for qi in q]  # int32 * float32 -> float64, as the reference
    ipart = np.array([int(p) for p in pos], dtype=np.int32)
    fpart = np.array([p - int(p) for p in pos], dtype=np.float32)
    return q, ipart, fpart


@njit(cache=True)
def quantile_loss(sorted_losses, ipart, fpart):
    """One R-7 quantile of the ascending float32 ``sorted_losses`` (float32 arithmetic)."""
    n = sorted_losses.shape[0]
    if ipart == n:
        return sorted_losses[ipart - 1]
    lo = sorted_losses[ipart - 1]
    return (sorted_losses[ipart] - lo) * fpart + lo


@njit(cache=True, error_model="numpy")
def sample_mean_sd(samples):
    """Mean and sample standard deviation (n - 1) of float32 samples, accumulated in float64."""
    n = samples.shape[0]
    mean = 0.0
    for x in samples:
        mean += np.float64(x)
    mean /= np.float64(n)
    sd = 0.0
    if n > 1:
        ss = 0.0
        for x in samples:
            d = np.float64(x) - mean
            ss += d * d
        sd = np.sqrt(ss / np.float64(n - 1))
    return mean, sd


@njit(cache=True)
def _selt_kernel(event_id, summary_id, expval, loss, with_risks, keep_zeros, out, count_only):
    n_samples = loss.shape[1] - COL_SAMPLE0
    k = 0
    for r in range(event_id.shape[0]):
        for col in range(COL_RISKS, COL_SAMPLE0 + n_samples):
            if col == COL_RISKS:
                if not with_risks:
                    continue
                sidx = -4
            elif col == COL_MEAN:
                sidx = -1
            else:
                sidx = col - COL_SAMPLE0 + 1
                if not keep_zeros and loss[r, col] == 0:
                    continue
            if not count_only:
                v = loss[r, col]
                out[k]["EventId"] = event_id[r]
                out[k]["SummaryId"] = summary_id[r]
                out[k]["SampleId"] = sidx
                out[k]["Loss"] = v
                out[k]["ImpactedExposure"] = expval[r] if v != 0 else np.float32(0.0)
            k += 1
    return k


def selt_rows(records: SummaryRecords, with_risks: bool, keep_zeros: bool = False) -> np.ndarray:
    """SELT rows (structured, ORD layout) of ``records``; ``with_risks`` writes the -4 rows (GUL/IL)."""
    args = (records.event_id, records.summary_id, records.expval, records.loss, with_risks, keep_zeros)
    n = _selt_kernel(*args, np.zeros(0, SELT_DTYPE), True)
    out = np.zeros(n, SELT_DTYPE)
    _selt_kernel(*args, out, False)
    return out


@njit(cache=True)
def _event_rate(event, rate_events, rates):
    if rate_events.shape[0] == 0:
        return np.float32(np.nan)
    i = np.searchsorted(rate_events, event)
    if i < rate_events.shape[0] and rate_events[i] == event:
        return rates[i]
    return np.float32(np.nan)


@njit(cache=True, error_model="numpy")
def _melt_kernel(event_id, summary_id, expval, loss, rate_events, rates, out):
    n_samples = loss.shape[1] - COL_SAMPLE0
    k = 0
    for r in range(event_id.shape[0]):
        ev = expval[r]
        if not ev > 0:
            continue
        samples = loss[r, COL_SAMPLE0:]
        nonzero = 0
        for x in samples:
            if x > 0:
                nonzero += 1
        mean, sd = sample_mean_sd(samples)
        chance = nonzero / n_samples
        rate = _event_rate(event_id[r], rate_events, rates)
        for t in range(2):
            out[k]["EventId"] = event_id[r]
            out[k]["SummaryId"] = summary_id[r]
            out[k]["SampleType"] = t + 1
            out[k]["EventRate"] = rate
            out[k]["MaxLoss"] = loss[r, COL_MAX]
            out[k]["FootprintExposure"] = ev
            if t == 0:
                out[k]["ChanceOfLoss"] = 0.0
                out[k]["MeanLoss"] = loss[r, COL_MEAN]
                out[k]["SDLoss"] = 0.0
                out[k]["MeanImpactedExposure"] = ev
                out[k]["MaxImpactedExposure"] = ev
            else:
                out[k]["ChanceOfLoss"] = chance
                out[k]["MeanLoss"] = mean
                out[k]["SDLoss"] = sd
                out[k]["MeanImpactedExposure"] = np.float64(ev) * chance
                out[k]["MaxImpactedExposure"] = ev if nonzero > 0 else np.float32(0.0)
            k += 1
    return k


def melt_rows(records: SummaryRecords, rate_events: np.ndarray | None = None,
              rates: np.ndarray | None = None) -> np.ndarray:
    """MELT rows of ``records``; ``rate_events`` (int32, ascending) / ``rates`` (float32) give event rates."""
    re_ = np.zeros(0, np.int32) if rate_events is None else np.ascontiguousarray(rate_events, dtype=np.int32)
    ra = np.zeros(0, np.float32) if rates is None else np.ascontiguousarray(rates, dtype=np.float32)
    n = 2 * int(np.count_nonzero(records.expval > 0))
    out = np.zeros(n, MELT_DTYPE)
    with np.errstate(all="ignore"):
        _melt_kernel(records.event_id, records.summary_id, records.expval, records.loss, re_, ra, out)
    return out


@njit(cache=True)
def _qelt_kernel(event_id, summary_id, expval, loss, quantiles, ipart, fpart, out):
    k = 0
    for r in range(event_id.shape[0]):
        if not expval[r] > 0:
            continue
        srt = np.sort(loss[r, COL_SAMPLE0:])
        for i in range(quantiles.shape[0]):
            out[k]["EventId"] = event_id[r]
            out[k]["SummaryId"] = summary_id[r]
            out[k]["Quantile"] = quantiles[i]
            out[k]["Loss"] = quantile_loss(srt, ipart[i], fpart[i])
            k += 1
    return k


def qelt_rows(records: SummaryRecords, quantiles: np.ndarray) -> np.ndarray:
    """QELT rows of ``records`` for ``quantiles`` (float32 in [0, 1])."""
    if records.n_samples == 0:
        return np.zeros(0, QELT_DTYPE)
    q, ip, fp = quantile_intervals(quantiles, records.n_samples)
    out = np.zeros(int(np.count_nonzero(records.expval > 0)) * q.shape[0], QELT_DTYPE)
    _qelt_kernel(records.event_id, records.summary_id, records.expval, records.loss, q, ip, fp, out)
    return out
