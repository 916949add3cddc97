"""What the study asks with: Optuna's sampler and pruner by name, and a trial's settings as the
traced hyperparameters (``Hyper``) of the trainer."""
from __future__ import annotations

import numpy as np
import optuna

from sagin_jax.training.config import Hyper, TrainConfig


def make_sampler(kind: str, seed: int, space: dict) -> optuna.samplers.BaseSampler:
    """``tpe`` (with the constant liar, so trials running in other slots or workers are not
    asked again), ``random`` or ``grid`` (every parameter a list of ``choices``)."""
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return optuna.samplers.GridSampler({p: s["choices"] for p, s in space.items()}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(kind: str, max_epochs: int) -> optuna.pruners.BasePruner:
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs)
    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)


def suggest(trial: optuna.Trial, space: dict) -> dict:
    """The trial's value of every parameter of ``space`` (a checked sweep-file space)."""
    out = {}
    for p, s in space.items():
        if "choices" in s:
            out[p] = float(trial.suggest_categorical(p, s["choices"]))
        else:
            out[p] = trial.suggest_float(p, s["low"], s["high"], log=s["log"])
    return out


def hyper_of(tcfg: TrainConfig, params: dict, xp=np) -> Hyper:
    """The traced hyperparameters of ``tcfg`` with a trial's ``params`` in place."""
    over = dict(params)
    if "failed_reward" in over and "failed_weight" not in over:
        over["failed_weight"] = 1.0  # searching the failed reward means failed requests count
    return Hyper.from_config(tcfg, xp=xp, **over)
