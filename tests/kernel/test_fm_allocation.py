"""Back-allocation of the FM: hypothesis properties on small random three-level programmes.

Each case is items 1..n (single peril: level 1 has from == to, profile rule 100), level 2
grouping the items into 1-4 locations (rule 1, 12 or 14 with random terms), level 3 one
account node with 1 or 2 layers (rule 1 or 14 each). The loss at the top is recomputed
naively (tests/kernel/naive.py): the location rule on each location's summed ground-up
loss, summed, then each layer's account rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from perilflow.kernel.fm.compute import run_fm
from perilflow.kernel.fm.structure import FMPlan, build_plan
from perilflow.kernel.fm.terms import D1, L1, N_TERMS, NEEDS_EXTRAS, S1, STEP_ID, profile_to_terms
from tests.kernel.naive import naive_loss

PROGRAMME_DTYPE = np.dtype([("from_agg_id", "<i4"), ("level_id", "<i4"), ("to_agg_id", "<i4")])
POLICYTC_DTYPE = np.dtype([("level_id", "<i4"), ("agg_id", "<i4"), ("layer_id", "<i4"), ("profile_id", "<i4")])
XREF_DTYPE = np.dtype([("output", "<i4"), ("agg_id", "<i4"), ("layer_id", "<i4")])
PROFILE_DTYPE = np.dtype(
    [("profile_id", "<i4"), ("calcrule_id", "<i4")]
    + [(name, "<f8") for name in ("deductible1", "deductible2", "deductible3", "attachment1", "limit1",
                                  "share1", "share2", "share3")]
)

RTOL = 1e-9
ATOL = 1e-7  # losses are at most a few thousand


@dataclass
class Case:
    """A small programme: item i+1 is in location loc[i] + 1; level 2 and level 3 terms; losses."""

    loc: np.ndarray          # int[n]: 0-based location of each item
    loc_terms: list[tuple]   # per location: (rule, deductible1, limit1[, deductible2, deductible3])
    top_terms: list[tuple]   # per layer: the same
    losses: np.ndarray       # float64[n, n_cols] ground-up loss

    @property
    def n_items(self) -> int:
        return self.loc.shape[0]

    @property
    def n_locs(self) -> int:
        return len(self.loc_terms)

    @property
    def n_layers(self) -> int:
        return len(self.top_terms)


def terms_row(rule: int, ded: float, lim: float) -> np.ndarray:
    t = np.zeros(N_TERMS)
    t[D1], t[L1], t[S1], t[STEP_ID] = ded, lim, 1.0, 1
    return t


def build(case: Case, allocation_rule: int) -> FMPlan:
    """The Oasis tables of ``case`` as structured arrays, through build_plan."""
    n, n_locs = case.n_items, case.n_locs
    items = np.arange(1, n + 1)
    locs = np.arange(1, n_locs + 1)

    programme = np.zeros(2 * n + n_locs, dtype=PROGRAMME_DTYPE)
    programme["from_agg_id"] = np.concatenate([items, items, locs])
    programme["level_id"] = np.repeat([1, 2, 3], [n, n, n_locs])
    programme["to_agg_id"] = np.concatenate([items, case.loc + 1, np.ones(n_locs)])

    # profile 1: pass-through at level 1; 2..n_locs+1: locations; then one per top layer
    profiles = [(1, (100, 0.0, 0.0))]
    profiles += [(1 + j, p) for j, p in enumerate(case.loc_terms, start=1)]
    first_top = n_locs + 2
    profiles += [(first_top + k, p) for k, p in enumerate(case.top_terms)]
    profile = np.zeros(len(profiles), dtype=PROFILE_DTYPE)
    for r, (pid, (rule, d, lim, *minmax)) in enumerate(profiles):
        profile[r]["profile_id"], profile[r]["calcrule_id"] = pid, rule
        profile[r]["deductible1"], profile[r]["limit1"], profile[r]["share1"] = d, lim, 1.0
        if minmax:
            profile[r]["deductible2"], profile[r]["deductible3"] = minmax
    rules, terms = profile_to_terms(profile)

    policytc = np.zeros(n + n_locs + case.n_layers, dtype=POLICYTC_DTYPE)
    policytc["level_id"] = np.repeat([1, 2, 3], [n, n_locs, case.n_layers])
    policytc["agg_id"] = np.concatenate([items, locs, np.ones(case.n_layers)])
    policytc["layer_id"] = np.concatenate([np.ones(n + n_locs), np.arange(1, case.n_layers + 1)])
    policytc["profile_id"] = np.concatenate([np.ones(n), locs + 1, first_top + np.arange(case.n_layers)])

    if allocation_rule == 0:
        xref = np.zeros(case.n_layers, dtype=XREF_DTYPE)
        xref["output"] = np.arange(1, case.n_layers + 1)
        xref["agg_id"] = 1
        xref["layer_id"] = np.arange(1, case.n_layers + 1)
    else:
        xref = np.zeros(n * case.n_layers, dtype=XREF_DTYPE)
        xref["output"] = np.arange(1, n * case.n_layers + 1)  # layer 1: item id, layer 2: n + item id
        xref["agg_id"] = np.tile(items, case.n_layers)
        xref["layer_id"] = np.repeat(np.arange(1, case.n_layers + 1), n)
    return build_plan(programme, policytc, rules, terms, profile["profile_id"], False, xref, allocation_rule)


def naive_top(case: Case) -> np.ndarray:
    """float64[n_layers, n_cols]: the loss of each layer at the account, computed one value at a time."""
    n_cols = case.losses.shape[1]
    top = np.zeros((case.n_layers, n_cols))
    for c in range(n_cols):
        account = 0.0
        for j, (rule, d, lim) in enumerate(case.loc_terms):
            ground_up = sum(float(case.losses[i, c]) for i in range(case.n_items) if case.loc[i] == j)
            account += naive_loss(rule, ground_up, terms_row(rule, d, lim))
        for k, (rule, d, lim) in enumerate(case.top_terms):
            top[k, c] = naive_loss(rule, account, terms_row(rule, d, lim))
    return top


def item_outputs(case: Case, plan: FMPlan, result: np.ndarray) -> np.ndarray:
    """float64[n_layers, n_items, n_cols] from the item-level outputs (output = layer * n + item id)."""
    n = case.n_items
    assert plan.output_id.tolist() == list(range(1, n * case.n_layers + 1))
    return result.reshape(case.n_layers, n, -1)


money = st.floats(min_value=0.0, max_value=5000.0, allow_nan=False, allow_infinity=False, allow_subnormal=False)
ground_up = st.one_of(st.just(0.0), money)


@st.composite
def cases(draw) -> Case:
    n = draw(st.integers(1, 12))
    raw = np.asarray(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    # compact the drawn ids to locations 1..n_locs (items of one location need not be contiguous)
    _, loc = np.unique(raw, return_inverse=True)
    n_locs = int(loc.max()) + 1
    loc_terms = [(draw(st.sampled_from([1, 12, 14])), draw(money), draw(money)) for _ in range(n_locs)]
    n_layers = draw(st.integers(1, 2))
    top_terms = [(draw(st.sampled_from([1, 14])), draw(money), draw(money)) for _ in range(n_layers)]
    n_cols = draw(st.integers(2, 5))
    flat = draw(st.lists(ground_up, min_size=n * n_cols, max_size=n * n_cols))
    losses = np.asarray(flat, dtype=np.float64).reshape(n, n_cols)
    return Case(loc.astype(np.int64), loc_terms, top_terms, losses)


SETTINGS = settings(max_examples=50, deadline=None, database=None)


@SETTINGS
@given(cases())
def test_rule2_items_sum_to_the_top_loss(case: Case) -> None:
    """(i) and (ii): pro rata back-allocation keeps the account's loss and stays within ground up."""
    plan = build(case, 2)
    got = item_outputs(case, plan, run_fm(plan, case.losses))
    top = naive_top(case)
    for k in range(case.n_layers):
        assert_allclose(got[k].sum(axis=0), top[k], rtol=RTOL, atol=ATOL, err_msg=f"layer {k + 1}")
    assert (got >= 0).all()
    assert (got <= case.losses[None] * (1 + 1e-12) + 1e-9).all()


