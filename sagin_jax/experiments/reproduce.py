"""``sagin-jax reproduce``: the experiments of the paper's section V, written under ``results/``.

Each experiment is one JSON file under ``experiments/`` (``experiments/small`` for the default
quick run, ``experiments/full`` for ``--full``). Every experiment writes its CSV + PNG atomically
and a completion marker, so ``--resume`` skips finished ones and gives the same numbers.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from types import SimpleNamespace
from pathlib import Path

import jax
import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax import validate
from sagin_jax.compilation import CompileCounter
from sagin_jax.experiments import plots
from sagin_jax.experiments.stats import (interval_bounds, mean_ci, on_time_grid, relative_gain,
                                         time_grid)
from sagin_jax.experiments.stopwatch import Stopwatch, describe
from sagin_jax.policies.baselines import BASELINES
from sagin_jax.files import read_json, write_csv, write_json
from sagin_jax.scenario.generate import make_scenarios, trim_padding
from sagin_jax.simulation.batch import simulate_seeds, table_size
from sagin_jax.training.config import TrainConfig
from sagin_jax.training.reinforce import objective
from sagin_jax.training.run import evaluate_grid, train_grid

KINDS = ("fig4", "compare", "storage", "load")
METRICS = ("AR", "ACR", "RC", "RC_link")


def experiments_dir() -> Path:
    """The repository's ``experiments/`` folder, found from this file (never from the working
    directory, so ``reproduce`` gives the same runs wherever it is started)."""
    here = Path(__file__).resolve().parents[2] / "experiments"
    if not here.is_dir():
        raise ValueError(f"the experiment files are not at {here} (is sagin_jax installed "
                         "without its repository?); pass an experiment file with --config")
    return here


def load_experiment(path: str | os.PathLike, seeds: int | None = None) -> dict:
    """Read and check one experiment file (every field, before any compute; see
    ``sagin_jax.validate.experiment``); ``seeds`` overrides its seed count."""
    return validate.experiment(read_json(path), path, seeds)


def _config_hash(exp: dict) -> str:
    clean = {k: v for k, v in exp.items() if not k.startswith("_")}
    if exp.get("_best_train") is not None:  # a load experiment's best configuration, as read
        clean["best_train"] = exp["_best_train"]
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()[:16]


def _time_curves(group: str, per_group: dict, names, grid: np.ndarray):
    """Mean and 95% interval over seeds of each group's metrics on the common time ``grid``;
    -> (CSV rows, {(group, metric): (mean, half-width)})."""
    rows, curves = [], {}
    for label, m in per_group.items():
        n_seeds = m["time"].shape[0]
        for name in names:
            mean, half = mean_ci(on_time_grid(m["time"], m[name], grid), axis=0)
            curves[(label, name)] = (mean, half)
            low, high = interval_bounds(name, mean, half)  # clipped to the metric's range
            rows += [{group: label, "time": grid[i], "metric": name, "mean": mean[i],
                      "ci_low": low[i], "ci_high": high[i],
                      "n_seeds": n_seeds} for i in range(grid.shape[0])]
    return rows, curves


def _stat(x) -> dict:
    m, h = mean_ci(np.asarray(x, dtype=np.float64))
    return {"mean": float(m), "ci": float(h), "n": int(np.asarray(x).shape[0]),
            "values": [float(v) for v in np.asarray(x)]}


def _outcome_metrics(out, lead: tuple = ()) -> dict:
    """Running metrics as numpy arrays; ``lead`` indexes away extra axes (e.g. the lr axis)."""
    m = out.metrics
    pick = lambda x: np.asarray(x)[(slice(None),) + lead]  # noqa: E731
    return {"time": pick(m.time), "AR": pick(m.ar), "ACR": pick(m.acr), "RC": pick(m.rc),
            "RC_link": pick(m.rc_link)}


def _batching(exp: dict) -> dict:
    """How runs are batched: ``seed_loop`` from the experiment file (default by backend) and
    the seed mesh over every device (several CPU host devices with ``--host-devices``)."""
    from sagin_jax.devices.sharding import default_mesh
    return {"seed_loop": exp.get("seed_loop"), "mesh": default_mesh()}


EDGE_BUCKET, DEGREE_BUCKET = 32, 4

_WATCH: Stopwatch | None = None
"""The running experiment's stopwatch (set by ``run_experiment``; None outside one, e.g. in the
ahead phase, whose time ``reproduce`` reports on its own)."""


def _section(name: str):
    """Time a block as ``name`` on the running experiment's stopwatch, if any."""
    return _WATCH.section(name) if _WATCH is not None else contextlib.nullcontext()


