"""Traced hyperparameters (``Hyper``) and the ``sagin-jax sweep`` driver, on tiny scenarios."""
from __future__ import annotations

import csv
import json
import math
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optuna
import pytest

from tests.conftest import small
from sagin_jax.cli import main
from sagin_jax.compilation import CompileCounter
from sagin_jax.experiments.sweep import population as population_mod
from sagin_jax.experiments.sweep import spec
from sagin_jax.experiments.sweep import study as study_mod
from sagin_jax.experiments.sweep.population import Population, is_key
from sagin_jax.experiments.sweep.samplers import hyper_of
from sagin_jax.experiments.sweep.study import run_study, validation_objective
from sagin_jax.simulation.batch import make_requests, make_substrates, table_size
from sagin_jax.training.config import Hyper, TrainConfig
from sagin_jax.training.reinforce import make_train

TINY = dict(n_space=4, n_air=4, n_ground=6, n_train=40, n_test=40)
# every traced field away from its default, so each one's code path runs
NON_DEFAULT = dict(lr=0.2, init_scale=0.3, ar_scale=900.0, w_ar=0.7, w_rc=1.5, w_acr=0.5,
                   failed_reward=-0.2, failed_weight=1.0, central_strength=0.6,
                   baseline_weight=1.0, baseline_decay=0.5, reward_norm=1.0, entropy_coef=0.05,
                   max_grad_norm=0.8)


def _scenario(seed=1):
    cfg = small(**TINY)
    sub = jax.tree_util.tree_map(lambda x: x[0], make_substrates(cfg, [seed]))
    reqs = make_requests(cfg, [seed], "train")
    table = table_size(reqs)
    return cfg, sub, jax.tree_util.tree_map(lambda x: x[0], reqs), table


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_traced_hyper_equals_the_same_values_baked_in():
    """At the paper's settings, a program with the hyperparameters as array arguments gives the
    bits of a program where the same values are Python constants. Away from them XLA folds baked
    constants differently (x / c becomes x * (1/c), fused multiply-adds), so there the two agree
    to a few float32 ulps, not bit for bit. Each traced value matters (changing it changes the
    result, so the comparison is not vacuous)."""
    _, sub, reqs, table = _scenario()
    tc = TrainConfig(epochs=1, batch_size=20, central_server_every=1)
    trainer = make_train(tc, reqs.n_requests, table)
    key = jax.random.key(5)
    traced = jax.jit(trainer.train)
    paper = traced(key, Hyper.from_config(tc, lr=0.2), sub, reqs)
    paper_baked = jax.jit(lambda k, s, r: trainer.train(k, Hyper.from_config(tc, lr=0.2), s, r))(
        key, sub, reqs)
    for a, b in zip(_leaves(paper), _leaves(paper_baked)):
        np.testing.assert_array_equal(a, b)
    hyper = Hyper.from_config(tc, **NON_DEFAULT)
    got = traced(key, hyper, sub, reqs)
    baked = jax.jit(lambda k, s, r: trainer.train(k, Hyper.from_config(tc, **NON_DEFAULT), s, r))
    want = baked(key, sub, reqs)
    for a, b in zip(_leaves(got), _leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-12)
    base = _leaves(got[0])
    # (not in the list: baseline_decay, as with reward_norm = 1 a baseline shift is normalised
    # away; central_strength, as this scenario has one domain per segment, so the segment mean
    # of an agent is itself)
    for name in ("init_scale", "w_rc", "entropy_coef", "max_grad_norm"):
        other = traced(key, hyper.replace(**{name: getattr(hyper, name) * 0.5}), sub, reqs)
        assert any(not np.array_equal(a, b) for a, b in zip(base, _leaves(other[0]))), name


