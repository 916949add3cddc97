"""A sweep's population: ``n_slots`` settings x S seeds of one static training configuration,
trained epoch by epoch as one compiled program, each slot refilled with a new setting in place."""
from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from sagin_jax.files import atomic_path
from sagin_jax.scenario.types import compact_requests, compact_substrate
from sagin_jax.simulation.batch import make_requests, make_substrates, table_size
from sagin_jax.devices.seed_axis import seed_keys, take_runs
from sagin_jax.devices.sharding import default_mesh
from sagin_jax.training.config import Hyper, TrainConfig
from sagin_jax.training.run import grid_programs, population_epoch_program, population_runs


def is_key(x) -> bool:
    """Whether ``x`` is an array of typed PRNG keys."""
    return jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _select_runs(mask, new, old):
    def pick(a, b):
        m = mask.reshape(mask.shape + (1,) * (a.ndim - 1))
        if is_key(a):
            return jax.random.wrap_key_data(
                jnp.where(m[..., None], jax.random.key_data(a), jax.random.key_data(b)),
                impl="threefry2x32")
        return jnp.where(m, a, b)
    return jax.tree_util.tree_map(pick, new, old)


# rows of ``new`` where ``mask`` (bool[runs]), else of ``old``: one compiled program
select_runs = jax.jit(_select_runs, donate_argnums=(2,))


class Population:
    """``n_slots`` settings x S seeds of one static training configuration, trained epoch by epoch
    as one compiled program (``grid_programs``: compiled once per shape).

    Every run of the population carries its own epoch counter and epoch keys, so the slots can be
    at different epochs: ``refill`` re-initialises chosen slots with new settings (a fresh carry
    from the same compiled ``init``, selected row by row into the old one by one compiled
    ``jnp.where``) while the others keep training. Every slot of a seed uses that seed's key, so
    a setting trained in any slot, started at any epoch of the sweep, gets the same numbers.

    Unlike the test comparison (``compare.test_comparison``, streamed), the population keeps
    its training scenarios materialised: the few training seeds' substrates and training
    requests are generated once and held in their compact dtypes, one copy per run (seeds x
    slots), because every trial trains on them every epoch. On the paper scenario a seed's
    1,000 training requests take 228 KB and its substrate 80 KB, so
    ``experiments/sweeps/ddrl_paper.json`` (8 seeds x 32 slots) holds 256 x 308 KB = 79 MB;
    this grows with seeds x slots, never with the test seeds."""

    def __init__(self, cfg, tcfg: TrainConfig, seeds, n_slots: int, subs=None, train_reqs=None,
                 mesh="default"):
        self.tcfg, self.seeds, self.n_slots = tcfg, list(seeds), n_slots
        # the run axis (seeds x slots) is sharded over every device (``--host-devices``); each
        # run is computed alone, so the trials' numbers do not depend on the device count
        self.mesh = default_mesh() if mesh == "default" else mesh
        subs = make_substrates(cfg, self.seeds) if subs is None else subs
        train_reqs = make_requests(cfg, self.seeds, "train") if train_reqs is None else train_reqs
        self.max_active = table_size(train_reqs)
        _, seed_of, self.slot_of = population_runs(len(self.seeds), n_slots, self.mesh)
        self.slot_of = np.asarray(self.slot_of)
        self.keys, self.subs, self.reqs = take_runs(
            (seed_keys(self.seeds), compact_substrate(subs), compact_requests(train_reqs)),
            seed_of, self.mesh)
        self.init, _ = grid_programs(tcfg, train_reqs.n_requests, self.max_active, None,
                                     self.mesh)
        self.epoch = population_epoch_program(tcfg, train_reqs.n_requests, self.max_active,
                                              None, self.mesh)

    def start(self, hypers: Hyper):
        """Carry for ``hypers`` (f32[n_slots] leaves)."""
        return self.init(self.keys, take_runs(hypers, self.slot_of, self.mesh), self.subs)

    def refill(self, carry, slots, hypers: Hyper):
        """``carry`` with the runs of ``slots`` (slot indices) re-initialised for ``hypers``
        (f32[n_slots] leaves; only the rows of ``slots`` are used). No new compile."""
        mask = np.isin(self.slot_of, np.asarray(list(slots), np.int64))
        return select_runs(mask, self.start(hypers), carry)

    def step(self, carry, live_slots=None):
        """One epoch of every slot in ``live_slots`` (slot indices; default all), the others
        idle at no cost on a CPU; -> (carry, metrics of the last batch {ar, acr, rc}:
        f64[S, n_slots], 0 for idle slots)."""
        live = (np.ones(len(self.slot_of), bool) if live_slots is None
                else np.isin(self.slot_of, np.asarray(list(live_slots), np.int64)))
        carry, curve = self.epoch(carry, self.subs, self.reqs,
                                  take_runs(live, np.arange(len(live)), self.mesh))
        n_s = len(self.seeds)
        last = {k: np.asarray(getattr(curve, k))[: n_s * self.n_slots, -1]
                .astype(np.float64).reshape(n_s, self.n_slots) for k in ("ar", "acr", "rc")}
        return carry, last

    def save(self, carry, path: Path, **meta) -> None:
        """Checkpoint the carry (host numpy; PRNG keys as their key data) and ``meta`` arrays,
        atomically: a checkpoint is either the old one or the new one."""
        leaves = jax.tree_util.tree_leaves(carry)
        arrays = {f"leaf_{i}": np.asarray(jax.random.key_data(x) if is_key(x) else x)
                  for i, x in enumerate(leaves)}
        meta = {k: np.asarray(v) for k, v in meta.items()}
        with atomic_path(path) as tmp:
            np.savez(tmp, n_slots=self.n_slots, seeds=np.asarray(self.seeds), **meta, **arrays)

    def load(self, path: Path):
        """-> (carry, meta dict) of a checkpoint written by ``save`` for this population."""
        with np.load(path) as z:
            if int(z["n_slots"]) != self.n_slots or list(z["seeds"]) != self.seeds:
                raise ValueError(f"{path}: checkpoint of another population (slots "
                                 f"{int(z['n_slots'])}, seeds {list(z['seeds'])}); expected "
                                 f"{self.n_slots} slots, seeds {self.seeds}")
            data = {k: z[k] for k in z.files}
        template = self.start(Hyper.stack([Hyper.from_config(self.tcfg, xp=np)] * self.n_slots))
        leaves, treedef = jax.tree_util.tree_flatten(template)
        new = [jax.random.wrap_key_data(data[f"leaf_{i}"], impl="threefry2x32") if is_key(x)
               else data[f"leaf_{i}"] for i, x in enumerate(leaves)]
        meta = {k: v for k, v in data.items() if not k.startswith("leaf_")}
        carry = jax.tree_util.tree_unflatten(treedef, new)
        # placed as ``start`` places a carry (on the mesh when there is one): no new compile
        return take_runs(carry, np.arange(len(self.slot_of)), self.mesh), meta
