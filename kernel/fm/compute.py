"""Run losses through an FM plan: njit kernels over dense (slot, layer, column) arrays.

Columns are sample indices (and the special columns such as TIV or the mean that
the caller chooses to carry); every operation is per column, so the caller may cut
the columns into blocks to bound memory. ``run_fm`` is the public entry point.

State while an event is computed:

``loc[slot]``                   the work-space row of each storage slot the event touches
``loss[loc[slot], layer, col]`` loss held by each storage slot (items first)
``ext[loc[slot], layer, col, 3]`` deductible / over-limit / under-limit of each slot
``n_layers[slot]``              layers materialised in the slot; a higher layer reads layer 0

The dense ``run_fm`` gives every slot its own row (``loc`` is the identity). ``run_fm_events``
numbers only the slots an event touches, so each event range's work space has as many rows as
its busiest event touches slots, not as many as the plan has. PiWind x8's largest event touches
187,773 of the insured plan's 309,681 slots and 635,132 of the reinsurance plan's 921,713, and
ranges of smaller events need far less: a chunk process's pooled work space at 100 samples went
from 1,449 to 499 MiB (``benchmarks.chunk_memory``).

A node sums its children into its own slot (or shares its only child's slot),
applies its profile per layer (or once across layers), and with allocation rule 2
back-allocates the result pro rata onto the items below it.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from perilflow.kernel.fm.calcrules import apply_rule
from perilflow.kernel.fm.structure import FMPlan

DED, OVER, UNDER = 0, 1, 2


@njit(cache=True)
def _split_items(loss, ext, loc, n_layers, base, want, active):
    """Give items their own copy of layer 0 (loss and extras) in layers 1..want-1."""
    for b in base:
        if not active[b]:
            continue
        if n_layers[b] < want:
            for q in range(n_layers[b], want):
                loss[loc[b], q, :] = loss[loc[b], 0, :]
                ext[loc[b], q, :, :] = ext[loc[b], 0, :, :]
            n_layers[b] = want


@njit(cache=True)
def _materialise(loss, ext, loc, n_layers, s, want, with_extras, copy_extras):
    """Make layers n_layers[s]..want-1 of slot s real copies of layer 0 (extras copied or zeroed)."""
    if n_layers[s] < want:
        for q in range(n_layers[s], want):
            loss[loc[s], q, :] = loss[loc[s], 0, :]
            if with_extras:
                if copy_extras:
                    ext[loc[s], q, :, :] = ext[loc[s], 0, :, :]
                else:
                    ext[loc[s], q, :, :] = 0.0
        n_layers[s] = want


@njit(cache=True, error_model="numpy")
def _back_alloc(loss, loc, base, p, loss_in, loss_out, active, factor):
    """Allocation rule 2 without extras: scale every item by out/in, column by column (``factor``: scratch)."""
    n = loss_in.shape[0]
    for i in range(n):
        factor[i] = loss_out[i] / loss_in[i] if loss_out[i] != 0 else 0.0
    for b in base:
        if not active[b]:
            continue
        lb = loc[b]
        for i in range(n):
            loss[lb, p, i] *= factor[i]


@njit(cache=True, error_model="numpy")
def _alloc_factor(factor, loss_in, loss_out):
    """The factors ``_back_alloc`` scales items by (out/in per column), kept for a later pass."""
    for i in range(loss_in.shape[0]):
        factor[i] = loss_out[i] / loss_in[i] if loss_out[i] != 0 else 0.0


@njit(cache=True, error_model="numpy")
def _extras_factors(loss_in, loss_out, post, pre, i):
    """Factors that move loss and extras of one column from a node onto its items.

    Returns (loss factor, deductible factor, over-limit factor, under-limit factor).
    A negative deductible factor means deductible was given back to loss; negative
    over/under factors mean "multiply the item's value by -factor" instead of adding.
    """
    d_ded = post[i, DED] - pre[i, DED]
    if d_ded >= 0:
        realloc = 0.0
        if loss_in[i] > 0:
            f_ded = d_ded / loss_in[i]
            f_loss = loss_out[i] / loss_in[i]
        else:
            f_ded = 0.0
            f_loss = 0.0
    else:
        realloc = d_ded
        f_ded = d_ded / (pre[i, UNDER] if post[i, UNDER] > 0 else pre[i, DED])
        f_loss = loss_out[i] / (loss_in[i] - d_ded)
    d_over = post[i, OVER] - pre[i, OVER]
    if d_over > 0:
        f_over = d_over / (loss_in[i] - realloc)
    elif d_over == 0:
        f_over = 0.0
    else:
        f_over = -post[i, OVER] / pre[i, OVER]
    d_under = post[i, UNDER] - pre[i, UNDER]
    if d_under > 0:
        f_under = d_under / loss_in[i]
    elif d_under == 0:
        f_under = 0.0
    else:
        f_under = -post[i, UNDER] / pre[i, UNDER]
    return f_loss, f_ded, f_over, f_under


@njit(cache=True, error_model="numpy")
def _apply_extras_factors(loss_v, ext_v, f_loss, f_ded, f_over, f_under):
    """Move one item value (loss_v) and its extras (ext_v[3], in place) by the node's factors."""
    if f_ded < 0:
        realloc = f_ded * (ext_v[DED] if f_under == 0 else ext_v[UNDER])
        if f_over >= 0:
            ext_v[OVER] += f_over * (loss_v - realloc)
        else:
            ext_v[OVER] *= -f_over
        ext_v[DED] += realloc
        ext_v[UNDER] *= -f_under
        return (loss_v - realloc) * f_loss
    if f_over >= 0:
        ext_v[OVER] += f_over * loss_v
    else:
        ext_v[OVER] *= -f_over
    if f_under >= 0:
        ext_v[UNDER] += f_under * loss_v
    else:
        ext_v[UNDER] *= -f_under
    ext_v[DED] += f_ded * loss_v
    return loss_v * f_loss


