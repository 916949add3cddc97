"""``sagin_jax.host_memory``: with glibc tuned, freed buffers are reused without page faults
(the effect it exists for, measured in a fresh process), and it can be turned off."""
from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from sagin_jax import host_memory

# A worker thread (XLA runs programs on its own threads) allocates, fills and frees 18 MB of
# buffers 30 times after a warm-up, and prints its minor page faults.
_WORKLOAD = """
import resource, sys, threading
import numpy as np
if sys.argv[1] == "1":
    from sagin_jax.host_memory import tune_malloc
    assert tune_malloc()
out = []
def work():
    for size in (3 << 20, 9 << 20, 20 << 20, 6 << 20):
        a = np.ones(size, np.uint8)
        del a
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(30):
        bufs = [np.ones(s, np.uint8) for s in (5 << 20, 12 << 20, 1 << 20)]
        del bufs
    out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
t = threading.Thread(target=work)
t.start()
t.join()
print(out[0])
"""


def _glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and bool(ctypes.CDLL(None).gnu_get_libc_version)
    except (OSError, AttributeError):
        return False


def _faults(tuned: bool) -> int:
    done = subprocess.run([sys.executable, "-c", _WORKLOAD, "1" if tuned else "0"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@pytest.mark.slow
@pytest.mark.skipif(not _glibc(), reason="mallopt's settings are glibc's")
def test_tuned_heap_reuses_freed_buffers_without_page_faults():
    """Untuned, the workload faults its buffers in again and again (~1,000 faults here);
    tuned, freed memory is reused: (almost) none."""
    untuned, tuned = _faults(False), _faults(True)
    assert tuned < 50, tuned
    assert untuned > tuned + 200, (untuned, tuned)


def test_turned_off_by_the_environment(monkeypatch):
    calls = []
    monkeypatch.setenv("SAGIN_JAX_MALLOC_TUNING", "0")
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: calls.append(a))
    assert host_memory.tune_malloc() is False
    assert calls == []


def test_peak_rss_of_a_fresh_process_is_its_own():
    """A process started by one holding ~400 MB reports its own peak, not its parent's (which
    ``ru_maxrss`` would carry over on Linux)."""
    import subprocess
    import numpy as np
    from sagin_jax.host_memory import peak_rss_mib
    big = np.ones(50_000_000)  # 400 MB touched
    big += 1
    assert peak_rss_mib() > 350
    code = "from sagin_jax.host_memory import peak_rss_mib; print(peak_rss_mib())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout)
    assert 1 < child < 200, child
