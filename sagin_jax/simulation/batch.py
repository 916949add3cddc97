"""Many seeds at once: run the online process for stacked per-seed scenarios in one compiled call.

``make_substrates`` / ``make_requests`` live in ``sagin_jax.scenario.generate`` and are re-exported
here for existing callers."""
from __future__ import annotations

import functools
from typing import Sequence

import jax
from jax.sharding import PartitionSpec as P

from sagin_jax.compilation import Job
from sagin_jax.devices.seed_axis import run_index, seed_keys, take_runs, unpad
from sagin_jax.devices.sharding import AXIS
from sagin_jax.policies.base import NodePolicy
from sagin_jax.scenario.build import max_concurrent
from sagin_jax.scenario.generate import make_requests, make_substrates  # noqa: F401 (re-export)
from sagin_jax.scenario.types import Requests, Substrate
from sagin_jax.simulation.online import request_step_strategy, simulate


SEED_LOOPS = ("vmap", "map")


def default_seed_loop() -> str:
    """``"map"`` on a CPU, ``"vmap"`` on an accelerator (see ``over_seeds``)."""
    return "map" if jax.default_backend() == "cpu" else "vmap"


def over_seeds(fn, seed_loop: str | None = None, mesh=None):
    """Batch a per-seed function over the leading (seed) axis of all its arguments.

    ``"vmap"``: one vectorised program over every seed, the choice for an accelerator.
    ``"map"``: the seeds run one after another inside the program (``lax.map``). Batched
    ``while`` loops run until their slowest member is done, so a vmapped BFS costs the longest
    BFS among the seeds; on a CPU, which gains nothing from the wide vector, looping is ~5x
    faster. With a ``mesh`` (``sagin_jax.devices.sharding.seed_mesh``) each device runs its
    own block of seeds (``shard_map``), so several CPU host devices or GPUs work in parallel.
    Every combination gives the same numbers.
    """
    seed_loop = default_seed_loop() if seed_loop is None else seed_loop
    if seed_loop not in SEED_LOOPS:
        raise ValueError(f"seed_loop must be one of {SEED_LOOPS}, got {seed_loop!r}")
    if seed_loop == "vmap":
        body = jax.vmap(fn)
    else:
        def body(*args):
            return jax.lax.map(lambda a: fn(*a), args)
    if mesh is None:
        return body
    return jax.shard_map(body, mesh=mesh, in_specs=P(AXIS), out_specs=P(AXIS), check_vma=False)


@functools.partial(jax.jit, static_argnames=("policy", "max_active", "record_paths",
                                             "seed_loop", "mesh", "strategy"))
def simulate_batch(policy: NodePolicy, params, keys, subs: Substrate, reqs: Requests,
                   max_active: int, record_paths: bool = False, seed_loop: str | None = None,
                   mesh=None, strategy: str | None = None):
    """``simulate`` over a leading seed axis of keys, substrates and requests (see
    ``over_seeds`` for ``seed_loop`` and ``mesh``, ``online.request_step_strategy`` for
    ``strategy``).

    ``params`` is shared by all seeds (``None`` for the heuristics). The "kernel" strategy runs
    ``kernels.simulate.simulate_kernel`` where it applies (``kernel_applies``).
    """
    if request_step_strategy(strategy) == "kernel":  # Pallas is imported only when used
        from sagin_jax.kernels.simulate import kernel_applies, simulate_kernel
        if kernel_applies(policy, strategy, record_paths, mesh):
            return simulate_kernel(policy, params, keys, subs, reqs, max_active,
                                   interpret=jax.default_backend() == "cpu")
    def run(key, sub, req):
        return simulate(policy, params, key, sub, req, max_active=max_active,
                        record_paths=record_paths, strategy=strategy)
    return over_seeds(run, seed_loop, mesh)(keys, subs, reqs)


TABLE_BUCKET = 16
"""Active-table sizes are rounded up to a multiple of this, so that experiments whose request
sets differ slightly share one compiled program (a larger table changes no result: a request
takes the first free row)."""


def table_size(*request_sets: Requests) -> int:
    """Active-request table size that cannot overflow for any seed of any of ``request_sets``
    (pass the train and the test sets together so that training and evaluation share it)."""
    most = max(max_concurrent(r) for r in request_sets)
    return -(-most // TABLE_BUCKET) * TABLE_BUCKET


def _simulate_call(policy, params, seeds, subs, reqs, record_paths, seed_loop, mesh,
                   max_active):
    """(arguments, static keywords) of ``simulate_batch`` for ``simulate_seeds``."""
    args = (policy, params) + take_runs((seed_keys(seeds), subs, reqs),
                                        run_index(len(seeds), mesh), mesh)
    max_active = table_size(reqs) if max_active is None else max_active
    return args, dict(max_active=max_active, record_paths=record_paths, seed_loop=seed_loop,
                      mesh=mesh)


def simulate_jobs(policy: NodePolicy, params, seeds: Sequence[int], subs: Substrate,
                  reqs: Requests, record_paths: bool = False, seed_loop: str | None = None,
                  mesh=None, max_active: int | None = None) -> list:
    """The program ``simulate_seeds`` with these arguments will run, as a compile job."""
    args, static = _simulate_call(policy, params, list(seeds), subs, reqs, record_paths,
                                  seed_loop, mesh, max_active)
    return [Job(simulate_batch, args, static)]


def simulate_seeds(policy: NodePolicy, params, seeds: Sequence[int], subs: Substrate,
                   reqs: Requests, record_paths: bool = False, seed_loop: str | None = None,
                   mesh=None, max_active: int | None = None):
    """``simulate_batch`` for a list of seeds, padding the seed axis to the mesh size and placing
    it on the mesh; -> (final states, Outcome) with leaves [S, ...] as numpy arrays."""
    args, static = _simulate_call(policy, params, seeds, subs, reqs, record_paths, seed_loop,
                                  mesh, max_active)
    return unpad(simulate_batch(*args, **static), len(seeds))
