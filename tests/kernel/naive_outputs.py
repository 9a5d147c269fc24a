"""Slow, obviously-correct twins of the ORD output kernels, plus synthetic data for the tests.

Everything here is plain Python over lists and numpy scalars, written from the rules in the
kernel modules' docstrings (themselves read from the Oasis reference), one value at a time.
float32 behaviour is spelled out with ``np.float32(...)`` where the reference rounds.

Also here: :func:`synthetic_case`, a small random portfolio / event set used by the property
and merge tests, and :func:`write_reference_inputs` / :func:`loss_stream_bytes`, which write
the same case in the Oasis formats for the opt-in comparison with the reference tools.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

F4 = np.float32


# ---------------------------------------------------------------------------------------------
# summaries


def naive_summarise(event_ids, event_ptr, ids, losses, id_to_summary, id_to_risk=None, keep_zeros=False):
    """List of records ``(event, summary, expval, [max, risks, mean, s1..sN])`` in event / summary order."""
    n_samples = losses.shape[1] - 5
    out = []
    for e in sorted(range(len(event_ids)), key=lambda k: event_ids[k]):
        acc: dict[int, list] = {}
        hit: set = set()
        for r in range(event_ptr[e], event_ptr[e + 1]):
            item = int(ids[r])
            new_risk = 0
            if id_to_risk is not None:
                risk = int(id_to_risk[item])
                if risk not in hit:
                    hit.add(risk)
                    new_risk = 1
            s = int(id_to_summary[item])
            if s not in acc:
                acc[s] = [F4(0)] * (4 + n_samples)  # tiv, max, risks, mean, samples
                acc[s][2] = F4(1)
            elif id_to_risk is not None:
                acc[s][2] = F4(float(acc[s][2]) + new_risk)

            vals = [F4(0) if math.isnan(F4(x)) else F4(x) for x in losses[r]]
            a = acc[s]
            a[0] = F4(float(a[0]) + float(vals[2]))
            a[1] = F4(float(a[1]) + float(vals[0]))
            a[3] = F4(float(a[3]) + float(vals[4]))
            for j in range(n_samples):
                a[4 + j] = F4(float(a[4 + j]) + float(vals[5 + j]))
        for s in sorted(acc):
            a = acc[s]
            if not keep_zeros and a[0] == 0 and a[3] == 0:
                continue
            out.append((int(event_ids[e]), s, a[0], [a[1], a[2], a[3]] + a[4:]))
    return out


# ---------------------------------------------------------------------------------------------
# ELT / PLT


def _mean_sd(samples):
    n = len(samples)
    mean = sum(float(x) for x in samples) / n if n else float("nan")
    sd = 0.0
    if n > 1:
        sd = math.sqrt(sum((float(x) - mean) ** 2 for x in samples) / (n - 1))
    return mean, sd


def _quantile(sorted_vals, q, n):
    pos = (np.int32(n) - 1) * F4(q) + 1
    k = int(pos)
    frac = F4(pos - k)
    if k == n:
        return sorted_vals[k - 1]
    lo = sorted_vals[k - 1]
    return F4(F4(F4(sorted_vals[k] - lo) * frac) + lo)


def naive_selt(records, with_risks, keep_zeros=False):
    rows = []
    for ev, s, expval, loss in records:
        cols = ([(-4, loss[1])] if with_risks else []) + [(-1, loss[2])]
        cols += [(j + 1, v) for j, v in enumerate(loss[3:]) if keep_zeros or v != 0]
        for sidx, v in cols:
            rows.append((ev, s, sidx, float(v), float(expval) if v != 0 else 0.0))
    return rows


def naive_melt(records, rates=None):
    rows = []
    for ev, s, expval, loss in records:
        if not expval > 0:
            continue
        samples = loss[3:]
        n = len(samples)
        nonzero = sum(1 for x in samples if x > 0)
        mean, sd = _mean_sd(samples)
        chance = nonzero / n
        rate = float(rates[ev]) if rates is not None and ev in rates else float("nan")
        rows.append((ev, s, 1, rate, 0.0, float(loss[2]), 0.0, float(loss[0]), float(expval), float(expval),
                     float(expval)))
        rows.append((ev, s, 2, rate, chance, mean, sd, float(loss[0]), float(expval), float(expval) * chance,
                     float(expval) if nonzero else 0.0))
    return rows


def naive_qelt(records, quantiles):
    rows = []
    for ev, s, expval, loss in records:
        if not expval > 0:
            continue
        srt = sorted(loss[3:])
        for q in quantiles:
            rows.append((ev, s, float(F4(q)), float(_quantile(srt, q, len(srt)))))
    return rows


def naive_date(occ_date_id, granular):
    """(year, month, day, hour, minute) of a date id, by counting days from year 0 forwards."""
    days = occ_date_id // 1440 if granular else occ_date_id
    minutes = occ_date_id % 1440 if granular else 0
    y = days // 366
    while _days_before(y + 1) <= days:
        y += 1
    month = 1
    while month < 12 and _days_before_month(y, month + 1) <= days:
        month += 1
    day = days - _days_before_month(y, month) + 1
    return y, month, day, minutes // 60, minutes % 60


def _is_leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_before(y):
    """Day number of 1 January of year y in the Oasis civil-day count (1 March of year 0 = day 0 based)."""
    return _days_before_month(y, 1)


def _days_before_month(y, m):
    mm = (m + 9) % 12
    yy = y - mm // 10
    return 365 * yy + yy // 4 - yy // 100 + yy // 400 + (306 * mm + 5) // 10


def naive_plt_keys(occ, ev):
    """[(period, weight f4, (y, m, d, h, mi))] of an event's occurrences."""
    out = []
    weights = occ.weights_or_uniform()
    for k in range(len(occ.event_id)):
        if occ.event_id[k] != ev:
            continue
        for o in range(occ.ptr[k], occ.ptr[k + 1]):
            p = int(occ.period_no[o])
            out.append((p, float(F4(weights[p - 1])), naive_date(int(occ.occ_date_id[o]), occ.granular)))
    return out


