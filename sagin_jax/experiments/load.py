"""The load experiment's rules: its points (offered load and request size), the paired relative
gain, and the facts the report reads off them.

Offered load ρ = arrival rate × mean lifetime: the mean number of requests in the network if all
were accepted (Little's law; the paper's unstated defaults give 0.04 × 1000 = 40). Scaling the
rate by k or the lifetime by k gives the same ρ, and with exponential lifetimes the same process
up to a stretch of the time axis, so acceptance depends on ρ alone; the ``lifetime`` series
checks that on the simulator.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax.experiments.stats import mean_ci

SERIES = ("rate", "lifetime", "size")
"""How a point departs from the experiment's scenario: its arrival rate (at the scenario's
lifetime), its mean lifetime (at the scenario's rate), or its request size (at its load)."""


def offered_load(cfg: ScenarioConfig) -> float:
    """ρ = arrival rate × mean lifetime (requests alive on average if every one is accepted)."""
    return cfg.arrival_rate * cfg.mean_lifetime


class LoadPoint(NamedTuple):
    cfg: ScenarioConfig
    series: tuple  # the SERIES this point belongs to (one config may serve several)

    @property
    def rho(self) -> float:
        return offered_load(self.cfg)

    @property
    def req_nodes(self) -> tuple:
        return tuple(self.cfg.req_nodes)

    @property
    def label(self) -> str:
        lo, hi = self.cfg.req_nodes
        return (f"rho={self.rho:g} (rate {self.cfg.arrival_rate:g}, lifetime "
                f"{self.cfg.mean_lifetime:g}, {lo}-{hi} nodes)")


def load_points(base: ScenarioConfig, loads, lifetime_loads=(), req_nodes_ranges=()) -> list:
    """The distinct scenario configs of a load experiment, in order of first mention: each ρ of
    ``loads`` by the arrival rate ρ / lifetime, each of ``lifetime_loads`` by the lifetime
    ρ / rate, each [lo, hi] of ``req_nodes_ranges`` at the base load. A ρ equal to the base's
    (relative 1e-9) keeps the base's rate and lifetime, so a point named twice (the base load
    in ``loads`` and the base size in ``req_nodes_ranges``) is run once and carries both
    series."""
    rho0 = offered_load(base)
    found: dict = {}

    def add(series: str, cfg: ScenarioConfig) -> None:
        key = (cfg.arrival_rate, cfg.mean_lifetime, tuple(cfg.req_nodes))
        cfg_, tags = found.get(key, (cfg, ()))
        if series not in tags:
            found[key] = (cfg_, tags + (series,))

    def same(rho: float) -> bool:
        return math.isclose(rho, rho0, rel_tol=1e-9)

    for rho in loads:
        add("rate", base if same(rho) else base.replace(arrival_rate=rho / base.mean_lifetime))
    for rho in lifetime_loads:
        add("lifetime", base if same(rho) else base.replace(mean_lifetime=rho / base.arrival_rate))
    for lo, hi in req_nodes_ranges:
        add("size", base.replace(req_nodes=(int(lo), int(hi))))
    return [LoadPoint(cfg, tags) for cfg, tags in found.values()]


def paired_gain(ours, theirs) -> np.ndarray:
    """Per-seed relative gain ours / theirs − 1 on the same scenario (NaN where theirs is 0)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(theirs != 0, ours / np.where(theirs != 0, theirs, 1.0) - 1.0, np.nan)


def stat(x) -> dict:
    """Mean, 95% half-width, seed count and per-seed values of ``x`` [S]."""
    x = np.asarray(x, dtype=np.float64)
    m, h = mean_ci(x)
    return {"mean": float(m), "ci": float(h), "n": int(x.shape[0]),
            "values": [float(v) for v in x]}


# --- what the report reads off a load experiment's summary ------------------------------------

def in_series(points: list, series: str) -> list:
    """The summary's points of ``series``, by increasing ρ."""
    return sorted((p for p in points if series in p["series"]), key=lambda p: p["rho"])


def largest_gain(points: list, variant: str = "ddrl-nra", vs: str = "nrmvne",
                 metric: str = "AR"):
    """(point, gain stat) of the largest mean paired gain of ``variant`` over ``vs`` among the
    points of the rate and lifetime series ("at any load"), or None."""
    best = None
    for p in points:
        if "size" in p["series"] and not {"rate", "lifetime"} & set(p["series"]):
            continue
        g = p["gain"].get(variant, {}).get(vs, {}).get(metric)
        if g is not None and g["mean"] == g["mean"] and (best is None
                                                         or g["mean"] > best[1]["mean"]):
            best = (p, g)
    return best


def all_accept_up_to(points: list, threshold: float = 0.9):
    """(ρ, first) over the rate series by increasing ρ: ρ is the largest load up to which every
    algorithm's mean acceptance exceeds ``threshold`` at every tested load (None if not even at
    the lowest); first is (ρ, algorithm, acceptance) of the first load where one does not
    (None if all do)."""
    up_to = None
    for p in in_series(points, "rate"):
        worst = min(p["final"], key=lambda a: p["final"][a]["ACR"]["mean"])
        acr = p["final"][worst]["ACR"]["mean"]
        if not acr > threshold:
            return up_to, (p["rho"], worst, acr)
        up_to = p["rho"]
    return up_to, None


def gain_change(p_from: dict, p_to: dict, variant: str = "ddrl-nra", vs: str = "nrmvne",
                metric: str = "AR") -> dict | None:
    """Paired change of the gain between two points (the same seeds, hence the same
    substrates): stat of gain(p_to) − gain(p_from) per seed."""
    try:
        a = p_from["gain"][variant][vs][metric]["values"]
        b = p_to["gain"][variant][vs][metric]["values"]
    except KeyError:
        return None
    return stat(np.asarray(b) - np.asarray(a))
