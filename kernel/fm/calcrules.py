"""Calculation rules of the financial module, one njit function per rule.

Every rule has the same signature::

    rule_N(t, out, inp, ded, over, under)

``t``      float64[N_TERMS]  one prepared terms row (see ``terms.py`` for the columns)
``inp``    float64[n]        loss entering the node, one value per sample column
``out``    float64[n]        loss after the terms (written; step rules accumulate into it)
``ded``    float64[n]        deductible retained so far below and at this node (updated)
``over``   float64[n]        loss removed by limits so far (updated)
``under``  float64[n]        room left under the limits so far (updated)

The three "extras" arrays carry what the minimum/maximum deductible rules need from
the levels below; rules that do not need them still keep them up to date so that a
rule higher up can use them. ``apply_rule`` is the single dispatch point.

The rules reproduce the Oasis reference financial module (oasislmf pytools ``fmpy``);
the step rules 29-31 are converted to 27 when the structure is built.
"""

from __future__ import annotations

from numba import njit

from perilflow.kernel.fm.terms import (
    A1,
    D1,
    D2,
    D3,
    L1,
    L2,
    PAYOUT_START,
    S1,
    S2,
    S3,
    SCALE1,
    SCALE2,
    STEP_ID,
    TRIGGER_END,
    TRIGGER_START,
)

# ---------------------------------------------------------------------------------------------
# helpers for minimum / maximum deductibles


@njit(cache=True)
def _over_max_deductible(i, out, inp, ded, over, under, max_ded):
    """The deductible retained below exceeds the maximum: give loss back, up to the room under limits."""
    delta = ded[i] - max_ded
    if delta > under[i]:
        out[i] = inp[i] + under[i]
        over[i] += delta - under[i]
        ded[i] = max_ded
        under[i] = 0.0
    elif inp[i] >= -delta:
        out[i] = inp[i] + delta
        under[i] -= delta
        ded[i] = max_ded
    else:
        out[i] = 0.0
        ded[i] += inp[i]
        under[i] += inp[i]


@njit(cache=True)
def _under_min_deductible(i, out, inp, ded, over, under, min_ded, this_ded):
    """The deductible is below the minimum: raise it, taking first from over-limit loss, then from loss."""
    delta = min_ded - this_ded - ded[i]
    if delta <= over[i]:
        if inp[i] > this_ded:
            out[i] = inp[i]
            over[i] -= delta
            ded[i] = min_ded
        elif (over[i] - delta) + inp[i] > this_ded:
            out[i] = 0.0
            over[i] -= delta + this_ded
            ded[i] = min_ded
            under[i] += inp[i]
        else:
            ded[i] += inp[i] + over[i]
            out[i] = 0.0
            over[i] = 0.0
            under[i] += inp[i]
    else:
        from_loss = delta - over[i]
        if inp[i] > from_loss + this_ded:
            out[i] = inp[i] - from_loss - this_ded
            over[i] = 0.0
            ded[i] = min_ded
            under[i] += from_loss
        else:
            out[i] = 0.0
            ded[i] += inp[i] + over[i]
            under[i] += inp[i]
            over[i] = 0.0


@njit(cache=True)
def _plain_deductible(i, out, inp, ded, under, d):
    """Apply a deductible ``d`` and record it."""
    if inp[i] > d:
        out[i] = inp[i] - d
        ded[i] += d
        under[i] += d
    else:
        out[i] = 0.0
        ded[i] += inp[i]
        under[i] += inp[i]


@njit(cache=True)
def _cap(i, out, over, under, limit):
    """Cap ``out[i]`` at ``limit`` and record what went over or the room left."""
    if out[i] > limit:
        over[i] += out[i] - limit
        under[i] = 0.0
        out[i] = limit
    else:
        under[i] = min(limit - out[i], under[i])


# ---------------------------------------------------------------------------------------------
# the rules


@njit(cache=True)
def rule_1(t, out, inp, ded, over, under):
    """Deductible and limit."""
    d, lim = t[D1], t[L1]
    for i in range(inp.shape[0]):
        x = inp[i]
        if x <= d:
            under[i] = min(under[i] + x, lim)
            ded[i] += x
            out[i] = 0.0
        elif x <= d + lim:
            under[i] = min(under[i] + d, d + lim - x)
            ded[i] += d
            out[i] = x - d
        else:
            over[i] += x - d - lim
            under[i] = 0.0
            ded[i] += d
            out[i] = lim


