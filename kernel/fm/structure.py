"""Build the computation plan of one FM pass from the Oasis fm_* tables.

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

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from perilflow.kernel.fm.terms import (
    APPLIED_RULES,
    KNOWN_RULES,
    N_TERMS,
    NEEDS_EXTRAS,
    NEEDS_TIV,
    does_nothing,
    prepare_row,
)


class FMStructureError(ValueError):
    """The fm_* tables do not describe a valid financial structure."""


@dataclass
class FMPlan:
    """Event-independent plan of one FM pass (all arrays are numpy, ready for njit).

    Node arrays are indexed by compute order (level by level).
    """

    allocation_rule: int
    n_items: int                 # item slots are 0..n_items-1 (item_id - 1)
    n_slots: int                 # item slots + slots of nodes with several children
    max_layers: int
    level_ptr: np.ndarray        # int64[n_levels + 1]: compute-order range of each level
    slot: np.ndarray             # int64[n_nodes]: storage slot of each node
    own_slot: np.ndarray         # bool[n_nodes]: node sums several children into its own slot
    children_ptr: np.ndarray     # int64[n_nodes + 1] CSR into children
    children: np.ndarray         # int64: child storage slots
    base_ptr: np.ndarray         # int64[n_nodes + 1] CSR into base
    base: np.ndarray             # int64: item slots under each node
    layer_len: np.ndarray        # int64[n_nodes]
    profile_len: np.ndarray      # int64[n_nodes]: layers with their own profile (= layer_len if cross)
    cross_layer: np.ndarray      # bool[n_nodes]
    prof_ptr: np.ndarray         # int64[n_nodes + 1] CSR: one entry per profile layer
    prof_rows: np.ndarray        # int64[n_profiles, 2]: [start, end) into rules/terms (empty = no-op)
    rules: np.ndarray            # int32[n_rows] prepared calcrule ids
    terms: np.ndarray            # float64[n_rows, N_TERMS] prepared terms
    needs_extras: bool
    start_nodes: np.ndarray      # int64: compute-order index of the start-level nodes (items)
    out_node: np.ndarray         # int64[n_outputs]: compute-order node of each output row
    out_layer: np.ndarray        # int64[n_outputs]: layer index of each output row
    output_id: np.ndarray        # int32[n_outputs]: Oasis output id of each output row (sorted)
    slot_base_cache: tuple[np.ndarray, np.ndarray] | None = None  # filled by compute.slot_bases
    slot_parents_cache: tuple[np.ndarray, np.ndarray] | None = None  # filled by compute.slot_parents
    work_nodes_cache: tuple[np.ndarray, np.ndarray] | None = None  # filled by compute.work_nodes
    top_items_cache: np.ndarray | None = None  # filled by compute.top_items
    item_outputs_cache: tuple[np.ndarray, np.ndarray] | None = None  # filled by compute.item_outputs


# ---------------------------------------------------------------------------------------------
# Nodes are numbered level by level: node = offset[level] + agg_id - 1 (start level .. max level).
# The tests hold a slow dictionary-based twin (tests/kernel/naive_structure.py) that reads the
# files row by row as the reference does; this builder must give the same plan.

_ERR_NONE, _ERR_NO_CHILDREN, _ERR_NO_NEXT_PARENT, _ERR_LEVEL_JUMP = 0, 1, 2, 3


def _profile_index(profile_ids: np.ndarray) -> dict[int, tuple[int, int]]:
    """profile_id -> [start, end) row range; rows of one profile must be contiguous."""
    ids = np.asarray(profile_ids, dtype=np.int64)
    if ids.shape[0] == 0:
        return {}
    change = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [ids.shape[0]]))
    run_ids = ids[starts]
    uniq, first = np.unique(run_ids, return_index=True)
    if uniq.shape[0] != run_ids.shape[0]:
        dup = np.setdiff1d(np.arange(run_ids.shape[0]), first)[0]
        raise FMStructureError(
            f"fm_profile: rows of profile_id {int(run_ids[dup])} are not contiguous (row {int(starts[dup]) + 1}); "
            "sort the file by profile_id, step_id"
        )
    return dict(zip(run_ids.tolist(), zip(starts.tolist(), ends.tolist(), strict=True), strict=True))


@njit(cache=True)
def _propagate_layers(child, parent, node_layers, layer_src, cross, par_ptr, par_list):
    """Top-down pass over the programme links: children take their parents' layer count.

    A parent with fewer layers than its child makes its root ancestors with fewer layers
    cross-layer nodes and takes the child's layer count (the reference's reading).
    """
    stack = np.empty(par_list.shape[0] + 1, dtype=np.int64)
    for r in range(child.shape[0]):
        c, p = child[r], parent[r]
        if node_layers[c] < 0 or node_layers[c] <= node_layers[p]:
            node_layers[c] = node_layers[p]
            layer_src[c] = layer_src[p]
        else:
            stack[0] = p
            top = 1
            while top > 0:
                top -= 1
                cur = stack[top]
                if par_ptr[cur + 1] > par_ptr[cur]:
                    need = top + par_ptr[cur + 1] - par_ptr[cur]
                    if need > stack.shape[0]:
                        bigger = np.empty(2 * need, dtype=np.int64)
                        bigger[:top] = stack[:top]
                        stack = bigger
                    for q in range(par_ptr[cur], par_ptr[cur + 1]):
                        stack[top] = par_list[q]
                        top += 1
                elif node_layers[cur] < node_layers[c]:
                    cross[cur] = True
                    node_layers[p] = node_layers[c]


@njit(cache=True)
def _walk(n_items, start_node, n_nodes, node_level, max_level, par_ptr, par_list):
    """Walk the levels with every item present: compute order, children slots and storage slots.

    Returns (status, bad_node, bad_item, order, level_ptr, node_slot, kids_ptr, kids, own,
    slot_base_ptr, slot_base, n_slots). ``status`` is one of the _ERR_* codes.
    """
    n_levels = max_level - node_level[start_node] + 1
    cap = n_items * (n_levels + 1) + n_nodes + 1
    # pending children of each node: singly linked lists in registration order
    head = np.full(n_nodes, -1, dtype=np.int64)
    tail = np.full(n_nodes, -1, dtype=np.int64)
    count = np.zeros(n_nodes, dtype=np.int64)
    link_next = np.empty(cap, dtype=np.int64)
    link_val = np.empty(cap, dtype=np.int64)
    n_links = 0
    item_next = np.ones(n_items, dtype=np.int64)

    order = np.empty(n_nodes, dtype=np.int64)
    node_slot = np.empty(n_nodes, dtype=np.int64)
    own = np.zeros(n_nodes, dtype=np.bool_)
    kids_ptr = np.zeros(n_nodes + 1, dtype=np.int64)
    kids = np.empty(cap, dtype=np.int64)
    level_ptr = np.zeros(n_levels + 1, dtype=np.int64)
    slot_base_ptr = np.zeros(n_items + n_nodes + 1, dtype=np.int64)
    slot_base = np.empty(cap, dtype=np.int64)
    for i in range(n_items):
        slot_base[i] = i
        slot_base_ptr[i + 1] = i + 1
    n_slots = n_items
    n_done = 0

    queue = np.empty(n_nodes, dtype=np.int64)
    next_queue = np.empty(n_nodes, dtype=np.int64)
    for i in range(n_items):
        queue[i] = start_node + i
    n_queue = n_items
    for lv in range(n_levels):
        level = node_level[start_node] + lv
        n_next = 0
        for qi in range(n_queue):
            node = queue[qi]
            if node_level[node] != level:
                return (_ERR_LEVEL_JUMP, node, -1, order, level_ptr, node_slot, kids_ptr, kids, own,
                        slot_base_ptr, slot_base, n_slots)
            k = n_done
            order[k] = node
            kids_ptr[k + 1] = kids_ptr[k] + count[node]
            j = head[node]
            w = kids_ptr[k]
            while j >= 0:
                kids[w] = link_val[j]
                w += 1
                j = link_next[j]
            if count[node] == 0:
                if lv != 0:
                    return (_ERR_NO_CHILDREN, node, -1, order, level_ptr, node_slot, kids_ptr, kids, own,
                            slot_base_ptr, slot_base, n_slots)
                s = node - start_node
            elif count[node] == 1:
                s = kids[kids_ptr[k]]
            else:
                s = n_slots
                n_slots += 1
                own[k] = True
                b = slot_base_ptr[s]
                for w in range(kids_ptr[k], kids_ptr[k + 1]):
                    c = kids[w]
                    for q in range(slot_base_ptr[c], slot_base_ptr[c + 1]):
                        slot_base[b] = slot_base[q]
                        b += 1
                slot_base_ptr[s + 1] = b
            node_slot[k] = s
            n_done += 1
            if level == max_level:
                continue
            # hand the slot to the parent, or each item of it to the item's next parent
            if par_ptr[node + 1] > par_ptr[node]:
                targets_parent = par_list[par_ptr[node]]
                n_reg = 1
            else:
                n_reg = slot_base_ptr[s + 1] - slot_base_ptr[s]
            for t in range(n_reg):
                if par_ptr[node + 1] > par_ptr[node]:
                    par, val = targets_parent, s
                else:
                    item = slot_base[slot_base_ptr[s] + t]
                    item_node = start_node + item
                    kk = item_next[item]
                    if kk >= par_ptr[item_node + 1] - par_ptr[item_node]:
                        return (_ERR_NO_NEXT_PARENT, node, item, order, level_ptr, node_slot, kids_ptr, kids,
                                own, slot_base_ptr, slot_base, n_slots)
                    item_next[item] = kk + 1
                    par, val = par_list[par_ptr[item_node] + kk], item
                if count[par] == 0:
                    next_queue[n_next] = par
                    n_next += 1
                link_val[n_links] = val
                link_next[n_links] = -1
                if tail[par] >= 0:
                    link_next[tail[par]] = n_links
                else:
                    head[par] = n_links
                tail[par] = n_links
                n_links += 1
                count[par] += 1
        level_ptr[lv + 1] = n_done
        queue, next_queue = next_queue, queue
        n_queue = n_next
    return (_ERR_NONE, -1, -1, order[:n_done], level_ptr, node_slot[:n_done], kids_ptr[:n_done + 1],
            kids[:kids_ptr[n_done]], own[:n_done], slot_base_ptr[:n_slots + 1],
            slot_base[:slot_base_ptr[n_slots]], n_slots)


def build_plan(
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
    if p_level.min() < 1 or p_to.min() < 1 or np.any(p_from == 0):
        bad = int(np.flatnonzero((p_level < 1) | (p_to < 1) | (p_from == 0))[0])
        raise FMStructureError(f"fm_programme row {bad + 1}: level_id and to_agg_id must be >= 1 and "
                               "from_agg_id must not be 0")
    max_level = int(p_level.max())
    multi_peril = bool(np.any((p_level == 1) & (p_from != p_to)))
    start_level = 0 if multi_peril else 1
    if start_level == max_level:
        allocation_rule = 0  # a single level: nothing to allocate back
    out_level = max_level if allocation_rule == 0 else start_level

    # ---- node numbering
    level_size = np.zeros(max_level + 1, dtype=np.int64)
    np.maximum.at(level_size, p_level, p_to)
    np.maximum.at(level_size, p_level - 1, p_from)
    offset = np.zeros(max_level + 2, dtype=np.int64)
    offset[start_level + 1:] = np.cumsum(level_size[start_level:])
    n_nodes = int(offset[max_level + 1])
    n_items = int(level_size[start_level])
    node_level = np.repeat(np.arange(start_level, max_level + 1), level_size[start_level:])
    node_agg = np.arange(n_nodes) - offset[node_level] + 1

    # ---- profiles of each node, sorted by layer
    prof_index = _profile_index(profile_ids)
    t_level = policytc["level_id"].astype(np.int64)
    t_agg = policytc["agg_id"].astype(np.int64)
    t_layer = policytc["layer_id"].astype(np.int64)
    t_pid = policytc["profile_id"].astype(np.int64)
    known = np.fromiter(prof_index, dtype=np.int64, count=len(prof_index))
    is_known = np.zeros(max(int(known.max(initial=0)), int(t_pid.max(initial=0))) + 1, dtype=np.bool_)
    is_known[known[known >= 0]] = True
    missing = (t_pid < 0) | ~is_known[np.maximum(t_pid, 0)]
    if missing.any():
        r = int(np.flatnonzero(missing)[0])
        raise FMStructureError(f"fm_policytc: profile_id {t_pid[r]} (level {t_level[r]}, agg_id {t_agg[r]}, "
                               f"layer {t_layer[r]}) is not in fm_profile")
    used = (t_level >= start_level) & (t_level <= max_level) & (t_agg >= 1)
    used[used] &= t_agg[used] <= level_size[t_level[used]]
    t_node = offset[t_level[used]] + t_agg[used] - 1
    t_sort = np.lexsort((t_pid[used], t_layer[used], t_node))
    e_node, e_layer, e_pid = t_node[t_sort], t_layer[used][t_sort], t_pid[used][t_sort]
    e_count = np.bincount(e_node, minlength=n_nodes)
    e_ptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(e_count, out=e_ptr[1:])

    # ---- layer counts: parents from their own policies, then top-down
    parent_all = offset[p_level] + p_to - 1
    no_policy = e_count[parent_all] == 0
    if no_policy.any():
        r = int(np.flatnonzero(no_policy)[0])
        raise FMStructureError(f"fm_policytc has no row for level {p_level[r]}, agg_id {p_to[r]} used in fm_programme")
    node_layers = np.full(n_nodes, -1, dtype=np.int64)
    node_layers[parent_all] = e_count[parent_all]
    layer_src = np.arange(n_nodes, dtype=np.int64)
    link = p_level > start_level
    rows = np.flatnonzero(link)
    l_level, l_from = p_level[rows], p_from[rows]
    l_child = np.where(l_from > 0, offset[np.maximum(l_level - 1, start_level)] + l_from - 1,
                       offset[start_level] - l_from - 1)
    if np.any(-l_from > n_items):
        r = int(rows[np.flatnonzero(-l_from > n_items)[0]])
        raise FMStructureError(f"fm_programme row {r + 1}: item {-p_from[r]} does not exist")
    l_parent = parent_all[rows]
    proc = np.lexsort((rows, -l_level))                   # processing order: level down, file order
    by_child = np.lexsort((-np.argsort(proc), l_child))  # parents of a child: latest processed first
    par_count = np.bincount(l_child, minlength=n_nodes)
    par_ptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(par_count, out=par_ptr[1:])
    par_list = l_parent[by_child]
    cross = np.zeros(n_nodes, dtype=np.bool_)
    _propagate_layers(l_child[proc], l_parent[proc], node_layers, layer_src, cross, par_ptr, par_list)

    # ---- walk with every item present
    (status, bad_node, bad_item, order, level_ptr, node_slot, kids_ptr, kids, own,
     slot_base_ptr, slot_base, n_slots) = _walk(n_items, int(offset[start_level]), n_nodes, node_level,
                                                max_level, par_ptr, par_list)
    if status == _ERR_NO_CHILDREN:
        raise FMStructureError(
            f"fm_programme: level {node_level[bad_node]} agg_id {node_agg[bad_node]} has no children")
    if status == _ERR_NO_NEXT_PARENT:
        raise FMStructureError(
            f"fm_programme: level {node_level[bad_node]} agg_id {node_agg[bad_node]} has no parent at level "
            f"{node_level[bad_node] + 1} and item {bad_item + 1} has no further parent")
    if status == _ERR_LEVEL_JUMP:
        raise FMStructureError(f"fm_programme: level {node_level[bad_node]} agg_id {node_agg[bad_node]} is "
                               "reached from a level more than one below it")
    if np.any(node_layers[order] < 0):
        bad = int(order[np.flatnonzero(node_layers[order] < 0)[0]])
        raise FMStructureError(f"level {node_level[bad]} agg_id {node_agg[bad]} is not linked to any policy level")

    # ---- prepared profile rows: once per profile, or once per (profile, node TIV) for TIV rules
    rules_out: list[np.ndarray] = []
    terms_out: list[np.ndarray] = []
    n_rows = 0
    needs_extras = False
    cache: dict[tuple[int, float | None], tuple[int, int]] = {}
    tiv_pids = {pid for pid, (s, e) in prof_index.items() if any(int(r) in NEEDS_TIV for r in profile_rules[s:e])}

    def prepared(pid: int, tiv: float | None) -> tuple[int, int]:
        nonlocal n_rows, needs_extras
        key = (pid, tiv)
        if key in cache:
            return cache[key]
        s, e = prof_index[pid]
        rows_ = profile_terms[s:e].copy()
        rules_ = np.empty(e - s, dtype=np.int32)
        for k in range(e - s):
            rules_[k] = prepare_row(int(profile_rules[s + k]), rows_[k], tiv or 0.0, stepped)
            if rules_[k] not in APPLIED_RULES:
                raise FMStructureError(f"fm_profile: calcrule_id {int(profile_rules[s + k])} of profile {pid} "
                                       "is a step rule but the profile table has no step columns")
        if e - s == 1 and does_nothing(int(rules_[0]), rows_[0]):
            span = (n_rows, n_rows)
        else:
            rules_out.append(rules_)
            terms_out.append(rows_)
            span = (n_rows, n_rows + e - s)
            n_rows += e - s
            needs_extras = needs_extras or any(int(r) in NEEDS_EXTRAS for r in rules_)
        cache[key] = span
        return span

    n_k = order.shape[0]
    k_count = e_count[order]
    k_cross = cross[order]
    k_entries = np.where(k_cross | (k_count == 0), 1, k_count)
    prof_ptr = np.zeros(n_k + 1, dtype=np.int64)
    np.cumsum(k_entries, out=prof_ptr[1:])
    entry = np.repeat(e_ptr[order] - prof_ptr[:-1], k_entries) + np.arange(prof_ptr[-1])
    entry[np.repeat(k_count == 0, k_entries)] = -1
    prof_rows = np.zeros((prof_ptr[-1], 2), dtype=np.int64)
    has = entry >= 0
    pid_of_entry = e_pid[entry[has]]
    pid_used = np.zeros(is_known.shape[0], dtype=np.bool_)
    pid_used[pid_of_entry] = True
    pid_span = np.zeros((is_known.shape[0], 2), dtype=np.int64)
    for pid in np.flatnonzero(pid_used).tolist():
        if pid not in tiv_pids:
            pid_span[pid] = prepared(pid, None)
    spans = pid_span[pid_of_entry]
    if tiv_pids:
        node_of_entry = e_node[entry[has]]
        tivs = _node_tivs(node_of_entry[np.isin(pid_of_entry, list(tiv_pids))], p_level, p_from, rows, l_child,
                          l_parent, offset, start_level, n_nodes, item_coverage, coverage_tiv)
        for i in np.flatnonzero(np.isin(pid_of_entry, list(tiv_pids))).tolist():
            spans[i] = prepared(int(pid_of_entry[i]), tivs[int(node_of_entry[i])])
    prof_rows[has] = spans
    profile_len = np.where(k_count == 0, 1, np.where(k_cross, node_layers[order], k_count))

    # ---- outputs: (out-level node, layer index) -> output id from fm_xref
    out_k = np.flatnonzero(node_level[order] == out_level)
    src = layer_src[order[out_k]]
    n_ids = np.maximum(e_count[src], 1)
    o_k = np.repeat(out_k, n_ids)
    o_li = np.arange(n_ids.sum()) - np.repeat(np.cumsum(n_ids) - n_ids, n_ids)
    o_src = np.repeat(src, n_ids)
    o_layer = np.where(e_count[o_src] > 0, e_layer[np.minimum(e_ptr[o_src] + o_li, max(len(e_layer) - 1, 0))], 1)
    table = pd.DataFrame({"k": o_k, "li": o_li, "agg": node_agg[order[o_k]], "layer": o_layer})
    xr = pd.DataFrame({"agg": xref["agg_id"].astype(np.int64), "layer": xref["layer_id"].astype(np.int64),
                       "output": xref["output"].astype(np.int64)}).drop_duplicates(["agg", "layer"], keep="last")
    matched = table.merge(xr, on=["agg", "layer"], how="inner")
    found = np.zeros(n_k, dtype=np.bool_)
    found[matched["k"].to_numpy()] = True
    lost = out_k[~found[out_k]]
    if lost.shape[0]:
        raise FMStructureError(f"fm_xref: no output for agg_id {node_agg[order[lost[0]]]} at output level {out_level}")
    matched = matched.sort_values(["output", "k", "li"], kind="stable")

    base_len = slot_base_ptr[node_slot + 1] - slot_base_ptr[node_slot]
    base_ptr = np.zeros(n_k + 1, dtype=np.int64)
    np.cumsum(base_len, out=base_ptr[1:])
    return FMPlan(
        allocation_rule=allocation_rule,
        n_items=n_items,
        n_slots=int(n_slots),
        max_layers=int(node_layers[order].max()) if n_k else 1,
        level_ptr=level_ptr,
        slot=node_slot,
        own_slot=own,
        children_ptr=kids_ptr,
        children=kids,
        base_ptr=base_ptr,
        base=slot_base[np.repeat(slot_base_ptr[node_slot] - base_ptr[:-1], base_len) + np.arange(base_ptr[-1])],
        layer_len=node_layers[order],
        profile_len=profile_len.astype(np.int64),
        cross_layer=k_cross,
        prof_ptr=prof_ptr,
        prof_rows=prof_rows,
        rules=np.concatenate(rules_out) if rules_out else np.zeros(0, dtype=np.int32),
        terms=np.concatenate(terms_out) if terms_out else np.zeros((0, N_TERMS)),
        needs_extras=needs_extras,
        start_nodes=np.arange(level_ptr[1], dtype=np.int64),
        out_node=matched["k"].to_numpy(np.int64),
        out_layer=matched["li"].to_numpy(np.int64),
        output_id=matched["output"].to_numpy(np.int32),
        slot_base_cache=(slot_base_ptr, slot_base),
    )


def _node_tivs(nodes, p_level, p_from, rows, l_child, l_parent, offset, start_level, n_nodes,
               item_coverage, coverage_tiv) -> dict[int, float]:
    """TIV under each of ``nodes``: the distinct coverages of the items below it (static programme)."""
    out: dict[int, float] = {}
    if item_coverage is None or coverage_tiv is None or item_coverage.shape[0] == 0:
        return {int(n): 0.0 for n in np.unique(nodes)}
    order = np.argsort(l_parent, kind="stable")
    kid_ptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(l_parent, minlength=n_nodes), out=kid_ptr[1:])
    kid_list = l_child[order]
    for node in np.unique(nodes).tolist():
        items, todo = [], [node]
        while todo:
            cur = todo.pop()
            if kid_ptr[cur + 1] > kid_ptr[cur]:
                todo.extend(kid_list[kid_ptr[cur]:kid_ptr[cur + 1]].tolist())
            else:
                items.append(cur - offset[start_level])
        covs = np.unique(item_coverage[np.asarray(items, dtype=np.int64)])
        out[node] = float(coverage_tiv[covs - 1].sum())
    return out
