"""Property tests (hypothesis): a valid scenario.json or experiment file with ONE random mutation
(a value replaced by something of another type or out of range, a field deleted, an unknown field
added) either runs (exit 0, valid outputs) or is refused (exit 2, one line on stderr), and never
ends in a traceback.

The scenario file runs for real (``simulate --algo grc --scenario FILE``; its audit trail must
pass the independent checker). The experiment file goes through the whole ``reproduce`` path
except the experiment's compute, which is replaced by a stub writing one CSV: the property under
test is the validation and the output bookkeeping, and a real run per example would take minutes.
"""
from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagin_jax import cli
from tests.test_bad_inputs import small_experiment, snapshot, tiny_scenario

BAD_VALUES = [None, -1, 0, 1, 3, 2 ** 40, -0.5, 0.5, 1e40, math.nan, math.inf, "x", "", [],
              [1, 2], {}, {"a": 1}, True, False]


def _paths(doc, prefix=()):
    """Every (path) to a value inside a JSON document."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw, base: dict):
    doc = copy.deepcopy(base)
    paths = [p for p in _paths(doc) if p]
    path = draw(st.sampled_from(paths))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add"]))
    if action == "replace":
        parent[path[-1]] = draw(st.sampled_from(BAD_VALUES))
    elif action == "delete":
        if isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent.pop(path[-1])
    else:
        target = parent if isinstance(parent, dict) else doc
        target["unexpected_field"] = draw(st.sampled_from(BAD_VALUES))
    return doc


def _run(argv, capsys):
    code = cli.main(["--no-compile-cache"] + argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _assert_refused_cleanly(code, err):
    assert code == 2, err
    assert len(err.strip("\n").split("\n")) == 1, err
    assert "Traceback" not in err and err.startswith("sagin-jax"), err


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=mutated(tiny_scenario()))
def test_mutated_scenario_runs_or_is_refused_in_one_line(doc, tmp_path_factory, capsys):
    from sagin_jax.reference import check_audit, load_audit_dir
    d = tmp_path_factory.mktemp("scen")
    (d / "s.json").write_text(json.dumps(doc))
    code, out, err = _run(["simulate", "--algo", "grc", "--scenario", str(d / "s.json"),
                           "--out", str(d / "run")], capsys)
    if code == 0:
        assert check_audit(*load_audit_dir(str(d / "run"))) == []
    else:
        _assert_refused_cleanly(code, err)
        assert not (d / "run").exists()


@pytest.fixture
def stub_compute(monkeypatch):
    """Replace each experiment's compute by a stub that writes one CSV (the outputs that a real
    runner writes), and the report by one that lists the markers."""
    from sagin_jax.experiments import report, reproduce
    from sagin_jax.files import atomic_write_text, write_csv

    def runner(exp, out, progress):
        write_csv(out / f"{exp['name']}.csv", ["seeds"], [{"seeds": exp["seeds"]}])
        return {}

    monkeypatch.setattr(reproduce, "RUNNERS", {k: runner for k in reproduce.RUNNERS})
    monkeypatch.setattr(reproduce, "experiment_jobs",
                        lambda exp, known=None: [])  # a stub calls no program
    monkeypatch.setattr(report, "write_report", lambda out, *a: atomic_write_text(
        out / "README.md", "\n".join(sorted(p.name for p in (out / ".done").iterdir()))))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=mutated(small_experiment()))
def test_mutated_experiment_runs_or_is_refused_in_one_line(doc, tmp_path_factory, capsys,
                                                            stub_compute):
    d = tmp_path_factory.mktemp("exp")
    (d / "exp.json").write_text(json.dumps(doc))
    before = snapshot(d)
    code, out, err = _run(["reproduce", "--config", str(d / "exp.json"), "--out",
                           str(d / "res"), "--quiet"], capsys)
    if code == 0:
        name = doc["name"]
        assert sorted(p.name for p in (d / "res").iterdir()) == sorted(
            [".done", "README.md", f"{name}.csv"])
        assert (d / "res" / ".done" / f"{name}.json").is_file()
    else:
        _assert_refused_cleanly(code, err)
        assert snapshot(d) == before
