"""Scenario generation as one pure, fixed-shape JAX program (DESIGN section 2), and the drivers
that run it over seeds.

``generate(key, cfg)`` draws a substrate and its train/test request sets without host callbacks
or Python control flow on traced values, so ``jit(vmap(generate))`` makes thousands of scenarios in
one compiled call and a larger jitted program (generation fused with simulation) can inline it.
The parts: ``plan`` (static shape and traced numbers of a config), ``words`` (counter-based random
words), ``bitlines`` (bit-word helpers), ``draw_substrate`` and ``draw_requests`` (one seed's
substrate and request set).

Streams. The substrate, train and test draws use independent keys ``fold_in(key, 0 / 1 / 2)``, so
a seed's train set does not depend on ``n_test``.

Uniform integers. A uniform on ``[0, span)`` is ``floor(w * span / 2**32)`` of a 32-bit word ``w``
(Lemire's multiply-high, without rejection); two digits share a word when ``span**2 <= 2**16``.
The probability of each outcome is off by at most ``span**d / 2**32 <= 2**-16`` relative (numpy's
rejection sampling is exact; the difference is far below any sample size the project uses).
Spans above ``2**16`` fall back to ``jax.random.randint``. A Bernoulli(p) compares a k-bit digit
with ``p * 2**k``: exact when ``p * 2**k`` is an integer for some k <= 16 (p = 0.5 costs one bit),
otherwise p is rounded to a multiple of ``2**-16``.

Static bounds. The link list is padded to ``Bounds.max_edges`` and the neighbour lists to
``Bounds.max_degree`` (``scenario_bounds``); a scenario that needs more sets ``Scenario.overflow``
and ``make_scenarios`` raises, naming the seed and the field to raise. Nothing is truncated
silently.

Compiles. Only the shape-relevant part of the config (node counts, k-nearest counts, domains,
request counts, padding, the bit layout of each draw, and the requests' storage dtypes) is
static; ranges, rates and probabilities are traced arguments, so configs that differ only in
numbers share one program unless a request range's upper bound crosses a storage threshold
(255 or 65,535: ``plan.request_storage_dtypes``).
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from sagin_jax.checks import is_int
from sagin_jax.config import ScenarioConfig
from sagin_jax.devices.seed_axis import seed_key_data
from sagin_jax.devices.sharding import AXIS, seed_mesh, seed_sharding
from sagin_jax.scenario.draw_requests import draw_requests
from sagin_jax.scenario.draw_substrate import draw_substrate
from sagin_jax.scenario.plan import Bounds, Plan, plan_params, make_plan, scenario_bounds
from sagin_jax.scenario.types import Requests, Scenario, Substrate

__all__ = ["Bounds", "cut_padding", "default_chunk", "generate", "make_requests",
           "make_scenarios", "make_substrates", "padding_caps", "scenario_bounds", "seed_key",
           "time_generation", "trim_padding"]

_MIN_BUCKET = 8  # a run of one chunk pads its seed axis to a power of two >= this (few compiles)
MAX_CHUNK = 512  # seeds per compiled call on an accelerator (output: ~0.6 MB per paper seed)
CPU_CHUNK_PER_DEVICE = 64  # on a CPU: chunks small enough to stay in cache (2 host devices,
#                            4,096 paper scenarios: 1.61 s with 64 seeds per device, 1.67 s
#                            with 32, 1.87 s with 16, 2.13 s with 128)


def seed_key(seed: int) -> jax.Array:
    """``jax.random.key(seed)`` for a seed in [0, 2**32)."""
    if not is_int(seed) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return jax.random.key(int(seed))


_SPLITS = {"train": 1, "test": 2}


def _scenario(key, plan: Plan, prm: dict, n_train: int, n_test: int):
    sub, pos, repair, over_e, over_k = draw_substrate(jax.random.fold_in(key, 0), plan, prm)
    train = draw_requests(jax.random.fold_in(key, 1), plan, prm, n_train)
    test = draw_requests(jax.random.fold_in(key, 2), plan, prm, n_test)
    return Scenario(sub=sub, train=train, test=test, pos=pos, repair=repair,
                    overflow=over_e | over_k), over_e, over_k


def generate(key: jax.Array, cfg: ScenarioConfig) -> Scenario:
    """One scenario from ``key``: pure and fixed-shape (``cfg`` is static), so it can be jitted,
    vmapped over keys and inlined in a larger program."""
    cfg.validate()
    plan, prm = make_plan(cfg), plan_params(cfg)
    prm = jax.tree_util.tree_map(jnp.asarray, prm)
    return _scenario(key, plan, prm, cfg.n_train, cfg.n_test)[0]


def _generation_mesh(mesh):
    """The mesh generation runs on: ``"local"`` (the default) is every device of this process
    when there are several (``--host-devices``, several GPUs), else None (one device). A
    scenario depends only on its seed, so generation never crosses processes."""
    if mesh != "local":
        return mesh
    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    return seed_mesh(devices)


def _n_devices(mesh) -> int:
    return 1 if mesh is None else mesh.devices.size


def _on_mesh(fn, mesh):
    """``fn(prm, key_data)`` with the seed axis of ``key_data`` split over ``mesh``: each device
    generates its own block of seeds (``shard_map``; no communication, the same bits)."""
    if mesh is None:
        return fn
    return jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS),
                         check_vma=False)


_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}
"""XLA options of the generation programs. A CPU with AVX-512 then gets 512-bit vectors (XLA
prefers 256): the generator is integer work on wide arrays, and was 5-10% faster with the same
bits (on the 2-core AMD EPYC these figures come from). Other CPUs and backends ignore it."""


@partial(jax.jit, static_argnums=(0, 3), compiler_options=_COMPILER_OPTIONS)
def _substrate_batch(plan: Plan, prm: dict, key_data, mesh=None):
    def run(prm, kd):
        return jax.vmap(lambda k: draw_substrate(jax.random.fold_in(jax.random.wrap_key_data(k), 0),
                                             plan, prm))(kd)
    return _on_mesh(run, mesh)(prm, key_data)


@partial(jax.jit, static_argnums=(0, 3, 5), compiler_options=_COMPILER_OPTIONS)
def _requests_batch(plan: Plan, prm: dict, key_data, count: int, split, mesh=None):
    def run(prm, kd):
        return jax.vmap(lambda k: draw_requests(jax.random.fold_in(jax.random.wrap_key_data(k),
                                                               split), plan, prm, count))(kd)
    return _on_mesh(run, mesh)(prm, key_data)


def _seed_array(seeds: Sequence[int]) -> np.ndarray:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    for s in seeds:
        if not is_int(s) or not 0 <= s < 2 ** 32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {s!r}")
    return np.asarray(seeds, dtype=np.uint32)


def _key_data(seeds, mesh):
    """The raw key data [S, 2] of ``seed_key`` for each seed, made on the host (no program per
    chunk) and placed on the device, or split over ``mesh`` if any."""
    data = seed_key_data(seeds)
    if mesh is None:
        return jax.device_put(data)
    return jax.device_put(data, seed_sharding(mesh))


def default_chunk(mesh=None) -> int:
    """Seeds per compiled generation call: ``CPU_CHUNK_PER_DEVICE`` per device on a CPU,
    ``MAX_CHUNK`` on an accelerator."""
    return CPU_CHUNK_PER_DEVICE * _n_devices(mesh) if jax.default_backend() == "cpu" else MAX_CHUNK


def _chunks(seeds: np.ndarray, chunk: int | None, mesh=None):
    """(key data, n_real) per chunk of ``chunk`` seeds (None: ``default_chunk``), each padded
    (repeating its last seed) to ``_padded_size``: one batch shape per call of make_*."""
    chunk = _check_chunk(chunk, mesh)
    size = _padded_size(len(seeds), chunk, mesh)
    for start in range(0, len(seeds), chunk):
        part = seeds[start:start + chunk]
        idx = np.minimum(np.arange(size), len(part) - 1)
        yield _key_data(part[idx], mesh), len(part)


def _check_chunk(chunk: int | None, mesh) -> int:
    chunk = default_chunk(mesh) if chunk is None else chunk
    if not is_int(chunk) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    return chunk


def _padded_size(n: int, chunk: int, mesh) -> int:
    """The seed-axis length of every chunk when ``n`` seeds are made ``chunk`` at a time: the
    chunk size when there are several chunks (a short last chunk padded to it costs less than
    compiling both programs again, ~2.5 s on 2 cores, for a second shape), else the power of two
    >= max(n, _MIN_BUCKET) (few shapes for small runs); a multiple of the mesh's device count."""
    size = min(max(_MIN_BUCKET, 1 << (n - 1).bit_length()), chunk)
    return -(-size // _n_devices(mesh)) * _n_devices(mesh)


def _host(tree, n):
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[:n], tree)


