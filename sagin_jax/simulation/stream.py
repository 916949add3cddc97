"""Seed sweeps of any width in bounded memory: ``key -> generate -> simulate -> reduce`` chunk
by chunk of seeds, with only per-seed reductions leaving the device.

``make_scenarios`` keeps every request of every seed on the host (228 bytes per paper request,
~0.6 MB per paper seed). Here a chunk's scenarios live only on the device, between the two
programs of the chunk: ``generate_chunk`` (one program per config and chunk shape, shared by
every algorithm) and the test pass ``evaluate_chunk``. What comes back per seed is its final
metrics (eqs. 9-11) and the metrics sampled on a fixed time grid, so memory is O(chunk)
whatever the number of seeds. The numbers are those of ``simulate_seeds`` on
``make_scenarios``' output, bit for bit (tested): the same generator draws, the same seed keys
and the same request step.

Sizes. The programs need their active-table size and substrate padding when they are
compiled, so a run generates its first chunk when it is made and sizes them from it: the table
to the most requests its seeds have alive at once, the link and neighbour lists to what they
use (``ChunkedRun``). A later chunk that needs more is run again, on the same scenarios, with
enough. A table that never fills gives the same result as any larger one (a request takes the
first free row), and padding is masked, so the sizes change no number.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import PartitionSpec as P

from sagin_jax.compilation import Job
from sagin_jax.config import ScenarioConfig
from sagin_jax.devices.seed_axis import seed_key_data
from sagin_jax.devices.sharding import AXIS
from sagin_jax.policies.base import NodePolicy
from sagin_jax.scenario.draw_requests import draw_requests
from sagin_jax.scenario.draw_substrate import draw_substrate
from sagin_jax.scenario.generate import (_check_chunk, _generation_mesh, _host, _n_devices,
                                         _raise_overflow, _seed_array, cut_padding,
                                         padding_caps)
from sagin_jax.scenario.plan import Bounds, make_plan, plan_params
from sagin_jax.scenario.types import Requests
from sagin_jax.simulation.batch import TABLE_BUCKET, over_seeds
from sagin_jax.simulation.metrics import Metrics
from sagin_jax.simulation.online import Outcome, request_step_strategy, simulate

__all__ = ["ChunkScenarios", "ChunkedRun", "SeedSummary", "abstract_chunk", "chunk_positions",
           "chunk_shape", "default_time_grid", "evaluate_chunk", "generate_chunk", "max_alive",
           "reduce_outcome", "run_chunks", "stream_jobs", "stream_seeds", "stream_table_size"]


@struct.dataclass
class SeedSummary:
    """What a seed's online pass leaves: its final running metrics and the metrics on a grid."""

    final: Metrics  # f32 leaves [...]: after the last request (eqs. 9-11, link R/C)
    accepted: jax.Array  # i32: accepted requests
    arrived: jax.Array  # i32: requests handled
    curves: Metrics  # f32 leaves [..., G]: the running metrics at each grid time
    overflow: jax.Array  # bool: an accepted request found the active table full (rerun)


def reduce_outcome(out: Outcome, grid: jax.Array) -> SeedSummary:
    """One seed's ``Outcome[R]`` reduced to a ``SeedSummary``. Each grid time takes the metrics
    after the last request that arrived at or before it (the first request's before any
    arrival), as ``experiments.stats.on_time_grid`` samples them."""
    m = out.metrics
    r = m.time.shape[-1]
    idx = jnp.clip(jnp.searchsorted(m.time, grid.astype(m.time.dtype), side="right") - 1,
                   0, r - 1)
    last = jax.tree_util.tree_map(lambda x: x[-1], m)
    return SeedSummary(final=last, accepted=out.accepted.sum(dtype=jnp.int32),
                       arrived=jnp.int32(r),
                       curves=jax.tree_util.tree_map(lambda x: x[idx], m),
                       overflow=out.overflow.any())


def default_time_grid(cfg: ScenarioConfig, points: int) -> np.ndarray:
    """f32[points]: times from 0 to the expected arrival of the last test request,
    ``n_test / arrival_rate``. Fixed by the config, so every chunk of seeds samples the same
    times; a seed whose last request arrives earlier holds its final metrics after it. Float32
    (the simulator's time type), so sampling compares exactly."""
    if not isinstance(points, int) or points < 2:
        raise ValueError(f"time points must be an integer >= 2, got {points!r}")
    return np.linspace(0.0, cfg.n_test / cfg.arrival_rate, points).astype(np.float32)


