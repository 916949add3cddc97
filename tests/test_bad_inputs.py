"""Every bad input, of every kind, gets exit code 2, ONE line on stderr naming the culprit (the
flag, or the file and field), and writes nothing: a table of bad inputs run in-process through
``sagin_jax.cli.main``. Each case must fail before any compute, so the table is fast.

Input kinds: command-line flags, output paths, scenario configs (``--config``), experiment files
(``reproduce --config``), bench configs (``bench --config``), checkpoints, and scenario files
(``--scenario``: scenario.json and node-link JSON).
"""
from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sagin_jax import cli


# ---- valid inputs, built by hand (tiny) -------------------------------------------------------

def tiny_scenario() -> dict:
    """A valid scenario.json: 10 nodes (space 0-1, air 2-4, ground 5-9, one domain per segment),
    a connected topology, 5 requests."""
    seg = [0, 0, 1, 1, 1, 2, 2, 2, 2, 2]
    nodes = [{"id": i, "segment": s, "domain": s, "cpu": 60 + i, "sto": 70 + i}
             for i, s in enumerate(seg)]
    pairs = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (2, 5), (4, 6), (5, 6), (6, 7), (7, 8),
             (8, 9), (9, 5)]
    links = [{"u": u, "v": v, "bw": 50 + k} for k, (u, v) in enumerate(pairs)]
    reqs = []
    for k in range(5):
        n = 2 + k % 3
        reqs.append({"id": k, "arrival": 10.0 * k, "lifetime": 100.0 + k,
                     "nodes": [{"cpu": 5 + i, "sto": 6 + i, "domain": i % 3} for i in range(n)],
                     "links": [{"a": i, "b": i + 1, "bw": 3 + i} for i in range(n - 1)]})
    return {"nodes": nodes, "links": links, "requests": reqs}


def tiny_node_link() -> dict:
    """The substrate of ``tiny_scenario`` as networkx node-link JSON."""
    sc = tiny_scenario()
    return {"directed": False, "multigraph": False, "graph": {},
            "nodes": [{k: v for k, v in nd.items()} for nd in sc["nodes"]],
            "links": [{"source": lk["u"], "target": lk["v"], "bw": lk["bw"]}
                      for lk in sc["links"]]}


def small_experiment() -> dict:
    return {"name": "fig5_7", "kind": "compare", "seeds": 2, "algos": ["nrmvne", "grc"],
            "time_points": 5, "scenario": {}, "train": {"epochs": 1, "batch_size": 100}}


def _write_checkpoint(path: Path, algo: str = "ddrl-nra", mutate=None) -> None:
    """A checkpoint of an untrained agent, written with flax serialization as save_checkpoint
    does; ``mutate(blob)`` damages it."""
    import jax
    from flax import serialization
    from sagin_jax.config import PAPER
    from sagin_jax.policies.ddrl import init_ddrl_params
    from sagin_jax.training.checkpoint import FORMAT
    from sagin_jax.training.config import TrainConfig
    params = init_ddrl_params(jax.random.key(0), PAPER.n_domains, 0.1)
    meta = {"format": FORMAT, "scenario": PAPER.to_dict(), "train": TrainConfig(algo=algo).to_dict(),
            "seed": 0, "lr": 0.005}
    blob = {"meta": meta,
            "params": jax.tree_util.tree_map(np.asarray, serialization.to_state_dict(params))}
    if mutate is not None:
        mutate(blob)
    blob["meta"] = json.dumps(blob["meta"])
    path.write_bytes(serialization.msgpack_serialize(blob))


# ---- the table --------------------------------------------------------------------------------
# (id, files to create {name: content}, argv (with {d} = the temp dir), words the error must name)
# content: dict/list -> JSON, str -> text, ("ckpt", algo, mutate) -> checkpoint, "DIR" -> folder

def _scen(mutate) -> dict:
    doc = tiny_scenario()
    mutate(doc)
    return doc


def _exp(**changes) -> dict:
    doc = small_experiment()
    for k, v in changes.items():
        if v is _DROP:
            doc.pop(k)
        else:
            doc[k] = v
    return doc


