"""Group summary records by (summary id, period) for the ALT and EP calculations.

A summary record of event ``e`` counts once for every occurrence of ``e`` (occurrence rows
in file order). The reference's aalpy and lecpy walk the summary stream in order and add
each record into its (summary, period) cell, so a cell's additions happen in stream order:
records by ascending event id (then summary id), and an event's occurrences in file order.
:func:`period_groups` lists the cells sorted by (summary, period) and, per cell, its
contributions in exactly that order, so the sums that follow are reproducible bit for bit
whatever chunks the records came from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perilflow.kernel.outputs.plt import Occurrence
from perilflow.kernel.outputs.summary import SummaryRecords


@dataclass(frozen=True)
class PeriodGroups:
    """Contributions of summary records to (summary, period) cells.

    Attributes
    ----------
    summary_id, period_no : numpy.ndarray
        int32[n_cells]: the cells, sorted by summary id then period.
    ptr : numpy.ndarray
        int64[n_cells + 1]: contributions of cell ``g`` are ``record[ptr[g]:ptr[g+1]]``.
    record : numpy.ndarray
        int64[n_contrib]: index into the records, in stream order within a cell.
    """

    summary_id: np.ndarray
    period_no: np.ndarray
    ptr: np.ndarray
    record: np.ndarray

    def __len__(self) -> int:
        return self.summary_id.shape[0]


def sort_records(records: SummaryRecords) -> SummaryRecords:
    """The records in stream order: by event id, then summary id (stable)."""
    order = np.lexsort((records.summary_id, records.event_id))
    return records.take(order)


def period_groups(records: SummaryRecords, occ: Occurrence) -> PeriodGroups:
    """Cells and their contributions; ``records`` must be in stream order (see :func:`sort_records`)."""
    start, end = occ.event_rows(records.event_id)
    counts = end - start
    n = int(counts.sum())
    rec = np.repeat(np.arange(len(records), dtype=np.int64), counts)
    # occurrence row of each contribution: start[r] + 0, 1, ... for record r
    first = np.repeat(start - np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64), counts)
    occ_row = first + np.arange(n, dtype=np.int64)
    period = occ.period_no[occ_row] if n else np.zeros(0, np.int32)
    summary = records.summary_id[rec]
    order = np.lexsort((period, summary))  # stable: keeps stream order inside a cell
    rec, period, summary = rec[order], period[order], summary[order]
    if n:
        new = np.ones(n, bool)
        new[1:] = (summary[1:] != summary[:-1]) | (period[1:] != period[:-1])
        heads = np.flatnonzero(new)
    else:
        heads = np.zeros(0, np.int64)
    ptr = np.append(heads, n).astype(np.int64)
    return PeriodGroups(summary[heads].astype(np.int32), period[heads].astype(np.int32), ptr, rec)