def _concat(parts):
    return jax.tree_util.tree_map(lambda *xs: jax.device_put(np.concatenate(xs)), *parts)


def _raise_overflow(seeds, over_e, over_k, bounds: Bounds) -> None:
    """Raise for the first seed that overflowed a static bound (no loop over the seeds)."""
    bad = np.flatnonzero(np.asarray(over_e) | np.asarray(over_k))
    if bad.size == 0:
        return
    i = int(bad[0])
    if over_e[i]:
        raise ValueError(f"seed {seeds[i]}: the scenario needs more than max_edges="
                         f"{bounds.max_edges} links; raise ScenarioConfig.max_edges")
    raise ValueError(f"seed {seeds[i]}: a node has more than max_degree={bounds.max_degree} "
                     "links; raise ScenarioConfig.max_degree")


def _make_subs(cfg, seeds, chunk, mesh="local"):
    cfg.validate()
    plan = make_plan(cfg)
    prm = plan_params(cfg)
    seeds = _seed_array(seeds)
    mesh = _generation_mesh(mesh)
    out, start = [], 0
    for keys, n in _chunks(seeds, chunk, mesh):
        sub, pos, rep, oe, ok = _host(_substrate_batch(plan, prm, keys, mesh), n)
        _raise_overflow(seeds[start:start + n], oe, ok, Bounds(plan.max_edges, plan.max_degree))
        out.append((sub, pos, rep))
        start += n
    return out


