"""Where an experiment's wall time goes: training, simulation, scenario generation, the rest.

``reproduce`` times each experiment's calls into compiled programs by section and reports the
split beside the wall time (the completion marker, the results README and the final line), so
a user can see from one run how much of it is the simulator itself and how much is overhead.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

SECTIONS = ("train", "simulate", "generate")
"""The timed sections, in report order; ``other`` is the wall time outside all of them
(statistics, plots, files, host copies)."""


class Stopwatch:
    """Sums wall time per section. Only the outermost open section counts: time spent in a
    section opened inside another one belongs to the outer one, so the sections never add up
    to more than the wall time."""

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.seconds = {name: 0.0 for name in SECTIONS}
        self._open = False

    @contextmanager
    def section(self, name: str):
        if name not in self.seconds:
            raise ValueError(f"unknown section {name!r}; expected one of {SECTIONS}")
        if self._open:  # nested: the enclosing section already counts this time
            yield
            return
        self._open = True
        start = self.clock()
        try:
            yield
        finally:
            self.seconds[name] += self.clock() - start
            self._open = False

    def split(self, wall_s: float) -> dict:
        """{section: seconds, ..., "other": the rest of ``wall_s``} (other >= 0)."""
        out = dict(self.seconds)
        out["other"] = max(0.0, wall_s - sum(self.seconds.values()))
        return out


def describe(split: dict) -> str:
    """'training 24.4 s, simulation 5.1 s, generation 0.0 s, other 1.6 s'."""
    words = {"train": "training", "simulate": "simulation", "generate": "generation",
             "other": "other"}
    return ", ".join(f"{words[k]} {split[k]:.1f} s" for k in (*SECTIONS, "other") if k in split)
