"""The run axis of a batched program: seeds (x hyperparameter settings) padded to the device
count, gathered and placed on the host, so that preparing a batch compiles nothing.

Every driver (simulation sweeps, training grids, bench) used to repeat this with ``x[idx]`` on
device arrays, and each such eager gather compiled a small XLA program per leaf shape; here the
gathers are numpy's and the result is handed to the devices once.
"""
from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

from sagin_jax.devices.sharding import shard_seeds


def seed_key_data(seeds: Sequence[int]) -> np.ndarray:
    """u32[S, 2]: the key data of ``jax.random.key(s)`` for every seed, on the host.

    A threefry key of a seed below 2**32 is the pair ``(0, seed)``; a test checks this against
    ``jax.random.key``.
    """
    s = np.asarray(list(seeds), dtype=np.int64)
    if s.size and (s.min() < 0 or s.max() >= 2 ** 32):
        bad = int(s[(s < 0) | (s >= 2 ** 32)][0])
        raise ValueError(f"seed must be an integer in [0, 2**32), got {bad}")
    return np.stack([np.zeros(s.shape, np.uint32), s.astype(np.uint32)], axis=-1)


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """``jax.random.key(s)`` for every seed, built on the host (no compiled program)."""
    return jax.random.wrap_key_data(jax.device_put(seed_key_data(seeds)), impl="threefry2x32")


def run_index(n_runs: int, mesh=None, multiple: int | None = None) -> np.ndarray:
    """Run indices 0..n_runs-1, padded (repeating the last run) to a multiple of ``multiple``
    (default: the mesh's device count, so every device gets an equal block). Padding rows are
    dropped by ``unpad``."""
    d = (1 if mesh is None else mesh.devices.size) if multiple is None else multiple
    return np.minimum(np.arange(-(-n_runs // d) * d), n_runs - 1)


def take(tree, idx: np.ndarray, mesh=None):
    """Rows ``idx`` of every leaf's leading axis, gathered on the host and put on the default
    device, or with a ``mesh`` straight onto its devices with the leading axis sharded (a key
    array keeps its key type). Host data is handed over as it is: placing an array that already
    sits on one device onto a mesh would compile a slicing program per leaf shape."""
    if mesh is not None:
        put = lambda a: shard_seeds(a, mesh)  # noqa: E731
    else:
        put = jax.device_put

    def one(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = np.asarray(jax.random.key_data(x))[idx]
            return jax.random.wrap_key_data(put(data), impl=jax.random.key_impl(x))
        return put(np.asarray(x)[idx])
    return jax.tree_util.tree_map(one, tree)


def take_runs(tree, idx: np.ndarray, mesh=None):
    """The batch of runs ``idx`` ready for the program: ``take(tree, idx, mesh)``."""
    return take(tree, idx, mesh)


def unpad(tree, n_runs: int):
    """The first ``n_runs`` rows of every leaf, as numpy arrays (drops mesh padding)."""
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[:n_runs], tree)
