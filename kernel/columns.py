"""Column moves between the record layouts of the loss stage, one pass over the rows.

Ground-up records carry ``[-5, -4, -3, -2, -1, samples]``; the FM carries only the columns
it computes. Selecting or spreading columns with numpy fancy indexing walks the array once
per column (strided); these kernels copy row by row.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def gather_columns(src, cols):
    """float64[n, len(cols)]: ``out[:, j] = src[:, cols[j]]``."""
    n, m = src.shape[0], cols.shape[0]
    out = np.empty((n, m))
    for r in range(n):
        for j in range(m):
            out[r, j] = src[r, cols[j]]
    return out


@njit(cache=True, nogil=True)
def scatter_columns(src, cols, n_out):
    """float64[n, n_out]: ``out[:, cols[j]] = src[:, j]``, every other column zero."""
    n, m = src.shape[0], cols.shape[0]
    out = np.empty((n, n_out))
    for r in range(n):
        for c in range(n_out):
            out[r, c] = 0.0
        for j in range(m):
            out[r, cols[j]] = src[r, j]
    return out
