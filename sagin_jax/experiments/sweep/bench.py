"""The sweep's bench: a population of slots with pruning and refills against one trial at a
time through the ordinary trainer (``sagin-jax bench``'s ``sweep`` section;
``python -m sagin_jax.experiments.sweep`` runs a small case)."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from sagin_jax.config import ScenarioConfig
from sagin_jax.experiments.sweep.population import Population
from sagin_jax.experiments.sweep.study import run_study
from sagin_jax.simulation.batch import make_requests, make_substrates
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.run import grid_programs, train_grid


def bench_sweep(cfg, n_configs: int, seeds, epochs: int, batch_size: int | None = None,
                slots: int = 8, seed: int = 0) -> dict:
    """Wall time of ``n_configs`` random-search trials x ``seeds`` trained (a) as a population of
    ``slots`` slots (one compiled program, successive-halving pruning, a pruned or finished
    trial's slot refilled at once: ``run_study``) and (b) one trial at a time through the
    ordinary single-run trainer, the way a user drives Optuna by hand: a fresh ``train_grid``
    call per trial with that trial's learning rate, every epoch, no pruning. Both include their
    compile (each starts from a cold in-process cache of its programs; the XLA persistent cache
    is not used). Same learning rates in both (the population's trials, log-uniform in
    [1e-3, 1]).

    -> population_s, one_at_a_time_s, ratio (= one_at_a_time_s / population_s), the trial-epochs
    the population trained vs the n_configs x epochs of the baseline (``epochs_saved``: the
    fraction pruning saved), the slot-epochs it computed (ticks x slots, idle slots included)
    and the wall time of its epoch calls (``population_epochs_s``, the first one's compile
    included; the rest of ``population_s`` is the other compiles, Optuna and its journal file,
    and the checkpoints). The baseline pays no Optuna cost at all."""
    seeds = list(seeds)
    bs = batch_size or max(d for d in range(1, min(cfg.n_train, 100) + 1) if cfg.n_train % d == 0)
    train = {"epochs": epochs, "batch_size": bs}
    sw = {"name": "bench", "scenario": cfg, "train": train, "algos": ["ddrl-nra"],
          "space": {"lr": {"low": 1e-3, "high": 1.0, "log": True}}, "batch": slots,
          "train_seeds": seeds, "test_seeds": [], "sampler": "random",
          "pruner": "successive_halving", "seed": seed, "objective_ar_scale": 20000.0}
    sw["rlvne_space"] = sw["space"]
    tcfg = TrainConfig.from_dict({**train, "algo": "ddrl-nra"})
    subs, reqs = make_substrates(cfg, seeds), make_requests(cfg, seeds, "train")
    ticks, tick_s = [0], [0.0]

    class Counted(Population):
        def step(self, carry, live_slots=None):
            t = time.perf_counter()
            out = super().step(carry, live_slots)  # (host arrays: the epoch has finished)
            ticks[0] += 1
            tick_s[0] += time.perf_counter() - t
            return out

    grid_programs.cache_clear()
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        pop = Counted(cfg, tcfg, seeds, slots, subs, reqs)
        study = run_study(sw, "ddrl-nra", Path(d), ("trials", n_configs), False, False, pop)
        pop_s = time.perf_counter() - t0
        lrs = [t.params["lr"] for t in study.trials]
        n_pruned = sum(t.state.name == "PRUNED" for t in study.trials)
        trial_epochs = sum(len(t.intermediate_values) for t in study.trials)
    grid_programs.cache_clear()  # the baseline compiles its own program, as a user's would
    t0 = time.perf_counter()
    for lr in lrs:
        train_grid(cfg, tcfg, seeds, [lr], progress=False, subs=subs, train_reqs=reqs,
                   mesh=pop.mesh)
    one_s = time.perf_counter() - t0
    return {"n_configs": n_configs, "n_seeds": len(seeds), "epochs": epochs,
            "n_train": cfg.n_train, "slots": slots, "population_s": pop_s,
            "one_at_a_time_s": one_s, "ratio": one_s / pop_s, "pruned": n_pruned,
            "trial_epochs": trial_epochs, "baseline_trial_epochs": n_configs * epochs,
            "epochs_saved": 1.0 - trial_epochs / (n_configs * epochs),
            "slot_epochs": ticks[0] * slots, "population_epochs_s": tick_s[0]}


def main_bench(argv=None) -> int:
    """``python -m sagin_jax.experiments.sweep [N_CONFIGS] [SLOTS]``: the scaled-down bench
    (N_CONFIGS=32 configurations x 2 seeds x 3 epochs x 200 requests, SLOTS=8, a small
    scenario)."""
    argv = sys.argv[1:] if argv is None else argv
    n_cfg = int(argv[0]) if len(argv) > 0 else 32
    slots = int(argv[1]) if len(argv) > 1 else 8
    cfg = ScenarioConfig(n_space=4, n_air=6, n_ground=10, n_train=200, n_test=100)
    r = bench_sweep(cfg, n_cfg, [0, 1], 3, batch_size=20, slots=slots)
    print(json.dumps(r, indent=2))
    print(f"population ({r['slots']} slots, pruning, refill): {r['population_s']:.2f} s; "
          f"one at a time (train_grid per trial, no pruning): {r['one_at_a_time_s']:.2f} s; "
          f"ratio {r['ratio']:.2f}x; trial-epochs {r['trial_epochs']} of "
          f"{r['baseline_trial_epochs']} ({100 * r['epochs_saved']:.0f}% saved by pruning); "
          f"population epoch calls {r['population_epochs_s']:.2f} s of its wall")
    return 0