@njit(cache=True, error_model="numpy")
def _back_alloc_extras(loss, ext, loc, base, p, loss_in, loss_out, post, pre, active, factors):
    """Allocation rule 2 with extras: loss, deductible and limits follow the node's changes (``factors``: scratch)."""
    n = loss_in.shape[0]
    for i in range(n):
        f = _extras_factors(loss_in, loss_out, post, pre, i)
        factors[i, 0], factors[i, 1], factors[i, 2], factors[i, 3] = f
    for b in base:
        if not active[b]:
            continue
        lb = loc[b]
        for i in range(n):
            loss[lb, p, i] = _apply_extras_factors(
                loss[lb, p, i], ext[lb, p, i], factors[i, 0], factors[i, 1], factors[i, 2], factors[i, 3]
            )


@njit(cache=True, error_model="numpy")
def _apply_profile(rules, terms, r0, r1, out, inp, e):
    for r in range(r0, r1):
        if not apply_rule(rules[r], terms[r], out, inp, e[:, DED], e[:, OVER], e[:, UNDER]):
            raise ValueError("unknown calcrule id in prepared FM profile")


@njit(cache=True, error_model="numpy", nogil=True)
def _levels(
    loss, ext, loc, n_layers, active, node_active, inp, rec_of, in_cols, allocation_rule, net, with_extras,
    level_ptr, work_ptr, work, slot, own_slot, children_ptr, children,
    slot_base_ptr, slot_base, layer_len, profile_len, cross_layer, prof_ptr, prof_rows, rules, terms,
    defer_top, top_factor,
):
    """Run every active node of the plan, level by level, on state already holding the items' losses.

    ``active[slot]`` and ``node_active[node]`` mark the slots and nodes that carry loss (see
    ``_mark_event``). ``inp[rec_of[item], in_cols[col]]`` is the items' loss before any terms (read
    only for active items, by allocation rule 1 and the net of layers). Only the nodes listed in
    ``work[work_ptr[lv]:work_ptr[lv + 1]]`` are visited (``work_nodes``: the others change nothing).

    With ``defer_top`` (allocation rule 2 without extras) the top level does not scale its items:
    top node ``t`` (``k - level_ptr[-2]``) leaves its factors in ``top_factor[t, layer]`` (1 for a
    layer without terms) and the caller applies them where it reads the items (``_fused_outputs``).
    """
    max_layers = loss.shape[1]
    n_cols = loss.shape[2]
    out = np.empty(n_cols)
    scratch = np.zeros((n_cols, 3))
    pre = np.zeros((max_layers, n_cols, 3))
    merged_in = np.empty(n_cols)
    merged_post = np.empty((n_cols, 3))
    merged_pre = np.empty((n_cols, 3))
    layer_out = np.empty((max_layers, n_cols))
    factor = np.empty(n_cols)
    factors = np.empty((n_cols, 4))
    n_levels = level_ptr.shape[0] - 1

    s_ded, s_over, s_under = scratch[:, DED], scratch[:, OVER], scratch[:, UNDER]
    top0 = level_ptr[n_levels - 1]
    for lv in range(n_levels):
        top = lv == n_levels - 1
        for j in range(work_ptr[lv], work_ptr[lv + 1]):
            k = work[j]
            if not node_active[k]:
                continue
            s = slot[k]
            ls = loc[s]
            P = profile_len[k]
            if P == 1 and not with_extras and not cross_layer[k] and not (allocation_rule == 1 and top):
                # the common node (one layer, no extras): steps 1 and 2 below with index loops, no views
                if own_slot[k]:
                    for i in range(n_cols):
                        loss[ls, 0, i] = 0.0
                    for jc in range(children_ptr[k], children_ptr[k + 1]):
                        c = children[jc]
                        if active[c]:
                            lc = loc[c]
                            for i in range(n_cols):
                                loss[ls, 0, i] += loss[lc, 0, i]
                    n_layers[s] = 1
                b0, b1 = slot_base_ptr[s], slot_base_ptr[s + 1]
                scales = allocation_rule == 2 and b1 - b0 > 1
                r0, r1 = prof_rows[prof_ptr[k], 0], prof_rows[prof_ptr[k], 1]
                if r1 <= r0:
                    if scales and defer_top and top:
                        top_factor[k - top0, 0, :] = 1.0
                    continue
                row = loss[ls, 0]
                for r in range(r0, r1):
                    if not apply_rule(rules[r], terms[r], out, row, s_ded, s_over, s_under):
                        raise ValueError("unknown calcrule id in prepared FM profile")
                if scales and defer_top and top:
                    _alloc_factor(top_factor[k - top0, 0], row, out)
                elif scales:
                    _alloc_factor(factor, row, out)
                    for jb in range(b0, b1):
                        b = slot_base[jb]
                        if active[b]:
                            lb = loc[b]
                            for i in range(n_cols):
                                loss[lb, 0, i] *= factor[i]
                for i in range(n_cols):
                    loss[ls, 0, i] = out[i]
                continue

            kids = children[children_ptr[k]:children_ptr[k + 1]]
            base = slot_base[slot_base_ptr[s]:slot_base_ptr[s + 1]]

            # 1. bring the node's loss (and extras) into slot s, one row per layer
            if kids.shape[0] == 0:
                _materialise(loss, ext, loc, n_layers, s, P, with_extras, False)
            elif own_slot[k]:
                for p in range(P):
                    for i in range(n_cols):
                        loss[ls, p, i] = 0.0
                    if with_extras:
                        ext[ls, p, :, :] = 0.0
                    for c in kids:
                        if not active[c]:
                            continue
                        if p == 1 and n_layers[c] <= 1:
                            cb = slot_base[slot_base_ptr[c]:slot_base_ptr[c + 1]]
                            if with_extras:
                                _split_items(loss, ext, loc, n_layers, cb, P, active)
                            else:
                                _split_items_loss(loss, loc, n_layers, cb, P, active)
                        q = p if p < n_layers[c] else 0
                        lc = loc[c]
                        for i in range(n_cols):
                            loss[ls, p, i] += loss[lc, q, i]
                        if with_extras:
                            ext[ls, p, :, :] += ext[lc, q, :, :]
                    if with_extras:
                        pre[p] = ext[ls, p]
                n_layers[s] = P
            else:
                if P > 1 and n_layers[s] < P:
                    _materialise(loss, ext, loc, n_layers, s, P, with_extras, True)
                    if base.shape[0] > 1:
                        if with_extras:
                            _split_items(loss, ext, loc, n_layers, base, P, active)
                        else:
                            _split_items_loss(loss, loc, n_layers, base, P, active)
                if with_extras and base.shape[0] > 1:
                    for p in range(P):
                        pre[p] = ext[ls, p]

            realloc_to_items = allocation_rule == 2 and base.shape[0] > 1
            deferred = realloc_to_items and defer_top and lv == n_levels - 1
            if deferred:
                top_factor[k - top0, :P, :] = 1.0

            # 2. apply the terms
            if cross_layer[k]:
                r0, r1 = prof_rows[prof_ptr[k], 0], prof_rows[prof_ptr[k], 1]
                if r1 > r0:
                    L = layer_len[k]
                    merged_in[:] = 0.0
                    merged_post[:, :] = 0.0
                    for q in range(L):
                        qq = q if q < n_layers[s] else 0
                        merged_in += loss[ls, qq, :]
                        if with_extras:
                            merged_post += ext[ls, qq, :, :]
                    merged_pre[:, :] = merged_post
                    e = merged_post if with_extras else scratch
                    _apply_profile(rules, terms, r0, r1, out, merged_in, e)
                    for i in range(n_cols):
                        if with_extras:
                            fl, fd, fo, fu = _extras_factors(merged_in, out, merged_post, merged_pre, i)
                            for q in range(L):
                                layer_out[q, i] = _apply_extras_factors(loss[ls, q, i], ext[ls, q, i], fl, fd, fo, fu)
                        else:
                            f = out[i] / merged_in[i] if out[i] != 0 else 0.0
                            for q in range(L):
                                layer_out[q, i] = loss[ls, q, i] * f
                    for p in range(P):
                        if deferred:
                            _alloc_factor(top_factor[k - top0, p], loss[ls, p], layer_out[p])
                        elif realloc_to_items:
                            if with_extras:
                                _back_alloc_extras(loss, ext, loc, base, p, loss[ls, p], layer_out[p], ext[ls, p],
                                                   pre[p], active, factors)
                            else:
                                _back_alloc(loss, loc, base, p, loss[ls, p], layer_out[p], active, factor)
                        loss[ls, p, :] = layer_out[p]
            else:
                for p in range(P):
                    r0, r1 = prof_rows[prof_ptr[k] + p, 0], prof_rows[prof_ptr[k] + p, 1]
                    if r1 <= r0:
                        continue
                    e = ext[ls, p] if with_extras else scratch
                    _apply_profile(rules, terms, r0, r1, out, loss[ls, p], e)
                    if deferred:
                        _alloc_factor(top_factor[k - top0, p], loss[ls, p], out)
                    elif realloc_to_items:
                        if with_extras:
                            _back_alloc_extras(loss, ext, loc, base, p, loss[ls, p], out, ext[ls, p], pre[p], active,
                                               factors)
                        else:
                            _back_alloc(loss, loc, base, p, loss[ls, p], out, active, factor)
                    for i in range(n_cols):
                        loss[ls, p, i] = out[i]

            # 3. allocation rule 1: at the top, items get their share of the top loss pro rata to ground up
            if allocation_rule == 1 and lv == n_levels - 1 and base.shape[0] > 1:
                _split_items_loss(loss, loc, n_layers, base, P, active)
                for i in range(n_cols):
                    total = 0.0
                    for b in base:
                        if active[b]:
                            total += inp[rec_of[b], in_cols[i]]
                    for p in range(P):
                        v = loss[ls, p, i]
                        f = v / total if v != 0 else 0.0
                        for b in base:
                            if active[b]:
                                loss[loc[b], p, i] = inp[rec_of[b], in_cols[i]] * f

    # 4. net of the layers (reinsurance): each layer's net is what is left after it
    if net:
        for k in range(level_ptr[0], level_ptr[1]):
            s = slot[k]
            if not active[s]:
                continue
            ls = loc[s]
            _split_items_loss(loss, loc, n_layers, slot_base[slot_base_ptr[s]:slot_base_ptr[s + 1]], layer_len[k],
                              active)
            for i in range(n_cols):
                prev = inp[rec_of[s], in_cols[i]]
                for q in range(layer_len[k]):
                    v = prev - loss[ls, q, i]
                    v = v if v > 0 else 0.0
                    loss[ls, q, i] = v
                    prev = v



