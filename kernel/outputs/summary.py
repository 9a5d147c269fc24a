"""Aggregate per-event item / output losses to summary records, as Oasis summarypy does.

Input is one event block of a loss stream held as a CSR: for event ``e`` the records
``event_ptr[e]:event_ptr[e+1]`` of ``ids`` / ``losses``, in stream order. ``losses``
columns are ``[max (-5), chance of loss (-4), TIV (-3), std dev (-2), mean (-1), samples 1..N]``.

For one summary set, every record adds into the summary its id maps to. As in the
reference (which streams float32 values and keeps float32 accumulators):

* each value is first rounded to float32 (NaN counts as 0) and each addition is done in
  float64 and rounded back to float32;
* expval (the summary header's exposure) is the sum of TIV (-3); -5, -1 and the samples are
  summed; -2 and the incoming -4 are ignored;
* -4 is recomputed as the number of risks hit: a summary seen for the first time in the
  event counts 1, and every later record of it adds 1 if its risk ``(loc_id, building_id)``
  had not yet been hit in this event by *any* record (the reference's exact rule, which is
  not quite "distinct risks per summary" when one risk feeds several summaries). RI streams
  have no risk map and write no -4;
* summaries are emitted per event in ascending summary id; a summary whose expval and mean
  are both 0 is dropped unless ``keep_zeros``; downstream a sample whose loss is 0 counts as
  absent from the stream unless ``keep_zeros`` (the reference's ``-z``).

The result is a *summary record table*: ``event_id int32[n]``, ``summary_id int32[n]``,
``expval float32[n]`` and ``loss float32[n, 3 + N]`` with columns
``[max (-5), risks (-4), mean (-1), samples 1..N]`` (see the ``COL_*`` constants).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

#: Columns of the summary record loss matrix.
COL_MAX, COL_RISKS, COL_MEAN, COL_SAMPLE0 = 0, 1, 2, 3
#: Columns of the incoming loss matrix.
IN_MAX, IN_CHANCE, IN_TIV, IN_SD, IN_MEAN, IN_SAMPLE0 = 0, 1, 2, 3, 4, 5


@dataclass(frozen=True)
class SummaryRecords:
    """Summary records of one summary set, ordered by (event_id, summary_id).

    Attributes
    ----------
    event_id : numpy.ndarray
        int32[n].
    summary_id : numpy.ndarray
        int32[n], 1-based.
    expval : numpy.ndarray
        float32[n]: summed TIV of the items / outputs that fed the summary in the event.
    loss : numpy.ndarray
        float32[n, 3 + n_samples]: ``[max, risks, mean, samples...]`` (monetary units, risks a count).
    """

    event_id: np.ndarray
    summary_id: np.ndarray
    expval: np.ndarray
    loss: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.loss.shape[1] - COL_SAMPLE0

    def __len__(self) -> int:
        return self.event_id.shape[0]

    @classmethod
    def empty(cls, n_samples: int) -> SummaryRecords:
        return cls(
            np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32),
            np.zeros((0, COL_SAMPLE0 + n_samples), np.float32),
        )

    @classmethod
    def concat(cls, parts: list[SummaryRecords], n_samples: int) -> SummaryRecords:
        if not parts:
            return cls.empty(n_samples)
        return cls(
            np.concatenate([p.event_id for p in parts]),
            np.concatenate([p.summary_id for p in parts]),
            np.concatenate([p.expval for p in parts]),
            np.concatenate([p.loss for p in parts]),
        )

    def take(self, index: np.ndarray) -> SummaryRecords:
        return SummaryRecords(self.event_id[index], self.summary_id[index], self.expval[index], self.loss[index])


@njit(cache=True)
def _f4(x):
    """Round a float64 value to float32, NaN as 0 (the reference reads float32 and zeroes NaN)."""
    v = np.float32(x)
    if np.isnan(v):
        return np.float32(0.0)
    return v


@njit(cache=True)
def _add_f4(acc, v):
    """``acc += v`` the reference's way: float64 addition rounded to float32."""
    return np.float32(np.float64(acc) + np.float64(v))