def _make_reqs(cfg, seeds, split, chunk, mesh="local"):
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    cfg.validate()
    plan = make_plan(cfg)
    prm = plan_params(cfg)
    count = cfg.n_train if split == "train" else cfg.n_test
    mesh = _generation_mesh(mesh)
    return [_host(_requests_batch(plan, prm, keys, count, _SPLITS[split], mesh), n)
            for keys, n in _chunks(_seed_array(seeds), chunk, mesh)]


def _compile_requests(pool, plan: Plan, prm: dict, keys, counts, mesh) -> list:
    """Lower the request program for each count here and compile it on ``pool`` (XLA releases
    the GIL): the futures of the compiled programs. A later call of ``_requests_batch`` with the
    same shapes reuses the compiled program."""
    return [pool.submit(_requests_batch.lower(plan, prm, keys, n, 1, mesh).compile)
            for n in sorted(set(counts))]


def make_scenarios(cfg: ScenarioConfig, seeds: Sequence[int], chunk: int | None = None,
                   mesh="local") -> Scenario:
    """The scenarios of ``seeds`` on a leading seed axis (``generate`` of ``seed_key(seed)``),
    made ``chunk`` seeds per compiled call (None: ``default_chunk``), split over ``mesh``
    (default ``"local"``: every device of this process; None: one device); raises ValueError
    naming the first seed that overflows a static bound and the config field to raise. The
    request program compiles in a worker thread while the substrates are made.

    Requests come back in their storage dtypes (``plan.request_storage_dtypes``; ``widen``
    gives the computing ones), made so inside the programs: a paper request is 228 bytes
    (uint8 demands, int8 indices), a paper seed 608,445 bytes on the host (its 2,000 requests
    456,000, the substrate with static padding 151,178, positions and repair flags 1,267)."""
    cfg.validate()
    mesh = _generation_mesh(mesh)
    array = _seed_array(seeds)
    chunk = _check_chunk(chunk, mesh)
    size = _padded_size(len(array), chunk, mesh)  # every chunk's shape
    with ThreadPoolExecutor(1) as pool:
        compiling = _compile_requests(pool, make_plan(cfg), plan_params(cfg),
                                      _key_data(np.resize(array, size), mesh),
                                      (cfg.n_train, cfg.n_test), mesh)
        subs = _make_subs(cfg, seeds, chunk, mesh)
        for c in compiling:
            c.result()
    train = _make_reqs(cfg, seeds, "train", chunk, mesh)
    test = _make_reqs(cfg, seeds, "test", chunk, mesh)
    sub, pos, rep = _concat(subs)
    return Scenario(sub=sub, train=_concat(train), test=_concat(test), pos=pos, repair=rep,
                    overflow=jax.device_put(np.zeros(len(pos), bool)))


