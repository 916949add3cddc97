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
from sagin_jax.files import atomic_write_bytes
from sagin_jax.training.config import TrainConfig

FORMAT = "sagin-jax-checkpoint-v1"


def save_checkpoint(path: str | os.PathLike, params, scenario: ScenarioConfig,
                    train: TrainConfig, seed: int, lr: float, extra: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "scenario": scenario.to_dict(), "train": train.to_dict(),
            "seed": int(seed), "lr": float(lr), **(extra or {})}
    state = jax.tree_util.tree_map(np.asarray, serialization.to_state_dict(params))
    bad = [jax.tree_util.keystr(k) for k, v in jax.tree_util.tree_leaves_with_path(state)
           if not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"refusing to save checkpoint {path}: parameter {bad[0]} holds NaN or "
                         "inf (training diverged; lower --lr)")
    blob = serialization.msgpack_serialize({"meta": json.dumps(meta), "params": state})
    return atomic_write_bytes(path, blob)


def load_checkpoint(path: str | os.PathLike, algo: str | None = None):
    """-> (params as nested dict of arrays, ScenarioConfig, TrainConfig, meta dict). Every problem
    (missing file, unknown format, missing ``params``, NaN/inf parameters, configs of the wrong
    type, an agent of another algorithm than ``algo``) is a ValueError naming the file."""
    from sagin_jax.validate import checkpoint_contents
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        blob = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - any decoding problem is a bad file
        raise ValueError(f"{path}: not a sagin-jax checkpoint ({err.__class__.__name__})") from None
    meta, state, scenario, train = checkpoint_contents(blob, path, FORMAT, algo)
    params = jax.tree_util.tree_map(jax.numpy.asarray, state)
    return params, scenario, train, meta
