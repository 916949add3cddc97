"""A population of per-seed agents trained and tested in bounded memory: ``key -> generate ->
train (Algorithm 1) -> greedy test pass (Algorithm 2) -> reduce``, chunk by chunk of seeds
(``simulation.stream``'s runner, with training).

Every seed trains H settings of the traced hyperparameters (a stacked ``Hyper``, as
``train_population`` takes it) on its own scenario, which ``generate_chunk`` draws once per
chunk and every setting shares on the device. A chunk's programs are the generation (shared with
the config's other algorithms), one training program per setting (the one-setting program,
whatever H is) and the test pass that tests saved parameters (``stream_seeds`` with per-seed
parameters). Per seed and setting it gives the trained parameters, every epoch's training curve
and the test pass's ``SeedSummary``; the numbers are those of ``train_population`` and
``evaluate_grid`` on ``make_scenarios``' output, bit for bit (tested). The active table must
hold every request a seed can have alive at once: each chunk's largest need (``max_alive`` of
its train and test sets, computed with the scenarios) is checked before the chunk is read back,
and a chunk that needs more is trained again with enough rows (a larger table changes no
result).
"""
from __future__ import annotations

import functools
from functools import partial
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from sagin_jax.compilation import Job
from sagin_jax.config import ScenarioConfig
from sagin_jax.devices.seed_axis import seed_key_data
from sagin_jax.devices.sharding import AXIS
from sagin_jax.scenario.generate import _host, _raise_overflow, cut_padding
from sagin_jax.simulation.batch import over_seeds
from sagin_jax.simulation.stream import (ChunkedRun, ChunkScenarios, StreamRun,
                                         abstract_chunk, generate_chunk, run_chunks)
from sagin_jax.training.config import Hyper, TrainConfig
from sagin_jax.training.reinforce import make_train, policies_for


