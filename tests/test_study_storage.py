"""The sweep's study storage (``MirroredStorage``): reads served from memory must never change
what the sampler and the pruner decide, and the database must hold what the mirror holds.

The reference is Optuna's own SQLite storage (a URL: ``_CachedStorage`` over ``RDBStorage``),
driven by the same ask-and-tell loop as ``run_study``: a population of slots, a report per
epoch, successive-halving pruning, TPE re-seeded per trial. No JAX here.
"""
import math

import optuna
import pytest
from optuna.trial import TrialState

from sagin_jax.experiments.study_storage import MirroredStorage

SPACE = {"x": (1e-3, 1.0, True), "y": (-1.0, 1.0, False)}


def _curve(params: dict, epoch: int) -> float:
    """A made-up learning curve: rises with the epoch, peaks near x = 0.1, y = 0.3."""
    x, y, c = params["x"], params["y"], params["c"]
    return (1.0 - math.exp(-(epoch + 1) / 3.0)) * (
        2.0 - (math.log10(x) + 1.0) ** 2 - (y - 0.3) ** 2 + (0.2 if c == "b" else 0.0))


def _population_study(storage, n_trials=28, slots=4, epochs=5, name="s"):
    """ask / report / prune / tell in slot order, as ``run_study`` does; -> the study."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                pruner=optuna.pruners.SuccessiveHalvingPruner(
                                    min_resource=1, reduction_factor=2))
    slot, epoch, params, asked = [None] * slots, [0] * slots, [None] * slots, 0
    while True:
        for i in range(slots):
            if slot[i] is None and asked < n_trials:
                study.sampler = optuna.samplers.TPESampler(seed=1000 + asked,
                                                           n_startup_trials=8)
                t = study.ask()
                params[i] = {k: t.suggest_float(k, lo, hi, log=log)
                             for k, (lo, hi, log) in SPACE.items()}
                params[i]["c"] = t.suggest_categorical("c", ["a", "b"])
                slot[i], epoch[i], asked = t, 0, asked + 1
        if all(t is None for t in slot):
            return study
        for i, t in enumerate(slot):
            if t is None:
                continue
            v = _curve(params[i], epoch[i])
            t.report(v, epoch[i])
            epoch[i] += 1
            if epoch[i] >= epochs:
                study.tell(t, v)
                slot[i] = None
            elif t.should_prune():
                study.tell(t, state=TrialState.PRUNED)
                slot[i] = None


def _summary(study):
    return [(t.number, t.state.name, t.params, t.intermediate_values, t.value,
             {k: v for k, v in t.system_attrs.items()}) for t in study.get_trials()]


def test_mirrored_storage_decides_as_optunas_sqlite_storage_and_writes_the_same(tmp_path):
    plain = _population_study(f"sqlite:///{tmp_path / 'plain.db'}")
    url = f"sqlite:///{tmp_path / 'mirrored.db'}"
    mirrored = _population_study(MirroredStorage(url))
    states = [t.state for t in plain.get_trials()]
    # the test means something only if both pruning and completion happened, and TPE ran
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert len(states) == 28
    assert _summary(mirrored) == _summary(plain)
    # what the mirror served is what the database holds, read back by plain Optuna
    reread = optuna.load_study(study_name="s", storage=url)
    assert _summary(reread) == _summary(mirrored)
    assert reread.best_trial.number == mirrored.best_trial.number == plain.best_trial.number


def test_mirrored_storage_continues_a_study_it_did_not_write(tmp_path):
    """A resumed sweep opens a database written earlier: the mirror loads it whole once."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    first = _population_study(url, n_trials=12)
    n = len(first.trials)
    study = optuna.load_study(study_name="s", storage=MirroredStorage(url))
    assert _summary(study) == _summary(first)
    t = study.ask()
    t.suggest_float("x", 1e-3, 1.0, log=True)
    t.report(0.5, 0)
    study.tell(t, 0.75)
    back = optuna.load_study(study_name="s", storage=url).trials[-1]
    assert (back.number, back.value, back.intermediate_values) == (n, 0.75, {0: 0.5})


def test_a_finished_trial_refuses_writes_as_before(tmp_path):
    study = optuna.create_study(storage=MirroredStorage(f"sqlite:///{tmp_path / 'x.db'}"))
    t = study.ask()
    study.tell(t, 1.0)
    with pytest.raises(RuntimeError):
        t.report(0.1, 0)
