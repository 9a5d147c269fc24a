"""The sparse event path (``run_fm_events``) against the dense ``run_fm`` on every FM validation suite.

Each suite's insurance plan (allocation rules 1, 2 and 3) and its reinsurance plans (net) run
random events that hit random subsets of the items: every event's outputs equal the dense
run with the other items at zero loss, outputs not listed carry no loss, and the results are
bit-identical for any number of threads and any column block.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from perilflow.kernel.fm.compute import run_fm, run_fm_events, top_items, work_nodes
from perilflow.kernel.fm.run import load_plan
from perilflow.kernel.oasis.files import read_ri_layers
from tests.kernel.test_fm_validation import SUITES, suite_dir


def random_events(rng: np.random.Generator, n_items: int, n_events: int, n_cols: int):
    hits = []
    for e in range(n_events):
        share = (0.0, 0.05, 0.5, 1.0)[e % 4]
        h = np.flatnonzero(rng.random(n_items) < share)
        if e % 4 == 2:
            h = rng.permutation(h)  # items in any order within an event
        hits.append(h)
    event_ptr = np.cumsum([0] + [len(h) for h in hits]).astype(np.int64)
    item_row = np.concatenate(hits).astype(np.int64)
    losses = rng.uniform(0, 1000, size=(item_row.shape[0], n_cols)) * (rng.random((item_row.shape[0], n_cols)) < 0.7)
    return hits, event_ptr, item_row, losses


def check_output_order(plan, records, rows) -> None:
    """An event's output rows are in fmpy's order, checked the slow way: outputs at the items come
    item by item as the event's records list them, each item's layers in order; outputs above the
    items (allocation rule 0) in increasing output id."""
    nodes, layers = plan.out_node.tolist(), plan.out_layer.tolist()
    if all(node < plan.level_ptr[1] for node in nodes):
        outputs_of: dict[int, list[int]] = {}
        for o in sorted(range(len(nodes)), key=lambda o: layers[o]):
            outputs_of.setdefault(nodes[o], []).append(o)
        want = [o for r in records.tolist() for o in outputs_of.get(r, [])]
        assert rows.tolist() == want
    else:
        assert np.all(np.diff(rows) > 0)


def check_plan(plan, rng: np.random.Generator, net: bool) -> None:
    hits, event_ptr, item_row, losses = random_events(rng, plan.n_items, 9, 5)
    ptr, index, out = run_fm_events(plan, event_ptr, item_row, losses, net=net, threads=1)
    # the fused top level (back-allocation, net and outputs in one pass) is bit-identical to the passes
    unfused = run_fm_events(plan, event_ptr, item_row, losses, net=net, threads=1, fuse_top=False)
    for got, want in zip((ptr, index, out), unfused, strict=True):
        assert got.tobytes() == want.tobytes()
    # columns computed in blocks (bounded work space) give the same bytes as all at once
    for block in (1, 2, 4):
        blocked = run_fm_events(plan, event_ptr, item_row, losses, net=net, threads=2, column_block=block)
        for got, want in zip(blocked, (ptr, index, out), strict=True):
            assert got.tobytes() == want.tobytes()
    for threads in (2, 3):
        p2, i2, o2 = run_fm_events(plan, event_ptr, item_row, losses, net=net, threads=threads)
        np.testing.assert_array_equal(p2, ptr)
        np.testing.assert_array_equal(i2, index)
        np.testing.assert_array_equal(o2, out)
    # the FM columns read from and written into wider records give the same numbers
    wide = np.zeros((losses.shape[0], losses.shape[1] + 3))
    cols = np.array([0, 2, 4, 5, 7])
    wide[:, cols] = losses
    wide[:, [1, 3, 6]] = -1.0
    p3, i3, o3 = run_fm_events(plan, event_ptr, item_row, wide, net=net, threads=2, columns=cols, out_columns=cols,
                               out_width=wide.shape[1])
    np.testing.assert_array_equal(p3, ptr)
    np.testing.assert_array_equal(i3, index)
    np.testing.assert_array_equal(o3[:, cols], out)
    assert np.all(o3[:, [1, 3, 6]] == 0)
    for e, h in enumerate(hits):
        dense_in = np.zeros((plan.n_items, losses.shape[1]))
        dense_in[h] = losses[event_ptr[e]:event_ptr[e + 1]]
        dense = run_fm(plan, dense_in, net=net, threads=1)
        rows = index[ptr[e]:ptr[e + 1]]
        check_output_order(plan, h, rows)
        np.testing.assert_allclose(out[ptr[e]:ptr[e + 1]], dense[rows], rtol=1e-12, atol=1e-9)
        others = np.setdiff1d(np.arange(dense.shape[0]), rows)
        assert np.all(dense[others] == 0)


@pytest.mark.reference
@pytest.mark.parametrize("suite", SUITES)
def test_sparse_events_equal_dense_runs_on_validation_suites(suite: str) -> None:
    folder = suite_dir(suite)
    rng = np.random.default_rng(zlib.crc32(suite.encode()))
    for alloc in (1, 2, 3):
        check_plan(load_plan(folder, alloc), rng, net=False)
    for ri in read_ri_layers(folder):
        check_plan(load_plan(ri.directory, 3, with_items=False), rng, net=True)


@pytest.mark.reference
def test_skipped_nodes_and_fused_top_level_on_a_reinsurance_plan() -> None:
    """PiWind-like reinsurance: items never visited by the level loop, the top level fused (allocation 2)."""
    folder = suite_dir("reinsurance1/expected")
    plan = load_plan(read_ri_layers(folder)[0].directory, 3, with_items=False)
    work_ptr, work = work_nodes(plan)
    assert work_ptr[1] == 0 and work.shape[0] < plan.slot.shape[0]  # no item node changes anything
    assert top_items(plan) is not None
    # allocation rule 1 spreads the top loss itself: never fused, and its top nodes are always visited
    plan1 = load_plan(folder, 1)
    assert top_items(plan1) is None
    top = np.arange(plan1.level_ptr[-2], plan1.level_ptr[-1])
    wide = top[np.diff(plan1.base_ptr)[top] > 1]
    assert np.isin(wide, work_nodes(plan1)[1]).all()


def test_column_blocks_bound_the_work_space() -> None:
    """Default blocks keep a range's work space within WORK_BYTES (at least 8 columns a block)."""
    from types import SimpleNamespace

    from perilflow.kernel.fm.compute import WORK_BYTES, column_blocks

    big = SimpleNamespace(n_slots=921_713, max_layers=1, needs_extras=False)   # PiWind x8's reinsurance plan
    np.testing.assert_array_equal(column_blocks(103, big), [0, 103])   # 100 samples: one block
    bounds = column_blocks(1003, big)                                    # 1,000 samples: bounded
    widths = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == 1003 and widths.min() >= 8 and widths.shape[0] == 7
    assert widths.max() * 8 * big.n_slots <= WORK_BYTES
    assert widths.max() - widths.min() <= 1
    # sized by the rows the busiest event touches (200,000 of the 921,713 slots): 2 blocks, not 7
    np.testing.assert_array_equal(column_blocks(1003, big, rows=200_000), [0, 502, 1003])
    # a budget of its own (the losses stage passes its record budget): 256 MiB on those rows, 7 blocks
    widths = np.diff(column_blocks(1003, big, rows=200_000, work_bytes=256 << 20))
    assert widths.shape[0] == 7 and widths.max() * 8 * 200_000 <= 256 << 20
    small = SimpleNamespace(n_slots=100, max_layers=2, needs_extras=True)
    np.testing.assert_array_equal(column_blocks(103, small), [0, 103])
    np.testing.assert_array_equal(column_blocks(10, small, column_block=4), [0, 3, 7, 10])
    with pytest.raises(ValueError, match="positive number of columns"):
        column_blocks(10, small, column_block=0)