@functools.lru_cache(maxsize=16)
def scenarios(cfg: ScenarioConfig, seeds: tuple) -> tuple:
    """(substrates, train requests, test requests, table size) of ``seeds``: generated once by
    the JAX generator (one compiled program per config) and shared by every algorithm and every
    experiment with the same config and seeds. Link and neighbour lists are cut to what the
    seeds use, rounded up to buckets, so experiments share compiled programs."""
    with _section("generate"):  # (a cache hit does not get here)
        scen = make_scenarios(cfg, list(seeds))
        subs = trim_padding(scen.sub, EDGE_BUCKET, DEGREE_BUCKET)
    return subs, scen.train, scen.test, table_size(scen.train, scen.test)


# --- training runs shared between experiments ------------------------------------------------

_TRAINED: dict = {}
"""Training runs of one ``reproduce`` call: (scenario config, training config, rate, seeds,
seed loop) -> (params [S, ...], curves [S, E, B]). The scenarios (and so the table size) follow
from the config and seeds, and the device mesh is the process's. Filled by every
``train_shared`` call, emptied by ``reproduce``."""


def _run_key(exp: dict, cfg: ScenarioConfig, tcfg: TrainConfig, seeds: list, lr: float):
    return (cfg, tcfg, float(lr), tuple(seeds), exp.get("seed_loop"))


def train_shared(exp: dict, cfg: ScenarioConfig, tcfg: TrainConfig, seeds: list, lrs: list,
                 progress: bool) -> SimpleNamespace:
    """``train_grid`` of ``seeds`` x ``lrs``, or, when this process has already trained every one
    of these runs, those runs: ``params`` [S, L, ...], ``curves`` [S, L, E, B], ``compile_s``,
    ``run_s`` (0 when reused) and ``reused``.

    The full set trains DDRL-NRA at rate 0.005 on the paper's scenario three times (Fig. 4's
    second rate, Figs. 5-7, Fig. 8's U[1,50]): the same scenario, training config, seeds, keys
    and compiled program (a run's key depends on its seed alone; runs are looped one by one
    inside a block of ``MAX_RUN_BLOCK``), so the same bits. A test checks a reused run against
    a fresh one."""
    keys = [_run_key(exp, cfg, tcfg, seeds, lr) for lr in lrs]
    if all(k in _TRAINED for k in keys):
        runs = [_TRAINED[k] for k in keys]
        stack = lambda *xs: np.stack(xs, axis=1)  # noqa: E731  (the L axis)
        return SimpleNamespace(
            params=jax.tree_util.tree_map(stack, *[p for p, _ in runs]),
            curves=jax.tree_util.tree_map(stack, *[c for _, c in runs]),
            compile_s=0.0, run_s=0.0, reused=True)
    subs, train_reqs, _, table = scenarios(cfg, tuple(seeds))
    with _section("train"):
        res = train_grid(cfg, tcfg, seeds, lrs, progress=progress, subs=subs,
                         train_reqs=train_reqs, max_active=table, **_batching(exp))
        jax.block_until_ready((res.params, res.curves))
    for j, k in enumerate(keys):
        _TRAINED[k] = jax.tree_util.tree_map(lambda x: np.asarray(x)[:, j],
                                             (res.params, res.curves))
    return SimpleNamespace(params=res.params, curves=res.curves, compile_s=res.compile_s,
                           run_s=res.run_s, reused=False)


# --- Fig. 4 --------------------------------------------------------------------------------

def _fig4_setup(exp: dict):
    """(scenario config, TrainConfig, seeds, learning rates) of a Fig. 4 experiment."""
    tcfg = TrainConfig.from_dict({**exp.get("train", {}), "algo": "ddrl-nra"})
    return (exp["_scenario"], tcfg, list(range(exp["seeds"])),
            exp.get("lrs", [0.0005, 0.005, 0.01, 0.05]))