def naive_splt(records, occ, keep_zeros=False):
    rows = []
    for ev, s, expval, loss in records:
        cols = [(-1, loss[2])] + [(j + 1, v) for j, v in enumerate(loss[3:]) if keep_zeros or v != 0]
        for sidx, v in cols:
            for p, w, d in naive_plt_keys(occ, ev):
                rows.append((p, w, ev, *d, s, sidx, float(v), float(expval) if v > 0 else 0.0))
    return rows


def naive_mplt(records, occ, keep_zeros=False):
    rows = []
    for ev, s, expval, loss in records:
        keys = naive_plt_keys(occ, ev)
        if loss[2] > 0:
            for p, w, d in keys:
                rows.append((p, w, ev, *d, s, 1, 0.0, float(loss[2]), 0.0, float(loss[0]), float(expval),
                             float(expval), float(expval)))
        samples = loss[3:]
        n = len(samples)
        present = [v for v in samples if keep_zeros or v != 0]
        if not present:
            continue
        chance, mean_imp, max_imp = F4(0), F4(0), F4(0)
        for v in present:
            imp = float(expval) if v > 0 else 0.0
            mean_imp = F4(float(mean_imp) + imp / n)
            max_imp = max(max_imp, F4(imp))
            chance = F4(float(chance) + (1.0 if v > 0 else 0.0) / n)
        mean, sd = _mean_sd(samples)
        if mean > 0 or sd > 0:
            for p, w, d in keys:
                rows.append((p, w, ev, *d, s, 2, float(chance), mean, sd, float(loss[0]), float(expval),
                             float(mean_imp), float(max_imp)))
    return rows


def naive_qplt(records, occ, quantiles):
    rows = []
    for ev, s, _expval, loss in records:
        srt = sorted(loss[3:])
        for p, w, d in naive_plt_keys(occ, ev):
            for q in quantiles:
                rows.append((p, w, ev, *d, s, float(F4(q)), float(_quantile(srt, q, len(srt)))))
    return rows


# ---------------------------------------------------------------------------------------------
# ALT and EP curves


def naive_period_cells(records, occ):
    """{(summary, period): [record, ...]} in stream order."""
    cells: dict[tuple[int, int], list] = {}
    for rec in records:
        ev = rec[0]
        for k in range(len(occ.event_id)):
            if occ.event_id[k] == ev:
                for o in range(occ.ptr[k], occ.ptr[k + 1]):
                    cells.setdefault((rec[1], int(occ.period_no[o])), []).append(rec)
    return dict(sorted(cells.items()))