@njit(cache=True, error_model="numpy", nogil=True)
def _compute(
    inp, allocation_rule, net, with_extras,
    n_slots, max_layers, level_ptr, work_ptr, work, slot, own_slot, children_ptr, children,
    slot_base_ptr, slot_base, layer_len, profile_len, cross_layer, prof_ptr, prof_rows,
    rules, terms, out_node, out_layer,
):
    """Dense run: every item is present (zero loss is a loss like any other)."""
    n_items, n_cols = inp.shape
    loss = np.zeros((n_slots, max_layers, n_cols))
    ext = np.zeros((n_slots if with_extras else 1, max_layers, n_cols, 3))
    n_layers = np.ones(n_slots, dtype=np.int64)
    active = np.ones(n_slots, dtype=np.bool_)
    node_active = np.ones(slot.shape[0], dtype=np.bool_)
    rec_of = np.arange(n_items)
    in_cols = np.arange(n_cols)
    loc = np.arange(n_slots)   # every slot is active: the work space has a row per slot of the plan
    loss[:n_items, 0, :] = inp
    _levels(loss, ext, loc, n_layers, active, node_active, inp, rec_of, in_cols, allocation_rule, net, with_extras,
            level_ptr, work_ptr, work, slot, own_slot, children_ptr, children,
            slot_base_ptr, slot_base, layer_len, profile_len, cross_layer, prof_ptr, prof_rows, rules, terms,
            False, np.empty((0, max_layers, n_cols)))
    result = np.empty((out_node.shape[0], n_cols))
    for o in range(out_node.shape[0]):
        s = slot[out_node[o]]
        q = out_layer[o] if out_layer[o] < n_layers[s] else 0
        result[o, :] = loss[s, q, :]
    return result


