"""Training configuration (Algorithm 1 and the RLVNE baseline).

Two kinds of setting:

* **static** (``TrainConfig``: algo, epochs, batch_size, central_server_every, reward kind,
  batch_reduce): they change the shape of the compiled program, so each distinct value is a separate
  compile;
* **traced** (``Hyper``, a pytree of f32 scalars): an array argument of the compiled trainer, so N
  settings x S seeds run as ONE program with one compile (``train_population``). ``TrainConfig``
  carries their defaults (``Hyper.from_config``); the defaults reproduce the paper's plain
  REINFORCE (no baseline, no normalisation, no entropy bonus, no clipping, full averaging).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

ALGOS = ("ddrl-nra", "rlvne")


@dataclass(frozen=True)
class TrainConfig:
    algo: str = "ddrl-nra"
    epochs: int = 10  # passes over the training requests, each from an empty network
    batch_size: int = 100  # requests per gradient update
    # Reward. "objective": O = AR/ar_scale + R/C + ACR (eq. 14, running values after the request);
    # "rc": the request's own revenue/cost (RLVNE). None = the algorithm's own choice.
    reward: str | None = None
    central_server_every: int = 0  # DDRL-NRA section IV-C: average a segment's agents every K
    #                                updates (0 = off)
    batch_reduce: str = "sum"  # "sum" (stacked gradients, eq. 21) or "mean" over the batch
    # ---- defaults of the traced hyperparameters (``Hyper``); not part of the program's shape ----
    lr: float = 0.005  # learning rate α (eq. 21)
    ar_scale: float = 20000.0  # ≈ revenue offered per time unit in the paper scenario
    failed_reward: float | None = None  # None: a failed request contributes no gradient
    init_scale: float = 0.1  # std of the initial convolution weights
    w_ar: float = 1.0  # weight of AR/ar_scale in the reward O (eq. 14: 1)
    w_rc: float = 1.0  # weight of R/C in O (eq. 14: 1)
    w_acr: float = 1.0  # weight of ACR in O (eq. 14: 1)
    central_strength: float = 1.0  # s: params <- (1-s) params + s segment mean (1 = IV-C)
    baseline_weight: float = 0.0  # 1 = subtract a running-mean reward baseline (0 = off)
    baseline_decay: float = 0.9  # decay of that running mean
    reward_norm: float = 0.0  # 1 = normalise the advantages within a batch (0 = off)
    entropy_coef: float = 0.0  # entropy bonus coefficient (0 = off)
    max_grad_norm: float = math.inf  # clip the update's global norm (inf = off)

    @property
    def reward_kind(self) -> str:
        if self.reward is not None:
            return self.reward
        return "objective" if self.algo == "ddrl-nra" else "rc"

    def validate(self, n_train: int | None = None) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}, got {self.algo!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if n_train is not None and n_train % self.batch_size:
            raise ValueError(f"batch_size={self.batch_size} must divide the {n_train} training "
                             "requests")
        if self.reward_kind not in ("objective", "rc"):
            raise ValueError(f"reward must be 'objective' or 'rc', got {self.reward!r}")
        if not self.ar_scale > 0:
            raise ValueError(f"ar_scale must be > 0, got {self.ar_scale}")
        if self.central_server_every < 0:
            raise ValueError(f"central_server_every must be >= 0, got {self.central_server_every}")
        if self.batch_reduce not in ("sum", "mean"):
            raise ValueError(f"batch_reduce must be 'sum' or 'mean', got {self.batch_reduce!r}")
        if not self.lr >= 0:
            raise ValueError(f"lr must be >= 0, got {self.lr}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 (inf = off), got {self.max_grad_norm}")
        if not 0.0 <= self.baseline_decay <= 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1], got {self.baseline_decay}")

    def static(self) -> "TrainConfig":
        """This config with every traced field at its default: the key of a compiled program."""
        return dataclasses.replace(self, **{f: getattr(TrainConfig, f) for f in HYPER_DEFAULTS})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if math.isinf(d["max_grad_norm"]):
            d["max_grad_norm"] = None  # JSON has no inf; None = off
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown train config field(s): {sorted(unknown)}")
        d = dict(d)
        if d.get("max_grad_norm", 0.0) is None:
            d["max_grad_norm"] = math.inf
        return cls(**d)


# TrainConfig fields whose value is traced (a Hyper field of the same name), with their defaults
HYPER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                  if f.name in ("lr", "ar_scale", "failed_reward", "init_scale", "w_ar", "w_rc",
                                "w_acr", "central_strength", "baseline_weight", "baseline_decay",
                                "reward_norm", "entropy_coef", "max_grad_norm")}


@struct.dataclass
class Hyper:
    """The traced training hyperparameters, f32 scalars (or f32[N] for a population).

    ``failed_weight`` is 0 when ``TrainConfig.failed_reward`` is None: the paper's rule that a
    failed request contributes no gradient; 1 gives failed requests the reward ``failed_reward``.
    """

    lr: jax.Array
    init_scale: jax.Array
    ar_scale: jax.Array
    w_ar: jax.Array
    w_rc: jax.Array
    w_acr: jax.Array
    failed_reward: jax.Array
    failed_weight: jax.Array
    central_strength: jax.Array
    baseline_weight: jax.Array
    baseline_decay: jax.Array
    reward_norm: jax.Array
    entropy_coef: jax.Array
    max_grad_norm: jax.Array

    @staticmethod
    def names() -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(Hyper))

    @classmethod
    def from_config(cls, tcfg: TrainConfig, lr=None, xp=jnp, **overrides) -> "Hyper":
        """The config's defaults (``lr`` and any field overridden) as f32 scalars."""
        vals = {k: getattr(tcfg, k) for k in HYPER_DEFAULTS}
        vals["failed_weight"] = 0.0 if tcfg.failed_reward is None else 1.0
        vals["failed_reward"] = 0.0 if tcfg.failed_reward is None else tcfg.failed_reward
        if lr is not None:
            vals["lr"] = lr
        unknown = set(overrides) - set(cls.names())
        if unknown:
            raise ValueError(f"unknown hyperparameter(s): {sorted(unknown)}")
        vals.update(overrides)
        return cls(**{k: xp.asarray(v, xp.float32) for k, v in vals.items()})

    @classmethod
    def stack(cls, hypers) -> "Hyper":
        """f32[N] leaves from N scalar Hypers (numpy, on the host)."""
        return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x, np.float32)
                                                            for x in xs]), *hypers)
