"""Slow, obviously-correct twin of ``perilflow.kernel.fm.structure.build_plan``.

Dictionaries keyed by (level, agg_id), one Python step per fm_* row, following the
reference's own reading of the files line by line; the fast builder must produce the
same plan. (This was the first implementation of the plan builder.)

Original description:

The plan is event-independent: it lists, level by level, the nodes to compute,
where each node keeps its loss ("storage slot"), which slots it sums, which
items receive its back-allocated loss, its layers and prepared profile rows.
``compute.py`` then runs any number of events through it with njit loops.

How the Oasis files become a tree (as the reference ``fmpy`` reads them):

* fm_programme rows ``(from_agg_id, level_id, to_agg_id)`` link node
  ``(level_id - 1, from)`` to its parent ``(level_id, to)``. A negative ``from``
  links an item directly to a higher level. If any level-1 row has from != to the
  portfolio is multi-peril and items form an extra level 0 below level 1;
  otherwise level 1 nodes *are* the items.
* A node's layers come from its fm_policytc rows; a child has at least as many
  layers as its parent. A node with fewer layers than a child applies its single
  profile across the child's layers ("cross-layer").
* A node with one child shares the child's storage; a node with several children
  owns a slot holding the sum of its children.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from perilflow.kernel.fm.structure import FMPlan, FMStructureError
from perilflow.kernel.fm.terms import (
    APPLIED_RULES,
    KNOWN_RULES,
    N_TERMS,
    NEEDS_EXTRAS,
    NEEDS_TIV,
    does_nothing,
    prepare_row,
)


def _profile_index(profile_ids: np.ndarray) -> dict[int, tuple[int, int]]:
    """profile_id -> [start, end) row range; rows of one profile must be contiguous."""
    index: dict[int, tuple[int, int]] = {}
    if profile_ids.shape[0] == 0:
        return index
    change = np.flatnonzero(np.diff(profile_ids)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [profile_ids.shape[0]]))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        pid = int(profile_ids[s])
        if pid in index:
            raise FMStructureError(
                f"fm_profile: rows of profile_id {pid} are not contiguous (row {s + 1}); "
                "sort the file by profile_id, step_id"
            )
        index[pid] = (s, e)
    return index


def build_plan_naive(
    programme: np.ndarray,
    policytc: np.ndarray,
    profile_rules: np.ndarray,
    profile_terms: np.ndarray,
    profile_ids: np.ndarray,
    stepped: bool,
    xref: np.ndarray,
    allocation_rule: int,
    item_coverage: np.ndarray | None = None,
    coverage_tiv: np.ndarray | None = None,
) -> FMPlan:
    """Build the plan of one FM pass.

    Parameters
    ----------
    programme : structured array with from_agg_id, level_id, to_agg_id
    policytc : structured array with level_id, agg_id, layer_id, profile_id
    profile_rules, profile_terms, profile_ids : int32[n], float64[n, N_TERMS], int[n]
        profile rows (see ``terms.profile_to_terms``), contiguous per profile_id
    stepped : the profile table is a step table (fm_profile_step layout)
    xref : structured array with output, agg_id, layer_id
    allocation_rule : 0, 1, 2 or 3 (3 behaves as 2 in the FM)
    item_coverage : int[n_items] coverage_id of each item (needed by TIV-based rules)
    coverage_tiv : float64[n_coverages] TIV by coverage_id - 1
    """
    if allocation_rule not in (0, 1, 2, 3):
        raise FMStructureError(f"allocation rule must be 0, 1, 2 or 3, got {allocation_rule}")
    if allocation_rule == 3:
        allocation_rule = 2
    if programme.shape[0] == 0:
        raise FMStructureError("fm_programme is empty")

    unknown = sorted(set(np.unique(profile_rules).tolist()) - KNOWN_RULES)
    if unknown:
        raise FMStructureError(f"fm_profile: unsupported calcrule_id {unknown}; supported: {sorted(KNOWN_RULES)}")

    p_from = programme["from_agg_id"].astype(np.int64)
    p_level = programme["level_id"].astype(np.int64)
    p_to = programme["to_agg_id"].astype(np.int64)
    max_level = int(p_level.max())
    multi_peril = bool(np.any((p_level == 1) & (p_from != p_to)))
    start_level = 0 if multi_peril else 1
    if start_level == max_level:
        allocation_rule = 0  # a single level: nothing to allocate back
    out_level = max_level if allocation_rule == 0 else start_level

    level_size = np.zeros(max_level + 1, dtype=np.int64)
    for lvl in range(1, max_level + 1):
        sel = p_level == lvl
        if np.any(sel):
            level_size[lvl] = max(level_size[lvl], int(p_to[sel].max()))
            level_size[lvl - 1] = max(level_size[lvl - 1], int(p_from[sel].max()))

    # node (level, agg) -> [(layer_id, profile_id)] in file order
    prof_index = _profile_index(np.asarray(profile_ids))
    node_profiles: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for lvl, agg, layer, pid in zip(
        policytc["level_id"].tolist(), policytc["agg_id"].tolist(),
        policytc["layer_id"].tolist(), policytc["profile_id"].tolist(), strict=True,
    ):
        if pid not in prof_index:
            raise FMStructureError(
                f"fm_policytc: profile_id {pid} (level {lvl}, agg_id {agg}, layer {layer}) is not in fm_profile"
            )
        node_profiles[(lvl, agg)].append((layer, pid))

    # ---- static tree: children, parents and layer counts (top-down, as the reference reads it)
    node_layers: dict[tuple[int, int], int] = {}
    node_layer_ids: dict[tuple[int, int], list[int]] = {}
    for lvl, to in zip(p_level.tolist(), p_to.tolist(), strict=True):
        parent = (lvl, to)
        if parent not in node_layers:
            if parent not in node_profiles:
                raise FMStructureError(f"fm_policytc has no row for level {lvl}, agg_id {to} used in fm_programme")
            node_layers[parent] = len(node_profiles[parent])
            node_layer_ids[parent] = sorted(layer for layer, _ in node_profiles[parent])

    static_children: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    parents_of: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    cross: set[tuple[int, int]] = set()

    def top_ancestors(node: tuple[int, int]) -> set[tuple[int, int]]:
        found, todo = set(), [node]
        while todo:
            cur = todo.pop()
            if cur in parents_of:
                todo.extend(parents_of[cur])
                if cur[0] == max_level:
                    found.add(cur)
            else:
                found.add(cur)
        return found

    order = np.argsort(-p_level, kind="stable")
    for r in order.tolist():
        lvl = int(p_level[r])
        if lvl <= start_level:
            continue
        parent = (lvl, int(p_to[r]))
        f = int(p_from[r])
        child = (lvl - 1, f) if f > 0 else (start_level, -f)
        static_children[parent].append(child)
        parents_of[child].insert(0, parent)
        if child not in node_layers or node_layers[child] <= node_layers[parent]:
            node_layers[child] = node_layers[parent]
            node_layer_ids[child] = node_layer_ids[parent]
        else:
            for top in top_ancestors(parent):
                if node_layers[top] < node_layers[child]:
                    cross.add(top)
                    node_layers[parent] = node_layers[child]

    n_items = int(level_size[start_level])

    # ---- TIV under a node (only for nodes whose profile needs it)
    def node_tiv(node: tuple[int, int]) -> float:
        if item_coverage is None or coverage_tiv is None or item_coverage.shape[0] == 0:
            return 0.0
        items, todo = [], [node]
        while todo:
            cur = todo.pop()
            if cur in static_children:
                todo.extend(static_children[cur])
            else:
                items.append(cur[1])
        covs = np.unique(item_coverage[np.asarray(items, dtype=np.int64) - 1])
        return float(coverage_tiv[covs - 1].sum())

    # ---- prepared profile rows, shared between nodes unless they depend on the node's TIV
    rules_out: list[np.ndarray] = []
    terms_out: list[np.ndarray] = []
    n_rows = 0
    prepared_cache: dict[tuple[int, float | None], tuple[int, int]] = {}
    needs_extras = False

    def prepared(pid: int, node: tuple[int, int]) -> tuple[int, int]:
        nonlocal n_rows, needs_extras
        s, e = prof_index[pid]
        tiv = node_tiv(node) if any(int(r) in NEEDS_TIV for r in profile_rules[s:e]) else None
        key = (pid, tiv)
        if key in prepared_cache:
            return prepared_cache[key]
        rows = profile_terms[s:e].copy()
        rules = np.empty(e - s, dtype=np.int32)
        for k in range(e - s):
            rules[k] = prepare_row(int(profile_rules[s + k]), rows[k], tiv or 0.0, stepped)
            if rules[k] not in APPLIED_RULES:
                raise FMStructureError(f"fm_profile: calcrule_id {int(profile_rules[s + k])} of profile {pid} "
                                       "is a step rule but the profile table has no step columns")
        if e - s == 1 and does_nothing(int(rules[0]), rows[0]):
            span = (n_rows, n_rows)  # empty range: the node leaves the loss unchanged
        else:
            rules_out.append(rules)
            terms_out.append(rows)
            span = (n_rows, n_rows + e - s)
            n_rows += e - s
            needs_extras = needs_extras or any(int(r) in NEEDS_EXTRAS for r in rules)
        prepared_cache[key] = span
        return span

    # ---- dynamic walk with every item present: compute order, children and storage
    # (a node with no parent hands each of its items to the item's next parent)
    node_slot: dict[tuple[int, int], int] = {}
    slot_children: dict[int, list[int]] = {}
    slot_node: dict[int, tuple[int, int]] = {}
    item_next_parent = defaultdict(lambda: 1)
    n_slots = n_items

    compute_nodes: list[tuple[int, int]] = []
    node_children: list[list[int]] = []
    node_own: list[bool] = []
    level_ptr = [0]
    queue: list[tuple[int, int]] = [(start_level, i) for i in range(1, n_items + 1)]
    pending: dict[tuple[int, int], list[int]] = {}
    for lvl in range(start_level, max_level + 1):
        next_queue: list[tuple[int, int]] = []
        next_pending: dict[tuple[int, int], list[int]] = {}

        def register(parent: tuple[int, int], child_slot: int, _q=next_queue, _p=next_pending) -> None:
            if parent not in _p:
                _p[parent] = []
                _q.append(parent)
            _p[parent].append(child_slot)

        for node in queue:
            if node[0] != lvl:
                raise FMStructureError(f"fm_programme: node level {node[0]} agg_id {node[1]} reached at level {lvl}")
            kids = pending.get(node, [])
            if len(kids) == 0:
                if lvl != start_level:
                    raise FMStructureError(f"fm_programme: level {lvl} agg_id {node[1]} has no children")
                slot = node[1] - 1
            elif len(kids) == 1:
                slot = kids[0]
            else:
                slot = n_slots
                n_slots += 1
                slot_children[slot] = kids
            node_slot[node] = slot
            slot_node.setdefault(slot, node)
            compute_nodes.append(node)
            node_children.append(kids)
            node_own.append(len(kids) > 1)
            if lvl != max_level:
                if parents_of.get(node):
                    register(parents_of[node][0], slot)
                else:
                    for item_slot in _base_items(slot, slot_children):
                        item = (start_level, item_slot + 1)
                        plist = parents_of.get(item, [])
                        k = item_next_parent[item]
                        if k >= len(plist):
                            raise FMStructureError(
                                f"fm_programme: level {lvl} agg_id {node[1]} has no parent at level {lvl + 1} "
                                f"and item {item_slot + 1} has no further parent"
                            )
                        item_next_parent[item] = k + 1
                        register(plist[k], item_slot)
        level_ptr.append(len(compute_nodes))
        queue, pending = next_queue, next_pending

    # ---- flatten per-node arrays
    n_nodes = len(compute_nodes)
    slot = np.empty(n_nodes, dtype=np.int64)
    layer_len = np.empty(n_nodes, dtype=np.int64)
    profile_len = np.empty(n_nodes, dtype=np.int64)
    cross_arr = np.zeros(n_nodes, dtype=np.bool_)
    children_ptr = np.zeros(n_nodes + 1, dtype=np.int64)
    base_ptr = np.zeros(n_nodes + 1, dtype=np.int64)
    prof_ptr = np.zeros(n_nodes + 1, dtype=np.int64)
    children_flat: list[int] = []
    base_flat: list[np.ndarray] = []
    prof_rows: list[tuple[int, int]] = []
    node_index: dict[tuple[int, int], int] = {}
    for k, node in enumerate(compute_nodes):
        node_index[node] = k
        slot[k] = node_slot[node]
        if node not in node_layers:
            raise FMStructureError(f"level {node[0]} agg_id {node[1]} is not linked to any policy level")
        layer_len[k] = node_layers[node]
        children_flat.extend(node_children[k])
        children_ptr[k + 1] = len(children_flat)
        b = np.asarray(_base_items(int(slot[k]), slot_children), dtype=np.int64)
        base_flat.append(b)
        base_ptr[k + 1] = base_ptr[k] + b.shape[0]
        if node in node_profiles:
            entries = sorted(node_profiles[node])
            if node in cross:
                cross_arr[k] = True
                profile_len[k] = layer_len[k]
                prof_rows.append(prepared(entries[0][1], node))
            else:
                profile_len[k] = len(entries)
                prof_rows.extend(prepared(pid, node) for _, pid in entries)
        else:
            profile_len[k] = 1
            prof_rows.append((0, 0))
        prof_ptr[k + 1] = len(prof_rows)

    # ---- outputs: (out_level node, layer) -> output id from fm_xref
    xref_map: dict[tuple[int, int], int] = {}
    for out_id, agg, layer in zip(xref["output"].tolist(), xref["agg_id"].tolist(),
                                  xref["layer_id"].tolist(), strict=True):
        xref_map[(agg, layer)] = out_id
    out_rows: list[tuple[int, int, int]] = []
    for node in compute_nodes:
        if node[0] != out_level:
            continue
        layer_ids = node_layer_ids.get(node)
        if layer_ids is None:
            layer_ids = sorted(layer for layer, _ in node_profiles.get(node, [(1, 0)]))
        found = False
        for li, layer_id in enumerate(layer_ids):
            oid = xref_map.get((node[1], layer_id))
            if oid is not None:
                out_rows.append((oid, node_index[node], li))
                found = True
        if not found:
            raise FMStructureError(f"fm_xref: no output for agg_id {node[1]} at output level {out_level}")
    out_rows.sort()

    return FMPlan(
        allocation_rule=allocation_rule,
        n_items=n_items,
        n_slots=n_slots,
        max_layers=int(layer_len.max()) if n_nodes else 1,
        level_ptr=np.asarray(level_ptr, dtype=np.int64),
        slot=slot,
        own_slot=np.asarray(node_own, dtype=np.bool_),
        children_ptr=children_ptr,
        children=np.asarray(children_flat, dtype=np.int64),
        base_ptr=base_ptr,
        base=np.concatenate(base_flat) if base_flat else np.zeros(0, dtype=np.int64),
        layer_len=layer_len,
        profile_len=profile_len,
        cross_layer=cross_arr,
        prof_ptr=prof_ptr,
        prof_rows=np.asarray(prof_rows, dtype=np.int64).reshape(-1, 2),
        rules=np.concatenate(rules_out) if rules_out else np.zeros(0, dtype=np.int32),
        terms=np.concatenate(terms_out) if terms_out else np.zeros((0, N_TERMS)),
        needs_extras=needs_extras,
        start_nodes=np.arange(level_ptr[1], dtype=np.int64),
        out_node=np.asarray([r[1] for r in out_rows], dtype=np.int64),
        out_layer=np.asarray([r[2] for r in out_rows], dtype=np.int64),
        output_id=np.asarray([r[0] for r in out_rows], dtype=np.int32),
    )


def _base_items(slot: int, slot_children: dict[int, list[int]]) -> list[int]:
    """Item slots under a storage slot (a slot without children is an item)."""
    if slot not in slot_children:
        return [slot]
    out, todo = [], list(reversed(slot_children[slot]))
    while todo:
        cur = todo.pop()
        if cur in slot_children:
            todo.extend(reversed(slot_children[cur]))
        else:
            out.append(cur)
    return out
