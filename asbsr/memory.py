"""Keep freed CPU memory for reuse: the allocator setting that training and inference apply.

PyTorch takes its CPU tensors from the C library's ``malloc``. glibc serves a request above its
mmap threshold (128 KiB, rising with use to at most 32 MiB) with a fresh ``mmap`` from the
kernel, hands it back on ``free``, and trims free memory off the top of its heap; every new
tensor that large then costs a page fault for each 4 KiB page as it is first written. A
paper-size training step or a 30,000-query inference chunk allocates and frees tensors of
100-150 MB many times over (LTE's rows: queries x 4 neighbours x 256 channels), so on a CPU a
large share of the time went to the kernel zeroing pages rather than to the arithmetic
(benchmarks/RESULTS.md, "Allocator").

``keep_freed_memory()`` tells glibc to serve every request from its heap (``M_MMAP_MAX = 0``) and to
keep freed memory there (``M_TRIM_THRESHOLD`` and ``M_TOP_PAD`` at their maximum, 2 GiB), so the
second step reuses the pages of the first. The same can be had from the environment with
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``, and is what the PyTorch CPU tuning guide gets
from jemalloc or tcmalloc. The arithmetic is untouched: outputs are bit-for-bit the same.

The price: the process keeps up to its peak heap until it exits, instead of giving memory back
between steps. ``asbsr.train`` and ``asbsr.inference.upscale`` call it on CPU; set
``ASBSR_KEEP_FREED_MEMORY=0`` to leave the C library's defaults alone. It does nothing (and
returns ``False``) where the C library is not glibc: macOS, Windows, musl.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1
ENVIRONMENT = "ASBSR_KEEP_FREED_MEMORY"

_applied: bool | None = None


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep and reuse freed memory for the rest of the process (see the
    module's docstring). Idempotent; returns whether the setting is in force."""
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get(ENVIRONMENT, "1").strip().lower() in {"0", "false", "no", "off"}:
        _applied = False
        return False
    libc = _glibc()
    if libc is None:
        _applied = False
        return False
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the top pad and trim threshold are best effort
    _applied = bool(libc.mallopt(M_MMAP_MAX, 0))
    if _applied:
        libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX)
        libc.mallopt(M_TOP_PAD, _INT_MAX)
    return _applied
