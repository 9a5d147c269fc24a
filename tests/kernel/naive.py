"""Slow, obviously-correct twins of the FM calcrules, for the tests.

One loss value at a time, plain ``if``/``else`` written from the rule definitions
(x = loss, D = deductible1, D2 = deductible2 (minimum), D3 = deductible3 (maximum),
A = attachment1, L = limit1, S1..S3 = share1..share3). Only the loss result is
modelled, not the deductible / over-limit / under-limit bookkeeping.

Two families are covered:

* rules whose loss does not depend on what was retained below the node
  (``PLAIN_RULES``), for any terms;
* the minimum / maximum deductible rules (``MINMAX_RULES``) in the simple situation where
  nothing was retained, limited or left under the limits below the node (the kernel's
  ``ded``, ``over`` and ``under`` are all 0 on entry). In that situation the kernel
  (like the Oasis reference ``fmpy``) compares the deductible retained below (0) with
  ``D3 - D1`` and ``D2 - D1``, which amounts to clamping the node's deductible:

  - 7, 10, 13 (maximum): the deductible is D3 when D1 > D3. The kernel reads D3 literally,
    so D3 == 0 would mean "maximum deductible 0"; Oasis only emits these rules with a
    maximum, so ``naive_loss`` refuses D3 <= 0 for them rather than guess.
  - 7, 8, 11, 13, 36 (minimum): the deductible is D2 when D1 < D2.
  - 36: the maximum is only consulted when ``D3 - D1 > 0`` *and* something was retained
    below, so with nothing retained a D1 above D3 is applied as is. That is the
    reference's behaviour but it differs from 7/10/13; ``naive_loss`` refuses D1 > D3 > 0
    for rule 36 so the tests only assert what is unambiguous (D3 == 0: no maximum).
  - 19, 26, 35 (deductible as a fraction of the loss): the deductible x*D1 is raised to D2
    when below it and lowered to D3 when above it and D3 > 0 (D3 == 0 means no maximum).
  - every min/max rule: ``naive_loss`` refuses D2 > D3 > 0 (an inconsistent profile, where
    the result depends on which check the kernel happens to make first).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from perilflow.kernel.fm.terms import A1, D1, D2, D3, L1, S1, S2, S3


class Terms:
    """The terms of one profile row, by name (read from a kernel terms row)."""

    def __init__(self, row: Sequence[float]):
        self.D = float(row[D1])
        self.D2 = float(row[D2])
        self.D3 = float(row[D3])
        self.A = float(row[A1])
        self.L = float(row[L1])
        self.S1 = float(row[S1])
        self.S2 = float(row[S2])
        self.S3 = float(row[S3])


# ---------------------------------------------------------------------------------------------
# rules that do not depend on the state below the node


def rule_1(x: float, t: Terms) -> float:
    """Deductible and limit."""
    if x <= t.D:
        return 0.0
    if x <= t.D + t.L:
        return x - t.D
    return t.L


def rule_2(x: float, t: Terms) -> float:
    """Deductible, attachment, limit and share."""
    if x <= t.D + t.A:
        return 0.0
    if x <= t.D + t.A + t.L:
        return (x - t.D - t.A) * t.S1
    return t.L * t.S1


def rule_3(x: float, t: Terms) -> float:
    """Franchise deductible and limit."""
    if x <= t.D:
        return 0.0
    if x <= t.L:
        return x
    return t.L


def rule_5(x: float, t: Terms) -> float:
    """Deductible and limit as fractions of the loss."""
    if t.D + t.L >= 1:
        return x - x * t.D
    return x * t.L


def rule_12(x: float, t: Terms) -> float:
    """Deductible only."""
    return max(x - t.D, 0.0)


def rule_14(x: float, t: Terms) -> float:
    """Limit only."""
    return min(x, t.L)


def rule_15(x: float, t: Terms) -> float:
    """Deductible, and limit as a fraction of the loss (L < 1; L >= 1 is converted to rule 12)."""
    if t.L >= 1:
        raise ValueError("rule 15 with limit1 >= 1 is prepared into rule 12")
    if x <= t.D:
        return 0.0
    if x <= t.D / (1 - t.L):
        return x - t.D
    return x * t.L


def rule_16(x: float, t: Terms) -> float:
    """Deductible as a fraction of the loss."""
    return x * (1 - t.D)


def rule_17(x: float, t: Terms) -> float:
    """Deductible as a fraction of the loss, with attachment, limit and share."""
    if t.D >= 1:
        return 0.0
    if x <= t.A / (1 - t.D):
        return 0.0
    if x <= (t.A + t.L) / (1 - t.D):
        return (x * (1 - t.D) - t.A) * t.S1
    return t.L * t.S1


def rule_20(x: float, t: Terms) -> float:
    """Reverse franchise."""
    if x <= t.D:
        return x
    return 0.0


def rule_22(x: float, t: Terms) -> float:
    """Reinsurance: share ceded, limit, share placed."""
    if t.S1 == 0:
        return 0.0
    if x <= t.L / t.S1:
        return x * t.S1 * t.S2 * t.S3
    return t.L * t.S2 * t.S3


def rule_23(x: float, t: Terms) -> float:
    """Reinsurance: limit and share placed."""
    if x <= t.L:
        return x * t.S2 * t.S3
    return t.L * t.S2 * t.S3


def rule_24(x: float, t: Terms) -> float:
    """Reinsurance excess of loss."""
    if t.S1 == 0:
        return 0.0
    if x <= t.A / t.S1:
        return 0.0
    if x <= (t.L + t.A) / t.S1:
        return x * t.S1 * t.S2 * t.S3 - t.A * t.S2 * t.S3
    return t.L * t.S2 * t.S3


def rule_25(x: float, t: Terms) -> float:
    """Reinsurance proportional."""
    return x * t.S1 * t.S2 * t.S3


def rule_33(x: float, t: Terms) -> float:
    """Deductible as a fraction of the loss, and limit."""
    if t.D >= 1:
        return 0.0
    if x <= t.L / (1 - t.D):
        return x * (1 - t.D)
    return t.L


def rule_34(x: float, t: Terms) -> float:
    """Deductible and attachment with share, no limit."""
    if x <= t.D + t.A:
        return 0.0
    return (x - t.D - t.A) * t.S1


def rule_39(x: float, t: Terms) -> float:
    """Franchise deductible."""
    if x <= t.D:
        return 0.0
    return x


def rule_100(x: float, t: Terms) -> float:
    """Pass-through."""
    return x


def rule_200(x: float, t: Terms) -> float:
    """Share only."""
    return x * t.S1


# ---------------------------------------------------------------------------------------------
# minimum / maximum deductible rules, with nothing retained below the node


def _check_min_max(t: Terms) -> None:
    if t.D3 > 0 and t.D2 > t.D3:
        raise ValueError("minimum deductible above the maximum: not modelled")


def _clamped_deductible(t: Terms, use_min: bool, use_max: bool) -> float:
    """Monetary deductible D1 raised to the minimum D2 / lowered to the maximum D3."""
    _check_min_max(t)
    if use_max and t.D3 <= 0:
        raise ValueError("rules 7, 10, 13 read a zero maximum deductible literally: not modelled")
    d = t.D
    if use_max and d > t.D3:
        d = t.D3
    elif use_min and d < t.D2:
        d = t.D2
    return d


def _pct_loss_deductible(x: float, t: Terms) -> float:
    """Deductible x*D1 raised to the minimum D2 / lowered to the maximum D3 (if D3 > 0)."""
    _check_min_max(t)
    d = x * t.D
    if t.D3 > 0 and d > t.D3:
        d = t.D3
    elif d < t.D2:
        d = t.D2
    return d


def rule_7(x: float, t: Terms) -> float:
    """Deductible with minimum and maximum, and limit."""
    return min(max(x - _clamped_deductible(t, True, True), 0.0), t.L)


def rule_8(x: float, t: Terms) -> float:
    """Deductible with minimum, and limit."""
    return min(max(x - _clamped_deductible(t, True, False), 0.0), t.L)


def rule_10(x: float, t: Terms) -> float:
    """Deductible with maximum."""
    return max(x - _clamped_deductible(t, False, True), 0.0)


def rule_11(x: float, t: Terms) -> float:
    """Deductible with minimum."""
    return max(x - _clamped_deductible(t, True, False), 0.0)


def rule_13(x: float, t: Terms) -> float:
    """Deductible with minimum and maximum."""
    return max(x - _clamped_deductible(t, True, True), 0.0)


def rule_19(x: float, t: Terms) -> float:
    """Deductible as a fraction of the loss with minimum and/or maximum."""
    return max(x - _pct_loss_deductible(x, t), 0.0)


def rule_26(x: float, t: Terms) -> float:
    """Deductible as a fraction of the loss with minimum and/or maximum, and limit."""
    return min(max(x - _pct_loss_deductible(x, t), 0.0), t.L)


def rule_35(x: float, t: Terms) -> float:
    """Deductible as a fraction of the loss with minimum and/or maximum, and limit as a fraction of loss."""
    return min(max(x - _pct_loss_deductible(x, t), 0.0), x * t.L)


def rule_36(x: float, t: Terms) -> float:
    """Deductible with minimum (the maximum is not reached, see the module notes), limit as a fraction of loss."""
    _check_min_max(t)
    if t.D3 > 0 and t.D > t.D3:
        raise ValueError("rule 36 with deductible1 above the maximum and nothing retained below: not modelled")
    d = t.D2 if t.D < t.D2 else t.D
    return min(max(x - d, 0.0), x * t.L)


# ---------------------------------------------------------------------------------------------
# registry

_BASE: dict[int, Callable[[float, Terms], float]] = {
    1: rule_1, 2: rule_2, 3: rule_3, 5: rule_5, 12: rule_12, 14: rule_14, 15: rule_15,
    16: rule_16, 17: rule_17, 20: rule_20, 22: rule_22, 23: rule_23, 24: rule_24, 25: rule_25,
    33: rule_33, 34: rule_34, 39: rule_39, 100: rule_100, 200: rule_200,
    # business interruption: waiting period and indemnity period already in money
    40: rule_1, 41: rule_14,
}
_MINMAX: dict[int, Callable[[float, Terms], float]] = {
    7: rule_7, 8: rule_8, 10: rule_10, 11: rule_11, 13: rule_13,
    19: rule_19, 26: rule_26, 35: rule_35, 36: rule_36,
}

#: rules whose loss does not depend on the state below the node
PLAIN_RULES = tuple(sorted(_BASE) + [100 + r for r in (1, 3, 5, 12, 14, 15, 16, 20, 33)])
#: minimum / maximum deductible rules (valid only with nothing retained below), with their 1xx variants
MINMAX_RULES = tuple(sorted(_MINMAX) + [100 + r for r in sorted(_MINMAX)])
ALL_RULES = PLAIN_RULES + MINMAX_RULES


def base_rule(rule: int) -> int:
    """The rule a 1xx rule applies before its share (``rule`` itself otherwise)."""
    return rule - 100 if 100 < rule < 200 else rule


def naive_loss(rule: int, x: float, row: Sequence[float]) -> float:
    """Loss after ``rule`` with the terms ``row`` (a kernel terms row) for one loss ``x``.

    For the 1xx rules: rule xx, then times share1. Raises ValueError for a rule or a
    situation this module does not model.
    """
    t = Terms(row)
    base = base_rule(rule)
    fn = _BASE.get(base) or _MINMAX.get(base)
    if fn is None or rule not in ALL_RULES:
        raise ValueError(f"no naive twin for calcrule {rule}")
    result = fn(float(x), t)
    if base != rule:
        result = result * t.S1
    return result
