"""Many seeds at once: stack per-seed scenarios (edges padded to a common E) and run the online
process for all of them in one compiled ``jit(vmap(...))`` call."""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np

from sagin_jax.config import ScenarioConfig
from sagin_jax.policies.base import NodePolicy
from sagin_jax.scenario.build import build_requests, build_substrate, max_concurrent
from sagin_jax.scenario.generator import (_seed_streams, generate_request_dicts,
                                          substrate_arrays)
from sagin_jax.scenario.types import Requests, Substrate, stack
from sagin_jax.simulation.online import simulate


def make_substrates(cfg: ScenarioConfig, seeds: Sequence[int]) -> Substrate:
    """The substrates of ``seeds`` stacked on a leading axis, edge lists padded to the largest."""
    cfg.validate()
    arrays = [substrate_arrays(cfg, _seed_streams(s)[0]) for s in seeds]
    e_max = max(a["edge_u"].shape[0] for a in arrays)
    return stack([build_substrate(a["cpu"], a["sto"], a["segment"], a["domain"], a["edge_u"],
                                  a["edge_v"], a["edge_bw"], pad_edges_to=e_max)
                  for a in arrays])


def make_requests(cfg: ScenarioConfig, seeds: Sequence[int], split: str) -> Requests:
    """The ``split`` request sets of ``seeds``, stacked."""
    return stack([build_requests(generate_request_dicts(cfg, s, split), cfg.n_domains,
                                 cfg.max_req_nodes) for s in seeds])


@functools.partial(jax.jit, static_argnames=("policy", "max_active", "record_paths"))
def simulate_batch(policy: NodePolicy, params, keys, subs: Substrate, reqs: Requests,
                   max_active: int, record_paths: bool = False):
    """``simulate`` vmapped over a leading seed axis of keys, substrates and requests.

    ``params`` is shared by all seeds (``None`` for the heuristics).
    """
    run = functools.partial(simulate, policy, params, max_active=max_active,
                            record_paths=record_paths)
    return jax.vmap(run)(keys, subs, reqs)


def table_size(reqs: Requests) -> int:
    """Active-request table size that cannot overflow for any seed of ``reqs``."""
    return max_concurrent(reqs)


def seed_keys(seeds: Sequence[int]):
    return jax.vmap(jax.random.key)(np.asarray(seeds, dtype=np.uint32))