def run_fig4(exp: dict, out: Path, progress: bool) -> dict:
    cfg, tcfg, seeds, lrs = _fig4_setup(exp)
    res = train_shared(exp, cfg, tcfg, seeds, lrs, progress)
    c = res.curves  # [S, L, E, B]
    s, n_lr, e, b = np.asarray(c.ar).shape
    series = {"AR": c.ar, "ACR": c.acr, "RC": c.rc, "O": c.objective}
    rows, curves = [], {}
    for name, arr in series.items():
        arr = np.asarray(arr).reshape(s, n_lr, e * b)
        mean, half = mean_ci(arr, axis=0)
        curves[name] = (mean, half)
        low, high = interval_bounds(name, mean, half)  # clipped to the metric's range
        for j, lr in enumerate(lrs):
            for step in range(e * b):
                rows.append({"lr": lr, "update": step + 1, "epoch": step // b + 1, "metric": name,
                             "mean": mean[j, step], "ci_low": low[j, step],
                             "ci_high": high[j, step], "n_seeds": s})
    write_csv(out / f"{exp['name']}.csv",
              ["lr", "update", "epoch", "metric", "mean", "ci_low", "ci_high", "n_seeds"], rows)
    plots.training_curves(out / f"{exp['name']}.png", lrs, curves, b)
    # final performance per lr: mean over the last epoch's batches, per seed
    final = {name: {str(lr): _stat(np.asarray(arr)[:, j, -1, :].mean(axis=-1))
                    for j, lr in enumerate(lrs)} for name, arr in series.items()}
    return {"lrs": lrs, "final_epoch": final, "compile_s": res.compile_s, "run_s": res.run_s}


# --- Figs. 5-7 -----------------------------------------------------------------------------

TRAINED = ("ddrl-nra", "rlvne")


def _trained_setup(exp: dict, algo: str):
    """(TrainConfig, learning rate) of a trained algorithm in a comparison or Fig. 8."""
    tcfg = TrainConfig.from_dict({**exp.get("train", {}), "algo": algo})
    return tcfg, exp.get("lr", 0.005) if algo == "ddrl-nra" else exp.get("rlvne_lr", 0.005)


def _compare_algos(exp: dict) -> list:
    return exp.get("algos", ["ddrl-nra", "rlvne", "nrmvne", "grc", "random"])


def run_compare(exp: dict, out: Path, progress: bool) -> dict:
    cfg: ScenarioConfig = exp["_scenario"]
    seeds = list(range(exp["seeds"]))
    algos = _compare_algos(exp)
    subs, _, test_reqs, table = scenarios(cfg, tuple(seeds))
    per_algo, timing = {}, {}
    for algo in algos:
        t0 = time.perf_counter()
        if algo in TRAINED:
            tcfg, lr = _trained_setup(exp, algo)
            res = train_shared(exp, cfg, tcfg, seeds, [lr], progress)
            with _section("simulate"):
                o = jax.block_until_ready(evaluate_grid(tcfg, res.params, subs, test_reqs, seeds,
                                                        max_active=table, **_batching(exp)))
            per_algo[algo] = _outcome_metrics(o, lead=(0,))
            timing[algo] = {"compile_s": res.compile_s, "train_run_s": res.run_s,
                            "reused": res.reused}
        else:
            with _section("simulate"):
                _, o = jax.block_until_ready(simulate_seeds(BASELINES[algo], None, seeds, subs,
                                                            test_reqs, max_active=table,
                                                            **_batching(exp)))
            per_algo[algo] = _outcome_metrics(o)
        timing.setdefault(algo, {})["wall_s"] = time.perf_counter() - t0
    times = per_algo[algos[0]]["time"]
    grid = time_grid(times, exp.get("time_points", 40))
    rows, curves = _time_curves("algo", per_algo, METRICS, grid)
    write_csv(out / f"{exp['name']}.csv",
              ["algo", "time", "metric", "mean", "ci_low", "ci_high", "n_seeds"], rows)
    plots.comparison(out, exp["name"], algos, grid, curves)
    final = {algo: {name: _stat(m[name][:, -1]) for name in METRICS}
             for algo, m in per_algo.items()}
    gains = {}
    if "ddrl-nra" in per_algo:
        d = per_algo["ddrl-nra"]
        for algo, m in per_algo.items():
            if algo != "ddrl-nra":
                gains[algo] = {name: _stat(relative_gain(d[name][:, -1], m[name][:, -1]))
                               for name in METRICS}
    return {"algos": algos, "final": final, "ddrl_gain_vs": gains, "timing": timing}


