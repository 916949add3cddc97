"""A population of per-seed agents trained and tested in bounded memory: ``key -> generate ->
train (Algorithm 1) -> greedy test pass (Algorithm 2) -> reduce`` as one compiled program per
chunk of seeds (``simulation.stream``'s runner, with training).

Every seed trains H settings of the traced hyperparameters (a stacked ``Hyper``, as
``train_population`` takes it) on its own scenario, which the chunk's program generates once
and every setting shares. Per seed and setting it gives the trained parameters, every epoch's
training curve and the test pass's ``SeedSummary``; the numbers are those of
``train_population`` and ``evaluate_grid`` on ``make_scenarios``' output, bit for bit (tested).
The active table must hold every request a seed can have alive at once: each chunk's largest
need (``max_alive`` of its train and test sets, computed in the program) is checked, and a chunk
that needs more is rerun with enough rows (a larger table changes no result).
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from sagin_jax.compilation import Job
from sagin_jax.config import ScenarioConfig
from sagin_jax.devices.seed_axis import seed_key_data
from sagin_jax.devices.sharding import AXIS
from sagin_jax.scenario.draw_requests import draw_requests
from sagin_jax.scenario.draw_substrate import draw_substrate
from sagin_jax.scenario.generate import _host, _raise_overflow
from sagin_jax.simulation.batch import TABLE_BUCKET, over_seeds
from sagin_jax.simulation.stream import ChunkedRun, max_alive, reduce_outcome, run_chunks
from sagin_jax.training.config import Hyper, TrainConfig
from sagin_jax.training.reinforce import make_evaluate, make_train


@partial(jax.jit, static_argnames=("plan", "tcfg", "n_train", "n_test", "max_active",
                                   "seed_loop", "mesh"))
def train_chunk(prm: dict, key_data, hypers: Hyper, grid, *, plan, tcfg: TrainConfig,
                n_train: int, n_test: int, max_active: int, seed_loop: str | None = None,
                mesh=None):
    """-> (params [S, H, ...], TrainCurves [S, H, epochs, batches], SeedSummary [S, H],
    generation overflow bool[S, 2], requests alive at once i32[S]) of one chunk of seeds, each
    trained with every setting of ``hypers`` (f32[H] leaves) and tested greedily. A seed's
    settings run one after another (or side by side, as ``seed_loop`` batches the seeds) on the
    seed's one copy of its scenario."""
    trainer = make_train(tcfg, n_train, max_active)
    evaluate = make_evaluate(tcfg, max_active)

    def run(prm, key_data, hypers, grid):
        keys = jax.vmap(jax.random.wrap_key_data)(key_data)

        def scenario(key):
            sub, _, _, over_e, over_k = draw_substrate(jax.random.fold_in(key, 0), plan, prm)
            train = draw_requests(jax.random.fold_in(key, 1), plan, prm, n_train)
            test = draw_requests(jax.random.fold_in(key, 2), plan, prm, n_test)
            need = jnp.maximum(max_alive(train), max_alive(test))
            return sub, train, test, jnp.stack([over_e, over_k]), need
        subs, trains, tests, over, need = jax.vmap(scenario)(keys)

        def one_seed(key, sub, train, test):
            def one_setting(hyper):
                params, curves = trainer.train(key, hyper, sub, train)
                _, out = evaluate(params, key, sub, test)
                return params, curves, reduce_outcome(out, grid)
            return over_seeds(one_setting, seed_loop)(hypers)
        params, curves, summary = over_seeds(one_seed, seed_loop)(keys, subs, trains, tests)
        return params, curves, summary, over, need

    if mesh is None:
        return run(prm, key_data, hypers, grid)
    return jax.shard_map(run, mesh=mesh, in_specs=(P(), P(AXIS), P(), P()), out_specs=P(AXIS),
                         check_vma=False)(prm, key_data, hypers, grid)


