"""The operator's process memory: fewer malloc arenas, and freed memory given back.

Why: the operator's own records cost ~16 KiB per resource (children, bodies), yet its RSS
grew by 0.1-0.2 MiB per resource in the bench. The rest was memory glibc kept after the
bursts: every thread that allocates may get its own arena (up to 8 per core), and memory
freed in an arena goes back to the system only from the top of the main heap. With ~70
threads (reconciles, child requests, watches) a burst of creations left each arena at its
high-water mark, and a restart into 1,000 resources went past the chart's memory limit.

So the process uses two arenas, set before any thread starts, and returns free pages
(``malloc_trim``) whenever the reconciles have drained after a burst. Where the C library
is not glibc (no ``mallopt``/``malloc_trim``), both are no-ops.
"""

from __future__ import annotations

import ctypes
import threading
import time

# mallopt's parameter for the most arenas (glibc's malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8
ARENAS = 2
# A trim walks every arena: at most this often.
TRIM_INTERVAL_SECONDS = 5.0

_libc = ctypes.CDLL(None)
_lock = threading.Lock()
_last_trim = 0.0


def limit_arenas(count: int = ARENAS) -> bool:
    """Whether glibc took the limit (call before threads start allocating)."""
    mallopt = getattr(_libc, "mallopt", None)
    return bool(mallopt and mallopt(_M_ARENA_MAX, count) == 1)


def release_free_memory() -> bool:
    """Give free heap pages back to the system, unless that was done moments ago;
    whether it ran."""
    global _last_trim
    trim = getattr(_libc, "malloc_trim", None)
    if trim is None:
        return False
    with _lock:
        now = time.monotonic()
        if now - _last_trim < TRIM_INTERVAL_SECONDS:
            return False
        _last_trim = now
    trim(0)
    return True
