"""Scenario configuration: the paper's Table II plus the design brief's defaults for every gap.

Every number the simulator uses lives here as a field, so an experiment file can override it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sagin_jax.checks import is_finite_number, is_int, is_number, one_line, where_prefix

Range = tuple[int, int]

MAX_CAPACITY = 10 ** 9
"""Largest capacity or demand a config may draw: integers up to here stay exact in float32 sums
of a few values, and far from float32 overflow."""
MAX_TIME = 1e9
"""Largest mean lifetime or inter-arrival time accepted: times are float32 in the simulator."""


@dataclass(frozen=True)
class ScenarioConfig:
    """One SAGIN scenario family (substrate + request sets). Ranges are inclusive integer ranges."""

    # --- substrate (Table II) ---
    n_space: int = 10
    n_air: int = 30
    n_ground: int = 60
    # (space, air, ground) capacity ranges
    cpu_range: tuple[Range, Range, Range] = ((50, 80), (50, 80), (50, 100))
    sto_range: tuple[Range, Range, Range] = ((50, 80), (50, 80), (50, 100))
    bw_range: tuple[Range, Range, Range] = ((50, 80), (50, 80), (50, 100))
    inter_bw_range: Range = (50, 80)
    # --- topology (paper silent; DESIGN section 2 defaults) ---
    space_planes: int = 2  # n_space satellites split evenly over planes, +Grid links
    air_k_nearest: int = 3  # each UAV linked to its k nearest UAVs
    waxman_alpha: float = 0.5  # ground: p(u,v) = alpha * exp(-d / (beta * L))
    waxman_beta: float = 0.2
    uav_to_ground: int = 2  # each UAV linked to its nearest ground nodes
    sat_to_uav: int = 2  # each satellite linked to its nearest UAVs
    domains_per_segment: tuple[int, int, int] = (1, 1, 1)  # edge physical domains per segment
    # --- requests (Table II) ---
    req_nodes: Range = (2, 10)
    max_req_nodes: int = 10  # padding size M (>= req_nodes[1])
    req_cpu: Range = (1, 50)
    req_sto: Range = (1, 50)
    req_bw: Range = (1, 50)
    req_link_prob: float = 0.5
    # --- online process (ViNE conventions, DESIGN section 2) ---
    arrival_rate: float = 0.04  # requests per time unit (4 per 100)
    mean_lifetime: float = 1000.0  # time units, exponential
    n_train: int = 1000
    n_test: int = 1000
    # --- static padding of the generated substrate (None: scenario_bounds' formula) ---
    max_edges: int | None = None  # link-list length
    max_degree: int | None = None  # neighbour-list width

    @property
    def n_nodes(self) -> int:
        return self.n_space + self.n_air + self.n_ground

    @property
    def n_domains(self) -> int:
        return int(sum(self.domains_per_segment))

    def replace(self, **changes: Any) -> "ScenarioConfig":
        return dataclasses.replace(self, **changes)

    def _check_types(self) -> None:
        def is_range(v):
            return isinstance(v, tuple) and len(v) == 2 and all(is_int(x) for x in v)

        for name in ("n_space", "n_air", "n_ground", "space_planes", "air_k_nearest",
                     "uav_to_ground", "sat_to_uav", "max_req_nodes", "n_train", "n_test"):
            v = getattr(self, name)
            if not is_int(v):
                raise ValueError(f"{name} must be an integer, got {v!r}")
        for name in ("waxman_alpha", "waxman_beta", "req_link_prob", "arrival_rate",
                     "mean_lifetime"):
            v = getattr(self, name)
            if not is_number(v):
                raise ValueError(f"{name} must be a number, got {v!r}")
        for name in ("cpu_range", "sto_range", "bw_range"):
            v = getattr(self, name)
            if not (isinstance(v, tuple) and len(v) == 3 and all(is_range(r) for r in v)):
                raise ValueError(f"{name} must be three [lo, hi] integer ranges (space, air, "
                                 f"ground), got {v!r}")
        for name in ("inter_bw_range", "req_nodes", "req_cpu", "req_sto", "req_bw"):
            v = getattr(self, name)
            if not is_range(v):
                raise ValueError(f"{name} must be an integer range [lo, hi], got {v!r}")
        v = self.domains_per_segment
        if not (isinstance(v, tuple) and len(v) == 3 and all(is_int(x) for x in v)):
            raise ValueError(f"domains_per_segment must be 3 integers, got {v!r}")
        for name in ("max_edges", "max_degree"):
            v = getattr(self, name)
            if v is not None and not is_int(v):
                raise ValueError(f"{name} must be an integer or null, got {v!r}")

    def validate(self) -> None:
        """Raise ValueError naming the field and value of the first bad setting."""
        self._check_types()
        for name in ("space_planes", "air_k_nearest", "uav_to_ground", "sat_to_uav"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.waxman_alpha <= 1:
            raise ValueError(f"waxman_alpha must be in (0, 1], got {self.waxman_alpha}")
        if not self.waxman_beta > 0:
            raise ValueError(f"waxman_beta must be > 0, got {self.waxman_beta}")
        for name in ("n_space", "n_air", "n_ground"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("cpu_range", "sto_range", "bw_range"):
            for seg, (lo, hi) in enumerate(getattr(self, name)):
                if not (0 <= lo <= hi):
                    raise ValueError(f"{name}[{seg}] must satisfy 0 <= lo <= hi, got {(lo, hi)}")
        for name in ("inter_bw_range", "req_nodes", "req_cpu", "req_sto", "req_bw"):
            lo, hi = getattr(self, name)
            if not (0 <= lo <= hi):
                raise ValueError(f"{name} must satisfy 0 <= lo <= hi, got {(lo, hi)}")
        for name in ("cpu_range", "sto_range", "bw_range", "inter_bw_range", "req_cpu",
                     "req_sto", "req_bw"):
            v = getattr(self, name)
            top = max(r[1] for r in v) if isinstance(v[0], tuple) else v[1]
            if top > MAX_CAPACITY:
                raise ValueError(f"{name} upper bound {top} exceeds {MAX_CAPACITY:.0e} "
                                 "(float32 capacities and demands would be inexact)")
        if self.n_air > 1 and self.air_k_nearest >= self.n_air:
            raise ValueError(f"air_k_nearest={self.air_k_nearest} must be < n_air="
                             f"{self.n_air} (a UAV has n_air - 1 other UAVs)")
        if self.uav_to_ground > self.n_ground:
            raise ValueError(f"uav_to_ground={self.uav_to_ground} exceeds n_ground="
                             f"{self.n_ground}")
        if self.sat_to_uav > self.n_air:
            raise ValueError(f"sat_to_uav={self.sat_to_uav} exceeds n_air={self.n_air}")
        for name in ("max_edges", "max_degree"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 (or null for the default), got {v}")
        if self.req_nodes[0] < 1:
            raise ValueError(f"req_nodes lower bound must be >= 1, got {self.req_nodes}")
        if self.req_nodes[1] > self.max_req_nodes:
            raise ValueError(
                f"req_nodes upper bound {self.req_nodes[1]} exceeds max_req_nodes "
                f"(padding) {self.max_req_nodes}"
            )
        if not 0.0 <= self.req_link_prob <= 1.0:
            raise ValueError(f"req_link_prob must be in [0, 1], got {self.req_link_prob}")
        if not self.arrival_rate > 0:
            raise ValueError(f"arrival_rate must be > 0, got {self.arrival_rate}")
        if not self.mean_lifetime > 0:
            raise ValueError(f"mean_lifetime must be > 0, got {self.mean_lifetime}")
        for name in ("waxman_alpha", "waxman_beta", "req_link_prob", "arrival_rate",
                     "mean_lifetime"):
            if not is_finite_number(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)!r}")
        if len(self.domains_per_segment) != 3 or min(self.domains_per_segment) < 1:
            raise ValueError(
                f"domains_per_segment must be 3 positive ints, got {self.domains_per_segment}"
            )
        for seg, (n, k) in enumerate(
            zip((self.n_space, self.n_air, self.n_ground), self.domains_per_segment)
        ):
            if k > n:
                raise ValueError(
                    f"domains_per_segment[{seg}]={k} exceeds the segment's {n} nodes"
                )
        if self.n_space % self.space_planes:
            raise ValueError(
                f"n_space={self.n_space} must be a multiple of space_planes={self.space_planes}"
            )
        for name in ("n_train", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ScenarioConfig":
        if not isinstance(d, dict):
            raise ValueError(f"scenario config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown scenario config field(s): {sorted(unknown)}")
        conv = {}
        for k, v in d.items():
            if isinstance(v, list):
                v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
            conv[k] = v
        cfg = cls(**conv)
        cfg.validate()
        return cfg

    @classmethod
    def from_json(cls, doc, path=None, field: str = "scenario") -> "ScenarioConfig":
        """A ScenarioConfig from a JSON object read from ``path``; every problem is a ValueError
        naming ``path`` and the field."""
        w = where_prefix(path)
        if not isinstance(doc, dict):
            raise ValueError(f"{w}field '{field}' must be a JSON object, got "
                             f"{type(doc).__name__}")
        # times are float32: a finite but huge lifetime would overflow (a RuntimeWarning, then an
        # error blaming another field), so bound them here, naming the field
        for name in ("mean_lifetime", "arrival_rate"):
            v = doc.get(name)
            if v is None:
                continue
            if not is_finite_number(v) or not v > 0:
                raise ValueError(f"{w}{field}.{name} must be a finite number > 0, got {v!r}")
            t = v if name == "mean_lifetime" else 1.0 / v
            if not t <= MAX_TIME:
                raise ValueError(f"{w}{field}.{name} = {v!r} gives times above {MAX_TIME:.0e} "
                                 "(float32 time stamps would be inexact)")
        try:
            return cls.from_dict(doc)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{w}{field}: {one_line(err)}") from None


PAPER = ScenarioConfig()
"""The paper scenario (Table II + DESIGN defaults)."""


def small_config() -> ScenarioConfig:
    """A small scenario for fast tests: 20 nodes, 60 requests each."""
    return ScenarioConfig(
        n_space=4, n_air=6, n_ground=10, n_train=60, n_test=60,
    )


__all__ = ["ScenarioConfig", "PAPER", "small_config", "field"]