# --- Fig. 8 --------------------------------------------------------------------------------

def _storage_cfgs(exp: dict) -> dict:
    """{storage range: scenario config} of a Fig. 8 experiment."""
    out = {}
    for rng in [tuple(r) for r in exp.get("sto_ranges", [[1, 50], [1, 20], [1, 10]])]:
        cfg = exp["_scenario"].replace(req_sto=rng)
        cfg.validate()
        out[rng] = cfg
    return out


def run_storage(exp: dict, out: Path, progress: bool) -> dict:
    seeds = list(range(exp["seeds"]))
    tcfg, lr = _trained_setup(exp, "ddrl-nra")
    per_range = {}
    for rng, cfg in _storage_cfgs(exp).items():
        subs, _, test_reqs, table = scenarios(cfg, tuple(seeds))
        res = train_shared(exp, cfg, tcfg, seeds, [lr], progress)
        with _section("simulate"):
            o = jax.block_until_ready(evaluate_grid(tcfg, res.params, subs, test_reqs, seeds,
                                                    max_active=table, **_batching(exp)))
        m = _outcome_metrics(o, lead=(0,))
        m["O"] = objective(SimpleNamespace(ar=m["AR"], rc=m["RC"], acr=m["ACR"]), tcfg.ar_scale)
        per_range[f"U[{rng[0]},{rng[1]}]"] = m
    grid = time_grid(np.concatenate([m["time"] for m in per_range.values()]),
                     exp.get("time_points", 40))
    names = ("AR", "ACR", "RC", "O")
    rows, curves = _time_curves("storage", per_range, names, grid)
    write_csv(out / f"{exp['name']}.csv",
              ["storage", "time", "metric", "mean", "ci_low", "ci_high", "n_seeds"], rows)
    plots.storage(out / f"{exp['name']}.png", list(per_range), grid, curves)
    final = {label: {name: _stat(m[name][:, -1]) for name in names}
             for label, m in per_range.items()}
    return {"ranges": list(per_range), "final": final, "ar_scale": tcfg.ar_scale}


# --- offered load and request size --------------------------------------------------------

GAIN_METRICS = ("AR", "ACR")
GAIN_VS = ("nrmvne", "rlvne")
BEST = "ddrl-nra-best"
"""DDRL-NRA trained with the traced hyperparameters of a sweep's best configuration."""


def read_best_train(exp: dict, out: Path) -> dict | None:
    """The traced training hyperparameters (``HYPER_DEFAULTS``' fields) of the sweep's best
    configuration ``out / exp["best_config"]``, or None when the experiment names none or the
    file is not there. Only traced fields are taken: the schedule (epochs, batch size) stays the
    experiment's, so the run shares the compiled program of the paper-default agent."""
    from sagin_jax.training.config import HYPER_DEFAULTS
    name = exp.get("best_config")
    if not name or not (out / name).is_file():
        return None
    path = out / name
    doc = read_json(path)
    train = doc.get("train") if isinstance(doc, dict) else None
    if not isinstance(train, dict):
        raise ValueError(f"{path}: no 'train' section (expected a sweep's best.json)")
    tcfg = TrainConfig.from_json(train, path)
    return {k: getattr(tcfg, k) for k in HYPER_DEFAULTS}


def _load_setup(exp: dict):
    """(points, seeds, algos, the DDRL-NRA settings {variant: Hyper}) of a load experiment."""
    import dataclasses
    from sagin_jax.experiments.load import load_points
    from sagin_jax.training.config import Hyper
    points = load_points(exp["_scenario"], exp["loads"], exp.get("lifetime_loads", []),
                         exp.get("req_nodes_ranges", []))
    tcfg, lr = _trained_setup(exp, "ddrl-nra")
    settings = {"ddrl-nra": Hyper.from_config(tcfg, lr=lr, xp=np)}
    if exp.get("_best_train") is not None and "ddrl-nra" in _compare_algos(exp):
        best = dataclasses.replace(tcfg, **exp["_best_train"])
        settings[BEST] = Hyper.from_config(best, xp=np)
    return points, list(range(exp["seeds"])), _compare_algos(exp), settings


