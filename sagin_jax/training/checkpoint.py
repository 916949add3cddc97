"""Checkpoints: trained parameters with the configs and seed that produced them, in one msgpack
file (flax serialization)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np
from flax import serialization

from sagin_jax.checks import check_seed, where_prefix
from sagin_jax.config import ScenarioConfig
from sagin_jax.files import atomic_write_bytes
from sagin_jax.policies.ddrl import init_ddrl_params
from sagin_jax.policies.rlvne import init_rlvne_params
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
    type, an agent of another algorithm than ``algo``, parameters that are not the declared
    algorithm's) is a ValueError naming the file."""
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


def expected_params(algo: str, n_domains: int) -> dict:
    """{key path: (shape, dtype)} of the parameters of an ``algo`` agent for ``n_domains`` domains
    (traced, nothing computed)."""
    init = {"ddrl-nra": lambda key: init_ddrl_params(key, n_domains),
            "rlvne": init_rlvne_params}[algo]
    tree = serialization.to_state_dict(jax.eval_shape(init, jax.random.key(0)))
    return {jax.tree_util.keystr(k): (tuple(v.shape), np.dtype(v.dtype))
            for k, v in jax.tree_util.tree_leaves_with_path(tree)}


def params_mismatch(state, algo: str, n_domains: int) -> str | None:
    """How the parameter tree ``state`` differs from an ``algo`` agent's for ``n_domains``
    domains (names, shapes, dtypes), or None if it is one."""
    want = expected_params(algo, n_domains)
    got = {jax.tree_util.keystr(k): (np.shape(v), np.asarray(v).dtype)
           for k, v in jax.tree_util.tree_leaves_with_path(state)}
    missing, unexpected = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or unexpected:
        return (f"missing {missing or 'nothing'}, unexpected {unexpected or 'nothing'}")
    for name, (shape, dtype) in want.items():
        if got[name] != (shape, dtype):
            return (f"parameter {name} is {got[name][1]}{list(got[name][0])}, expected "
                    f"{dtype}{list(shape)}")
    return None


def checkpoint_contents(blob, path, fmt: str, algo: str | None = None):
    """Check a decoded checkpoint; -> (meta, params state dict, ScenarioConfig, TrainConfig)."""
    w = where_prefix(path)
    if not isinstance(blob, dict) or "meta" not in blob:
        raise ValueError(f"{w}not a sagin-jax checkpoint (no 'meta' record)")
    try:
        meta = json.loads(blob["meta"])
    except (TypeError, ValueError):
        raise ValueError(f"{w}not a sagin-jax checkpoint ('meta' is not JSON)") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{w}not a sagin-jax checkpoint ('meta' is not an object)")
    if meta.get("format") != fmt:
        raise ValueError(f"{w}unknown checkpoint format {meta.get('format')!r} (expected "
                         f"{fmt!r})")
    for key in ("scenario", "train", "seed"):
        if key not in meta:
            raise ValueError(f"{w}checkpoint metadata lacks field '{key}'")
    if "params" not in blob or not isinstance(blob["params"], dict) or not blob["params"]:
        raise ValueError(f"{w}checkpoint has no 'params' (parameters)")
    leaves = jax.tree_util.tree_leaves_with_path(blob["params"])
    if not leaves:
        raise ValueError(f"{w}checkpoint 'params' holds no arrays")
    for key_path, leaf in leaves:
        arr = np.asarray(leaf)
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{w}checkpoint parameter {jax.tree_util.keystr(key_path)} is not "
                             "numeric")
        if not np.isfinite(arr).all():
            raise ValueError(f"{w}checkpoint parameter {jax.tree_util.keystr(key_path)} holds "
                             "NaN or inf (a diverged training run)")
    check_seed(f"{w}checkpoint field 'seed'", meta["seed"])
    scen = ScenarioConfig.from_json(meta["scenario"], path)
    train = TrainConfig.from_json(meta["train"], path)
    if algo is not None and train.algo != algo:
        raise ValueError(f"{w}checkpoint holds a {train.algo} agent, not {algo}")
    mismatch = params_mismatch(blob["params"], train.algo, scen.n_domains)
    if mismatch:
        raise ValueError(f"{w}checkpoint parameters are not those of the {train.algo} agent its "
                         f"metadata declares ({mismatch})")
    return meta, blob["params"], scen, train