@pytest.mark.reference
def test_float32_records_are_the_float64_results_rounded_once() -> None:
    """float32 in, float32 out (the losses stage's records): the FM still computes in float64, and
    each output is the float64 result rounded once; a smaller work budget only adds column blocks."""
    plan = load_plan(suite_dir(SUITES[0]), 2)
    rng = np.random.default_rng(11)
    _, event_ptr, item_row, losses = random_events(rng, plan.n_items, 9, 40)
    losses32 = losses.astype(np.float32)
    ptr, index, out = run_fm_events(plan, event_ptr, item_row, losses32.astype(np.float64), threads=1)
    p32, i32, o32 = run_fm_events(plan, event_ptr, item_row, losses32, threads=2)
    assert o32.dtype == np.float32 and out.dtype == np.float64
    assert np.array_equal(p32, ptr) and np.array_equal(i32, index)
    assert o32.tobytes() == out.astype(np.float32).tobytes()
    small = run_fm_events(plan, event_ptr, item_row, losses32, threads=2, work_bytes=1)   # 8 columns a block
    assert small[2].tobytes() == o32.tobytes()
    with pytest.raises(ValueError, match="float64 or float32"):
        run_fm_events(plan, event_ptr, item_row, losses.astype(np.float16))
    with pytest.raises(ValueError, match="work_bytes"):
        run_fm_events(plan, event_ptr, item_row, losses32, work_bytes=0)


def _touched_slots(plan, items: np.ndarray) -> set[int]:
    """Slow twin of ``_mark_event``'s slot count: the item slots, then the slot of every node reading a
    touched slot that owns one (a node sharing its only child's slot adds none: its parents list that slot)."""
    from perilflow.kernel.fm.compute import slot_parents

    kid_of_ptr, kid_of = slot_parents(plan)
    seen, todo = set(), [int(r) for r in items]
    while todo:
        s = todo.pop()
        if s in seen:
            continue
        seen.add(s)
        todo += [int(plan.slot[k]) for k in kid_of[kid_of_ptr[s]:kid_of_ptr[s + 1]].tolist() if plan.own_slot[k]]
    return seen


@pytest.mark.reference
def test_the_work_space_has_a_row_per_slot_an_event_touches() -> None:
    """run_fm_events' work space is sized by the slots each event touches, not by the plan's slots."""
    from perilflow.kernel.fm.compute import _count_outputs, item_outputs, slot_parents

    folder = suite_dir("reinsurance1/expected")
    rng = np.random.default_rng(7)
    for plan in (load_plan(folder, 2), load_plan(read_ri_layers(folder)[0].directory, 3, with_items=False)):
        hits, event_ptr, item_row, _ = random_events(rng, plan.n_items, 8, 1)
        kid_of_ptr, kid_of = slot_parents(plan)
        outputs = item_outputs(plan)
        _, rows = _count_outputs(event_ptr, item_row, plan.n_slots, plan.start_nodes, plan.slot, plan.own_slot,
                                 kid_of_ptr, kid_of, plan.out_node, *outputs)
        assert rows.tolist() == [len(_touched_slots(plan, h)) for h in hits]
        one = np.array([0, 1], dtype=np.int64)
        _, (single,) = _count_outputs(one, item_row[:1], plan.n_slots, plan.start_nodes, plan.slot, plan.own_slot,
                                      kid_of_ptr, kid_of, plan.out_node, *outputs)
        assert single < plan.n_slots   # one item touches its own path up the tree only
