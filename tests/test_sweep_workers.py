"""Sweeps on several processes: worker processes sharing one study (Optuna's journal file on one
machine, a real PostgreSQL server across machines), and the locks on the output folder.

The union of the workers' trials is checked against what a study must be: trial numbers
0..n-1 without a duplicate, every trial complete or pruned, and the best value the largest
final value of the complete trials; the outputs are written once, by one of the workers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sagin_jax.cli import main
from sagin_jax.experiments.sweep.run import outputs_written
from sagin_jax.experiments.sweep.storage import writer_lock

ROOT = Path(__file__).resolve().parents[1]
TINY = {"n_space": 4, "n_air": 4, "n_ground": 6, "n_train": 40, "n_test": 40}
BUDGET = 12


def _sweep_file(tmp_path: Path, name: str) -> Path:
    doc = {"name": name, "scenario": TINY, "train": {"epochs": 3, "batch_size": 20},
           "algos": ["ddrl-nra"], "space": {"lr": {"low": 0.5, "high": 20.0, "log": True}},
           "batch": 2, "train_seeds": [0, 1], "test_seeds": [10_000], "budget": BUDGET,
           "seed": 3}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


def _two_workers(tmp_path: Path, make_storage, storage_flag: list[str], name: str):
    """Create the study, start workers a and b at once (each asks its first trials before it
    compiles, so both take part), wait for both; -> (study, stdout of a, stdout of b)."""
    out = tmp_path / "out"
    out.mkdir()
    config = _sweep_file(tmp_path, name)
    storage = make_storage(out)
    optuna.create_study(study_name=f"{name}-ddrl-nra", storage=storage, direction="maximize")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "sagin_jax.cli", "sweep", "--config",
                               str(config), "--out", str(out), "--worker", w, "--no-compare",
                               "--quiet", *storage_flag],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for w in ("a", "b")]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-2000:]
    study = optuna.load_study(study_name=f"{name}-ddrl-nra", storage=storage)
    return study, out, [o for o, _ in outs]


def _check_union(study, out: Path, stdouts: list[str]) -> None:
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(len(trials)))  # no duplicate, none lost
    # the budget counts the whole study; two workers asking at the same moment may add one
    assert BUDGET <= len(trials) <= BUDGET + 1
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert {t.user_attrs["worker"] for t in trials} == {"a", "b"}
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
    assert study.best_value == max(complete)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["ddrl-nra"]["value"] == max(complete)
    assert summary["n_trials"]["ddrl-nra"] == len(trials)
    # the outputs are written once: one worker reports the best trial, the other does not
    assert sum("best validation O" in o for o in stdouts) == 1, stdouts
    assert not list(out.glob("*_population*.npz"))


@pytest.mark.slow
def test_two_worker_processes_share_one_journal_study(tmp_path):
    study, out, stdouts = _two_workers(
        tmp_path, lambda out: JournalStorage(JournalFileBackend(str(out / "study.journal"))), [],
        "journal")
    _check_union(study, out, stdouts)


@pytest.fixture
def postgres_url():
    url = os.environ.get("SAGIN_JAX_TEST_POSTGRES")
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but SAGIN_JAX_TEST_POSTGRES is unset: .ci/run starts a "
                        "PostgreSQL server and sets it")
        pytest.skip("SAGIN_JAX_TEST_POSTGRES is unset (a postgresql:// URL; .ci/run starts a "
                    "server and sets it)")
    return url


@pytest.mark.slow
def test_two_worker_processes_share_one_postgresql_study(tmp_path, postgres_url):
    name = f"pg_{uuid.uuid4().hex[:8]}"
    storage = optuna.storages.RDBStorage(postgres_url.replace("postgresql://",
                                                              "postgresql+psycopg://", 1))
    try:
        study, out, stdouts = _two_workers(tmp_path, lambda out: storage,
                                           ["--storage", postgres_url], name)
        _check_union(study, out, stdouts)
        assert not (out / "study.journal").exists()
    finally:
        optuna.delete_study(study_name=f"{name}-ddrl-nra", storage=storage)


def _one_line_error(capsys, *words) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(w in err for w in words), err
    return err


def test_a_second_writer_of_the_same_outputs_is_refused(tmp_path, capsys):
    """A sweep is refused (one line, exit 2) while another holds the folder's lock: the sweep
    that creates the studies, or a worker of the same name; another worker name is not."""
    config = _sweep_file(tmp_path, "locked")
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.journal").touch()
    with writer_lock(out, None):
        assert main(["sweep", "--config", str(config), "--out", str(out)]) == 2
        _one_line_error(capsys, "--out", str(out), ".lock")
        with writer_lock(out, "a"):
            assert main(["sweep", "--config", str(config), "--out", str(out),
                         "--worker", "a"]) == 2
            _one_line_error(capsys, "--out", "worker 'a'")
            with writer_lock(out, "b"):
                pass
    with writer_lock(out, None):  # released
        pass


@pytest.mark.parametrize("flags, words", [
    (["--worker", "a"], ["study.journal", "without --worker"]),
    (["--worker", "a/b"], ["--worker"]),
    (["--storage", "sqlite:///x.db"], ["--storage", "postgresql://"]),
    (["--storage", "postgresql://u:secret@127.0.0.1:1/db"], ["--storage", "cannot open"]),
])
def test_bad_worker_and_storage_flags_are_refused_in_one_line(tmp_path, capsys, flags, words):
    config = _sweep_file(tmp_path, "bad")
    out = tmp_path / "out"
    assert main(["sweep", "--config", str(config), "--out", str(out), *flags]) == 2
    assert "secret" not in _one_line_error(capsys, *words)  # a password is never shown
    assert not out.exists()  # refused before anything is written


def test_outputs_count_as_written_only_for_the_same_trials_and_since_when_asked(tmp_path):
    """The rule that keeps a finished study's outputs from being written twice: summary.json
    of the same sweep with the same trial counts by state; for the sweep that creates the
    studies, only if another process wrote it after this one started (an older summary.json
    is rewritten: the report-only run)."""
    summary = {"name": "s", "states": {"ddrl-nra": {"COMPLETE": 3, "PRUNED": 2}}}
    path = tmp_path / "summary.json"
    assert not outputs_written(tmp_path, summary)  # nothing written yet
    path.write_text(json.dumps({**summary, "best": {}}))
    assert outputs_written(tmp_path, summary)
    assert not outputs_written(tmp_path, {**summary, "name": "t"})
    assert not outputs_written(tmp_path, {**summary, "states": {"ddrl-nra": {"COMPLETE": 4}}})
    written = path.stat().st_mtime
    assert outputs_written(tmp_path, summary, since=written)
    assert not outputs_written(tmp_path, summary, since=written + 1.0)
