"""Random numbers of the ground-up loss sampler, keyed by (event, group).

Every random row is a pure function of a seed, and every seed a pure function of an event id
and a group id (the reference's hashes, ktools' "auto-seed" constants)::

    damage   seed = (base + (G * 1543270363) mod 2^31 + (E * 1943272559) mod 2^31) mod 2^31
    hazard   seed = (base + (H * 1143271949) mod M + (E * 1243274353) mod M) mod M,  M = 1957483729
    peril correlation group
             seed = (base + (P * 1836311903) mod 2^31 + (E * 1943272559) mod 2^31) mod 2^31

so results never depend on how events are split into blocks or in which order items come.

Generators (``random_generator``), each filling one row of ``n`` uniforms from one seed:

* 0 -- Mersenne Twister: numba's ``np.random.seed(seed)`` then ``np.random.random(n)``;
* 1 -- Latin hypercube on the Mersenne Twister: ``n`` uniforms u, a permutation p of 1..n
  (numba's ``np.random.shuffle``), r = (p - u) / n;
* 2 -- Latin hypercube on Philox4x32-7 (the reference's default since oasislmf 2.5.5): the
  64-bit key is the seed, the 128-bit counter ``(block, stream, 0, 0)``; stream 1 drives a
  Fisher-Yates shuffle of 1..n (swap t = 0, 1, ... places position n-1-t, using word t of the
  stream and j = floor(w 2^-32 (n - t))), stream 0 the jitter: r_k = (p_k - w_k 2^-32) / n.
  Four 32-bit words per Philox block, consumed in order.

0 and 1 reproduce the reference bit for bit because both use numba's own generator; 2 is
implemented here from the algorithm (checked against Random123's known-answer values in the
tests).

Correlation (Gaussian copula, as the reference's ``get_corr_rval``): with x the row of the
item's peril correlation group and y the item's own row, z = sqrt(rho) Phi^-1(x) +
sqrt(1 - rho) Phi^-1(y) and the uniform used is Phi(z). Phi^-1 and Phi are 10^6-point tables
over [1e-16, 1 - 1e-16] and [-20, 20]; Phi^-1 is read by truncation for 0.025 <= u <= 0.975 and by
linear interpolation in the tails, Phi always by interpolation. The tables are computed here
(Wichura's AS241 for Phi^-1, erf/erfc for Phi) and agree with scipy's to ~1e-16.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba as nb
import numpy as np

__all__ = [
    "CDF_MAX",
    "CDF_MIN",
    "GENERATORS",
    "NORM_FACTOR",
    "INV_FACTOR",
    "TABLE_SIZE",
    "X_MAX",
    "X_MIN",
    "correlate_with",
    "correlated_uniforms",
    "correlation_seed",
    "damage_seed",
    "fill_uniforms",
    "hazard_seed",
    "normal_quantiles",
    "normal_tables",
    "philox4x32_7",
]

#: random_generator id -> name.
GENERATORS = {0: "Mersenne Twister", 1: "Latin hypercube (Mersenne Twister)", 2: "Latin hypercube (Philox4x32-7)"}

_MOD = 2147483648  # 2^31
_GROUP_MULT = 1543270363
_EVENT_MULT = 1943272559
_HAZARD_GROUP_MULT = 1143271949
_HAZARD_EVENT_MULT = 1243274353
_HAZARD_MOD = 1957483729
_PERIL_GROUP_MULT = 1836311903

# Philox4x32 constants (Random123).
_PHILOX_M0 = np.uint64(0xD2511F53)
_PHILOX_M1 = np.uint64(0xCD9E8D57)
_PHILOX_W0 = np.uint64(0x9E3779B9)
_PHILOX_W1 = np.uint64(0xBB67AE85)
_LOW32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_TWO_POW_MINUS_32 = 1.0 / 4294967296.0
_JITTER_STREAM = 0
_SHUFFLE_STREAM = 1

#: Normal tables: Phi^-1 on linspace(X_MIN, X_MAX, TABLE_SIZE), Phi on linspace(CDF_MIN, CDF_MAX, TABLE_SIZE).
X_MIN = 1e-16
X_MAX = 1 - 1e-16
TABLE_SIZE = 1_000_000
CDF_MIN = -20.0
CDF_MAX = 20.0
INV_FACTOR = (TABLE_SIZE - 1) / (X_MAX - X_MIN)
NORM_FACTOR = (TABLE_SIZE - 1) / (CDF_MAX - CDF_MIN)
_TAIL = 0.025  # Phi^-1 is interpolated below this and above 1 - this


# --------------------------------------------------------------------------- seeds


@nb.njit(cache=True)
def damage_seed(group_id, event_id, base_seed=0):
    """Seed of the damage row of ``group_id`` in ``event_id`` (int64, in [0, 2^31))."""
    return (base_seed + (np.int64(group_id) * _GROUP_MULT) % _MOD + (np.int64(event_id) * _EVENT_MULT) % _MOD) % _MOD


@nb.njit(cache=True)
def hazard_seed(hazard_group_id, event_id, base_seed=0):
    """Seed of the hazard row of ``hazard_group_id`` in ``event_id`` (int64, in [0, 1957483729))."""
    return (base_seed + (np.int64(hazard_group_id) * _HAZARD_GROUP_MULT) % _HAZARD_MOD
            + (np.int64(event_id) * _HAZARD_EVENT_MULT) % _HAZARD_MOD) % _HAZARD_MOD


@nb.njit(cache=True)
def correlation_seed(peril_correlation_group, event_id, base_seed=0):
    """Seed of the row shared by a peril correlation group in ``event_id`` (int64, in [0, 2^31))."""
    return (base_seed + (np.int64(peril_correlation_group) * _PERIL_GROUP_MULT) % _MOD
            + (np.int64(event_id) * _EVENT_MULT) % _MOD) % _MOD


# --------------------------------------------------------------------------- generators


@nb.njit(cache=True)
def philox4x32_7(c0, c1, c2, c3, k0, k1):
    """One Philox4x32 block with 7 rounds.

    Parameters
    ----------
    c0, c1, c2, c3 : int
        The 128-bit counter as four 32-bit words.
    k0, k1 : int
        The 64-bit key as two 32-bit words.

    Returns
    -------
    tuple of 4 numpy.uint32
        The output words.
    """
    x0, x1, x2, x3 = np.uint64(c0), np.uint64(c1), np.uint64(c2), np.uint64(c3)
    key0, key1 = np.uint64(k0), np.uint64(k1)
    for _ in range(7):
        product0 = _PHILOX_M0 * x0
        product1 = _PHILOX_M1 * x2
        x0, x1, x2, x3 = (((product1 >> _SHIFT32) ^ x1 ^ key0) & _LOW32, product1 & _LOW32,
                          ((product0 >> _SHIFT32) ^ x3 ^ key1) & _LOW32, product0 & _LOW32)
        key0 = (key0 + _PHILOX_W0) & _LOW32
        key1 = (key1 + _PHILOX_W1) & _LOW32
    return np.uint32(x0), np.uint32(x1), np.uint32(x2), np.uint32(x3)


@nb.njit(cache=True, fastmath=True)
def _latin_hypercube_philox(seed, out):
    """Fill ``out`` (float64 [n]) with the Philox Latin hypercube row of ``seed``."""
    n = out.shape[0]
    key = np.uint64(seed)
    k0, k1 = key & _LOW32, key >> _SHIFT32
    perms = np.empty(n, dtype=np.float64)
    for k in range(n):
        perms[k] = np.float64(k + 1)
    w0 = w1 = w2 = w3 = np.uint32(0)
    for t in range(n - 1):  # Fisher-Yates from the top: swap t fixes position n - 1 - t
        if t % 4 == 0:
            w0, w1, w2, w3 = philox4x32_7(t // 4, _SHUFFLE_STREAM, 0, 0, k0, k1)
        word = w0 if t % 4 == 0 else (w1 if t % 4 == 1 else (w2 if t % 4 == 2 else w3))
        position = n - 1 - t
        other = int(np.float64(word) * _TWO_POW_MINUS_32 * np.float64(position + 1))
        swap = perms[position]
        perms[position] = perms[other]
        perms[other] = swap
    inv_n = np.float64(1.0) / np.float64(n)
    for k in range(n):
        if k % 4 == 0:
            w0, w1, w2, w3 = philox4x32_7(k // 4, _JITTER_STREAM, 0, 0, k0, k1)
        word = w0 if k % 4 == 0 else (w1 if k % 4 == 1 else (w2 if k % 4 == 2 else w3))
        out[k] = (perms[k] - np.float64(word) * _TWO_POW_MINUS_32) * inv_n


@nb.njit(cache=True, fastmath=True)
def _mersenne_twister(seed, out):
    """Fill ``out`` with numba's MT19937 uniforms after ``np.random.seed(seed)``."""
    np.random.seed(seed)
    out[:] = np.random.random(out.shape[0])