def test_defaults_off_and_lr_only_call_are_the_paper_update():
    """``train(key, lr)`` takes the config's defaults: the same bits as the explicit default
    Hyper, and the off settings (no baseline/normalisation/entropy/clipping, s = 1) are inert:
    a clip bound above the update's norm changes nothing, and switching on the baseline does."""
    _, sub, reqs, table = _scenario(2)
    tc = TrainConfig(epochs=1, batch_size=20, central_server_every=1)
    trainer = make_train(tc, reqs.n_requests, table)
    key = jax.random.key(1)
    traced = jax.jit(trainer.train)
    p_lr = traced(key, jnp.float32(0.1), sub, reqs)
    p_h = traced(key, Hyper.from_config(tc, lr=0.1), sub, reqs)
    for a, b in zip(_leaves(p_lr), _leaves(p_h)):
        np.testing.assert_array_equal(a, b)
    big_clip = traced(key, Hyper.from_config(tc, lr=0.1, max_grad_norm=1e30), sub, reqs)
    for a, b in zip(_leaves(p_lr), _leaves(big_clip)):
        np.testing.assert_array_equal(a, b)
    with_base = traced(key, Hyper.from_config(tc, lr=0.1, baseline_weight=1.0), sub, reqs)
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(p_lr[0]), _leaves(with_base[0])))


def _sweep_dict(**kw):
    sw = {"name": "t", "scenario": small(**TINY), "train": {"epochs": 2, "batch_size": 20},
          "algos": ["ddrl-nra"], "space": {"lr": {"low": 1e-3, "high": 1.0, "log": True},
                                           "entropy_coef": {"choices": [0.0, 0.1]}},
          "batch": 2, "train_seeds": [0, 1], "test_seeds": [10_000, 10_001],
          "budget": ("trials", 4), "sampler": "tpe", "pruner": "successive_halving", "seed": 3,
          "objective_ar_scale": 20000.0}
    sw["rlvne_space"] = sw["space"]
    sw.update(kw)
    return sw


def _trials(study):
    return [(t.number, t.params, t.value, t.state.name, dict(t.intermediate_values))
            for t in study.trials]


# learning rates large enough to change this tiny scenario's decisions within 2 updates an epoch
REFILL_SPACE = {"lr": {"low": 0.5, "high": 20.0, "log": True},
                "entropy_coef": {"choices": [0.0, 0.1]}}


def _refill_sweep(**kw):
    return _sweep_dict(space=REFILL_SPACE, rlvne_space=REFILL_SPACE,
                       train={"epochs": 3, "batch_size": 20}, **kw)


def _population(sw):
    tcfg = TrainConfig.from_dict({**sw["train"], "algo": "ddrl-nra"})
    return tcfg, Population(sw["scenario"], tcfg, sw["train_seeds"], sw["batch"])


def test_refilled_population_compiles_once_and_a_refilled_slot_trains_like_a_fresh_run(
        tmp_path):
    """A 2-slot population whose slots are refilled with new trials as others finish or are
    pruned compiles each program once (init, epoch, the row select of a refill): a second sweep
    with other settings and more refills compiles nothing. A trial asked into a refilled slot,
    epochs into the sweep, reports (for its own epochs 0, 1, ...) the numbers of the same
    setting trained from scratch: nothing is left over from the slot's previous trial."""
    sw = _refill_sweep()
    tcfg, pop = _population(sw)
    warm = run_study(sw, "ddrl-nra", tmp_path / "a", ("trials", 3), False, False, pop)
    assert len(warm.trials) == 3  # 2 slots, 3 trials: at least one refill
    with CompileCounter() as cc:
        study = run_study(_refill_sweep(seed=11), "ddrl-nra", tmp_path / "b",
                                    ("trials", 7), False, False, pop)
    assert cc.stats.compiled == 0, cc.stats
    assert len(study.trials) == 7
    for f in (pop.init, pop.epoch, population_mod.select_runs):
        assert f._cache_size() == 1
    for t in study.trials:
        assert sorted(t.intermediate_values) == list(range(len(t.intermediate_values)))
        assert t.state.name in ("COMPLETE", "PRUNED")
    late = study.trials[-1]  # asked after at least 3 refills of the 2 slots
    carry = pop.start(Hyper.stack([hyper_of(tcfg, late.params)] * 2))
    for e in sorted(late.intermediate_values):
        carry, last = pop.step(carry)
        assert validation_objective(last, 20000.0)[1] == late.intermediate_values[e]


