"""Host-side drivers: train a seeds × learning-rates grid as ONE compiled program, evaluate it.

The grid runs epoch by epoch (one jitted, vmapped ``Trainer.epoch`` per call) so a progress bar can
show the running AR / ACR / R/C between epochs without any host callback inside the hot loop.
Compile time is measured apart from run time (ahead-of-time ``lower().compile()``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax.scenario.types import Requests, Substrate
from sagin_jax.simulation.batch import (make_requests, make_substrates, over_seeds, seed_keys,
                                        table_size)
from sagin_jax.simulation.sharding import shard_seeds
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.reinforce import TrainCurves, make_evaluate, make_train


@dataclass
class TrainResult:
    params: Any  # leaves [S, L, ...]
    curves: TrainCurves  # leaves [S, L, epochs, batches]
    seeds: list
    lrs: list
    subs: Substrate  # [S]
    compile_s: float
    run_s: float

    def params_at(self, i: int, j: int):
        return jax.tree_util.tree_map(lambda x: x[i, j], self.params)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="epoch", leave=False)


def _runs_axis(n_runs: int, mesh) -> np.ndarray:
    """Run indices padded (repeating the last run) to a multiple of the mesh size."""
    d = 1 if mesh is None else mesh.devices.size
    return np.minimum(np.arange(-(-n_runs // d) * d), n_runs - 1)


def train_grid(cfg: ScenarioConfig, tcfg: TrainConfig, seeds: Sequence[int],
               lrs: Sequence[float], progress: bool = True,
               subs: Substrate | None = None, train_reqs: Requests | None = None,
               seed_loop: str | None = None, mesh=None) -> TrainResult:
    """Train every (seed, lr) pair in one compiled program; -> TrainResult with leaves [S, L, ...].

    The S x L runs form one run axis, batched by ``over_seeds`` (``seed_loop`` "vmap" or "map",
    default by backend) and, with a ``mesh``, sharded over its devices. The program is called once
    per epoch so a progress bar can show the running metrics; compile time is measured apart.
    """
    seeds, lrs = list(seeds), list(lrs)
    subs = make_substrates(cfg, seeds) if subs is None else subs
    train_reqs = make_requests(cfg, seeds, "train") if train_reqs is None else train_reqs
    trainer = make_train(tcfg, train_reqs.n_requests, table_size(train_reqs))
    n_s, n_l = len(seeds), len(lrs)
    idx = _runs_axis(n_s * n_l, mesh)
    seed_of, lr_of = idx // n_l, idx % n_l
    take = lambda tree, i: jax.tree_util.tree_map(lambda x: x[i], tree)  # noqa: E731
    place = (lambda t: t) if mesh is None else (lambda t: shard_seeds(t, mesh))
    run_keys = place(take(seed_keys(seeds), seed_of))
    run_lrs = place(jnp.asarray(lrs, jnp.float32)[lr_of])
    run_subs = place(take(subs, seed_of))
    run_reqs = place(take(train_reqs, seed_of))

    init = jax.jit(over_seeds(trainer.init, seed_loop, mesh))
    epoch = jax.jit(over_seeds(trainer.epoch, seed_loop, mesh), donate_argnums=(0,))
    t0 = time.perf_counter()
    carry = init(run_keys, run_lrs, run_subs)
    compiled = epoch.lower(carry, run_subs, run_reqs).compile()
    compile_s = time.perf_counter() - t0

    bar = _progress(tcfg.epochs, f"train {tcfg.algo} {n_s} seeds x {n_l} lr", progress)
    curves = []
    t0 = time.perf_counter()
    for _ in range(tcfg.epochs):
        carry, curve = compiled(carry, run_subs, run_reqs)
        curves.append(curve)
        if bar is not None:
            last = jax.tree_util.tree_map(lambda x: float(jnp.mean(x[..., -1])), curve)
            bar.set_postfix(AR=f"{last.ar:.0f}", ACR=f"{last.acr:.3f}", RC=f"{last.rc:.3f}")
            bar.update(1)
    jax.block_until_ready(carry.params)
    run_s = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    grid = lambda x: np.asarray(x)[: n_s * n_l].reshape((n_s, n_l) + x.shape[1:])  # noqa: E731
    stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs, axis=1), *curves)
    return TrainResult(params=jax.tree_util.tree_map(grid, carry.params),
                       curves=jax.tree_util.tree_map(grid, stacked), seeds=seeds, lrs=lrs,
                       subs=subs, compile_s=compile_s, run_s=run_s)


def evaluate_grid(tcfg: TrainConfig, params, subs: Substrate, test_reqs: Requests, seeds,
                  seed_loop: str | None = None, mesh=None):
    """Greedy test pass (Algorithm 2) of params [S, L, ...] on each seed's test requests;
    -> Outcome with leaves [S, L, R, ...]."""
    ev = make_evaluate(tcfg, table_size(test_reqs))
    n_s = len(seeds)
    n_l = jax.tree_util.tree_leaves(params)[0].shape[1]
    idx = _runs_axis(n_s * n_l, mesh)
    seed_of, lr_of = idx // n_l, idx % n_l
    take = lambda tree, i: jax.tree_util.tree_map(lambda x: x[i], tree)  # noqa: E731
    place = (lambda t: t) if mesh is None else (lambda t: shard_seeds(t, mesh))
    run_params = place(jax.tree_util.tree_map(lambda x: x[seed_of, lr_of], params))
    args = (run_params, place(take(seed_keys(seeds), seed_of)), place(take(subs, seed_of)),
            place(take(test_reqs, seed_of)))
    _, out = jax.jit(over_seeds(ev, seed_loop, mesh))(*args)
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x)[: n_s * n_l].reshape((n_s, n_l) + x.shape[1:]), out)
