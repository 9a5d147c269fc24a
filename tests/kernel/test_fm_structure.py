"""FM plans built from small hand-written programmes: shapes the validation suite relies on, and errors."""

from __future__ import annotations

import numpy as np
import pytest

from perilflow.kernel.fm.compute import run_fm
from perilflow.kernel.fm.structure import FMStructureError, build_plan
from perilflow.kernel.fm.terms import profile_to_terms
from perilflow.kernel.oasis.dtypes import (
    FM_POLICYTC_DTYPE,
    FM_PROFILE_DTYPE,
    FM_PROGRAMME_DTYPE,
    FM_XREF_DTYPE,
)


def programme(rows):
    return np.array(rows, dtype=FM_PROGRAMME_DTYPE)


def policytc(rows):
    return np.array(rows, dtype=FM_POLICYTC_DTYPE)


def xref(rows):
    return np.array(rows, dtype=FM_XREF_DTYPE)


def profiles(rows):
    """rows of (profile_id, calcrule_id, deductible1, attachment1, limit1, share1)."""
    out = np.zeros(len(rows), dtype=FM_PROFILE_DTYPE)
    for i, (pid, rule, ded, att, lim, share) in enumerate(rows):
        out[i]["profile_id"], out[i]["calcrule_id"] = pid, rule
        out[i]["deductible1"], out[i]["attachment1"], out[i]["limit1"], out[i]["share1"] = ded, att, lim, share
    return out


def plan_of(prog, pol, prof, xr, alloc=2):
    rules, terms = profile_to_terms(prof)
    return build_plan(prog, pol, rules, terms, prof["profile_id"], False, xr, alloc)


def losses(*values):
    """One sample column per value list: float64[n_items, n_samples]."""
    return np.array(values, dtype=np.float64).T.copy()


def test_cross_layer_profile_applies_to_the_sum_of_layers() -> None:
    # items 1, 2 -> policy node with 2 layers (0-30, 30-130) -> account limit 80 across both layers
    prog = programme([(1, 1, 1), (2, 1, 2), (1, 2, 1), (2, 2, 1), (1, 3, 1)])
    pol = policytc([(1, 1, 1, 1), (1, 2, 1, 1), (2, 1, 1, 2), (2, 1, 2, 3), (3, 1, 1, 4)])
    prof = profiles([(1, 100, 0, 0, 0, 0), (2, 2, 0, 0, 30, 1), (3, 2, 0, 30, 100, 1), (4, 14, 0, 0, 80, 0)])
    xr = xref([(1, 1, 1), (2, 1, 2), (3, 2, 1), (4, 2, 2)])
    plan = plan_of(prog, pol, prof, xr)
    assert plan.cross_layer.any()
    out = run_fm(plan, losses([60.0, 40.0]))
    # layers 30 and 70, scaled by 80/100, then split 60:40 between the items
    np.testing.assert_allclose(out[:, 0], [14.4, 33.6, 9.6, 22.4])


def test_item_linked_directly_to_a_higher_level() -> None:
    # items 1, 2 -> location 1 (deductible 10), which has no parent; item 3 -> location 2;
    # the account links location 2 and, by negative ids, items 1 and 2 directly; account limit 60
    prog = programme([(1, 1, 1), (2, 1, 2), (3, 1, 3), (1, 2, 1), (2, 2, 1), (3, 2, 2),
                      (2, 3, 1), (-1, 3, 1), (-2, 3, 1)])
    pol = policytc([(1, 1, 1, 1), (1, 2, 1, 1), (1, 3, 1, 1), (2, 1, 1, 2), (2, 2, 1, 1), (3, 1, 1, 3)])
    prof = profiles([(1, 100, 0, 0, 0, 0), (2, 12, 10, 0, 0, 0), (3, 14, 0, 0, 60, 0)])
    xr = xref([(1, 1, 1), (2, 2, 1), (3, 3, 1)])
    out = run_fm(plan_of(prog, pol, prof, xr), losses([50.0, 30.0, 20.0]))
    # location 1: 80 - 10 = 70 -> 43.75, 26.25; account: 90 capped at 60 -> x 2/3
    np.testing.assert_allclose(out[:, 0], [43.75 * 2 / 3, 26.25 * 2 / 3, 20 * 2 / 3])


@pytest.mark.parametrize("alloc,expected", [(0, [60.0]), (1, [36.0, 24.0]), (2, [36.0, 24.0])])
def test_allocation_rules(alloc: int, expected: list[float]) -> None:
    prog = programme([(1, 1, 1), (2, 1, 2), (1, 2, 1), (2, 2, 1)])
    pol = policytc([(1, 1, 1, 1), (1, 2, 1, 2), (2, 1, 1, 3)])
    prof = profiles([(1, 100, 0, 0, 0, 0), (2, 12, 20, 0, 0, 0), (3, 14, 0, 0, 60, 0)])
    xr = xref([(1, 1, 1)]) if alloc == 0 else xref([(1, 1, 1), (2, 2, 1)])
    out = run_fm(plan_of(prog, pol, prof, xr, alloc), losses([60.0, 40.0]))
    # a2: item 2 loses 20 to its deductible (20 left), total 80 capped to 60 -> 45, 15;
    # a1: shares of the top loss follow the ground-up losses 60:40
    if alloc == 2:
        expected = [45.0, 15.0]
    np.testing.assert_allclose(out[:, 0], expected)