def padding_caps(edges_used: int, degree_used: int, bounds: Bounds, edge_bucket: int = 32,
                 degree_bucket: int = 4) -> tuple[int, int]:
    """(links, neighbour-list width) that hold ``edges_used`` links and neighbour lists of
    ``degree_used``, rounded up to the buckets (so that batches of seeds share compiled
    programs) and at most the static ``bounds``."""
    e = min(bounds.max_edges, -(-max(1, edges_used) // edge_bucket) * edge_bucket)
    k = min(bounds.max_degree, -(-max(1, degree_used) // degree_bucket) * degree_bucket)
    return e, k


_EDGE_FIELDS = ("edge_u", "edge_v", "edge_bw", "edge_mask")  # [..., E]
_NEIGHBOUR_FIELDS = ("nbr_node", "nbr_edge")  # [..., N, K]


def cut_padding(sub: Substrate, n_edges: int, degree: int) -> Substrate:
    """``sub`` (stacked or not) with its link list cut to ``n_edges`` entries and its neighbour
    lists to ``degree`` (static sizes: this runs inside programs too). Real links come first
    and padding is masked, so a cut that keeps every real link changes no result; the static
    bounds are safe for any seed but cost simulation time (O(E) and O(N K) work per request:
    training on the paper config's 466 links and degree 28, instead of the 384 and 16 its
    seeds use, took 1.3-1.4x as long)."""
    return sub.replace(**{k: getattr(sub, k)[..., :n_edges] for k in _EDGE_FIELDS},
                       **{k: getattr(sub, k)[..., :degree] for k in _NEIGHBOUR_FIELDS})


def trim_padding(sub: Substrate, edge_bucket: int = 1, degree_bucket: int = 1) -> Substrate:
    """Cut a stacked substrate's link list and neighbour lists (sliced on the host) to the most
    any seed uses, rounded up to a multiple of ``edge_bucket`` / ``degree_bucket`` (see
    ``padding_caps`` and ``cut_padding``)."""
    e_used = int(np.asarray(sub.edge_mask).sum(axis=-1).max())
    k_used = int((np.asarray(sub.nbr_node) >= 0).sum(axis=-1).max())
    e, k = padding_caps(e_used, k_used, Bounds(sub.n_edges, sub.nbr_node.shape[-1]),
                        edge_bucket, degree_bucket)
    cut = _EDGE_FIELDS + _NEIGHBOUR_FIELDS
    host = cut_padding(sub.replace(**{f: np.asarray(getattr(sub, f)) for f in cut}), e, k)
    return host.replace(**{f: jax.device_put(getattr(host, f)) for f in cut})


def make_substrates(cfg: ScenarioConfig, seeds: Sequence[int], mesh="local") -> Substrate:
    """The substrates of ``seeds`` stacked, link and neighbour lists padded to the largest among
    them (as the simulator has always received them; ``make_scenarios`` keeps the static
    bounds)."""
    return trim_padding(_concat([s for s, _, _ in _make_subs(cfg, seeds, None, mesh)]))


def make_requests(cfg: ScenarioConfig, seeds: Sequence[int], split: str,
                  mesh="local") -> Requests:
    """The ``split`` ('train' or 'test') request sets of ``seeds``, stacked."""
    return _concat(_make_reqs(cfg, seeds, split, None, mesh))


def time_generation(cfg: ScenarioConfig, n_seeds: int, chunk: int | None = None,
                    mesh="local") -> dict:
    """Time ``make_scenarios``' compiled programs on ``n_seeds`` seeds, ``chunk`` per call, split
    over ``mesh`` as ``make_scenarios`` splits them: -> {compile_s, run_s, per_seed_s, n_seeds,
    chunk, devices}. The train and test sets share one program when their sizes are equal (as
    in ``make_scenarios``). Outputs are discarded chunk by chunk. As in ``make_scenarios``, the
    request program compiles in a worker thread while the substrate program is traced and
    compiled."""
    cfg.validate()
    plan, prm = make_plan(cfg), plan_params(cfg)
    mesh = _generation_mesh(mesh)
    d = _n_devices(mesh)
    chunk = _check_chunk(chunk, mesh)
    chunk = -(-chunk // d) * d
    keys = _key_data(np.arange(chunk), mesh)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:  # as make_scenarios: requests compile in a thread
        counts = sorted({cfg.n_train, cfg.n_test})
        compiling = _compile_requests(pool, plan, prm, keys, counts, mesh)
        sub_prog = _substrate_batch.lower(plan, prm, keys, mesh).compile()
        req_progs = {n: c.result() for n, c in zip(counts, compiling)}
    compile_s = time.perf_counter() - t0
    n_chunks = -(-n_seeds // chunk)
    t0 = time.perf_counter()
    for c in range(n_chunks):
        keys = _key_data(np.arange(c * chunk, (c + 1) * chunk), mesh)
        outs = [sub_prog(prm, keys), req_progs[cfg.n_train](prm, keys, 1),
                req_progs[cfg.n_test](prm, keys, 2)]
        jax.block_until_ready(outs)
    run_s = time.perf_counter() - t0
    return dict(compile_s=compile_s, run_s=run_s, per_seed_s=run_s / (n_chunks * chunk),
                n_seeds=n_chunks * chunk, chunk=chunk, devices=d)