_DROP = object()
TRAIN = ["train", "--algo", "ddrl-nra", "--out", "{d}/agent.ckpt"]
SIM = ["simulate", "--algo", "nrmvne", "--out", "{d}/run"]
REPRO = ["reproduce", "--config", "{d}/exp.json", "--out", "{d}/res"]


def _rlvne_params(blob):
    """RLVNE's parameters (w[4], b) in place of DDRL-NRA's."""
    blob["params"] = {"w": np.zeros(4, np.float32), "b": np.zeros((), np.float32)}


def _float64_params(blob):
    blob["params"] = {k: {n: {m: x.astype(np.float64) for m, x in layer.items()}
                          for n, layer in v.items()} for k, v in blob["params"].items()}


SWEEP = ["sweep", "--config", "{d}/sw.json", "--out", "{d}/sw"]


def _sweep(space: dict) -> dict:
    return {"space": space, "budget": 2}


def _set_nan_param(blob):
    leaf_path = next(iter(blob["params"]))
    tree = blob["params"][leaf_path]
    while isinstance(tree, dict):
        key = next(iter(tree))
        if isinstance(tree[key], dict):
            tree = tree[key]
        else:
            tree[key] = np.full_like(tree[key], np.nan)
            break


CASES = [
    # --- command-line flags
    ("lr-nan", {}, TRAIN + ["--lr", "nan"], ["--lr"]),
    ("lr-inf", {}, TRAIN + ["--lr", "inf"], ["--lr"]),
    ("lr-negative", {}, TRAIN + ["--lr", "-1"], ["--lr"]),
    ("lr-zero", {}, TRAIN + ["--lr", "0"], ["--lr"]),
    ("lr-text", {}, TRAIN + ["--lr", "fast"], ["--lr"]),
    ("epochs-zero", {}, TRAIN + ["--epochs", "0"], ["--epochs"]),
    ("batch-size-zero", {}, TRAIN + ["--batch-size", "0"], ["--batch-size"]),
    ("batch-size-not-dividing", {}, TRAIN + ["--batch-size", "7"], ["--batch-size", "1000"]),
    ("central-server-negative", {}, TRAIN + ["--central-server-every", "-1"],
     ["--central-server-every"]),
    ("seed-negative", {}, TRAIN + ["--seed", "-1"], ["--seed"]),
    ("seed-2**32", {}, SIM + ["--seed", str(2 ** 32)], ["--seed"]),
    ("seed-overflow", {}, SIM + ["--seed", "9" * 30], ["--seed"]),
    ("seed-float", {}, SIM + ["--seed", "1.5"], ["--seed"]),
    ("host-devices-zero", {}, ["--host-devices", "0"] + SIM, ["--host-devices"]),
    ("reproduce-seeds-zero", {"exp.json": small_experiment()}, REPRO + ["--seeds", "0"],
     ["--seeds"]),
    ("unknown-algo", {}, ["simulate", "--algo", "ddpg", "--out", "{d}/run"], ["--algo"]),
    ("learner-without-checkpoint", {}, ["simulate", "--algo", "rlvne", "--out", "{d}/run"],
     ["--checkpoint"]),
    ("baseline-with-checkpoint", {}, SIM + ["--checkpoint", "{d}/x.ckpt"], ["--checkpoint"]),
    # --- output paths (checked before compute)
    ("train-out-is-directory", {"agent.ckpt": "DIR"}, TRAIN, ["--out", "directory"]),
    ("simulate-out-is-file", {"run": "text"}, SIM, ["--out"]),
    ("simulate-out-under-file", {"f": "text"}, ["simulate", "--algo", "nrmvne", "--out",
                                                "{d}/f/run"], ["--out"]),
    ("reproduce-out-under-file", {"f": "text", "exp.json": small_experiment()},
     ["reproduce", "--config", "{d}/exp.json", "--out", "{d}/f/res"], ["--out"]),
    ("bench-out-under-file", {"f": "text"}, ["bench", "--quick", "--out", "{d}/f/b"], ["--out"]),
    ("train-out-under-file", {"f": "text"}, ["train", "--algo", "rlvne", "--out",
                                             "{d}/f/a.ckpt"], ["--out"]),
    # --- scenario configs (--config)
    ("config-lifetime-inf", {"c.json": '{"mean_lifetime": Infinity}'},
     SIM + ["--config", "{d}/c.json"], ["c.json", "mean_lifetime"]),
    ("config-lifetime-1e40", {"c.json": {"mean_lifetime": 1e40}},
     SIM + ["--config", "{d}/c.json"], ["c.json", "mean_lifetime"]),
    ("config-arrival-rate-zero", {"c.json": {"arrival_rate": 0}},
     SIM + ["--config", "{d}/c.json"], ["c.json", "arrival_rate"]),
    ("config-k-nearest-too-large", {"c.json": {"air_k_nearest": 99}},
     SIM + ["--config", "{d}/c.json"], ["c.json", "air_k_nearest"]),
    ("config-unknown-field", {"c.json": {"n_spaec": 4}},
     SIM + ["--config", "{d}/c.json"], ["c.json", "n_spaec"]),
    ("config-wrong-type", {"c.json": {"n_air": "ten"}},
     SIM + ["--config", "{d}/c.json"], ["c.json", "n_air"]),
    ("config-not-object", {"c.json": [1, 2]}, SIM + ["--config", "{d}/c.json"], ["c.json"]),
    ("config-malformed", {"c.json": '{"n_air": 4,'}, SIM + ["--config", "{d}/c.json"],
     ["c.json", "line"]),
    ("config-missing", {}, SIM + ["--config", "{d}/nope.json"], ["nope.json"]),
    # --- experiment files
    ("exp-name-dotdot", {"exp.json": _exp(name="../evil")}, REPRO, ["exp.json", "name"]),
    ("exp-name-slash", {"exp.json": _exp(name="a/b")}, REPRO, ["exp.json", "name"]),
    ("exp-name-missing", {"exp.json": _exp(name=_DROP)}, REPRO, ["exp.json", "name"]),
    ("exp-kind-unknown", {"exp.json": _exp(kind="fig9")}, REPRO, ["exp.json", "kind"]),
    ("exp-seeds-zero", {"exp.json": _exp(seeds=0)}, REPRO, ["exp.json", "seeds"]),
    ("exp-seeds-string", {"exp.json": _exp(seeds="4")}, REPRO, ["exp.json", "seeds"]),
    ("exp-algos-empty", {"exp.json": _exp(algos=[])}, REPRO, ["exp.json", "algos"]),
    ("exp-algo-unknown", {"exp.json": _exp(algos=["nrmvne", "ppo"])}, REPRO,
     ["exp.json", "ppo"]),
    ("exp-lr-negative", {"exp.json": _exp(lr=-0.1)}, REPRO, ["exp.json", "lr"]),
    ("exp-rlvne-lr-text", {"exp.json": _exp(rlvne_lr="x")}, REPRO, ["exp.json", "rlvne_lr"]),
    ("exp-time-points-zero", {"exp.json": _exp(time_points=0)}, REPRO,
     ["exp.json", "time_points"]),
    ("exp-time-points-one", {"exp.json": _exp(time_points=1)}, REPRO,
     ["exp.json", "time_points"]),
    ("exp-train-epochs-string", {"exp.json": _exp(train={"epochs": "3"})}, REPRO,
     ["exp.json", "epochs"]),
    ("exp-train-batch-float", {"exp.json": _exp(train={"batch_size": 3.5})}, REPRO,
     ["exp.json", "batch_size"]),
    ("exp-train-unknown", {"exp.json": _exp(train={"epoch": 3})}, REPRO, ["exp.json", "epoch"]),
    ("exp-unknown-field", {"exp.json": _exp(lrz=[0.1])}, REPRO, ["exp.json", "lrz"]),
    ("exp-scenario-bad", {"exp.json": _exp(scenario={"n_ground": -3})}, REPRO,
     ["exp.json", "n_ground"]),
    ("exp-lrs-empty", {"exp.json": {"name": "fig4", "kind": "fig4", "seeds": 2, "lrs": []}},
     REPRO, ["exp.json", "lrs"]),
    ("exp-lrs-text", {"exp.json": {"name": "fig4", "kind": "fig4", "seeds": 2, "lrs": ["a"]}},
     REPRO, ["exp.json", "lrs"]),
    ("exp-lrs-nan", {"exp.json": '{"name": "fig4", "kind": "fig4", "seeds": 2, "lrs": [NaN]}'},
     REPRO, ["exp.json", "lrs"]),
    ("exp-sto-ranges-short", {"exp.json": {"name": "fig8", "kind": "storage", "seeds": 2,
                                           "sto_ranges": [[1]]}}, REPRO,
     ["exp.json", "sto_ranges"]),
    ("exp-sto-ranges-float", {"exp.json": {"name": "fig8", "kind": "storage", "seeds": 2,
                                           "sto_ranges": [[1, 2.5]]}}, REPRO,
     ["exp.json", "sto_ranges"]),
    # --- bench configs
    ("bench-seeds-string", {"b.json": {"seeds": "8"}}, ["bench", "--config", "{d}/b.json",
                                                         "--out", "{d}/b"], ["b.json", "seeds"]),
    ("bench-fig4-seeds", {"b.json": {"fig4": {"seeds": "x"}}},
     ["bench", "--config", "{d}/b.json", "--out", "{d}/b"], ["b.json", "fig4.seeds"]),
    ("bench-unknown", {"b.json": {"sedes": [1]}}, ["bench", "--config", "{d}/b.json", "--out",
                                                   "{d}/b"], ["b.json", "sedes"]),
    ("bench-scenario-type", {"b.json": {"scenario": {"n_air": "x"}}},
     ["bench", "--config", "{d}/b.json", "--out", "{d}/b"], ["b.json", "n_air"]),
    ("bench-trip-policies", {"b.json": {"trip_policies": ["grc"]}},
     ["bench", "--config", "{d}/b.json", "--out", "{d}/b"],
     ["b.json", "trip_policies", "'nrmvne'/'ddrl-nra'"]),
    ("bench-env-envs", {"b.json": {"env": {"envs": [0], "steps": 4}}},
     ["bench", "--config", "{d}/b.json", "--out", "{d}/b"], ["b.json", "env.envs"]),
    ("bench-env-unknown", {"b.json": {"env": {"envz": [8]}}},
     ["bench", "--config", "{d}/b.json", "--out", "{d}/b"], ["b.json", "env.envz"]),
    ("bench-generation-chunk", {"b.json": {"generation": {"chunk": 0}}},
     ["bench", "--config", "{d}/b.json", "--out", "{d}/b"], ["b.json", "generation.chunk"]),
    ("bench-sweep-slots", {"b.json": {"sweep": {"slots": 0}}},
     ["bench", "--config", "{d}/b.json", "--out", "{d}/b"], ["b.json", "sweep.slots"]),
    # --- checkpoints
    ("ckpt-missing-params", {"a.ckpt": ("ckpt", "ddrl-nra", lambda b: b.pop("params"))},
     ["evaluate", "--checkpoint", "{d}/a.ckpt"], ["a.ckpt", "params"]),
    ("ckpt-nan-params", {"a.ckpt": ("ckpt", "ddrl-nra", _set_nan_param)},
     ["evaluate", "--checkpoint", "{d}/a.ckpt"], ["a.ckpt", "NaN"]),
    ("ckpt-wrong-algo", {"a.ckpt": ("ckpt", "ddrl-nra", None)},
     ["simulate", "--algo", "rlvne", "--checkpoint", "{d}/a.ckpt", "--out", "{d}/run"],
     ["a.ckpt", "ddrl-nra"]),
    ("ckpt-unknown-format",
     {"a.ckpt": ("ckpt", "ddrl-nra", lambda b: b["meta"].update(format="v0"))},
     ["evaluate", "--checkpoint", "{d}/a.ckpt"], ["a.ckpt", "format"]),
    ("ckpt-bad-train-type",
     {"a.ckpt": ("ckpt", "ddrl-nra", lambda b: b["meta"]["train"].update(epochs="ten"))},
     ["evaluate", "--checkpoint", "{d}/a.ckpt"], ["a.ckpt", "epochs"]),
    # a parameter tree that is not the declared algorithm's: names, shapes, dtypes
    ("ckpt-rlvne-params-declared-ddrl", {"a.ckpt": ("ckpt", "ddrl-nra", _rlvne_params)},
     ["evaluate", "--checkpoint", "{d}/a.ckpt"], ["a.ckpt", "ddrl-nra", "['w']"]),
    ("ckpt-ddrl-params-declared-rlvne", {"a.ckpt": ("ckpt", "rlvne", None)},
     ["evaluate", "--checkpoint", "{d}/a.ckpt"], ["a.ckpt", "rlvne", "conv1x1"]),
    ("ckpt-params-of-other-domain-count",
     {"a.ckpt": ("ckpt", "ddrl-nra",
                 lambda b: b["meta"]["scenario"].update(domains_per_segment=[2, 2, 2]))},
     ["evaluate", "--checkpoint", "{d}/a.ckpt"], ["a.ckpt", "conv1x1", "expected float32[6, 1]"]),
    ("ckpt-float64-params", {"a.ckpt": ("ckpt", "ddrl-nra", _float64_params)},
     ["evaluate", "--checkpoint", "{d}/a.ckpt"], ["a.ckpt", "float64", "float32"]),
    ("ckpt-garbage", {"a.ckpt": "not msgpack at all"},
     ["evaluate", "--checkpoint", "{d}/a.ckpt"], ["a.ckpt"]),
    ("ckpt-missing-file", {}, ["evaluate", "--checkpoint", "{d}/none.ckpt"], ["none.ckpt"]),
    # --- scenario files (--scenario)
    ("scen-negative-cpu", {"s.json": _scen(lambda d: d["nodes"][3].update(cpu=-1))},
     SIM + ["--scenario", "{d}/s.json"], ["s.json", "cpu"]),
    ("scen-nan-sto", {"s.json": _scen(lambda d: d["nodes"][3].update(sto=math.nan))},
     SIM + ["--scenario", "{d}/s.json"], ["s.json", "sto"]),
    ("scen-missing-cpu", {"s.json": _scen(lambda d: d["nodes"][2].pop("cpu"))},
     SIM + ["--scenario", "{d}/s.json"], ["s.json", "cpu"]),
    ("scen-huge-capacity", {"s.json": _scen(lambda d: d["nodes"][0].update(cpu=1e39))},
     SIM + ["--scenario", "{d}/s.json"], ["s.json", "cpu"]),
    ("scen-disconnected", {"s.json": _scen(lambda d: d.update(links=d["links"][:1]))},
     SIM + ["--scenario", "{d}/s.json"], ["s.json", "disconnected"]),
    ("scen-unknown-domain",
     {"s.json": _scen(lambda d: d["requests"][1]["nodes"][0].update(domain=7))},
     SIM + ["--scenario", "{d}/s.json"], ["s.json", "domain"]),
    ("scen-dangling-link", {"s.json": _scen(lambda d: d["links"][0].update(v=99))},
     SIM + ["--scenario", "{d}/s.json"], ["s.json", "link 0"]),
    ("scen-oversized-request",
     {"s.json": _scen(lambda d: d["requests"][0].update(
         nodes=[{"cpu": 1, "sto": 1, "domain": 0}] * 11, links=[]))},
     SIM + ["--scenario", "{d}/s.json"], ["s.json", "request 0"]),
    ("scen-lifetime-1e40", {"s.json": _scen(lambda d: d["requests"][2].update(lifetime=1e40))},
     SIM + ["--scenario", "{d}/s.json"], ["s.json", "lifetime"]),
    ("scen-not-object", {"s.json": [1]}, SIM + ["--scenario", "{d}/s.json"], ["s.json"]),
    ("scen-train-batch", {"s.json": tiny_scenario()},
     TRAIN + ["--scenario", "{d}/s.json"], ["--batch-size", "5 requests", "s.json"]),
    # --- sweep search spaces outside a hyperparameter's domain (the values train refuses)
    ("sweep-lr-range-below-zero", {"sw.json": _sweep({"lr": {"low": -1.0, "high": 1.0}})},
     SWEEP, ["sw.json", "space.lr.low", "> 0"]),
    ("sweep-lr-range-from-zero", {"sw.json": _sweep({"lr": {"low": 0.0, "high": 1.0}})},
     SWEEP, ["sw.json", "space.lr.low", "> 0"]),
    ("sweep-init-scale-choice-zero",
     {"sw.json": _sweep({"init_scale": {"choices": [0.1, 0.0]}})},
     SWEEP, ["sw.json", "space.init_scale.choices", "> 0"]),
    ("sweep-baseline-decay-reaches-one",
     {"sw.json": _sweep({"baseline_decay": {"low": 0.5, "high": 1.0}})},
     SWEEP, ["sw.json", "space.baseline_decay.high", "[0, 1)"]),
    ("sweep-rlvne-entropy-negative",
     {"sw.json": dict(_sweep({"lr": {"low": 0.1, "high": 1.0}}),
                      rlvne_space={"entropy_coef": {"low": -0.1, "high": 0.1}})},
     SWEEP, ["sw.json", "rlvne_space.entropy_coef.low", ">= 0"]),
    ("nodelink-dangling", {"g.json": dict(tiny_node_link(), links=[
        {"source": 0, "target": 42, "bw": 5}])},
     SIM + ["--scenario", "{d}/g.json"], ["g.json"]),
    ("nodelink-negative-bw", {"g.json": dict(tiny_node_link(), links=[
        dict(lk, bw=-5) for lk in tiny_node_link()["links"]])},
     SIM + ["--scenario", "{d}/g.json"], ["g.json", "bw"]),
]


