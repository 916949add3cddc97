"""``bench``'s seed-sweep rows: what a user gets from a wide NRMVNE test pass, against the
programs' own times, measured in one run.

* ``generate-materialised``: ``make_scenarios`` on ``materialise_seeds`` seeds, the arrays
  returned to the caller (wall and peak RSS of a fresh process);
* ``end-to-end``: ``evaluate_seeds`` (``sagin-jax evaluate --seeds``) on ``seeds`` seeds:
  generation, simulation and reduction chunk by chunk, per-seed rows written (wall with
  compile, and peak RSS, of a fresh process);
* ``end-to-end-programs``: the generator programs (substrate and test requests) and the
  simulation program, timed on their own on ``component_seeds`` seeds chunk by chunk (outputs
  discarded), scaled to ``seeds``: the floor the end-to-end wall time is held against.

Each fresh process inherits this one's devices (``--host-devices``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import jax
import numpy as np

from sagin_jax.config import ScenarioConfig

_END_TO_END = """
import json, sys, time
from sagin_jax.host_memory import peak_rss_mib, tune_malloc
tune_malloc()  # as the command line does
from sagin_jax.config import ScenarioConfig
from sagin_jax.experiments.evaluate import evaluate_seeds
from sagin_jax.policies.baselines import BASELINES
cfg = ScenarioConfig.from_dict(json.loads(sys.argv[1]))
n, out, chunk = int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
t0 = time.perf_counter()
evaluate_seeds(cfg, "nrmvne", BASELINES["nrmvne"], None, range(n), out, points=60,
               chunk=chunk, progress=False)
print(json.dumps({"wall_s": time.perf_counter() - t0,
                  "rss_mib": peak_rss_mib()}))
"""

_MATERIALISED = """
import json, sys, time
from sagin_jax.host_memory import peak_rss_mib, tune_malloc
tune_malloc()  # as the command line does
import jax
from sagin_jax.config import ScenarioConfig
from sagin_jax.scenario.generate import make_scenarios
cfg = ScenarioConfig.from_dict(json.loads(sys.argv[1]))
n = int(sys.argv[2])
t0 = time.perf_counter()
scen = make_scenarios(cfg, range(n))
jax.block_until_ready(scen)
size = sum(x.nbytes for x in jax.tree_util.tree_leaves(scen))
print(json.dumps({"wall_s": time.perf_counter() - t0, "gib": size / 2 ** 30,
                  "rss_mib": peak_rss_mib()}))