def _load_table(points: list, seeds: list) -> int:
    """One active-request table for every point (the largest any needs), so that every point
    runs the same compiled programs. On the paper's scenario with 32 seeds ρ = 80 needs 128
    rows and ρ = 2.5 16; a larger table costs little, as departures are released row by row:
    training DDRL-NRA at ρ = 40 on 32 seeds took 6.9 s with 128 rows and 6.8 s with 80."""
    return max(scenarios(p.cfg, tuple(seeds))[3] for p in points)


def _load_finals(o, lead: tuple, ar_scale: float) -> dict:
    """Per-seed values at the last test request: AR, ACR, R/C and O (eq. 14, at ``ar_scale``)."""
    m = _outcome_metrics(o, lead)
    fin = {name: m[name][:, -1] for name in ("AR", "ACR", "RC")}
    fin["O"] = np.asarray(objective(SimpleNamespace(ar=fin["AR"], rc=fin["RC"], acr=fin["ACR"]),
                                    ar_scale), np.float64)
    return fin


def _run_load_point(exp: dict, cfg: ScenarioConfig, seeds: list, algos: list, settings: dict,
                    table: int, progress: bool) -> dict:
    """{variant: per-seed finals} of every algorithm at one point, on the same test seeds."""
    from sagin_jax.training.config import Hyper
    from sagin_jax.training.run import train_population
    subs, train_reqs, test_reqs, _ = scenarios(cfg, tuple(seeds))
    ar_scale = _trained_setup(exp, "ddrl-nra")[0].ar_scale
    finals = {}
    for algo in algos:
        if algo in TRAINED:
            tcfg, lr = _trained_setup(exp, algo)
            hypers = settings if algo == "ddrl-nra" else {
                algo: Hyper.from_config(tcfg, lr=lr, xp=np)}
            with _section("train"):
                res = train_population(cfg, tcfg, seeds, Hyper.stack(list(hypers.values())),
                                       progress=progress, subs=subs, train_reqs=train_reqs,
                                       max_active=table, **_batching(exp))
                jax.block_until_ready(res.params)
            with _section("simulate"):
                o = jax.block_until_ready(evaluate_grid(tcfg, res.params, subs, test_reqs, seeds,
                                                        max_active=table, **_batching(exp)))
            for j, variant in enumerate(hypers):
                finals[variant] = _load_finals(o, (j,), ar_scale)
        else:
            with _section("simulate"):
                _, o = jax.block_until_ready(simulate_seeds(BASELINES[algo], None, seeds, subs,
                                                            test_reqs, max_active=table,
                                                            **_batching(exp)))
            finals[algo] = _load_finals(o, (), ar_scale)
    return finals


def _load_summary_point(point, finals: dict) -> dict:
    """One point of the summary: its settings, every variant's finals and the paired gains of
    each DDRL-NRA variant over NRMVNE and RLVNE."""
    from sagin_jax.experiments.load import paired_gain, stat
    gains = {v: {vs: {name: stat(paired_gain(finals[v][name], finals[vs][name]))
                      for name in GAIN_METRICS}
                 for vs in GAIN_VS if vs in finals}
             for v in ("ddrl-nra", BEST) if v in finals}
    return {"label": point.label, "series": list(point.series), "rho": point.rho,
            "arrival_rate": point.cfg.arrival_rate, "mean_lifetime": point.cfg.mean_lifetime,
            "req_nodes": list(point.req_nodes),
            "final": {v: {name: stat(x) for name, x in f.items()} for v, f in finals.items()},
            "gain": gains}


LOAD_COLUMNS = ("series", "rho", "arrival_rate", "mean_lifetime", "req_nodes", "algo",
                "metric", "vs", "mean", "ci_low", "ci_high", "n_seeds")