def stream_table_size(cfg: ScenarioConfig) -> int:
    """Active-table rows to start from: the 1 - 1e-9 quantile of a Poisson number of requests
    alive at once (offered load ρ = arrival rate x mean lifetime, the M/G/inf occupancy), at
    least the largest request count that fits, rounded up to ``TABLE_BUCKET``. A chunk that
    overflows it is rerun with twice the rows, so this only sets how often that happens."""
    rho = cfg.arrival_rate * cfg.mean_lifetime
    k, p, cdf = 0, math.exp(-rho), math.exp(-rho)
    while 1.0 - cdf > 1e-9 and k < cfg.n_test:
        k += 1
        p *= rho / k
        cdf += p
    rows = max(min(k, cfg.n_test), 1)
    return -(-rows // TABLE_BUCKET) * TABLE_BUCKET


@struct.dataclass
class ChunkScenarios:
    """One chunk's scenarios on the device, as ``generate_chunk`` leaves them for the chunk's
    training and test programs."""

    sub: object  # Substrate [S]
    train: Requests | None  # [S, R_train], None when only the test set was drawn
    test: Requests  # [S, R_test]
    overflow: jax.Array  # bool[S, 2]: the substrate overflowed a static bound (edges, degree)
    need: jax.Array  # i32[S]: most requests alive at once over the drawn sets (``max_alive``)
    used: jax.Array  # i32[S, 2]: real links, and the widest neighbour list


@partial(jax.jit, static_argnames=("plan", "n_train", "n_test", "mesh"))
def generate_chunk(prm: dict, key_data, *, plan, n_train: int, n_test: int,
                   mesh=None) -> ChunkScenarios:
    """The scenarios ``make_scenarios`` gives for the keys ``key_data`` (u32[S, 2]; same
    streams), left on the device: substrate, training requests (none when ``n_train`` is 0)
    and test requests. One program per plan and chunk shape, shared by every algorithm that
    runs on the config (generation is ~40% of a fused generate-and-simulate program's compile
    time, so compiling it once per config instead of once per algorithm matters)."""
    def run(prm, key_data):
        def one(key):
            sub, _, _, over_e, over_k = draw_substrate(jax.random.fold_in(key, 0), plan, prm)
            train = (draw_requests(jax.random.fold_in(key, 1), plan, prm, n_train)
                     if n_train else None)
            test = draw_requests(jax.random.fold_in(key, 2), plan, prm, n_test)
            need = max_alive(test)
            if train is not None:
                need = jnp.maximum(max_alive(train), need)
            used = jnp.stack([sub.edge_mask.sum(), (sub.nbr_node >= 0).sum(-1).max()])
            return ChunkScenarios(sub=sub, train=train, test=test,
                                  overflow=jnp.stack([over_e, over_k]), need=need,
                                  used=used.astype(jnp.int32))
        # generation is wide integer work: vmapped, as make_scenarios runs it
        return jax.vmap(one)(jax.vmap(jax.random.wrap_key_data)(key_data))

    if mesh is None:
        return run(prm, key_data)
    return jax.shard_map(run, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS),
                         check_vma=False)(prm, key_data)


@partial(jax.jit, static_argnames=("policy", "max_active", "seed_loop", "mesh", "strategy",
                                   "per_seed_params", "interpret", "caps"))
def evaluate_chunk(key_data, subs, reqs: Requests, params, grid, *, policy: NodePolicy,
                   max_active: int, seed_loop: str | None = None, mesh=None,
                   strategy: str | None = None, per_seed_params: bool = False,
                   interpret: bool | None = None, caps: tuple | None = None) -> SeedSummary:
    """-> ``SeedSummary`` [S] of one chunk of seeds, each the test pass of ``policy`` on its
    scenario (``subs``/``reqs`` from ``generate_chunk``) with its key (``key_data`` u32[S, 2]).
    ``params`` is shared by all seeds, or has a leading seed axis with ``per_seed_params``.
    ``strategy`` "kernel" runs ``kernels.simulate.simulate_kernel``
    on the chunk (the caller checks that it applies; ``interpret``, default on a CPU, runs it
    in Pallas' interpreter); the others ``simulate`` per seed, batched by ``seed_loop``, on
    substrates whose padding ``caps`` (links, neighbour-list width) cuts first (``cut_padding``;
    the caller checks every seed fits; the kernel pads its own layout)."""
    def run(key_data, subs, reqs, params, grid):
        keys = jax.vmap(jax.random.wrap_key_data)(key_data)
        if caps is not None and strategy != "kernel":
            subs = cut_padding(subs, *caps)
        if strategy == "kernel":  # one Pallas program per seed (sagin_jax.kernels)
            from sagin_jax.kernels.simulate import simulate_kernel
            _, out = simulate_kernel(policy, params, keys, subs, reqs, max_active,
                                     interpret=(jax.default_backend() == "cpu"
                                                if interpret is None else interpret),
                                     params_per_seed=per_seed_params)
            return jax.vmap(reduce_outcome, in_axes=(0, None))(out, grid)

        def one(key, sub, req, p):
            _, out = simulate(policy, p, key, sub, req, max_active, strategy=strategy)
            return reduce_outcome(out, grid)
        if per_seed_params:
            return over_seeds(one, seed_loop)(keys, subs, reqs, params)
        return over_seeds(lambda k, s, r: one(k, s, r, params), seed_loop)(keys, subs, reqs)

    if mesh is None:
        return run(key_data, subs, reqs, params, grid)
    p_spec = P(AXIS) if per_seed_params else P()
    return jax.shard_map(run, mesh=mesh, in_specs=(P(AXIS), P(AXIS), P(AXIS), p_spec, P()),
                         out_specs=P(AXIS), check_vma=False)(key_data, subs, reqs, params, grid)


