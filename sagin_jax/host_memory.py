"""Host memory: glibc's allocator tuned for XLA's large, short-lived buffers.

Each call of a compiled program on the CPU allocates its outputs afresh (the requests program
returned ~23 MB per 32 seeds while requests were stored wide, 7.3 MB since). With glibc's
defaults those buffers come from ``mmap`` or from heaps that are trimmed or freed as soon as
they are released, so the next call touches new pages: the kernel zeroes every one of them
(about 5,600 page faults per call of the requests program on one device, wide storage).
``tune_malloc`` keeps freed memory in the heap for reuse: generating 4,096 paper scenarios on
2 host devices took 1.65-1.78 s instead of 1.84-2.13 s (3 runs each, alternating processes,
wide storage), with no page faults left and the same peak memory. The settings work
together: in ``tests/test_host_memory.py``'s workload the mmap or the trim threshold alone
faults more than glibc's defaults, the top pad alone or any two of them not at all.

The command line calls it at start-up; ``SAGIN_JAX_MALLOC_TUNING=0`` turns it off. It changes
no result, only how fast memory is handed out; the process keeps up to 2 GiB of freed memory.
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc's mallopt parameters
SETTINGS = {
    _M_MMAP_THRESHOLD: 32 << 20,  # blocks up to 32 MiB (glibc's maximum) from the heap
    _M_TRIM_THRESHOLD: (1 << 31) - 1,  # keep up to 2 GiB of freed memory
    _M_TOP_PAD: 512 << 20,  # grow the heap 512 MiB at a time (address space, not memory)
}


def tune_malloc() -> bool:
    """Apply ``SETTINGS`` with glibc's ``mallopt``: True if every one was accepted; False (and
    nothing changed) when disabled by ``SAGIN_JAX_MALLOC_TUNING=0``, off Linux, or when the C
    library has no working ``mallopt`` (e.g. musl's returns 0)."""
    if os.environ.get("SAGIN_JAX_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all([mallopt(param, value) == 1 for param, value in SETTINGS.items()])


def peak_rss_mib() -> float:
    """This process's peak resident memory, MiB: ``VmHWM`` of ``/proc/self/status`` where there
    is one. ``getrusage``'s ``ru_maxrss`` is the fallback only: on Linux a child process starts
    with its parent's value (it survives ``fork`` and ``exec``), so a fresh process started by
    a large one would report the parent's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
