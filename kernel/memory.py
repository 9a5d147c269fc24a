"""Process-wide memory settings for the loss computation: fewer page faults and TLB shootdowns.

An event block allocates its record arrays (hundreds of MB) and frees them when the next block
starts. With glibc's defaults, an allocation above the (dynamic) mmap threshold is a fresh mapping
that the kernel zero-fills page by page on first touch, and freeing it unmaps it again, which on
a multi-threaded process interrupts every core (a TLB shootdown; costly in a VM). numpy also asks
for transparent huge pages (``madvise``) on large arrays, so each first touch zero-fills 2 MiB at
once. Measured on PiWind 100,784 locations, 10 samples, 2 cores: 29 s of the run's system time was
this; :func:`tune_process_memory` takes it to about 7 s (wall 120 s -> 103 s), at ~0.2 GB more peak
memory (freed memory stays with the process for the next block instead of going back to the system).

glibc will not raise the mmap threshold above 32 MiB, and at 100 samples a block's arrays are
larger than that (PiWind x8's largest events hit 187,772 items: 158 MB of ground-up records,
twice that insured with its two layers), so they were still mapped and unmapped block after
block. One chunk of 1/32 of PiWind x8's events at 100 samples, one thread, runs interleaved:
3.0 M page faults, 16-18 s of system time, wall 52.2 / 58.0 s; with ``M_MMAP_MAX = 0`` every
allocation comes from the heap, which keeps freed memory for the next block: 0.9 M faults (the
heap's first touch), 6-7.5 s, wall 44.4 / 44.9 s, peak RSS 3.16 -> 3.52 GiB. Transparent huge
pages on top saved 1.6 s more in one run, for 0.3 GiB more peak memory, so they stay off.

Called once at the start of a process that computes losses (``perilflow run``, ``perilflow-worker``),
never inside a kernel function. Outside glibc (e.g. musl) it does nothing.

The other side of keeping freed memory: what a process frees once and will not reuse in the same
shapes stays resident. :func:`release_free_memory` hands it back where that happens: after a chunk
has built its run (reading the inputs and building the FM plans leaves ~0.5 GB free on PiWind x8,
measured on one chunk of 1/32 at 100 samples: RSS 1,095 -> 608 MiB, peak 2,156 -> 2,013 MiB).
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["release_free_memory", "tune_process_memory"]

#: mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
#: the largest mmap threshold glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): blocks below it come from
#: the heap and are reused
MMAP_THRESHOLD = 32 << 20
#: free memory kept by the heap before it is given back (so a block's arrays are reused by the next block)
TRIM_THRESHOLD = 4 << 30
#: how far the heap grows at once
TOP_PAD = 512 << 20
#: mappings malloc may make for large blocks: none, so that large arrays come from the heap and are reused
MMAP_MAX = 0

_done = False


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_free_memory() -> bool:
    """Give the memory malloc holds free back to the system (glibc ``malloc_trim``).

    Returns True if glibc's ``malloc_trim`` was found and released anything.
    """
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return bool(trim(0))


def tune_process_memory() -> bool:
    """Set glibc malloc's thresholds and stop numpy's huge-page advice, once per process.

    Returns True if glibc's ``mallopt`` was found and accepted the settings.
    """
    global _done
    if _done:
        return True
    import numpy as np

    hugepage = getattr(getattr(np, "_core", None), "multiarray", None)
    if hugepage is not None and hasattr(hugepage, "_set_madvise_hugepage"):
        hugepage._set_madvise_hugepage(False)
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, min(TRIM_THRESHOLD, 2**31 - 1)),
        (_M_TOP_PAD, TOP_PAD), (_M_MMAP_MAX, MMAP_MAX)))
    _done = ok
    return ok