"""


def _fresh_process(code: str, *argv: str) -> dict:
    """Run ``code`` in a fresh interpreter (this process's environment, devices included);
    -> the JSON object it prints last."""
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *argv],
                         capture_output=True, text=True, env=dict(os.environ))
    if res.returncode != 0:
        raise RuntimeError(f"bench subprocess failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def program_times(cfg: ScenarioConfig, n_seeds: int, chunk: int | None = None) -> dict:
    """Run time of the generator programs (substrate, test requests) and of the NRMVNE test-pass
    program on ``n_seeds`` seeds, ``chunk`` per call, each timed alone (compiled first, outputs
    discarded chunk by chunk): -> {gen_s, sim_s, n_seeds, chunk}."""
    from sagin_jax.devices.seed_axis import seed_key_data
    from sagin_jax.policies.baselines import BASELINES
    from sagin_jax.scenario.generate import (_generation_mesh, _requests_batch,
                                             _substrate_batch, default_chunk)
    from sagin_jax.scenario.plan import make_plan, plan_params
    from sagin_jax.simulation.batch import simulate_batch
    from sagin_jax.simulation.stream import stream_table_size
    mesh = _generation_mesh("local")
    chunk = default_chunk(mesh) if chunk is None else chunk
    plan, prm = make_plan(cfg), plan_params(cfg)
    table = stream_table_size(cfg)
    policy = BASELINES["nrmvne"]

    def put(data):
        if mesh is None:
            return jax.device_put(data)
        from sagin_jax.devices.sharding import seed_sharding
        return jax.device_put(data, seed_sharding(mesh))

    def gen(keys):
        sub = _substrate_batch(plan, prm, keys, mesh)[0]
        req = _requests_batch(plan, prm, keys, cfg.n_test, 2, mesh)
        return sub, req

    def sim(keys, sub, req):
        k = jax.random.wrap_key_data(keys, impl="threefry2x32")
        return simulate_batch(policy, None, k, sub, req, max_active=table, mesh=mesh)

    keys = put(seed_key_data(np.arange(chunk)))
    jax.block_until_ready(sim(keys, *jax.block_until_ready(gen(keys))))  # compile both
    gen_s = sim_s = 0.0
    for c in range(-(-n_seeds // chunk)):
        keys = put(seed_key_data(np.arange(c * chunk, (c + 1) * chunk)))
        t0 = time.perf_counter()
        scen = jax.block_until_ready(gen(keys))
        t1 = time.perf_counter()
        jax.block_until_ready(sim(keys, *scen))
        gen_s += t1 - t0
        sim_s += time.perf_counter() - t1
    done = -(-n_seeds // chunk) * chunk
    return {"gen_s": gen_s, "sim_s": sim_s, "n_seeds": done, "chunk": chunk}


def bench_end_to_end(spec: dict, cfg: ScenarioConfig, record) -> None:
    """The rows of the module docstring, from the spec's ``end_to_end`` section
    (``seeds``, ``component_seeds``, ``materialise_seeds``, ``chunk``)."""
    e = spec.get("end_to_end")
    if not e:
        return
    n, chunk = e.get("seeds", 16384), e.get("chunk")
    devices = jax.device_count()
    cfg_json = json.dumps(cfg.to_dict())
    if e.get("materialise_seeds"):
        m = _fresh_process(_MATERIALISED, cfg_json, str(e["materialise_seeds"]))
        record(workload="generate-materialised", loop="vmap", seeds=e["materialise_seeds"],
               compile_s=float("nan"), run_s=m["wall_s"], embeddings_per_s=float("nan"),
               program_mib=float("nan"), wall_with_compile_s=m["wall_s"],
               peak_rss_mib=m["rss_mib"], returned_gib=m["gib"], devices=devices)
    with tempfile.TemporaryDirectory(prefix="sagin-bench-") as tmp:
        r = _fresh_process(_END_TO_END, cfg_json, str(n), tmp, json.dumps(chunk))
    p = program_times(cfg, e.get("component_seeds", 1024), chunk)
    scale = n / p["n_seeds"]
    floor = (p["gen_s"] + p["sim_s"]) * scale
    record(workload="end-to-end-programs", loop="map", seeds=n, compile_s=float("nan"),
           run_s=floor, embeddings_per_s=n * cfg.n_test / floor, program_mib=float("nan"),
           gen_s=p["gen_s"] * scale, sim_s=p["sim_s"] * scale, measured_seeds=p["n_seeds"],
           devices=devices)
    record(workload="end-to-end", loop="map", seeds=n, compile_s=float("nan"),
           run_s=r["wall_s"], embeddings_per_s=n * cfg.n_test / r["wall_s"],
           program_mib=float("nan"), wall_with_compile_s=r["wall_s"],
           peak_rss_mib=r["rss_mib"], vs_programs=r["wall_s"] / floor, devices=devices)
    print(f"end to end: {n} seeds (NRMVNE test pass, {cfg.n_test} requests each) in "
          f"{r['wall_s']:.1f} s with compile, peak RSS {r['rss_mib']:.0f} MiB; the programs "
          f"alone {floor:.1f} s (generation {p['gen_s'] * scale:.1f} s + simulation "
          f"{p['sim_s'] * scale:.1f} s, from {p['n_seeds']} seeds): "
          f"{r['wall_s'] / floor:.2f}x", flush=True)
