"""``sagin-jax bench``: request embeddings per second of the JAX simulator against the sequential
networkx reference, measured side by side in ONE run (ratios hold on a noisy machine).

Workloads (paper scenario unless noted), each with compile time apart from run time, each one
function below:

* ``reference-nrmvne``: the plain-Python reference, a few seeds one after another;
* ``jax-nrmvne-test`` / ``jax-ddrl-test``: one online test pass per seed (greedy policies);
* ``jax-ddrl-train``: one training epoch per seed (sampling, gradients, updates);
  each for 1, 8, 64, 256 seeds in one call, with the seeds looped (``map``) or vectorised
  (``vmap``) inside the program, on every JAX device (``--host-devices`` on a CPU);
* ``fig4-grid``: the Fig. 4 sweep, 4 learning rates x 8 seeds x the paper schedule;
* ``scale-N``: NRMVNE test pass on substrates of 100, 300, 1000, 3000 nodes;
* ``trips-*``: sequential loop trips per request step (the accelerator-latency proxy);
* ``generate-programs-discarded`` / ``generate-numpy``: scenario generation, the JAX generator's
  programs (16,384 scenarios, outputs discarded chunk by chunk) against the numpy generator it
  replaced;
* ``generate-materialised`` / ``end-to-end`` / ``end-to-end-programs``: what a user gets, in
  fresh processes: ``make_scenarios`` returning its arrays, and a 16,384-seed NRMVNE test pass
  through ``evaluate --seeds`` (wall and peak RSS) against the programs' own times
  (``bench_stream``);
* ``train-memory``: the memory one vectorised DDRL-NRA training epoch needs for 16,384 seeds,
  from XLA's buffer assignment of the compiled program (compiled, never run);
* ``sweep-population`` / ``sweep-one-at-a-time`` (only with a ``sweep`` section, e.g.
  ``experiments/bench/sweep.json``): N random-search configurations trained as a sweep's
  population (pruning, refill, the Optuna study in a journal file) against the same N trained one
  at a time through ``train_grid``, as a user would drive Optuna by hand.

Writes ``OUT/bench.csv`` and ``OUT/bench.png`` (``--accelerator``: ``bench-gpu.*``); the last
line printed is ``speedup_vs_reference=<ratio>`` for the 64-seed NRMVNE test-mode workload
(``speedup_seeds``).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import jax
import numpy as np

from sagin_jax import validate
from sagin_jax.config import ScenarioConfig
from sagin_jax.experiments.bench_stream import bench_end_to_end
from sagin_jax.experiments.plots import pyplot, save_figure
from sagin_jax.experiments.sweep.bench import bench_sweep
from sagin_jax.files import read_json, write_csv
from sagin_jax.host_memory import peak_rss_mib
from sagin_jax.policies.baselines import BASELINES
from sagin_jax.reference import simulate as ref_simulate
from sagin_jax.scenario.generate import time_generation
from sagin_jax.scenario.io import scenario_document
from sagin_jax.scenario.numpy_generator import numpy_scenario
from sagin_jax.scenario.types import compact_requests, compact_substrate
from sagin_jax.simulation.batch import (make_requests, make_substrates, over_seeds,
                                        simulate_batch, table_size)
from sagin_jax.devices.seed_axis import run_index, seed_keys, take_runs
from sagin_jax.simulation.online import STRATEGIES, trips_per_request
from sagin_jax.devices.sharding import seed_mesh
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.reinforce import make_evaluate, make_train, policies_for
from sagin_jax.training.run import train_grid

DEFAULT = {"seeds": [1, 8, 64, 256], "vmap_max_seeds": 64, "reference_seeds": 4,
           "scenario": {}, "fig4": {"seeds": 8, "lrs": [0.0005, 0.005, 0.01, 0.05],
                                    "epochs": 10},
           "scale_nodes": [100, 300, 1000, 3000], "scale_seeds": 2, "scale_requests": 300,
           "trip_seeds": 8, "generation": {"seeds": 16384, "numpy_seeds": 8},
           "train_memory_seeds": [16384], "env": {"envs": [1024], "steps": 64},
           "end_to_end": {"seeds": 16384, "component_seeds": 1024, "materialise_seeds": 1024}}
QUICK = {"seeds": [1, 8, 64], "vmap_max_seeds": 8, "reference_seeds": 2, "scenario": {},
         "fig4": None, "scale_nodes": [100, 300], "scale_seeds": 1, "scale_requests": 200,
         "trip_seeds": 2, "generation": {"seeds": 1024, "numpy_seeds": 2},
         "end_to_end": {"seeds": 1024, "component_seeds": 256, "materialise_seeds": 256}}
ACCELERATOR = {"seeds": [1, 1024, 4096, 16384], "loops": ["vmap"], "vmap_max_seeds": 16384,
               "reference_seeds": 2, "speedup_seeds": 16384, "speedup_loop": "vmap",
               "scenario": {},
               "fig4": {"seeds": 32, "lrs": [0.0005, 0.005, 0.01, 0.05], "epochs": 10,
                        "loop": "vmap"},
               "scale_nodes": [], "trip_seeds": 8,
               "generation": {"seeds": 16384, "chunk": 2048, "numpy_seeds": 2},
               "train_memory_seeds": [4096, 16384], "env": {"envs": [1024, 16384], "steps": 32},
               "end_to_end": {"seeds": 16384, "component_seeds": 4096}}
"""``bench --accelerator``: one wide ``vmap`` over 1 to 16,384 seeds and the Fig. 4 grid of
32 seeds x 4 rates, written to ``bench-gpu.csv``. Meant for a GPU; on a CPU it takes
hours (use ``--config`` to shrink it)."""


def _peak_rss_mib() -> float:
    return peak_rss_mib()


def _program_mib(compiled) -> float:
    """Arguments + outputs + temporaries of a compiled program (XLA's own accounting), MiB."""
    try:
        m = compiled.memory_analysis()
        return (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
                - m.alias_size_in_bytes) / 2**20
    except Exception:  # noqa: BLE001 - not every backend reports it
        return float("nan")


def _timed(fn, *args, warmup: bool = True):
    """(compile s, run s, program MiB) of a jitted fn: AOT compile, one warm call (unless
    ``warmup`` is False: for a device lent for minutes), one timed."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    if warmup:
        jax.block_until_ready(compiled(*args))
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    return compile_s, time.perf_counter() - t0, _program_mib(compiled)


def scaled_config(base: ScenarioConfig, n_nodes: int) -> ScenarioConfig:
    """Segments scaled in proportion to ``n_nodes`` (10/30/60%); Waxman alpha scaled down so the
    ground segment keeps its mean degree (a fixed alpha would make the graph dense)."""
    k = n_nodes / base.n_nodes
    ns = max(base.space_planes, int(round(base.n_space * k / base.space_planes)) *
             base.space_planes)
    na = int(round(base.n_air * k))
    ng = n_nodes - ns - na
    return base.replace(n_space=ns, n_air=na, n_ground=ng,
                        waxman_alpha=min(1.0, base.waxman_alpha * base.n_ground / ng))


class Recorder:
    """Collects bench rows and prints each as it comes (``key=value`` pairs)."""

    def __init__(self):
        self.rows: list[dict] = []

    def __call__(self, **row) -> None:
        row.setdefault("peak_rss_mib", _peak_rss_mib())
        self.rows.append(row)
        print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()), flush=True)


def bench_reference(spec: dict, cfg: ScenarioConfig, record: Recorder) -> float:
    """The sequential networkx reference on a few seeds; -> its request embeddings per second."""
    n_ref = spec["reference_seeds"]
    subs_r = make_substrates(cfg, list(range(n_ref)))
    reqs_r = make_requests(cfg, list(range(n_ref)), "test")
    docs = [scenario_document(jax.tree_util.tree_map(lambda x: x[i], subs_r),
                              jax.tree_util.tree_map(lambda x: x[i], reqs_r))
            for i in range(n_ref)]
    t0 = time.perf_counter()
    for doc in docs:
        ref_simulate(doc, "nrmvne")
    ref_s = time.perf_counter() - t0
    ref_rate = n_ref * reqs_r.n_requests / ref_s
    record(workload="reference-nrmvne", loop="python", seeds=n_ref, compile_s=0.0, run_s=ref_s,
           embeddings_per_s=ref_rate, program_mib=float("nan"))
    return ref_rate


def bench_simulator(spec: dict, cfg: ScenarioConfig, record: Recorder, mesh,
                    ref_rate: float | None) -> float | None:
    """NRMVNE and DDRL-NRA test passes and one DDRL-NRA training epoch for each seed count,
    seeds looped (``map``) and vectorised (``vmap``); -> the speedup over the reference at
    ``speedup_seeds`` seeds (map), if measured."""
    tcfg = TrainConfig.from_dict({"algo": "ddrl-nra", "epochs": 1, **spec.get("train", {})})
    warm = spec.get("warmup", True)  # false: time the first call after compiling (half the time)
    speedup = None
    for s in spec["seeds"]:
        seeds = list(range(s))
        idx = run_index(s, mesh)
        pad = idx.shape[0]
        subs = make_substrates(cfg, seeds)
        reqs = make_requests(cfg, seeds, "test")
        train_reqs = make_requests(cfg, seeds, "train")
        a, a_train = table_size(reqs), table_size(train_reqs)
        params = jax.vmap(policies_for(tcfg)[2])(seed_keys(seeds), subs)
        keys, subs_p, reqs_p, tr_p, params_p = take_runs(
            (seed_keys(seeds), subs, reqs, train_reqs, params), idx, mesh)
        loops = spec.get("loops") or (["map"] + (["vmap"] if s <= spec["vmap_max_seeds"] else []))
        for loop in loops:
            fn = jax.jit(lambda k, sb, rq, loop=loop: simulate_batch(
                BASELINES["nrmvne"], None, k, sb, rq, max_active=a, seed_loop=loop, mesh=mesh))
            c, r, mib = _timed(fn, keys, subs_p, reqs_p, warmup=warm)
            rate = s * reqs.n_requests / r
            record(workload="jax-nrmvne-test", loop=loop, seeds=s, compile_s=c, run_s=r,
                   embeddings_per_s=rate, program_mib=mib)
            if (s == spec.get("speedup_seeds", 64) and loop == spec.get("speedup_loop", "map")
                    and ref_rate):
                speedup = rate / ref_rate
            ev = jax.jit(over_seeds(make_evaluate(tcfg, a), loop, mesh))
            c, r, mib = _timed(ev, params_p, keys, subs_p, reqs_p, warmup=warm)
            record(workload="jax-ddrl-test", loop=loop, seeds=s, compile_s=c, run_s=r,
                   embeddings_per_s=s * reqs.n_requests / r, program_mib=mib)
            trainer = make_train(tcfg, train_reqs.n_requests, a_train)
            lr = take_runs(np.full((pad,), 0.005, np.float32), np.arange(pad), mesh)
            tr = jax.jit(over_seeds(trainer.train, loop, mesh))
            c, r, mib = _timed(tr, keys, lr, subs_p, tr_p, warmup=warm)
            record(workload="jax-ddrl-train", loop=loop, seeds=s, compile_s=c, run_s=r,
                   embeddings_per_s=s * train_reqs.n_requests / r, program_mib=mib)
    return speedup


def bench_fig4(spec: dict, cfg: ScenarioConfig, record: Recorder, mesh) -> None:
    """The Fig. 4 sweep (learning rates x seeds x the paper's schedule), compile included."""
    f4 = spec.get("fig4")
    if not f4:
        return
    t0 = time.perf_counter()
    tcfg = TrainConfig.from_dict({**spec.get("train", {}), "epochs": f4["epochs"]})
    res = train_grid(cfg, tcfg, list(range(f4["seeds"])),
                     f4["lrs"], progress=False, mesh=mesh, seed_loop=f4.get("loop"))
    wall = time.perf_counter() - t0
    n_emb = f4["seeds"] * len(f4["lrs"]) * f4["epochs"] * cfg.n_train
    record(workload="fig4-grid", loop=f4.get("loop") or "default", seeds=f4["seeds"],
           compile_s=res.compile_s, run_s=res.run_s, embeddings_per_s=n_emb / res.run_s,
           program_mib=float("nan"), wall_with_setup_s=wall)


def bench_scale(spec: dict, cfg: ScenarioConfig, record: Recorder) -> None:
    """NRMVNE test pass on growing substrates; prints the fitted growth exponent."""
    scale_pts = []
    for n_nodes in spec.get("scale_nodes", []):
        scfg = scaled_config(cfg, n_nodes).replace(n_test=spec["scale_requests"])
        seeds = list(range(spec["scale_seeds"]))
        t0 = time.perf_counter()
        subs = make_substrates(scfg, seeds)
        reqs = make_requests(scfg, seeds, "test")
        setup = time.perf_counter() - t0
        fn = jax.jit(lambda k, sb, rq, a=table_size(reqs): simulate_batch(
            BASELINES["nrmvne"], None, k, sb, rq, max_active=a, seed_loop="map"))
        c, r, mib = _timed(fn, seed_keys(seeds), subs, reqs)
        per_req = r / (len(seeds) * reqs.n_requests)
        scale_pts.append((n_nodes, per_req))
        record(workload=f"scale-{n_nodes}", loop="map", seeds=len(seeds), compile_s=c, run_s=r,
               embeddings_per_s=1.0 / per_req, program_mib=mib,
               edges=int(np.asarray(subs.edge_mask).sum(axis=1).mean()), setup_s=setup)
    if len(scale_pts) >= 2:
        x = np.log([p[0] for p in scale_pts])
        y = np.log([p[1] for p in scale_pts])
        slope = float(np.polyfit(x, y, 1)[0])
        print(f"time per request grows as N^{slope:.2f} over N = "
              f"{', '.join(str(p[0]) for p in scale_pts)}")


def bench_generation(spec: dict, cfg: ScenarioConfig, record: Recorder) -> None:
    """Scenario generation: the JAX generator (``jit(vmap(generate))``, chunk by chunk, each chunk
    split over this process's devices, compile apart) on ``generation.seeds`` paper scenarios
    against the numpy generator it replaced, one seed at a time; each scenario is a substrate
    plus ``n_train`` + ``n_test`` requests."""
    g = spec.get("generation")
    if not g:
        return
    # the earlier sections generated their seeds with the same programs: drop JAX's in-memory
    # caches so that compile_s is what a fresh process pays (with --no-compile-cache)
    jax.clear_caches()
    t = time_generation(cfg, g["seeds"], g.get("chunk"))
    record(workload="generate-programs-discarded", loop="vmap", seeds=t["n_seeds"], compile_s=t["compile_s"],
           run_s=t["run_s"], embeddings_per_s=float("nan"), program_mib=float("nan"),
           per_seed_s=t["per_seed_s"], wall_with_compile_s=t["compile_s"] + t["run_s"],
           devices=t["devices"])
    n_np = g.get("numpy_seeds", 4)
    t0 = time.perf_counter()
    for s in range(n_np):  # the numpy baseline is sequential by nature: one seed after another
        jax.block_until_ready(numpy_scenario(cfg, s))
    np_s = (time.perf_counter() - t0) / n_np
    record(workload="generate-numpy", loop="python", seeds=n_np, compile_s=0.0,
           run_s=np_s * n_np, embeddings_per_s=float("nan"), program_mib=float("nan"),
           per_seed_s=np_s)
    print(f"generation: {t['n_seeds']} scenarios in {t['compile_s'] + t['run_s']:.1f} s with "
          f"JAX on {t['devices']} device(s) (compile {t['compile_s']:.1f} s); numpy "
          f"{np_s * 1e3:.0f} ms per seed, "
          f"{np_s / t['per_seed_s']:.0f}x the JAX time per seed", flush=True)


def bench_trips(spec: dict, cfg: ScenarioConfig, record: Recorder) -> None:
    """Sequential ``while_loop`` trips per request step (``Outcome.trips``), mean and max, for
    both request-step strategies, and each strategy's time per request on this backend: trips
    are the proxy for accelerator latency, where every trip is a host round trip. The spec's
    ``trip_policies`` (default both) picks NRMVNE and/or greedy DDRL-NRA."""
    n = spec.get("trip_seeds", 0)
    names = spec.get("trip_policies", ["nrmvne", "ddrl-nra"])
    if not n:
        return
    seeds = list(range(n))
    subs = make_substrates(cfg, seeds)
    reqs = make_requests(cfg, seeds, "test")
    tcfg = TrainConfig(algo="ddrl-nra")
    params = jax.vmap(policies_for(tcfg)[2])(seed_keys(seeds), subs)
    greedy = policies_for(tcfg)[1]
    a = table_size(reqs)
    # the kernel strategy only on a GPU (on a CPU it would run in Pallas interpret mode)
    for strategy in [x for x in STRATEGIES if x != "kernel" or jax.default_backend() == "gpu"]:
        for name, policy, p in (("nrmvne", BASELINES["nrmvne"], None),
                                ("ddrl-nra", greedy, params)):
            if name not in names:
                continue
            if strategy == "kernel" and p is not None:
                continue  # per-seed evaluate() runs the kernel's fallback, "batched"
            def run(k, sb, rq, pp, policy=policy, strategy=strategy):
                return simulate_batch(policy, pp, k, sb, rq, max_active=a, seed_loop="map",
                                      strategy=strategy)
            if p is None:
                fn = jax.jit(lambda k, sb, rq, run=run: run(k, sb, rq, None))
                args = (seed_keys(seeds), subs, reqs)
            else:  # per-seed params: one evaluation per seed, looped
                ev = make_evaluate(tcfg, a, strategy=strategy)
                fn = jax.jit(over_seeds(ev, "map"))
                args = (params, seed_keys(seeds), subs, reqs)
            c, r, mib = _timed(fn, *args)
            _, out = fn(*args)
            mean, most = trips_per_request(out)
            record(workload=f"trips-{name}-test", loop=strategy, seeds=n, compile_s=c, run_s=r,
                   embeddings_per_s=n * reqs.n_requests / r, program_mib=mib,
                   trips_mean=mean, trips_max=most)


def train_memory(cfg: ScenarioConfig, tcfg: TrainConfig, n_seeds: int) -> dict:
    """Bytes of one ``vmap``-ped training epoch over ``n_seeds`` paper scenarios, from the
    compiled program's buffer assignment on this backend (lowered from shapes alone: nothing is
    allocated or run): arguments (scenarios, requests, carry), outputs and temporaries."""
    subs, reqs = make_substrates(cfg, [0]), make_requests(cfg, [0], "train")
    subs, reqs = compact_substrate(subs), compact_requests(reqs)  # as the training drivers do
    trainer = make_train(tcfg, reqs.n_requests, table_size(reqs))
    wide = lambda tree: jax.tree_util.tree_map(  # noqa: E731
        lambda x: jax.ShapeDtypeStruct((n_seeds,) + x.shape[1:], x.dtype), tree)
    lr = jax.ShapeDtypeStruct((n_seeds,), np.float32)
    carry = jax.eval_shape(over_seeds(trainer.init, "vmap"), wide(seed_keys([0])), lr, wide(subs))
    epoch = jax.jit(over_seeds(trainer.epoch, "vmap"), donate_argnums=(0,))
    t0 = time.perf_counter()
    m = epoch.lower(carry, wide(subs), wide(reqs)).compile().memory_analysis()
    total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)
    return {"compile_s": time.perf_counter() - t0, "total": total,
            "arguments": m.argument_size_in_bytes, "temporaries": m.temp_size_in_bytes,
            "requests_per_seed": sum(x.nbytes for x in jax.tree_util.tree_leaves(reqs))}


def bench_train_memory(spec: dict, cfg: ScenarioConfig, record: Recorder) -> None:
    """``train_memory`` for each of ``train_memory_seeds`` (16,384 training seeds should fit
    in 8 GiB)."""
    tcfg = TrainConfig.from_dict({"algo": "ddrl-nra", **spec.get("train", {})})
    for n in spec.get("train_memory_seeds", []):
        m = train_memory(cfg, tcfg, n)
        gib = 2.0 ** 30
        record(workload="train-memory", loop="vmap", seeds=n, compile_s=m["compile_s"],
               run_s=float("nan"), embeddings_per_s=float("nan"), program_mib=m["total"] / 2 ** 20,
               memory_gib=m["total"] / gib, arguments_gib=m["arguments"] / gib,
               temporaries_gib=m["temporaries"] / gib,
               mib_per_seed=m["total"] / n / 2 ** 20)
        print(f"training memory, {n} seeds (vmap, {jax.default_backend()} buffer assignment): "
              f"{m['total'] / gib:.1f} GiB = {m['arguments'] / gib:.1f} GiB arguments (training "
              f"requests {m['requests_per_seed'] / 2 ** 10:.0f} KiB per seed) + "
              f"{m['temporaries'] / gib:.1f} GiB temporaries", flush=True)


def bench_sweep_ratio(spec: dict, cfg: ScenarioConfig, record: Recorder) -> None:
    """``sweep.bench_sweep`` on the spec's ``sweep`` section (configs, seeds, epochs, slots,
    batch_size): the population's wall time and the one-at-a-time wall time, both with their
    compiles, measured one after the other in this run."""
    sw = spec.get("sweep")
    if not sw:
        return
    r = bench_sweep(cfg, sw.get("configs", 64), range(sw.get("seeds", 8)),
                    sw.get("epochs", 10), batch_size=sw.get("batch_size"),
                    slots=sw.get("slots", 32))
    n_req = r["n_seeds"] * r["n_train"]
    record(workload="sweep-population", loop="population", seeds=r["n_seeds"],
           compile_s=float("nan"), run_s=r["population_s"],
           embeddings_per_s=r["trial_epochs"] * n_req / r["population_s"],
           program_mib=float("nan"), configs=r["n_configs"], trial_epochs=r["trial_epochs"],
           slots=r["slots"], ratio=r["ratio"])
    record(workload="sweep-one-at-a-time", loop="train_grid", seeds=r["n_seeds"],
           compile_s=float("nan"), run_s=r["one_at_a_time_s"],
           embeddings_per_s=r["baseline_trial_epochs"] * n_req / r["one_at_a_time_s"],
           program_mib=float("nan"), configs=r["n_configs"],
           trial_epochs=r["baseline_trial_epochs"])
    print(f"sweep: {r['n_configs']} configurations x {r['n_seeds']} seeds x {r['epochs']} epochs "
          f"x {r['n_train']} requests: population ({r['slots']} slots, successive halving, "
          f"refill) {r['population_s']:.1f} s ({r['trial_epochs']} trial-epochs); one at a time "
          f"(train_grid, no pruning) {r['one_at_a_time_s']:.1f} s; ratio {r['ratio']:.2f}x",
          flush=True)


def bench_env(spec: dict, cfg: ScenarioConfig, record: Recorder) -> None:
    """``SaginEnv`` (vmapped, NRMVNE's choice) against ``simulate`` on the same scenarios, for
    each count in the spec's ``env.envs`` (``env.steps`` steps); skipped without gymnax."""
    env_spec = spec.get("env")
    if not env_spec:
        return
    try:
        from sagin_jax.env.throughput import env_vs_simulate
    except ImportError:
        print("env: skipped (gymnax is not installed: pip install 'sagin-jax[env]')", flush=True)
        return
    for n in env_spec["envs"]:
        r = env_vs_simulate(cfg, n, env_spec.get("steps", 64))
        record(workload="env-nrmvne", loop="vmap", seeds=n, compile_s=r["env_compile_s"],
               run_s=r["env_run_s"], embeddings_per_s=r["env_requests_per_s"],
               program_mib=float("nan"), env_steps_per_s=r["env_steps_per_s"],
               ratio=r["ratio"])
        record(workload="env-simulate-nrmvne", loop="default", seeds=n,
               compile_s=r["sim_compile_s"], run_s=r["sim_run_s"],
               embeddings_per_s=r["sim_requests_per_s"], program_mib=float("nan"),
               requests=r["sim_first_requests"])
        record(workload="env-simulate-episode-nrmvne", loop="default", seeds=n,
               compile_s=float("nan"), run_s=r["sim_episode_run_s"],
               embeddings_per_s=r["sim_episode_requests_per_s"], program_mib=float("nan"),
               ratio=r["ratio_episode"])
        print(f"env: {n} environments x {r['steps']} steps: {r['env_requests_per_s']:,.0f} "
              f"requests/s ({r['env_steps_per_s']:,.0f} steps/s); simulate over the same "
              f"requests (first {r['sim_first_requests']} of each scenario) "
              f"{r['sim_requests_per_s']:,.0f}/s, ratio {r['ratio']:.2f}; over whole episodes "
              f"{r['sim_episode_requests_per_s']:,.0f}/s, ratio {r['ratio_episode']:.2f}",
              flush=True)


def bench(config: str | None = None, out: str = "out/bench", quick: bool = False,
          accelerator: bool = False) -> list[dict]:
    """Run every workload of the bench spec; write ``out/bench.csv`` (``bench-gpu.csv`` with
    ``accelerator``) and the matching PNG."""
    spec = dict(ACCELERATOR if accelerator else QUICK if quick else DEFAULT)
    if config is not None:
        doc = read_json(config)
        validate.bench_config(doc, config)  # every field's type, before any compute
        spec.update(doc)
    cfg = ScenarioConfig.from_json(spec.get("scenario", {}), config)
    n_dev = jax.device_count()
    mesh = seed_mesh() if n_dev > 1 else None
    record = Recorder()
    print(f"devices: {n_dev} x {jax.devices()[0].platform}", flush=True)

    ref_rate = bench_reference(spec, cfg, record) if spec.get("reference_seeds") else None
    speedup = bench_simulator(spec, cfg, record, mesh, ref_rate)
    bench_fig4(spec, cfg, record, mesh)
    bench_scale(spec, cfg, record)
    bench_trips(spec, cfg, record)
    bench_generation(spec, cfg, record)
    bench_end_to_end(spec, cfg, record)
    bench_train_memory(spec, cfg, record)
    bench_sweep_ratio(spec, cfg, record)
    bench_env(spec, cfg, record)

    rows = record.rows
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "bench-gpu" if accelerator else "bench"
    path = out_dir / f"{stem}.csv"
    fields = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    write_csv(path, fields, rows)
    _plot(out_dir / f"{stem}.png", rows)
    print(f"wrote {path} and {out_dir / (stem + '.png')}")
    if speedup is not None and math.isfinite(speedup):
        print(f"speedup_vs_reference={speedup:.1f}")
    return rows


def _plot(path: Path, rows: list[dict]) -> None:
    plt = pyplot()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for wl in ("jax-nrmvne-test", "jax-ddrl-test", "jax-ddrl-train"):
        for loop, ls in (("map", "-"), ("vmap", "--")):
            pts = [(r["seeds"], r["embeddings_per_s"]) for r in rows
                   if r["workload"] == wl and r["loop"] == loop]
            if pts:
                ax.plot(*zip(*pts), marker="o", linestyle=ls, label=f"{wl} ({loop})")
    ref = [r["embeddings_per_s"] for r in rows if r["workload"] == "reference-nrmvne"]
    if ref:
        ax.axhline(ref[0], color="k", linestyle=":", label="networkx reference (NRMVNE)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("seeds in one call")
    ax.set_ylabel("request embeddings / s")
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    pts = [(int(r["workload"].split("-")[1]), 1e6 / r["embeddings_per_s"]) for r in rows
           if r["workload"].startswith("scale-")]
    if pts:
        ax2.plot(*zip(*pts), marker="o")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("substrate nodes")
        ax2.set_ylabel("µs per request (NRMVNE, test)")
        ax2.grid(alpha=0.3, which="both")
    save_figure(fig, path)