def test_an_idle_slot_keeps_its_carry_and_a_live_slot_trains_as_if_alone():
    """``Population.step(carry, live_slots)``: the runs of an idle slot come back bit for bit
    unchanged with zero metrics (on a CPU they are skipped, not computed), and a live slot's
    numbers are those of a step with every slot live."""
    sw = _refill_sweep()
    tcfg, pop = _population(sw)
    hypers = Hyper.stack([hyper_of(tcfg, {"lr": 3.0}), hyper_of(tcfg, {})])
    def host(carry):
        return [np.asarray(jax.random.key_data(x) if is_key(x) else x)
                for x in jax.tree_util.tree_leaves(carry)]
    before = host(pop.start(hypers))
    carry, last = pop.step(pop.start(hypers), [0])
    idle = pop.slot_of == 1
    after = host(carry)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a[idle], b[idle])
    assert all(np.all(v[:, 1] == 0) for v in last.values())
    _, both = pop.step(pop.start(hypers))
    for k in last:
        np.testing.assert_array_equal(last[k][:, 0], both[k][:, 0])
        assert np.all(both[k][:, 1] > 0)
    assert any(not np.array_equal(a[~idle], b[~idle]) for a, b in zip(before, after))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    sw = _refill_sweep()
    _, pop = _population(sw)
    ticks = []
    pop.step = lambda carry, live=None: ticks.append(1) or Population.step(pop, carry,
                                                                                       live)
    full = run_study(sw, "ddrl-nra", tmp_path_factory.mktemp("full"), ("trials", 6),
                               False, False, pop)
    del pop.step
    return sw, pop, _trials(full), len(ticks)


@pytest.mark.parametrize("where", ["step", "sigint_in_tell", "crash_after_tell",
                                   "crash_before_checkpoint"])
def test_interrupted_and_resumed_sweep_gives_the_same_trials(tmp_path, monkeypatch, where,
                                                             uninterrupted):
    """A sweep stopped part way and continued with resume=True asks, scores, prunes and refills
    the same trials, with the same values, as an uninterrupted one. Stopped by: Ctrl-C while an
    epoch trains; a real SIGINT while the database is being told (held back until the tick's
    writes and checkpoint are done); a crash between two tells (told trials are not told
    again); a crash after new trials were asked but before the checkpoint (they are reused)."""
    sw, pop, full, full_ticks = uninterrupted
    assert len(full) == 6
    # the asked settings differ and reach the trainer; some trials are pruned, some complete
    assert len({t[1]["lr"] for t in full}) == 6
    assert len({tuple(t[4].values()) for t in full}) >= 4
    assert {t[3] for t in full} == {"COMPLETE", "PRUNED"}
    target = {"step": (Population, "step"),
              "sigint_in_tell": (optuna.study.Study, "tell"),
              "crash_after_tell": (optuna.study.Study, "tell"),
              "crash_before_checkpoint": (Population, "save")}[where]
    orig, calls, slots_saved, ticks = getattr(*target), [], [], []

    def interrupted(*a, **kw):
        calls.append(1)
        if where == "crash_before_checkpoint":
            # the first checkpoint after a refill asked a new trial: it is never written
            slots_saved.append(set(kw["trial"]))
            if len(slots_saved) > 1 and slots_saved[-1] - slots_saved[-2] - {-1}:
                raise KeyboardInterrupt
            return orig(*a, **kw)
        if len(calls) != 3:
            return orig(*a, **kw)
        if where == "sigint_in_tell":
            os.kill(os.getpid(), signal.SIGINT)
            return orig(*a, **kw)
        if where == "crash_after_tell":
            orig(*a, **kw)
        raise KeyboardInterrupt

    def counted_step(self, carry, live_slots=None):
        out = Population.step(self, carry, live_slots)
        ticks.append(1)
        return out

    with monkeypatch.context() as m:
        m.setattr(*target, interrupted)
        if where != "step":
            m.setattr(pop, "step", counted_step.__get__(pop))
        with pytest.raises(KeyboardInterrupt):
            run_study(sw, "ddrl-nra", tmp_path, ("trials", 6), False, False, pop)
    with pytest.raises(ValueError, match="--resume"):
        run_study(sw, "ddrl-nra", tmp_path, ("trials", 6), False, False, pop)
    with monkeypatch.context() as m:
        m.setattr(pop, "step", counted_step.__get__(pop))
        resumed = run_study(sw, "ddrl-nra", tmp_path, ("trials", 6), True, False, pop)
    assert _trials(resumed) == full
    # continued from the checkpoint: at most the one epoch in flight is trained again
    done_before = 2 if where == "step" else None
    assert len(ticks) <= full_ticks + 1 and (done_before is None
                                              or len(ticks) == full_ticks - done_before)
    assert not (tmp_path / "ddrl-nra_population.npz").exists()


