"""The study loop: Optuna's ask-and-tell filling the slots of a population, one epoch a tick."""
from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from sagin_jax.experiments.sweep.population import Population
from sagin_jax.experiments.sweep.samplers import hyper_of, make_pruner, make_sampler, suggest
from sagin_jax.experiments.sweep.storage import JOURNAL, open_storage, shown_url, study_name
from sagin_jax.training.config import Hyper, TrainConfig

MAIN = "main"  # the worker name of the sweep that creates the studies


def validation_objective(last: dict, ar_scale: float) -> np.ndarray:
    """f64[n_slots]: the seed mean of O = AR/ar_scale + R/C + ACR (eq. 14, unit weights) at the
    end of the epoch's last batch, on the training requests. Fixed weights, so a trial cannot
    raise its score by reweighting its own reward."""
    return (last["ar"] / ar_scale + last["rc"] + last["acr"]).mean(axis=0)


class _DeferInterrupt:
    """Hold a Ctrl-C (SIGINT) back until the block ends, so the study and the population
    checkpoint are written together (only in the main thread; elsewhere a no-op)."""

    def __enter__(self):
        self.got, self.old = None, None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, lambda s, f: setattr(self, "got", (s, f)))
        return self

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)
            if self.got is not None:
                raise KeyboardInterrupt
        return False


def checkpoint_path(out: Path, algo: str, worker: str | None) -> Path:
    """A worker's population checkpoint: its own file, so workers never overwrite each other."""
    return out / (f"{algo}_population.npz" if worker is None
                  else f"{algo}_population.{worker}.npz")


def storage_label(storage, out: Path) -> str:
    """How a message names the storage: the journal file, or the database URL."""
    if isinstance(storage, optuna.storages.JournalStorage):
        return str(out / JOURNAL)
    url = getattr(getattr(storage, "engine", None), "url", None)
    return shown_url(str(url)) if url is not None else type(storage).__name__