def naive_palt(records, occ):
    """[(summary, type, mean, sd)] without ALCT accumulation; None when no cell."""
    cells = naive_period_cells(records, occ)
    if not cells:
        return None
    P = occ.n_periods
    weights = occ.weights_or_uniform()
    n = len(records[0][3]) - 3
    stats: dict[int, list] = {}
    for (s, p), recs in cells.items():
        w = weights[p - 1] * P if 1 <= p <= P else 0.0
        mean = 0.0
        sums = [0.0] * n
        for rec in recs:
            mean += float(rec[3][2])
            for j in range(n):
                sums[j] += float(rec[3][3 + j])
        st = stats.setdefault(s, [0.0, 0.0, 0.0, 0.0])
        st[0] += mean * w
        st[1] += mean * mean * w
        for x in sums:
            st[2] += x * w
            st[3] += x * x * w
    rows = []
    for t in (1, 2):
        for s in sorted(stats):
            a, b = (stats[s][0], stats[s][1]) if t == 1 else (stats[s][2], stats[s][3])
            m = P if t == 1 else P * n
            with np.errstate(all="ignore"):
                mean = a / m
                sd = np.sqrt(np.float64(b - a * a / m) / (m - 1))
            rows.append((s, t, mean, float(sd)))
    return rows


def naive_lec_cells(records, occ, use_rp, keep_zeros=False):
    """{(summary, period): (agg[1+N], max[1+N], used[1+N])} with float32 sums (mean first)."""
    out = {}
    for key, recs in naive_period_cells(records, occ).items():
        n = len(recs[0][3]) - 3
        agg, mx, used = [F4(0)] * (n + 1), [F4(0)] * (n + 1), [False] * (n + 1)
        for rec in recs:
            for j in range(n + 1):
                v = rec[3][2] if j == 0 else rec[3][2 + j]
                if j > 0 and not keep_zeros and v == 0:
                    continue
                if v > 0 or use_rp:
                    agg[j] = F4(agg[j] + v)
                    mx[j] = max(mx[j], v)
                    used[j] = True
        out[key] = (agg, mx, used)
    return out


def naive_ep_points(values, max_rp):
    """Unweighted EP points (rp, loss) and TVaR points of one curve, descending losses."""
    vals = sorted((float(v) for v in values), reverse=True)
    ep, tv = [], []
    running = 0.0
    for i, v in enumerate(vals, start=1):
        running += v
        ep.append((max_rp / i, v))
        tv.append((max_rp / i, running / i))
    return ep, tv


def naive_ep_at(values, max_rp, rp):
    """Loss at return period ``rp`` by the interpolation rule (0 below the smallest computed RP)."""
    pts = naive_ep_points(values, max_rp)[0]
    if not pts or rp > pts[0][0]:
        return None
    for k, (r, v) in enumerate(pts):
        if r == rp:
            return v
        if r < rp:
            r0, v0 = pts[k - 1]
            if v == 0:
                return 0.0
            return (rp - r) * (v0 - v) / (r0 - r) + v
    return 0.0


# ---------------------------------------------------------------------------------------------
# synthetic data


@dataclass
class Case:
    """A small random run: items, their summaries / risks, and one loss block per event."""

    n_samples: int
    event_ids: np.ndarray
    event_ptr: np.ndarray
    ids: np.ndarray
    losses: np.ndarray
    item_loc: np.ndarray
    item_building: np.ndarray
    item_group: np.ndarray
    occ_event: np.ndarray
    occ_period: np.ndarray
    occ_date: np.ndarray
    n_periods: int
    period_weights: np.ndarray | None


