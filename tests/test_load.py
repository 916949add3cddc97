"""The load experiment (`reproduce` kind "load"): its points, its paired gains against an
independent scipy computation, acceptance near zero load against what an empty network must
accept, its compile count, and the rows and paragraph it adds to the report."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from sagin_jax.compilation import CompileCounter
from sagin_jax.config import ScenarioConfig
from sagin_jax.experiments import load as L
from sagin_jax.experiments.reproduce import load_experiment, reproduce

# A compare experiment on one scenario shape needs 8 programs (test_experiments.py: one
# generation program, a training program per trained agent, a test program per algorithm). The
# load experiment runs every point on one active-request table and trains both DDRL-NRA
# settings with one program, so it needs no more however many points of one request size it
# has (measured: 8 here); 2 spare.
COMPARE_PROGRAMS = 8
MAX_LOAD_PROGRAMS = COMPARE_PROGRAMS + 2

ALGOS = ["ddrl-nra", "rlvne", "nrmvne", "grc", "random"]
# The paper's substrate and the schedule of experiments/small, with request links of bandwidth 1:
# a request has at most 45 links, every substrate link at least 50, node demands at most 50 and
# node capacities at least 50, and every domain has at least 10 nodes, so ANY node choice embeds
# a request on an empty network.
SCENARIO = {"req_bw": [1, 1]}
# 3 seeds, not the 2 of test_experiments' small reproduction: with 2 the programs would be the
# ones it counts, and a worker that ran this module first would leave it nothing to compile.
SEEDS = 3
NEAR_ZERO = 0.04  # offered load of the near-empty point: mean lifetime 1 at rate 0.04


def _experiment() -> dict:
    return {"name": "load", "kind": "load", "seeds": SEEDS, "loads": [40],
            "lifetime_loads": [NEAR_ZERO], "req_nodes_ranges": [[2, 10]], "algos": ALGOS,
            "best_config": "sweeps/x/best.json", "scenario": SCENARIO,
            "train": {"epochs": 3, "batch_size": 100}}


@pytest.fixture(scope="module")
def load_run(tmp_path_factory):
    """One small load experiment, with a sweep's best configuration present."""
    root = tmp_path_factory.mktemp("load")
    f = root / "load.json"
    f.write_text(json.dumps(_experiment()))
    out = root / "results"
    (out / "sweeps" / "x").mkdir(parents=True)
    (out / "sweeps" / "x" / "best.json").write_text(json.dumps(
        {"scenario": {}, "train": {"algo": "ddrl-nra", "epochs": 10, "batch_size": 100,
                                   "lr": 0.05, "entropy_coef": 0.01}}))
    phases = {}
    with CompileCounter() as cc:
        reproduce(config=str(f), out=str(out), progress=False, compiles=phases)
    marker = json.loads((out / ".done" / "load.json").read_text())
    with open(out / "load.csv") as fh:
        rows = list(csv.DictReader(fh))
    return out, marker, rows, cc.stats, phases


def _point(marker, series):
    (p,) = [p for p in marker["summary"]["points"] if series in p["series"]]
    return p


def test_load_points_vary_rate_or_lifetime_and_share_the_default_point():
    base = ScenarioConfig()  # rate 0.04, lifetime 1000: rho 40
    pts = L.load_points(base, [2.5, 40, 80], lifetime_loads=[10, 40],
                        req_nodes_ranges=[[2, 4], [2, 10]])
    got = [(p.cfg.arrival_rate, p.cfg.mean_lifetime, p.req_nodes, p.series) for p in pts]
    assert got == [(0.0025, 1000.0, (2, 10), ("rate",)),
                   (0.04, 1000.0, (2, 10), ("rate", "lifetime", "size")),
                   (0.08, 1000.0, (2, 10), ("rate",)),
                   (0.04, 250.0, (2, 10), ("lifetime",)),
                   (0.04, 1000.0, (2, 4), ("size",))]
    assert [p.rho for p in pts] == pytest.approx([2.5, 40, 80, 10, 40])


def _point_of(rho, acr: dict, gain=None, series=("rate",)):
    return {"rho": rho, "series": list(series),
            "final": {a: {"ACR": {"mean": v, "ci": 0.01}} for a, v in acr.items()},
            "gain": {"ddrl-nra": {"nrmvne": {"AR": {"mean": gain, "ci": 0.01}}}}
            if gain is not None else {}}