@SETTINGS
@given(cases())
def test_rule0_outputs_the_top_loss(case: Case) -> None:
    """(iii): allocation rule 0 outputs the account's loss per layer."""
    plan = build(case, 0)
    assert plan.output_id.tolist() == list(range(1, case.n_layers + 1))
    assert_allclose(run_fm(plan, case.losses), naive_top(case), rtol=RTOL, atol=ATOL)


@SETTINGS
@given(cases())
def test_rule1_allocates_pro_rata_to_ground_up(case: Case) -> None:
    """(iv): allocation rule 1 gives each item the top loss times its share of the ground-up loss."""
    plan = build(case, 1)
    got = item_outputs(case, plan, run_fm(plan, case.losses))
    top = naive_top(case)
    total = case.losses.sum(axis=0)
    for k in range(case.n_layers):
        assert_allclose(got[k].sum(axis=0), top[k], rtol=RTOL, atol=ATOL, err_msg=f"layer {k + 1}")
        share = np.divide(case.losses, total, out=np.zeros_like(case.losses), where=total > 0)
        assert_allclose(got[k], share * top[k], rtol=RTOL, atol=ATOL, err_msg=f"layer {k + 1}")


def test_hand_computed_case() -> None:
    """Two locations under an account with two layers, checked by hand (and against the naive top)."""
    case = Case(
        loc=np.array([0, 0, 1]),
        loc_terms=[(1, 100.0, 1000.0), (12, 50.0, 0.0)],
        top_terms=[(14, 0.0, 600.0), (1, 600.0, 1000.0)],
        losses=np.array([[300.0, 0.0], [500.0, 0.0], [250.0, 10.0]]),
    )
    # column 0: location 1: 800 - 100 = 700, location 2: 250 - 50 = 200; account 900
    # layer 1: min(900, 600) = 600, layer 2: 900 - 600 = 300
    # column 1: location 2: 10 - 50 < 0 -> 0; everything 0
    top = naive_top(case)
    assert_allclose(top, [[600.0, 0.0], [300.0, 0.0]])
    plan = build(case, 2)
    got = item_outputs(case, plan, run_fm(plan, case.losses))
    # items of location 1 get 700 * (300, 500) / 800, item 3 gets 200; then x 600/900 and x 300/900
    item_net = np.array([262.5, 437.5, 200.0])
    assert_allclose(got[0, :, 0], item_net * 600 / 900)
    assert_allclose(got[1, :, 0], item_net * 300 / 900)
    assert_allclose(got[:, :, 1], 0.0)