def _make_files(d: Path, files: dict) -> None:
    for name, content in files.items():
        p = d / name
        if content == "DIR":
            p.mkdir()
        elif isinstance(content, tuple):
            _write_checkpoint(p, content[1], content[2])
        elif isinstance(content, str):
            p.write_text(content)
        else:
            p.write_text(json.dumps(content))


def snapshot(d: Path) -> dict:
    """Every path under ``d`` with a hash of its content (None for folders)."""
    return {str(p.relative_to(d)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file()
                                    else None) for p in sorted(d.rglob("*"))}


def run_cli(argv, capsys):
    code = cli.main(["--no-compile-cache"] + argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_table_is_large_enough():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id,files,argv,names", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_nothing_written(case_id, files, argv, names, tmp_path,
                                                   capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written relative to the working dir lands here too
    _make_files(tmp_path, files)
    before = snapshot(tmp_path)
    code, out, err = run_cli([a.replace("{d}", str(tmp_path)) for a in argv], capsys)
    assert code == 2, (out, err)
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert err.startswith("sagin-jax"), err
    for name in names:
        assert name in err, (name, err)
    assert snapshot(tmp_path) == before  # nothing written, prior state intact


def test_train_out_directory_leaves_no_tmp(tmp_path, capsys):
    """``train --out`` onto an existing directory: refused before training, no <dir>.tmp."""
    (tmp_path / "agent").mkdir()
    code, _, err = run_cli(["train", "--algo", "rlvne", "--out", str(tmp_path / "agent")],
                           capsys)
    assert code == 2 and "--out" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent"]


def test_valid_scenario_file_runs(tmp_path, capsys):
    """The hand-built scenario.json and its node-link twin are accepted (the table's mutations
    start from valid files), and the audit folder passes the independent checker."""
    from sagin_jax.reference import check_audit, load_audit_dir
    (tmp_path / "s.json").write_text(json.dumps(tiny_scenario()))
    code, out, err = run_cli(["simulate", "--algo", "grc", "--scenario", str(tmp_path / "s.json"),
                              "--out", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert [ln.split()[0] for ln in out.splitlines()[1:]] == ["wrote"] * 3
    doc, trace, metrics = load_audit_dir(str(tmp_path / "run"))
    assert len(trace) == 5 and check_audit(doc, trace, metrics) == []
    # the scenario written back is the one read (capacities and requests unchanged)
    want = tiny_scenario()
    assert [n["cpu"] for n in doc["nodes"]] == [n["cpu"] for n in want["nodes"]]
    assert [r["lifetime"] for r in doc["requests"]] == [r["lifetime"] for r in want["requests"]]


# ---- failures during a run: nothing half-written, nothing that looks finished ----------------

@pytest.fixture
def failing_runner(monkeypatch):
    """Each experiment writes its CSV, then fails with the exception in ``box[0]``."""
    from sagin_jax.experiments import reproduce
    box = [RuntimeError("boom")]

    def runner(exp, out, progress):
        from sagin_jax.files import write_csv
        write_csv(out / f"{exp['name']}.csv", ["x"], [])  # a header-only CSV
        raise box[0]

    monkeypatch.setattr(reproduce, "RUNNERS", {k: runner for k in reproduce.RUNNERS})
    monkeypatch.setattr(reproduce, "experiment_jobs",
                        lambda exp, known=None: [])  # a stub calls no program
    return box


@pytest.mark.parametrize("exc,code", [(KeyboardInterrupt(), 130), (ValueError("bad"), 2)])
def test_failed_experiment_leaves_no_output_and_no_marker(exc, code, failing_runner, tmp_path,
                                                          capsys):
    failing_runner[0] = exc
    (tmp_path / "exp.json").write_text(json.dumps(small_experiment()))
    got, _, err = run_cli(["reproduce", "--config", str(tmp_path / "exp.json"), "--out",
                           str(tmp_path / "res"), "--quiet"], capsys)
    assert got == code
    assert len(err.strip().split("\n")) == 1 and "Traceback" not in err
    if code == 130:
        assert "--resume" in err
    # no CSV, no completion marker, no staging folder: --resume will run it again
    assert [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "res").rglob("*")] == []


def test_crash_keeps_previous_complete_outputs(failing_runner, tmp_path, capsys):
    """A crashed rerun of a finished experiment leaves the previous outputs intact."""
    res = tmp_path / "res"
    (res / ".done").mkdir(parents=True)
    (res / "fig5_7.csv").write_text("old")
    (tmp_path / "exp.json").write_text(json.dumps(small_experiment()))
    failing_runner[0] = KeyboardInterrupt()
    before = snapshot(res)
    code, _, _ = run_cli(["reproduce", "--config", str(tmp_path / "exp.json"), "--out",
                          str(res), "--quiet"], capsys)
    assert code == 130 and snapshot(res) == before


# ---- import-time and process side effects ------------------------------------------------------

def test_host_devices_flag_is_never_duplicated(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=4 --foo=1")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the backend is running in this test process
        cli.set_host_devices(2)
        cli.set_host_devices(2)
    import os
    flags = os.environ["XLA_FLAGS"].split()
    assert flags.count("--xla_force_host_platform_device_count=2") == 1
    assert "--xla_force_host_platform_device_count=4" not in flags and "--foo=1" in flags


def test_experiments_dir_does_not_depend_on_cwd(tmp_path, monkeypatch):
    from sagin_jax.experiments.reproduce import experiments_dir
    (tmp_path / "experiments" / "small").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert experiments_dir() != tmp_path / "experiments"
    assert sorted(p.name for p in (experiments_dir() / "small").glob("*.json")) == [
        "fig4.json", "fig5_7.json", "fig8.json", "load.json"]


@pytest.mark.slow
def test_importing_plots_leaves_matplotlib_alone():
    code = ("import sys, sagin_jax.experiments.plots, sagin_jax.experiments.reproduce; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow
def test_import_after_backend_start_warns():
    code = ("import warnings, jax, jax.numpy as jnp; jnp.zeros(1).block_until_ready(); "
            "warnings.simplefilter('always'); import sagin_jax")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"}).stderr
    assert "speed-up" in err and "does not apply" in err


def test_check_audit_entry_point(tmp_path, capsys):
    """``python -m sagin_jax.reference.check_audit DIR``: OK line on a valid trail, one line and
    exit 2 on a damaged folder, the violations and exit 1 on a tampered trail."""
    from sagin_jax.reference.check_audit import main as check_main
    (tmp_path / "s.json").write_text(json.dumps(tiny_scenario()))
    run = tmp_path / "run"
    assert run_cli(["simulate", "--algo", "nrmvne", "--scenario", str(tmp_path / "s.json"),
                    "--out", str(run)], capsys)[0] == 0
    assert check_main([str(run)]) == 0
    assert capsys.readouterr().out == "OK: 5 requests, every constraint and metric holds\n"
    lines = (run / "metrics.csv").read_text().splitlines()
    lines[-1] = lines[-1].replace(lines[-1].split(",")[1], "12345.0", 1)  # tamper with AR
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    assert check_main([str(run)]) == 1
    assert "AR" in capsys.readouterr().out
    (run / "trace.jsonl").write_text("{not json\n")
    assert check_main([str(run)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().split("\n")) == 1 and str(run) in err
