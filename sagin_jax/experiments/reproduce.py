"""``sagin-jax reproduce``: the experiments of the paper's section V, written under ``results/``.

Each experiment is one JSON file under ``experiments/`` (``experiments/small`` for the default
quick run, ``experiments/full`` for ``--full``). Every experiment writes its CSV + PNG atomically
and a completion marker, so ``--resume`` skips finished ones and gives the same numbers.

Every per-seed number comes from the streaming seed runner: chunk by chunk of seeds it
generates each seed's scenario on the device (one generation program per config, shared by
every algorithm), trains (``training.stream.train_seeds``) or runs a heuristic
(``simulation.stream.stream_seeds``), tests, and returns only the seed's ``SeedSummary`` (final
metrics and the running metrics on a time grid fixed by the config, ``default_time_grid``). No
scenario reaches the host, so memory does not grow with the seed count beyond those summaries;
an experiment file's ``chunk`` sets the seeds per program call.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax import validate
from sagin_jax.compilation import CompileCounter
from sagin_jax.experiments import plots
from sagin_jax.experiments.stats import interval_bounds, mean_ci, relative_gain
from sagin_jax.experiments.stopwatch import Stopwatch, describe
from sagin_jax.policies.baselines import BASELINES
from sagin_jax.files import read_json, write_csv, write_json
from sagin_jax.simulation.stream import (default_time_grid, stream_jobs, stream_seeds,
                                         stream_table_size)
from sagin_jax.training.config import Hyper, TrainConfig
from sagin_jax.training.reinforce import objective
from sagin_jax.training.stream import test_policy, train_chunk, train_jobs, train_seeds

KINDS = ("fig4", "compare", "storage", "load")
METRICS = ("AR", "ACR", "RC", "RC_link")
_ATTR = {"AR": "ar", "ACR": "acr", "RC": "rc", "RC_link": "rc_link"}
TIME_POINTS = 40
"""Points of the time grid when the experiment file gives no ``time_points``."""


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


def time_grid_of(exp: dict, cfg: ScenarioConfig) -> np.ndarray:
    """The experiment's time grid: ``exp["time_points"]`` (default ``TIME_POINTS``) times from 0
    to the expected arrival of the last test request (``default_time_grid``: fixed by the
    config, so every chunk of seeds samples the same times)."""
    return default_time_grid(cfg, exp.get("time_points", TIME_POINTS))


def _time_curves(group: str, per_group: dict, names, grid: np.ndarray):
    """Mean and 95% interval over seeds of each group's metrics on the time ``grid``
    (``per_group[label]["curve"][name]``: [S, G]); -> (CSV rows, {(group, metric): (mean,
    half-width)})."""
    rows, curves = [], {}
    for label, m in per_group.items():
        for name in names:
            values = m["curve"][name]
            mean, half = mean_ci(values, axis=0)
            curves[(label, name)] = (mean, half)
            low, high = interval_bounds(name, mean, half)  # clipped to the metric's range
            rows += [{group: label, "time": grid[i], "metric": name, "mean": mean[i],
                      "ci_low": low[i], "ci_high": high[i],
                      "n_seeds": values.shape[0]} for i in range(grid.shape[0])]
    return rows, curves


def _stat(x) -> dict:
    m, h = mean_ci(np.asarray(x, dtype=np.float64))
    return {"mean": float(m), "ci": float(h), "n": int(np.asarray(x).shape[0]),
            "values": [float(v) for v in np.asarray(x)]}


def _summary_metrics(summary) -> dict:
    """{"final": {metric: [S]}, "curve": {metric: [S, G]}} of a ``SeedSummary`` [S]."""
    return {"final": {n: np.asarray(getattr(summary.final, a)) for n, a in _ATTR.items()},
            "curve": {n: np.asarray(getattr(summary.curves, a)) for n, a in _ATTR.items()}}


def _with_objective(m: dict, ar_scale: float) -> dict:
    """``m`` with the objective O (eq. 14, at ``ar_scale``) added to its finals and curves."""
    for part in ("final", "curve"):
        x = m[part]
        x["O"] = np.asarray(objective(SimpleNamespace(ar=x["AR"], rc=x["RC"], acr=x["ACR"]),
                                      ar_scale))
    return m


def _settle(call, n_seeds: int, desc: str, progress: bool):
    """``call(on_chunk)`` of a streaming runner, its chunks joined along the seed axis; with
    ``progress`` a bar counts the seeds done."""
    parts, bar = [], None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_seeds, desc=desc, unit="seed", leave=False)

    def keep(c: int, part) -> None:
        parts.append(part)
        if bar is not None:
            bar.update(jax.tree_util.tree_leaves(part)[0].shape[0])
    try:
        call(on_chunk=keep)
    finally:
        if bar is not None:
            bar.close()
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *parts)


def _runner_options(exp: dict) -> dict:
    """The streaming runner's batching, from the experiment file: ``chunk`` (seeds per
    compiled call; default by backend) and ``seed_loop`` (default by backend)."""
    return {"chunk": exp.get("chunk"), "seed_loop": exp.get("seed_loop")}


def _stream_options(exp: dict) -> dict:
    """``stream_seeds``' options for the heuristics and the tests of trained runs: the runner's
    batching, and the training requests drawn too, so that every algorithm on a config shares
    one generation program with the training runs (one program per config instead of two)."""
    return {**_runner_options(exp), "with_train": True}


_WATCH: Stopwatch | None = None
"""The running experiment's stopwatch (set by ``run_experiment``; None outside one, e.g. in the
ahead phase, whose time ``reproduce`` reports on its own)."""


def _section(name: str):
    """Time a block as ``name`` on the running experiment's stopwatch, if any."""
    return _WATCH.section(name) if _WATCH is not None else contextlib.nullcontext()


