"""`sagin-jax reproduce` and `sagin-jax bench` end to end on small settings: every file appears,
the report is generated, a small reproduction stays within a stated number of compiled programs,
--resume skips finished experiments and keeps identical numbers, and bad experiment files are
refused."""
from __future__ import annotations

import csv
import json
import math
import shutil

import pytest

from sagin_jax.cli import main
from sagin_jax.compilation import CompileCounter
from sagin_jax.config import ScenarioConfig
from sagin_jax.experiments import reproduce as reproduce_module
from sagin_jax.experiments.reproduce import experiments_dir, load_experiment, reproduce

# Measured: 8 programs for experiments/small/fig5_7.json on 2 seeds: one generation program
# shared by every algorithm, a training program for DDRL-NRA and for RLVNE, and a test program
# per algorithm; 11 while the runner placed its arguments with jnp.asarray (a small staging
# program per shape).
MAX_PROGRAMS_SMALL_FIG5_7 = 8

SMALL = {"n_space": 4, "n_air": 6, "n_ground": 10, "n_train": 40, "n_test": 40}


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _expected_gain_verdict(mean: float, ci: float, claim: float) -> str:
    """The verdict rule, from its statement: an interval wider than the paper's effect is
    inconclusive (at most the direction, when it excludes 0); otherwise the paper's value inside
    our 95% interval agrees, an interval above 0 is the same direction, below 0 the opposite;
    else no difference."""
    if math.isnan(ci):
        return "too few seeds"
    if 2 * ci > abs(claim):
        if mean - ci > 0:
            return "same direction; size inconclusive"
        if mean + ci < 0:
            return "opposite"
        return "inconclusive"
    if mean - ci <= claim <= mean + ci:
        return "agrees"
    if mean - ci > 0:
        return "same direction, " + ("smaller" if mean + ci < claim else "larger")
    if mean + ci < 0:
        return "opposite"
    return "no significant difference"


def _check_gain_rows(report: str, marker: dict):
    """One headline row per (metric, other algorithm): the paper's value, our paired gain as
    recorded in the completion marker, the seed count and the verdict the rule gives."""
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("DDRL-NRA "):
            rows[cells[0]] = cells[1:]
    gains = marker["summary"]["ddrl_gain_vs"]
    assert set(gains) == {"rlvne", "nrmvne", "grc", "random"}
    assert len(rows) == 2 * len(gains)
    for metric, claim, label in (("AR", 0.1815, "revenue (AR)"), ("ACR", 0.0835,
                                                                  "acceptance (ACR)")):
        for other, g in gains.items():
            paper, measured, seeds, verdict = rows[f"DDRL-NRA {label} vs {other}"]
            assert paper == f"+{claim * 100:.2f}%"
            assert measured.startswith(f"{g[metric]['mean'] * 100:+.1f}%"), (measured, g)
            assert seeds == str(marker["seeds"]) == "2"
            assert verdict.startswith(_expected_gain_verdict(g[metric]["mean"], g[metric]["ci"],
                                                             claim)), (label, other, verdict)


@pytest.mark.parametrize("mean,ci,expected", [
    (0.15, 0.05, "agrees"),  # 0.1815 inside [0.10, 0.20]
    (0.05, 0.02, "same direction, smaller"),
    (0.40, 0.05, "same direction, larger"),
    (-0.20, 0.05, "opposite"),
    (0.01, 0.05, "no significant difference"),
    (0.146, 0.312, "inconclusive"),  # +14.6% +- 31.2% on 4 seeds: would agree with anything
    (0.30, 0.20, "same direction; size inconclusive"),
    (-0.30, 0.20, "opposite"),
    (0.30, float("nan"), "too few seeds"),
])
def test_gain_verdict_follows_the_interval(mean, ci, expected):
    from sagin_jax.experiments.report import gain_verdict
    assert _expected_gain_verdict(mean, ci, 0.1815) == expected  # the test's own rule
    assert gain_verdict({"mean": mean, "ci": ci}, 0.1815).startswith(expected)