@njit(cache=True, nogil=True)
def _mark_event(item_rows, active, node_active, start_nodes, slot, own_slot, kid_of_ptr, kid_of, stack, loc):
    """Mark the given item rows and every node (and node slot) above them; work is proportional to those.

    ``active`` and ``node_active`` must be all False on entry. A node is active when one of its
    children slots is; a node that owns its slot makes that slot active (which in turn
    activates the nodes having it as a child). Active slots get the work-space rows 0, 1, ...
    in ``loc[slot]`` (the others keep stale values and must not be read). Returns the number of
    active slots.
    """
    n = 0
    n_slots = 0
    for r in item_rows:
        if not active[r]:
            active[r] = True
            loc[r] = n_slots
            n_slots += 1
            node_active[start_nodes[r]] = True
            stack[n] = r
            n += 1
    while n > 0:
        n -= 1
        c = stack[n]
        for j in range(kid_of_ptr[c], kid_of_ptr[c + 1]):
            k = kid_of[j]
            if not node_active[k]:
                node_active[k] = True
                if own_slot[k]:
                    s = slot[k]
                    if not active[s]:
                        active[s] = True
                        loc[s] = n_slots
                        n_slots += 1
                        stack[n] = s
                        n += 1
    return n_slots


@njit(cache=True, nogil=True)
def _event_outputs(records, node_active, out_node, item_out_ptr, item_outs, outs):
    """Write an event's output rows into ``outs`` in the reference's (fmpy's) order; returns how many.

    With outputs at the items (``item_out_ptr`` has a row per item; allocation rules 1-3) they come
    record by record in the order of the event's input records, each item's layers in order: fmpy
    writes its item level in the order the items came in, so the next pass and the summaries add
    the outputs in the reference's order. Outputs above the items (rule 0) come in output-id order.
    """
    n = 0
    if item_out_ptr.shape[0] > 1:
        for r in records:
            for j in range(item_out_ptr[r], item_out_ptr[r + 1]):
                outs[n] = item_outs[j]
                n += 1
    else:
        for o in range(out_node.shape[0]):
            if node_active[out_node[o]]:
                outs[n] = o
                n += 1
    return n


@njit(cache=True, nogil=True)
def _count_outputs(event_ptr, item_row, n_slots, start_nodes, slot, own_slot, kid_of_ptr, kid_of, out_node,
                   item_out_ptr, item_outs):
    """Per event: the outputs that carry loss (those above at least one hit item), and the slots it
    touches (the work-space rows it needs)."""
    n_events = event_ptr.shape[0] - 1
    counts = np.zeros(n_events, dtype=np.int64)
    rows = np.zeros(n_events, dtype=np.int64)
    active = np.zeros(n_slots, dtype=np.bool_)
    node_active = np.zeros(slot.shape[0], dtype=np.bool_)
    stack = np.empty(n_slots, dtype=np.int64)
    loc = np.empty(n_slots, dtype=np.int64)
    outs = np.empty(out_node.shape[0], dtype=np.int64)
    for e in range(n_events):
        active[:] = False
        node_active[:] = False
        records = item_row[event_ptr[e]:event_ptr[e + 1]]
        rows[e] = _mark_event(records, active, node_active, start_nodes, slot, own_slot, kid_of_ptr, kid_of, stack,
                              loc)
        counts[e] = _event_outputs(records, node_active, out_node, item_out_ptr, item_outs, outs)
    return counts, rows


