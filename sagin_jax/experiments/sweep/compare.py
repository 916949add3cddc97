"""The test-seed comparison: each algorithm's best setting retrained on separate TEST seeds and
evaluated, with NRMVNE and GRC, on those seeds' test requests; paired 95% intervals."""
from __future__ import annotations

import numpy as np

from sagin_jax.experiments.stats import mean_ci, relative_gain
from sagin_jax.policies.baselines import BASELINES
from sagin_jax.simulation.batch import make_requests, make_substrates, simulate_seeds, table_size
from sagin_jax.devices.sharding import default_mesh
from sagin_jax.training.config import Hyper, TrainConfig
from sagin_jax.training.run import evaluate_grid, train_population


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
    mesh = default_mesh()
    subs = make_substrates(cfg, seeds)
    train_reqs, test_reqs = make_requests(cfg, seeds, "train"), make_requests(cfg, seeds, "test")
    table = table_size(train_reqs, test_reqs)
    final = {}
    for algo, tcfg in tcfgs.items():
        res = train_population(cfg, tcfg, seeds, Hyper.stack([Hyper.from_config(tcfg, xp=np)]),
                               progress=progress, subs=subs, train_reqs=train_reqs,
                               max_active=table, mesh=mesh)
        o = evaluate_grid(tcfg, res.params, subs, test_reqs, seeds, max_active=table, mesh=mesh)
        m = o.metrics
        final[algo] = {"AR": np.asarray(m.ar)[:, 0, -1], "ACR": np.asarray(m.acr)[:, 0, -1],
                       "RC": np.asarray(m.rc)[:, 0, -1]}
    for base in ("nrmvne", "grc"):
        _, o = simulate_seeds(BASELINES[base], None, seeds, subs, test_reqs, max_active=table,
                              mesh=mesh)
        m = o.metrics
        final[base] = {"AR": np.asarray(m.ar)[:, -1], "ACR": np.asarray(m.acr)[:, -1],
                       "RC": np.asarray(m.rc)[:, -1]}
    gains = {a: {b: {k: paired_gain(final[a][k], final[b][k]) for k in ("AR", "ACR", "RC")}
                 for b in final if b != a} for a in tcfgs}
    return {"seeds": seeds,
            "final": {a: {k: [float(x) for x in v] for k, v in d.items()} for a, d in final.items()},
            "gain_vs": gains}