def test_sweep_command_writes_the_named_outputs(tmp_path, capsys, monkeypatch):
    """`sagin-jax sweep` writes trials.csv (every trial, with its algo, params and values by
    epoch), best.json that `train --config` reads back as the best trial's settings, the
    PNGs and the README section; `--resume` on the finished sweep writes them again without
    training."""
    doc = {"name": "e2e", "scenario": TINY, "train": {"epochs": 3, "batch_size": 20},
           "algos": ["ddrl-nra"], "space": REFILL_SPACE, "batch": 2, "train_seeds": [0, 1],
           "test_seeds": [10_000], "budget": 3, "seed": 3}
    path = tmp_path / "e2e.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "out"
    assert main(["sweep", "--config", str(path), "--out", str(out), "--no-compare",
                 "--quiet"]) == 0
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["algo"] for r in rows] == ["ddrl-nra"] * 3
    assert {"number", "state", "lr", "entropy_coef", "value", "epoch_0", "epoch_2"} <= set(rows[0])
    done = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(done, key=lambda r: float(r["value"]))
    assert float(best["epoch_2"]) == float(best["value"])
    tc = spec.train_section(str(out / "best.json"), TrainConfig())
    assert (tc.lr, tc.entropy_coef) == (float(best["lr"]), float(best["entropy_coef"]))
    assert (tc.epochs, tc.batch_size) == (3, 20)
    for png in ("ddrl-nra_history.png", "ddrl-nra_params.png"):
        assert (out / png).stat().st_size > 1000
    readme = (out / "README.md").read_text()
    assert "## Hyperparameter sweep `e2e`" in readme and "3 trials" in readme
    assert not (out / "ddrl-nra_population.npz").exists()

    # --resume on the finished sweep trains nothing (no population is even built) and
    # writes the report again from the study
    class NoPopulation:
        def __init__(self, *a, **kw):
            raise AssertionError("a finished sweep built a population")

    table = (out / "trials.csv").read_text()
    journal = (out / "study.journal").read_bytes()
    (out / "README.md").unlink()
    monkeypatch.setattr(study_mod, "Population", NoPopulation)
    assert main(["sweep", "--config", str(path), "--out", str(out), "--no-compare", "--quiet",
                 "--resume"]) == 0
    assert (out / "README.md").read_text() == readme
    assert (out / "trials.csv").read_text() == table
    assert (out / "study.journal").read_bytes() == journal  # the study is only read