@nb.njit(cache=True, fastmath=True)
def _latin_hypercube_mt(seed, out):
    """Fill ``out`` with the Mersenne Twister Latin hypercube row of ``seed``."""
    n = out.shape[0]
    np.random.seed(seed)
    jitter = np.random.random(n)
    perms = np.arange(1.0, np.float64(n + 1))
    np.random.shuffle(perms)
    out[:] = (perms - jitter) / float(n)


@nb.njit(cache=True)
def fill_uniforms(generator, seed, out):
    """Fill ``out`` (float64 [n]) with the uniforms of ``seed`` from ``generator`` (0, 1 or 2).

    Values are in [0, 1) for 0 and in (0, 1] for the Latin hypercubes.
    """
    if out.shape[0] == 0:
        return
    if generator == 2:
        _latin_hypercube_philox(seed, out)
    elif generator == 1:
        _latin_hypercube_mt(seed, out)
    else:
        _mersenne_twister(seed, out)


# --------------------------------------------------------------------------- normal tables


# Wichura (1988), algorithm AS241 PPND16: Phi^-1 with relative error about 1e-16.
_AS241_A = (3.3871328727963666080e0, 1.3314166789178437745e2, 1.9715909503065514427e3, 1.3731693765509461125e4,
            4.5921953931549871457e4, 6.7265770927008700853e4, 3.3430575583588128105e4, 2.5090809287301226727e3)
