"""Optuna's bookkeeping in a sweep, timed without training: replay a finished study's asks,
reports, prunes and tells through ``run_study`` with a stand-in population that returns each
trial's recorded values instantly.

    python experiments/sweeps/bookkeeping.py SWEEP_JSON STUDY_STORAGE ALGO [STORAGE]

STUDY_STORAGE: the finished study (a journal file or an SQLAlchemy URL); STORAGE: where the
replay writes: ``journal`` (default, Optuna's journal file), ``journal-nofsync`` (the same
without ``fsync``), ``sqlite`` (Optuna's SQLite storage), or none for ``run_study``'s own
default. Prints one JSON line: the wall time of ``run_study``, the checkpoint writes excluded
(the stand-in writes none), the lines the replay wrote to its journal file (one ``fsync`` each
with Optuna's backend), and whether the replay asked and scored exactly the recorded trials.
Runs with whichever ``sagin_jax`` is first on the path, so two versions can be compared.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import get_lock_file  # the lock Optuna's own append takes

from sagin_jax.experiments.sweep.spec import load_sweep
from sagin_jax.experiments.sweep.study import run_study


class NoFsyncBackend(JournalFileBackend):
    """Optuna's journal file, each append handed to the OS without ``fsync``."""

    def append_logs(self, logs):
        with get_lock_file(self._lock):
            text = "\n".join(json.dumps(x, separators=(",", ":")) for x in logs) + "\n"
            with open(self._file_path, "ab") as f:
                f.write(text.encode("utf-8"))


class RecordedPopulation:
    """Slots whose epochs return the recorded intermediate values of the trial they hold (read
    from the checkpoint metadata ``run_study`` passes to ``save`` after every fill)."""

    def __init__(self, recorded: dict, n_slots: int):
        self.recorded, self.n_slots = recorded, n_slots
        self.trial, self.epoch = [-1] * n_slots, [0] * n_slots

    def start(self, hypers):
        return 0

    def refill(self, carry, slots, hypers):
        return carry

    def save(self, carry, path, trial, epoch):
        self.trial, self.epoch = list(trial), list(epoch)

    def step(self, carry, live_slots=None):
        acr = np.zeros((1, self.n_slots))
        for i in live_slots:
            acr[0, i] = self.recorded[self.trial[i]][self.epoch[i]]
            self.epoch[i] += 1
        zero = np.zeros((1, self.n_slots))
        return carry, {"ar": zero, "rc": zero, "acr": acr}


def _storage(kind: str | None, out: Path):
    if kind is None:
        return None
    if kind == "sqlite":
        return f"sqlite:///{out / 'replay.db'}"
    backend = NoFsyncBackend if kind == "journal-nofsync" else JournalFileBackend
    return JournalStorage(backend(str(out / "replay.journal")))


def main(argv: list[str]) -> int:
    sweep_json, source, algo = argv[:3]
    kind = argv[3] if len(argv) > 3 else None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sw = load_sweep(sweep_json)
    src = source if "://" in source else JournalStorage(JournalFileBackend(source))
    want = optuna.load_study(study_name=f"{sw['name']}-{algo}", storage=src).trials
    recorded = {t.number: t.intermediate_values for t in want}
    pop = RecordedPopulation(recorded, sw["batch"])
    with tempfile.TemporaryDirectory() as d:
        out = Path(d)
        extra = {} if kind is None else {"storage": _storage(kind, out)}
        t0 = time.perf_counter()
        got = run_study(sw, algo, out, ("trials", len(want)), False, False, pop, **extra).trials
        wall = time.perf_counter() - t0
        journal = out / "replay.journal"
        appends = sum(1 for _ in open(journal, "rb")) if journal.exists() else None
    same = [(t.number, t.params, t.state, t.value, t.intermediate_values) for t in got] == \
        [(t.number, t.params, t.state, t.value, t.intermediate_values) for t in want]
    print(json.dumps({"storage": kind or "default", "algo": algo, "trials": len(got),
                      "wall_s": round(wall, 2), "journal_lines": appends, "same_trials": same,
                      "pid": os.getpid()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