def test_small_reproduction_writes_every_figure_compiles_few_programs_and_resumes(tmp_path,
                                                                                 capsys):
    """`sagin-jax reproduce` of the default small experiments (experiments/small/*.json, on 2
    seeds instead of 4 to keep it short; the paper scenario and schedule): every file appears and
    the report's headline rows follow the completion marker. Its fig5_7 compiles at most
    MAX_PROGRAMS_SMALL_FIG5_7 programs, all of them in the ahead phase (``experiment_jobs`` lists
    exactly what the runners call: the runs themselves compile, and load, nothing); fig4 and
    fig8 reuse most of them. --resume skips finished experiments and keeps identical numbers,
    and reruns one whose settings changed."""
    exps = tmp_path / "exps"
    exps.mkdir()
    files = {}
    for name in ("fig5_7", "fig4", "fig8"):
        files[name] = exps / f"{name}.json"
        shutil.copy(experiments_dir() / "small" / f"{name}.json", files[name])
    out = tmp_path / "results"
    phases, timing = {}, {}
    with CompileCounter() as cc:
        reproduce(config=str(files["fig5_7"]), out=str(out), seeds=2, progress=False,
                  compiles=phases, timing=timing)
    assert cc.stats.compiled + cc.stats.cache_hits <= MAX_PROGRAMS_SMALL_FIG5_7, cc.stats
    # where the time went: the parts are disjoint and cover the wall time; fig5_7 trains and
    # tests two agents and tests three heuristics; the scenarios are generated on the device,
    # inside the runs' sections
    parts = ("ahead", "train", "simulate", "generate", "other")
    assert all(timing[k] >= 0 for k in parts), timing
    assert sum(timing[k] for k in parts) == pytest.approx(timing["wall"], abs=0.05), timing
    assert timing["train"] > 0 and timing["simulate"] > 0 and timing["generate"] == 0, timing
    split = json.loads((out / ".done" / "fig5_7.json").read_text())["time_split_s"]
    assert all(split[k] == timing[k] for k in ("train", "simulate", "generate")), (split, timing)
    assert split["other"] <= timing["other"] + 1e-9, (split, timing)
    assert (timing["compiled"], timing["loaded"]) == (cc.stats.compiled, cc.stats.cache_hits)
    assert f"{timing['wall']:.1f} s:" in (out / "README.md").read_text()
    assert phases["run"].compiled + phases["run"].cache_hits == 0, phases
    assert phases["ahead"].compiled + phases["ahead"].cache_hits >= 5, phases  # 5 algorithms
    for name in ("fig4", "fig8"):
        assert main(["reproduce", "--config", str(files[name]), "--out", str(out), "--seeds",
                     "2", "--quiet"]) == 0
    for name in ("fig4.csv", "fig4.png", "fig5_7.csv", "fig5.png", "fig6.png", "fig7.png",
                 "fig8.csv", "fig8.png", "README.md"):
        assert (out / name).is_file(), name
    fig4 = _rows(out / "fig4.csv")
    assert set(fig4[0]) == {"lr", "update", "epoch", "metric", "mean", "ci_low", "ci_high",
                            "n_seeds"}
    assert {r["lr"] for r in fig4} == {"0.0005", "0.005", "0.01", "0.05"}
    assert {r["n_seeds"] for r in fig4} == {"2"}
    cmp_rows = _rows(out / "fig5_7.csv")
    assert {r["algo"] for r in cmp_rows} == {"ddrl-nra", "rlvne", "nrmvne", "grc", "random"}
    for r in cmp_rows:
        assert float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"])
    report = (out / "README.md").read_text()
    _check_gain_rows(report, json.loads((out / ".done" / "fig5_7.json").read_text()))
    assert "best storage demand" in report and "best learning rates" in report

    before = {name: (out / name).read_text() for name in ("fig4.csv", "fig5_7.csv", "fig8.csv")}
    stamp = (out / "fig4.csv").stat().st_mtime_ns
    # an interrupted run: fig8 never finished
    (out / "fig8.csv").unlink()
    (out / ".done" / "fig8.json").unlink()
    capsys.readouterr()
    for f in files.values():
        assert main(["reproduce", "--config", str(f), "--out", str(out), "--seeds", "2",
                     "--resume"]) == 0
    said = capsys.readouterr().out
    assert "[fig4] complete, skipped (--resume)" in said
    assert "[fig5_7] complete, skipped (--resume)" in said
    assert "[fig8] storage" in said  # rerun
    assert (out / "fig4.csv").stat().st_mtime_ns == stamp
    for name, text in before.items():
        assert (out / name).read_text() == text, name
    # the fig8 call ran and says where its time went; a call that ran nothing says nothing of it
    assert "The `reproduce` call that wrote this file took" in (out / "README.md").read_text()
    assert main(["reproduce", "--config", str(files["fig4"]), "--out", str(out), "--seeds", "2",
                 "--resume"]) == 0
    assert "The `reproduce` call that wrote this file took" not in (out / "README.md").read_text()
    capsys.readouterr()

    # an experiment whose config changed is rerun, not skipped, by --resume (a learning rate:
    # traced, so the rerun needs no new program)
    exp = json.loads(files["fig8"].read_text())
    exp["lr"] = 0.05
    files["fig8"].write_text(json.dumps(exp))
    assert main(["reproduce", "--config", str(files["fig8"]), "--out", str(out), "--seeds", "2",
                 "--resume"]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert (out / "fig8.csv").read_text() != before["fig8.csv"]


def test_a_shared_training_run_is_the_run_trained_afresh():
    """`reproduce --full` trains DDRL-NRA at rate 0.005 on the paper scenario in Fig. 4, Figs.
    5-7 and Fig. 8 and trains it once (``train_shared``). The reused run must be bit for bit the
    run ``train_grid`` of that rate alone gives on ``make_scenarios``' output (here Fig. 4's
    2 seeds x 4 rates against 2 seeds x 1), its test pass on a grid Fig. 4 did not sample is
    ``evaluate_grid``'s, sampled there, and a rate not trained yet must not be reused."""
    import numpy as np
    import jax
    from sagin_jax.experiments.stats import on_time_grid
    from sagin_jax.scenario.generate import make_scenarios
    from sagin_jax.training.run import evaluate_grid, train_grid

    exp = load_experiment(experiments_dir() / "small" / "fig4.json", seeds=2)
    cfg, tcfg, seeds, lrs = reproduce_module._fig4_setup(exp)
    settings = reproduce_module._settings
    grid = reproduce_module.time_grid_of({"time_points": 7}, cfg)
    reproduce_module._TRAINED.clear()
    try:
        fig4 = reproduce_module.train_shared(exp, cfg, tcfg, seeds, settings(tcfg, lrs), None,
                                             False)
        assert not fig4.reused
        again = reproduce_module.train_shared(exp, cfg, tcfg, seeds, settings(tcfg, [lrs[1]]),
                                              grid, False)
        assert again.reused and again.run_s == 0.0
        scen = make_scenarios(cfg, seeds)
        fresh = train_grid(cfg, tcfg, seeds, [lrs[1]], progress=False, subs=scen.sub,
                           train_reqs=scen.train)
        for got, want in zip(jax.tree_util.tree_leaves((again.params, again.curves)),
                             jax.tree_util.tree_leaves((fresh.params, fresh.curves))):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        m = evaluate_grid(tcfg, fresh.params, scen.sub, scen.test, seeds).metrics
        for name in ("ar", "acr", "rc"):
            ref = np.asarray(getattr(m, name))[:, 0]
            np.testing.assert_array_equal(getattr(again.summary.final, name)[:, 0], ref[:, -1])
            np.testing.assert_array_equal(
                getattr(again.summary.curves, name)[:, 0].astype(np.float64),
                on_time_grid(np.asarray(m.time)[:, 0], ref, grid.astype(np.float64)))
            # Fig. 4's own test pass of that rate (on its grid) ends where this one does
            np.testing.assert_array_equal(getattr(fig4.summary.final, name)[:, 1], ref[:, -1])
        assert not np.array_equal(np.asarray(fig4.curves.ar)[:, 0],
                                  np.asarray(fresh.curves.ar)[:, 0])  # the rates differ
        other = reproduce_module.train_shared(exp, cfg, tcfg, seeds, settings(tcfg, [0.02]),
                                              grid, False)
        assert not other.reused
    finally:
        reproduce_module._TRAINED.clear()


def test_programs_compiled_ahead_cover_a_run_reused_on_a_new_grid(tmp_path):
    """Fig. 4 trains DDRL-NRA at two rates; a comparison after it in the same call reuses the
    rate it shares and tests that run on its own time grid. Compiling ahead plans this: the
    jobs are Fig. 4's training program and the comparison's test pass (no second training),
    and the runs after ``compile_ahead`` compile nothing."""
    from sagin_jax.compilation import compile_ahead
    common = {"seeds": 2, "scenario": SMALL, "train": {"epochs": 1, "batch_size": 20}}
    docs = [{"name": "f4", "kind": "fig4", "lrs": [0.01, 0.05], **common},
            {"name": "cmp", "kind": "compare", "algos": ["ddrl-nra"], "lr": 0.05,
             "time_points": 5, **common}]
    exps = []
    for doc in docs:
        f = tmp_path / f"{doc['name']}.json"
        f.write_text(json.dumps(doc))
        exps.append(load_experiment(f))
    known = {}
    jobs = [j for e in exps for j in reproduce_module.experiment_jobs(e, known)]
    assert [j.fn.__name__ for j in jobs] == ["generate_chunk", "train_chunk", "generate_chunk",
                                             "evaluate_chunk"]
    reproduce_module._TRAINED.clear()
    try:
        compile_ahead(jobs)
        with CompileCounter() as cc:
            done = [reproduce_module.run_experiment(e, tmp_path / "out", False, False)
                    for e in exps]
    finally:
        reproduce_module._TRAINED.clear()
    assert cc.stats.compiled + cc.stats.cache_hits == 0, cc.stats
    assert done[1]["summary"]["timing"]["ddrl-nra"]["reused"]


def test_chunks_of_seeds_change_no_per_seed_number(tmp_path):
    """A comparison on 64 seeds run 16 seeds per compiled call gives every seed the final AR,
    ACR and R/C (and so the same curves file) it gets with all 64 in one call, for the random
    policy (keyed draws: a seed's key must follow it into its chunk). Trained agents go through
    the same chunk assembly (``_settle``); ``train_seeds``' own chunks are tested in
    test_stream.py."""
    exp = {"name": "many", "kind": "compare", "seeds": 64, "algos": ["random"],
           "time_points": 5, "scenario": SMALL, "train": {"epochs": 1, "batch_size": 20}}
    marker, curves = {}, {}
    for chunk in (16, 64):
        f = tmp_path / f"chunk{chunk}.json"
        f.write_text(json.dumps({**exp, "chunk": chunk}))
        out = tmp_path / f"out{chunk}"
        reproduce(config=str(f), out=str(out), progress=False)
        marker[chunk] = json.loads((out / ".done" / "many.json").read_text())["summary"]
        curves[chunk] = (out / "many.csv").read_text()
    for algo in exp["algos"]:
        for name in ("AR", "ACR", "RC"):
            values = marker[16]["final"][algo][name]["values"]
            assert len(values) == 64
            assert values == marker[64]["final"][algo][name]["values"], (algo, name)
        assert len(set(marker[16]["final"][algo]["AR"]["values"])) > 1  # seeds differ
    assert curves[16] == curves[64]


@pytest.mark.parametrize("bad,message", [
    ({"name": "x", "kind": "fig9", "seeds": 1}, "field 'kind' = 'fig9'"),
    ({"name": "x", "kind": "fig4", "seeds": 0}, "field 'seeds' must be a positive integer"),
    ({"kind": "fig4", "seeds": 1}, "missing field 'name'"),
    ({"name": "x", "kind": "fig4", "seeds": 1, "train": {"batch_size": 7}},
     "batch_size=7 must divide the 1000 training requests"),
])
def test_bad_experiment_file_is_refused(tmp_path, capsys, bad, message):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(bad))
    assert main(["reproduce", "--config", str(f), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "r" / ".done").exists()


def test_bench_prints_the_ratio_last(tmp_path, capsys, monkeypatch):
    # one seed count, seeds looped (the vmapped programs are tested in test_invariants): every
    # workload of the bench with the fewest compiles that still exercises it (loop trips of
    # NRMVNE only: each policy's batched step is one more program; trip counts are tested in
    # test_trips). The scale point
    # (20 nodes: the SMALL scenario itself), the trip counts and the generation timing use the
    # simulator's seed count, requests and chunk, so they rerun programs it compiled (loaded
    # from the compilation cache) instead of compiling their own.
    spec = {"seeds": [2], "vmap_max_seeds": 0, "reference_seeds": 1, "speedup_seeds": 2,
            "scenario": SMALL, "fig4": None, "scale_nodes": [20], "scale_seeds": 2,
            "scale_requests": 40, "train": {"batch_size": 20},
            "trip_seeds": 2, "trip_policies": ["nrmvne"],
            "generation": {"seeds": 8, "chunk": 8, "numpy_seeds": 1},
            "train_memory_seeds": [4], "end_to_end": None, "env": {"envs": [4], "steps": 4}}
    # the training-memory workload's figures come from ``train_memory`` (compiled from shapes;
    # its accounting is tested in test_training.py): made-up numbers here check how the bench
    # reports them, without compiling a vmapped training epoch once more
    from sagin_jax.experiments import bench as bench_mod
    gib = 2 ** 30
    monkeypatch.setattr(bench_mod, "train_memory", lambda cfg, tcfg, n: {
        "compile_s": 1.5, "total": 3 * gib, "arguments": 2 * gib, "temporaries": gib,
        "requests_per_seed": 2048})
    f = tmp_path / "bench.json"
    f.write_text(json.dumps(spec))
    assert main(["bench", "--config", str(f), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("speedup_vs_reference=")
    assert float(lines[-1].split("=")[1]) > 0
    rows = _rows(tmp_path / "bench.csv")
    workloads = {(r["workload"], r["loop"], r["seeds"]) for r in rows}
    assert ("reference-nrmvne", "python", "1") in workloads
    assert {("jax-ddrl-train", "map", "2"), ("jax-nrmvne-test", "map", "2"),
            ("jax-ddrl-test", "map", "2")} <= workloads
    assert "scale-20" in {r["workload"] for r in rows}
    assert "trips-ddrl-nra-test" not in {r["workload"] for r in rows}  # trip_policies
    assert {"trips-nrmvne-test", "generate-programs-discarded",
            "generate-numpy"} <= \
        {r["workload"] for r in rows}
    trips = {r["loop"]: float(r["trips_mean"]) for r in rows
             if r["workload"] == "trips-nrmvne-test"}
    assert set(trips) == {"sequential", "batched"} and trips["batched"] < trips["sequential"]
    mem = [r for r in rows if r["workload"] == "train-memory"]
    assert len(mem) == 1 and mem[0]["seeds"] == "4"
    assert [float(mem[0][k]) for k in ("memory_gib", "arguments_gib", "temporaries_gib")] == \
        [3.0, 2.0, 1.0]
    assert float(mem[0]["mib_per_seed"]) == pytest.approx(3 * 1024 / 4)
    assert "3.0 GiB = 2.0 GiB arguments (training requests 2 KiB per seed) + 1.0 GiB" in out
    assert (tmp_path / "bench.png").is_file()


def test_bench_sweep_rows_report_both_sides_and_their_ratio(monkeypatch, capsys):
    """The ``sweep`` bench section records the population and the one-at-a-time baseline from
    ONE ``bench_sweep`` call (its compute is the sweep's own, tested in test_sweep.py); here it
    returns made-up timings so the rows can be checked by hand."""
    from sagin_jax.config import ScenarioConfig
    from sagin_jax.experiments import bench as bench_mod

    seen = {}

    def fake(cfg, n_configs, seeds, epochs, batch_size=None, slots=8, seed=0):
        seen.update(n_configs=n_configs, seeds=list(seeds), epochs=epochs, slots=slots,
                    batch_size=batch_size)
        return {"n_configs": n_configs, "n_seeds": len(list(seeds)), "epochs": epochs,
                "n_train": 1000, "slots": slots, "population_s": 20.0, "one_at_a_time_s": 50.0,
                "ratio": 2.5, "pruned": 5, "trial_epochs": 12, "baseline_trial_epochs": 30,
                "epochs_saved": 0.6, "slot_epochs": 16, "population_epochs_s": 15.0}

    monkeypatch.setattr(bench_mod, "bench_sweep", fake)
    record = bench_mod.Recorder()
    spec = {"sweep": {"configs": 3, "seeds": 2, "epochs": 10, "slots": 4}}
    bench_mod.bench_sweep_ratio(spec, ScenarioConfig(), record)
    assert seen == {"n_configs": 3, "seeds": [0, 1], "epochs": 10, "slots": 4,
                    "batch_size": None}
    pop, one = record.rows
    assert (pop["workload"], one["workload"]) == ("sweep-population", "sweep-one-at-a-time")
    assert pop["ratio"] == 2.5 and (pop["run_s"], one["run_s"]) == (20.0, 50.0)
    # requests embedded per second: trial-epochs x seeds x requests / wall
    assert pop["embeddings_per_s"] == pytest.approx(12 * 2 * 1000 / 20.0)
    assert one["embeddings_per_s"] == pytest.approx(30 * 2 * 1000 / 50.0)
    assert "ratio 2.50x" in capsys.readouterr().out
    bench_mod.bench_sweep_ratio({"sweep": None}, ScenarioConfig(), record)  # no section: no rows
    assert len(record.rows) == 2


def test_bench_timing_calls_the_program_once_more_only_with_warmup(tmp_path, capsys):
    """``_timed`` compiles ahead, then (warm-up) calls once untimed and once timed; with
    ``"warmup": false`` (a device lent for minutes) only the timed call runs. A bench
    config with a non-boolean ``warmup`` is refused before any compute."""
    from sagin_jax.experiments.bench import _timed
    calls = []

    class Fake:  # stands in for a jitted function: lower -> compile -> callable
        def lower(self, *args):
            return self

        def compile(self):
            return lambda *args: calls.append(args) or 0

    _timed(Fake(), 1, 2)
    assert len(calls) == 2
    calls.clear()
    _timed(Fake(), 1, 2, warmup=False)
    assert calls == [(1, 2)]
    f = tmp_path / "bench.json"
    f.write_text(json.dumps({"seeds": [1], "warmup": "no"}))
    assert main(["bench", "--config", str(f), "--out", str(tmp_path / "out")]) == 2
    assert "field 'warmup' must be true or false" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bench_end_to_end_rows_hold_the_pass_against_its_programs(monkeypatch, capsys):
    """The end-to-end row's ratio is its wall time over the programs' own times scaled from the
    seeds they were measured on to the seeds of the pass (figures faked: the runner itself is
    tested in test_stream.py)."""
    from sagin_jax.experiments import bench_stream
    runs = iter([{"wall_s": 3.0, "gib": 0.5, "rss_mib": 900.0},
                 {"wall_s": 26.0, "rss_mib": 700.0}])
    monkeypatch.setattr(bench_stream, "_fresh_process", lambda code, *argv: next(runs))
    monkeypatch.setattr(bench_stream, "program_times", lambda cfg, n, chunk: {
        "gen_s": 1.0, "sim_s": 4.0, "n_seeds": 256, "chunk": 64})
    from sagin_jax.experiments.bench import Recorder
    record = Recorder()
    cfg = ScenarioConfig(n_test=100)
    bench_stream.bench_end_to_end({"end_to_end": {"seeds": 1024, "component_seeds": 256,
                                                  "materialise_seeds": 64}}, cfg, record)
    rows = {r["workload"]: r for r in record.rows}
    assert rows["generate-materialised"]["peak_rss_mib"] == 900.0
    assert rows["end-to-end-programs"]["run_s"] == pytest.approx(20.0)  # (1 + 4) x 1024 / 256
    assert rows["end-to-end"]["vs_programs"] == pytest.approx(26.0 / 20.0)
    assert rows["end-to-end"]["embeddings_per_s"] == pytest.approx(1024 * 100 / 26.0)
    assert "1.30x" in capsys.readouterr().out
    bench_stream.bench_end_to_end({"end_to_end": None}, cfg, record)  # no section: no rows
    assert len(record.rows) == 3
