"""Reusing freed array memory: the one process-wide tuning a NumPy training loop needs.

A training step allocates and frees hundreds of temporaries of a few hundred kilobytes. By
default glibc's malloc serves each of them with fresh pages from the kernel and hands them back
when freed, so every step pays for the page faults again: about 760 per step of the reverse
example's model, a quarter of its CPU time (measured with ``resource.getrusage``). Raising
malloc's mmap and trim thresholds keeps freed memory in the process for the next step, which is
what PyTorch's caching allocator does for its own tensors.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def reuse_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Ask glibc's malloc to keep freed memory for reuse; True if it took the settings.

    Arrays smaller than ``mmap_threshold`` bytes then come from the heap, and up to
    ``trim_threshold`` bytes of free heap stay mapped instead of going back to the kernel, so
    the process's resident size does not shrink between steps. It affects the whole process
    (NumPy and anything else that uses malloc) and does nothing off Linux/glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        log.debug("reuse_freed_memory: no glibc mallopt here; leaving malloc as it is")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    return mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and ok