def abstract_chunk(fn, *args, mesh=None, **static):
    """ShapeDtypeStructs of ``fn(*args, **static)``'s outputs, placed as the call leaves them
    (split over ``mesh``'s seed axis, else on the default device), so that a program compiled
    ahead on them is the one the run calls with the real outputs."""
    if mesh is not None:
        static["mesh"] = mesh
    shapes = jax.eval_shape(partial(fn, **static), *args)
    sharding = None if mesh is None else jax.sharding.NamedSharding(mesh, P(AXIS))
    return jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def max_alive(req: Requests) -> jax.Array:
    """i32: most of ``req``'s requests alive at once (arrival <= t < departure), the bound
    ``scenario.build.max_concurrent`` computes on the host, for one seed on the device."""
    dep = jnp.sort(req.arrival + req.lifetime)
    gone = jnp.searchsorted(dep, req.arrival, side="right")
    return jnp.max(jnp.arange(1, req.n_requests + 1) - gone).astype(jnp.int32)


def chunk_positions(n_seeds: int, chunk: int, size: int, c: int) -> tuple[np.ndarray, int]:
    """(positions in the seed array of chunk ``c``'s seeds, padded to ``size`` by repeating its
    last seed; how many of them are real)."""
    start = c * chunk
    n = min(chunk, n_seeds - start)
    return start + np.minimum(np.arange(size), n - 1), n