def _load_rows(p: dict) -> list:
    """CSV rows of one summary point: each variant's metrics (``vs`` empty) and each paired gain
    (``metric`` as gain_<metric>, ``vs`` the other algorithm)."""
    head = {"series": "+".join(p["series"]), "rho": p["rho"], "arrival_rate": p["arrival_rate"],
            "mean_lifetime": p["mean_lifetime"], "req_nodes": "{}-{}".format(*p["req_nodes"])}
    rows = []
    for v, f in p["final"].items():
        for name, st in f.items():
            low, high = interval_bounds(name, st["mean"], st["ci"])
            rows.append({**head, "algo": v, "metric": name, "vs": "", "mean": st["mean"],
                         "ci_low": float(low), "ci_high": float(high), "n_seeds": st["n"]})
    for v, per_vs in p["gain"].items():
        for vs, per_metric in per_vs.items():
            for name, st in per_metric.items():
                low, high = interval_bounds(None, st["mean"], st["ci"])
                rows.append({**head, "algo": v, "metric": f"gain_{name}", "vs": vs,
                             "mean": st["mean"], "ci_low": float(low), "ci_high": float(high),
                             "n_seeds": st["n"]})
    return rows


def run_load(exp: dict, out: Path, progress: bool) -> dict:
    """Every algorithm at each point of offered load and request size (``load.load_points``):
    DDRL-NRA trained with the paper's defaults and, if the sweep's best configuration is there,
    with its hyperparameters (one training program for both), RLVNE trained, the heuristics
    run; all on the same seeds, one active-request table for all points (one set of compiled
    programs)."""
    points, seeds, algos, settings = _load_setup(exp)
    table = _load_table(points, seeds)
    summary_points = []
    for point in points:
        if progress:
            print(f"[{exp['name']}] {point.label}", flush=True)
        finals = _run_load_point(exp, point.cfg, seeds, algos, settings, table, progress)
        summary_points.append(_load_summary_point(point, finals))
    write_csv(out / f"{exp['name']}.csv", list(LOAD_COLUMNS),
              [r for p in summary_points for r in _load_rows(p)])
    from sagin_jax.experiments.load import offered_load
    from sagin_jax.experiments.report import PAPER_GAINS
    plots.load_curves(out / "fig9_load.png", summary_points, PAPER_GAINS)
    if any("size" in p["series"] for p in summary_points):
        plots.request_size(out / "fig10_reqsize.png", summary_points, PAPER_GAINS)
    return {"algos": algos, "variants": list(summary_points[0]["final"]), "table": table,
            "base_rho": offered_load(exp["_scenario"]),
            "base_req_nodes": list(exp["_scenario"].req_nodes),
            "best_config": exp.get("best_config") if BEST in settings else None,
            "best_train": exp.get("_best_train") if BEST in settings else None,
            "points": summary_points}


RUNNERS = {"fig4": run_fig4, "compare": run_compare, "storage": run_storage, "load": run_load}


# --- the programs an experiment will run, compiled ahead side by side ----------------------

def _compile_all(exps: list, progress: bool) -> None:
    from sagin_jax.compilation import compile_ahead, compile_workers
    if not exps:
        return
    t0 = time.perf_counter()
    if progress:
        print(f"[compile] lowering the programs of {len(exps)} experiment(s), compiling them "
              f"{compile_workers()} at a time ...", flush=True)
    with CompileCounter() as cc:
        n = compile_ahead(j for e in exps for j in experiment_jobs(e))
    if progress:
        print(f"[compile] ready in {time.perf_counter() - t0:.1f} s: {cc.stats} ({n} of them "
              f"side by side; the generator and init programs in this thread)", flush=True)


def _trained_jobs(exp: dict, algo: str, cfg: ScenarioConfig, seeds: list, lrs=None,
                  evaluate: bool = True) -> list:
    from sagin_jax.training.config import Hyper
    from sagin_jax.training.run import evaluate_jobs, population_jobs
    tcfg, lr = _trained_setup(exp, algo)
    subs, train_reqs, test_reqs, table = scenarios(cfg, tuple(seeds))
    hypers = Hyper.stack([Hyper.from_config(tcfg, lr=x, xp=np) for x in (lrs or [lr])])
    jobs, params = population_jobs(tcfg, seeds, hypers, subs, train_reqs, max_active=table,
                                   **_batching(exp))
    if evaluate:
        jobs += evaluate_jobs(tcfg, params, subs, test_reqs, seeds, max_active=table,
                              **_batching(exp))
    return jobs