def run_heuristic(exp: dict, cfg: ScenarioConfig, algo: str, seeds: list, grid,
                  max_active: int | None = None, progress: bool = False):
    """``SeedSummary`` [S] of heuristic ``algo`` on every seed's test requests."""
    with _section("simulate"):
        return _settle(lambda on_chunk: stream_seeds(
            cfg, BASELINES[algo], None, seeds, grid, max_active=max_active, on_chunk=on_chunk,
            **_stream_options(exp)), len(seeds), f"test {algo}", progress)


# --- training runs shared between experiments ------------------------------------------------

@dataclass
class TrainedRun:
    """One setting trained on every seed: params [S, ...], every epoch's curves [S, E, B], and
    the greedy test pass's ``SeedSummary`` [S] on each time grid it was sampled on."""
    params: Any
    curves: Any
    tests: dict  # {grid key: SeedSummary}


_TRAINED: dict = {}
"""Training runs of one ``reproduce`` call: (scenario config, static training config, the
setting's traced hyperparameters, seeds, seed loop) -> ``TrainedRun``. The scenarios follow from
the config and seeds, and the table size and chunking change no number. Filled by every
``train_shared`` call, emptied by ``reproduce``."""


def _run_key(exp: dict, cfg: ScenarioConfig, tcfg: TrainConfig, seeds: list, hyper: Hyper):
    setting = tuple(float(np.asarray(getattr(hyper, k))) for k in Hyper.names())
    return (cfg, tcfg.static(), setting, tuple(seeds), exp.get("seed_loop"))


def _grid_key(grid) -> bytes | None:
    return None if grid is None else np.asarray(grid, np.float32).tobytes()


def _training_step(known: dict, keys: list, grid_key: bytes | None):
    """What ``train_shared`` does for runs ``keys`` given the runs ``known`` ({key: grid keys
    tested on}): -> ("reuse", grid key) when every run is known and tested on ``grid_key``
    (None: on any grid they share), ("test", grid key) to test the known runs again, or
    ("train", grid key) to train them all; a returned grid key None stands for the config's
    default grid."""
    if not all(k in known for k in keys):
        return "train", grid_key
    if grid_key is None:
        common = set.intersection(*(set(known[k]) for k in keys))
        return ("reuse", min(common)) if common else ("test", None)
    return ("reuse" if all(grid_key in known[k] for k in keys) else "test"), grid_key


def _step_of(keys: list, known: dict, grid, cfg: ScenarioConfig, test: bool):
    """(what to do, grid, grid key) for runs ``keys`` (``_training_step``); without ``test``
    a run needs training only (no grid key; the grid is the config's default, unused)."""
    if not test:
        step = "reuse" if all(k in known for k in keys) else "train"
        return step, time_grid_of({}, cfg), None
    step, gk = _training_step(known, keys, _grid_key(grid))
    if gk is None:  # any grid will do: the config's default one
        grid = time_grid_of({}, cfg)
        gk = _grid_key(grid)
    return step, grid, gk


