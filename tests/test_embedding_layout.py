"""The precomputed substrate layouts and the fast link mapping, against independent references.

``shortest_path`` takes the static min-hop tree's path when all of its links are eligible and
runs a BFS (bitset or edge-list layout) otherwise; whichever branch runs, the path must be the one
the networkx reference (``reference.simulate.bfs_path``, written from docs/rules.md) finds. The
layouts it reads (tree parents, neighbour lists, link ids) are checked against networkx too.
"""
from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from sagin_jax import features
from sagin_jax.config import ScenarioConfig
from sagin_jax.embedding import links as L
from sagin_jax.policies.baselines import NRMVNE
from sagin_jax.reference.simulate import bfs_path
from sagin_jax.scenario.build import build_substrate, edge_ids, neighbour_lists, tree_parents
from sagin_jax.scenario.generator import generate_requests, generate_substrate
from sagin_jax.simulation.online import simulate
from tests.conftest import small


def _graph(sub) -> nx.Graph:
    m = np.asarray(sub.edge_mask)
    g = nx.Graph()
    g.add_nodes_from(range(sub.n_nodes))
    g.add_edges_from(zip(np.asarray(sub.edge_u)[m].tolist(), np.asarray(sub.edge_v)[m].tolist()))
    return g


def _random_graph(rng, n, p):
    g = nx.gnp_random_graph(n, p, seed=int(rng.integers(1 << 30)))
    g.add_edges_from(nx.path_graph(n).edges)  # connected
    e = np.array(sorted((min(a, b), max(a, b)) for a, b in g.edges()))
    return g, e[:, 0], e[:, 1]


def test_tree_parents_follow_the_min_id_tie_break():
    rng = np.random.default_rng(0)
    for n, p in [(2, 0.0), (12, 0.3), (40, 0.08), (60, 0.2)]:
        g, u, v = _random_graph(rng, n, p)
        hops = np.array([[nx.shortest_path_length(g, s, t) for t in range(n)] for s in range(n)])
        par = tree_parents(hops, u, v)
        for s in range(n):
            d = nx.single_source_shortest_path_length(g, s)
            want = [-1 if t == s else min(x for x in g[t] if d[x] == d[t] - 1) for t in range(n)]
            assert par[s].tolist() == want, (n, s)


def test_neighbour_lists_and_link_ids():
    rng = np.random.default_rng(1)
    g, u, v = _random_graph(rng, 30, 0.15)
    nbr, eid = neighbour_lists(30, u, v)
    ids = edge_ids(30, u, v)
    k = max(dict(g.degree).values())
    assert nbr.shape == eid.shape == (30, k)
    for x in range(30):
        want = sorted(g[x])
        assert nbr[x, :len(want)].tolist() == want and (nbr[x, len(want):] == -1).all()
        for slot, y in enumerate(want):
            e = eid[x, slot]
            assert {u[e], v[e]} == {x, y} and ids[x, y] == ids[y, x] == e
        assert (eid[x, len(want):] == -1).all()
    assert (ids[~nx.to_numpy_array(g, nodelist=range(30)).astype(bool)] == -1).all()
    nbr_p, _ = neighbour_lists(30, u, v, pad_degree_to=k + 3)
    assert nbr_p.shape == (30, k + 3) and (nbr_p[:, k:] == -1).all()
    with pytest.raises(ValueError, match="pad_degree_to"):
        neighbour_lists(30, u, v, pad_degree_to=k - 1)


def test_incident_sums_match_numpy():
    sub = generate_substrate(small(), 4, pad_edges_to=64, pad_degree_to=19)
    w = np.random.default_rng(2).integers(0, 90, sub.n_edges).astype(np.float32)
    want = np.zeros(sub.n_nodes, np.float32)
    m = np.asarray(sub.edge_mask)
    np.add.at(want, np.asarray(sub.edge_u)[m], w[m])
    np.add.at(want, np.asarray(sub.edge_v)[m], w[m])
    got = np.asarray(features.residual_incident_bw(sub, jnp.asarray(w)))
    assert np.array_equal(got, want)
    deg = np.bincount(np.concatenate([np.asarray(sub.edge_u)[m], np.asarray(sub.edge_v)[m]]),
                      minlength=sub.n_nodes)
    assert np.array_equal(np.asarray(features.degree(sub)), deg.astype(np.float32))

    reqs = generate_requests(small(), 4, "test")
    for k in range(5):
        r = reqs.at(k)
        want = np.zeros(r.max_nodes, np.float32)
        lm = np.asarray(r.link_mask)
        np.add.at(want, np.asarray(r.link_a)[lm], np.asarray(r.link_bw)[lm])
        np.add.at(want, np.asarray(r.link_b)[lm], np.asarray(r.link_bw)[lm])
        assert np.array_equal(np.asarray(features.request_incident_bw(r)), want)