def experiment_jobs(exp: dict) -> list:
    """The compile jobs (``sagin_jax.compilation.Job``) of every program ``run_experiment`` will
    call for ``exp``, built from the same setup functions as the runners and placed the same
    way (the scenarios are generated here, once, and shared with the run). A test checks that
    a run after ``compile_ahead`` of these compiles nothing more."""
    from sagin_jax.simulation.batch import simulate_jobs
    seeds = list(range(exp["seeds"]))
    if exp["kind"] == "fig4":
        cfg, _, _, lrs = _fig4_setup(exp)
        return _trained_jobs(exp, "ddrl-nra", cfg, seeds, lrs, evaluate=False)
    if exp["kind"] == "storage":
        return [j for cfg in _storage_cfgs(exp).values()
                for j in _trained_jobs(exp, "ddrl-nra", cfg, seeds)]
    if exp["kind"] == "load":
        return _load_jobs(exp)
    cfg = exp["_scenario"]
    jobs = []
    for algo in _compare_algos(exp):
        if algo in TRAINED:
            jobs += _trained_jobs(exp, algo, cfg, seeds)
        else:
            subs, _, test_reqs, table = scenarios(cfg, tuple(seeds))
            jobs += simulate_jobs(BASELINES[algo], None, seeds, subs, test_reqs,
                                  max_active=table, **_batching(exp))
    return jobs


def _load_jobs(exp: dict) -> list:
    """The programs of ``run_load``: every point's, all with the experiment's one table (the
    points share them: ``compile_ahead`` compiles each distinct program once)."""
    from sagin_jax.simulation.batch import simulate_jobs
    from sagin_jax.training.config import Hyper
    from sagin_jax.training.run import evaluate_jobs, population_jobs
    points, seeds, algos, settings = _load_setup(exp)
    table = _load_table(points, seeds)
    jobs = []
    for point in points:
        subs, train_reqs, test_reqs, _ = scenarios(point.cfg, tuple(seeds))
        for algo in algos:
            if algo in TRAINED:
                tcfg, lr = _trained_setup(exp, algo)
                hypers = list(settings.values()) if algo == "ddrl-nra" else [
                    Hyper.from_config(tcfg, lr=lr, xp=np)]
                new, params = population_jobs(tcfg, seeds, Hyper.stack(hypers), subs,
                                              train_reqs, max_active=table, **_batching(exp))
                jobs += new + evaluate_jobs(tcfg, params, subs, test_reqs, seeds,
                                            max_active=table, **_batching(exp))
            else:
                jobs += simulate_jobs(BASELINES[algo], None, seeds, subs, test_reqs,
                                      max_active=table, **_batching(exp))
    return jobs


STAGING = ".partial"
"""Each experiment writes its outputs under ``OUT/.partial/<name>/`` first; only when every
output is there are they moved into ``OUT`` and the completion marker written, so a crash or a
Ctrl-C leaves neither a partial CSV nor a marker that ``--resume`` would trust."""


def finished(exp: dict, out: Path) -> dict | None:
    """The completion marker of ``exp`` in ``out`` if it is there and for this very config."""
    marker = out / ".done" / f"{exp['name']}.json"
    if not marker.is_file():
        return None
    try:
        done = read_json(marker)
    except ValueError:
        return None
    return done if isinstance(done, dict) and done.get("hash") == _config_hash(exp) else None


def run_experiment(exp: dict, out: Path, resume: bool, progress: bool,
                   written: list | None = None, fresh: list | None = None) -> dict:
    """Run one experiment (or, with ``resume``, return its marker if it is complete) and write
    its files and completion marker; the marker of a run that did happen is appended to
    ``fresh``."""
    global _WATCH
    marker = out / ".done" / f"{exp['name']}.json"
    h = _config_hash(exp)
    if resume and (done := finished(exp, out)) is not None:
        if progress:
            print(f"[{exp['name']}] complete, skipped (--resume)")
        return done
    if progress:
        print(f"[{exp['name']}] {exp['kind']}: {exp['seeds']} seeds ...", flush=True)
    stage = out / STAGING / exp["name"]
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        _WATCH = Stopwatch()
        t0 = time.perf_counter()
        summary = RUNNERS[exp["kind"]](exp, stage, progress)
        wall = time.perf_counter() - t0
        split = _WATCH.split(wall)
        done = {"name": exp["name"], "kind": exp["kind"], "hash": h, "seeds": exp["seeds"],
                "wall_s": wall, "time_split_s": split,
                "config": {k: v for k, v in exp.items() if not k.startswith("_")},
                "summary": summary}
        marker.unlink(missing_ok=True)  # outputs change below: the old marker no longer holds
        for f in sorted(stage.iterdir()):
            os.replace(f, out / f.name)
            if written is not None:
                written.append(out / f.name)
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_json(marker, done)
    finally:
        _WATCH = None
        shutil.rmtree(stage, ignore_errors=True)
        try:
            (out / STAGING).rmdir()
        except OSError:
            pass
    if fresh is not None:
        fresh.append(done)
    if progress:
        print(f"[{exp['name']}] done in {wall:.1f}s: {describe(split)}", flush=True)
    return done