@njit(cache=True)
def rule_2(t, out, inp, ded, over, under):
    """Deductible, attachment, limit and share."""
    start = t[D1] + t[A1]
    for i in range(inp.shape[0]):
        x = inp[i]
        if x <= start:
            out[i] = 0.0
        elif x <= start + t[L1]:
            out[i] = (x - start) * t[S1]
        else:
            out[i] = t[L1] * t[S1]


@njit(cache=True)
def rule_3(t, out, inp, ded, over, under):
    """Franchise deductible and limit."""
    d, lim = t[D1], t[L1]
    for i in range(inp.shape[0]):
        x = inp[i]
        if x <= d:
            under[i] = min(under[i] + x, lim)
            ded[i] += x
            out[i] = 0.0
        elif x <= lim:
            under[i] = min(under[i], lim - x)
            out[i] = x
        else:
            under[i] = 0.0
            over[i] += x - lim
            out[i] = lim


@njit(cache=True)
def rule_5(t, out, inp, ded, over, under):
    """Deductible and limit as fractions of the loss."""
    always_under = t[D1] + t[L1] >= 1
    for i in range(inp.shape[0]):
        eff_ded = inp[i] * t[D1]
        eff_lim = inp[i] * t[L1]
        ded[i] += eff_ded
        if always_under:
            out[i] = inp[i] - eff_ded
            under[i] = min(eff_lim - out[i], under[i] + eff_ded)
        else:
            out[i] = eff_lim
            over[i] += inp[i] - eff_ded - eff_lim
            under[i] = 0.0


@njit(cache=True)
def _min_max_deductible(t, out, inp, ded, over, under, use_min, use_max):
    """Shared body of rules 7, 8, 10, 11, 13: deductible with a minimum and/or a maximum."""
    max_left = t[D3] - t[D1]
    min_left = t[D2] - t[D1]
    for i in range(inp.shape[0]):
        if use_max and ded[i] > max_left:
            _over_max_deductible(i, out, inp, ded, over, under, t[D3])
        elif use_min and ded[i] < min_left:
            _under_min_deductible(i, out, inp, ded, over, under, t[D2], t[D1])
        else:
            _plain_deductible(i, out, inp, ded, under, t[D1])


@njit(cache=True)
def rule_7(t, out, inp, ded, over, under):
    """Deductible with minimum and maximum deductible, and limit."""
    _min_max_deductible(t, out, inp, ded, over, under, True, True)
    for i in range(inp.shape[0]):
        _cap(i, out, over, under, t[L1])


@njit(cache=True)
def rule_8(t, out, inp, ded, over, under):
    """Deductible with minimum deductible, and limit."""
    _min_max_deductible(t, out, inp, ded, over, under, True, False)
    for i in range(inp.shape[0]):
        _cap(i, out, over, under, t[L1])


@njit(cache=True)
def rule_10(t, out, inp, ded, over, under):
    """Deductible with maximum deductible."""
    _min_max_deductible(t, out, inp, ded, over, under, False, True)


@njit(cache=True)
def rule_11(t, out, inp, ded, over, under):
    """Deductible with minimum deductible."""
    _min_max_deductible(t, out, inp, ded, over, under, True, False)


@njit(cache=True)
def rule_12(t, out, inp, ded, over, under):
    """Deductible only."""
    for i in range(inp.shape[0]):
        _plain_deductible(i, out, inp, ded, under, t[D1])


@njit(cache=True)
def rule_13(t, out, inp, ded, over, under):
    """Deductible with minimum and maximum deductible."""
    _min_max_deductible(t, out, inp, ded, over, under, True, True)


@njit(cache=True)
def rule_14(t, out, inp, ded, over, under):
    """Limit only."""
    lim = t[L1]
    for i in range(inp.shape[0]):
        if inp[i] <= lim:
            under[i] = min(lim - inp[i], under[i])
            out[i] = inp[i]
        else:
            over[i] += inp[i] - lim
            under[i] = 0.0
            out[i] = lim


@njit(cache=True)
def rule_15(t, out, inp, ded, over, under):
    """Deductible, and limit as a fraction of the loss."""
    d = t[D1]
    # loss above which the %-of-loss limit binds
    switch = d / (1 - t[L1])
    for i in range(inp.shape[0]):
        x = inp[i]
        if x <= d:
            under[i] = min(switch, under[i] + x)
            out[i] = 0.0
            ded[i] += x
        elif x <= switch:
            under[i] = min(switch - x, under[i] + d)
            out[i] = x - d
            ded[i] += d
        else:
            out[i] = x * t[L1]
            ded[i] += d
            over[i] += x - out[i] - d
            under[i] = 0.0


