"""The sweep file: its fields, checked, with one-line errors naming the file and the field; and
a sweep's best.json read back as the `train` section of `sagin-jax train --config`."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from sagin_jax.config import PAPER, ScenarioConfig
from sagin_jax.files import read_json
from sagin_jax.training.config import ALGOS, Hyper, TrainConfig

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("successive_halving", "hyperband", "none")
TOP_KEYS = {"name", "scenario", "train", "algos", "space", "batch", "train_seeds", "test_seeds",
            "budget", "sampler", "pruner", "seed", "objective_ar_scale", "rlvne_space"}
SPACE_NAMES = set(Hyper.names())


def _field(path, name: str) -> str:
    return f"{path}: field {name!r}"


def _number(path, name, v, what="a number") -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{_field(path, name)} must be {what}, got {v!r}")
    return float(v)


def _seed_list(path, name, v) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = list(range(v)) if name == "train_seeds" else list(range(10_000, 10_000 + v))
    if (not isinstance(v, list) or not v
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in v)):
        raise ValueError(f"{_field(path, name)} must be a count or a non-empty list of seeds "
                         f">= 0, got {v!r}")
    return list(v)


def validate_space(path, name: str, space) -> dict:
    """Check a search space ``{param: {"low", "high", "log"} | {"choices": [...]}}``."""
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{_field(path, name)} must be a non-empty JSON object, got {space!r}")
    out = {}
    for p, spec in space.items():
        where = f"{name}.{p}"
        if p not in SPACE_NAMES:
            raise ValueError(f"{_field(path, where)}: unknown hyperparameter (known: "
                             f"{sorted(SPACE_NAMES)})")
        if not isinstance(spec, dict):
            raise ValueError(f"{_field(path, where)} must be a JSON object, got {spec!r}")
        if "choices" in spec:
            extra = set(spec) - {"choices"}
            if extra:
                raise ValueError(f"{_field(path, where)}: unknown key(s) {sorted(extra)}")
            ch = spec["choices"]
            if not isinstance(ch, list) or not ch:
                raise ValueError(f"{_field(path, where + '.choices')} must be a non-empty list, got "
                                 f"{ch!r}")
            out[p] = {"choices": [_number(path, where + ".choices", c) for c in ch]}
            continue
        extra = set(spec) - {"low", "high", "log"}
        if extra:
            raise ValueError(f"{_field(path, where)}: unknown key(s) {sorted(extra)}")
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"{_field(path, where)} needs 'low' and 'high' (or 'choices')")
        low = _number(path, where + ".low", spec["low"])
        high = _number(path, where + ".high", spec["high"])
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ValueError(f"{_field(path, where + '.log')} must be true or false, got {log!r}")
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise ValueError(f"{_field(path, where)}: empty range low={low} high={high}")
        if log and low <= 0:
            raise ValueError(f"{_field(path, where)}: low={low} must be > 0 on a log scale")
        out[p] = {"low": low, "high": high, "log": log}
    for p, s in out.items():  # every value a trial can draw must lie in the parameter's domain
        for end, v in ([("choices", c) for c in s["choices"]] if "choices" in s
                       else [("low", s["low"]), ("high", s["high"])]):
            Hyper.check_domain(p, v, _field(path, f"{name}.{p}.{end}"))
    return out


def load_sweep(path: str | os.PathLike) -> dict:
    """Read and validate a sweep file; ValueError naming the file and field on bad input."""
    path = str(path)
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        raise ValueError(f"{path}: cannot read sweep file ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a sweep file must be a JSON object")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {sorted(unknown)} (known: {sorted(TOP_KEYS)})")
    sw: dict[str, Any] = {"name": doc.get("name", Path(path).stem)}
    if not isinstance(sw["name"], str) or not sw["name"]:
        raise ValueError(f"{_field(path, 'name')} must be a non-empty string")
    scen = doc.get("scenario")
    if scen is not None and not isinstance(scen, dict):
        raise ValueError(f"{_field(path, 'scenario')} must be a JSON object")
    try:
        sw["scenario"] = PAPER if scen is None else ScenarioConfig.from_dict(scen)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{_field(path, 'scenario')}: {e}") from None
    train = doc.get("train", {})
    if not isinstance(train, dict) or "algo" in train:
        raise ValueError(f"{_field(path, 'train')} must be a JSON object without 'algo' "
                         "(use 'algos')")
    try:
        TrainConfig.from_dict(train).validate(sw["scenario"].n_train)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{_field(path, 'train')}: {e}") from None
    sw["train"] = train
    algos = doc.get("algos", ["ddrl-nra"])
    if (not isinstance(algos, list) or not algos or any(a not in ALGOS for a in algos)
            or len(set(algos)) != len(algos)):
        raise ValueError(f"{_field(path, 'algos')} must be a list of distinct {ALGOS}, got "
                         f"{algos!r}")
    sw["algos"] = algos
    if "space" not in doc:
        raise ValueError(f"{_field(path, 'space')} is required")
    sw["space"] = validate_space(path, "space", doc["space"])
    sw["rlvne_space"] = (validate_space(path, "rlvne_space", doc["rlvne_space"])
                         if "rlvne_space" in doc else sw["space"])
    batch = doc.get("batch", 8)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"{_field(path, 'batch')} must be an integer >= 1, got {batch!r}")
    sw["batch"] = batch
    sw["train_seeds"] = _seed_list(path, "train_seeds", doc.get("train_seeds", 4))
    sw["test_seeds"] = _seed_list(path, "test_seeds", doc.get("test_seeds", 8))
    if set(sw["train_seeds"]) & set(sw["test_seeds"]):
        raise ValueError(f"{_field(path, 'test_seeds')} must not share seeds with 'train_seeds' "
                         f"(shared: {sorted(set(sw['train_seeds']) & set(sw['test_seeds']))})")
    sw["budget"] = parse_budget(doc.get("budget", 32), f"{_field(path, 'budget')}")
    sw["sampler"] = doc.get("sampler", "tpe")
    if sw["sampler"] not in SAMPLERS:
        raise ValueError(f"{_field(path, 'sampler')} must be one of {SAMPLERS}, got "
                         f"{sw['sampler']!r}")
    if sw["sampler"] == "grid" and any("choices" not in s for s in sw["space"].values()):
        raise ValueError(f"{_field(path, 'space')}: the grid sampler needs 'choices' for every "
                         "parameter")
    sw["pruner"] = doc.get("pruner", "successive_halving")
    if sw["pruner"] not in PRUNERS:
        raise ValueError(f"{_field(path, 'pruner')} must be one of {PRUNERS}, got "
                         f"{sw['pruner']!r}")
    seed = doc.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{_field(path, 'seed')} must be an integer >= 0, got {seed!r}")
    sw["seed"] = seed
    sw["objective_ar_scale"] = _number(path, "objective_ar_scale",
                                       doc.get("objective_ar_scale", 20000.0))
    if not sw["objective_ar_scale"] > 0:
        raise ValueError(f"{_field(path, 'objective_ar_scale')} must be > 0")
    return sw


def parse_budget(v, where: str = "--budget") -> tuple[str, float]:
    """``N`` trials or ``"300s"`` wall seconds -> ("trials", N) | ("seconds", 300)."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 1:
        return ("trials", v)
    if isinstance(v, str):
        s = v.strip()
        try:
            if s.endswith("s"):
                x = float(s[:-1])
                if x > 0:
                    return ("seconds", x)
            elif int(s) >= 1:
                return ("trials", int(s))
        except ValueError:
            pass
    raise ValueError(f"{where} must be a number of trials >= 1 or wall seconds like '300s', "
                     f"got {v!r}")


def train_section(path: str, tcfg: TrainConfig) -> TrainConfig:
    """The ``train`` section of a JSON file (a sweep's best.json), or ``tcfg`` if it has none;
    its algo must match ``tcfg.algo`` (the one asked for on the command line)."""
    doc = read_json(path)
    sec = doc.get("train") if isinstance(doc, dict) else None
    if sec is None:
        return tcfg
    if not isinstance(sec, dict):
        raise ValueError(f"{path}: field 'train' must be a JSON object")
    if isinstance(doc.get("best_by_algo"), dict) and tcfg.algo in doc["best_by_algo"]:
        sec = doc["best_by_algo"][tcfg.algo]
    try:
        out = TrainConfig.from_dict({**sec, "algo": sec.get("algo", tcfg.algo)})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: field 'train': {e}") from None
    if out.algo != tcfg.algo:
        raise ValueError(f"{path}: field 'train' is for algo {out.algo!r}, not --algo {tcfg.algo}")
    return out
