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
from sagin_jax.simulation.batch import make_requests, make_substrates, seed_keys, table_size
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


def train_grid(cfg: ScenarioConfig, tcfg: TrainConfig, seeds: Sequence[int],
               lrs: Sequence[float], progress: bool = True,
               subs: Substrate | None = None, train_reqs: Requests | None = None,
               seed_chunk: int | None = None, mesh=None) -> TrainResult:
    """Train every (seed, lr) pair; -> TrainResult with leaves [S, L, ...].

    One compiled program covers the whole grid. ``seed_chunk`` runs the seeds through that same
    program a chunk at a time (every chunk has the same shapes, so it compiles once): on a CPU a
    few seeds per call is faster than all at once (see README, 'Performance'); on an accelerator
    leave it ``None``. ``mesh`` (see ``sagin_jax.simulation.sharding.seed_mesh``) shards the
    seed axis of every chunk over its devices.
    """
    seeds = list(seeds)
    subs = make_substrates(cfg, seeds) if subs is None else subs
    train_reqs = make_requests(cfg, seeds, "train") if train_reqs is None else train_reqs
    trainer = make_train(tcfg, train_reqs.n_requests, table_size(train_reqs))
    lr_arr = jnp.asarray(lrs, jnp.float32)
    n = len(seeds)
    chunk = n if not seed_chunk or seed_chunk >= n else seed_chunk
    n_chunks = -(-n // chunk)
    # pad the seed axis to a multiple of the chunk by repeating the last seed (dropped after)
    pad_idx = np.minimum(np.arange(n_chunks * chunk), n - 1)
    def take(tree, idx):
        part = jax.tree_util.tree_map(lambda x: x[idx], tree)
        return part if mesh is None else shard_seeds(part, mesh)

    keys_all = seed_keys(seeds)

    init = jax.jit(jax.vmap(jax.vmap(trainer.init, in_axes=(None, 0, None)),
                            in_axes=(0, None, 0)))
    epoch = jax.jit(jax.vmap(jax.vmap(trainer.epoch, in_axes=(0, None, None)),
                             in_axes=(0, 0, 0)), donate_argnums=(0,))
    first = pad_idx[:chunk]
    t0 = time.perf_counter()
    carry0 = init(take(keys_all, first), lr_arr, take(subs, first))
    if mesh is not None:  # pin the carry's seed axis to the mesh so every epoch call matches
        carry0 = shard_seeds(carry0, mesh)
    compiled = epoch.lower(carry0, take(subs, first), take(train_reqs, first)).compile()
    compile_s = time.perf_counter() - t0

    bar = _progress(tcfg.epochs * n_chunks,
                    f"train {tcfg.algo} {n} seeds x {len(lrs)} lr", progress)
    params, curves_all = [], []
    run_s = 0.0
    for c in range(n_chunks):
        idx = pad_idx[c * chunk:(c + 1) * chunk]
        sub_c, req_c = take(subs, idx), take(train_reqs, idx)
        t0 = time.perf_counter()
        carry = carry0 if c == 0 else init(take(keys_all, idx), lr_arr, sub_c)
        if mesh is not None:
            carry = shard_seeds(carry, mesh)
        curves = []
        for _ in range(tcfg.epochs):
            carry, curve = compiled(carry, sub_c, req_c)
            curves.append(curve)
            if bar is not None:
                last = jax.tree_util.tree_map(lambda x: float(jnp.mean(x[..., -1])), curve)
                bar.set_postfix(AR=f"{last.ar:.0f}", ACR=f"{last.acr:.3f}", RC=f"{last.rc:.3f}")
                bar.update(1)
        jax.block_until_ready(carry.params)
        run_s += time.perf_counter() - t0
        params.append(carry.params)
        curves_all.append(jax.tree_util.tree_map(lambda *xs: jnp.stack(xs, axis=2), *curves))
    if bar is not None:
        bar.close()
    cat = lambda *xs: jnp.concatenate(xs, axis=0)[:n]  # noqa: E731
    return TrainResult(params=jax.tree_util.tree_map(cat, *params),
                       curves=jax.tree_util.tree_map(cat, *curves_all), seeds=seeds,
                       lrs=list(lrs), subs=subs, compile_s=compile_s, run_s=run_s)


def evaluate_grid(tcfg: TrainConfig, params, subs: Substrate, test_reqs: Requests, seeds):
    """Greedy test pass (Algorithm 2) of params [S, L, ...] on each seed's test requests;
    -> Outcome with leaves [S, L, R, ...]."""
    ev = make_evaluate(tcfg, table_size(test_reqs))
    inner = jax.vmap(ev, in_axes=(0, None, None, None))  # learning rates
    run = jax.jit(jax.vmap(inner, in_axes=(0, 0, 0, 0)))  # seeds
    _, out = run(params, seed_keys(seeds), subs, test_reqs)
    return out