def test_report_rules_read_the_load_where_acceptance_falls_and_the_largest_gain():
    pts = [_point_of(20, {"a": 0.95, "b": 0.91}, 0.02),
           _point_of(5, {"a": 0.99, "b": 0.97}, 0.01),
           _point_of(40, {"a": 0.80, "b": 0.93}, 0.00),
           _point_of(10, {"a": 0.5, "b": 0.5}, 0.30, series=("size",)),  # not a load point
           _point_of(80, {"a": 0.95, "b": 0.95}, 0.05, series=("lifetime",))]
    assert L.all_accept_up_to(pts) == (20, (40, "a", 0.80))
    p, g = L.largest_gain(pts)
    assert (p["rho"], g["mean"]) == (80, 0.05)
    assert L.all_accept_up_to([_point_of(5, {"a": 0.5})]) == (None, (5, "a", 0.5))
    assert L.all_accept_up_to(pts[:2]) == (20, None)


def test_gain_intervals_are_the_paired_ones(load_run):
    """Each gain row of load.csv is the 95% Student-t interval of the per-seed ratios
    DDRL-NRA / other − 1 (scipy's t quantile), not an interval of the two means."""
    _, marker, rows, _, _ = load_run
    checked = 0
    for p in marker["summary"]["points"]:
        for variant in ("ddrl-nra", "ddrl-nra-best"):
            for vs in ("nrmvne", "rlvne"):
                for metric in ("AR", "ACR"):
                    a = np.array(p["final"][variant][metric]["values"])
                    b = np.array(p["final"][vs][metric]["values"])
                    r = a / b - 1.0
                    n = r.size
                    half = sps.t.ppf(0.975, n - 1) * r.std(ddof=1) / math.sqrt(n)
                    (row,) = [x for x in rows if x["algo"] == variant and x["vs"] == vs
                              and x["metric"] == f"gain_{metric}"
                              and math.isclose(float(x["rho"]), p["rho"])
                              and x["series"] == "+".join(p["series"])]
                    assert int(row["n_seeds"]) == n == SEEDS
                    assert float(row["mean"]) == pytest.approx(r.mean(), rel=1e-12, abs=1e-15)
                    low, high = float(row["ci_low"]), float(row["ci_high"])
                    # the t quantile to 1e-3 (a table of 3 decimals is enough), centred exactly
                    assert (high - low) / 2 == pytest.approx(half, rel=1e-3, abs=1e-12)
                    assert (high + low) / 2 == pytest.approx(r.mean(), rel=1e-9, abs=1e-12)
                    checked += 1
    assert checked == 2 * 2 * 2 * 2  # two points, two variants, two others, two metrics
    # the rows are not an interval of the means (which ignores the pairing)
    p = _point(marker, "rate")
    a, b = (np.array(p["final"][k]["AR"]["values"]) for k in ("ddrl-nra", "nrmvne"))
    unpaired = a.mean() / b.mean() - 1
    assert p["gain"]["ddrl-nra"]["nrmvne"]["AR"]["mean"] != pytest.approx(unpaired, rel=1e-9)


def test_near_zero_load_every_algorithm_accepts_what_finds_the_network_empty(load_run):
    """At ρ = 0.04 a request finds the network empty unless an earlier one is still alive
    (departures at its arrival time leave first); on an empty network any node choice embeds
    it (see SCENARIO). So every algorithm's acceptance, per seed, is at least the share of
    requests that arrive with no earlier request alive, computed here from the test requests'
    times alone, and that share is nearly 1."""
    from sagin_jax.simulation.batch import make_requests
    _, marker, _, _, _ = load_run
    p = _point(marker, "lifetime")
    assert p["rho"] == pytest.approx(NEAR_ZERO)
    cfg = ScenarioConfig(req_bw=(1, 1), arrival_rate=p["arrival_rate"],
                         mean_lifetime=p["mean_lifetime"])
    # the premise of SCENARIO: demands fit an empty network whatever the nodes chosen
    m = cfg.max_req_nodes
    link_bw = min(lo for lo, _ in cfg.bw_range + (cfg.inter_bw_range,))
    assert m * (m - 1) // 2 * cfg.req_bw[1] <= link_bw
    assert max(cfg.req_cpu[1], cfg.req_sto[1]) <= min(lo for lo, _ in cfg.cpu_range + cfg.sto_range)
    assert min(cfg.n_space, cfg.n_air, cfg.n_ground) >= m
    reqs = make_requests(cfg, list(range(SEEDS)), "test")
    arr = np.asarray(reqs.arrival, np.float64)
    dep = arr + np.asarray(reqs.lifetime, np.float64)
    alone = np.array([[not (dep[s, :k] > arr[s, k]).any() for k in range(arr.shape[1])]
                      for s in range(arr.shape[0])]).mean(axis=1)
    assert (alone > 0.9).all(), alone
    for algo, f in p["final"].items():
        acr = np.array(f["ACR"]["values"])
        assert (acr >= alone - 1e-12).all(), (algo, acr, alone)


