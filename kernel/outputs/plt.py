"""Period loss tables (SPLT, MPLT, QPLT) from summary records, as Oasis pltpy computes them.

Every summary record is written once per occurrence of its event (occurrence file order);
events without an occurrence write nothing. Each row carries ``Period``, ``PeriodWeight``
(the period's weight, 1/P without a periods file) and the occurrence date
(``Year, Month, Day, Hour, Minute``, decoded from ``occ_date_id`` with the reference's
floating-point day arithmetic). Per record (N samples; absent samples are 0):

* SPLT: SampleId -1 (always) then each present sample; ImpactedExposure = expval if loss > 0.
* MPLT SampleType 1: written while reading the mean, once per occurrence, if the mean > 0.
* MPLT SampleType 2: if any sample was present and the samples' mean or SD is > 0: mean and
  SD (n - 1) of the N samples; ChanceOfLoss and MeanImpactedExposure are float32 running sums
  of ``[loss > 0] / N`` and ``expval [loss > 0] / N`` over the present samples;
  MaxImpactedExposure is expval if a sample is > 0.
* QPLT: the R-7 quantiles of the N samples for every record (no expval condition).

Rows come out record by record: SPLT (sample-major, occurrence inner), MPLT (type 1 for every
occurrence, then type 2 for every occurrence), QPLT (occurrence-major, quantile inner).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from perilflow.kernel.outputs.elt import quantile_intervals, quantile_loss, sample_mean_sd
from perilflow.kernel.outputs.summary import COL_MAX, COL_MEAN, COL_SAMPLE0, SummaryRecords
from perilflow.kernel.outputs.writers import TABLES

SPLT_DTYPE = TABLES["splt"].dtype
MPLT_DTYPE = TABLES["mplt"].dtype
QPLT_DTYPE = TABLES["qplt"].dtype


@njit(cache=True)
def occ_date(occ_date_id, granular):
    """Decode an occurrence date id into ``(year, month, day, hour, minute)``.

    Reproduces the reference's arithmetic exactly: the day number is a float64 (``id / 1440``
    for granular ids), the civil-date inversion uses float floor divisions, and the results
    are truncated to integers.
    """
    days = occ_date_id / (1440 - 1439 * (not granular))
    y = (10000 * days + 14780) // 3652425
    ddd = days - (365 * y + y // 4 - y // 100 + y // 400)
    if ddd < 0:
        y = y - 1
        ddd = days - (365 * y + y // 4 - y // 100 + y // 400)
    mi = (100 * ddd + 52) // 3060
    mm = (mi + 2) % 12 + 1
    y = y + (mi + 2) // 12
    dd = ddd - (mi * 306 + 5) // 10 + 1
    minutes = (occ_date_id % 1440) * granular
    return np.int32(y), np.int32(mm), np.int32(dd), np.int32(minutes // 60), np.int32(minutes % 60)


def date_to_occ_date_id(year, month, day, hour=0, minute=0, granular=False):
    """Occurrence date id of a civil date (the Oasis ``occurrence`` csv -> bin conversion).

    Parameters
    ----------
    year, month, day, hour, minute : array_like of int
    granular : bool
        Return minutes (``days * 1440 + 60 h + min``) instead of days.

    Returns
    -------
    numpy.ndarray
        int64 date ids.
    """
    year = np.asarray(year, dtype=np.int64)
    month = np.asarray(month, dtype=np.int64)
    day = np.asarray(day, dtype=np.int64)
    m = (month + 9) % 12
    y = year - m // 10
    d = 365 * y + y // 4 - y // 100 + y // 400 + (306 * m + 5) // 10 + (day - 1)
    if granular:
        return d * 1440 + 60 * np.asarray(hour, dtype=np.int64) + np.asarray(minute, dtype=np.int64)
    return d


@dataclass(frozen=True)
class Occurrence:
    """Event occurrences grouped by event (CSR), with period weights.

    Attributes
    ----------
    event_id : numpy.ndarray
        int32[n_events]: ascending unique event ids that occur.
    ptr : numpy.ndarray
        int64[n_events + 1]: occurrence rows of ``event_id[i]`` are ``ptr[i]:ptr[i+1]``.
    period_no : numpy.ndarray
        int32[n_occ]: period of each occurrence row (rows of an event in file order).
    occ_date_id : numpy.ndarray
        int64[n_occ]: occurrence date ids (days, or minutes when ``granular``).
    granular : bool
        Date ids are in minutes.
    n_periods : int
        P, the number of periods.
    period_weights : numpy.ndarray or None
        float64[P]: weight of period p at ``p - 1`` (from a periods file), or None (uniform 1/P,
        and the EP curves use the unweighted return-period formula).
    """

    event_id: np.ndarray
    ptr: np.ndarray
    period_no: np.ndarray
    occ_date_id: np.ndarray
    granular: bool
    n_periods: int
    period_weights: np.ndarray | None = None

    @classmethod
    def build(cls, event_id, period_no, occ_date_id, n_periods: int, granular: bool = False,
              period_weights=None) -> Occurrence:
        """Group raw occurrence rows (any order) by event, keeping each event's rows in file order."""
        event_id = np.asarray(event_id, dtype=np.int32)
        period_no = np.asarray(period_no, dtype=np.int32)
        occ_date_id = np.asarray(occ_date_id, dtype=np.int64)
        if not (event_id.shape == period_no.shape == occ_date_id.shape) or event_id.ndim != 1:
            raise ValueError("occurrence event_id, period_no and occ_date_id must be 1-d arrays of one length")
        if n_periods < 1:
            raise ValueError("n_periods must be at least 1 (the occurrence file's number of periods)")
        if period_weights is not None:
            period_weights = np.asarray(period_weights, dtype=np.float64)
            if period_weights.shape != (n_periods,):
                raise ValueError(f"period_weights must be float64[{n_periods}] (weight of period p at p - 1)")
        order = np.argsort(event_id, kind="stable")
        ev_sorted = event_id[order]
        uniq, counts = np.unique(ev_sorted, return_counts=True)
        ptr = np.zeros(uniq.shape[0] + 1, np.int64)
        np.cumsum(counts, out=ptr[1:])
        return cls(uniq.astype(np.int32), ptr, period_no[order], occ_date_id[order], bool(granular), int(n_periods),
                   period_weights)

    def weights_or_uniform(self) -> np.ndarray:
        """float64[P]: the period weights, or ``1/P`` for every period."""
        if self.period_weights is not None:
            return self.period_weights
        return np.full(self.n_periods, 1 / self.n_periods, dtype=np.float64)

    def event_rows(self, event_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each event id, its ``(start, end)`` occurrence rows (empty range when it never occurs)."""
        event_ids = np.asarray(event_ids, dtype=np.int32)
        n = self.event_id.shape[0]
        if n == 0:
            zero = np.zeros(event_ids.shape, np.int64)
            return zero, zero.copy()
        i = np.searchsorted(self.event_id, event_ids)
        ic = np.minimum(i, n - 1)
        hit = (i < n) & (self.event_id[ic] == event_ids)
        start = np.where(hit, self.ptr[ic], 0).astype(np.int64)
        end = np.where(hit, self.ptr[ic + 1], 0).astype(np.int64)
        return start, end


@njit(cache=True)
def _dates_kernel(occ_date_id, granular, out):
    for i in range(occ_date_id.shape[0]):
        y, m, d, h, mi = occ_date(occ_date_id[i], granular)
        out[i, 0] = y
        out[i, 1] = m
        out[i, 2] = d
        out[i, 3] = h
        out[i, 4] = mi


def occurrence_dates(occ: Occurrence) -> np.ndarray:
    """int32[n_occ, 5]: ``(year, month, day, hour, minute)`` of every occurrence row."""
    out = np.zeros((occ.occ_date_id.shape[0], 5), np.int32)
    _dates_kernel(occ.occ_date_id, 1 if occ.granular else 0, out)
    return out


@njit(cache=True)
def _set_keys(out, k, period, weight, event, dates, o, summary):
    out[k]["Period"] = period
    out[k]["PeriodWeight"] = weight
    out[k]["EventId"] = event
    out[k]["Year"] = dates[o, 0]
    out[k]["Month"] = dates[o, 1]
    out[k]["Day"] = dates[o, 2]
    out[k]["Hour"] = dates[o, 3]
    out[k]["Minute"] = dates[o, 4]
    out[k]["SummaryId"] = summary


@njit(cache=True)
def _splt_kernel(event_id, summary_id, expval, loss, occ_start, occ_end, occ_period, weights, dates, keep_zeros,
                 out, count_only):
    n_samples = loss.shape[1] - COL_SAMPLE0
    k = 0
    for r in range(event_id.shape[0]):
        for col in range(COL_MEAN, COL_SAMPLE0 + n_samples):
            sidx = -1 if col == COL_MEAN else col - COL_SAMPLE0 + 1
            v = loss[r, col]
            if col != COL_MEAN and not keep_zeros and v == 0:
                continue
            for o in range(occ_start[r], occ_end[r]):
                if not count_only:
                    p = occ_period[o]
                    _set_keys(out, k, p, weights[p - 1], event_id[r], dates, o, summary_id[r])
                    out[k]["SampleId"] = sidx
                    out[k]["Loss"] = v
                    out[k]["ImpactedExposure"] = expval[r] if v > 0 else np.float32(0.0)
                k += 1
    return k


def _occ_args(records: SummaryRecords, occ: Occurrence):
    start, end = occ.event_rows(records.event_id)
    return start, end, occ.period_no, occ.weights_or_uniform(), occurrence_dates(occ)


def splt_rows(records: SummaryRecords, occ: Occurrence, keep_zeros: bool = False) -> np.ndarray:
    """SPLT rows (structured, ORD layout) of ``records``."""
    args = (records.event_id, records.summary_id, records.expval, records.loss, *_occ_args(records, occ), keep_zeros)
    n = _splt_kernel(*args, np.zeros(0, SPLT_DTYPE), True)
    out = np.zeros(n, SPLT_DTYPE)
    _splt_kernel(*args, out, False)
    return out


@njit(cache=True, error_model="numpy")
def _mplt_kernel(event_id, summary_id, expval, loss, occ_start, occ_end, occ_period, weights, dates, keep_zeros,
                 out, count_only):
    n_samples = loss.shape[1] - COL_SAMPLE0
    k = 0
    for r in range(event_id.shape[0]):
        ev = expval[r]
        mean_a = loss[r, COL_MEAN]
        maxl = loss[r, COL_MAX]
        if mean_a > 0:
            for o in range(occ_start[r], occ_end[r]):
                if not count_only:
                    p = occ_period[o]
                    _set_keys(out, k, p, weights[p - 1], event_id[r], dates, o, summary_id[r])
                    out[k]["SampleType"] = 1
                    out[k]["ChanceOfLoss"] = 0.0
                    out[k]["MeanLoss"] = mean_a
                    out[k]["SDLoss"] = 0.0
                    out[k]["MaxLoss"] = maxl
                    out[k]["FootprintExposure"] = ev
                    out[k]["MeanImpactedExposure"] = ev
                    out[k]["MaxImpactedExposure"] = ev
                k += 1
        has_rec = False
        chance = np.float32(0.0)
        mean_imp = np.float32(0.0)
        max_imp = np.float32(0.0)
        for j in range(n_samples):
            v = loss[r, COL_SAMPLE0 + j]
            if not keep_zeros and v == 0:
                continue
            has_rec = True
            imp = np.float64(ev) if v > 0 else 0.0
            mean_imp = np.float32(np.float64(mean_imp) + imp / n_samples)
            if imp > max_imp:
                max_imp = np.float32(imp)
            chance = np.float32(np.float64(chance) + (1.0 if v > 0 else 0.0) / n_samples)
        if not has_rec:
            continue
        mean, sd = sample_mean_sd(loss[r, COL_SAMPLE0:])
        if not (mean > 0 or sd > 0):
            continue
        for o in range(occ_start[r], occ_end[r]):
            if not count_only:
                p = occ_period[o]
                _set_keys(out, k, p, weights[p - 1], event_id[r], dates, o, summary_id[r])
                out[k]["SampleType"] = 2
                out[k]["ChanceOfLoss"] = chance
                out[k]["MeanLoss"] = mean
                out[k]["SDLoss"] = sd
                out[k]["MaxLoss"] = maxl
                out[k]["FootprintExposure"] = ev
                out[k]["MeanImpactedExposure"] = mean_imp
                out[k]["MaxImpactedExposure"] = max_imp
            k += 1
    return k


def mplt_rows(records: SummaryRecords, occ: Occurrence, keep_zeros: bool = False) -> np.ndarray:
    """MPLT rows of ``records``."""
    args = (records.event_id, records.summary_id, records.expval, records.loss, *_occ_args(records, occ), keep_zeros)
    n = _mplt_kernel(*args, np.zeros(0, MPLT_DTYPE), True)
    out = np.zeros(n, MPLT_DTYPE)
    _mplt_kernel(*args, out, False)
    return out


@njit(cache=True)
def _qplt_kernel(event_id, summary_id, loss, occ_start, occ_end, occ_period, weights, dates, quantiles, ipart, fpart,
                 out):
    k = 0
    for r in range(event_id.shape[0]):
        srt = np.sort(loss[r, COL_SAMPLE0:])
        for o in range(occ_start[r], occ_end[r]):
            p = occ_period[o]
            for i in range(quantiles.shape[0]):
                _set_keys(out, k, p, weights[p - 1], event_id[r], dates, o, summary_id[r])
                out[k]["Quantile"] = quantiles[i]
                out[k]["Loss"] = quantile_loss(srt, ipart[i], fpart[i])
                k += 1
    return k


def qplt_rows(records: SummaryRecords, occ: Occurrence, quantiles: np.ndarray) -> np.ndarray:
    """QPLT rows of ``records`` for ``quantiles`` (float32 in [0, 1])."""
    if records.n_samples == 0:
        return np.zeros(0, QPLT_DTYPE)
    q, ip, fp = quantile_intervals(quantiles, records.n_samples)
    start, end, period, weights, dates = _occ_args(records, occ)
    out = np.zeros(int(np.sum(end - start)) * q.shape[0], QPLT_DTYPE)
    _qplt_kernel(records.event_id, records.summary_id, records.loss, start, end, period, weights, dates, q, ip, fp,
                 out)
    return out
