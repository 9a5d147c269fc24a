"""Ground-up loss sampling kernels (numba), following the reference's ``gulmc``.

Per event (see :func:`sample_events`):

1. the event's footprint rows are walked areaperil by areaperil; an areaperil counts only if
   some item uses it, and then every item on it is *hit*;
2. one random row per *stream* of the hit items, seeded from (event, group): a damage stream
   is a ``group_id`` and a hazard stream a ``hazard_group_id`` (hazard rows only for areaperils
   with more than one footprint row, under full Monte Carlo); where correlation is on, a stream
   also names its peril correlation group and correlation value, and its row is mixed with that
   group's shared row (:func:`stream_rows`). Items of one stream share their random values;
3. per (areaperil, vulnerability) pair: the hazard CDF (running sum of the footprint
   probabilities), the effective damage CDF sum_h vuln[d, h] p_h and, for full Monte Carlo,
   one damage CDF per hazard bin; each CDF stops once it reaches 0.99999994 and loses its flat
   tail. Then per item: mean, standard deviation, chance of loss, maximum, and the samples
   (hazard bin drawn from the hazard CDF, then damage from that bin's CDF; or damage from the
   effective CDF with ``effective_damageability``), interpolated within the damage bin by
   :func:`ground_up_loss`;
4. per coverage: the TIV column (-3) = coverage TIV / number of its items hit in the event,
   then the allocation rule over the coverage's items (columns -5, -3, -1 and the samples);
   finally samples below the threshold become 0 (the reference does not write them).

Precision: CDFs are float32 with float64 running sums, and every per-item value is rounded to
float32 before the allocation rule, exactly where the reference stores it in its float32
buffers, so the float64 results hold the float32 values the reference streams out. Functions
that the reference compiles with ``fastmath`` are compiled with it here too (same arithmetic,
same contractions).

Loss columns: ``[-5 max, -4 chance of loss, -3 TIV, -2 standard deviation, -1 mean, 1..N]``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from perilflow.kernel.gul.random import (
    correlate_with,
    correlation_seed,
    damage_seed,
    fill_uniforms,
    hazard_seed,
    normal_quantiles,
)
from perilflow.kernel.model.dtypes import DAMAGE_TYPE_ABSOLUTE, DAMAGE_TYPE_DURATION, DAMAGE_TYPE_RELATIVE

__all__ = [
    "ITEM_TABLE_DTYPE",
    "STREAM_DTYPE",
    "MAX_LOSS",
    "CHANCE_OF_LOSS",
    "TIV",
    "STD_DEV",
    "MEAN",
    "N_SPECIAL",
    "SPECIAL_SIDX",
    "count_hits",
    "damage_moments",
    "damage_scaling",
    "effective_damage_cdf",
    "first_at_least",
    "ground_up_loss",
    "mean_loss",
    "pdf_to_cdf",
    "sample_damage",
    "sample_events",
    "scaled_moments",
    "stream_rows",
]

#: Column of each special sample index in the loss matrix, then the samples from column 5.
MAX_LOSS, CHANCE_OF_LOSS, TIV, STD_DEV, MEAN = 0, 1, 2, 3, 4
N_SPECIAL = 5
SPECIAL_SIDX = (-5, -4, -3, -2, -1)

#: A running CDF stops once it reaches this (the largest float32 below 1).
CDF_END = 0.999999940

#: Per-item data the kernel reads (one record per row of the caller's items).
ITEM_TABLE_DTYPE = np.dtype([
    ("vuln", np.int64),            # row of the prepared vulnerability pdf array
    ("coverage", np.int64),        # 0-based coverage index
    ("damage_stream", np.int64),   # row of the damage random streams
    ("hazard_stream", np.int64),   # row of the hazard random streams
], align=True)

#: A random stream: the uniforms of one (group, peril correlation group, correlation) combination.
#: Items sharing a stream share their random values; the row is a function of (event, stream).
STREAM_DTYPE = np.dtype([
    ("group", np.int64),           # group_id (damage) or hazard_group_id (hazard): the seed's key
    ("peril_group", np.int64),     # peril correlation group whose shared row is mixed in
    ("rho", np.float32),           # correlation value
    ("correlated", np.bool_),      # mix in the peril group's row (correlation on and rho > 0)
], align=True)


# --------------------------------------------------------------------------- CDFs


@nb.njit(cache=True, fastmath=True)
def _last_rising(cdf, last):
    """Index of the last bin at or before ``last`` where the CDF still rose."""
    while last > 0 and cdf[last - 1] == cdf[last]:
        last -= 1
    return last


@nb.njit(cache=True, fastmath=True)
def pdf_to_cdf(pdf, cdf):
    """Running sum of ``pdf`` into ``cdf``, stopped at CDF_END and trimmed of its flat tail.

    Parameters
    ----------
    pdf : numpy.ndarray
        float32 [n] probabilities.
    cdf : numpy.ndarray
        float32 [>= n], written.

    Returns
    -------
    int
        Number of valid CDF bins (>= 1 when n >= 1).
    """
    total = 0.0
    i = 0
    while i < pdf.shape[0]:
        total += pdf[i]
        cdf[i] = total
        i += 1
        if total >= CDF_END:
            break
    return _last_rising(cdf, i - 1) + 1


@nb.njit(cache=True, fastmath=True)
def effective_damage_cdf(vuln_pdf, n_hazard, hazard_pdf, cdf):
    """CDF over damage bins of sum_h vuln_pdf[h, d] * hazard_pdf[h], stopped and trimmed as pdf_to_cdf.

    Parameters
    ----------
    vuln_pdf : numpy.ndarray
        float32 [>= n_hazard, n_damage]: damage pdf per hazard bin.
    n_hazard : int
        Hazard bins used.
    hazard_pdf : numpy.ndarray
        float32 [>= n_hazard] hazard probabilities.
    cdf : numpy.ndarray
        float32 [n_damage], written.

    Returns
    -------
    int
        Number of valid CDF bins.
    """
    total = 0.0
    d = 0
    while d < vuln_pdf.shape[1]:
        for h in range(n_hazard):
            total += vuln_pdf[h, d] * hazard_pdf[h]  # float32 product, float64 sum (as the reference)
        cdf[d] = total
        d += 1
        if total >= CDF_END:
            break
    return _last_rising(cdf, d - 1) + 1


@nb.njit(cache=True, fastmath=True)
def first_at_least(value, cdf, n):
    """First index i in [0, n) with cdf[i] >= value, or n if there is none (binary search)."""
    low, high = 0, n
    while low < high:
        middle = (low + high) >> 1
        if cdf[middle] < value:
            low = middle + 1
        else:
            high = middle
    return low


# --------------------------------------------------------------------------- losses


@nb.njit(cache=True, fastmath=False, error_model="numpy")
def ground_up_loss(bin_from, bin_to, bin_mean, prob_from, prob_to, r, scaling):
    """Loss for random value ``r`` falling in a damage bin (the reference's in-bin interpolation).

    The bin is [bin_from, bin_to] with mean damage ``bin_mean`` and CDF values prob_from < r <=
    prob_to. With width w, height h = prob_to - prob_from and x = (bin_mean - bin_from) / w:

    * w == 0: ``scaling * bin_to``;
    * |x - 1/2| <= 5e-6 (uniform density): linear, ``scaling * (bin_from + (r - prob_from) w / h)``;
    * otherwise the density is linear in the bin with mean ``bin_mean``: the offset t solves
      a t^2 + b t = r - prob_from with a = 3h(2x - 1)/w^2, b = 2h(2 - 3x)/w (numerically stable
      root), and the loss is ``scaling * (bin_from + t)``.

    Parameters
    ----------
    bin_from, bin_to, bin_mean : numpy.float32
        Damage bin bounds and mean (damage ratios, or amounts for absolute bins).
    prob_from, prob_to : numpy.float32
        CDF at the bin's start and end.
    r : float
        The random value (float64).
    scaling : float
        Damage-to-loss factor (float64), see :func:`damage_scaling`.

    Returns
    -------
    float
        The loss (float64).
    """
    width = bin_to - bin_from
    if width == 0.0:
        return scaling * bin_to
    height = prob_to - prob_from
    offset = r - prob_from
    x = np.float64((bin_mean - bin_from) / width)
    if np.abs(x - 0.5) <= 5e-6:
        return scaling * (bin_from + offset * width / height)
    a = 3.0 * height / width**2 * (2.0 * x - 1.0)
    b = 2.0 * height / width * (2.0 - 3.0 * x)
    root = math.sqrt(max(b**2.0 + 4.0 * a * offset, 0.0))
    if b > 0.0:
        t = 2.0 * offset / (b + root)
    else:
        t = (root - b) / (2.0 * a)
    return scaling * (bin_from + t)


@nb.njit(cache=True, fastmath=True)
def damage_scaling(damage_type, last_bin_to, tiv):
    """Damage-to-loss factor from the last effective damage bin.

    Relative (1): TIV; absolute (2): 1; duration (3): TIV / 365 (a daily rate); default (0): TIV
    if the bin ends at or below 1 (a damage ratio), else 1. A coverage without TIV gets 0.
    """
    if tiv <= 0:
        return 0.0
    if damage_type == DAMAGE_TYPE_RELATIVE:
        return tiv
    if damage_type == DAMAGE_TYPE_ABSOLUTE:
        return 1.0
    if damage_type == DAMAGE_TYPE_DURATION:
        return tiv / 365
    return tiv if last_bin_to <= 1 else 1.0


@nb.njit(cache=True, fastmath=True)
def damage_moments(cdf, bin_mean, n_bins):
    """First two moments and chance of damage of a damage CDF (before the damage-to-loss scaling).

    Parameters
    ----------
    cdf : numpy.ndarray
        float32 [>= n_bins] damage CDF.
    bin_mean : numpy.ndarray
        float32 [>= n_bins] mean damage of each bin (damage_bin_dict ``interpolation``).
    n_bins : int
        Valid CDF bins.

    Returns
    -------
    (float, float, float)
        sum p_i m_i, sum p_i m_i^2, and the chance of loss: 1 - CDF[0] when the first bin means
        no damage, else 1.
    """
    chance_of_loss = 1 - cdf[0] * (1 - (bin_mean[0] > 0))
    mean = 0.0
    second = 0.0
    previous = 0.0
    for i in range(n_bins):
        step = (cdf[i] - previous) * bin_mean[i]
        mean += step
        second += step * bin_mean[i]
        previous = cdf[i]
    return mean, second, chance_of_loss


@nb.njit(cache=True, fastmath=True)
def scaled_moments(raw_mean, raw_second, scaling):
    """Mean s m and standard deviation s sqrt(max(m2 - m^2, 0)) of a loss = s x damage."""
    mean = raw_mean * scaling
    second = raw_second * scaling**2.0
    return mean, math.sqrt(max(second - mean**2.0, 0.0))


@nb.njit(cache=True)
def mean_loss(scaling, cdf, bin_mean, n_bins, last_bin_to):
    """Mean, standard deviation, chance of loss and maximum of a loss = scaling x damage.

    Parameters are those of :func:`damage_moments` plus ``scaling`` (the damage-to-loss factor)
    and ``last_bin_to`` (``bin_to`` of the last valid bin). Returns (mean, sd, chance of loss,
    maximum = scaling x last_bin_to).
    """
    raw_mean, raw_second, chance = damage_moments(cdf, bin_mean, n_bins)
    mean, sd = scaled_moments(raw_mean, raw_second, scaling)
    return mean, sd, chance, last_bin_to * scaling


@nb.njit(cache=True, fastmath=True)
def sample_damage(r, cdf, n_bins, damage_bins, scaling):
    """Loss of random value ``r`` under a damage CDF (bin by binary search, then interpolation).

    Parameters
    ----------
    r : float
        Random value.
    cdf : numpy.ndarray
        float32 [>= n_bins] damage CDF.
    n_bins : int
        Valid CDF bins; an r above the last CDF value falls in the last bin.
    damage_bins : numpy.ndarray
        Structured damage_bin_dict records.
    scaling : float
        Damage-to-loss factor.
    """
    i = first_at_least(r, cdf, n_bins - 1)
    prob_from = cdf[i - 1] if i > 0 else np.float32(0.0)
    return ground_up_loss(damage_bins[i]["bin_from"], damage_bins[i]["bin_to"], damage_bins[i]["interpolation"],
                          prob_from, cdf[i], r, scaling)


# --------------------------------------------------------------------------- allocation


@nb.njit(cache=True, fastmath=True)
def _keep_maximum(losses, rows, column):
    """Rule 2: keep the largest loss of the column (shared equally between ties), zero the others."""
    top = 0.0
    count = 0
    for r in rows:
        value = losses[r, column]
        if value > top:
            top = value
            count = 1
        elif value == top:
            count += 1
    share = np.float32(top / count)
    for r in rows:
        losses[r, column] = share if losses[r, column] == top else 0.0


@nb.njit(cache=True, fastmath=True)
def _cap_at_tiv(losses, rows, column, tiv):
    """Rules 1 and 2: if the (float32) sum exceeds the TIV, scale the column to sum to it."""
    total = np.float32(0.0)
    for r in rows:
        total += np.float32(losses[r, column])
    if total > tiv:
        factor = tiv / total
        for r in rows:
            losses[r, column] = np.float32(losses[r, column] * factor)


@nb.njit(cache=True, fastmath=True)
def _multiplicative(losses, rows, column, tiv):
    """Rule 3: total = TIV (1 - prod(1 - l_j / TIV)), shared pro rata to the l_j."""
    undamaged = 1.0
    total = 0.0
    for r in rows:
        undamaged *= 1.0 - losses[r, column] / tiv
        total += losses[r, column]
    combined = tiv * (1.0 - undamaged)
    if total > 0.0:
        factor = combined / total
        for r in rows:
            losses[r, column] = np.float32(losses[r, column] * factor)


@nb.njit(cache=True, inline="always")
def _allocated_column(column, n_columns):
    """The columns an allocation rule applies to: -5 (max), -3 (TIV), -1 (mean) and the samples."""
    return column == MAX_LOSS or column == TIV or column == MEAN or column >= N_SPECIAL


@nb.njit(cache=True)
def allocate(losses, rows, tiv, rule):
    """Apply allocation ``rule`` (0-3) to the rows ``rows`` (int64 [k]) of one coverage, in place.

    ``rows`` lists the coverage's items in (areaperil, vulnerability, item_id) order, the order
    of the reference's float32 sums. Columns -5 (max), -3 (TIV), -1 (mean) and every sample are
    allocated; -4 and -2 are not. Rule 2 first keeps only the largest loss per column, then caps
    like rule 1. Rules 1-3 only apply when the coverage has a positive TIV.
    """
    if rule == 0:
        return
    n_columns = losses.shape[1]
    for column in range(n_columns):
        if not _allocated_column(column, n_columns):
            continue
        if rule == 2:
            _keep_maximum(losses, rows, column)
        if tiv > 0:
            if rule == 3:
                _multiplicative(losses, rows, column, tiv)
            else:
                _cap_at_tiv(losses, rows, column, tiv)


# --------------------------------------------------------------------------- events


@nb.njit(cache=True, parallel=True)
def count_hits(fp_ptr, fp_areaperil, ap_ids, ap_item_ptr, fp_ap_index):
    """Items hit per event, and the items-side areaperil index of every footprint row.

    Parameters
    ----------
    fp_ptr : numpy.ndarray
        int64 [n_events + 1] footprint rows per event (CSR).
    fp_areaperil : numpy.ndarray
        uint32 [n_rows], sorted within each event.
    ap_ids : numpy.ndarray
        uint32 [n_areaperils] sorted areaperils that have items.
    ap_item_ptr : numpy.ndarray
        int64 [n_areaperils + 1] items per areaperil (CSR).
    fp_ap_index : numpy.ndarray
        int64 [n_rows], written: index into ``ap_ids``, or -1.

    Returns
    -------
    numpy.ndarray
        int64 [n_events] number of hit items.
    """
    n_events = fp_ptr.shape[0] - 1
    counts = np.zeros(n_events, dtype=np.int64)
    for e in nb.prange(n_events):
        count = 0
        for row in range(fp_ptr[e], fp_ptr[e + 1]):
            areaperil = fp_areaperil[row]
            k = np.searchsorted(ap_ids, areaperil)
            if k < ap_ids.shape[0] and ap_ids[k] == areaperil:
                fp_ap_index[row] = k
                if row == fp_ptr[e] or fp_areaperil[row - 1] != areaperil:
                    count += ap_item_ptr[k + 1] - ap_item_ptr[k]
            else:
                fp_ap_index[row] = -1
        counts[e] = count
    return counts


@nb.njit(cache=True)
def stream_rows(stream_ids, streams, hazard, generator, event_id, base_seed, seeds_valid, n_samples,
                inverse_table, cdf_table):
    """The random rows of an event's streams.

    Parameters
    ----------
    stream_ids : numpy.ndarray
        int64 [k] stream of each item needing one (repeats allowed).
    streams : numpy.ndarray
        ``STREAM_DTYPE`` [n_streams].
    hazard : bool
        Hazard streams (hazard seeds) rather than damage streams.
    generator, event_id, base_seed : int
        Random generator (0-2), the event, the seed offset.
    seeds_valid : bool
        Seed the peril groups' shared rows; False gives every peril group seed 0, as the
        reference does when some item has peril group 0. Group 0's shared row is all zeros.
    n_samples : int
        Row length.
    inverse_table, cdf_table : numpy.ndarray
        Normal lookup tables (used by correlated streams only).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Sorted unique stream ids (int64 [u]) and their uniforms (float64 [u, n_samples]).
    """
    unique = np.unique(stream_ids)
    rows = np.empty((unique.shape[0], n_samples), dtype=np.float64)
    top = 0
    for k in range(unique.shape[0]):
        if streams[unique[k]]["correlated"]:
            top = max(top, streams[unique[k]]["peril_group"])
    shared = np.zeros((top + 1, n_samples), dtype=np.float64)  # Phi^-1 of each peril group's row
    done = np.zeros(top + 1, dtype=np.bool_)
    shared_row = np.zeros(n_samples, dtype=np.float64)
    for k in range(unique.shape[0]):
        stream = streams[unique[k]]
        if hazard:
            seed = hazard_seed(stream["group"], event_id, base_seed)
        else:
            seed = damage_seed(stream["group"], event_id, base_seed)
        fill_uniforms(generator, seed, rows[k])
        if stream["correlated"]:
            group = stream["peril_group"]
            if not done[group]:
                shared_row[:] = 0.0
                if group > 0:
                    fill_uniforms(generator, correlation_seed(group, event_id, base_seed) if seeds_valid else 0,
                                  shared_row)
                normal_quantiles(shared_row, inverse_table, shared[group])
                done[group] = True
            correlate_with(shared[group], rows[k], stream["rho"], inverse_table, cdf_table, rows[k])
    return unique, rows


@nb.njit(cache=True)
def _sample_event(event_id, fp_start, fp_end, fp_intensity, fp_probability, fp_ap_index, ap_item_ptr, ap_items,
                  items, damage_streams, hazard_streams, coverage_tiv, vuln_pdfs, vuln_adj, damage_bins,
                  n_samples, alloc_rule, effective, seeds_valid, generator, base_seed, threshold, inverse_table,
                  cdf_table, base, n_hit, item_row, losses):
    """Fill ``item_row[base:base+n_hit]`` and ``losses[base:base+n_hit]`` for one event."""
    n_damage = vuln_pdfs.shape[2]
    # 1. hit areaperil groups of the footprint, and the hit items in (areaperil, vuln, item) order
    group_start = np.empty(fp_end - fp_start, dtype=np.int64)
    group_end = np.empty(fp_end - fp_start, dtype=np.int64)
    group_ap = np.empty(fp_end - fp_start, dtype=np.int64)
    n_groups = 0
    longest = 1
    row = fp_start
    while row < fp_end:
        stop = row + 1
        while stop < fp_end and fp_ap_index[stop] == fp_ap_index[row]:
            stop += 1
        if fp_ap_index[row] >= 0:
            group_start[n_groups], group_end[n_groups], group_ap[n_groups] = row, stop, fp_ap_index[row]
            longest = max(longest, stop - row)
            n_groups += 1
        row = stop
    hits = np.empty(n_hit, dtype=np.int64)
    needs_hazard = np.zeros(n_hit, dtype=np.bool_)
    h = 0
    for g in range(n_groups):
        uncertain = (not effective) and group_end[g] - group_start[g] > 1
        for p in range(ap_item_ptr[group_ap[g]], ap_item_ptr[group_ap[g] + 1]):
            hits[h] = ap_items[p]
            needs_hazard[h] = uncertain
            h += 1

    # 2. output rows in the reference's order: coverage by coverage, the coverages in the order the walk
    #    above first meets them, each coverage's items in walk order. Float32 sums downstream (the FM's
    #    input, the summaries) then add in the order the reference adds, which their last bits depend on.
    coverage_of = np.empty(n_hit, dtype=np.int64)
    for h in range(n_hit):
        coverage_of[h] = items[hits[h]]["coverage"]
    by_coverage = np.argsort(coverage_of, kind="mergesort")   # stable: walk order within a coverage
    keys = np.empty(n_hit, dtype=np.int64)
    first = 0
    while first < n_hit:
        last = first + 1
        while last < n_hit and coverage_of[by_coverage[last]] == coverage_of[by_coverage[first]]:
            last += 1
        first_hit = by_coverage[first]   # the coverage's first hit in walk order
        for i in range(first, last):
            keys[by_coverage[i]] = first_hit * n_hit + by_coverage[i]
        first = last
    by_key = np.argsort(keys)
    out = np.empty(n_hit, dtype=np.int64)
    for i in range(n_hit):
        item_row[base + i] = hits[by_key[i]]
        out[by_key[i]] = base + i

    # 3. random rows, keyed by (event, stream)
    samples = max(n_samples, 0)
    damage_ids = np.empty(n_hit, dtype=np.int64)
    n_hazard_hits = 0
    for h in range(n_hit):
        damage_ids[h] = items[hits[h]]["damage_stream"]
        n_hazard_hits += needs_hazard[h]
    hazard_ids = np.empty(n_hazard_hits, dtype=np.int64)
    k = 0
    for h in range(n_hit):
        if needs_hazard[h]:
            hazard_ids[k] = items[hits[h]]["hazard_stream"]
            k += 1
    damage_unique, damage_rows = stream_rows(damage_ids, damage_streams, False, generator, event_id, base_seed,
                                             seeds_valid, samples, inverse_table, cdf_table)
    hazard_unique, hazard_rows = stream_rows(hazard_ids, hazard_streams, True, generator, event_id, base_seed,
                                             seeds_valid, samples, inverse_table, cdf_table)

    # 4. CDFs per (areaperil, vulnerability) pair, then each item's losses
    hazard_cdf = np.empty(longest, dtype=np.float32)
    vuln_pdf = np.empty((longest, n_damage), dtype=np.float32)
    vuln_cdfs = np.empty((longest, n_damage), dtype=np.float32)
    vuln_cdf_len = np.empty(longest, dtype=np.int64)
    eff_cdf = np.empty(n_damage, dtype=np.float32)
    bin_mean = damage_bins["interpolation"]
    h = 0
    for g in range(n_groups):
        probability = fp_probability[group_start[g]:group_end[g]]
        intensity = fp_intensity[group_start[g]:group_end[g]]
        n_hazard = pdf_to_cdf(probability, hazard_cdf)
        group_last = h + ap_item_ptr[group_ap[g] + 1] - ap_item_ptr[group_ap[g]]
        while h < group_last:
            v = items[hits[h]]["vuln"]
            pair_end = h + 1
            while pair_end < group_last and items[hits[pair_end]]["vuln"] == v:
                pair_end += 1
            for i in range(n_hazard):
                vuln_pdf[i, :] = vuln_pdfs[v, intensity[i] - 1, :]
            n_eff = effective_damage_cdf(vuln_pdf, n_hazard, probability, eff_cdf)
            if not effective:
                for i in range(n_hazard):
                    vuln_cdf_len[i] = pdf_to_cdf(vuln_pdf[i], vuln_cdfs[i])
            last_bin = damage_bins[n_eff - 1]
            raw_mean, raw_second, chance = damage_moments(eff_cdf, bin_mean, n_eff)
            adjustment = vuln_adj[v]
            for k in range(h, pair_end):
                item = items[hits[k]]
                o = out[k]
                scaling = damage_scaling(last_bin["damage_type"], last_bin["bin_to"], coverage_tiv[item["coverage"]])
                mean, sd = scaled_moments(raw_mean, raw_second, scaling)
                losses[o, MAX_LOSS] = np.float32(last_bin["bin_to"] * scaling)
                losses[o, CHANCE_OF_LOSS] = np.float32(chance)
                losses[o, STD_DEV] = np.float32(sd)
                losses[o, MEAN] = np.float32(mean)
                if samples == 0:
                    continue
                damage_u = damage_rows[np.searchsorted(damage_unique, item["damage_stream"])]
                hazard_u = damage_u  # only read when the hazard is uncertain, then set below
                if needs_hazard[k]:
                    hazard_u = hazard_rows[np.searchsorted(hazard_unique, item["hazard_stream"])]
                for s in range(samples):
                    r = damage_u[s] * adjustment
                    if effective:
                        loss = sample_damage(r, eff_cdf, n_eff, damage_bins, scaling)
                    elif n_hazard == 1:
                        loss = sample_damage(r, vuln_cdfs[0], vuln_cdf_len[0], damage_bins, scaling)
                    else:
                        i = first_at_least(hazard_u[s], hazard_cdf, n_hazard - 1)
                        loss = sample_damage(r, vuln_cdfs[i], vuln_cdf_len[i], damage_bins, scaling)
                    losses[o, N_SPECIAL + s] = np.float32(loss)
            h = pair_end

    # 5. per coverage (its rows are consecutive, in walk order): TIV share, allocation rule, threshold
    first = 0
    while first < n_hit:
        coverage = coverage_of[by_key[first]]
        last = first + 1
        while last < n_hit and coverage_of[by_key[last]] == coverage:
            last += 1
        tiv = coverage_tiv[coverage]
        share = np.float32(tiv / (last - first))
        for r in range(base + first, base + last):
            losses[r, TIV] = share
        allocate(losses, np.arange(base + first, base + last), tiv, alloc_rule)
        first = last
    if threshold > 0:
        for r in range(base, base + n_hit):
            for s in range(N_SPECIAL, losses.shape[1]):
                if losses[r, s] < threshold:
                    losses[r, s] = 0.0


@nb.njit(cache=True, parallel=True)
def sample_events(event_ids, fp_ptr, fp_intensity, fp_probability, fp_ap_index, ap_item_ptr, ap_items, items,
                  damage_streams, hazard_streams, coverage_tiv, vuln_pdfs, vuln_adj, damage_bins,
                  n_samples, alloc_rule, effective, seeds_valid, generator, base_seed, threshold, inverse_table,
                  cdf_table, event_ptr, item_row, losses):
    """Sample the ground-up losses of a block of events, events in parallel.

    Parameters
    ----------
    event_ids : numpy.ndarray
        int64 [n_events].
    fp_ptr, fp_intensity, fp_probability : numpy.ndarray
        The events' footprint rows (CSR int64 [n_events + 1]; int32 intensity bin ids; float32
        probabilities), sorted by areaperil within each event.
    fp_ap_index : numpy.ndarray
        int64 [n_rows] from :func:`count_hits`.
    ap_item_ptr, ap_items : numpy.ndarray
        int64: the item rows of each areaperil (CSR over the sorted areaperils), each list sorted
        by (vulnerability id, item id).
    items : numpy.ndarray
        ``ITEM_TABLE_DTYPE`` [n_items], one record per row of the caller's items.
    damage_streams, hazard_streams : numpy.ndarray
        ``STREAM_DTYPE``: the random streams the items refer to.
    coverage_tiv : numpy.ndarray
        float64 [n_coverages] TIV of each coverage (the float32 file value).
    vuln_pdfs : numpy.ndarray
        float32 [n_vuln, n_intensity, n_damage] damage pdf per vulnerability and intensity bin.
    vuln_adj : numpy.ndarray
        float32 [n_vuln] factor on the damage random values (1 = none).
    damage_bins : numpy.ndarray
        Structured damage_bin_dict records.
    n_samples, alloc_rule, generator, base_seed : int
        Number of samples, allocation rule 0-3, random generator 0-2, seed offset.
    effective, seeds_valid : bool
        Effective damageability; peril-group seeds computed (False reproduces the reference
        when some item has peril group 0).
    threshold : numpy.float32
        Samples below it are set to 0.
    inverse_table, cdf_table : numpy.ndarray
        Normal lookup tables.
    event_ptr : numpy.ndarray
        int64 [n_events + 1] output rows per event (prefix sum of :func:`count_hits`).
    item_row, losses : numpy.ndarray
        Outputs, int64 [n_rec] and float64 [n_rec, 5 + n_samples], written.
    """
    for e in nb.prange(event_ids.shape[0]):
        n_hit = event_ptr[e + 1] - event_ptr[e]
        if n_hit == 0:
            continue
        _sample_event(event_ids[e], fp_ptr[e], fp_ptr[e + 1], fp_intensity, fp_probability, fp_ap_index, ap_item_ptr,
                      ap_items, items, damage_streams, hazard_streams, coverage_tiv, vuln_pdfs, vuln_adj,
                      damage_bins, n_samples, alloc_rule, effective, seeds_valid, generator, base_seed, threshold,
                      inverse_table, cdf_table, event_ptr[e], n_hit, item_row, losses)
