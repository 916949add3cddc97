"""Compilation bookkeeping: JAX's persistent compilation cache, and a counter of the XLA programs a
run compiles (the count that ``reproduce`` and ``bench`` report, and that a test bounds).

A sweep is one compiled program per shape; everything else (host conversions, re-created ``jit``
closures) is overhead that this module makes visible.
"""
from __future__ import annotations

import os
import threading
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