def test_net_of_layers_for_reinsurance() -> None:
    # one item, two layers at level 2 ceding 30 xs 0 and 50 xs 30 (rule 24 style via rule 2 here)
    prog = programme([(1, 1, 1), (1, 2, 1)])
    pol = policytc([(1, 1, 1, 1), (2, 1, 1, 2), (2, 1, 2, 3)])
    prof = profiles([(1, 100, 0, 0, 0, 0), (2, 2, 0, 0, 30, 1), (3, 2, 0, 30, 50, 1)])
    xr = xref([(1, 1, 2)])
    plan = plan_of(prog, pol, prof, xr, alloc=3)
    out = run_fm(plan, losses([100.0]), net=True)
    # ceded 30 then 50: net after layer 2 = 100 - 30 - 50
    np.testing.assert_allclose(out[:, 0], [20.0])


def test_unknown_calcrule_is_named() -> None:
    prog = programme([(1, 1, 1)])
    with pytest.raises(FMStructureError, match="calcrule_id \\[999\\]"):
        plan_of(prog, policytc([(1, 1, 1, 1)]), profiles([(1, 999, 0, 0, 0, 0)]), xref([(1, 1, 1)]))


def test_programme_node_without_policy_is_named() -> None:
    prog = programme([(1, 1, 1), (1, 2, 1)])
    with pytest.raises(FMStructureError, match="level 2, agg_id 1"):
        plan_of(prog, policytc([(1, 1, 1, 1)]), profiles([(1, 100, 0, 0, 0, 0)]), xref([(1, 1, 1)]))


def test_missing_profile_is_named() -> None:
    prog = programme([(1, 1, 1)])
    with pytest.raises(FMStructureError, match="profile_id 7"):
        plan_of(prog, policytc([(1, 1, 1, 7)]), profiles([(1, 100, 0, 0, 0, 0)]), xref([(1, 1, 1)]))


def test_missing_output_is_named() -> None:
    prog = programme([(1, 1, 1), (2, 1, 2), (1, 2, 1), (2, 2, 1)])
    pol = policytc([(1, 1, 1, 1), (1, 2, 1, 1), (2, 1, 1, 1)])
    with pytest.raises(FMStructureError, match="no output for agg_id 2"):
        plan_of(prog, pol, profiles([(1, 12, 1, 0, 0, 0)]), xref([(1, 1, 1)]))


def test_results_do_not_depend_on_column_blocks() -> None:
    prog = programme([(1, 1, 1), (2, 1, 2), (3, 1, 3), (1, 2, 1), (2, 2, 1), (3, 2, 2), (1, 3, 1), (2, 3, 1)])
    pol = policytc([(1, 1, 1, 1), (1, 2, 1, 1), (1, 3, 1, 1), (2, 1, 1, 2), (2, 2, 1, 2), (3, 1, 1, 3)])
    prof = profiles([(1, 12, 5, 0, 0, 0), (2, 1, 20, 0, 100, 0), (3, 14, 0, 0, 150, 0)])
    xr = xref([(1, 1, 1), (2, 2, 1), (3, 3, 1)])
    plan = plan_of(prog, pol, prof, xr)
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 200, size=(3, 37))
    whole = run_fm(plan, x, block=64)
    for block in (1, 5, 16):
        np.testing.assert_array_equal(run_fm(plan, x, block=block), whole)


def test_sparse_events_equal_dense_runs() -> None:
    """run_fm_events on a few hit items per event equals run_fm with every other item at zero loss."""
    from perilflow.kernel.fm.compute import run_fm_events

    prog = programme([(1, 1, 1), (2, 1, 2), (3, 1, 3), (4, 1, 4), (1, 2, 1), (2, 2, 1), (3, 2, 2), (4, 2, 2),
                      (1, 3, 1), (2, 3, 1)])
    pol = policytc([(1, 1, 1, 1), (1, 2, 1, 1), (1, 3, 1, 1), (1, 4, 1, 1), (2, 1, 1, 2), (2, 2, 1, 2),
                    (3, 1, 1, 3), (3, 1, 2, 4)])
    prof = profiles([(1, 12, 5, 0, 0, 0), (2, 1, 20, 0, 100, 0), (3, 2, 0, 0, 60, 1), (4, 2, 0, 60, 500, 0.5)])
    xr = xref([(i + 1 + 4 * layer, i + 1, layer + 1) for layer in range(2) for i in range(4)])
    rng = np.random.default_rng(3)
    hits = [[0, 2], [1], [0, 1, 2, 3], [3]]
    for alloc, net in ((2, False), (1, False), (0, False), (3, True)):
        xr_a = xref([(1, 1, 1), (2, 1, 2)]) if alloc == 0 else xr
        plan = plan_of(prog, pol, prof, xr_a, alloc)
        event_ptr = np.cumsum([0] + [len(h) for h in hits])
        item_row = np.concatenate([np.asarray(h) for h in hits])
        x = rng.uniform(0, 150, size=(item_row.shape[0], 6))
        out_ptr, out_index, out_losses = run_fm_events(plan, event_ptr, item_row, x, net=net, threads=2)
        for e, h in enumerate(hits):
            dense_in = np.zeros((4, 6))
            dense_in[h] = x[event_ptr[e]:event_ptr[e + 1]]
            dense = run_fm(plan, dense_in, net=net)
            rows = out_index[out_ptr[e]:out_ptr[e + 1]]
            np.testing.assert_allclose(out_losses[out_ptr[e]:out_ptr[e + 1]], dense[rows], rtol=1e-12, atol=1e-9)
            others = np.setdiff1d(np.arange(dense.shape[0]), rows)
            assert np.all(dense[others] == 0)