@njit(cache=True)
def rule_16(t, out, inp, ded, over, under):
    """Deductible as a fraction of the loss."""
    for i in range(inp.shape[0]):
        eff = inp[i] * t[D1]
        ded[i] += eff
        under[i] += eff
        out[i] = inp[i] - eff


@njit(cache=True)
def rule_17(t, out, inp, ded, over, under):
    """Deductible as a fraction of the loss, with attachment, limit and share."""
    if t[D1] >= 1:
        out[:] = 0.0
        return
    keep = 1 - t[D1]
    start = t[A1] / keep
    stop = (t[A1] + t[L1]) / keep
    for i in range(inp.shape[0]):
        x = inp[i]
        if x <= start:
            out[i] = 0.0
        elif x <= stop:
            out[i] = (x - x * t[D1] - t[A1]) * t[S1]
        else:
            out[i] = t[L1] * t[S1]


@njit(cache=True)
def _pct_loss_min_max(t, out, inp, ded, over, under):
    """Shared body of rules 19, 26, 35: deductible as a fraction of loss with min and/or max."""
    for i in range(inp.shape[0]):
        eff = inp[i] * t[D1]
        if eff + ded[i] > t[D3] > 0:
            _over_max_deductible(i, out, inp, ded, over, under, t[D3])
        elif eff + ded[i] < t[D2]:
            _under_min_deductible(i, out, inp, ded, over, under, t[D2], eff)
        else:
            _plain_deductible(i, out, inp, ded, under, eff)


@njit(cache=True)
def rule_19(t, out, inp, ded, over, under):
    """Deductible as a fraction of the loss, with minimum and/or maximum deductible."""
    _pct_loss_min_max(t, out, inp, ded, over, under)


@njit(cache=True)
def rule_20(t, out, inp, ded, over, under):
    """Reverse franchise: pays losses up to the deductible, nothing above it."""
    for i in range(inp.shape[0]):
        out[i] = 0.0 if inp[i] > t[D1] else inp[i]


@njit(cache=True)
def rule_22(t, out, inp, ded, over, under):
    """Reinsurance: share ceded, limit, share placed."""
    if t[S1] == 0:
        out[:] = 0.0
        return
    stop = t[L1] / t[S1]
    for i in range(inp.shape[0]):
        if inp[i] <= stop:
            out[i] = inp[i] * t[S1] * t[S2] * t[S3]
        else:
            out[i] = t[L1] * t[S2] * t[S3]


@njit(cache=True)
def rule_23(t, out, inp, ded, over, under):
    """Reinsurance: limit and share placed."""
    for i in range(inp.shape[0]):
        if inp[i] <= t[L1]:
            out[i] = inp[i] * t[S2] * t[S3]
        else:
            out[i] = t[L1] * t[S2] * t[S3]


@njit(cache=True)
def rule_24(t, out, inp, ded, over, under):
    """Reinsurance excess of loss: attachment, limit, share ceded and placed."""
    if t[S1] == 0:
        out[:] = 0.0
        return
    start = t[A1] / t[S1]
    stop = (t[L1] + t[A1]) / t[S1]
    for i in range(inp.shape[0]):
        x = inp[i]
        if x <= start:
            out[i] = 0.0
        elif x <= stop:
            out[i] = x * t[S1] * t[S2] * t[S3] - t[A1] * t[S2] * t[S3]
        else:
            out[i] = t[L1] * t[S2] * t[S3]


@njit(cache=True)
def rule_25(t, out, inp, ded, over, under):
    """Reinsurance proportional: the product of the three shares."""
    for i in range(inp.shape[0]):
        out[i] = inp[i] * (t[S1] * t[S2] * t[S3])


@njit(cache=True)
def rule_26(t, out, inp, ded, over, under):
    """Deductible as a fraction of the loss with minimum and/or maximum, and limit."""
    _pct_loss_min_max(t, out, inp, ded, over, under)
    for i in range(inp.shape[0]):
        _cap(i, out, over, under, t[L1])


@njit(cache=True)
def rule_27(t, out, inp, ded, over, under):
    """Step payout: a fixed amount (prepared at build time) when the loss falls in the step."""
    if t[STEP_ID] == 1:
        out[:] = 0.0
    for i in range(inp.shape[0]):
        if (inp[i] > 0 or ded[i] > 0) and t[TRIGGER_START] <= inp[i] < t[TRIGGER_END]:
            out[i] += t[PAYOUT_START]