@njit(cache=True, error_model="numpy", nogil=True)
def _compute_events(
    e0, e1, event_ptr, item_row, losses, in_cols, out_ptr, out_index, out_losses, out_cols, loss, ext,
    n_items, allocation_rule, net, with_extras, start_nodes, kid_of_ptr, kid_of,
    n_slots, max_layers, level_ptr, work_ptr, work, slot, own_slot, children_ptr, children,
    slot_base_ptr, slot_base, layer_len, profile_len, cross_layer, prof_ptr, prof_rows,
    rules, terms, out_node, out_layer, defer_top, top_of, item_out_ptr, item_outs,
):
    """Sparse run of events e0..e1-1: only the hit items and the nodes above them are computed.

    ``loss[n_rows, max_layers, n_cols]`` and ``ext`` (``[n_rows, max_layers, n_cols, 3]`` with
    extras) are work space with a row for each slot an event touches: ``_mark_event`` numbers the
    event's active slots 0, 1, ... in ``loc[slot]``, so ``n_rows`` is the most any event of the range
    touches (``_count_outputs``), not the plan's slot count. Their content on entry is never read:
    every value an event reads was written by that event (items' rows from ``losses``, node slots
    zeroed and summed).
    The FM's column ``i`` is ``losses[:, in_cols[i]]`` and goes to ``out_losses[:, out_cols[i]]``.
    With ``defer_top`` the top level's back-allocation, the net of the layers and the output
    records are one pass (``_fused_outputs``; ``top_of[item]``: the item's top node or -1).
    Each event's output records come in ``_event_outputs``' order.
    """
    n_cols = in_cols.shape[0]
    n_levels = level_ptr.shape[0] - 1
    top0 = level_ptr[n_levels - 1]
    # NaN until a top node sets its factors: reading one it did not set would show in every output
    top_factor = np.full((level_ptr[n_levels] - top0 if defer_top else 0, max_layers, n_cols), np.nan)
    n_layers = np.ones(n_slots, dtype=np.int64)
    active = np.zeros(n_slots, dtype=np.bool_)
    node_active = np.zeros(slot.shape[0], dtype=np.bool_)
    stack = np.empty(n_slots, dtype=np.int64)
    loc = np.zeros(n_slots, dtype=np.int64)
    rec_of = np.zeros(n_items, dtype=np.int64)
    outs = np.empty(out_node.shape[0], dtype=np.int64)
    for e in range(e0, e1):
        active[:] = False
        node_active[:] = False
        _mark_event(item_row[event_ptr[e]:event_ptr[e + 1]], active, node_active, start_nodes, slot, own_slot,
                    kid_of_ptr, kid_of, stack, loc)
        for rec in range(event_ptr[e], event_ptr[e + 1]):
            r = item_row[rec]
            n_layers[r] = 1
            rec_of[r] = rec
            lr = loc[r]
            for i in range(n_cols):
                loss[lr, 0, i] = losses[rec, in_cols[i]]
            if with_extras:
                ext[lr, :, :, :] = 0.0
        _levels(loss, ext, loc, n_layers, active, node_active, losses, rec_of, in_cols, allocation_rule,
                net and not defer_top, with_extras,
                level_ptr, work_ptr, work, slot, own_slot, children_ptr, children,
                slot_base_ptr, slot_base, layer_len, profile_len, cross_layer, prof_ptr, prof_rows, rules, terms,
                defer_top, top_factor)
        n_out = _event_outputs(item_row[event_ptr[e]:event_ptr[e + 1]], node_active, out_node, item_out_ptr,
                               item_outs, outs)
        if defer_top:
            _fused_outputs(out_ptr[e], outs[:n_out], loss, loc, n_layers, losses, rec_of, in_cols, net, slot,
                           layer_len, profile_len, top0, top_of, top_factor, out_node, out_layer, out_index, out_losses,
                           out_cols)
            continue
        w = out_ptr[e]
        for o in outs[:n_out]:
            s = slot[out_node[o]]
            q = out_layer[o] if out_layer[o] < n_layers[s] else 0
            out_index[w] = o
            ls = loc[s]
            for i in range(n_cols):
                out_losses[w, out_cols[i]] = loss[ls, q, i]
            w += 1


@njit(cache=True, error_model="numpy", nogil=True)
def _fused_outputs(w, outs, loss, loc, n_layers, inp, rec_of, in_cols, net, slot, layer_len, profile_len,
                   top0, top_of, top_factor, out_node, out_layer, out_index, out_losses, out_cols):
    """Output records of one event whose top level deferred its back-allocation (``_levels``).

    Item ``s``'s layer ``q`` is its row times its top node's factor (when that node has terms for
    layer ``q``), a layer it lacks is a copy of layer 0, and with ``net`` each layer's net is what
    is left after it: the same operations as back-allocation, the net pass and the output copy,
    in one read of each item row. ``outs``: the event's output rows (``_event_outputs``), item nodes
    (allocation rule 2). Returns the next row.
    """
    n_cols = in_cols.shape[0]
    for o in outs:
        k = out_node[o]
        s = slot[k]
        ls = loc[s]
        t = top_of[s]
        scaled = profile_len[top0 + t] if t >= 0 else 0   # layers the top node scaled
        nl = n_layers[s]
        n_net = layer_len[k] if net else 0
        q = out_layer[o]
        if q >= max(nl, n_net):
            q = 0
        out_index[w] = o
        for i in range(n_cols):
            if q < n_net:
                prev = inp[rec_of[s], in_cols[i]]
                for qq in range(q + 1):
                    src = qq if qq < nl else 0
                    v = loss[ls, src, i] * top_factor[t, src, i] if src < scaled else loss[ls, src, i]
                    v = prev - v
                    prev = v if v > 0 else 0.0
                out_losses[w, out_cols[i]] = prev
            else:
                out_losses[w, out_cols[i]] = loss[ls, q, i] * top_factor[t, q, i] if q < scaled else loss[ls, q, i]
        w += 1
    return w


@njit(cache=True)
def _split_items_loss(loss, loc, n_layers, base, want, active):
    """As ``_split_items`` for runs that carry no extras."""
    for b in base:
        if not active[b]:
            continue
        if n_layers[b] < want:
            for q in range(n_layers[b], want):
                loss[loc[b], q, :] = loss[loc[b], 0, :]
            n_layers[b] = want


def slot_bases(plan: FMPlan) -> tuple[np.ndarray, np.ndarray]:
    """CSR (ptr, items) of the item slots under every storage slot (computed once per plan)."""
    if plan.slot_base_cache is not None:
        return plan.slot_base_cache
    n_items = plan.n_items
    sizes = np.ones(plan.n_slots, dtype=np.int64)
    owners = plan.slot[plan.own_slot]
    counts = plan.base_ptr[1:] - plan.base_ptr[:-1]
    sizes[owners] = counts[plan.own_slot]
    ptr = np.zeros(plan.n_slots + 1, dtype=np.int64)
    np.cumsum(sizes, out=ptr[1:])
    flat = np.empty(ptr[-1], dtype=np.int64)
    flat[ptr[:n_items]] = np.arange(n_items)
    for k in np.flatnonzero(plan.own_slot).tolist():
        s = int(plan.slot[k])
        flat[ptr[s]:ptr[s + 1]] = plan.base[plan.base_ptr[k]:plan.base_ptr[k + 1]]
    plan.slot_base_cache = (ptr, flat)
    return ptr, flat


_WORK: list[np.ndarray] = []   # work space of finished event ranges, reused by the next ones
_WORK_LOCK = threading.Lock()