def _settings(tcfg: TrainConfig, hypers: Hyper | None, lr: float | None) -> Hyper:
    """f32[H] leaves on the host: ``hypers`` as given, or the one setting of ``tcfg`` at rate
    ``lr`` (default the config's)."""
    if hypers is None:
        hypers = Hyper.stack([Hyper.from_config(tcfg, lr=tcfg.lr if lr is None else lr,
                                                xp=np)])
    elif lr is not None:
        raise ValueError("pass the learning rate inside hypers, or lr alone")
    hypers = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), hypers)
    if np.ndim(hypers.lr) != 1:
        raise ValueError(f"hypers must have f32[H] leaves (Hyper.stack), got shape "
                         f"{np.shape(hypers.lr)}")
    return hypers


class _TrainRun(ChunkedRun):
    """The arguments of every chunk call of one ``train_seeds`` run (shared with
    ``train_jobs``, so compiling ahead compiles the program the run calls)."""

    def __init__(self, cfg, tcfg, seeds, grid, hypers, lr, chunk, mesh, max_active, seed_loop):
        super().__init__(cfg, seeds, grid, chunk, mesh, max_active)
        tcfg.validate(cfg.n_train)
        self.hypers = _settings(tcfg, hypers, lr)
        self.static = dict(plan=self.plan, tcfg=tcfg.static(), n_train=cfg.n_train,
                           n_test=cfg.n_test, seed_loop=seed_loop, mesh=self.mesh)

    def args(self, pos: np.ndarray, rows: int | None = None):
        """(arguments, static keywords) of the call on the seeds at positions ``pos``."""
        return ((self.prm, seed_key_data(self.seeds[pos]), self.hypers, self.grid),
                {**self.static, "max_active": rows or self.table})


def train_jobs(cfg: ScenarioConfig, tcfg: TrainConfig, seeds: Sequence[int], grid,
               hypers: Hyper | None = None, lr: float | None = None, chunk: int | None = None,
               mesh="local", max_active: int | None = None,
               seed_loop: str | None = None) -> list:
    """The program ``train_seeds`` with these arguments calls, as a compile job
    (``sagin_jax.compilation.compile_ahead``); a chunk rerun with a larger table (see
    ``train_seeds``) needs another."""
    run = _TrainRun(cfg, tcfg, seeds, grid, hypers, lr, chunk, mesh, max_active, seed_loop)
    args, static = run.args(run.first_positions())
    return [Job(train_chunk, args, static)]


def train_seeds(cfg: ScenarioConfig, tcfg: TrainConfig, seeds: Sequence[int], grid,
                hypers: Hyper | None = None, lr: float | None = None,
                chunk: int | None = None, mesh="local", max_active: int | None = None,
                seed_loop: str | None = None, first_chunk: int = 0,
                on_chunk: Callable | None = None):
    """Train ``tcfg``'s agent on every seed's training requests with every setting of
    ``hypers`` (f32[H] leaves, ``Hyper.stack``; default the one setting of ``tcfg`` at rate
    ``lr``, itself by default the config's) and test each greedily on the seed's test requests,
    ``chunk`` seeds per compiled call. ``on_chunk(c, (params, curves, summary))`` gets each
    chunk as numpy arrays (padding dropped) and nothing is kept, else -> (params [S, H, ...],
    TrainCurves [S, H, epochs, batches], SeedSummary [S, H]) of every seed. Chunks, padding and
    ``first_chunk`` as ``stream_seeds``."""
    run = _TrainRun(cfg, tcfg, seeds, grid, hypers, lr, chunk, mesh, max_active, seed_loop)

    def launch(c: int, pos: np.ndarray, rows: int | None = None):
        args, static = run.args(pos, rows)
        return train_chunk(*args, **static), pos

    def settle(c: int, result, n: int):
        (params, curves, summary, over, need), pos = result
        over = np.asarray(over)[:n]
        _raise_overflow(run.seeds[pos[:n]], over[:, 0], over[:, 1], run.bounds)
        most = int(np.asarray(need)[:n].max())
        if most > run.table:  # rows for every request alive at once, rounded to a bucket
            run.table = -(-most // TABLE_BUCKET) * TABLE_BUCKET
            (params, curves, summary, _, _), _ = launch(c, pos, run.table)
        return _host((params, curves, summary), n)

    kept = run_chunks(run.seeds, run.chunk, run.size, launch, settle, first_chunk, on_chunk)
    if kept is None:
        return None
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *kept)