def run_chunks(seeds: np.ndarray, chunk: int, size: int, launch: Callable, settle: Callable,
               first_chunk: int = 0, on_chunk: Callable | None = None):
    """The chunk loop of a streaming runner: ``launch(c, pos)`` dispatches chunk ``c`` (``pos``:
    the positions in ``seeds`` of its seeds, padded to ``size`` by repeating the last),
    ``settle(c, result, n_real)`` reads it
    back (numpy, padding dropped; it may rerun the chunk) and returns what ``on_chunk(c, ...)``
    gets. Chunk ``c + 1`` is dispatched before chunk ``c`` is read back, so the host's work
    overlaps the device's. -> the settled chunks in order, or None with ``on_chunk``."""
    n_chunks = -(-len(seeds) // chunk)

    def go(c: int):
        pos, n = chunk_positions(len(seeds), chunk, size, c)
        return launch(c, pos), n

    kept = []
    pending = go(first_chunk) if first_chunk < n_chunks else None
    for c in range(first_chunk, n_chunks):
        result, n = pending
        pending = go(c + 1) if c + 1 < n_chunks else None
        settled = settle(c, result, n)
        if on_chunk is not None:
            on_chunk(c, settled)
        else:
            kept.append(settled)
    return None if on_chunk is not None else kept


def chunk_shape(cfg: ScenarioConfig, seeds: Sequence[int], chunk: int | None, mesh):
    """(seed array, mesh, chunk, padded seed-axis length of every call) of a streaming run."""
    cfg.validate()
    seeds = _seed_array(seeds)
    mesh = _generation_mesh(mesh)
    chunk = _check_chunk(chunk, mesh)
    d = _n_devices(mesh)
    return seeds, mesh, chunk, -(-min(chunk, len(seeds)) // d) * d


class ChunkedRun:
    """What every chunk call of one streaming run shares: the seeds and their chunking, the
    config's plan and traced numbers, the active-table size and padding caps (grown on a rerun)
    and the grid.

    ``size``: the first chunk is generated when the run is made (``probe``) and sizes the run's
    programs: the substrates' padding is cut to what its seeds use (``padding_caps``) and, unless
    ``max_active`` is given, the active table to the most requests its seeds have alive at once.
    A later chunk that needs more is run again with sizes grown to hold it (the same numbers:
    padding is masked and a table that never fills changes no result). The probe's scenarios
    are the first chunk's, so the run uses them instead of generating them again."""

    def __init__(self, cfg, seeds, grid, chunk, mesh, max_active, n_train: int,
                 size: bool = True):
        self.seeds, self.mesh, self.chunk, self.size = chunk_shape(cfg, seeds, chunk, mesh)
        self.plan = make_plan(cfg)
        self.prm = jax.device_put(plan_params(cfg))  # placed without a staging program
        self.table = stream_table_size(cfg) if max_active is None else max_active
        self.grid = jax.device_put(np.asarray(grid, np.float32))
        self.bounds = Bounds(self.plan.max_edges, self.plan.max_degree)
        self.gen_static = dict(plan=self.plan, n_train=n_train, n_test=cfg.n_test,
                               mesh=self.mesh)
        self.caps, self._probed = None, None
        if size:
            self.probe(fixed_table=max_active is not None)

    def first_positions(self) -> np.ndarray:
        return chunk_positions(len(self.seeds), self.chunk, self.size, 0)[0]

    def generate(self, pos: np.ndarray) -> ChunkScenarios:
        if self._probed is not None and np.array_equal(self._probed[0], pos):
            scen, self._probed = self._probed[1], None
            return scen
        return generate_chunk(self.prm, seed_key_data(self.seeds[pos]), **self.gen_static)

    def probe(self, fixed_table: bool) -> None:
        """Generate the first chunk and size the run from it (see the class docstring)."""
        pos, n = chunk_positions(len(self.seeds), self.chunk, self.size, 0)
        scen = generate_chunk(self.prm, seed_key_data(self.seeds[pos]), **self.gen_static)
        used = np.asarray(scen.used)[:n].max(axis=0)
        self.caps = padding_caps(int(used[0]), int(used[1]), self.bounds)
        if not fixed_table:
            self.table = bucket_rows(int(np.asarray(scen.need)[:n].max()))
        self._probed = (pos, scen)

    def sizes(self) -> tuple:
        """(table rows, padding caps) a chunk is dispatched with."""
        return self.table, self.caps

    def resize(self, scen: ChunkScenarios, n: int, sizes: tuple) -> bool:
        """Whether the chunk (its first ``n`` seeds real), dispatched with ``sizes``, must run
        again: its seeds need more table rows or use more links or neighbours than the caps.
        The run's sizes then grow to hold them, for this chunk and the next."""
        table, caps = sizes
        used = np.asarray(scen.used)[:n].max(axis=0)
        too_wide = caps is not None and (used[0] > caps[0] or used[1] > caps[1])
        if too_wide and self.caps is not None:
            self.caps = padding_caps(max(int(used[0]), self.caps[0]),
                                     max(int(used[1]), self.caps[1]), self.bounds)
        most = int(np.asarray(scen.need)[:n].max())
        self.table = max(self.table, bucket_rows(most))
        return too_wide or most > table


def bucket_rows(rows: int) -> int:
    """Active-table rows for ``rows`` requests alive at once, rounded up to ``TABLE_BUCKET``."""
    return -(-max(rows, 1) // TABLE_BUCKET) * TABLE_BUCKET


class StreamRun(ChunkedRun):
    """The arguments of every chunk call of one ``stream_seeds`` run (shared with
    ``stream_jobs``, so compiling ahead compiles the programs the run calls)."""

    def __init__(self, cfg, policy, params, seeds, grid, chunk, mesh, max_active, seed_loop,
                 strategy, per_seed_params, with_train=False, size=True):
        super().__init__(cfg, seeds, grid, chunk, mesh, max_active,
                         cfg.n_train if with_train else 0, size)
        strategy = request_step_strategy(strategy)
        if strategy == "kernel":
            from sagin_jax.kernels.simulate import kernel_applies
            if not kernel_applies(policy, strategy, False):
                strategy = "batched"  # the kernel's fallback (see kernels.simulate)
        self.params = None if params is None else jax.tree_util.tree_map(np.asarray, params)
        self.per_seed_params = per_seed_params
        self.static = dict(policy=policy, seed_loop=seed_loop, mesh=self.mesh,
                           strategy=strategy, per_seed_params=per_seed_params)

    def params_at(self, pos: np.ndarray):
        p = self.params
        if self.per_seed_params and p is not None:
            p = jax.tree_util.tree_map(lambda x: x[pos], p)
        return p

    def evaluate(self, pos: np.ndarray, scen: ChunkScenarios, rows: int | None = None,
                 params=None):
        """The test pass of the chunk's scenarios ``scen``, with ``params`` (per seed, as
        ``pos``' seeds) or else the run's."""
        return evaluate_chunk(seed_key_data(self.seeds[pos]), scen.sub, scen.test,
                              self.params_at(pos) if params is None else params, self.grid,
                              **self.static, max_active=rows or self.table, caps=self.caps)

    def evaluate_job(self, pos: np.ndarray, scen, params=None, rows: int | None = None) -> Job:
        """The test pass's compile job (``scen``: the chunk's abstract scenarios)."""
        return Job(evaluate_chunk, (seed_key_data(self.seeds[pos]), scen.sub, scen.test,
                                    self.params_at(pos) if params is None else params,
                                    self.grid),
                   {**self.static, "max_active": rows or self.table, "caps": self.caps})

    def jobs(self) -> list:
        pos = self.first_positions()
        kd = seed_key_data(self.seeds[pos])
        scen = abstract_chunk(generate_chunk, self.prm, kd, **self.gen_static)
        return [Job(generate_chunk, (self.prm, kd), self.gen_static),
                self.evaluate_job(pos, scen)]


def stream_jobs(cfg: ScenarioConfig, policy: NodePolicy, params, seeds: Sequence[int], grid,
                chunk: int | None = None, mesh="local", max_active: int | None = None,
                seed_loop: str | None = None, strategy: str | None = None,
                per_seed_params: bool = False, with_train: bool = False) -> list:
    """The programs ``stream_seeds`` with these arguments calls (generation, then the test
    pass), as compile jobs (``sagin_jax.compilation.compile_ahead``); a chunk rerun with a
    larger table needs another."""
    return StreamRun(cfg, policy, params, seeds, grid, chunk, mesh, max_active, seed_loop,
                     strategy, per_seed_params, with_train).jobs()


def stream_seeds(cfg: ScenarioConfig, policy: NodePolicy, params, seeds: Sequence[int],
                 grid, chunk: int | None = None, mesh="local", max_active: int | None = None,
                 seed_loop: str | None = None, strategy: str | None = None,
                 per_seed_params: bool = False, first_chunk: int = 0,
                 on_chunk: Callable | None = None,
                 with_train: bool = False) -> SeedSummary | None:
    """Test ``policy`` on the scenario of every seed, ``chunk`` seeds per compiled call (None:
    ``generate.default_chunk``), split over ``mesh`` as ``make_scenarios`` splits generation.

    Chunk ``c`` covers ``seeds[c * chunk:(c + 1) * chunk]``; a short last chunk is padded by
    repeating its last seed. With ``on_chunk(c, summary)`` each chunk's ``SeedSummary`` (numpy,
    padding dropped) is handed over as it finishes and nothing is kept (returns None);
    otherwise the summaries of every seed are returned. ``first_chunk`` skips the chunks
    before it (resuming). Raises ValueError naming the first seed whose scenario overflows a
    static bound, as ``make_scenarios`` does. ``with_train`` also draws each seed's training
    requests (unused here), so that the generation program is the one ``train_seeds`` calls:
    a process that also trains on the config then compiles one generation program, not two
    (``reproduce`` does this)."""
    run = StreamRun(cfg, policy, params, seeds, grid, chunk, mesh, max_active, seed_loop,
                    strategy, per_seed_params, with_train)

    def launch(c: int, pos: np.ndarray):
        scen = run.generate(pos)
        return run.evaluate(pos, scen), scen, pos, run.sizes()

    def settle(c: int, result, n: int):
        summary, scen, pos, sizes = result
        gen_over = np.asarray(scen.overflow)[:n]
        _raise_overflow(run.seeds[pos[:n]], gen_over[:, 0], gen_over[:, 1], run.bounds)
        if run.resize(scen, n, sizes):  # the same chunk again, sized for it
            summary = run.evaluate(pos, scen, run.table)
        summary = _host(summary, n)
        if summary.overflow.any():  # cannot happen: the table holds every request alive
            raise RuntimeError(f"active table of {run.table} rows overflowed in chunk {c}")
        return summary

    kept = run_chunks(run.seeds, run.chunk, run.size, launch, settle, first_chunk, on_chunk)
    if kept is None:
        return None
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *kept)