@njit(cache=True)
def rule_28(t, out, inp, ded, over, under):
    """Step payout as a fraction of the loss, less deductible, with extra cover (scale1 is 1+scale)."""
    if t[STEP_ID] == 1:
        out[:] = 0.0
    for i in range(inp.shape[0]):
        if t[TRIGGER_START] <= inp[i] < t[TRIGGER_END]:
            base = max(t[PAYOUT_START] * inp[i] - t[D1], 0.0)
            out[i] = (base + min(base * t[SCALE2], t[L2])) * t[SCALE1]


@njit(cache=True)
def rule_281(t, out, inp, ded, over, under):
    """Conditional cover added to the payout of the previous steps (rule 28 with no payout)."""
    if t[STEP_ID] == 1:
        out[:] = 0.0
    for i in range(inp.shape[0]):
        if t[TRIGGER_START] <= inp[i] < t[TRIGGER_END]:
            out[i] += min(out[i] * t[SCALE2], t[L2]) * t[SCALE1]


@njit(cache=True)
def rule_32(t, out, inp, ded, over, under):
    """Monetary trigger, payout as a fraction of the loss with limit, plus extra cover."""
    if t[STEP_ID] == 1:
        out[:] = 0.0
    for i in range(inp.shape[0]):
        if t[TRIGGER_START] <= inp[i]:
            base = min(t[PAYOUT_START] * inp[i], t[L1])
            out[i] += (base + min(base * t[SCALE2], t[L2])) * t[SCALE1]


@njit(cache=True)
def rule_33(t, out, inp, ded, over, under):
    """Deductible as a fraction of the loss, and limit."""
    if t[D1] >= 1:
        for i in range(inp.shape[0]):
            out[i] = 0.0
            ded[i] += inp[i]
        return
    stop = t[L1] / (1 - t[D1])
    for i in range(inp.shape[0]):
        eff = inp[i] * t[D1]
        ded[i] += eff
        if inp[i] <= stop:
            out[i] = inp[i] - eff
            under[i] = min(under[i] + eff, t[L1] - out[i])
        else:
            over[i] += inp[i] - eff - t[L1]
            under[i] = 0.0
            out[i] = t[L1]


@njit(cache=True)
def rule_34(t, out, inp, ded, over, under):
    """Deductible and attachment with share, no limit."""
    start = t[D1] + t[A1]
    for i in range(inp.shape[0]):
        out[i] = 0.0 if inp[i] <= start else (inp[i] - start) * t[S1]


@njit(cache=True)
def rule_35(t, out, inp, ded, over, under):
    """Deductible as a fraction of the loss with minimum and/or maximum, and limit as a fraction of loss."""
    _pct_loss_min_max(t, out, inp, ded, over, under)
    for i in range(inp.shape[0]):
        _cap(i, out, over, under, inp[i] * t[L1])


@njit(cache=True)
def rule_36(t, out, inp, ded, over, under):
    """Deductible with minimum and/or maximum, and limit as a fraction of the loss."""
    max_left = t[D3] - t[D1]
    min_left = t[D2] - t[D1]
    for i in range(inp.shape[0]):
        if ded[i] > max_left > 0:
            _over_max_deductible(i, out, inp, ded, over, under, t[D3])
        elif ded[i] < min_left:
            _under_min_deductible(i, out, inp, ded, over, under, t[D2], t[D1])
        else:
            _plain_deductible(i, out, inp, ded, under, t[D1])
        _cap(i, out, over, under, inp[i] * t[L1])


@njit(cache=True)
def rule_37(t, out, inp, ded, over, under):
    """Step payout as a fraction of the loss less deductible, with limit and extra cover."""
    if t[STEP_ID] == 1:
        out[:] = 0.0
    for i in range(inp.shape[0]):
        if t[TRIGGER_START] <= inp[i] < t[TRIGGER_END]:
            base = min(max(t[PAYOUT_START] * inp[i] - t[D1], 0.0), t[L1])
            out[i] = (base + min(base * t[SCALE2], t[L2])) * t[SCALE1]