def reproduce(config: str | None = None, full: bool = False, out: str = "results",
              resume: bool = False, seeds: int | None = None, progress: bool = True,
              written: list | None = None, ahead: bool = True,
              compiles: dict | None = None, timing: dict | None = None) -> list:
    """Run one experiment file (``config``) or every file of the small/full set. Every file is
    read and checked, and ``out`` checked writable, before anything runs. The paths written are
    appended to ``written``.

    With ``ahead`` (the default) every program the experiments will call is compiled first, on
    all cores at once (``compile_ahead``); the runs then compile nothing. ``compiles`` receives
    the ``CompileStats`` of both phases ("ahead", "run"); ``timing`` where the wall time went:
    "wall", "ahead" (compiling or loading the programs, generating their scenarios) and the
    experiments' sections summed ("train", "simulate", "generate", "other"; experiments skipped
    by ``resume`` count nothing), and the programs "compiled" and "loaded" from the cache."""
    if config is not None:
        files = [Path(config)]
    else:
        folder = experiments_dir() / ("full" if full else "small")
        files = sorted(folder.glob("*.json"))
        if not files:
            raise ValueError(f"no experiment files in {folder}")
    exps = [load_experiment(f, seeds) for f in files]  # check all before running any
    names = [e["name"] for e in exps]
    if len(set(names)) != len(names):
        raise ValueError(f"two experiment files share a name: {names}")
    validate.output_dir(out, "--out")
    out_dir = Path(out)
    for e in exps:
        if e["kind"] == "load":
            e["_best_train"] = read_best_train(e, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [] if written is None else written
    _TRAINED.clear()
    t0 = time.perf_counter()
    with CompileCounter() as cc:
        with CompileCounter() as cc_ahead:
            if ahead:
                todo = [e for e in exps if not (resume and finished(e, out_dir))]
                _compile_all(todo, progress)
        ahead_s = time.perf_counter() - t0
        with CompileCounter() as cc_run:
            fresh = []
            done = [run_experiment(e, out_dir, resume, progress, written, fresh) for e in exps]
    wall = time.perf_counter() - t0
    split = {"wall": wall, "ahead": ahead_s}
    for key in ("train", "simulate", "generate", "other"):
        split[key] = sum(d["time_split_s"][key] for d in fresh)
    split["other"] += max(0.0, wall - ahead_s - sum(d["wall_s"] for d in fresh))
    split.update(compiled=cc.stats.compiled, loaded=cc.stats.cache_hits)
    _TRAINED.clear()
    if compiles is not None:
        compiles.update(ahead=cc_ahead.stats, run=cc_run.stats)
    if timing is not None:
        timing.update(split)
    from sagin_jax.experiments.report import write_report
    # a call that ran nothing (every experiment complete, --resume) rewrites the report without a
    # line on its own time, which would read as a 0 s reproduction
    report = write_report(out_dir, jax.devices()[0].platform, wall, split if fresh else None)
    written.append(report)
    if progress:
        print(f"reproduce: {wall:.1f} s wall: programs ready ahead {ahead_s:.1f} s, "
              f"{describe(split)}", flush=True)
        print(f"reproduce: {cc.stats} (ahead: {cc_ahead.stats.compiled} "
              f"compiled + {cc_ahead.stats.cache_hits} loaded; during the runs: "
              f"{cc_run.stats.compiled} + {cc_run.stats.cache_hits})", flush=True)
    return done
