"""The njit calcrules against their naive twins (tests/kernel/naive.py), and the term preparation.

Random terms and losses come from numpy Generators with fixed seeds; boundary losses
are the rule's break points (deductible, deductible + limit, ...) and their float
neighbours, zero, tiny and huge values. Every rule is called through ``apply_rule``
(the dispatch the FM uses) and, where it exists, directly as ``rule_N``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

from perilflow.kernel.fm import calcrules
from perilflow.kernel.fm.calcrules import apply_rule
from perilflow.kernel.fm.terms import (
    A1,
    APPLIED_RULES,
    D1,
    D2,
    D3,
    L1,
    L2,
    N_TERMS,
    PAYOUT_START,
    S1,
    S2,
    S3,
    SCALE1,
    SCALE2,
    STEP_ID,
    TRIGGER_END,
    TRIGGER_START,
    prepare_row,
)
from tests.conftest import REPO_ROOT
from tests.kernel.naive import ALL_RULES, base_rule, naive_loss

RTOL, ATOL = 1e-12, 1e-9
M = 1000.0  # scale of the monetary terms
N_TERM_SETS = 8
N_LOSSES = 50  # per term set: 400 random losses per rule


def rule_id(rule: int) -> str:
    return f"rule_{rule}"


def make_terms(**values: float) -> np.ndarray:
    """A terms row with the given columns (keys: D1, D2, D3, A1, L1, S1, S2, S3), step_id 1."""
    t = np.zeros(N_TERMS)
    t[STEP_ID] = 1
    cols = {"D1": D1, "D2": D2, "D3": D3, "A1": A1, "L1": L1, "S1": S1, "S2": S2, "S3": S3}
    for name, v in values.items():
        t[cols[name]] = v
    return t


def random_terms(rule: int, rng: np.random.Generator) -> np.ndarray:
    """Valid random terms for ``rule`` (within what the naive twin models, see naive.py)."""
    base = base_rule(rule)
    t = make_terms(
        D1=rng.uniform(0, M), A1=rng.uniform(0, M), L1=rng.uniform(0, 2 * M),
        S1=rng.uniform(0, 1), S2=rng.uniform(0, 1), S3=rng.uniform(0, 1),
    )
    if base in (5, 16, 17, 33, 19, 26, 35):
        # deductible as a fraction of the loss (kept away from 1, where x - x*D and x*(1 - D)
        # differ by more than the tolerance relative to the tiny result)
        t[D1] = rng.uniform(0, 0.95)
    if base in (5, 35):
        t[L1] = rng.uniform(0, 1)  # limit as a fraction of the loss
    if base == 15:
        t[L1] = rng.uniform(0, 0.99)  # >= 1 is prepared into rule 12
    if base in (7, 8, 10, 11, 13, 19, 26, 35, 36):
        t[D2] = rng.uniform(0, M)
        t[D3] = rng.uniform(t[D2], 2 * M)
        if base in (7, 8, 10, 11, 13):
            t[D1] = rng.uniform(0, 2.5 * M)  # below the minimum, between, above the maximum
        elif base == 36:
            t[D1] = rng.uniform(0, t[D3])  # see naive.py: the maximum does not bind with nothing below
        elif rng.uniform() < 0.25:
            t[D3] = 0.0  # %-loss rules: no maximum
    return t


def breakpoints(t: np.ndarray) -> list[float]:
    """Every loss at which some rule may change branch for these terms (non-negative, finite)."""
    d, dmin, dmax, a, lim, s1 = t[D1], t[D2], t[D3], t[A1], t[L1], t[S1]
    pts = [d, dmin, dmax, a, lim, d + lim, d + a, d + a + lim, dmin + lim, dmax + lim]
    if d < 1:
        pts += [a / (1 - d), (a + lim) / (1 - d), lim / (1 - d)]
    if lim < 1:
        pts.append(d / (1 - lim))
    if s1 > 0:
        pts += [lim / s1, a / s1, (lim + a) / s1]
    if d > 0:
        pts += [dmin / d, dmax / d]
    return sorted({float(p) for p in pts if np.isfinite(p) and p >= 0})


def boundary_losses(t: np.ndarray) -> np.ndarray:
    pts = breakpoints(t)
    near = [np.nextafter(p, -np.inf) for p in pts if p > 0] + [np.nextafter(p, np.inf) for p in pts]
    special = [0.0, 5e-324, 1e-300, 1e-9, 0.5, 1.0, 1e15, 1e300]
    return np.asarray(sorted(set(pts + near + special)), dtype=np.float64)


def run_kernel(rule, t, losses, ded=None, over=None, under=None):
    """apply_rule on a copy of ``losses``; ``out`` starts as NaN so unwritten values show."""
    inp = np.array(losses, dtype=np.float64)
    out = np.full_like(inp, np.nan)
    ded = np.zeros_like(inp) if ded is None else np.array(ded, dtype=np.float64)
    over = np.zeros_like(inp) if over is None else np.array(over, dtype=np.float64)
    under = np.zeros_like(inp) if under is None else np.array(under, dtype=np.float64)
    assert apply_rule(rule, t, out, inp, ded, over, under) is True
    assert_allclose(inp, losses, rtol=0, atol=0, err_msg="apply_rule modified its input")
    return out, ded, over, under


def naive(rule, t, losses) -> np.ndarray:
    return np.asarray([naive_loss(rule, float(x), t) for x in losses])


def check_against_naive(rule: int, t: np.ndarray, losses: np.ndarray) -> None:
    out, ded, over, under = run_kernel(rule, t, losses)
    for name, arr in (("out", out), ("ded", ded), ("over", over), ("under", under)):
        assert not np.isnan(arr).any(), f"{name} has NaN for rule {rule}, terms {t[:8]}"
    assert_allclose(out, naive(rule, t, losses), rtol=RTOL, atol=ATOL,
                    err_msg=f"rule {rule}, terms {t[:8].tolist()}")
    direct = getattr(calcrules, f"rule_{rule}", None)
    if direct is not None:
        out2 = np.full_like(losses, np.nan)
        direct(t, out2, losses.copy(), np.zeros_like(losses), np.zeros_like(losses), np.zeros_like(losses))
        assert_allclose(out2, out, rtol=0, atol=0, err_msg=f"rule_{rule} differs from apply_rule({rule})")


def test_naive_covers_the_rules_it_claims() -> None:
    assert set(ALL_RULES) <= APPLIED_RULES
    for rule in (1, 2, 3, 5, 12, 14, 15, 16, 17, 20, 22, 23, 24, 25, 33, 34, 39, 40, 41, 100, 200,
                 101, 103, 105, 112, 114, 115, 116, 120, 133, 7, 8, 10, 11, 13, 19, 26, 35, 36):
        assert rule in ALL_RULES


@pytest.mark.parametrize("rule", ALL_RULES, ids=rule_id)
def test_random_vs_naive(rule: int) -> None:
    rng = np.random.default_rng(1000 + rule)
    for _ in range(N_TERM_SETS):
        t = random_terms(rule, rng)
        # each loss spans 0..2x one of the rule's break points, so every scale of the terms is hit
        scale = np.maximum(rng.choice(breakpoints(t), N_LOSSES), 1.0)
        losses = rng.uniform(0, 2 * scale)
        losses[rng.uniform(size=N_LOSSES) < 0.1] = 0.0
        check_against_naive(rule, t, losses)


@pytest.mark.parametrize("rule", ALL_RULES, ids=rule_id)
def test_boundaries_vs_naive(rule: int) -> None:
    rng = np.random.default_rng(2000 + rule)
    for _ in range(4):
        t = random_terms(rule, rng)
        check_against_naive(rule, t, boundary_losses(t))


# rule, terms, hand-checked losses at 0, 50, 100, 1000 (also compared with the naive twin)
DEGENERATE = [
    (1, {"D1": 0, "L1": 0}, [0, 0, 0, 0]),
    (1, {"D1": 100, "L1": 0}, [0, 0, 0, 0]),
    (1, {"D1": 0, "L1": 100}, [0, 50, 100, 100]),
    (2, {"D1": 0, "A1": 0, "L1": 0, "S1": 1}, [0, 0, 0, 0]),
    (3, {"D1": 100, "L1": 50}, [0, 0, 0, 50]),  # franchise above the limit
    (5, {"D1": 0, "L1": 0}, [0, 0, 0, 0]),
    (5, {"D1": 1, "L1": 0}, [0, 0, 0, 0]),
    (5, {"D1": 0, "L1": 1}, [0, 50, 100, 1000]),
    (12, {"D1": 0}, [0, 50, 100, 1000]),
    (14, {"L1": 0}, [0, 0, 0, 0]),
    (15, {"D1": 0, "L1": 0}, [0, 0, 0, 0]),
    (15, {"D1": 0, "L1": 0.5}, [0, 25, 50, 500]),
    (16, {"D1": 0}, [0, 50, 100, 1000]),
    (16, {"D1": 1}, [0, 0, 0, 0]),
    (17, {"D1": 1, "A1": 10, "L1": 100, "S1": 1}, [0, 0, 0, 0]),
    (17, {"D1": 1.5, "A1": 10, "L1": 100, "S1": 1}, [0, 0, 0, 0]),
    (17, {"D1": 0, "A1": 0, "L1": 0, "S1": 1}, [0, 0, 0, 0]),
    (20, {"D1": 0}, [0, 0, 0, 0]),
    (22, {"S1": 0, "L1": 100, "S2": 1, "S3": 1}, [0, 0, 0, 0]),
    (22, {"S1": 1, "L1": 100, "S2": 1, "S3": 1}, [0, 50, 100, 100]),
    (23, {"L1": 0, "S2": 1, "S3": 1}, [0, 0, 0, 0]),
    (24, {"S1": 0, "A1": 10, "L1": 100, "S2": 1, "S3": 1}, [0, 0, 0, 0]),
    (24, {"S1": 1, "A1": 0, "L1": 0, "S2": 1, "S3": 1}, [0, 0, 0, 0]),
    (25, {"S1": 0, "S2": 1, "S3": 1}, [0, 0, 0, 0]),
    (33, {"D1": 1, "L1": 100}, [0, 0, 0, 0]),
    (33, {"D1": 2, "L1": 100}, [0, 0, 0, 0]),
    (33, {"D1": 0, "L1": 0}, [0, 0, 0, 0]),
    (34, {"S1": 0}, [0, 0, 0, 0]),
    (39, {"D1": 0}, [0, 50, 100, 1000]),
    (200, {"S1": 0}, [0, 0, 0, 0]),
    (115, {"D1": 10, "L1": 0.5, "S1": 0.5}, [0, 12.5, 25, 250]),
    (7, {"D1": 50, "D2": 50, "D3": 50, "L1": 0}, [0, 0, 0, 0]),
    (13, {"D1": 0, "D2": 0, "D3": 1e-300}, [0, 50, 100, 1000]),
    (19, {"D1": 0, "D2": 0, "D3": 0}, [0, 50, 100, 1000]),
    (19, {"D1": 1, "D2": 0, "D3": 0}, [0, 0, 0, 0]),
    (35, {"D1": 0, "D2": 0, "D3": 0, "L1": 0}, [0, 0, 0, 0]),
    (36, {"D1": 0, "D2": 0, "D3": 0, "L1": 1}, [0, 50, 100, 1000]),
]


@pytest.mark.parametrize(("rule", "values", "expected"), DEGENERATE,
                         ids=[f"rule_{r}-{i}" for i, (r, _, _) in enumerate(DEGENERATE)])
def test_degenerate_terms(rule: int, values: dict, expected: list[float]) -> None:
    t = make_terms(**values)
    losses = np.array([0.0, 50.0, 100.0, 1000.0])
    out, ded, over, under = run_kernel(rule, t, losses)
    for arr in (out, ded, over, under):
        assert not np.isnan(arr).any()
    assert_allclose(out, expected, rtol=RTOL, atol=ATOL)
    assert_allclose(out, naive(rule, t, losses), rtol=RTOL, atol=ATOL)


def test_hand_computed_values() -> None:
    """A few rules on hand-computed numbers (a check on the naive twins too)."""
    losses = np.array([0.0, 100.0, 150.0, 300.0, 400.0])
    cases = [
        (1, {"D1": 100, "L1": 200}, [0, 0, 50, 200, 200]),
        (2, {"D1": 50, "A1": 50, "L1": 200, "S1": 0.5}, [0, 0, 25, 100, 100]),
        (3, {"D1": 100, "L1": 200}, [0, 0, 150, 200, 200]),
        (5, {"D1": 0.1, "L1": 0.5}, [0, 50, 75, 150, 200]),
        (5, {"D1": 0.6, "L1": 0.5}, [0, 40, 60, 120, 160]),
        (15, {"D1": 100, "L1": 0.5}, [0, 0, 50, 150, 200]),  # switch at 200
        (17, {"D1": 0.5, "A1": 25, "L1": 100, "S1": 0.5}, [0, 12.5, 25, 50, 50]),
        (20, {"D1": 150}, [0, 100, 150, 0, 0]),
        (24, {"A1": 50, "L1": 100, "S1": 0.5, "S2": 0.5, "S3": 1}, [0, 0, 12.5, 50, 50]),
        (33, {"D1": 0.5, "L1": 100}, [0, 50, 75, 100, 100]),
        (34, {"D1": 50, "A1": 50, "S1": 0.5}, [0, 0, 25, 100, 150]),
        (39, {"D1": 150}, [0, 0, 0, 300, 400]),
        (101, {"D1": 100, "L1": 200, "S1": 0.5}, [0, 0, 25, 100, 100]),
        (7, {"D1": 10, "D2": 100, "D3": 200, "L1": 150}, [0, 0, 50, 150, 150]),  # minimum binds
        (13, {"D1": 300, "D2": 100, "D3": 200}, [0, 0, 0, 100, 200]),  # maximum binds
        (19, {"D1": 0.5, "D2": 60, "D3": 100}, [0, 40, 75, 200, 300]),  # min, between, max, max
        (36, {"D1": 10, "D2": 100, "D3": 200, "L1": 0.5}, [0, 0, 50, 150, 200]),
    ]
    for rule, values, expected in cases:
        t = make_terms(**values)
        out, _, _, _ = run_kernel(rule, t, losses)
        assert_allclose(out, expected, rtol=RTOL, atol=ATOL, err_msg=f"kernel rule {rule}")
        assert_allclose(naive(rule, t, losses), expected, rtol=RTOL, atol=ATOL, err_msg=f"naive rule {rule}")


@pytest.mark.parametrize("rule", [1, 12, 14], ids=rule_id)
@pytest.mark.parametrize("start", ["empty", "carried"])
def test_extras_conserve_loss(rule: int, start: str) -> None:
    """Deductible + loss + over-limit added at the node = loss in; under-limit stays >= 0."""
    rng = np.random.default_rng(3000 + rule)
    for _ in range(N_TERM_SETS):
        t = random_terms(rule, rng)
        losses = np.concatenate([rng.uniform(0, 2 * (t[D1] + t[L1]) + 1, N_LOSSES), boundary_losses(t)])
        losses = losses[losses < 1e12]  # keep the sums exact enough for an absolute tolerance
        n = losses.shape[0]
        if start == "empty":
            ded0 = over0 = under0 = np.zeros(n)
        else:
            ded0, over0, under0 = rng.uniform(0, M, n), rng.uniform(0, M, n), rng.uniform(0, M, n)
        out, ded, over, under = run_kernel(rule, t, losses, ded0, over0, under0)
        assert_allclose((ded - ded0) + out + (over - over0), losses, rtol=RTOL, atol=ATOL)
        assert (ded >= ded0).all() and (over >= over0).all()
        assert (under >= 0).all()


@pytest.mark.parametrize("rule", [999, 0, -1, 42, 99, 150, 199, 202, 1000])
def test_unknown_rule_is_refused(rule: int) -> None:
    t = make_terms(D1=1, L1=1, S1=1)
    x = np.array([5.0])
    out = np.array([7.0])
    assert apply_rule(rule, t, out, x, np.zeros(1), np.zeros(1), np.zeros(1)) is False


# ---------------------------------------------------------------------------------------------
# term preparation (TIV-based rules and step payouts)


@pytest.mark.parametrize(
    ("rule", "values", "tiv", "want_rule", "want"),
    [
        (4, {"D1": 0.05, "L1": 5000}, 200_000.0, 1, {"D1": 10_000, "L1": 5000}),
        (6, {"D1": 0.02}, 50_000.0, 12, {"D1": 1000}),
        (18, {"D1": 0.1, "A1": 300, "L1": 2000, "S1": 0.4}, 4000.0, 2, {"D1": 400, "A1": 300, "L1": 2000, "S1": 0.4}),
        (21, {"D1": 0.01, "D2": 500, "D3": 3000}, 100_000.0, 13, {"D1": 1000, "D2": 500, "D3": 3000}),
        (9, {"D1": 0.1, "L1": 2500}, 1e9, 1, {"D1": 250, "L1": 2500}),  # deductible as a share of the limit
        (15, {"D1": 100, "L1": 1.0}, 1e6, 12, {"D1": 100, "L1": 1.0}),
        (15, {"D1": 100, "L1": 1.5}, 1e6, 12, {"D1": 100, "L1": 1.5}),
        (15, {"D1": 100, "L1": 0.25}, 1e6, 15, {"D1": 100, "L1": 0.25}),
        (1, {"D1": 100, "L1": 200}, 1e6, 1, {"D1": 100, "L1": 200}),
    ],
)
def test_prepare_row_tiv_rules(rule, values, tiv, want_rule, want) -> None:
    for stepped in (False, True):
        row = make_terms(**values)
        assert prepare_row(rule, row, tiv, stepped) == want_rule
        assert_allclose(row, make_terms(**want), rtol=1e-15, atol=0)


def step_row(**values: float) -> np.ndarray:
    t = make_terms()
    cols = {"D1": D1, "L1": L1, "trigger_start": TRIGGER_START, "trigger_end": TRIGGER_END,
            "payout_start": PAYOUT_START, "L2": L2, "scale1": SCALE1, "scale2": SCALE2, "step_id": STEP_ID}
    for name, v in values.items():
        t[cols[name]] = v
    return t


STEP = {"trigger_start": 0.1, "trigger_end": 0.3, "D1": 50, "L2": 20, "scale1": 0.2, "scale2": 0.1}


@pytest.mark.parametrize(
    ("rule", "values", "payout"),
    [
        # 29: payout % TIV less deductible: base = 0.5 * 1000 - 50 = 450, extra = min(45, 20) = 20,
        # payout = (450 + 20) * 1.2 = 564
        (29, dict(STEP, payout_start=0.5), 564.0),
        # 30: payout % limit less deductible: base = 0.5 * 800 - 50 = 350, (350 + 20) * 1.2 = 444
        (30, dict(STEP, payout_start=0.5, L1=800), 444.0),
        # 31: monetary payout less deductible: base = 300 - 50 = 250, (250 + 20) * 1.2 = 324
        (31, dict(STEP, payout_start=300), 324.0),
        # deductible above the payout: base 0, extra 0
        (31, dict(STEP, payout_start=30), 0.0),
        # no extra cover: (450 + min(0, 20)) * 1 = 450
        (29, dict(STEP, payout_start=0.5, scale1=0, scale2=0), 450.0),
        # 27: % TIV less deductible capped at the limit: base = min(450, 400) = 400, (400 + 20) * 1.2 = 504
        (27, dict(STEP, payout_start=0.5, L1=400), 504.0),
    ],
)
def test_prepare_row_step_payouts(rule, values, payout) -> None:
    tiv = 1000.0
    row = step_row(**values)
    before = row.copy()
    assert prepare_row(rule, row, tiv, True) == 27
    assert row[TRIGGER_START] == pytest.approx(100.0)
    assert row[TRIGGER_END] == pytest.approx(300.0)
    assert row[PAYOUT_START] == pytest.approx(payout, rel=1e-12)
    # the other terms are left alone
    untouched = [c for c in range(N_TERMS) if c not in (TRIGGER_START, TRIGGER_END, PAYOUT_START)]
    assert_allclose(row[untouched], before[untouched], rtol=0, atol=0)


def test_prepare_row_step_open_ended_trigger() -> None:
    """trigger_end == 1 (100% of TIV) means no upper bound."""
    row = step_row(**dict(STEP, trigger_end=1.0, payout_start=300))
    assert prepare_row(31, row, 1000.0, True) == 27
    assert row[TRIGGER_START] == pytest.approx(100.0)
    assert row[TRIGGER_END] == np.inf


def test_prepare_row_step_rules_need_step_table() -> None:
    """Without the step columns the step rules are not converted (build_plan then rejects them)."""
    for rule in (29, 30, 31):
        row = step_row(**dict(STEP, payout_start=0.5))
        before = row.copy()
        assert prepare_row(rule, row, 1000.0, False) == rule
        assert_allclose(row, before, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# the same checks in pure Python (the STUMPY habit: coverage sees the rule bodies)


def test_subset_without_jit() -> None:
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        pytest.skip("already running without the JIT")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    cmd = [sys.executable, "-m", "pytest", "tests/kernel/test_calcrules.py", "-k", "rule_1 or rule_12",
           "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
