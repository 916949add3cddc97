"""sagin_jax: a JAX-accelerated, vectorised simulator of online network-resource allocation in a
space-air-ground integrated network, with the DDRL-NRA agent and its baselines.

Layout (the architecture, in order): ``scenario`` → ``features`` → ``policies`` → ``embedding`` →
``simulation`` → ``training`` → ``validate`` → ``experiments`` → ``cli``, above a floor of
``checks``, ``files``, ``config``, ``compilation`` and ``devices`` (seed meshes); ``reference`` is
the independent networkx oracle. No module imports from a layer above its own
(tests/test_layering.py).
"""
import os as _os
import sys as _sys
import warnings as _warnings

__version__ = "0.1.0"

SMALL_LOOP_BYTES = 1 << 24
"""XLA CPU compiles a ``while`` loop that touches fewer bytes than this (and holds no scatter or
sort) into one function instead of dispatching each of its operations separately. The default
(1 KiB) leaves the simulator's inner loops dispatched op by op, which on a CPU costs more than the
arithmetic; see README, Performance. Set through ``XLA_FLAGS`` before JAX starts its backend, and
only if the user has not set ``xla_backend_extra_options`` themselves."""


def backend_started() -> bool:
    """Has JAX already started a backend (so ``XLA_FLAGS`` changes no longer apply)?"""
    if "jax" not in _sys.modules:
        return False
    try:
        from jax._src import xla_bridge
        return bool(getattr(xla_bridge, "_backends", None))
    except Exception:  # noqa: BLE001 - a private attribute: if it moved, assume not started
        return False


def _tune_xla_cpu() -> None:
    """Set the small-loop threshold in ``XLA_FLAGS`` (the one import-time side effect of the
    package). If JAX's backend is already running it cannot apply: say so once."""
    flags = _os.environ.get("XLA_FLAGS", "")
    if "xla_backend_extra_options" in flags:
        return
    _os.environ["XLA_FLAGS"] = (flags + " --xla_backend_extra_options="
                                f"xla_cpu_small_while_loop_byte_threshold={SMALL_LOOP_BYTES}"
                                ).strip()
    if backend_started():
        _warnings.warn("sagin_jax was imported after JAX started its backend, so the CPU "
                       "loop-size speed-up (XLA_FLAGS, see README 'Performance') does not apply "
                       "in this process; import sagin_jax before running any JAX computation",
                       RuntimeWarning, stacklevel=3)


_tune_xla_cpu()
