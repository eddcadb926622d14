"""Keep freed memory in the process instead of returning it to the kernel (glibc's malloc, Linux).

glibc serves an allocation above its mmap threshold (at most 32 MB) with a fresh mapping and unmaps it on free, so a
training step that allocates the same large activations and gradients again pays the kernel to zero and map every
page again, one page fault per 4 KB touched. Served from the heap and not trimmed, the pages are reused; the
arithmetic is unchanged, so every checkpoint and number is the same bit for bit (benchmarks/malloc.py measures
both, docs/benchmarks.md has the numbers, tests/test_memory.py counts the page faults). The price is a higher
resident size: the heap keeps its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

logger = logging.getLogger(__name__)

# mallopt's parameter numbers (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # the largest value mallopt takes (an int): about 2 GiB of free heap before trimming


def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and keep freed pages; True where it took effect. A no-op off glibc
    (macOS, musl) and where GLIBC_TUNABLES already sets malloc's options (the user's own choice)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    applied = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
    if not applied:
        logger.debug("mallopt refused: freed memory goes back to the kernel as by default")
    return applied