def synthetic_case(seed=0, n_items=12, n_events=40, n_samples=10, n_periods=30, weighted=False, zero_share=0.3,
                   granular=False):
    rng = np.random.default_rng(seed)
    item_loc = rng.integers(1, max(2, n_items // 2) + 1, n_items)
    item_building = rng.integers(1, 3, n_items)
    item_group = rng.integers(0, 3, n_items)
    event_ids = rng.choice(np.arange(1, 10 * n_events + 1), n_events, replace=False).astype(np.int32)
    ptr = [0]
    ids, rows = [], []
    for _ in range(n_events):
        k = int(rng.integers(0, min(6, n_items) + 1))
        items = rng.choice(np.arange(1, n_items + 1), k, replace=False)
        for it in items:
            tiv = float(rng.choice([0.0, 1000.0, 250000.0, 1234567.0], p=[0.1, 0.3, 0.3, 0.3]))
            samples = rng.gamma(0.6, 1.0, n_samples) * tiv * 0.05
            samples[rng.random(n_samples) < zero_share] = 0.0
            mean = samples.mean() * rng.uniform(0.8, 1.2) if samples.any() or rng.random() < 0.5 else 0.0
            mx = samples.max(initial=0.0) * 1.5
            rows.append([mx, rng.random(), tiv, samples.std(), mean, *samples])
            ids.append(it)
        ptr.append(len(ids))
    losses = np.array(rows, dtype=np.float64).reshape(len(rows), 5 + n_samples)
    occ_event, occ_period, occ_date = [], [], []
    for ev in event_ids:
        for _ in range(int(rng.choice([0, 1, 1, 2]))):
            occ_event.append(ev)
            occ_period.append(int(rng.integers(1, n_periods + 1)))
            year, month, day = occ_period[-1], int(rng.integers(1, 13)), int(rng.integers(1, 29))
            d = _days_before_month(year, month) + day - 1
            occ_date.append(d * 1440 + int(rng.integers(0, 1440)) if granular else d)
    weights = None
    if weighted:
        w = rng.random(n_periods) + 0.2
        weights = w / w.sum()
    return Case(n_samples, event_ids, np.array(ptr, np.int64), np.array(ids, np.int64), losses, item_loc,
                item_building, item_group, np.array(occ_event, np.int32), np.array(occ_period, np.int32),
                np.array(occ_date, np.int64), n_periods, weights)


def loss_stream_bytes(case: Case, event_order=None) -> bytes:
    """The case as an Oasis loss stream (``-5, -4, -3, -2, -1, samples``; zero samples written)."""
    out = [np.array([0x02000001, case.n_samples], "<i4").tobytes()]
    order = range(len(case.event_ids)) if event_order is None else event_order
    for e in order:
        for r in range(case.event_ptr[e], case.event_ptr[e + 1]):
            out.append(np.array([case.event_ids[e], case.ids[r]], "<i4").tobytes())
            pairs = np.zeros(5 + case.n_samples + 1, dtype=[("sidx", "<i4"), ("loss", "<f4")])
            pairs["sidx"][:5] = [-5, -4, -3, -2, -1]
            pairs["sidx"][5:-1] = np.arange(1, case.n_samples + 1)
            pairs["loss"][:-1] = case.losses[r]
            out.append(pairs.tobytes())
    return b"".join(out)


def write_reference_inputs(case: Case, input_dir: Path, id_to_summary: np.ndarray, perspective: str,
                           return_periods=None, quantiles=None, granular=False) -> None:
    """Write the Oasis input files the reference's summary / output tools read."""
    input_dir.mkdir(parents=True, exist_ok=True)
    n_items = len(case.item_loc)
    ids = np.arange(1, n_items + 1)
    if perspective == "gul":
        xref = np.zeros(n_items, dtype=[("item_id", "<i4"), ("summary_id", "<i4"), ("summaryset_id", "<i4")])
        xref["item_id"] = ids
        name, map_name, col = "gulsummaryxref", "gul_summary_map.csv", "item_id"
    else:
        xref = np.zeros(n_items, dtype=[("output", "<i4"), ("summary_id", "<i4"), ("summaryset_id", "<i4")])
        xref["output"] = ids
        name, map_name, col = "fmsummaryxref", "fm_summary_map.csv", "output_id"
    xref["summary_id"] = id_to_summary[ids]
    xref["summaryset_id"] = 1
    xref.tofile(input_dir / f"{name}.bin")
    lines = [f"loc_id,{col},building_id"] + [f"{case.item_loc[i]},{i + 1},{case.item_building[i]}"
                                             for i in range(n_items)]
    (input_dir / map_name).write_text("\n".join(lines) + "\n")
    if granular:
        occ = np.zeros(len(case.occ_event), dtype=[("e", "<i4"), ("p", "<i4"), ("d", "<i8")])
    else:
        occ = np.zeros(len(case.occ_event), dtype=[("e", "<i4"), ("p", "<i4"), ("d", "<i4")])
    occ["e"], occ["p"], occ["d"] = case.occ_event, case.occ_period, case.occ_date
    header = np.array([1 | (2 if granular else 0), case.n_periods], "<i4").tobytes()
    (input_dir / "occurrence.bin").write_bytes(header + occ.tobytes())
    if case.period_weights is not None:
        per = np.zeros(case.n_periods, dtype=[("p", "<i4"), ("w", "<f8")])
        per["p"] = np.arange(1, case.n_periods + 1)
        per["w"] = case.period_weights
        per.tofile(input_dir / "periods.bin")
    if return_periods is not None:
        np.sort(np.asarray(return_periods, "<i4"))[::-1].tofile(input_dir / "returnperiods.bin")
    if quantiles is not None:
        np.asarray(quantiles, "<f4").tofile(input_dir / "quantile.bin")