@partial(jax.jit, static_argnames=("tcfg", "max_active", "seed_loop", "mesh", "caps"))
def train_chunk(key_data, subs, trains, hyper: Hyper, *, tcfg: TrainConfig, max_active: int,
                seed_loop: str | None = None, mesh=None, caps: tuple | None = None):
    """-> (params [S, ...], TrainCurves [S, epochs, batches]) of one chunk of seeds
    (``key_data`` u32[S, 2], scenarios from ``simulation.stream.generate_chunk``), each trained
    with the setting ``hyper`` (f32 scalar leaves; ``train_population``'s numbers), on
    substrates whose padding ``caps`` cuts first (as ``evaluate_chunk``)."""
    trainer = make_train(tcfg, trains.n_requests, max_active)

    def run(key_data, subs, trains, hyper):
        keys = jax.vmap(jax.random.wrap_key_data)(key_data)
        if caps is not None:
            subs = cut_padding(subs, *caps)
        return over_seeds(lambda k, s, t: trainer.train(k, hyper, s, t),
                          seed_loop)(keys, subs, trains)

    if mesh is None:
        return run(key_data, subs, trains, hyper)
    return jax.shard_map(run, mesh=mesh, in_specs=(P(AXIS), P(AXIS), P(AXIS), P()),
                         out_specs=P(AXIS), check_vma=False)(key_data, subs, trains, hyper)


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
    ``train_jobs``, so compiling ahead compiles the programs the run calls)."""

    def __init__(self, cfg, tcfg, seeds, grid, hypers, lr, chunk, mesh, max_active, seed_loop,
                 test):
        tcfg.validate(cfg.n_train)
        self.hypers = _settings(tcfg, hypers, lr)
        super().__init__(cfg, seeds, grid, chunk, mesh, max_active, cfg.n_train)
        self.test = test
        self.static = dict(tcfg=tcfg.static(), seed_loop=seed_loop, mesh=self.mesh)
        # the test pass is the program that tests saved parameters (stream_seeds with
        # per-seed parameters), so both share it; this run sizes it
        self.tester = StreamRun(cfg, test_policy(tcfg), None, seeds, grid, chunk, mesh,
                                max_active, seed_loop, None, per_seed_params=True, size=False)

    def setting(self, h: int) -> Hyper:
        """Setting ``h`` (f32 scalar leaves)."""
        return jax.tree_util.tree_map(lambda x: x[h], self.hypers)

    def train(self, pos: np.ndarray, scen: ChunkScenarios, rows: int) -> list:
        """[(params [S, ...], curves [S, ...]) per setting], dispatched (not read back).
        One call per setting: every population size then shares the one-setting program, and
        a seed's settings train independently on the same scenario, so the numbers are those
        of one program over all settings."""
        return [train_chunk(seed_key_data(self.seeds[pos]), scen.sub, scen.train,
                            self.setting(h), **self.static, max_active=rows, caps=self.caps)
                for h in range(len(self.hypers.lr))]

    def evaluate(self, pos: np.ndarray, scen: ChunkScenarios, params: list, rows: int):
        """SeedSummary [S, H]: each setting's greedy test pass (``params``: per setting,
        [S, ...]), one call per setting."""
        self.tester.caps = self.caps
        tests = [self.tester.evaluate(pos, scen, rows, jax.tree_util.tree_map(np.asarray, p))
                 for p in params]
        return jax.tree_util.tree_map(lambda *xs: np.stack(xs, axis=1), *tests)

    def jobs(self) -> list:
        pos = self.first_positions()
        kd = seed_key_data(self.seeds[pos])
        scen = abstract_chunk(generate_chunk, self.prm, kd, **self.gen_static)
        train_args = (kd, scen.sub, scen.train, self.setting(0))
        static = {**self.static, "max_active": self.table, "caps": self.caps}
        jobs = [Job(generate_chunk, (self.prm, kd), self.gen_static),
                Job(train_chunk, train_args, static)]
        if self.test:
            params, _ = abstract_chunk(train_chunk, *train_args, **static)
            self.tester.caps = self.caps
            zeros = jax.tree_util.tree_map(lambda x: np.zeros(x.shape, x.dtype), params)
            jobs.append(self.tester.evaluate_job(pos, scen, zeros, self.table))
        return jobs


@functools.lru_cache(maxsize=None)
def test_policy(tcfg: TrainConfig):
    """The greedy test policy of ``tcfg``'s agent, one object per config: a policy is a static
    argument of the test program, so a new object would trace it again."""
    return policies_for(tcfg)[1]


def train_jobs(cfg: ScenarioConfig, tcfg: TrainConfig, seeds: Sequence[int], grid,
               hypers: Hyper | None = None, lr: float | None = None, chunk: int | None = None,
               mesh="local", max_active: int | None = None,
               seed_loop: str | None = None, test: bool = True) -> list:
    """The programs ``train_seeds`` with these arguments calls (generation, training and, with
    ``test``, the test pass), as compile jobs (``sagin_jax.compilation.compile_ahead``); a
    chunk rerun with a larger table (see ``train_seeds``) needs others."""
    return _TrainRun(cfg, tcfg, seeds, grid, hypers, lr, chunk, mesh, max_active, seed_loop,
                     test).jobs()


def train_seeds(cfg: ScenarioConfig, tcfg: TrainConfig, seeds: Sequence[int], grid,
                hypers: Hyper | None = None, lr: float | None = None,
                chunk: int | None = None, mesh="local", max_active: int | None = None,
                seed_loop: str | None = None, first_chunk: int = 0,
                on_chunk: Callable | None = None, test: bool = True):
    """Train ``tcfg``'s agent on every seed's training requests with every setting of
    ``hypers`` (f32[H] leaves, ``Hyper.stack``; default the one setting of ``tcfg`` at rate
    ``lr``, itself by default the config's) and test each greedily on the seed's test requests
    (``test``; without it the summaries are None), ``chunk`` seeds per compiled call.
    ``on_chunk(c, (params, curves, summary))`` gets each chunk as numpy arrays (padding
    dropped) and nothing is kept, else -> (params [S, H, ...], TrainCurves [S, H, epochs,
    batches], SeedSummary [S, H]) of every seed. Chunks, padding and ``first_chunk`` as
    ``stream_seeds``."""
    run = _TrainRun(cfg, tcfg, seeds, grid, hypers, lr, chunk, mesh, max_active, seed_loop,
                    test)

    def launch(c: int, pos: np.ndarray):
        scen = run.generate(pos)
        return run.train(pos, scen, run.table), scen, pos, run.sizes()

    def settle(c: int, result, n: int):
        trained, scen, pos, sizes = result
        over = np.asarray(scen.overflow)[:n]
        _raise_overflow(run.seeds[pos[:n]], over[:, 0], over[:, 1], run.bounds)
        if run.resize(scen, n, sizes):  # the same chunk again, sized for it
            trained = run.train(pos, scen, run.table)
        params, curves = jax.tree_util.tree_map(  # the settings' axis
            lambda *xs: np.stack([np.asarray(x) for x in xs], axis=1), *trained)
        summary = (run.evaluate(pos, scen, [p for p, _ in trained], run.table) if run.test
                   else None)
        return _host((params, curves, summary), n)

    kept = run_chunks(run.seeds, run.chunk, run.size, launch, settle, first_chunk, on_chunk)
    if kept is None:
        return None
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *kept)
