"""Run a seed sweep across devices and processes, and check it equals the single-device run.

    python -m sagin_jax.experiments.multihost --seeds 8                      # all local devices
    python -m sagin_jax.experiments.multihost --seeds 8 --num-processes 2 \\
        --process-id 0 --coordinator 127.0.0.1:12345 --out part0.npz       # one of N processes

Every process supplies its own block of seeds; the seed axis is sharded over the global mesh
(``sagin_jax.devices.sharding``), so each device simulates its seeds inside one compiled
program and each process writes back only its own rows.
"""
from __future__ import annotations

import argparse

import jax
import numpy as np

from sagin_jax.config import small_config
from sagin_jax.devices import sharding
from sagin_jax.devices.seed_axis import seed_keys
from sagin_jax.policies.baselines import BASELINES
from sagin_jax.simulation.batch import make_requests, make_substrates, table_size
from sagin_jax.simulation.online import simulate


def sweep_arrays(cfg, seeds):
    """Inputs of a test-mode sweep over ``seeds``: (raw key data [S, 2] of ``seed_keys`` (raw so
    that it shards like any array), substrates, requests, active-table size)."""
    subs = make_substrates(cfg, seeds)
    reqs = make_requests(cfg, seeds, "test")
    keys = jax.random.key_data(seed_keys(seeds))
    return keys, subs, reqs, table_size(reqs)


def make_sweep(max_active: int, policy_name: str = "nrmvne"):
    """jit(vmap) of one seed's online pass -> (accepted, revenue, AR) per request."""
    policy = BASELINES[policy_name]

    def one(key_data, sub, req):
        _, out = simulate(policy, None, jax.random.wrap_key_data(key_data), sub, req, max_active)
        return out.accepted, out.value.revenue, out.metrics.ar

    return jax.jit(jax.vmap(one))


def run(seeds: int, num_processes: int = 1, process_id: int = 0, coordinator: str | None = None):
    """This process's block of an NRMVNE sweep over seeds 0..seeds-1 (small_config) on the
    global mesh; -> ((accepted, revenue, AR) of its rows, slice of its seeds)."""
    if num_processes > 1:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    cfg = small_config()
    all_seeds = list(range(seeds))
    # every process agrees on the padded shapes (computed from all seeds, cheap host work)
    inputs = sweep_arrays(cfg, all_seeds)
    max_active = inputs[3]
    per = seeds // num_processes
    mine = slice(process_id * per, (process_id + 1) * per)
    local = jax.tree_util.tree_map(lambda x: np.asarray(x)[mine], inputs[:3])
    args = sharding.shard_local_seeds(local, sharding.seed_mesh())
    out = make_sweep(max_active)(*args)
    return sharding.local_part(out), mine


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--coordinator", default=None)
    p.add_argument("--out", help="write this process's rows to an .npz file")
    a = p.parse_args(argv)
    (acc, rev, ar), mine = run(a.seeds, a.num_processes, a.process_id, a.coordinator)
    print(f"process {a.process_id}/{a.num_processes}: {jax.device_count()} devices "
          f"({jax.local_device_count()} local), seeds {mine.start}..{mine.stop - 1}, "
          f"accepted {int(acc.sum())}")
    if a.out:
        np.savez(a.out, accepted=acc, revenue=rev, ar=ar, start=mine.start, stop=mine.stop)


if __name__ == "__main__":
    main()