def _take_work(n: int) -> np.ndarray:
    """A float64 work buffer of at least ``n`` values (first-touching hundreds of MB per call costs more
    than the FM of a small event block)."""
    if n < 2**17:
        return np.zeros(n)
    with _WORK_LOCK:
        fits = [i for i, b in enumerate(_WORK) if b.shape[0] >= n]
        if fits:
            return _WORK.pop(min(fits, key=lambda i: _WORK[i].shape[0]))
        if _WORK:  # none is large enough: drop the largest, a larger one takes its place
            _WORK.pop(max(range(len(_WORK)), key=lambda i: _WORK[i].shape[0]))
    return np.zeros(n)


def _give_work(*bufs: np.ndarray) -> None:
    with _WORK_LOCK:
        _WORK.extend(b for b in bufs if b.shape[0] >= 2**17)


def kept_work_space() -> int:
    """Bytes of FM work space kept between ``run_fm_events`` calls."""
    with _WORK_LOCK:
        return sum(b.nbytes for b in _WORK)


def release_work_space() -> None:
    """Free the work space kept between ``run_fm_events`` calls (e.g. at the end of a chunk)."""
    with _WORK_LOCK:
        _WORK.clear()


def slot_parents(plan: FMPlan) -> tuple[np.ndarray, np.ndarray]:
    """CSR (ptr, nodes) of the nodes having each slot as a child (computed once per plan)."""
    if plan.slot_parents_cache is not None:
        return plan.slot_parents_cache
    n_kids = plan.children_ptr[1:] - plan.children_ptr[:-1]
    node_of_entry = np.repeat(np.arange(n_kids.shape[0], dtype=np.int64), n_kids)
    order = np.argsort(plan.children, kind="stable")
    ptr = np.zeros(plan.n_slots + 1, dtype=np.int64)
    np.cumsum(np.bincount(plan.children, minlength=plan.n_slots), out=ptr[1:])
    plan.slot_parents_cache = (ptr, node_of_entry[order])
    return plan.slot_parents_cache


def work_nodes(plan: FMPlan) -> tuple[np.ndarray, np.ndarray]:
    """CSR (ptr per level, nodes) of the nodes that change anything (computed once per plan).

    A node changes nothing when it shares its child's slot (or is an item), has one layer, no
    profile rows (or only no-op ones, which the plan leaves empty) and is not where allocation
    rule 1 spreads the top loss: the level loop skips it (PiWind's items, 310k-620k a pass).
    """
    if plan.work_nodes_cache is not None:
        return plan.work_nodes_cache
    counts = np.concatenate(([0], np.cumsum(plan.prof_rows[:, 1] > plan.prof_rows[:, 0])))
    has_rows = counts[plan.prof_ptr[1:]] > counts[plan.prof_ptr[:-1]]
    top = np.arange(plan.slot.shape[0]) >= plan.level_ptr[-2]
    spreads = (plan.allocation_rule == 1) & top & (np.diff(plan.base_ptr) > 1)
    no_op = ~plan.own_slot & (plan.profile_len == 1) & ~has_rows & ~spreads
    work = np.flatnonzero(~no_op).astype(np.int64)
    plan.work_nodes_cache = (np.searchsorted(work, plan.level_ptr).astype(np.int64), work)
    return plan.work_nodes_cache


def top_items(plan: FMPlan) -> np.ndarray | None:
    """Top-level node (index within the top level) of every item, or None when the top level's
    back-allocation cannot be fused with the output pass (not allocation rule 2, extras, or
    outputs above the items). Items under a top node that scales nothing (a single item, or a
    node ``work_nodes`` skips) map to -1."""
    if plan.top_items_cache is not None:
        return plan.top_items_cache if plan.top_items_cache.shape[0] else None
    n_levels = plan.level_ptr.shape[0] - 1
    fusable = (plan.allocation_rule == 2 and not plan.needs_extras and n_levels >= 2
               and bool(np.all(plan.out_node < plan.level_ptr[1])))
    top_of = np.full(plan.n_items if fusable else 0, -1, dtype=np.int64)
    if fusable:
        top0 = int(plan.level_ptr[-2])
        work_ptr, work = work_nodes(plan)
        for k in work[work_ptr[-2]:work_ptr[-1]].tolist():   # the others scale nothing
            b0, b1 = plan.base_ptr[k], plan.base_ptr[k + 1]
            if b1 - b0 > 1:
                top_of[plan.base[b0:b1]] = k - top0
    plan.top_items_cache = top_of
    return top_of if fusable else None


def item_outputs(plan: FMPlan) -> tuple[np.ndarray, np.ndarray]:
    """CSR (ptr per item, output rows in layer order) of the outputs at the items, or two empty arrays
    when some output is above the items (allocation rule 0). Computed once per plan."""
    if plan.item_outputs_cache is not None:
        return plan.item_outputs_cache
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if plan.out_node.shape[0] == 0 or not bool(np.all(plan.out_node < plan.level_ptr[1])):
        plan.item_outputs_cache = empty
        return empty
    order = np.lexsort((plan.out_layer, plan.out_node)).astype(np.int64)   # item node = item row
    ptr = np.zeros(plan.n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(plan.out_node, minlength=plan.n_items), out=ptr[1:])
    plan.item_outputs_cache = (ptr, order)
    return plan.item_outputs_cache


