"""``sagin-jax evaluate --seeds`` and ``train --seeds``: one algorithm's test pass (or one agent
trained and tested per seed) over any number of seeds, in bounded memory
(``simulation.stream``, ``training.stream``), written as it goes and resumable.

Outputs in ``DIR``:
* ``per_seed.csv``: one row per seed (final AR, ACR, R/C, link R/C, O, accepted, arrived),
  appended chunk by chunk;
* ``summary.json``: each metric's mean and exact 95% t-interval over the seeds;
* ``curves.csv``: each metric's mean and 95% interval on the time grid;
* ``per_seed.png``: histograms of AR and ACR over the seeds.

The grid statistics are running sums over the seeds in seed order (float64, shifted by the
first seed's value), so neither the chunk size nor a resume changes a bit of them.
``progress.json`` records the finished chunks, the byte length of ``per_seed.csv`` they
wrote and the running sums; ``--resume`` cuts the CSV back to that length and goes on.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax.experiments.stats import interval_bounds, mean_ci, t975
from sagin_jax.files import read_json, write_csv, write_json

PER_SEED_FIELDS = ["seed", "AR", "ACR", "RC", "RC_link", "O", "accepted", "arrived"]
METRICS = ("AR", "ACR", "RC", "RC_link")
_ATTR = {"AR": "ar", "ACR": "acr", "RC": "rc", "RC_link": "rc_link"}


def parse_seeds(text: str) -> range:
    """``N`` (seeds 0..N-1) or ``A:B`` (seeds A..B-1) as a range; ValueError otherwise."""
    try:
        if ":" in text:
            a, b = (int(x) for x in text.split(":"))
        else:
            a, b = 0, int(text)
    except ValueError:
        raise ValueError(f"--seeds must be N or A:B (integers), got {text!r}") from None
    if not 0 <= a < b <= 2 ** 32:
        raise ValueError(f"--seeds {text}: need 0 <= A < B <= 2**32 (at least one seed)")
    return range(a, b)


class GridMoments:
    """Running sums over seeds of each metric on the time grid, added in seed order: n, the
    shift (the first seed's values), Σ(x - shift) and Σ(x - shift)^2 in float64."""

    def __init__(self, doc: dict | None = None):
        self.n = 0 if doc is None else int(doc["n"])
        load = (lambda k: None) if doc is None else (
            lambda k: {m: np.asarray(v, np.float64) for m, v in doc[k].items()})
        self.shift, self.s1, self.s2 = load("shift"), load("s1"), load("s2")

    def add(self, curves: dict) -> None:
        """Add the seeds of ``curves`` {metric: [S, G]} one by one (``np.cumsum`` is a sequential
        sum, so the totals do not depend on how the seeds were cut into chunks)."""
        if self.shift is None:
            self.shift = {m: np.asarray(v[0], np.float64) for m, v in curves.items()}
            self.s1 = {m: np.zeros_like(v) for m, v in self.shift.items()}
            self.s2 = {m: np.zeros_like(v) for m, v in self.shift.items()}
        for m, v in curves.items():
            d = np.asarray(v, np.float64) - self.shift[m]
            self.s1[m] = np.cumsum(np.concatenate([self.s1[m][None], d]), axis=0)[-1]
            self.s2[m] = np.cumsum(np.concatenate([self.s2[m][None], d * d]), axis=0)[-1]
        self.n += int(next(iter(curves.values())).shape[0])

    def mean_ci(self, metric: str):
        """(mean, 95% half-width) per grid time; NaN half-width for a single seed."""
        n, s1, s2 = self.n, self.s1[metric], self.s2[metric]
        mean = self.shift[metric] + s1 / n
        if n < 2:
            return mean, np.full_like(mean, np.nan)
        var = np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)
        return mean, t975(n - 1) * np.sqrt(var) / math.sqrt(n)

    def to_json(self) -> dict:
        as_lists = lambda d: {m: v.tolist() for m, v in d.items()}  # noqa: E731
        return {"n": self.n, "shift": as_lists(self.shift), "s1": as_lists(self.s1),
                "s2": as_lists(self.s2)}


