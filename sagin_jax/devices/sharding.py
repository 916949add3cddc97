"""Multi-device and multi-host sweeps: shard the leading (seed) axis with ``jax.sharding``.

A vmapped simulation or training grid has no communication between seeds, so placing the seed
axis on a 1-D ``Mesh`` with ``NamedSharding(mesh, P("seeds"))`` makes every device run its own
seeds inside the same compiled program. With ``jax.distributed`` the mesh spans processes (hosts);
each process supplies its local seeds and reads back its own shard.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "seeds"


def seed_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (AXIS,))


def default_mesh() -> Mesh | None:
    """The seed mesh over every device when there are several (several CPU host devices with
    ``--host-devices``, several GPUs, several hosts), else None (one device: no sharding)."""
    return seed_mesh() if jax.device_count() > 1 else None


def seed_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def shard_seeds(tree, mesh: Mesh):
    """Place a pytree whose leaves all have a leading seed axis (divisible by the mesh size)."""
    n = mesh.devices.size
    for leaf in jax.tree_util.tree_leaves(tree):
        if leaf.shape[0] % n:
            raise ValueError(f"seed axis of length {leaf.shape[0]} is not divisible by the "
                             f"{n} devices of the mesh")
    return jax.device_put(tree, seed_sharding(mesh))


def shard_local_seeds(tree, mesh: Mesh):
    """Multi-process: build global arrays from each process's local seeds (leading axis)."""
    sharding = seed_sharding(mesh)
    return jax.tree_util.tree_map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def local_part(tree):
    """The rows of a seed-sharded global array that live on this process, in seed order."""
    def one(x):
        shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
        return np.concatenate([np.asarray(s.data) for s in shards], axis=0)
    return jax.tree_util.tree_map(one, tree)
