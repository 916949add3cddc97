"""Training configuration (Algorithm 1 and the RLVNE baseline). Every default is documented in the
README; the learning rate is NOT here: it is a traced argument of ``train`` so a grid of rates runs
in one compiled call."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

ALGOS = ("ddrl-nra", "rlvne")


@dataclass(frozen=True)
class TrainConfig:
    algo: str = "ddrl-nra"
    epochs: int = 10  # passes over the training requests, each from an empty network
    batch_size: int = 100  # requests per gradient update
    # Reward. "objective": O = AR/ar_scale + R/C + ACR (eq. 14, running values after the request);
    # "rc": the request's own revenue/cost (RLVNE). None = the algorithm's own choice.
    reward: str | None = None
    ar_scale: float = 20000.0  # ≈ revenue offered per time unit in the paper scenario
    failed_reward: float | None = None  # None: a failed request contributes no gradient
    init_scale: float = 0.1  # std of the initial convolution weights
    central_server_every: int = 0  # DDRL-NRA section IV-C: average a segment's agents every K
    #                                updates (0 = off)
    batch_reduce: str = "sum"  # "sum" (stacked gradients, eq. 21) or "mean" over the batch

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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown train config field(s): {sorted(unknown)}")
        return cls(**d)
