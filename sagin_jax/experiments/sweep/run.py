"""``sagin-jax sweep``, whole: every algorithm's study, then (by the process that finishes the
sweep) the test-seed comparison and the outputs."""
from __future__ import annotations

import json
import time
from pathlib import Path

from sagin_jax.experiments.sweep.compare import best_train_config, test_comparison
from sagin_jax.experiments.sweep.report import (n_running, search_span_s, state_counts,
                                                write_outputs)
from sagin_jax.experiments.sweep.spec import load_sweep, parse_budget
from sagin_jax.experiments.sweep.storage import (JOURNAL, check_storage_url, check_worker_name,
                                                 open_storage, outputs_lock, shown_url,
                                                 writer_lock)
from sagin_jax.experiments.sweep.study import open_study, run_study


def outputs_written(out: Path, summary: dict, since: float | None = None) -> bool:
    """Whether ``out/summary.json`` already describes these trials (same counts by state),
    written at or after the time ``since`` (``time.time()``) when given."""
    path = out / "summary.json"
    try:
        old = json.loads(path.read_text())
        if since is not None and path.stat().st_mtime < since:
            return False
    except (OSError, ValueError):
        return False
    return old.get("states") == summary["states"] and old.get("name") == summary["name"]


def run_sweep(config: str, out: str | None = None, budget: str | None = None,
              resume: bool = False, progress: bool = True, compare: bool = True,
              storage: str | None = None, worker: str | None = None) -> dict:
    """The whole ``sagin-jax sweep``: one study per algorithm, then the test-seed comparison.

    Without ``worker`` this creates every algorithm's study first (``resume`` continues them),
    so workers can join any of them. Each process then runs its own population through the
    studies in turn. The process that ends with no trial running on any worker writes the
    outputs (under ``OUT/.outputs.lock``); a worker skips that when ``summary.json`` already
    describes the finished studies, and the sweep without ``worker`` when another process wrote
    them while it ran, so a finished study's outputs are written once; ``--resume`` on a
    finished sweep trains nothing and regenerates the comparison and the report.

    -> the summary, with ``"written": False`` (and no comparison) when trials were still running
    on other workers or the outputs were already written."""
    sw = load_sweep(config)
    bud = parse_budget(budget) if budget is not None else sw["budget"]
    check_storage_url(storage)
    check_worker_name(worker)
    out_dir = Path(out) if out else Path("results/sweeps") / sw["name"]
    if worker is not None and storage is None and not (out_dir / JOURNAL).is_file():
        raise ValueError(f"{out_dir / JOURNAL}: no such file: start the sweep without --worker "
                         "first; a worker only joins a study")
    # a database is reached before anything is written; the journal file lives in out_dir
    st = None if storage is None else open_storage(storage, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0, started = time.perf_counter(), time.time()
    spaces = {a: sw["rlvne_space"] if a == "rlvne" else sw["space"] for a in sw["algos"]}
    with writer_lock(out_dir, worker):
        st = open_storage(None, out_dir) if st is None else st
        for algo in sw["algos"]:  # created (or checked) up front: a worker may join any of them
            open_study(sw, algo, st, out_dir, worker, resume)
        studies = {algo: run_study(sw, algo, out_dir, bud, True, progress, storage=st,
                                   worker=worker)
                   for algo in sw["algos"]}
        # one snapshot of each study's trials for the counts, the states and the running
        # check: read apart, a trial of another worker could be counted running in the states
        # and finished in the check, and the outputs would then be written twice
        snap = {a: s.get_trials(deepcopy=False) for a, s in studies.items()}
        summary = {"name": sw["name"], "train_seeds": sw["train_seeds"],
                   "test_seeds": sw["test_seeds"], "slots": sw["batch"],
                   "storage": JOURNAL if storage is None else shown_url(storage), "best": {},
                   "n_trials": {a: len(t) for a, t in snap.items()},
                   "states": {a: state_counts(t) for a, t in snap.items()},
                   "search_wall_s": {a: search_span_s(s) for a, s in studies.items()},
                   "running": {a: n_running(t) for a, t in snap.items()}}
        if any(summary["running"].values()):
            return {**summary, "written": False}
        del summary["running"]
        with outputs_lock(out_dir):
            if outputs_written(out_dir, summary, None if worker is not None else started):
                return {**summary, "written": False}
            tcfgs = {}
            for algo, study in studies.items():
                bt = study.best_trial
                summary["best"][algo] = {"number": bt.number, "value": bt.value,
                                         "params": dict(bt.params)}
                tcfgs[algo] = best_train_config(sw, algo, bt.params)
            main = "ddrl-nra" if "ddrl-nra" in tcfgs else sw["algos"][0]
            best_doc = {"scenario": sw["scenario"].to_dict(), "train": tcfgs[main].to_dict(),
                        "best_by_algo": {a: t.to_dict() for a, t in tcfgs.items()}}
            if compare:
                tc = time.perf_counter()
                summary["comparison"] = test_comparison(sw, tcfgs, progress)
                summary["compare_wall_s"] = time.perf_counter() - tc
            summary["wall_s"] = time.perf_counter() - t0
            write_outputs(out_dir, studies, spaces, best_doc, summary)
    return {**summary, "written": True}