_AS241_B = (1.0, 4.2313330701600911252e1, 6.8718700749205790830e2, 5.3941960214247511077e3,
            2.1213794301586595867e4, 3.9307895800092710610e4, 2.8729085735721942674e4, 5.2264952788528545610e3)
_AS241_C = (1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0,
            3.64784832476320460504e0, 1.27045825245236838258e0, 2.41780725177450611770e-1,
            2.27238449892691845833e-2, 7.74545014278341407640e-4)
_AS241_D = (1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
            1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4,
            1.05075007164441684324e-9)
_AS241_E = (6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0,
            2.96560571828504891230e-1, 2.65321895265761230930e-2, 1.24266094738807843860e-3,
            2.71155556874348757815e-5, 2.01033439929228813265e-7)
_AS241_F = (1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
            7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7,
            2.04426310338993978564e-15)


@nb.njit(cache=True)
def _ratio(coef_num, coef_den, r):
    """(sum num_i r^i) / (sum den_i r^i) by Horner's rule, degree 7."""
    num = coef_num[7]
    den = coef_den[7]
    for i in range(6, -1, -1):
        num = num * r + coef_num[i]
        den = den * r + coef_den[i]
    return num / den


@nb.njit(cache=True)
def _normal_ppf(p):
    """Standard normal quantile Phi^-1(p) for 0 < p < 1 (AS241)."""
    q = p - 0.5
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        return q * _ratio(_AS241_A, _AS241_B, r)
    r = p if q < 0 else 1.0 - p
    r = math.sqrt(-math.log(r))
    if r <= 5.0:
        value = _ratio(_AS241_C, _AS241_D, r - 1.6)
    else:
        value = _ratio(_AS241_E, _AS241_F, r - 5.0)
    return -value if q < 0 else value


@nb.njit(cache=True)
def _normal_cdf(x):
    """Standard normal cdf Phi(x): 1/2 + erf/2 near 0, erfc in the tails (as Cephes' ndtr)."""
    z = x * 0.7071067811865476  # x / sqrt(2)
    if abs(z) < 0.7071067811865476:
        return 0.5 + 0.5 * math.erf(z)
    y = 0.5 * math.erfc(abs(z))
    return 1.0 - y if z > 0 else y


@nb.njit(cache=True)
def _tables(x_grid, z_grid):
    inverse = np.empty(x_grid.shape[0])
    cdf = np.empty(z_grid.shape[0])
    for i in range(x_grid.shape[0]):
        inverse[i] = _normal_ppf(x_grid[i])
    for i in range(z_grid.shape[0]):
        cdf[i] = _normal_cdf(z_grid[i])
    return inverse, cdf