@njit(cache=True)
def _summarise_kernel(event_order, event_ids, event_ptr, ids, losses, id_to_summary, id_to_risk, n_risks,
                      n_summaries, keep_zeros, out_event, out_summary, out_expval, out_loss, count_only):
    """Aggregate records to summaries, event by event (see the module docstring).

    Parameters
    ----------
    event_order : numpy.ndarray
        int64[n_events]: order in which to visit the events (ascending event id).
    event_ids, event_ptr, ids, losses : numpy.ndarray
        The CSR: int32[n_events], int64[n_events+1], int64[n_rec], float64[n_rec, 5 + N].
    id_to_summary : numpy.ndarray
        int32[max_id + 1]: summary id (1-based) of each item / output id, 0 if unmapped.
    id_to_risk : numpy.ndarray
        int32[max_id + 1]: risk index of each id; empty when the stream has no risk count (RI).
    n_risks, n_summaries : int
        Number of risks and of summary ids (the largest summary id).
    keep_zeros : bool
        Keep summaries whose expval and mean are 0.
    out_event, out_summary, out_expval, out_loss : numpy.ndarray
        Outputs (int32[n], int32[n], float32[n], float32[n, 3 + N]); ignored when ``count_only``.
    count_only : bool
        Only count the records that would be written.

    Returns
    -------
    int
        Number of summary records (written or counted).
    """
    n_samples = losses.shape[1] - IN_SAMPLE0
    has_risk = id_to_risk.shape[0] > 0
    width = COL_SAMPLE0 + n_samples
    acc = np.zeros((n_summaries, width), dtype=np.float32)
    acc_tiv = np.zeros(n_summaries, dtype=np.float32)
    seen = np.zeros(n_summaries, dtype=np.int64)
    risk_hit = np.zeros(max(n_risks, 1), dtype=np.int64)
    present = np.empty(n_summaries, dtype=np.int32)
    n_out = 0
    for k in range(event_order.shape[0]):
        e = event_order[k]
        stamp = k + 1
        n_present = 0
        for r in range(event_ptr[e], event_ptr[e + 1]):
            item = ids[r]
            new_risk = 0
            if has_risk:
                ri = id_to_risk[item]
                if risk_hit[ri] != stamp:
                    risk_hit[ri] = stamp
                    new_risk = 1
            s = id_to_summary[item] - 1
            if seen[s] != stamp:
                seen[s] = stamp
                present[n_present] = s
                n_present += 1
                acc[s, :] = 0.0
                acc_tiv[s] = 0.0
                acc[s, COL_RISKS] = 1.0
            elif has_risk:
                acc[s, COL_RISKS] = _add_f4(acc[s, COL_RISKS], np.float32(new_risk))
            if count_only:
                continue
            acc[s, COL_MAX] = _add_f4(acc[s, COL_MAX], _f4(losses[r, IN_MAX]))
            acc_tiv[s] = _add_f4(acc_tiv[s], _f4(losses[r, IN_TIV]))
            acc[s, COL_MEAN] = _add_f4(acc[s, COL_MEAN], _f4(losses[r, IN_MEAN]))
            for j in range(n_samples):
                acc[s, COL_SAMPLE0 + j] = _add_f4(acc[s, COL_SAMPLE0 + j], _f4(losses[r, IN_SAMPLE0 + j]))
        sorted_present = np.sort(present[:n_present])
        for q in range(n_present):
            s = sorted_present[q]
            if count_only:
                n_out += 1
                continue
            if not keep_zeros and acc_tiv[s] == 0 and acc[s, COL_MEAN] == 0:
                continue
            out_event[n_out] = event_ids[e]
            out_summary[n_out] = s + 1
            out_expval[n_out] = acc_tiv[s]
            out_loss[n_out, :] = acc[s, :]
            n_out += 1
    return n_out


