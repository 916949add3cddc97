"""Compilation bookkeeping: JAX's persistent compilation cache, and a counter of the XLA programs a
run compiles (the count that ``reproduce`` and ``bench`` report, and that a test bounds).

A sweep is one compiled program per shape; everything else (host conversions, re-created ``jit``
closures) is overhead that this module makes visible.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # every backend compile request
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"  # ... of which served from disk

_lock = threading.Lock()
_totals = {"requests": 0, "hits": 0, "seconds": 0.0}
_listening = False


def _on_duration(event: str, secs: float, **_kw) -> None:
    if event == COMPILE_EVENT:
        with _lock:
            _totals["requests"] += 1
            _totals["seconds"] += secs


def _on_event(event: str, **_kw) -> None:
    if event == CACHE_HIT_EVENT:
        with _lock:
            _totals["hits"] += 1


def _listen() -> None:
    global _listening
    if not _listening:
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        jax.monitoring.register_event_listener(_on_event)
        _listening = True


@dataclass
class CompileStats:
    compiled: int = 0  # programs XLA compiled (persistent-cache misses included)
    cache_hits: int = 0  # programs loaded from the persistent cache instead
    seconds: float = 0.0  # wall time of compile requests (hits included)

    def __str__(self) -> str:
        return (f"{self.compiled} programs compiled, {self.cache_hits} loaded from the "
                f"compilation cache, {self.seconds:.1f} s")


class CompileCounter:
    """Context manager counting the XLA compilations inside it (all threads).

    >>> with CompileCounter() as cc:
    ...     run()
    >>> cc.stats.compiled
    """

    def __enter__(self) -> "CompileCounter":
        _listen()
        with _lock:
            self._start = dict(_totals)
        self.stats = CompileStats()
        return self

    def snapshot(self) -> CompileStats:
        with _lock:
            req = _totals["requests"] - self._start["requests"]
            hits = _totals["hits"] - self._start["hits"]
            secs = _totals["seconds"] - self._start["seconds"]
        return CompileStats(compiled=req - hits, cache_hits=hits, seconds=secs)

    def __exit__(self, *exc) -> None:
        self.stats = self.snapshot()


def default_cache_dir() -> Path:
    """``$SAGIN_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/sagin-jax/xla``, else
    ``~/.cache/sagin-jax/xla``."""
    env = os.environ.get("SAGIN_JAX_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "sagin-jax" / "xla"


def enable_persistent_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache under ``path`` (default ``default_cache_dir()``),
    caching every program however small or quick to compile, so a second run of the same
    experiment compiles (almost) nothing. Returns the directory, or None if it cannot be created
    (the run then simply compiles as usual)."""
    cache = Path(path) if path is not None else default_cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return cache


# --- compiling ahead, on every core ---------------------------------------------------------
@dataclass
class Job:
    """One program a run will call: ``fn`` (a ``jax.jit`` function) with ``args`` (placed as they
    will be passed: the compiled program depends on their shapes, dtypes and shardings) and the
    static keyword arguments ``static``."""
    fn: object
    args: tuple
    static: dict | None = None

    def key(self) -> tuple:
        """Equal for two jobs that compile the same program."""
        leaves, treedef = jax.tree_util.tree_flatten(self.args)
        sig = tuple((tuple(x.shape), str(x.dtype), str(getattr(x, "sharding", None)))
                    if hasattr(x, "shape") else ("py", repr(x)) for x in leaves)
        return (id(self.fn), tuple(sorted((self.static or {}).items(), key=lambda kv: kv[0])),
                str(treedef), sig)

    def lower(self):
        return self.fn.lower(*self.args, **(self.static or {}))


def compile_workers() -> int:
    """Threads for ``compile_ahead``: one per core (XLA compiles one program on one core)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else (os.cpu_count() or 1))


def compile_ahead(jobs, workers: int | None = None) -> int:
    """Compile every distinct program of ``jobs`` now, ``workers`` at a time (default: one per
    core), so that the calls that follow find them compiled. XLA compiles a program on one core,
    so a run that compiles its programs one by one, as it first calls each, leaves the other
    cores idle; compiling them side by side divides a cold run's compile time by up to the core
    count. ``jobs`` may be a generator: each job is submitted as soon as it is made, so the
    work of making the next ones overlaps the compiles. Lowering (tracing) stays in the
    caller's thread; only XLA's compilation runs in the pool. The persistent cache applies as
    usual. -> the number of distinct programs."""
    workers = compile_workers() if workers is None else max(1, int(workers))
    seen, futures = set(), []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for job in jobs:
            k = job.key()
            if k not in seen:
                seen.add(k)
                futures.append(pool.submit(job.lower().compile))
        for f in futures:
            f.result()  # re-raises a compile error here
    return len(futures)