def train_shared(exp: dict, cfg: ScenarioConfig, tcfg: TrainConfig, seeds: list,
                 hypers: list, grid, progress: bool,
                 max_active: int | None = None, test: bool = True) -> SimpleNamespace:
    """Train ``tcfg``'s agent with every setting of ``hypers`` (scalar ``Hyper``s) on every seed
    and, with ``test``, test it greedily (``train_seeds``), or reuse the runs this process
    already trained: -> ``params`` [S, H, ...], ``curves`` [S, H, E, B], ``summary``
    (``SeedSummary`` [S, H] on ``grid``; grid None: any grid, for an experiment that reads only
    the finals; None without ``test``), ``run_s`` (0 when reused) and ``reused``.

    The full set trains DDRL-NRA at rate 0.005 on the paper's scenario three times (Fig. 4's
    second rate, Figs. 5-7, Fig. 8's U[1,50]): the same scenario, training config, seeds, keys
    and setting, so the same bits (a run's key depends on its seed alone, and every setting of
    a seed trains on its own). A reused run not yet tested on the grid asked for is tested from
    its parameters (``stream_seeds``; the same test program). A test checks a reused run
    against a fresh one."""
    keys = [_run_key(exp, cfg, tcfg, seeds, h) for h in hypers]
    step, grid, gk = _step_of(keys, {k: _TRAINED[k].tests for k in keys if k in _TRAINED},
                              grid, cfg, test)
    run_s = 0.0
    if step == "train":
        t0 = time.perf_counter()
        with _section("train"):
            params, curves, summary = _settle(lambda on_chunk: train_seeds(
                cfg, tcfg, seeds, grid,
                hypers=Hyper.stack(hypers), max_active=max_active, on_chunk=on_chunk,
                test=test, **_runner_options(exp)), len(seeds),
                f"train {tcfg.algo} x {len(hypers)}", progress)
        run_s = time.perf_counter() - t0
        for j, k in enumerate(keys):
            _TRAINED[k] = TrainedRun(params=_at(params, j), curves=_at(curves, j),
                                     tests={gk: _at(summary, j)} if test else {})
    elif step == "test":
        for k in keys:
            run = _TRAINED[k]
            if gk not in run.tests:
                with _section("simulate"):
                    run.tests[gk] = _settle(lambda on_chunk: stream_seeds(
                        cfg, test_policy(tcfg), run.params, seeds, grid, per_seed_params=True,
                        max_active=max_active, on_chunk=on_chunk, **_stream_options(exp)),
                        len(seeds), f"test {tcfg.algo}", progress)
    runs = [_TRAINED[k] for k in keys]
    stack = lambda *xs: np.stack(xs, axis=1)  # noqa: E731  (the H axis)
    return SimpleNamespace(
        params=jax.tree_util.tree_map(stack, *[r.params for r in runs]),
        curves=jax.tree_util.tree_map(stack, *[r.curves for r in runs]),
        summary=(jax.tree_util.tree_map(stack, *[r.tests[gk] for r in runs]) if test
                 else None),
        run_s=run_s, reused=step != "train")