def run_fm(
    plan: FMPlan, losses: np.ndarray, net: bool = False, block: int = 64, threads: int | None = None
) -> np.ndarray:
    """Apply the financial structure to item losses.

    Parameters
    ----------
    plan : FMPlan from ``structure.build_plan``
    losses : float64[n_items, n_cols]
        loss of item ``i+1`` in row ``i``; columns are samples (and any special
        columns the caller carries, e.g. TIV); each column is computed independently
    net : bool
        output the loss net of the layers (reinsurance passes) instead of the layer losses
    block : int
        number of columns computed together (bounds memory: slots x layers x block x 8 bytes)
    threads : int, optional
        column blocks computed at once (the kernel releases the GIL); default: the CPU count

    Returns
    -------
    float64[n_outputs, n_cols]: loss of each output, rows in ``plan.output_id`` order
    """
    losses = np.asarray(losses)
    if losses.ndim != 2:
        raise ValueError(f"losses must be 2-D (items, columns), got shape {losses.shape}")
    if losses.shape[0] != plan.n_items:
        raise ValueError(
            f"losses has {losses.shape[0]} rows but the financial structure has {plan.n_items} items; "
            "pass one row per item_id 1..n"
        )
    if losses.dtype != np.float64:
        raise ValueError(f"losses must be float64, got {losses.dtype}; convert with .astype(np.float64)")
    if block < 1:
        raise ValueError("block must be at least 1")
    ptr, flat = slot_bases(plan)
    work_ptr, work = work_nodes(plan)
    n_cols = losses.shape[1]
    result = np.empty((plan.output_id.shape[0], n_cols))
    starts = list(range(0, n_cols, block))

    def one_block(c0: int) -> None:
        c1 = min(c0 + block, n_cols)
        result[:, c0:c1] = _compute(
            np.ascontiguousarray(losses[:, c0:c1]), plan.allocation_rule, net, plan.needs_extras,
            plan.n_slots, plan.max_layers, plan.level_ptr, work_ptr, work, plan.slot, plan.own_slot,
            plan.children_ptr, plan.children, ptr, flat, plan.layer_len, plan.profile_len,
            plan.cross_layer, plan.prof_ptr, plan.prof_rows, plan.rules, plan.terms,
            plan.out_node, plan.out_layer,
        )

    workers = min(len(starts), threads or os.cpu_count() or 1)
    if workers <= 1:
        for c0 in starts:
            one_block(c0)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one_block, starts))
    return result


# FM work space of one event range: beyond it, run_fm_events computes the columns in blocks. Each
# block walks the events again, and the walk (node metadata read from memory) costs about as much
# as 10 columns. Measured on PiWind x8's largest event at 100 samples (635,132 reinsurance rows, 103
# FM columns, IL + RI CPU on one thread): 1 GiB (one block) 0.48 s, 256 MiB (two) 0.56 s, 128 MiB
# (four) 0.99 s, 64 MiB 1.38 s. The losses stage passes its record budget (``work_bytes``); this
# default bounds the rest (1,000 samples on that event would need 4.7 GiB in its reinsurance pass,
# computed: 635,132 rows x 1,003 columns x 8 bytes).
WORK_BYTES = 2**30


