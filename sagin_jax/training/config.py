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

from sagin_jax.checks import is_finite_number, is_int, is_number, one_line, where_prefix

ALGOS = ("ddrl-nra", "rlvne")


@dataclass(frozen=True)
class Domain:
    """The values a traced hyperparameter may take: an interval of the real line whose ends are
    included unless ``low_open`` / ``high_open``."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            return False
        above = v > self.low if self.low_open else v >= self.low
        below = v < self.high if self.high_open else v <= self.high
        return bool(above and below)

    def __str__(self) -> str:
        if self.high == math.inf:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open else ']'}")


POSITIVE = Domain(0.0, math.inf, low_open=True, high_open=True)
NON_NEGATIVE = Domain(0.0, math.inf, high_open=True)
UNIT = Domain(0.0, 1.0)
HYPER_DOMAINS = {
    "lr": POSITIVE,  # a step size α (eq. 21)
    "init_scale": POSITIVE,  # a standard deviation
    "ar_scale": POSITIVE,  # divides AR in O (eq. 14)
    "w_ar": NON_NEGATIVE, "w_rc": NON_NEGATIVE, "w_acr": NON_NEGATIVE,  # weights of O's terms
    "failed_weight": UNIT,
    "central_strength": UNIT,  # params <- (1 - s) params + s mean
    "baseline_weight": UNIT,
    "baseline_decay": Domain(0.0, 1.0, high_open=True),  # at 1 the running mean never moves
    "reward_norm": UNIT,
    "entropy_coef": NON_NEGATIVE,
    "max_grad_norm": Domain(0.0, math.inf, low_open=True),  # inf = no clipping
}
"""The domain of every traced hyperparameter that has one (``failed_reward`` is any finite
number); ``train``'s flags, ``TrainConfig`` and the sweep's search spaces all check against it."""


def check_domain(name: str, v, label: str | None = None) -> None:
    """ValueError "``label`` must be <domain>, got v" if ``v`` lies outside ``name``'s domain."""
    domain = HYPER_DOMAINS.get(name)
    if domain is not None and v not in domain:
        raise ValueError(f"{label or name} must be {domain}, got {v!r}")


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
        for name in HYPER_DEFAULTS:
            check_domain(name, getattr(self, name))

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

    @classmethod
    def from_json(cls, doc, path=None, field: str = "train",
                  n_train: int | None = None) -> "TrainConfig":
        """A validated TrainConfig from a JSON object read from ``path``: each field must have
        the type of its default (an int field an integer, a float field a finite number, a str
        field a string), then ``validate``. Every problem is a ValueError naming ``path`` and the
        field."""
        w = where_prefix(path)
        if not isinstance(doc, dict):
            raise ValueError(f"{w}field '{field}' must be a JSON object, got "
                             f"{type(doc).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - set(fields))
        if unknown:
            raise ValueError(f"{w}unknown {field} field(s) {unknown}; known: {sorted(fields)}")
        for name, v in doc.items():
            f = fields[name]
            default = f.default if f.default is not dataclasses.MISSING else None
            if name == "max_grad_norm" and (v is None or is_number(v) and math.isinf(v) and v > 0):
                continue  # null or inf = no clipping (JSON has no inf; to_dict writes null)
            kind = _field_kind(default)
            ok = {"bool": lambda x: isinstance(x, bool),
                  "int": is_int,
                  "number": is_finite_number,
                  "str": lambda x: isinstance(x, str)}.get(kind, lambda x: True)(v)
            if kind is None and v is not None and not isinstance(v, (str, int, float, list)):
                ok = False
            if kind is None and isinstance(v, float) and not math.isfinite(v):
                ok = False
            if not ok:
                want = {"int": "an integer", "number": "a finite number", "str": "a string",
                        "bool": "true or false"}.get(kind, "a number, string or null")
                raise ValueError(f"{w}{field}.{name} must be {want}, got {v!r}")
        try:
            cfg = cls.from_dict(doc)
            cfg.validate(n_train)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{w}{field}: {one_line(err)}") from None
        return cfg


def _field_kind(default) -> str | None:
    """The JSON type a TrainConfig field must have, from its default's type (None: a None default
    or a container, left to ``validate``)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return "str"
    return None


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

    check_domain = staticmethod(check_domain)

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