def _fingerprint(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _rows(seeds, summary, objective, extra: dict) -> list[str]:
    f = summary.final
    o = objective(f)
    lines = []
    for i, seed in enumerate(seeds):
        vals = [seed] + [repr(float(getattr(f, _ATTR[m])[i])) for m in METRICS] + [
            repr(float(o[i])), int(summary.accepted[i]), int(summary.arrived[i])] + [
            repr(float(v[i])) for v in extra.values()]
        lines.append(",".join(str(v) for v in vals) + "\n")
    return lines


def _append(path: Path, lines: list[str]) -> int:
    """Append ``lines`` in one write, flushed to disk; -> the file's new byte length."""
    with open(path, "a", encoding="utf-8", newline="") as fh:
        fh.write("".join(lines))
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()


def _start(out: Path, run: dict, resume: bool, fields: list[str]):
    """(first chunk to run, GridMoments) after checking or resetting ``out``'s progress."""
    csv_path, state_path = out / "per_seed.csv", out / "progress.json"
    header = ",".join(fields) + "\n"
    if resume and state_path.exists():
        state = read_json(state_path)
        if state.get("fingerprint") != run["fingerprint"]:
            raise ValueError(f"--resume: {out} holds a different evaluation (algorithm, config, "
                             "seeds, chunk or grid); use a new --out or drop --resume")
        with open(csv_path, "r+b") as fh:  # drop rows of a chunk that was not recorded
            fh.truncate(int(state["csv_bytes"]))
        return int(state["chunks_done"]), GridMoments(state["moments"])
    if not resume and state_path.exists():
        raise ValueError(f"{out} holds an evaluation already; pass --resume to continue it "
                         "or choose a new --out")
    (out / "per_seed.csv").write_text(header, encoding="utf-8")
    return 0, GridMoments()


def evaluate_seeds(cfg: ScenarioConfig, algo: str, policy, params, seeds: range, out,
                   points: int = 60, chunk: int | None = None, resume: bool = False,
                   progress: bool = True, source: dict | None = None,
                   strategy: str | None = None) -> list[Path]:
    """Run ``policy`` (``params``: None for a heuristic, else shared by every seed) on the test
    requests of every seed of ``seeds`` through ``stream_seeds`` and write ``out``'s files;
    -> the paths written. ``source`` (e.g. the checkpoint) is recorded in summary.json."""
    from sagin_jax.simulation.stream import stream_seeds

    def stream(grid, chunk, first, record):
        stream_seeds(cfg, policy, params, list(seeds), grid, chunk=chunk, first_chunk=first,
                     on_chunk=lambda c, summary: record(c, summary, {}), strategy=strategy)
    return sweep_seeds(cfg, algo, seeds, out, stream, points, chunk, resume, progress,
                       source or {}, "evaluate")


TRAIN_FIELDS = ["train_AR", "train_ACR", "train_RC", "train_O"]
"""The extra per_seed.csv columns of ``train_seeds_to``: the running training metrics after the
last batch of the last epoch (Fig. 4's last point)."""


def train_seeds_to(cfg: ScenarioConfig, tcfg, seeds: range, out, lr: float | None = None,
                   points: int = 60, chunk: int | None = None, resume: bool = False,
                   progress: bool = True) -> list[Path]:
    """Train one agent per seed (``training.stream.train_seeds``), test each greedily on its
    seed's test requests, and write ``out``'s files as ``evaluate_seeds`` does, with the
    ``TRAIN_FIELDS`` columns, plus each chunk's trained parameters in
    ``params/chunk-NNNNNN.npz`` (``seeds`` and one array per parameter, named by its path)."""
    import jax
    from sagin_jax.training.stream import train_seeds
    out = Path(out)
    lr = tcfg.lr if lr is None else lr

    def stream(grid, chunk, first, record):
        def one(c, result):  # the run's one setting: index 0 of the population axis
            params, curves, summary = jax.tree_util.tree_map(lambda x: x[:, 0], result)
            curves = jax.tree_util.tree_map(lambda x: x[:, -1], curves)  # the last epoch
            _save_params(out / "params" / f"chunk-{c:06d}.npz",
                         seeds[c * chunk:(c + 1) * chunk], params)
            record(c, summary, dict(zip(TRAIN_FIELDS, (curves.ar[:, -1], curves.acr[:, -1],
                                                        curves.rc[:, -1],
                                                        curves.objective[:, -1]))))
        train_seeds(cfg, tcfg, list(seeds), grid, lr=lr, chunk=chunk, first_chunk=first,
                    on_chunk=one)
    source = {"train": tcfg.to_dict(), "lr": lr}
    return sweep_seeds(cfg, tcfg.algo, seeds, out, stream, points, chunk, resume, progress,
                       source, "train", TRAIN_FIELDS)


def _save_params(path: Path, seeds, params) -> None:
    from sagin_jax.files import atomic_path
    import jax
    path.parent.mkdir(parents=True, exist_ok=True)
    leaves = {"/".join(str(getattr(k, "key", k)) for k in kp): np.asarray(v)
              for kp, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, seeds=np.asarray(list(seeds), np.int64), **leaves)


def sweep_seeds(cfg: ScenarioConfig, algo: str, seeds: range, out, stream, points: int,
                chunk: int | None, resume: bool, progress: bool, source: dict, verb: str,
                extra_fields: list[str] = ()) -> list[Path]:
    """The bookkeeping of a streaming run over ``seeds``: ``stream(grid, chunk, first_chunk,
    record)`` runs the chunks and calls ``record(c, summary, extra_columns)`` for each; this
    appends the rows, updates the grid sums and ``progress.json``, shows the progress bar and
    writes the outputs. -> the paths written."""
    from sagin_jax.simulation.stream import default_time_grid
    from sagin_jax.training.reinforce import DEFAULT_AR_SCALE, objective
    from sagin_jax.scenario.generate import default_chunk, _generation_mesh
    import jax

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = default_time_grid(cfg, points)
    chunk = default_chunk(_generation_mesh("local")) if chunk is None else chunk
    run = {"command": verb, "algo": algo, "config": cfg.to_dict(),
           "seeds": [seeds.start, seeds.stop], "chunk": chunk, "points": points,
           "source": source}
    run["fingerprint"] = _fingerprint(run)
    fields = PER_SEED_FIELDS + list(extra_fields)
    first, moments = _start(out, run, resume, fields)
    n_chunks = -(-len(seeds) // chunk)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(seeds), initial=min(first * chunk, len(seeds)),
                   desc=f"{verb} {algo}", unit="seed")
    to_o = lambda f: np.asarray(objective(jax.tree_util.tree_map(np.asarray, f),  # noqa: E731
                                          DEFAULT_AR_SCALE))
    t0 = time.perf_counter()

    def record(c: int, summary, extra: dict) -> None:
        part = seeds[c * chunk:(c + 1) * chunk]
        size = _append(out / "per_seed.csv", _rows(part, summary, to_o, extra))
        moments.add({m: getattr(summary.curves, _ATTR[m]) for m in METRICS})
        write_json(out / "progress.json", {**run, "chunks_done": c + 1, "csv_bytes": size,
                                           "moments": moments.to_json()})
        if bar is not None:
            bar.update(len(part))
            bar.set_postfix(AR=f"{float(np.mean(summary.final.ar)):.0f}",
                            ACR=f"{float(np.mean(summary.final.acr)):.3f}")

    try:
        stream(grid, chunk, first, record)
    finally:
        if bar is not None:
            bar.close()
    wall_s = time.perf_counter() - t0
    return _write_outputs(out, run, grid, moments, n_chunks, wall_s)


def read_per_seed(path: Path) -> dict:
    """``per_seed.csv``'s columns as float64 arrays, read by numpy's C parser: the parsed values
    alone, 8 bytes each, so a million seeds' rows take 64 MB (``genfromtxt`` built Python
    objects per field first)."""
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    values = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    return {name: values[:, i] for i, name in enumerate(header)}


def _write_outputs(out: Path, run: dict, grid, moments: GridMoments, n_chunks: int,
                   wall_s: float) -> list[Path]:
    data = read_per_seed(out / "per_seed.csv")
    metrics = {}
    for name in METRICS + ("O",):
        mean, half = mean_ci(data[name])
        low, high = interval_bounds(name, mean, half)
        metrics[name] = {"mean": float(mean), "ci_low": float(low), "ci_high": float(high),
                         "half_width": float(half)}
    summary = {k: v for k, v in run.items() if k != "fingerprint"}
    summary.update(n_seeds=int(data["seed"].shape[0]), chunks=n_chunks, metrics=metrics,
                   wall_s_last_run=round(wall_s, 3),
                   interval="mean +- t_{0.975, n-1} * sd / sqrt(n) over seeds")
    rows = []
    for name in METRICS:
        mean, half = moments.mean_ci(name)
        low, high = interval_bounds(name, mean, half)
        rows += [{"time": float(grid[i]), "metric": name, "mean": mean[i], "ci_low": low[i],
                  "ci_high": high[i], "n_seeds": moments.n} for i in range(len(grid))]
    paths = [out / "per_seed.csv",
             write_json(out / "summary.json", summary),
             write_csv(out / "curves.csv",
                       ["time", "metric", "mean", "ci_low", "ci_high", "n_seeds"], rows)]
    from sagin_jax.experiments.plots import per_seed_histograms
    per_seed_histograms(out / "per_seed.png", run["algo"], data["AR"], data["ACR"])
    return paths + [out / "per_seed.png"]