def test_comparison_streams_the_numbers_of_the_materialised_test_seeds():
    """The test-seed comparison (streamed, ``train_seeds`` / ``stream_seeds``) gives every test
    seed the final AR, ACR and R/C of training on ``make_substrates`` / ``make_requests``'
    scenarios with ``train_population``, testing with ``evaluate_grid``, and running the
    heuristics with ``simulate_seeds``; the gains are the paired ones of those values."""
    from sagin_jax.experiments.sweep.compare import test_comparison
    from sagin_jax.policies.baselines import BASELINES
    from sagin_jax.simulation.batch import simulate_seeds
    from sagin_jax.training.run import evaluate_grid, train_population
    sw = _sweep_dict()
    # one trained algorithm: every algorithm of tcfgs goes through the same loop
    tcfgs = {"ddrl-nra": TrainConfig(algo="ddrl-nra", epochs=2, batch_size=20, lr=0.3,
                                     entropy_coef=0.1)}
    got = test_comparison(sw, tcfgs)
    cfg, seeds = sw["scenario"], sw["test_seeds"]
    subs = make_substrates(cfg, seeds)
    train, test = make_requests(cfg, seeds, "train"), make_requests(cfg, seeds, "test")
    table = table_size(train, test)
    want = {}
    for algo, tcfg in tcfgs.items():
        res = train_population(cfg, tcfg, seeds, Hyper.stack([Hyper.from_config(tcfg, xp=np)]),
                               progress=False, subs=subs, train_reqs=train, max_active=table)
        m = evaluate_grid(tcfg, res.params, subs, test, seeds, max_active=table).metrics
        want[algo] = {k: np.asarray(getattr(m, a))[:, 0, -1]
                      for k, a in (("AR", "ar"), ("ACR", "acr"), ("RC", "rc"))}
    for base in ("nrmvne", "grc"):
        m = simulate_seeds(BASELINES[base], None, seeds, subs, test, max_active=table)[1].metrics
        want[base] = {k: np.asarray(getattr(m, a))[:, -1]
                      for k, a in (("AR", "ar"), ("ACR", "acr"), ("RC", "rc"))}
    assert set(got["final"]) == set(want)
    for algo, per_metric in want.items():
        for k, v in per_metric.items():
            assert got["final"][algo][k] == [float(x) for x in v], (algo, k)
    ratio = np.asarray(want["ddrl-nra"]["AR"], np.float64) / want["nrmvne"]["AR"] - 1
    assert got["gain_vs"]["ddrl-nra"]["nrmvne"]["AR"]["mean"] == pytest.approx(ratio.mean())


@pytest.mark.parametrize("space, field", [
    ({"lr": {"low": 0.1, "high": 1.0, "slope": 2}}, "space.lr"),  # unknown key
    ({"learning_rate": {"low": 0.1, "high": 1.0}}, "space.learning_rate"),  # unknown parameter
    ({"lr": {"low": 1.0, "high": 1.0}}, "empty range"),
    ({"lr": {"low": -0.1, "high": 1.0, "log": True}}, "log scale"),
    ({"lr": {"low": "a", "high": 1.0}}, "space.lr.low"),
    ({"lr": {"choices": []}}, "space.lr.choices"),
])
def test_malformed_sweep_file_is_refused_with_exit_2(tmp_path, capsys, space, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"space": space, "budget": 2}))
    with pytest.raises(ValueError, match=str(path)):
        spec.load_sweep(path)
    assert main(["sweep", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and field in err, err


def test_budget_and_file_fields():
    assert spec.parse_budget(5) == ("trials", 5)
    assert spec.parse_budget("300s") == ("seconds", 300.0)
    for bad in (0, "0s", "abc", -3, 1.5):
        with pytest.raises(ValueError, match="budget"):
            spec.parse_budget(bad)


def test_train_config_round_trips_and_keys_programs_by_static_fields():
    tc = TrainConfig(lr=0.3, entropy_coef=0.1, max_grad_norm=math.inf, epochs=3)
    assert TrainConfig.from_dict(json.loads(json.dumps(tc.to_dict()))) == tc
    assert tc.static() == TrainConfig(epochs=3)
    assert TrainConfig(epochs=3, batch_size=10).static() != TrainConfig(epochs=3).static()