def test_load_programs_stay_within_a_compare_experiments_count(load_run):
    _, _, _, stats, phases = load_run
    assert stats.compiled + stats.cache_hits <= MAX_LOAD_PROGRAMS, stats
    assert phases["run"].compiled + phases["run"].cache_hits == 0, phases  # all ahead


def test_load_outputs_and_report_rows(load_run):
    out, marker, rows, _, _ = load_run
    for name in ("load.csv", "fig9_load.png", "fig10_reqsize.png", "README.md"):
        assert (out / name).is_file(), name
    s = marker["summary"]
    assert s["best_config"] == "sweeps/x/best.json"
    assert s["variants"] == ["ddrl-nra", "ddrl-nra-best", "rlvne", "nrmvne", "grc", "random"]
    assert {r["series"] for r in rows} == {"rate+size", "lifetime"}
    report = (out / "README.md").read_text()
    assert "| largest DDRL-NRA revenue (AR) gain over NRMVNE at any load |" in report
    assert "| load at which every algorithm's acceptance exceeds 0.9 |" in report
    assert "**Offered load (Figs. 9, 10).**" in report
    for name in ("load.csv", "fig9_load.png", "fig10_reqsize.png"):  # named and written
        assert f"`{name}`" in report and (out / name).is_file(), name


@pytest.mark.parametrize("change,message", [
    ({"loads": []}, "field 'loads' must be a non-empty list"),
    ({"loads": [10, -1]}, r"field 'loads'\[1\] must be a finite number > 0"),
    ({"lifetime_loads": [1e12]}, r"lifetime_loads\[0\] with scenario.mean_lifetime"),
    ({"req_nodes_ranges": [[2, 11]]}, r"req_nodes_ranges\[0\] with scenario"),
    ({"req_nodes_ranges": [[0, 3]]}, r"field 'req_nodes_ranges'\[0\] must be \[lo, hi\]"),
    ({"best_config": "/abs/best.json"}, "field 'best_config' must be a path relative"),
    ({"lrs": [0.1]}, r"unknown field\(s\) \['lrs'\] for kind 'load'"),
])
def test_bad_load_experiment_is_refused(tmp_path, change, message):
    f = tmp_path / "load.json"
    f.write_text(json.dumps({**_experiment(), **change}))
    with pytest.raises(ValueError, match=message):
        load_experiment(f)


def _summary_point(rho, gains, acr=0.5, series=("rate",)):
    """A summary point whose DDRL-NRA AR gain over NRMVNE has the per-seed ``gains``."""
    g = np.asarray(gains, np.float64)
    return {"rho": rho, "series": list(series), "req_nodes": [2, 10],
            "final": {a: {"ACR": {"mean": acr, "ci": 0.01, "values": [acr] * g.size}}
                      for a in ("ddrl-nra", "nrmvne")},
            "gain": {"ddrl-nra": {"nrmvne": {"AR": L.stat(g)}}}}


FLAT = [0.00, 0.01, -0.01, 0.005]


@pytest.mark.parametrize("base_gain,low_load_gain,verdict", [
    (FLAT, [0.20, 0.22, 0.21, 0.19], "**the hypothesis holds**"),
    (FLAT, [0.01, -0.01, 0.02, 0.00], "**the data do not support the hypothesis**"),
    # larger than the default load's gain, paired over seeds, but not above 0 itself
    ([-0.10, -0.11, -0.12, -0.10], [-0.045, 0.052, -0.040, -0.048],
     "**the data do not support the hypothesis**"),
])
def test_saturation_verdict_follows_the_paired_change_of_the_gain(base_gain, low_load_gain,
                                                                   verdict):
    """The paragraph's verdict comes from the numbers: a gain at a lower load that exceeds the
    default load's gain, paired over seeds, and exceeds 0, supports the hypothesis; a flat gain,
    or one that only moves closer to 0, does not."""
    from sagin_jax.experiments.report import load_note
    base = _summary_point(40, base_gain, acr=0.4)
    low = _summary_point(10, low_load_gain, acr=0.7)
    d = {"seeds": 4, "summary": {"base_rho": 40.0, "base_req_nodes": [2, 10],
                                 "points": [low, base]}}
    text = load_note(d)
    assert verdict in text, text
    other = ({"**the hypothesis holds**", "**the data do not support the hypothesis**"}
             - {verdict}).pop()
    assert other not in text