@njit(cache=True)
def rule_38(t, out, inp, ded, over, under):
    """Conditional cover: scales the payout of the previous steps when the loss falls in the step."""
    if t[STEP_ID] == 1:
        out[:] = 0.0
    for i in range(inp.shape[0]):
        if t[TRIGGER_START] <= inp[i] < t[TRIGGER_END]:
            out[i] = (out[i] + min(out[i] * t[SCALE2], t[L2])) * t[SCALE1]


@njit(cache=True)
def rule_39(t, out, inp, ded, over, under):
    """Franchise deductible."""
    for i in range(inp.shape[0]):
        if inp[i] <= t[D1]:
            under[i] += inp[i]
            ded[i] += inp[i]
            out[i] = 0.0
        else:
            out[i] = inp[i]


@njit(cache=True)
def rule_100(t, out, inp, ded, over, under):
    """Pass-through."""
    out[:] = inp


@njit(cache=True)
def rule_200(t, out, inp, ded, over, under):
    """Share only."""
    for i in range(inp.shape[0]):
        out[i] = inp[i] * t[S1]


# ---------------------------------------------------------------------------------------------
# dispatch


@njit(cache=True)
def _apply_base(rule, t, out, inp, ded, over, under):
    if rule == 1 or rule == 40:
        # 40: business interruption, waiting period (as money) and period of indemnity (as money)
        rule_1(t, out, inp, ded, over, under)
    elif rule == 2:
        rule_2(t, out, inp, ded, over, under)
    elif rule == 3:
        rule_3(t, out, inp, ded, over, under)
    elif rule == 5:
        rule_5(t, out, inp, ded, over, under)
    elif rule == 7:
        rule_7(t, out, inp, ded, over, under)
    elif rule == 8:
        rule_8(t, out, inp, ded, over, under)
    elif rule == 10:
        rule_10(t, out, inp, ded, over, under)
    elif rule == 11:
        rule_11(t, out, inp, ded, over, under)
    elif rule == 12:
        rule_12(t, out, inp, ded, over, under)
    elif rule == 13:
        rule_13(t, out, inp, ded, over, under)
    elif rule == 14 or rule == 41:
        # 41: business interruption, period of indemnity only
        rule_14(t, out, inp, ded, over, under)
    elif rule == 15:
        rule_15(t, out, inp, ded, over, under)
    elif rule == 16:
        rule_16(t, out, inp, ded, over, under)
    elif rule == 17:
        rule_17(t, out, inp, ded, over, under)
    elif rule == 19:
        rule_19(t, out, inp, ded, over, under)
    elif rule == 20:
        rule_20(t, out, inp, ded, over, under)
    elif rule == 22:
        rule_22(t, out, inp, ded, over, under)
    elif rule == 23:
        rule_23(t, out, inp, ded, over, under)
    elif rule == 24:
        rule_24(t, out, inp, ded, over, under)
    elif rule == 25:
        rule_25(t, out, inp, ded, over, under)
    elif rule == 26:
        rule_26(t, out, inp, ded, over, under)
    elif rule == 27:
        rule_27(t, out, inp, ded, over, under)
    elif rule == 28:
        rule_28(t, out, inp, ded, over, under)
    elif rule == 281:
        rule_281(t, out, inp, ded, over, under)
    elif rule == 32:
        rule_32(t, out, inp, ded, over, under)
    elif rule == 33:
        rule_33(t, out, inp, ded, over, under)
    elif rule == 34:
        rule_34(t, out, inp, ded, over, under)
    elif rule == 35:
        rule_35(t, out, inp, ded, over, under)
    elif rule == 36:
        rule_36(t, out, inp, ded, over, under)
    elif rule == 37:
        rule_37(t, out, inp, ded, over, under)
    elif rule == 38:
        rule_38(t, out, inp, ded, over, under)
    elif rule == 39:
        rule_39(t, out, inp, ded, over, under)
    elif rule == 100:
        rule_100(t, out, inp, ded, over, under)
    elif rule == 200:
        rule_200(t, out, inp, ded, over, under)
    else:
        return False
    return True


@njit(cache=True)
def apply_rule(rule, t, out, inp, ded, over, under):
    """Apply calcrule ``rule`` with terms ``t``; 1xx rules are rule xx followed by share1.

    Returns False for an unknown rule id (the structure builder rejects those first).
    """
    if 100 < rule < 200:
        if not _apply_base(rule - 100, t, out, inp, ded, over, under):
            return False
        for i in range(out.shape[0]):
            out[i] *= t[S1]
        return True
    return _apply_base(rule, t, out, inp, ded, over, under)
