"""Mean and 95% confidence interval over seeds; metric curves on a common time grid.

Intervals of bounded metrics are clipped to the metric's possible range (``METRIC_RANGE``):
acceptance is a rate in [0, 1]; revenue, ratios and the objective are >= 0. A t-interval over few
seeds can otherwise leave that range (acceptance above 1, negative AR), which no run can give.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.stats

def t975(df) -> float:
    """The two-sided 95% Student-t quantile t_{0.975, df} (exact; NaN for df < 1)."""
    if df < 1:
        return math.nan
    return float(scipy.stats.t.ppf(0.975, df))


def mean_ci(x: np.ndarray, axis: int = 0):
    """(mean, half-width of the 95% t-interval) along ``axis`` (the seed axis)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    mean = x.mean(axis=axis)
    if n < 2:
        return mean, np.full_like(mean, np.nan)
    sd = x.std(axis=axis, ddof=1)
    return mean, t975(n - 1) * sd / math.sqrt(n)


def relative_gain(a, b) -> np.ndarray:
    """Paired per-seed relative difference a / b - 1 (``a`` and ``b`` measured on the same seeds);
    its ``mean_ci`` is the paired 95% interval of a gain."""
    return np.asarray(a, np.float64) / np.asarray(b, np.float64) - 1.0


METRIC_RANGE = {"ACR": (0.0, 1.0), "AR": (0.0, math.inf), "RC": (0.0, math.inf),
                "RC_link": (0.0, math.inf), "O": (0.0, math.inf)}
"""The possible range of each metric (a 95% interval is clipped to it)."""


def clip_to_range(metric: str | None, low, high):
    """(low, high) of an interval clipped to ``metric``'s possible range (unchanged for a metric
    without one, e.g. a relative gain)."""
    lo_b, hi_b = METRIC_RANGE.get(metric, (-math.inf, math.inf))
    return np.clip(low, lo_b, hi_b), np.clip(high, lo_b, hi_b)


def interval_bounds(metric: str | None, mean, half):
    """(ci_low, ci_high) = mean -/+ half, clipped to the metric's range; NaN half stays NaN."""
    mean, half = np.asarray(mean, np.float64), np.asarray(half, np.float64)
    return clip_to_range(metric, mean - half, mean + half)


def on_time_grid(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Sample running metrics (step functions of time, one row per seed) at ``grid`` times.

    ``times``: [S, R] non-decreasing per row; ``values``: [S, ..., R] (extra axes between the
    seed axis and R are carried along). Each grid time takes the last request at or before it
    (the first request before any arrival). Vectorised over seeds: every row's times are
    shifted by ``row * span`` so one ``searchsorted`` serves all of them.
    """
    times = np.asarray(times, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    n_s, r = times.shape
    span = float(max(np.abs(times).max(initial=0.0), np.abs(grid).max(initial=0.0))) * 2 + 1
    shift = np.arange(n_s, dtype=np.float64)[:, None] * span
    flat = np.searchsorted((times + shift).ravel(), (grid[None, :] + shift).ravel(),
                           side="right").reshape(n_s, -1)
    idx = np.clip(flat - 1 - np.arange(n_s)[:, None] * r, 0, r - 1)  # [S, G]
    values = np.asarray(values)
    lead = values.shape[1:-1]
    pick = idx.reshape((n_s,) + (1,) * len(lead) + (idx.shape[1],))
    pick = np.broadcast_to(pick, (n_s,) + lead + (idx.shape[1],))
    return np.take_along_axis(values, pick, axis=-1).astype(np.float64)


def time_grid(times: np.ndarray, points: int) -> np.ndarray:
    """``points`` times from the first arrival to the earliest last arrival over seeds."""
    return np.linspace(float(times[:, 0].max()), float(times[:, -1].min()), points)
