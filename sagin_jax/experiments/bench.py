"""``sagin-jax bench``: request embeddings per second of the vectorised simulator against the
sequential networkx reference, measured side by side in ONE run (ratios hold on a noisy machine).

Compile time is reported apart from run time. The last line printed is
``speedup_vs_reference=<ratio>`` for the 64-seed NRMVNE test-mode workload.
"""
from __future__ import annotations

import csv
import os
import resource
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from sagin_jax.config import ScenarioConfig
from sagin_jax.policies.baselines import BASELINES
from sagin_jax.reference import simulate as ref_simulate
from sagin_jax.scenario.io import read_json, scenario_document
from sagin_jax.simulation.batch import (make_requests, make_substrates, seed_keys,
                                        simulate_batch, table_size)
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.reinforce import make_evaluate, make_train, policies_for

DEFAULT = {"seeds": [1, 8, 64, 256], "reference_seeds": 4, "scenario": {},
           "train_epochs": 1, "repeats": 2}
QUICK = {"seeds": [1, 8, 64], "reference_seeds": 2, "scenario": {}, "train_epochs": 1,
         "repeats": 1}


def _timed(fn, *args, repeats: int = 1):
    """(compile seconds, best run seconds) of a jitted fn (AOT compile, then timed calls)."""
    t0 = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return compile_s, best


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(config: str | None = None, out: str = "results", quick: bool = False) -> list[dict]:
    spec = dict(QUICK if quick else DEFAULT)
    if config is not None:
        spec.update(read_json(config))
    cfg = ScenarioConfig.from_dict(spec.get("scenario", {}))
    rows: list[dict] = []

    def record(**row):
        rows.append(row)
        print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()), flush=True)

    # --- the sequential reference, a few seeds, same scenario family ---
    n_ref = spec["reference_seeds"]
    docs = []
    subs_r = make_substrates(cfg, list(range(n_ref)))
    reqs_r = make_requests(cfg, list(range(n_ref)), "test")
    for i in range(n_ref):
        take = lambda x: x[i]  # noqa: E731
        docs.append(scenario_document(jax.tree_util.tree_map(take, subs_r),
                                      jax.tree_util.tree_map(take, reqs_r)))
    t0 = time.perf_counter()
    n_req = 0
    for doc in docs:
        ref_simulate(doc, "nrmvne")
        n_req += len(doc["requests"])
    ref_s = time.perf_counter() - t0
    ref_rate = n_req / ref_s
    record(workload="reference-nrmvne", seeds=n_ref, compile_s=0.0, run_s=ref_s,
           embeddings_per_s=ref_rate, peak_rss_mib=_peak_rss_mib())

    # --- the vectorised simulator ---
    tcfg = TrainConfig(algo="ddrl-nra", epochs=spec["train_epochs"])
    speedup = None
    for s in spec["seeds"]:
        seeds = list(range(s))
        subs = make_substrates(cfg, seeds)
        reqs = make_requests(cfg, seeds, "test")
        a = table_size(reqs)
        total = s * reqs.n_requests
        fn = jax.jit(lambda k, sb, rq: simulate_batch(BASELINES["nrmvne"], None, k, sb, rq,
                                                      max_active=a))
        c, r = _timed(fn, seed_keys(seeds), subs, reqs, repeats=spec["repeats"])
        record(workload="jax-nrmvne-test", seeds=s, compile_s=c, run_s=r,
               embeddings_per_s=total / r, peak_rss_mib=_peak_rss_mib())
        if s == 64:
            speedup = (total / r) / ref_rate
        # DDRL-NRA greedy test pass (untrained params: the cost does not depend on them)
        init = policies_for(tcfg)[2]
        params = jax.vmap(init)(seed_keys(seeds), subs)
        ev = jax.jit(jax.vmap(make_evaluate(tcfg, a)))
        c, r = _timed(ev, params, seed_keys(seeds), subs, reqs, repeats=spec["repeats"])
        record(workload="jax-ddrl-test", seeds=s, compile_s=c, run_s=r,
               embeddings_per_s=total / r, peak_rss_mib=_peak_rss_mib())
        # DDRL-NRA training (sampling + gradients + updates), one epoch
        train_reqs = make_requests(cfg, seeds, "train")
        trainer = make_train(tcfg, train_reqs.n_requests, table_size(train_reqs))
        tr = jax.jit(jax.vmap(trainer.train, in_axes=(0, None, 0, 0)))
        c, r = _timed(tr, seed_keys(seeds), jnp.float32(0.005), subs, train_reqs,
                      repeats=1)
        record(workload="jax-ddrl-train", seeds=s, compile_s=c, run_s=r,
               embeddings_per_s=s * train_reqs.n_requests * tcfg.epochs / r,
               peak_rss_mib=_peak_rss_mib())

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "bench.csv"
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    _plot(out_dir / "bench.png", rows)
    print(f"wrote {path} and {out_dir / 'bench.png'} on {jax.devices()[0].platform}")
    if speedup is not None:
        print(f"speedup_vs_reference={speedup:.1f}")
    return rows


def _plot(path: Path, rows: list[dict]) -> None:
    from sagin_jax.experiments.plots import plt, _save
    fig, ax = plt.subplots(figsize=(6, 4))
    for wl in ("jax-nrmvne-test", "jax-ddrl-test", "jax-ddrl-train"):
        pts = [(r["seeds"], r["embeddings_per_s"]) for r in rows if r["workload"] == wl]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=wl)
    ref = [r["embeddings_per_s"] for r in rows if r["workload"] == "reference-nrmvne"]
    if ref:
        ax.axhline(ref[0], color="k", linestyle="--", label="networkx reference (NRMVNE)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("seeds in one call")
    ax.set_ylabel("request embeddings / s")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, path)
