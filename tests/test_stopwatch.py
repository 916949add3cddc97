"""The stopwatch behind reproduce's time split, on a hand-driven clock."""
from __future__ import annotations

import pytest

from sagin_jax.experiments.stopwatch import Stopwatch, describe


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_sections_sum_their_own_time_and_the_rest_is_other():
    clock = Clock()
    w = Stopwatch(clock)
    with w.section("train"):
        clock.now += 3.0
    clock.now += 0.5  # outside any section
    with w.section("simulate"):
        clock.now += 1.25
    with w.section("train"):
        clock.now += 2.0
    assert w.split(clock.now) == {"train": 5.0, "simulate": 1.25, "generate": 0.0,
                                  "other": 0.5}
    assert describe(w.split(clock.now)) == ("training 5.0 s, simulation 1.2 s, "
                                            "generation 0.0 s, other 0.5 s")


def test_a_nested_section_counts_once_in_the_outer_one():
    clock = Clock()
    w = Stopwatch(clock)
    with w.section("train"):
        clock.now += 1.0
        with w.section("generate"):  # e.g. scenarios generated inside a training call
            clock.now += 4.0
        clock.now += 1.0
    assert w.split(6.0) == {"train": 6.0, "simulate": 0.0, "generate": 0.0, "other": 0.0}


def test_a_section_that_raises_still_counts_and_closes():
    clock = Clock()
    w = Stopwatch(clock)
    with pytest.raises(RuntimeError):
        with w.section("simulate"):
            clock.now += 2.0
            raise RuntimeError("boom")
    with w.section("train"):  # not swallowed as "nested" after the error
        clock.now += 1.0
    assert w.seconds == {"train": 1.0, "simulate": 2.0, "generate": 0.0}


def test_an_unknown_section_is_refused():
    with pytest.raises(ValueError, match="unknown section 'plots'"):
        with Stopwatch().section("plots"):
            pass
