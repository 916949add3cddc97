"""Checkpoints: trained parameters with the configs and seed that produced them, in one msgpack
file (flax serialization)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np
from flax import serialization

from sagin_jax.config import ScenarioConfig
from sagin_jax.training.config import TrainConfig

FORMAT = "sagin-jax-checkpoint-v1"


def save_checkpoint(path: str | os.PathLike, params, scenario: ScenarioConfig,
                    train: TrainConfig, seed: int, lr: float, extra: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "scenario": scenario.to_dict(), "train": train.to_dict(),
            "seed": int(seed), "lr": float(lr), **(extra or {})}
    blob = serialization.msgpack_serialize({
        "meta": json.dumps(meta),
        "params": jax.tree_util.tree_map(np.asarray, serialization.to_state_dict(params)),
    })
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike):
    """-> (params as nested dict of arrays, ScenarioConfig, TrainConfig, meta dict)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        blob = serialization.msgpack_restore(path.read_bytes())
        meta = json.loads(blob["meta"])
    except Exception as err:  # noqa: BLE001 - any decoding problem is a bad file
        raise ValueError(f"{path}: not a sagin-jax checkpoint ({err.__class__.__name__})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    params = jax.tree_util.tree_map(jax.numpy.asarray, blob["params"])
    return (params, ScenarioConfig.from_dict(meta["scenario"]),
            TrainConfig.from_dict(meta["train"]), meta)