def column_blocks(n_cols: int, plan: FMPlan, column_block: int | None = None, rows: int | None = None,
                  work_bytes: int | None = None) -> np.ndarray:
    """Bounds (int64[n_blocks + 1]) of the column blocks ``run_fm_events`` computes one after the other.

    ``column_block`` columns at a time, or by default as many as keep the work space (a row of
    ``max_layers`` layers per slot an event touches, four with extras; ``rows`` slots, by default
    all of the plan's) within ``work_bytes`` (default ``WORK_BYTES``), and at least 8. Blocks have
    near-equal widths.
    """
    if column_block is None:
        rows = plan.n_slots if rows is None else rows
        per_column = 8 * rows * plan.max_layers * (4 if plan.needs_extras else 1)
        budget = WORK_BYTES if work_bytes is None else work_bytes
        if budget < 1:
            raise ValueError(f"work_bytes {work_bytes}: give a positive number of bytes (or None)")
        column_block = max(8, budget // max(per_column, 1))
    elif column_block < 1:
        raise ValueError(f"column_block {column_block}: give a positive number of columns (or None)")
    n_blocks = max(1, -(-n_cols // int(column_block)))
    return np.linspace(0, n_cols, n_blocks + 1).round().astype(np.int64)


def run_fm_events(
    plan: FMPlan,
    event_ptr: np.ndarray,
    item_row: np.ndarray,
    losses: np.ndarray,
    net: bool = False,
    threads: int | None = None,
    columns: np.ndarray | None = None,
    out_columns: np.ndarray | None = None,
    out_width: int | None = None,
    fuse_top: bool = True,
    column_block: int | None = None,
    work_bytes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the financial structure to many events, computing only what each event touches.

    Parameters
    ----------
    plan : FMPlan
    event_ptr : int64[n_events + 1]
        event ``e`` owns records ``event_ptr[e]:event_ptr[e + 1]``
    item_row : int64[n_records]
        item row (item_id - 1) of each record; an item appears at most once per event
    losses : float64 or float32[n_records, n_cols]
        loss columns of each record (samples and the special columns the caller carries)
    net : bool
        net of the layers (reinsurance passes)
    threads : int, optional
        event ranges computed at once (default: the CPU count)
    columns : int64[n_fm_cols], optional
        the columns of ``losses`` the FM computes, in order (default: all of them)
    out_columns, out_width : optional
        write FM column ``i`` to column ``out_columns[i]`` of ``out_losses``, which then has
        ``out_width`` columns, the others zero (default: the FM columns in order)
    fuse_top : bool
        fuse the top level's back-allocation with the net and output passes where the plan allows
        it (``top_items``); False computes them one after the other (same results, for tests)
    column_block : int, optional
        FM columns computed at once (default: as many as fit ``WORK_BYTES`` of work space, see
        ``column_blocks``); the results are the same for any block size.
    work_bytes : int, optional
        the work space each event range may hold when ``column_block`` is not given (default
        ``WORK_BYTES``); smaller means more column blocks, each walking the events again.

    Returns
    -------
    out_ptr : int64[n_events + 1]   CSR of the outputs per event
    out_index : int64[n_out]        row into ``plan.output_id`` of each output record, in the reference's
                                    order: outputs at the items (allocation rules 1-3) record by record as
                                    ``item_row`` lists them, each item's layers in order; outputs above
                                    the items (rule 0) in increasing output id
    out_losses : float64 or float32[n_out, out_width]
        the dtype of ``losses``: the FM computes in float64 and a float32 output holds each result
        rounded once, as the reference's float32 stream between its FM processes

    Outputs of an event are those above at least one of its items; items absent from an
    event carry no loss, exactly as in the dense ``run_fm``.
    """
    event_ptr = np.asarray(event_ptr, dtype=np.int64)
    item_row = np.asarray(item_row, dtype=np.int64)
    if losses.ndim != 2 or losses.dtype not in (np.float64, np.float32):
        raise ValueError(f"losses must be a 2-D float64 or float32 array, got {losses.dtype} with shape "
                         f"{losses.shape}; convert it with losses.astype(np.float64)")
    if event_ptr.ndim != 1 or event_ptr.shape[0] < 1 or event_ptr[0] != 0 or event_ptr[-1] != losses.shape[0]:
        raise ValueError("event_ptr must start at 0 and end at len(losses) (CSR offsets of each event's records)")
    if item_row.shape[0] != losses.shape[0]:
        raise ValueError(f"item_row has {item_row.shape[0]} entries for {losses.shape[0]} loss records")
    if item_row.shape[0] and (item_row.min() < 0 or item_row.max() >= plan.n_items):
        raise ValueError(f"item_row values must be item rows 0..{plan.n_items - 1} (item_id - 1)")
    in_cols = np.arange(losses.shape[1], dtype=np.int64) if columns is None else np.asarray(columns, dtype=np.int64)
    if in_cols.ndim != 1 or (in_cols.shape[0] and (in_cols.min() < 0 or in_cols.max() >= losses.shape[1])):
        raise ValueError(f"columns must be column indices of losses (0..{losses.shape[1] - 1})")
    n_cols = in_cols.shape[0]
    out_cols = np.arange(n_cols, dtype=np.int64) if out_columns is None else np.asarray(out_columns, dtype=np.int64)
    width = n_cols if out_width is None else int(out_width)
    if out_cols.shape != (n_cols,) or (n_cols and (out_cols.min() < 0 or out_cols.max() >= width)) \
            or np.unique(out_cols).shape[0] != n_cols:
        raise ValueError(f"out_columns must give each of the {n_cols} FM columns its own column below out_width")
    ptr, flat = slot_bases(plan)
    work_ptr, work = work_nodes(plan)
    kid_of_ptr, kid_of = slot_parents(plan)
    top_of = top_items(plan) if fuse_top else None
    n_events = event_ptr.shape[0] - 1
    item_out_ptr, item_outs = item_outputs(plan)
    counts, rows = _count_outputs(event_ptr, item_row, plan.n_slots, plan.start_nodes, plan.slot, plan.own_slot,
                                  kid_of_ptr, kid_of, plan.out_node, item_out_ptr, item_outs)
    out_ptr = np.zeros(n_events + 1, dtype=np.int64)
    np.cumsum(counts, out=out_ptr[1:])
    out_index = np.empty(out_ptr[-1], dtype=np.int64)
    shape = (out_ptr[-1], width)
    out_losses = np.empty(shape, losses.dtype) if width == n_cols else np.zeros(shape, losses.dtype)
    workers = max(1, min(n_events, threads or os.cpu_count() or 1))
    # event ranges with about the same number of records (events differ in size by orders of magnitude)
    targets = np.linspace(0, event_ptr[-1], workers + 1)[1:-1]
    bounds = np.concatenate(([0], np.searchsorted(event_ptr, targets, side="left"), [n_events])).astype(np.int64)

    # work space: a row per slot the range's busiest event touches (a share of the plan's slots)
    range_rows = [int(rows[bounds[w]:bounds[w + 1]].max(initial=0)) for w in range(workers)]
    col_bounds = column_blocks(n_cols, plan, column_block, rows=max(range_rows, default=0), work_bytes=work_bytes)
    widest = int(np.diff(col_bounds).max())   # 0 without columns (bounds [0, 0])

    def one_range(w: int) -> None:
        if bounds[w + 1] <= bounds[w]:
            return
        n_rows = max(1, range_rows[w])
        ext_rows = n_rows if plan.needs_extras else 1
        loss_buf = _take_work(n_rows * plan.max_layers * widest)
        ext_buf = _take_work(ext_rows * plan.max_layers * widest * 3)
        try:
            for c0, c1 in zip(col_bounds[:-1], col_bounds[1:], strict=True):
                width = int(c1 - c0)
                loss = loss_buf[:n_rows * plan.max_layers * width].reshape(n_rows, plan.max_layers, width)
                ext = ext_buf[:ext_rows * plan.max_layers * width * 3].reshape(ext_rows, plan.max_layers, width, 3)
                _compute_range(w, in_cols[c0:c1], out_cols[c0:c1], loss, ext)
        finally:
            _give_work(loss_buf, ext_buf)

    def _compute_range(w: int, in_block: np.ndarray, out_block: np.ndarray, loss: np.ndarray, ext: np.ndarray) -> None:
        _compute_events(
            bounds[w], bounds[w + 1], event_ptr, item_row, losses, in_block, out_ptr, out_index, out_losses, out_block,
            loss, ext,
            plan.n_items, plan.allocation_rule, net, plan.needs_extras, plan.start_nodes, kid_of_ptr, kid_of,
            plan.n_slots, plan.max_layers, plan.level_ptr, work_ptr, work, plan.slot, plan.own_slot,
            plan.children_ptr, plan.children, ptr, flat, plan.layer_len, plan.profile_len,
            plan.cross_layer, plan.prof_ptr, plan.prof_rows, plan.rules, plan.terms,
            plan.out_node, plan.out_layer, top_of is not None,
            top_of if top_of is not None else np.zeros(0, dtype=np.int64), item_out_ptr, item_outs,
        )

    if workers == 1:
        one_range(0)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one_range, range(workers)))
    return out_ptr, out_index, out_losses