def open_study(sw: dict, algo: str, storage, out: Path, worker: str | None,
               resume: bool) -> optuna.Study:
    """The study of ``algo``: created by the sweep without a worker name (ValueError if it
    exists and ``resume`` is False), joined by a worker (ValueError if it does not exist)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(sw["name"], algo)
    tcfg = TrainConfig.from_dict({**sw["train"], "algo": algo})
    pruner = make_pruner(sw["pruner"], tcfg.epochs)
    exists = name in optuna.study.get_all_study_names(storage)
    where = storage_label(storage, out)
    if worker is not None:
        if not exists:
            raise ValueError(f"{where} holds no study {name!r}: start the sweep without --worker "
                             "first; a worker only joins a study")
        return optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    if exists and not resume:
        raise ValueError(f"{where} already holds study {name!r}: pass --resume to continue it "
                         "or choose another --out / --storage")
    if exists:  # loaded, not created again: a journal would log a second, refused creation
        return optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    return optuna.create_study(study_name=name, storage=storage, direction="maximize",
                               pruner=pruner)


def run_study(sw: dict, algo: str, out: Path, budget: tuple[str, float], resume: bool,
              progress: bool = True, population: Population | None = None, storage=None,
              worker: str | None = None) -> optuna.Study:
    """Run (or continue) the Optuna study of ``algo``; returns the study.

    The population of ``sw["batch"]`` slots is kept full. It trains one epoch at a time (a
    *tick*); after each tick every live trial reports its validation objective for ITS OWN epoch
    (step e = its e-th epoch), and a trial that the pruner stops or that has finished all its
    epochs is told at once and frees its slot. Then every free slot, in slot order, gets a new
    trial (``study.ask``) while the budget allows, re-initialised in place (``Population.refill``,
    no recompile); the other slots go on. When the budget is spent, free slots idle (masked)
    until the last live trial ends. A trials budget counts every trial of the study, whichever
    worker asked it.

    ``storage``: an Optuna storage (default: the journal file ``out/study.journal``).
    ``worker``: None creates the study (``resume`` continues it); a name joins an existing study
    as one more population of slots, on this machine or another. Each trial records the worker
    that asked it (user attribute ``worker``).

    Determinism: the sampler is re-created before every ask, seeded from (sweep seed, trial
    number), and trials are reported, told and asked in slot order at each tick, so the same
    sweep file + seed give the same trials on one worker (several workers interleave their
    trials as their epochs happen to end). After each tick the live slots (trial numbers,
    epochs, the training carry) are checkpointed to ``checkpoint_path`` with Ctrl-C held back
    while the study and the checkpoint are written; a sweep interrupted and continued with
    ``--resume`` therefore asks and scores the same trials as an uninterrupted one. (After a
    hard kill inside that short write window, trials already told are kept and not told again,
    and trials this worker asked but had not yet checkpointed are reused in order; only a kill
    between one trial's report and its tell can change that trial's pruning decision, as the
    pruner records its rung when asked.) Raising the budget of a FINISHED study asks new trials
    after the old ones, which is not the same as one sweep with the larger budget (there the
    slots would have been refilled earlier).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tcfg = TrainConfig.from_dict({**sw["train"], "algo": algo})
    space = sw["rlvne_space"] if algo == "rlvne" else sw["space"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    storage = open_storage(None, out) if storage is None else storage
    me = MAIN if worker is None else worker
    study = open_study(sw, algo, storage, out, worker, resume)
    pop = population
    n_slots = sw["batch"] if pop is None else pop.n_slots
    ckpt = checkpoint_path(out, algo, worker)
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    slot_trial: list = [None] * n_slots  # optuna Trial per slot, None = free
    slot_epoch = [0] * n_slots  # epochs the slot's trial has trained
    carry = None

    def population_() -> Population:
        nonlocal pop
        if pop is None:  # built (and compiled) only when a slot has a trial to train
            pop = Population(sw["scenario"], tcfg, sw["train_seeds"], sw["batch"])
        return pop

    if trials and ckpt.exists():
        carry, meta = population_().load(ckpt)
        for i, (num, ep) in enumerate(zip(meta["trial"].tolist(), meta["epoch"].tolist())):
            if num >= 0:
                slot_trial[i] = optuna.trial.Trial(study, by_number[num]._trial_id)
                slot_epoch[i] = ep
    held = {t.number for t in slot_trial if t is not None}
    # the study as the checkpoint's slots left it (a replayed tick after a hard kill skips
    # what was already written); kept on the host so a tick reads the study only to ask
    told = {n for n in held if by_number[n].state != TrialState.RUNNING}
    reported = {(n, e) for n in held for e in by_number[n].intermediate_values}
    # this worker's trials asked after its last checkpoint (a hard kill in the write window):
    # reused as its next asks
    orphans = [t for t in trials if t.state == TrialState.RUNNING and t.number not in held
               and t.user_attrs.get("worker", MAIN) == me]
    kind, amount = budget
    n_grid = (math.prod(len(s["choices"]) for s in space.values())
              if sw["sampler"] == "grid" else math.inf)
    t_start = time.perf_counter()

    def may_ask() -> bool:
        if orphans:
            return True
        # every trial of the study counts, whichever worker asked it; a failed one does not
        n_used = sum(t.state != TrialState.FAIL for t in study.get_trials(deepcopy=False))
        if n_used >= n_grid:
            return False
        if kind == "trials":
            return n_used < int(amount)
        return time.perf_counter() - t_start < amount

    def ask() -> optuna.Trial:
        if orphans:
            number = orphans[0].number
            study.sampler = make_sampler(sw["sampler"], sw["seed"] * 1_000_003 + number, space)
            return optuna.trial.Trial(study, orphans.pop(0)._trial_id)
        number = len(study.get_trials(deepcopy=False))  # the next number, unless another
        study.sampler = make_sampler(sw["sampler"], sw["seed"] * 1_000_003 + number, space)
        t = study.ask()
        if t.number != number:  # worker asked in between: seeded by the number it got
            study.sampler = make_sampler(sw["sampler"], sw["seed"] * 1_000_003 + t.number, space)
        t.set_user_attr("worker", me)
        return t

    bar = None
    if progress:
        n0 = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        bar = tqdm(total=int(amount) if kind == "trials" else None, initial=n0,
                   desc=f"sweep {algo}" + ("" if worker is None else f" ({worker})"),
                   unit="trial")
    slot_hyper = [hyper_of(tcfg, {})] * n_slots

    def fill() -> None:
        nonlocal carry
        new = []
        for i in range(n_slots):
            if slot_trial[i] is None and may_ask():
                t = ask()
                slot_trial[i], slot_epoch[i] = t, 0
                slot_hyper[i] = hyper_of(tcfg, suggest(t, space))
                new.append(i)
        if new:
            hypers = Hyper.stack(slot_hyper)
            carry = (population_().start(hypers) if carry is None
                     else population_().refill(carry, new, hypers))

    def finish(i: int, state, value=None) -> None:
        study.tell(slot_trial[i], value, state=state)
        slot_trial[i] = None
        if bar is not None:
            bar.update(1)

    def save() -> None:
        population_().save(carry, ckpt,
                           trial=[-1 if t is None else t.number for t in slot_trial],
                           epoch=slot_epoch)

    with _DeferInterrupt():
        fill()
        if carry is not None:
            save()
    while any(t is not None for t in slot_trial):
        carry, last = pop.step(carry, [i for i, t in enumerate(slot_trial) if t is not None])
        obj = validation_objective(last, sw["objective_ar_scale"])
        with _DeferInterrupt():
            for i, t in enumerate(slot_trial):
                if t is None:
                    continue
                e = slot_epoch[i]
                slot_epoch[i] = e + 1
                v = float(obj[i])
                if t.number in told:  # told before a hard kill: a replayed tick
                    slot_trial[i] = None
                    continue
                if (t.number, e) not in reported:
                    t.report(v, e)
                if e + 1 >= tcfg.epochs:
                    finish(i, *((TrialState.COMPLETE, v) if math.isfinite(v)
                                else (TrialState.FAIL, None)))
                elif t.should_prune():
                    finish(i, TrialState.PRUNED)
            fill()
            save()
        if bar is not None:
            try:
                bar.set_postfix(best=f"{study.best_value:.4f}")
            except ValueError:
                pass
    if bar is not None:
        bar.close()
    ckpt.unlink(missing_ok=True)
    return study