@lru_cache(maxsize=1)
def normal_tables() -> tuple[np.ndarray, np.ndarray]:
    """The Phi^-1 and Phi lookup tables (computed once per process, ~16 MB).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        float64 ``[TABLE_SIZE]`` each: Phi^-1 on ``linspace(X_MIN, X_MAX)`` and Phi on
        ``linspace(CDF_MIN, CDF_MAX)``. Read-only.
    """
    inverse, cdf = _tables(np.linspace(X_MIN, X_MAX, TABLE_SIZE), np.linspace(CDF_MIN, CDF_MAX, TABLE_SIZE))
    inverse.flags.writeable = False
    cdf.flags.writeable = False
    return inverse, cdf


@nb.njit(cache=True, fastmath=True)
def _interpolated(value, start, factor, table):
    """Table value at ``(value - start) * factor`` by linear interpolation (ends clamped)."""
    position = (value - start) * factor
    lower = int(math.floor(position))
    fraction = position - lower
    last = table.shape[0] - 2
    if lower < 0:
        lower = 0
    elif lower > last:
        lower = last
    return table[lower] + fraction * (table[lower + 1] - table[lower])


@nb.njit(cache=True, fastmath=True)
def _truncated(value, start, factor, table):
    """Table value at ``int((value - start) * factor)`` (ends clamped)."""
    index = int((value - start) * factor)
    if index < 0:
        index = 0
    elif index > table.shape[0] - 1:
        index = table.shape[0] - 1
    return table[index]


@nb.njit(cache=True, fastmath=True)
def _inverse_normal(u, inverse_table):
    if u < _TAIL or u > 1.0 - _TAIL:
        return _interpolated(u, X_MIN, INV_FACTOR, inverse_table)
    return _truncated(u, X_MIN, INV_FACTOR, inverse_table)


@nb.njit(cache=True, fastmath=True)
def normal_quantiles(u_row, inverse_table, out):
    """Phi^-1 of each uniform of ``u_row`` (float64 [n]) into ``out``, by table lookup."""
    for i in range(u_row.shape[0]):
        out[i] = _inverse_normal(u_row[i], inverse_table)


@nb.njit(cache=True, fastmath=True)
def correlate_with(x_normal, y_row, rho, inverse_table, cdf_table, out):
    """Phi(sqrt(rho) x_normal + sqrt(1 - rho) Phi^-1(y)) per sample; ``out`` may be ``y_row`` itself.

    Parameters
    ----------
    x_normal : numpy.ndarray
        float64 [n]: Phi^-1 of the shared row (:func:`normal_quantiles`), computed once per
        peril correlation group and event.
    y_row : numpy.ndarray
        float64 [n]: the item's own uniforms.
    rho : numpy.float32
        Correlation value in [0, 1]; kept float32 because the reference takes its square root
        in single precision.
    inverse_table, cdf_table : numpy.ndarray
        From :func:`normal_tables`.
    out : numpy.ndarray
        float64 [n], written.
    """
    sqrt_rho = math.sqrt(rho)
    sqrt_rest = math.sqrt(1.0 - rho)
    for i in range(out.shape[0]):
        y_normal = _inverse_normal(y_row[i], inverse_table)
        z = sqrt_rho * x_normal[i] + sqrt_rest * y_normal
        out[i] = _interpolated(z, CDF_MIN, NORM_FACTOR, cdf_table)


@nb.njit(cache=True)
def correlated_uniforms(x_row, y_row, rho, inverse_table, cdf_table, out):
    """Gaussian-copula mix of a shared row and an item's own row (the reference's ``get_corr_rval``).

    Parameters
    ----------
    x_row : numpy.ndarray
        float64 [n]: the peril correlation group's uniforms.
    y_row : numpy.ndarray
        float64 [n]: the item's own (group's) uniforms.
    rho : numpy.float32
        Correlation value in [0, 1].
    inverse_table, cdf_table : numpy.ndarray
        From :func:`normal_tables`.
    out : numpy.ndarray
        float64 [n], written: Phi(sqrt(rho) Phi^-1(x) + sqrt(1 - rho) Phi^-1(y)).
    """
    x_normal = np.empty(x_row.shape[0])
    normal_quantiles(x_row, inverse_table, x_normal)
    correlate_with(x_normal, y_row, rho, inverse_table, cdf_table, out)
