"""sagin_jax: a JAX-accelerated, vectorised simulator of online network-resource allocation in a
space-air-ground integrated network, with the DDRL-NRA agent and its baselines.

Layout (the architecture, in order): ``scenario`` → ``features`` → ``policies`` → ``embedding`` →
``simulation`` → ``training`` → ``experiments``; ``reference`` is the independent networkx oracle.
"""
import os as _os

__version__ = "0.1.0"

SMALL_LOOP_BYTES = 1 << 24
"""XLA CPU compiles a ``while`` loop that touches fewer bytes than this (and holds no scatter or
sort) into one function instead of dispatching each of its operations separately. The default
(1 KiB) leaves the simulator's inner loops dispatched op by op, which on a CPU costs more than the
arithmetic; see README, Performance. Set through ``XLA_FLAGS`` before JAX starts its backend, and
only if the user has not set ``xla_backend_extra_options`` themselves."""


def _tune_xla_cpu() -> None:
    flags = _os.environ.get("XLA_FLAGS", "")
    if "xla_backend_extra_options" not in flags:
        _os.environ["XLA_FLAGS"] = (flags + " --xla_backend_extra_options="
                                    f"xla_cpu_small_while_loop_byte_threshold={SMALL_LOOP_BYTES}"
                                    ).strip()


_tune_xla_cpu()
