"""Financial terms of one profile row, as the FM kernels see them.

A profile (fm_profile / fm_profile_step row) is held in memory as one row of a
float64 matrix ``terms[row, N_TERMS]`` plus an int32 ``calcrule[row]``. The
column positions below are the only place that layout is declared; the njit
calcrules index rows with these constants.

``prepare_rows`` turns the rows a node uses into the form the calcrules apply:
the TIV-based rules are converted to monetary amounts with the TIV under the
node, step triggers are scaled, and rules that leave the loss unchanged are
detected so that the node can skip them.
"""

from __future__ import annotations

import numpy as np

# Column positions in a terms row.
D1, D2, D3, A1, L1, S1, S2, S3 = 0, 1, 2, 3, 4, 5, 6, 7
STEP_ID, TRIGGER_START, TRIGGER_END, PAYOUT_START, PAYOUT_END, L2, SCALE1, SCALE2 = (
    8, 9, 10, 11, 12, 13, 14, 15
)
N_TERMS = 16

#: profile file column -> terms column
TERM_COLUMNS = {
    "deductible1": D1,
    "deductible2": D2,
    "deductible3": D3,
    "attachment1": A1,
    "limit1": L1,
    "share1": S1,
    "share2": S2,
    "share3": S3,
    "step_id": STEP_ID,
    "trigger_start": TRIGGER_START,
    "trigger_end": TRIGGER_END,
    "payout_start": PAYOUT_START,
    "payout_end": PAYOUT_END,
    "limit2": L2,
    "scale1": SCALE1,
    "scale2": SCALE2,
}

#: rules whose terms are expressed against the TIV under the node (converted at build time)
NEEDS_TIV = frozenset({4, 6, 18, 21, 27, 28, 29, 30, 31, 37, 38})

#: rules that read or move the deductible / over-limit / under-limit carried up from the
#: children (minimum and maximum deductibles, and the step payout that needs a prior loss)
NEEDS_EXTRAS = frozenset({7, 8, 10, 11, 13, 19, 26, 27, 35, 36, 107, 108, 110, 111, 113, 119, 126, 135, 136})

#: every calcrule id the kernel applies after preparation
APPLIED_RULES = frozenset(
    {1, 2, 3, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20, 22, 23, 24, 25, 26, 27, 28, 32, 33, 34,
     35, 36, 37, 38, 39, 40, 41, 100, 200, 281}
    | {100 + r for r in (1, 3, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 19, 20, 26, 33, 35, 36)}
)

#: every calcrule id accepted in a profile file (before preparation)
KNOWN_RULES = APPLIED_RULES | {4, 6, 9, 18, 21, 29, 30, 31}

_EPS = float(np.finfo(np.float32).eps)


def profile_to_terms(profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert a structured fm_profile(_step) array into ``(calcrule int32[n], terms float64[n, N_TERMS])``.

    Fields absent from ``profile`` (the step fields of a plain fm_profile) are zero,
    except ``step_id`` which defaults to 1.
    """
    n = profile.shape[0]
    terms = np.zeros((n, N_TERMS), dtype=np.float64)
    names = profile.dtype.names or ()
    for name, col in TERM_COLUMNS.items():
        if name in names:
            terms[:, col] = profile[name]
    if "step_id" not in names:
        terms[:, STEP_ID] = 1
    return profile["calcrule_id"].astype(np.int32), terms


def _scale_triggers(row: np.ndarray, tiv: float) -> None:
    row[TRIGGER_START] *= tiv
    # trigger_end == 1 means "no upper bound" (100% of TIV and beyond)
    row[TRIGGER_END] = np.inf if row[TRIGGER_END] == 1 else row[TRIGGER_END] * tiv


def prepare_row(rule: int, row: np.ndarray, tiv: float, stepped: bool) -> int:
    """Convert one terms row in place for a node whose TIV is ``tiv``; return the rule to apply.

    TIV-based rules become their monetary twins (4->1, 6->12, 18->2, 21->13, 9->1 with
    the deductible as a share of the limit), a %-of-loss limit of 100% or more becomes a
    plain deductible (15->12), and step rules get their triggers and fixed payouts in
    money with ``scale1`` turned into a multiplier (``1 + scale1``).
    """
    if stepped:
        if rule in (27, 29, 30, 31):
            _scale_triggers(row, tiv)
            if rule == 27:
                base = min(max(row[PAYOUT_START] * tiv - row[D1], 0.0), row[L1])
            elif rule == 29:
                base = max(row[PAYOUT_START] * tiv - row[D1], 0.0)
            elif rule == 30:
                base = max(row[PAYOUT_START] * row[L1] - row[D1], 0.0)
            else:
                base = max(row[PAYOUT_START] - row[D1], 0.0)
            extra = min(base * row[SCALE2], row[L2])
            row[PAYOUT_START] = (base + extra) * (1 + row[SCALE1])
            return 27
        if rule == 28:
            _scale_triggers(row, tiv)
            row[SCALE1] += 1
            # a zero payout means "conditional coverage on the previous steps" (Oasis 1.22 files)
            return 281 if row[PAYOUT_START] == 0 else 28
        if rule in (37, 38):
            _scale_triggers(row, tiv)
            row[SCALE1] += 1
            return rule
        if rule == 32:
            row[SCALE1] += 1
            return rule
    if rule == 4:
        row[D1] *= tiv
        return 1
    if rule == 6:
        row[D1] *= tiv
        return 12
    if rule == 18:
        row[D1] *= tiv
        return 2
    if rule == 21:
        row[D1] *= tiv
        return 13
    if rule == 9:
        row[D1] *= row[L1]
        return 1
    if rule == 15 and row[L1] >= 1:
        return 12
    return rule


def does_nothing(rule: int, row: np.ndarray) -> bool:
    """True when applying ``rule`` with these terms returns the loss unchanged."""
    return (
        rule == 100
        or (rule == 12 and abs(row[D1]) < _EPS)
        or (rule == 15 and abs(row[L1] - 1) < _EPS)
        or (rule == 16 and abs(row[D1]) < _EPS)
        or (rule == 34 and abs(row[D1]) < _EPS and abs(row[A1]) < _EPS and abs(row[S1] - 1) < _EPS)
    )
