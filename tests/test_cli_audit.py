"""``sagin-jax simulate`` end to end, in-process: the audit trail it writes has the issue's schema
and passes the independent constraint checker (eqs. 1-8, metrics from the trace); a tampered
trail does not."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil

import pytest
from pathlib import Path

from sagin_jax.cli import main
from sagin_jax.config import ScenarioConfig
from sagin_jax.reference import check_audit, load_audit_dir
from sagin_jax.scenario.generator import generate_requests, generate_substrate
from sagin_jax.scenario.io import scenario_document

SMALL = {"n_space": 4, "n_air": 6, "n_ground": 10, "n_train": 60, "n_test": 60,
         "domains_per_segment": [1, 2, 2]}
RUNS = [("nrmvne", 0), ("nrmvne", 1), ("grc", 0), ("random", 0)]
FILES = ["metrics.csv", "scenario.json", "trace.jsonl"]
TRACE_KEYS = {"id", "arrival", "departure", "accepted", "node_map", "paths", "revenue", "cost"}
# the per-request link-only parts of eqs. 7/8 may be recorded as well
OPTIONAL_TRACE_KEYS = {"link_revenue", "link_cost"}
METRIC_COLUMNS = ["time", "AR", "ACR", "RC", "RC_link"]


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "small.json"
    path.write_text(json.dumps({"scenario": SMALL}))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, config_file):
    """Run the CLI once per (algo, seed); -> {(algo, seed): (out dir, exit code, stdout, err)}."""
    results = {}
    for algo, seed in RUNS:
        out = tmp_path_factory.mktemp(f"{algo}-{seed}") / "audit"
        buf_out, buf_err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
            code = main(["simulate", "--algo", algo, "--seed", str(seed), "--out", str(out),
                         "--config", str(config_file)])
        results[algo, seed] = (out, code, buf_out.getvalue(), buf_err.getvalue())
    return results


@pytest.mark.parametrize("algo,seed", RUNS)
def test_simulate_writes_exactly_the_three_files(runs, algo, seed):
    out, code, stdout, err = runs[algo, seed]
    assert code == 0, err
    assert "error" not in err
    first, *listed = stdout.splitlines()
    assert first.startswith(f"{algo} seed {seed} (test)")
    # the run ends by listing what it wrote, and that is exactly the three files
    assert sorted(Path(line.removeprefix("wrote ")).name for line in listed) == FILES
    assert sorted(p.name for p in out.iterdir()) == FILES


@pytest.mark.parametrize("algo,seed", RUNS)
def test_scenario_json_schema(runs, algo, seed):
    out = runs[algo, seed][0]
    doc = json.loads((out / "scenario.json").read_text())
    assert set(doc) == {"nodes", "links", "requests"}
    for i, nd in enumerate(doc["nodes"]):
        assert set(nd) == {"id", "segment", "domain", "cpu", "sto"}
        assert nd["id"] == i and _is_int(nd["segment"]) and _is_int(nd["domain"])
        assert _is_num(nd["cpu"]) and _is_num(nd["sto"])
    for lk in doc["links"]:
        assert set(lk) == {"u", "v", "bw"}
        assert _is_int(lk["u"]) and _is_int(lk["v"]) and lk["u"] < lk["v"] and _is_num(lk["bw"])
    assert len(doc["requests"]) == SMALL["n_test"]
    for k, req in enumerate(doc["requests"]):
        assert set(req) == {"id", "arrival", "lifetime", "nodes", "links"}
        assert req["id"] == k and _is_num(req["arrival"]) and _is_num(req["lifetime"])
        for nd in req["nodes"]:
            assert set(nd) == {"cpu", "sto", "domain"}
            assert _is_num(nd["cpu"]) and _is_num(nd["sto"]) and _is_int(nd["domain"])
        for lk in req["links"]:
            assert set(lk) == {"a", "b", "bw"}
            assert _is_int(lk["a"]) and _is_int(lk["b"]) and lk["a"] < lk["b"]
    # it is exactly the seed's scenario (initial capacities, test requests)
    cfg = ScenarioConfig.from_dict(SMALL)
    assert doc == scenario_document(generate_substrate(cfg, seed),
                                    generate_requests(cfg, seed, "test"))


@pytest.mark.parametrize("algo,seed", RUNS)
def test_trace_and_metrics_schema(runs, algo, seed):
    out = runs[algo, seed][0]
    doc = json.loads((out / "scenario.json").read_text())
    lines = (out / "trace.jsonl").read_text().splitlines()
    assert len(lines) == len(doc["requests"])
    n_acc = 0
    for k, (line, req) in enumerate(zip(lines, doc["requests"])):
        rec = json.loads(line)
        assert TRACE_KEYS <= set(rec) <= TRACE_KEYS | OPTIONAL_TRACE_KEYS, set(rec)
        assert rec["id"] == k and rec["arrival"] == req["arrival"]
        assert rec["departure"] == req["arrival"] + req["lifetime"]
        assert isinstance(rec["accepted"], bool)
        if rec["accepted"]:
            n_acc += 1
            assert len(rec["node_map"]) == len(req["nodes"])
            assert all(_is_int(h) for h in rec["node_map"])
            assert len(rec["paths"]) == len(req["links"])
            assert all(len(p) >= 2 and all(_is_int(x) for x in p) for p in rec["paths"])
            assert rec["revenue"] > 0 and rec["cost"] >= rec["revenue"]
        else:
            assert rec["node_map"] is None and rec["paths"] is None
            assert rec["revenue"] == 0 and rec["cost"] == 0
    assert 0 < n_acc < len(lines)  # both outcomes occur, so the checks below mean something
    with open(out / "metrics.csv", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    assert header == METRIC_COLUMNS
    assert len(rows) == len(lines)
    values = [[float(x) for x in row] for row in rows]
    assert all(math.isfinite(x) for row in values for x in row)
    assert [row[0] for row in values] == [float(r["arrival"]) for r in doc["requests"]]
    assert values[-1][2] == pytest.approx(n_acc / len(lines), rel=1e-6)


@pytest.mark.parametrize("algo,seed", RUNS)
def test_audit_trail_passes_the_independent_checker(runs, algo, seed):
    violations = check_audit(*load_audit_dir(runs[algo, seed][0]))
    assert violations == [], violations[:5]


def test_same_seed_same_trail(runs, tmp_path, config_file, capsys):
    """Re-running a seed reproduces the files byte for byte."""
    first = runs["random", 0][0]
    again = tmp_path / "again"
    assert main(["simulate", "--algo", "random", "--seed", "0", "--out", str(again),
                 "--config", str(config_file)]) == 0
    capsys.readouterr()
    for name in FILES:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name


# ---- tampering: the checker must notice -------------------------------------------------------

@pytest.fixture
def tampered(runs, tmp_path):
    """A copy of one audit trail and ``rewrite(scenario=, trace=, metrics=)``, which writes the
    given parts back and returns the violations the checker reports beyond the untouched copy's."""
    src = runs["nrmvne", 0][0]
    dst = tmp_path / "audit"
    shutil.copytree(src, dst)
    scenario, trace, metrics = load_audit_dir(dst)
    baseline = set(check_audit(scenario, trace, metrics))

    def rewrite(scenario=None, trace=None, metrics=None):
        if scenario is not None:
            (dst / "scenario.json").write_text(json.dumps(scenario))
        if trace is not None:
            (dst / "trace.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trace))
        if metrics is not None:
            with open(dst / "metrics.csv", "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS)
                w.writeheader()
                w.writerows(metrics)
        return set(check_audit(*load_audit_dir(dst))) - baseline

    return scenario, trace, metrics, rewrite


def _first_accepted(trace):
    return next(k for k, rec in enumerate(trace) if rec["accepted"])


def test_tamper_node_moved_to_another_domain(tampered):
    scenario, trace, _, rewrite = tampered
    k = _first_accepted(trace)
    host = trace[k]["node_map"][0]
    dom = [nd["domain"] for nd in scenario["nodes"]]
    other = next(n for n in range(len(dom))
                 if dom[n] != dom[host] and n not in trace[k]["node_map"])
    trace[k]["node_map"][0] = other
    new = rewrite(trace=trace)
    assert any(f"request #{k}" in v and f"node 0 host {other} is in domain {dom[other]}" in v
               and "(eq. 1)" in v for v in new), new


def test_tamper_inflated_revenue(tampered):
    scenario, trace, _, rewrite = tampered
    k = _first_accepted(trace)
    trace[k]["revenue"] += 10
    new = rewrite(trace=trace)
    assert any(v.startswith(f"request #{k}") and "revenue" in v for v in new), new
    # the running metrics built from the trace no longer match metrics.csv either
    assert any(v.startswith(f"metrics row {k}: RC =") for v in new), new


def test_tamper_capacity_too_small_for_the_allocation(tampered):
    """Shrink the CPU of a host below what is placed on it: eq. 4 is violated."""
    scenario, trace, _, rewrite = tampered
    k = _first_accepted(trace)
    host = trace[k]["node_map"][0]
    need = scenario["requests"][k]["nodes"][0]["cpu"]
    assert need > 0
    scenario["nodes"][host]["cpu"] = need - 1
    new = rewrite(scenario=scenario)
    assert any(v.startswith(f"request #{k}") and f"node 0 needs cpu {float(need)}" in v
               and f"host {host}" in v and "(eq. 4)" in v for v in new), new


def test_tamper_metrics_row(tampered):
    _, _, metrics, rewrite = tampered
    metrics[7]["ACR"] += 0.01
    new = rewrite(metrics=metrics)
    assert any(v.startswith("metrics row 7: ACR =") for v in new), new