def summarise(
    event_ids: np.ndarray,
    event_ptr: np.ndarray,
    ids: np.ndarray,
    losses: np.ndarray,
    id_to_summary: np.ndarray,
    n_summaries: int,
    id_to_risk: np.ndarray | None = None,
    keep_zeros: bool = False,
) -> SummaryRecords:
    """Summary records of one summary set for a block of events.

    Parameters
    ----------
    event_ids : numpy.ndarray
        int32[n_events]: unique event ids (any order; records come out by ascending event id).
    event_ptr : numpy.ndarray
        int64[n_events + 1]: CSR offsets into ``ids`` / ``losses``.
    ids : numpy.ndarray
        int64[n_rec]: item id (GUL) or output id (IL / RI) of each record.
    losses : numpy.ndarray
        float64 or float32[n_rec, 5 + N]: ``[-5, -4, -3, -2, -1, samples...]`` per record.
    id_to_summary : numpy.ndarray
        int32[max_id + 1]: summary id of each id (0 = not in the summary xref).
    n_summaries : int
        Largest summary id of the set.
    id_to_risk : numpy.ndarray or None
        int32[max_id + 1]: risk index of each id (GUL / IL); None for RI (no -4 count).
    keep_zeros : bool
        Keep all-zero summaries (the reference's ``-z``).

    Returns
    -------
    SummaryRecords
    """
    event_ids = np.asarray(event_ids)
    event_ptr = np.asarray(event_ptr)
    ids = np.asarray(ids)
    losses = np.asarray(losses)
    if event_ids.ndim != 1 or event_ptr.shape != (event_ids.shape[0] + 1,):
        raise ValueError("event_ptr must have one more entry than event_ids (CSR offsets)")
    if losses.ndim != 2 or losses.shape[1] < IN_SAMPLE0 or losses.shape[0] != ids.shape[0]:
        raise ValueError("losses must be float64 or float32[n_rec, 5 + n_samples] with one row per entry of ids")
    if event_ptr[0] != 0 or event_ptr[-1] != ids.shape[0] or np.any(np.diff(event_ptr) < 0):
        raise ValueError("event_ptr must start at 0, be non-decreasing and end at len(ids)")
    if np.unique(event_ids).shape[0] != event_ids.shape[0]:
        raise ValueError("event_ids must be unique within a block")
    id_to_summary = np.ascontiguousarray(id_to_summary, dtype=np.int32)
    if ids.shape[0]:
        if ids.min() < 0 or ids.max() >= id_to_summary.shape[0]:
            raise ValueError("ids outside the summary xref: every item / output id must be in the summary map")
        if np.any(id_to_summary[ids] <= 0):
            bad = int(ids[id_to_summary[ids] <= 0][0])
            raise ValueError(f"id {bad} has no summary id: it is missing from the summary xref")
    risk = np.zeros(0, np.int32) if id_to_risk is None else np.ascontiguousarray(id_to_risk, dtype=np.int32)
    n_risks = int(risk.max()) + 1 if risk.shape[0] else 0
    n_samples = losses.shape[1] - IN_SAMPLE0
    order = np.argsort(event_ids, kind="stable").astype(np.int64)
    ev = np.ascontiguousarray(event_ids, dtype=np.int32)
    ptr = np.ascontiguousarray(event_ptr, dtype=np.int64)
    ids64 = np.ascontiguousarray(ids, dtype=np.int64)
    # float32 records are read as they are (every value is rounded to float32 here anyway), not copied
    loss_in = np.ascontiguousarray(losses, dtype=np.float32 if losses.dtype == np.float32 else np.float64)
    dummy_i = np.zeros(0, np.int32)
    n = _summarise_kernel(order, ev, ptr, ids64, loss_in, id_to_summary, risk, n_risks, n_summaries, keep_zeros,
                          dummy_i, dummy_i, np.zeros(0, np.float32), np.zeros((0, 0), np.float32), True)
    out_event = np.empty(n, np.int32)
    out_summary = np.empty(n, np.int32)
    out_expval = np.empty(n, np.float32)
    out_loss = np.empty((n, COL_SAMPLE0 + n_samples), np.float32)
    m = _summarise_kernel(order, ev, ptr, ids64, loss_in, id_to_summary, risk, n_risks, n_summaries, keep_zeros,
                          out_event, out_summary, out_expval, out_loss, False)
    return SummaryRecords(out_event[:m], out_summary[:m], out_expval[:m], out_loss[:m])
