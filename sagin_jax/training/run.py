"""Host-side drivers: train a seeds × learning-rates grid as ONE compiled program, evaluate it.

The grid runs epoch by epoch (one jitted, vmapped ``Trainer.epoch`` per call) so a progress bar can
show the running AR / ACR / R/C between epochs without any host callback inside the hot loop.
Compile time is measured apart from run time (ahead-of-time ``lower().compile()``).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Sequence

import jax
import numpy as np
from tqdm.auto import tqdm

from sagin_jax.compilation import Job
from sagin_jax.config import ScenarioConfig
from sagin_jax.scenario.types import (Requests, Substrate, compact_requests,
                                      compact_substrate)
from sagin_jax.devices.seed_axis import run_index, seed_keys, take_runs
from sagin_jax.simulation.batch import (make_requests, make_substrates, over_seeds,
                                        table_size)
from sagin_jax.simulation.online import request_step_strategy
from sagin_jax.training.config import Hyper, TrainConfig
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
    hypers: Hyper | None = None  # leaves [L]: the traced hyperparameters of each column

    def params_at(self, i: int, j: int):
        return jax.tree_util.tree_map(lambda x: x[i, j], self.params)


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    return tqdm(total=total, desc=desc, unit="epoch", leave=False)


def train_strategy(mesh) -> str | None:
    """The request-step strategy of training: the backend's default, except that with a device
    mesh the "kernel" strategy falls back to "batched" (as ``batch.simulate_batch`` does)."""
    if mesh is not None and request_step_strategy() == "kernel":
        return "batched"
    return None


def grid_programs(tcfg: TrainConfig, n_train: int, max_active: int, seed_loop, mesh):
    """The jitted ``(init, epoch)`` of a training grid, one pair per static configuration, so a
    second grid with the same shapes reuses the compiled programs instead of recompiling a fresh
    closure. Keyed on ``tcfg.static()``: the traced hyperparameters come in as arguments, so
    configs that differ only in them share the programs."""
    return _grid_programs(tcfg.static(), n_train, max_active, seed_loop, mesh)


@functools.lru_cache(maxsize=None)
def _grid_programs(tcfg: TrainConfig, n_train: int, max_active: int, seed_loop, mesh):
    trainer = make_train(tcfg, n_train, max_active, train_strategy(mesh))
    return (jax.jit(over_seeds(trainer.init, seed_loop, mesh)),
            jax.jit(over_seeds(trainer.epoch, seed_loop, mesh), donate_argnums=(0,)))


# forgets every compiled grid program (a bench that times a cold start)
grid_programs.cache_clear = _grid_programs.cache_clear


def population_epoch_program(tcfg: TrainConfig, n_train: int, max_active: int, seed_loop, mesh):
    """The jitted ``epoch(carry, subs, reqs, live)`` of a sweep's population: runs whose
    ``live`` flag (bool[runs]) is False keep their carry and give zero curves. With runs looped
    (``seed_loop="map"``, the CPU default) an idle run costs nothing; vmapped, both branches
    are computed (the same numbers, no saving)."""
    return _population_epoch_program(tcfg.static(), n_train, max_active, seed_loop, mesh)


@functools.lru_cache(maxsize=None)
def _population_epoch_program(tcfg: TrainConfig, n_train: int, max_active: int, seed_loop,
                              mesh):
    trainer = make_train(tcfg, n_train, max_active, train_strategy(mesh))
    n_batches = n_train // tcfg.batch_size

    def epoch(carry, sub, reqs, live):
        def idle(c):
            zero = jax.numpy.zeros((n_batches,), jax.numpy.float32)
            return c, TrainCurves(ar=zero, acr=zero, rc=zero, objective=zero)
        return jax.lax.cond(live, lambda c: trainer.epoch(c, sub, reqs), idle, carry)

    return jax.jit(over_seeds(epoch, seed_loop, mesh), donate_argnums=(0,))


def evaluate_program(tcfg: TrainConfig, max_active: int, seed_loop, mesh):
    """The jitted greedy test pass over a run axis, one per static configuration."""
    return _evaluate_program(tcfg.static(), max_active, seed_loop, mesh)


@functools.lru_cache(maxsize=None)
def _evaluate_program(tcfg: TrainConfig, max_active: int, seed_loop, mesh):
    return jax.jit(over_seeds(make_evaluate(tcfg, max_active), seed_loop, mesh))


def train_grid(cfg: ScenarioConfig, tcfg: TrainConfig, seeds: Sequence[int],
               lrs: Sequence[float], progress: bool = True,
               subs: Substrate | None = None, train_reqs: Requests | None = None,
               seed_loop: str | None = None, mesh=None,
               max_active: int | None = None) -> TrainResult:
    """Train every (seed, lr) pair in one compiled program; -> TrainResult with leaves [S, L, ...].

    The other hyperparameters take ``tcfg``'s values (``Hyper.from_config``); see
    ``train_population`` for settings that differ in more than the rate.
    """
    hypers = Hyper.stack([Hyper.from_config(tcfg, lr=lr, xp=np) for lr in lrs])
    res = train_population(cfg, tcfg, seeds, hypers, progress=progress, subs=subs,
                           train_reqs=train_reqs, seed_loop=seed_loop, mesh=mesh,
                           max_active=max_active)
    res.lrs = list(lrs)
    return res


MAX_RUN_BLOCK = {"cpu": 32}
"""Most runs one call of a training program takes, by backend (default: all of them). On a CPU
the runs are looped inside the program anyway (``seed_loop="map"``), so a fixed block costs
nothing and lets every grid share one compiled program: Fig. 4's 32 seeds x 4 rates run as four
blocks of the program that Figs. 5-8 use for 32 seeds."""


def run_block(n_runs: int, mesh=None, max_block: int | None = None) -> int:
    """Runs per call: the next power of two >= ``n_runs``, at most ``max_block`` (default by
    backend, ``MAX_RUN_BLOCK``), rounded up to a multiple of the mesh's device count."""
    d = 1 if mesh is None else mesh.devices.size
    if max_block is None:
        max_block = MAX_RUN_BLOCK.get(jax.default_backend(), 1 << 30)
    block = min(1 << max(n_runs - 1, 0).bit_length(), max(int(max_block), 1))
    return -(-block // d) * d


def population_runs(n_seeds: int, n_hypers: int, mesh=None, block: int | None = None):
    """(idx, seed_of, hyper_of) of the seeds x settings run axis (seed-major), padded by
    repeating the last run to a multiple of ``block`` (default: of the mesh's device count)."""
    idx = run_index(n_seeds * n_hypers, mesh, block)
    return idx, idx // n_hypers, idx % n_hypers


def _population_calls(tcfg, seeds, hypers, subs, train_reqs, seed_loop, mesh, max_active,
                      max_block):
    """(init, epoch, [(keys, substrates, requests, hypers) per block of runs]) of a training
    population: the programs and their arguments, placed as they will be called."""
    max_active = table_size(train_reqs) if max_active is None else max_active
    n_s, n_l = len(seeds), int(np.asarray(hypers.lr).shape[0])
    block = run_block(n_s * n_l, mesh, max_block)
    _, seed_of, lr_of = population_runs(n_s, n_l, mesh, block)
    host_hypers = jax.tree_util.tree_map(np.asarray, hypers)
    parts = [slice(i, i + block) for i in range(0, seed_of.shape[0], block)]
    # the same numbers in narrower dtypes: a third of the requests' memory, half the tables'
    stored = (seed_keys(seeds), compact_substrate(subs), compact_requests(train_reqs))
    data = [take_runs(stored, seed_of[p], mesh)
            + (take_runs(host_hypers, lr_of[p], mesh),) for p in parts]
    init, epoch = grid_programs(tcfg, train_reqs.n_requests, max_active, seed_loop, mesh)
    return init, epoch, data


def population_jobs(tcfg: TrainConfig, seeds: Sequence[int], hypers: Hyper, subs: Substrate,
                    train_reqs: Requests, seed_loop: str | None = None, mesh=None,
                    max_active: int | None = None, max_block: int | None = None):
    """-> (compile jobs, params): the programs ``train_population`` with these arguments will
    run (``sagin_jax.compilation.compile_ahead``), and params [S, L, ...] shaped as it returns
    them, for ``evaluate_jobs``. Runs the (cheap) ``init`` program once, to have a carry to lower
    the epoch with (``init`` itself is compiled here, in the caller's thread)."""
    init, epoch, data = _population_calls(tcfg, list(seeds), hypers, subs, train_reqs,
                                          seed_loop, mesh, max_active, max_block)
    k, sb, rq, h = data[0]
    carry = init(k, h, sb)
    n_s, n_l = len(seeds), int(np.asarray(hypers.lr).shape[0])
    params = jax.tree_util.tree_map(
        lambda x: np.zeros((n_s, n_l) + x.shape[1:], x.dtype), carry.params)
    return [Job(epoch, (carry, sb, rq))], params


def train_population(cfg: ScenarioConfig, tcfg: TrainConfig, seeds: Sequence[int],
                     hypers: Hyper, progress: bool = True,
                     subs: Substrate | None = None, train_reqs: Requests | None = None,
                     seed_loop: str | None = None, mesh=None,
                     max_active: int | None = None, max_block: int | None = None
                     ) -> TrainResult:
    """Train every (seed, setting) pair in one compiled program; ``hypers`` has f32[L] leaves
    (``Hyper.stack``); -> TrainResult with leaves [S, L, ...].

    The S x L runs form one run axis, batched by ``over_seeds`` (``seed_loop`` "vmap" or "map",
    default by backend) and, with a ``mesh``, sharded over its devices. The axis is cut into
    blocks of ``run_block(S x L, mesh, max_block)`` runs, one call each, so that grids of
    different sizes share a program. Only ``tcfg.static()`` selects the compiled program, so any
    L settings of the traced fields share one compile. The program is called once per epoch so a
    progress bar can show the running metrics; compile time is measured apart.
    """
    seeds = list(seeds)
    subs = make_substrates(cfg, seeds) if subs is None else subs
    train_reqs = make_requests(cfg, seeds, "train") if train_reqs is None else train_reqs
    n_s = len(seeds)
    n_l = int(np.asarray(hypers.lr).shape[0])
    init, epoch, data = _population_calls(tcfg, seeds, hypers, subs, train_reqs, seed_loop,
                                          mesh, max_active, max_block)
    t0 = time.perf_counter()
    carries = [init(k, h, sb) for k, sb, _, h in data]
    compiled = epoch.lower(carries[0], data[0][1], data[0][2]).compile()
    compile_s = time.perf_counter() - t0

    bar = _progress(tcfg.epochs, f"train {tcfg.algo} {n_s} seeds x {n_l} settings", progress)
    curves = []
    t0 = time.perf_counter()
    join = lambda *xs: np.concatenate([np.asarray(x) for x in xs])  # noqa: E731  (blocks)
    for _ in range(tcfg.epochs):
        step = [compiled(c, sb, rq) for c, (_, sb, rq, _) in zip(carries, data)]
        carries = [c for c, _ in step]
        curves.append([cv for _, cv in step])  # kept on the devices: no sync per epoch
        if bar is not None:
            curve = jax.tree_util.tree_map(join, *curves[-1])
            last = jax.tree_util.tree_map(lambda x: float(np.mean(x[: n_s * n_l, -1])), curve)
            bar.set_postfix(AR=f"{last.ar:.0f}", ACR=f"{last.acr:.3f}", RC=f"{last.rc:.3f}")
            bar.update(1)
    params = jax.tree_util.tree_map(join, *[c.params for c in carries])
    run_s = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    grid = lambda x: np.asarray(x)[: n_s * n_l].reshape((n_s, n_l) + x.shape[1:])  # noqa: E731
    curves = [jax.tree_util.tree_map(join, *blocks) for blocks in curves]
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack(xs, axis=1), *curves)
    return TrainResult(params=jax.tree_util.tree_map(grid, params),
                       curves=jax.tree_util.tree_map(grid, stacked), seeds=seeds,
                       lrs=[float(x) for x in np.asarray(hypers.lr)], subs=subs,
                       compile_s=compile_s, run_s=run_s, hypers=hypers)