def test_run_fm_rejects_bad_input() -> None:
    case = Case(
        loc=np.array([0, 1]),
        loc_terms=[(12, 10.0, 0.0), (12, 10.0, 0.0)],
        top_terms=[(14, 0.0, 100.0)],
        losses=np.ones((2, 3)),
    )
    plan = build(case, 2)
    with pytest.raises(ValueError, match=r"float64.*astype\(np\.float64\)"):
        run_fm(plan, case.losses.astype(np.float32))
    with pytest.raises(ValueError, match="one row per item_id"):
        run_fm(plan, np.ones((3, 3)))
    with pytest.raises(ValueError, match="one row per item_id"):
        run_fm(plan, np.ones((1, 3)))
    with pytest.raises(ValueError, match="2-D"):
        run_fm(plan, np.ones(2))


# ---------------------------------------------------------------------------------------------
# beyond the naive model: minimum / maximum deductibles carry deductible and limits up the tree

MINMAX_LOC_RULES = [1, 12, 14, 3, 7, 8, 10, 11, 13, 19, 26, 35, 36]
MINMAX_TOP_RULES = [1, 12, 14, 7, 8, 10, 11, 13, 19, 26, 35, 36]
fraction = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_subnormal=False)


@st.composite
def minmax_profiles(draw, rules: list[int]) -> tuple:
    rule = draw(st.sampled_from(rules))
    ded = draw(fraction) if rule in (19, 26, 35) else draw(money)  # %-of-loss deductibles
    lim = draw(fraction) if rule in (35, 36) else draw(money)  # %-of-loss limits
    lo, hi = sorted((draw(money), draw(money)))
    return (rule, ded, lim, lo, hi)


@st.composite
def minmax_cases(draw) -> Case:
    base = draw(cases())
    loc_terms = [draw(minmax_profiles(MINMAX_LOC_RULES)) for _ in range(base.n_locs)]
    top_terms = [draw(minmax_profiles(MINMAX_TOP_RULES)) for _ in range(base.n_layers)]
    return Case(base.loc, loc_terms, top_terms, base.losses)


@SETTINGS
@given(minmax_cases())
def test_rule2_with_extras_matches_rule0(case: Case) -> None:
    """With min/max deductible rules (the FM carries deductible / over / under limit), rule 2's items
    still add up to the top loss that rule 0 outputs, and each stays within its ground-up loss."""
    top = run_fm(build(case, 0), case.losses)
    plan = build(case, 2)
    assert plan.needs_extras or not any(p[0] in NEEDS_EXTRAS for p in case.loc_terms + case.top_terms)
    got = item_outputs(case, plan, run_fm(plan, case.losses))
    assert np.isfinite(got).all()
    assert_allclose(got.sum(axis=1), top, rtol=RTOL, atol=ATOL)
    assert (got >= -ATOL).all()
    assert (got <= case.losses[None] * (1 + 1e-12) + ATOL).all()
