"""A population of per-seed agents trained and tested in bounded memory: ``key -> generate ->
train (Algorithm 1) -> greedy test pass (Algorithm 2) -> reduce`` as one compiled program per
chunk of seeds (``simulation.stream``'s runner, with training).

Per seed it gives the trained parameters, the last epoch's training curve and the test pass's
``SeedSummary``; the numbers are those of ``train_grid`` and ``evaluate_grid`` on
``make_scenarios``' output, bit for bit (tested). The active table must hold every request a
seed can have alive at once: each chunk's largest need (``max_alive`` of its train and test
sets, computed in the program) is checked, and a chunk that needs more is rerun with enough
rows (a larger table changes no result).
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from sagin_jax.config import ScenarioConfig
from sagin_jax.devices.seed_axis import seed_key_data
from sagin_jax.devices.sharding import AXIS
from sagin_jax.scenario.draw_requests import draw_requests
from sagin_jax.scenario.draw_substrate import draw_substrate
from sagin_jax.scenario.generate import _host, _raise_overflow
from sagin_jax.scenario.plan import Bounds, make_plan, plan_params
from sagin_jax.simulation.batch import TABLE_BUCKET, over_seeds
from sagin_jax.simulation.stream import (chunk_shape, max_alive, reduce_outcome, run_chunks,
                                         stream_table_size)
from sagin_jax.training.config import Hyper, TrainConfig
from sagin_jax.training.reinforce import make_evaluate, make_train


@partial(jax.jit, static_argnames=("plan", "tcfg", "n_train", "n_test", "max_active",
                                   "seed_loop", "mesh"))
def train_chunk(prm: dict, key_data, hyper: Hyper, grid, *, plan, tcfg: TrainConfig,
                n_train: int, n_test: int, max_active: int, seed_loop: str | None = None,
                mesh=None):
    """-> (params [S, ...], last epoch's TrainCurves [S, batches], SeedSummary [S], generation
    overflow bool[S, 2], requests alive at once i32[S]) of one chunk of seeds, each trained
    with the shared ``hyper`` and tested greedily."""
    trainer = make_train(tcfg, n_train, max_active)
    evaluate = make_evaluate(tcfg, max_active)

    def run(prm, key_data, hyper, grid):
        keys = jax.vmap(jax.random.wrap_key_data)(key_data)

        def scenario(key):
            sub, _, _, over_e, over_k = draw_substrate(jax.random.fold_in(key, 0), plan, prm)
            train = draw_requests(jax.random.fold_in(key, 1), plan, prm, n_train)
            test = draw_requests(jax.random.fold_in(key, 2), plan, prm, n_test)
            need = jnp.maximum(max_alive(train), max_alive(test))
            return sub, train, test, jnp.stack([over_e, over_k]), need
        subs, trains, tests, over, need = jax.vmap(scenario)(keys)

        def one(key, sub, train, test):
            params, curves = trainer.train(key, hyper, sub, train)
            _, out = evaluate(params, key, sub, test)
            return params, jax.tree_util.tree_map(lambda x: x[-1], curves), \
                reduce_outcome(out, grid)
        params, curves, summary = over_seeds(one, seed_loop)(keys, subs, trains, tests)
        return params, curves, summary, over, need

    if mesh is None:
        return run(prm, key_data, hyper, grid)
    return jax.shard_map(run, mesh=mesh, in_specs=(P(), P(AXIS), P(), P()), out_specs=P(AXIS),
                         check_vma=False)(prm, key_data, hyper, grid)


def train_seeds(cfg: ScenarioConfig, tcfg: TrainConfig, seeds: Sequence[int], grid,
                lr: float | None = None, chunk: int | None = None, mesh="local",
                max_active: int | None = None, seed_loop: str | None = None,
                first_chunk: int = 0, on_chunk: Callable | None = None):
    """Train ``tcfg``'s agent on every seed's training requests (rate ``lr``, default the
    config's) and test it greedily on the seed's test requests, ``chunk`` seeds per compiled
    call; ``on_chunk(c, (params, curves, summary))`` gets each chunk as numpy arrays (padding
    dropped) and nothing is kept, else -> (params, curves, summary) of every seed. Chunks,
    padding and ``first_chunk`` as ``stream_seeds``."""
    seeds, mesh, chunk, size = chunk_shape(cfg, seeds, chunk, mesh)
    tcfg.validate(cfg.n_train)
    plan, prm = make_plan(cfg), jax.tree_util.tree_map(jnp.asarray, plan_params(cfg))
    hyper = Hyper.from_config(tcfg, lr=tcfg.lr if lr is None else lr, xp=np)
    hyper = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), hyper)
    table = [stream_table_size(cfg) if max_active is None else max_active]
    grid = jnp.asarray(np.asarray(grid, np.float32))
    bounds = Bounds(plan.max_edges, plan.max_degree)

    def launch(c: int, pos: np.ndarray, rows: int | None = None):
        return train_chunk(prm, seed_key_data(seeds[pos]), hyper, grid, plan=plan,
                           tcfg=tcfg.static(), n_train=cfg.n_train, n_test=cfg.n_test,
                           max_active=rows or table[0], seed_loop=seed_loop, mesh=mesh), pos

    def settle(c: int, result, n: int):
        (params, curves, summary, over, need), pos = result
        over = np.asarray(over)[:n]
        _raise_overflow(seeds[pos[:n]], over[:, 0], over[:, 1], bounds)
        most = int(np.asarray(need)[:n].max())
        if most > table[0]:  # rows for every request alive at once, rounded to a bucket
            table[0] = -(-most // TABLE_BUCKET) * TABLE_BUCKET
            (params, curves, summary, _, _), _ = launch(c, pos, table[0])
        return _host((params, curves, summary), n)

    kept = run_chunks(seeds, chunk, size, launch, settle, first_chunk, on_chunk)
    if kept is None:
        return None
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *kept)
