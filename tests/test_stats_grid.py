"""Running metrics sampled on a common time grid (stats.on_time_grid): hand-worked cases."""
from __future__ import annotations

import numpy as np

from sagin_jax.experiments.stats import on_time_grid


def test_each_grid_time_takes_the_last_request_at_or_before_it():
    times = np.array([[0.0, 10.0, 20.0], [5.0, 5.0, 30.0]])
    values = np.array([[1.0, 2.0, 3.0], [7.0, 8.0, 9.0]])
    grid = np.array([-1.0, 0.0, 9.9, 10.0, 25.0, 31.0])
    # seed 0: before 0 -> first request; 0 -> 1; 9.9 -> 1; 10 -> 2; 25 -> 3; 31 -> 3
    # seed 1: before 5 -> first; 5 -> the LAST of the two at 5 (8); 25 -> 8; 31 -> 9
    expect = np.array([[1, 1, 1, 2, 3, 3], [7, 7, 8, 8, 8, 9]], dtype=float)
    np.testing.assert_array_equal(on_time_grid(times, values, grid), expect)


def test_extra_axes_between_seed_and_request_are_carried():
    times = np.array([[0.0, 10.0], [0.0, 20.0]])
    values = np.arange(8.0).reshape(2, 2, 2)  # [seed, lr, request]
    out = on_time_grid(times, values, np.array([5.0, 15.0]))
    np.testing.assert_array_equal(out, [[[0, 1], [2, 3]], [[4, 4], [6, 6]]])