def test_rank_order_is_the_stable_descending_argsort():
    rng = np.random.default_rng(3)
    f = jax.jit(features.rank_order)
    for n in (1, 2, 10, 45):
        for _ in range(50):
            x = rng.integers(0, 4, n).astype(np.float32)
            x[rng.random(n) < 0.3] = -np.inf
            x[rng.random(n) < 0.2] = -0.0
            want = np.argsort(-x, kind="stable")
            assert np.asarray(f(jnp.asarray(x))).tolist() == want.tolist(), x


def test_eligible_adjacency_bits():
    rng = np.random.default_rng(4)
    g, u, v = _random_graph(rng, 70, 0.06)  # 3 words per row
    sub = build_substrate([10] * 70, [10] * 70, [2] * 70, [0] * 70, u, v, [5.0] * len(u))
    eligible = rng.random(sub.n_edges) < 0.6
    words = 3
    adj = np.asarray(L.eligible_adjacency(sub, jnp.asarray(eligible), words))
    want = np.zeros((70, words), np.uint64)
    for e in np.flatnonzero(eligible):
        a, b = int(np.asarray(sub.edge_u)[e]), int(np.asarray(sub.edge_v)[e])
        want[a, b // 32] |= np.uint64(1) << np.uint64(b % 32)
        want[b, a // 32] |= np.uint64(1) << np.uint64(a % 32)
    assert np.array_equal(adj.astype(np.uint64), want)


@pytest.mark.parametrize("layout,under_vmap", [("bitset", False), ("edges", False),
                                               ("bitset", True), ("edges", True)])
def test_shortest_path_equals_the_reference_bfs(layout, under_vmap, monkeypatch):
    """Random eligibility masks (thresholds on random residuals) on the paper topology and a
    small one; both the static-tree branch and the BFS branch must be taken and both agree
    with the reference path (same nodes, so same links and hops). ``under_vmap`` runs the
    branch-free form inside a ``vmap`` (one lane), as the environment does."""
    monkeypatch.setattr(L, "BITSET_MAX_NODES", 512 if layout == "bitset" else 0)
    rng = np.random.default_rng(5)
    if under_vmap:
        lanes = jax.vmap(lambda sub, elig, s, d: L.shortest_path(sub, elig, s, d, True)[:2],
                         in_axes=(None, 0, 0, 0))
        fn = jax.jit(lambda sub, elig, s, d: jax.tree_util.tree_map(
            lambda x: x[0], lanes(sub, elig[None], jnp.asarray(s)[None], jnp.asarray(d)[None])))
    else:
        fn = jax.jit(lambda sub, elig, s, d: L.shortest_path(sub, elig, s, d)[:2])
    took_tree = took_bfs = 0
    cases = [(ScenarioConfig(), 0), (small(), 1), (small(domains_per_segment=(1, 2, 2)), 2)]
    for cfg, seed in cases:
        sub = generate_substrate(cfg, seed)
        g = _graph(sub)
        u, v = np.asarray(sub.edge_u), np.asarray(sub.edge_v)
        hops_static = np.asarray(sub.hops)
        tree = np.asarray(sub.tree_parent)
        for _ in range(60):
            res = rng.integers(0, 100, sub.n_edges).astype(np.float32)
            demand = float(rng.integers(0, 60))
            s, d = rng.choice(sub.n_nodes, 2, replace=False).tolist()
            residual = {(int(a), int(b)): float(r) for a, b, r in zip(u, v, res)}
            want = bfs_path(g, residual, s, d, demand)
            elig = res >= demand
            hop, mask = fn(sub, jnp.asarray(elig), s, d)
            if want is None:
                assert int(hop) == 0 and not np.asarray(mask).any()
                took_bfs += 1
                continue
            want_links = {(min(a, b), max(a, b)) for a, b in zip(want, want[1:])}
            got_links = {(int(u[e]), int(v[e])) for e in np.flatnonzero(np.asarray(mask))}
            assert int(hop) == len(want) - 1 and got_links == want_links, (s, d, demand)
            # which branch ran: the static path is eligible exactly when the tree one is used
            x, static_ok = d, True
            for _ in range(hops_static[s, d]):
                p = tree[s, x]
                link = np.flatnonzero(((u == x) & (v == p)) | ((u == p) & (v == x)))[0]
                static_ok &= bool(elig[link])
                x = p
            took_tree += static_ok
            took_bfs += not static_ok
    assert took_tree > 10 and took_bfs > 10


def _compiled_text(fn, *args) -> str:
    return jax.jit(fn).lower(*args).compile().as_text()


def test_request_step_compiles_to_one_small_loop():
    """Guard for the CPU fast path: no scatter or sort anywhere in the online pass, so XLA CPU
    emits the request scan as one function (``sagin_jax.SMALL_LOOP_BYTES``); a scatter added to
    the hot path would silently cost ~2x."""
    import os
    assert "xla_cpu_small_while_loop_byte_threshold" in os.environ.get("XLA_FLAGS", "")
    cfg = ScenarioConfig(n_test=50)
    sub, reqs = generate_substrate(cfg, 0), generate_requests(cfg, 0, "test")
    text = _compiled_text(lambda k, s, r: simulate(NRMVNE, None, k, s, r, max_active=50),
                          jax.random.key(0), sub, reqs)
    assert not re.search(r" (scatter|sort)\(", text)
    scan = [line for line in text.splitlines()
            if "xla_cpu_small_call" in line and "f32[50]" in line]
    assert scan, "the request scan was not compiled as a small loop"


@pytest.mark.parametrize("layout,levels_per_trip", [("bitset", 1), ("bitset", 3), ("slots", 2)])
def test_bfs_many_finds_the_reference_paths_for_every_row(layout, levels_per_trip, monkeypatch):
    """The batched link stage's BFS (all of a round's links at once, one eligibility mask per
    row, several levels per loop trip; bitset words, or neighbour slots above
    ``BITSET_MAX_NODES``): every needed row's path equals the networkx reference's, unreachable
    rows find none, and the trips are the deepest needed row's levels (to its destination, or
    one past its component when the destination is unreachable) over the levels run per
    trip."""
    from sagin_jax.embedding import batched as B
    monkeypatch.setattr(B, "BFS_LEVELS_PER_TRIP", levels_per_trip)
    monkeypatch.setattr(L, "BITSET_MAX_NODES", 512 if layout == "bitset" else 0)
    rng = np.random.default_rng(11)
    fn = jax.jit(lambda sub, elig, s, d, need: B.bfs_many(sub, elig, s, d, need))
    paths = jax.jit(B.path_links)
    rows, seen_unreachable, seen_long = 6, 0, 0
    for cfg, seed in [(ScenarioConfig(), 0), (small(), 1)]:
        sub = generate_substrate(cfg, seed)
        g = _graph(sub)
        u, v = np.asarray(sub.edge_u), np.asarray(sub.edge_v)
        for _ in range(12):
            res = rng.integers(0, 100, (rows, sub.n_edges)).astype(np.float32)
            demand = rng.integers(0, 80, rows).astype(np.float32)
            src = rng.integers(0, sub.n_nodes, rows)
            dst = rng.integers(0, sub.n_nodes, rows)
            need = rng.random(rows) < 0.8
            elig = (res >= demand[:, None]) & np.asarray(sub.edge_mask)[None]
            dist, parent, trips = fn(sub, jnp.asarray(elig), jnp.asarray(src, jnp.int32),
                                     jnp.asarray(dst, jnp.int32), jnp.asarray(need))
            hops = np.maximum(np.asarray(dist)[np.arange(rows), dst], 0)
            mask = np.asarray(paths(sub, parent, dist, jnp.asarray(dst, jnp.int32),
                                    jnp.asarray(hops, jnp.int32)))
            deepest = 0
            for r in np.flatnonzero(need):
                residual = {(int(a), int(b)): float(x) for a, b, x in zip(u, v, res[r])}
                want = bfs_path(g, residual, int(src[r]), int(dst[r]), float(demand[r]))
                eg = nx.Graph()
                eg.add_nodes_from(g.nodes)
                eg.add_edges_from((int(a), int(b)) for a, b, ok in zip(u, v, elig[r]) if ok)
                if want is None:
                    assert hops[r] == 0 and not mask[r].any()
                    ecc = max(nx.single_source_shortest_path_length(eg, int(src[r])).values())
                    deepest = max(deepest, ecc + 1)
                    seen_unreachable += 1
                    continue
                want_links = {(min(a, b), max(a, b)) for a, b in zip(want, want[1:])}
                got = {(int(u[e]), int(v[e])) for e in np.flatnonzero(mask[r])}
                assert hops[r] == len(want) - 1 and got == want_links, (r, want)
                deepest = max(deepest, len(want) - 1)
                seen_long += len(want) > 4
            assert int(trips) == -(-deepest // levels_per_trip)
    assert seen_unreachable >= 3 and seen_long >= 3