def _evaluate_call(tcfg, params, subs, test_reqs, seeds, seed_loop, mesh, max_active):
    """(program, arguments) of ``evaluate_grid``, placed as they will be called."""
    max_active = table_size(test_reqs) if max_active is None else max_active
    n_s = len(seeds)
    n_l = jax.tree_util.tree_leaves(params)[0].shape[1]
    idx = run_index(n_s * n_l, mesh)
    seed_of, lr_of = idx // n_l, idx % n_l
    flat = jax.tree_util.tree_map(lambda x: np.asarray(x).reshape((n_s * n_l,) + x.shape[2:]),
                                  params)
    args = (take_runs(flat, seed_of * n_l + lr_of, mesh),
            *take_runs((seed_keys(seeds), subs, test_reqs), seed_of, mesh))
    return evaluate_program(tcfg, max_active, seed_loop, mesh), args


def evaluate_jobs(tcfg: TrainConfig, params, subs: Substrate, test_reqs: Requests, seeds,
                  seed_loop: str | None = None, mesh=None, max_active: int | None = None) -> list:
    """The program ``evaluate_grid`` with these arguments will run, as a compile job; ``params``
    may be any of the right shape (e.g. ``population_jobs``'s)."""
    program, args = _evaluate_call(tcfg, params, subs, test_reqs, list(seeds), seed_loop, mesh,
                                   max_active)
    return [Job(program, args)]


def evaluate_grid(tcfg: TrainConfig, params, subs: Substrate, test_reqs: Requests, seeds,
                  seed_loop: str | None = None, mesh=None, max_active: int | None = None):
    """Greedy test pass (Algorithm 2) of params [S, L, ...] on each seed's test requests;
    -> Outcome with leaves [S, L, R, ...]."""
    n_s = len(seeds)
    n_l = jax.tree_util.tree_leaves(params)[0].shape[1]
    program, args = _evaluate_call(tcfg, params, subs, test_reqs, seeds, seed_loop, mesh,
                                   max_active)
    _, out = program(*args)
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x)[: n_s * n_l].reshape((n_s, n_l) + x.shape[1:]), out)
