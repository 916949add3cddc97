"""A checkpoint written with the default training config (no gradient clipping: max_grad_norm =
inf, stored as JSON null) and with every traced default changed loads back unchanged."""
from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from sagin_jax.config import small_config
from sagin_jax.policies.ddrl import init_ddrl_params
from sagin_jax.training.checkpoint import load_checkpoint, save_checkpoint
from sagin_jax.training.config import TrainConfig


@pytest.mark.parametrize("tcfg", [
    TrainConfig(),
    TrainConfig(max_grad_norm=2.5, lr=0.01, entropy_coef=0.003, baseline_weight=1.0),
])
def test_checkpoint_round_trip(tmp_path, tcfg):
    cfg = small_config()
    params = init_ddrl_params(jax.random.key(0), cfg.n_domains)
    path = save_checkpoint(tmp_path / "a.ckpt", params, cfg, tcfg, seed=3, lr=tcfg.lr)
    loaded, cfg2, tcfg2, meta = load_checkpoint(path)
    assert cfg2 == cfg and meta["seed"] == 3
    assert tcfg2 == tcfg and (math.isinf(tcfg2.max_grad_norm) == math.isinf(tcfg.max_grad_norm))
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
