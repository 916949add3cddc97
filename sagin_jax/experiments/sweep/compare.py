"""The test-seed comparison: each algorithm's best setting retrained on separate TEST seeds and
evaluated, with NRMVNE and GRC, on those seeds' test requests; paired 95% intervals.

Every number comes from the streaming seed runner (``train_seeds``, ``stream_seeds``): each
chunk of test seeds is generated, trained and tested inside one compiled program and only the
per-seed finals come back, so the comparison's memory does not grow with its seed count."""
from __future__ import annotations

import jax
import numpy as np

from sagin_jax.experiments.stats import mean_ci, relative_gain
from sagin_jax.policies.baselines import BASELINES
from sagin_jax.simulation.stream import default_time_grid, stream_seeds
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.stream import train_seeds

FINAL_ONLY_GRID_POINTS = 2
"""The comparison reads each seed's final metrics only: the runner's time grid is the
smallest it takes."""


def best_train_config(sw: dict, algo: str, best_params: dict) -> TrainConfig:
    """The static config of the sweep with the best trial's values as the traced defaults."""
    over = {k: v for k, v in best_params.items() if k != "failed_weight"}
    if "failed_reward" in best_params:
        over["failed_reward"] = best_params["failed_reward"]
    if best_params.get("failed_weight", 1.0) == 0.0:
        over["failed_reward"] = None
    return TrainConfig.from_dict({**sw["train"], **over, "algo": algo})


def paired_gain(a: np.ndarray, b: np.ndarray) -> dict:
    """Per-seed relative difference a/b - 1 on the same seeds: mean and 95% half-width."""
    d = relative_gain(a, b)
    m, h = mean_ci(d)
    return {"mean": float(m), "ci95": float(h), "n_seeds": int(d.size)}


def test_comparison(sw: dict, tcfgs: dict, progress: bool = False) -> dict:
    """Retrain each algorithm's best config on the TEST seeds and evaluate it, with NRMVNE and
    GRC, on those seeds' test requests; -> {"final": {algo: {AR, ACR, RC: per-seed list}},
    "gain_vs": {algo: {base: {metric: paired_gain}}}}."""
    cfg, seeds = sw["scenario"], sw["test_seeds"]
    grid = default_time_grid(cfg, FINAL_ONLY_GRID_POINTS)
    pick = lambda f: {"AR": np.asarray(f.ar), "ACR": np.asarray(f.acr),  # noqa: E731
                      "RC": np.asarray(f.rc)}
    final = {}
    for algo, tcfg in tcfgs.items():
        if progress:
            print(f"[compare] {algo}: training its best setting on {len(seeds)} test seeds",
                  flush=True)
        _, _, summary = train_seeds(cfg, tcfg, seeds, grid)  # the config's own setting
        final[algo] = pick(jax.tree_util.tree_map(lambda x: x[:, 0], summary.final))
    for base in ("nrmvne", "grc"):
        final[base] = pick(stream_seeds(cfg, BASELINES[base], None, seeds, grid,
                                        with_train=True).final)  # training's generation
    gains = {a: {b: {k: paired_gain(final[a][k], final[b][k]) for k in ("AR", "ACR", "RC")}
                 for b in final if b != a} for a in tcfgs}
    return {"seeds": seeds,
            "final": {a: {k: [float(x) for x in v] for k, v in d.items()} for a, d in final.items()},
            "gain_vs": gains}
