"""The loop-trip count of a request step (``Outcome.trips``), hand-worked on a tiny substrate.

Every substrate node is its own domain, so each request node has one candidate host and the
placements are forced. Links (bandwidth 10): 0-1, 1-2 (the static min-hop path 0-1-2) and the
detour 0-3, 3-4, 4-2.
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

from sagin_jax.embedding import batched as B
from sagin_jax.embedding import links as L
from sagin_jax.policies.baselines import NRMVNE
from sagin_jax.scenario.build import build_requests, build_substrate
from sagin_jax.simulation.online import simulate, trips_per_request

LINKS = [(0, 1), (1, 2), (0, 3), (3, 4), (2, 4)]


def _req(t, life, nodes, links):
    return {"arrival": t, "lifetime": life,
            "nodes": [{"cpu": c, "sto": 1, "domain": d} for c, d in nodes],
            "links": [{"a": a, "b": b, "bw": w} for a, b, w in links]}


REQUESTS = [
    # hosts 0, 2; the static path 0-1-2 is eligible: 2 node trips + 1 link trip + 2 path steps
    _req(0, 5, [(1, 0), (1, 2)], [(0, 1, 6)]),
    # 0-1-2 keeps 4 < 6: the static walk (2 steps) fails, BFS runs 3 levels to reach 2 over the
    # detour and walks its 3 steps back: 2 + 1 + 2 + 3 + 3
    _req(1, 10, [(1, 0), (1, 2)], [(0, 1, 6)]),
    # both earlier requests have departed: 2 release trips + 1 node trip
    _req(20, 100, [(1, 1)], []),
    # node 3 has 10 CPU: the node stage fails at its first node and embeds no link
    _req(21, 1, [(50, 3), (1, 4)], [(0, 1, 1)]),
    # hosts 0, 1, 2; links (0,1) and (0,2), 6 each, both first want link 0-1 (10): the second
    # finds it at 4 and detours over 0-3-4-2. Sequential: 3 node trips, then 1 + 1 step for the
    # first link and 1 + 2 (static walk) + 3 (BFS levels) + 3 (steps) for the second.
    # Batched: round 1 commits the first link and finds the second's candidate spoilt; round 2
    # runs a 3-level BFS for it.
    _req(22, 1, [(1, 0), (1, 1), (1, 2)], [(0, 1, 6), (0, 2, 6)]),
]
SEQUENTIAL_TRIPS = [5, 11, 3, 1, 14]
# batched: no release or node trips; one trip per link round plus its BFS trips, run here with
# 2 BFS levels per trip (``BFS_LEVELS_PER_TRIP``): the 3-level BFS takes 2 trips
BATCHED_TRIPS = [1, 1 + 2, 0, 0, 1 + (1 + 2)]


@pytest.mark.parametrize("strategy,layout", [("sequential", "bitset"), ("sequential", "edges"),
                                             ("batched", "bitset")])
def test_trip_count_of_hand_worked_requests(strategy, layout, monkeypatch):
    if layout == "edges":
        monkeypatch.setattr(L, "BITSET_MAX_NODES", 0)
    monkeypatch.setattr(B, "BFS_LEVELS_PER_TRIP", 2)
    u, v = zip(*LINKS)
    sub = build_substrate([10.0] * 5, [10.0] * 5, [2] * 5, list(range(5)), u, v, [10.0] * 5)
    reqs = build_requests(REQUESTS, 5, 3)
    _, out = jax.jit(lambda k: simulate(NRMVNE, None, k, sub, reqs, 4, strategy=strategy))(
        jax.random.key(0))
    assert np.asarray(out.accepted).tolist() == [True, True, True, False, True]
    # link hops: 2, 3, -, -, 1 + 3 (cost = node part + Σ bw · hops)
    assert np.asarray(out.value.cost).tolist() == [4 + 12, 4 + 18, 2, 0, 6 + 6 + 18]
    want = SEQUENTIAL_TRIPS if strategy == "sequential" else BATCHED_TRIPS
    assert np.asarray(out.trips).tolist() == want
    assert trips_per_request(out) == (np.mean(want), max(want))