def _at(tree, j: int):
    """Setting ``j`` of leaves [S, H, ...]."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[:, j], tree)


def _settings(tcfg: TrainConfig, lrs) -> list:
    return [Hyper.from_config(tcfg, lr=lr, xp=np) for lr in lrs]


# --- Fig. 4 --------------------------------------------------------------------------------

def _fig4_setup(exp: dict):
    """(scenario config, TrainConfig, seeds, learning rates) of a Fig. 4 experiment."""
    tcfg = TrainConfig.from_dict({**exp.get("train", {}), "algo": "ddrl-nra"})
    return (exp["_scenario"], tcfg, list(range(exp["seeds"])),
            exp.get("lrs", [0.0005, 0.005, 0.01, 0.05]))


def run_fig4(exp: dict, out: Path, progress: bool) -> dict:
    cfg, tcfg, seeds, lrs = _fig4_setup(exp)
    res = train_shared(exp, cfg, tcfg, seeds, _settings(tcfg, lrs), None, progress,
                       test=False)  # Fig. 4 plots the training curves only
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
    return {"lrs": lrs, "final_epoch": final, "run_s": res.run_s}


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
    grid = time_grid_of(exp, cfg)
    per_algo, timing = {}, {}
    for algo in algos:
        t0 = time.perf_counter()
        if algo in TRAINED:
            tcfg, lr = _trained_setup(exp, algo)
            res = train_shared(exp, cfg, tcfg, seeds, _settings(tcfg, [lr]), grid, progress)
            per_algo[algo] = _summary_metrics(_at(res.summary, 0))
            timing[algo] = {"train_run_s": res.run_s, "reused": res.reused}
        else:
            per_algo[algo] = _summary_metrics(run_heuristic(exp, cfg, algo, seeds, grid,
                                                            progress=progress))
        timing.setdefault(algo, {})["wall_s"] = time.perf_counter() - t0
    rows, curves = _time_curves("algo", per_algo, METRICS, grid)
    write_csv(out / f"{exp['name']}.csv",
              ["algo", "time", "metric", "mean", "ci_low", "ci_high", "n_seeds"], rows)
    plots.comparison(out, exp["name"], algos, grid, curves)
    final = {algo: {name: _stat(m["final"][name]) for name in METRICS}
             for algo, m in per_algo.items()}
    gains = {}
    if "ddrl-nra" in per_algo:
        d = per_algo["ddrl-nra"]["final"]
        for algo, m in per_algo.items():
            if algo != "ddrl-nra":
                gains[algo] = {name: _stat(relative_gain(d[name], m["final"][name]))
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
    # the ranges change only the storage demand: one arrival rate and n_test, so one grid
    grid = time_grid_of(exp, exp["_scenario"])
    per_range = {}
    for rng, cfg in _storage_cfgs(exp).items():
        res = train_shared(exp, cfg, tcfg, seeds, _settings(tcfg, [lr]), grid, progress)
        m = _with_objective(_summary_metrics(_at(res.summary, 0)), tcfg.ar_scale)
        per_range[f"U[{rng[0]},{rng[1]}]"] = m
    names = ("AR", "ACR", "RC", "O")
    rows, curves = _time_curves("storage", per_range, names, grid)
    write_csv(out / f"{exp['name']}.csv",
              ["storage", "time", "metric", "mean", "ci_low", "ci_high", "n_seeds"], rows)
    plots.storage(out / f"{exp['name']}.png", list(per_range), grid, curves)
    final = {label: {name: _stat(m["final"][name]) for name in names}
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
    points = load_points(exp["_scenario"], exp["loads"], exp.get("lifetime_loads", []),
                         exp.get("req_nodes_ranges", []))
    tcfg, lr = _trained_setup(exp, "ddrl-nra")
    settings = {"ddrl-nra": Hyper.from_config(tcfg, lr=lr, xp=np)}
    if exp.get("_best_train") is not None and "ddrl-nra" in _compare_algos(exp):
        best = dataclasses.replace(tcfg, **exp["_best_train"])
        settings[BEST] = Hyper.from_config(best, xp=np)
    return points, list(range(exp["seeds"])), _compare_algos(exp), settings


def _load_table(points: list) -> int:
    """One active-request table for every point (the largest ``stream_table_size`` of the
    points), so that every point runs the same compiled programs; a chunk that needs more
    rows is rerun with a larger table (which changes no number). A larger table costs little,
    as departures are released row by row: training DDRL-NRA at ρ = 40 on 32 seeds took 6.9 s
    with 128 rows and 6.8 s with 80."""
    return max(stream_table_size(p.cfg) for p in points)


def _load_algo_settings(exp: dict, algo: str, settings: dict) -> dict:
    """{variant: Hyper} trained for ``algo`` (DDRL-NRA: every setting, in one program)."""
    if algo == "ddrl-nra":
        return settings
    tcfg, lr = _trained_setup(exp, algo)
    return {algo: Hyper.from_config(tcfg, lr=lr, xp=np)}


def _load_finals(final, ar_scale: float) -> dict:
    """Per-seed values at the last test request (``final``: Metrics [S]): AR, ACR, R/C and O
    (eq. 14, at ``ar_scale``)."""
    fin = {name: np.asarray(getattr(final, _ATTR[name])) for name in ("AR", "ACR", "RC")}
    fin["O"] = np.asarray(objective(SimpleNamespace(ar=fin["AR"], rc=fin["RC"], acr=fin["ACR"]),
                                    ar_scale), np.float64)
    return fin


def _run_load_point(exp: dict, cfg: ScenarioConfig, seeds: list, algos: list, settings: dict,
                    table: int, progress: bool) -> dict:
    """{variant: per-seed finals} of every algorithm at one point, on the same test seeds."""
    ar_scale = _trained_setup(exp, "ddrl-nra")[0].ar_scale
    finals = {}
    for algo in algos:
        if algo in TRAINED:
            tcfg, _ = _trained_setup(exp, algo)
            variants = _load_algo_settings(exp, algo, settings)
            res = train_shared(exp, cfg, tcfg, seeds, list(variants.values()), None, progress,
                               max_active=table)
            for j, variant in enumerate(variants):
                finals[variant] = _load_finals(_at(res.summary.final, j), ar_scale)
        else:
            summary = run_heuristic(exp, cfg, algo, seeds, time_grid_of({}, cfg), table,
                                    progress)
            finals[algo] = _load_finals(summary.final, ar_scale)
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
    table = _load_table(points)
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
    known: dict = {}  # the training runs the experiments before each one will have made
    with CompileCounter() as cc:
        n = compile_ahead(j for e in exps for j in experiment_jobs(e, known))
    if progress:
        print(f"[compile] ready in {time.perf_counter() - t0:.1f} s: {cc.stats} ({n} of them "
              f"side by side)", flush=True)


def _shared_jobs(exp: dict, cfg: ScenarioConfig, tcfg: TrainConfig, seeds: list,
                 hypers: list, grid, known: dict, max_active: int | None = None,
                 test: bool = True) -> list:
    """The programs ``train_shared`` with these arguments will call, given the runs ``known``
    ({run key: grid keys}; updated as the call will update ``_TRAINED``)."""
    keys = [_run_key(exp, cfg, tcfg, seeds, h) for h in hypers]
    step, grid, gk = _step_of(keys, known, grid, cfg, test)
    if step == "reuse":
        return []
    train = train_jobs(cfg, tcfg, seeds, grid,
                       hypers=Hyper.stack(hypers), max_active=max_active, test=test,
                       **_runner_options(exp))
    if step == "train":
        for k in keys:
            known[k] = {gk} if test else set()
        return train
    # a test pass of trained parameters: their shapes from the training program's outputs
    job = next(j for j in train if j.fn is train_chunk)
    shapes = jax.eval_shape(lambda *a: train_chunk(*a, **job.static), *job.args)[0]
    params = jax.tree_util.tree_map(lambda x: np.zeros((len(seeds),) + x.shape[1:], x.dtype),
                                    shapes)
    jobs = []
    for k in keys:
        if gk not in known[k]:
            jobs += stream_jobs(cfg, test_policy(tcfg), params, seeds, grid,
                                per_seed_params=True, max_active=max_active,
                                **_stream_options(exp))
            known[k].add(gk)
    return jobs


def experiment_jobs(exp: dict, known: dict | None = None) -> list:
    """The compile jobs (``sagin_jax.compilation.Job``) of every program ``run_experiment`` will
    call for ``exp``, built from the same setup functions as the runners and placed the same
    way. ``known`` ({run key: grid keys}) stands for the training runs the experiments before
    it leave in ``_TRAINED`` (a reused run needs no program) and is updated with this one's.
    A test checks that a run after ``compile_ahead`` of these compiles nothing more."""
    known = {} if known is None else known
    seeds = list(range(exp["seeds"]))
    if exp["kind"] == "fig4":
        cfg, tcfg, _, lrs = _fig4_setup(exp)
        return _shared_jobs(exp, cfg, tcfg, seeds, _settings(tcfg, lrs), None, known,
                            test=False)
    if exp["kind"] == "storage":
        tcfg, lr = _trained_setup(exp, "ddrl-nra")
        grid = time_grid_of(exp, exp["_scenario"])
        return [j for cfg in _storage_cfgs(exp).values()
                for j in _shared_jobs(exp, cfg, tcfg, seeds, _settings(tcfg, [lr]), grid,
                                      known)]
    if exp["kind"] == "load":
        return _load_jobs(exp, known)
    cfg = exp["_scenario"]
    grid = time_grid_of(exp, cfg)
    jobs = []
    for algo in _compare_algos(exp):
        if algo in TRAINED:
            tcfg, lr = _trained_setup(exp, algo)
            jobs += _shared_jobs(exp, cfg, tcfg, seeds, _settings(tcfg, [lr]), grid, known)
        else:
            jobs += stream_jobs(cfg, BASELINES[algo], None, seeds, grid,
                                **_stream_options(exp))
    return jobs


def _load_jobs(exp: dict, known: dict) -> list:
    """The programs of ``run_load``: every point's, all with the experiment's one table (the
    points share them: ``compile_ahead`` compiles each distinct program once)."""
    points, seeds, algos, settings = _load_setup(exp)
    table = _load_table(points)
    jobs = []
    for point in points:
        for algo in algos:
            if algo in TRAINED:
                tcfg, _ = _trained_setup(exp, algo)
                hypers = list(_load_algo_settings(exp, algo, settings).values())
                jobs += _shared_jobs(exp, point.cfg, tcfg, seeds, hypers, None, known, table)
            else:
                jobs += stream_jobs(point.cfg, BASELINES[algo], None, seeds,
                                    time_grid_of({}, point.cfg), max_active=table,
                                    **_stream_options(exp))
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
    "wall", "ahead" (compiling or loading the programs) and the experiments' sections summed
    ("train", "simulate", "generate", "other"; experiments skipped by ``resume`` count nothing;
    scenarios are generated on the device as each run's first program and counted in its
    section, so "generate" stays 0), and the programs "compiled" and "loaded" from the cache."""
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
