"""Slow, obviously-correct twin of the ground-up loss sampler (``kernel/gul``), for the tests.

One event, one item, one sample at a time in plain Python, written from the reference's
description (oasis-kernel-and-formats.md section 4) rather than from the kernel. It mirrors the
reference's single-precision storage explicitly: CDF values, per-item losses and the allocation
rule's running sums are rounded to float32 (``np.float32``) where the reference keeps them in
float32 buffers; everything else is Python float (IEEE double). So the twin agrees with the
kernel to float32 precision (the kernel's ``fastmath`` sums may differ in the last bit).

Random numbers: ``uniforms(generator, seed, n)`` -- generator 2 (Latin hypercube on
Philox4x32-7) is re-implemented here with Python integers, generator 0 (Mersenne Twister) uses
numpy's legacy ``RandomState``, whose stream numba reproduces. Generator 1 is not modelled.
"""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32
N_SPECIAL = 5
CDF_END = 0.999999940
MASK32 = 0xFFFFFFFF


# --------------------------------------------------------------------------- random numbers


def philox4x32_7(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """Random123's Philox4x32 with 7 rounds, on Python integers."""
    x0, x1, x2, x3 = counter
    k0, k1 = key
    for _ in range(7):
        p0 = 0xD2511F53 * x0
        p1 = 0xCD9E8D57 * x2
        x0, x1, x2, x3 = ((p1 >> 32) ^ x1 ^ k0) & MASK32, p1 & MASK32, ((p0 >> 32) ^ x3 ^ k1) & MASK32, p0 & MASK32
        k0 = (k0 + 0x9E3779B9) & MASK32
        k1 = (k1 + 0xBB67AE85) & MASK32
    return x0, x1, x2, x3


def _philox_words(seed: int, stream: int, count: int) -> list[int]:
    """The first ``count`` 32-bit words of a stream: blocks (0, stream, 0, 0), (1, stream, 0, 0), ..."""
    words = []
    block = 0
    while len(words) < count:
        words.extend(philox4x32_7((block, stream, 0, 0), (seed & MASK32, seed >> 32)))
        block += 1
    return words[:count]


def latin_hypercube_philox(seed: int, n: int) -> list[float]:
    """n uniforms, one in each stratum ((k-1)/n, k/n], in a random order."""
    perms = [float(k + 1) for k in range(n)]
    for t, word in enumerate(_philox_words(seed, 1, n - 1)):
        position = n - 1 - t
        other = int(word / 2**32 * (position + 1))
        perms[position], perms[other] = perms[other], perms[position]
    inv_n = 1.0 / n
    return [(perms[k] - word / 2**32) * inv_n for k, word in enumerate(_philox_words(seed, 0, n))]


def uniforms(generator: int, seed: int, n: int) -> list[float]:
    if n == 0:
        return []
    if generator == 2:
        return latin_hypercube_philox(seed, n)
    if generator == 0:
        return np.random.RandomState(seed).random_sample(n).tolist()
    raise NotImplementedError("the twin models random generators 0 and 2")


def damage_seed(group_id: int, event_id: int, base: int = 0) -> int:
    return (base + (group_id * 1543270363) % 2**31 + (event_id * 1943272559) % 2**31) % 2**31


def hazard_seed(hazard_group_id: int, event_id: int, base: int = 0) -> int:
    m = 1957483729
    return (base + (hazard_group_id * 1143271949) % m + (event_id * 1243274353) % m) % m


def correlation_seed(peril_group: int, event_id: int, base: int = 0) -> int:
    return (base + (peril_group * 1836311903) % 2**31 + (event_id * 1943272559) % 2**31) % 2**31


def _lookup(table: np.ndarray, position: float, interpolate: bool) -> float:
    if not interpolate:
        return float(table[min(max(int(position), 0), len(table) - 1)])
    lower = math.floor(position)
    fraction = position - lower
    lower = min(max(lower, 0), len(table) - 2)
    return float(table[lower]) + fraction * (float(table[lower + 1]) - float(table[lower]))


def correlated(x: float, y: float, rho: np.float32, tables: tuple[np.ndarray, np.ndarray]) -> float:
    """Phi(sqrt(rho) Phi^-1(x) + sqrt(1 - rho) Phi^-1(y)) with the lookup tables (sqrt(rho) in float32)."""
    inverse, cdf = tables
    inv_factor = (len(inverse) - 1) / ((1 - 1e-16) - 1e-16)
    norm_factor = (len(cdf) - 1) / 40.0

    def phi_inverse(u: float) -> float:
        return _lookup(inverse, (u - 1e-16) * inv_factor, u < 0.025 or u > 1 - 0.025)

    z = float(np.sqrt(F32(rho))) * phi_inverse(x) + math.sqrt(1.0 - float(rho)) * phi_inverse(y)
    return _lookup(cdf, (z + 20.0) * norm_factor, True)


# --------------------------------------------------------------------------- distributions


def cdf_of(pdf: list) -> list:
    """Running float64 sum stored as float32, stopped at CDF_END, trailing flat bins dropped."""
    cdf, total = [], 0.0
    for p in pdf:
        total += float(p)
        cdf.append(F32(total))
        if total >= CDF_END:
            break
    while len(cdf) > 1 and cdf[-2] == cdf[-1]:
        cdf.pop()
    return cdf


def effective_cdf(damage_pdfs: list, hazard_pdf: list) -> list:
    """CDF of sum_h damage_pdfs[h][d] * hazard_pdf[h] (float32 products, float64 sum), as cdf_of."""
    cdf, total = [], 0.0
    for d in range(len(damage_pdfs[0])):
        for h in range(len(damage_pdfs)):
            total += float(F32(damage_pdfs[h][d]) * F32(hazard_pdf[h]))
        cdf.append(F32(total))
        if total >= CDF_END:
            break
    while len(cdf) > 1 and cdf[-2] == cdf[-1]:
        cdf.pop()
    return cdf


def interpolate(bin_from, bin_to, bin_mean, prob_from, prob_to, r: float, scaling: float) -> float:
    """The reference's in-bin interpolation (bin bounds, mean and CDF values are float32)."""
    bin_from, bin_to, bin_mean, prob_from, prob_to = (F32(v) for v in (bin_from, bin_to, bin_mean, prob_from, prob_to))
    width = bin_to - bin_from  # float32
    if width == 0:
        return scaling * float(bin_to)
    height = prob_to - prob_from  # float32
    offset = r - float(prob_from)
    x = float((bin_mean - bin_from) / width)  # float32 division
    if abs(x - 0.5) <= 5e-6:
        return scaling * (float(bin_from) + offset * float(width) / float(height))
    a = 3.0 * float(height) / float(width * width) * (2.0 * x - 1.0)
    b = 2.0 * float(height) / float(width) * (2.0 - 3.0 * x)
    root = math.sqrt(max(b * b + 4.0 * a * offset, 0.0))
    t = 2.0 * offset / (b + root) if b > 0 else (root - b) / (2.0 * a)
    return scaling * (float(bin_from) + t)


def sample(r: float, cdf: list, bins: np.ndarray, scaling: float) -> float:
    """Loss of random value r: the first bin whose CDF reaches r (the last bin if none does)."""
    i = next((k for k in range(len(cdf) - 1) if cdf[k] >= r), len(cdf) - 1)
    prob_from = cdf[i - 1] if i > 0 else F32(0)
    return interpolate(bins["bin_from"][i], bins["bin_to"][i], bins["interpolation"][i], prob_from, cdf[i], r,
                       scaling)


def scaling_of(bins: np.ndarray, n_effective: int, tiv: float) -> float:
    last = bins[n_effective - 1]
    if tiv <= 0:
        return 0.0
    return {1: tiv, 2: 1.0, 3: tiv / 365}.get(int(last["damage_type"]), tiv if last["bin_to"] <= 1 else 1.0)


def moments(cdf: list, bins: np.ndarray, scaling: float) -> tuple[float, float, float, float]:
    """(mean, sd, chance of loss, max) of a damage CDF."""
    mean = second = previous = 0.0
    for i, c in enumerate(cdf):
        step = (float(c) - previous) * float(bins["interpolation"][i])
        mean += step
        second += step * float(bins["interpolation"][i])
        previous = float(c)
    mean *= scaling
    second *= scaling * scaling
    chance = 1.0 - float(cdf[0]) if bins["interpolation"][0] <= 0 else 1.0
    return mean, math.sqrt(max(second - mean * mean, 0.0)), chance, float(bins["bin_to"][len(cdf) - 1]) * scaling


# --------------------------------------------------------------------------- allocation


def allocate(values: list, tiv: float, rule: int) -> list:
    """One column of one coverage's items (float32 values, in (areaperil, vulnerability, item) order)."""
    values = [F32(v) for v in values]
    if rule == 2:
        top = max(values + [F32(0)])
        count = sum(1 for v in values if v == top)
        values = [F32(float(top) / count) if v == top else F32(0) for v in values]
    if tiv > 0 and rule in (1, 2):
        total = F32(0)
        for v in values:
            total = F32(total + v)
        if float(total) > tiv:
            values = [F32(float(v) * (tiv / float(total))) for v in values]
    elif tiv > 0 and rule == 3:
        undamaged, total = 1.0, 0.0
        for v in values:
            undamaged *= 1.0 - float(v) / tiv
            total += float(v)
        if total > 0:
            values = [F32(float(v) * (tiv * (1.0 - undamaged) / total)) for v in values]
    return values


# --------------------------------------------------------------------------- record order


def record_order(hit_items: list) -> list[int]:
    """The item ids of an event's records in the reference's (gulmc's) order.

    ``hit_items``: dicts with item_id, coverage_id, areaperil_id, vulnerability_id, in any order.
    Walk the items by (areaperil, vulnerability, item); a coverage's records start where the walk
    first meets the coverage and hold its items in walk order.
    """
    walk = sorted(hit_items, key=lambda i: (i["areaperil_id"], i["vulnerability_id"], i["item_id"]))
    by_coverage: dict[int, list[int]] = {}   # dicts keep insertion order: the order coverages are met
    for item in walk:
        by_coverage.setdefault(item["coverage_id"], []).append(item["item_id"])
    return [item_id for ids in by_coverage.values() for item_id in ids]


# --------------------------------------------------------------------------- events


def naive_event(event_id: int, footprint_rows: np.ndarray, vulnerability: dict, bins: np.ndarray, items: list,
                tiv: dict, n_samples: int, *, alloc_rule: int = 1, effective: bool = False, generator: int = 2,
                tables=None, threshold: float = 0.0, base_seed: int = 0) -> dict[int, list]:
    """Ground-up losses of one event.

    Parameters
    ----------
    footprint_rows : numpy.ndarray
        The event's rows (areaperil_id, intensity_bin_id, probability).
    vulnerability : dict
        vulnerability_id -> float32 array [n_damage, n_intensity].
    items : list of dict
        item_id, coverage_id, areaperil_id, vulnerability_id, group_id, peril_group, damage_rho,
        hazard_group_id, hazard_rho (correlation fields 0 when absent).
    tiv : dict
        coverage_id -> TIV (the float32 value as a float).
    tables : tuple, optional
        Normal lookup tables; correlation is on when given.

    Returns
    -------
    dict
        item_id -> [max, chance, tiv share, sd, mean, sample 1..N], as float32, for hit items.
    """
    by_areaperil: dict[int, list] = {}
    for row in footprint_rows:
        by_areaperil.setdefault(int(row["areaperil_id"]), []).append(row)
    peril_groups_seeded = all(item["peril_group"] >= 1 for item in items)
    do_damage_corr = tables is not None and any(item["damage_rho"] > 0 for item in items)
    do_hazard_corr = tables is not None and any(item["hazard_rho"] > 0 for item in items)

    def group_row(peril_group: int) -> list:
        if peril_group == 0:
            return [0.0] * n_samples
        seed = correlation_seed(peril_group, event_id, base_seed) if peril_groups_seeded else 0
        return uniforms(generator, seed, n_samples)

    results = {}
    for item in items:
        rows = by_areaperil.get(item["areaperil_id"])
        if rows is None:
            continue
        hazard_pdf = [row["probability"] for row in rows]
        hazard_cdf = cdf_of(hazard_pdf)
        table = vulnerability[item["vulnerability_id"]]
        damage_pdfs = [table[:, rows[h]["intensity_bin_id"] - 1] for h in range(len(hazard_cdf))]
        eff = effective_cdf(damage_pdfs, hazard_pdf)
        scaling = scaling_of(bins, len(eff), tiv[item["coverage_id"]])
        mean, sd, chance, maximum = moments(eff, bins, scaling)
        out = [F32(maximum), F32(chance), F32(0), F32(sd), F32(mean)]
        damage_u = uniforms(generator, damage_seed(item["group_id"], event_id, base_seed), n_samples)
        if do_damage_corr and item["damage_rho"] > 0:
            damage_u = [correlated(x, y, item["damage_rho"], tables)
                        for x, y in zip(group_row(item["peril_group"]), damage_u, strict=True)]
        hazard_u = None
        if not effective and len(rows) > 1:
            hazard_u = uniforms(generator, hazard_seed(item["hazard_group_id"], event_id, base_seed), n_samples)
            if do_hazard_corr and item["hazard_rho"] > 0:
                hazard_u = [correlated(x, y, item["hazard_rho"], tables)
                            for x, y in zip(group_row(item["peril_group"]), hazard_u, strict=True)]
        for s in range(n_samples):
            if effective:
                cdf = eff
            elif len(hazard_cdf) == 1:
                cdf = cdf_of(damage_pdfs[0])
            else:
                h = next((k for k in range(len(hazard_cdf) - 1) if hazard_cdf[k] >= hazard_u[s]), len(hazard_cdf) - 1)
                cdf = cdf_of(damage_pdfs[h])
            out.append(F32(sample(damage_u[s], cdf, bins, scaling)))
        results[item["item_id"]] = out

    # per coverage: TIV share and allocation, items in (areaperil, vulnerability, item) order
    coverages: dict[int, list] = {}
    for item in sorted(items, key=lambda i: (i["areaperil_id"], i["vulnerability_id"], i["item_id"])):
        if item["item_id"] in results:
            coverages.setdefault(item["coverage_id"], []).append(item["item_id"])
    for coverage_id, item_ids in coverages.items():
        value = tiv[coverage_id]
        for item_id in item_ids:
            results[item_id][2] = F32(value / len(item_ids))
        for column in [2, 0, 4] + list(range(N_SPECIAL, N_SPECIAL + n_samples)):
            allocated = allocate([results[i][column] for i in item_ids], value, alloc_rule)
            for item_id, v in zip(item_ids, allocated, strict=True):
                results[item_id][column] = v
    for out in results.values():
        for column in range(N_SPECIAL, N_SPECIAL + n_samples):
            if out[column] < F32(threshold):
                out[column] = F32(0)
    return results
