"""Statistical checks of the JAX scenario generator written from the specification (DESIGN.md
section 2 and ScenarioConfig), not from the generator's code, so the two cannot share a mistake.

One call makes SEEDS paper-config scenarios; every check below runs over all of them with numpy,
scipy and networkx. Tolerances are stated beside each check: z-tests at |z| < Z (4.5 sigma, a
false alarm about once in 150,000 per test) and chi-square tests at p > P_MIN.
"""
from __future__ import annotations

import functools
import math

import networkx as nx
import numpy as np
import pytest
from scipy import stats

from sagin_jax.config import PAPER

SEEDS = tuple(range(64))
Z = 4.5  # |z| bound of every z-test
P_MIN = 1e-5  # chi-square p-value bound
SPACE, AIR, GROUND = 0, 1, 2


@functools.lru_cache(maxsize=None)
def scenarios():
    from sagin_jax.scenario.generate import make_scenarios
    import jax
    sc = make_scenarios(PAPER, SEEDS)
    return jax.tree_util.tree_map(np.asarray, sc)


def _edges(sc, s, with_repair=True):
    m = sc.sub.edge_mask[s] & (with_repair | ~sc.repair[s])
    return sc.sub.edge_u[s][m], sc.sub.edge_v[s][m], sc.sub.edge_bw[s][m]


def _graph(sc, s, with_repair=True):
    g = nx.Graph()
    g.add_nodes_from(range(sc.sub.cpu.shape[1]))
    u, v, _ = _edges(sc, s, with_repair)
    g.add_edges_from(zip(u.tolist(), v.tolist()))
    return g


def _nearest(pos, i, candidates, k):
    d = np.linalg.norm(pos[candidates] - pos[i], axis=1)
    return set(np.asarray(candidates)[np.argsort(d, kind="stable")[:k]].tolist())


def _chi2_uniform(values, lo, hi):
    counts = np.bincount(values - lo, minlength=hi - lo + 1)
    assert counts.shape[0] == hi - lo + 1
    return stats.chisquare(counts).pvalue


def test_substrates_connected_simple_and_segment_degree_pattern():
    sc = scenarios()
    cfg = PAPER
    for s in range(len(SEEDS)):
        u, v, _ = _edges(sc, s)
        assert (u != v).all(), s  # no self-loops
        pairs = {(min(a, b), max(a, b)) for a, b in zip(u.tolist(), v.tolist())}
        assert len(pairs) == len(u), s  # no duplicate links
        assert nx.is_connected(_graph(sc, s)), s
        seg, pos = sc.sub.segment[s], sc.pos[s]
        g = _graph(sc, s, with_repair=False)
        space, air, ground = (np.flatnonzero(seg == k) for k in (SPACE, AIR, GROUND))
        assert (len(space), len(air), len(ground)) == (cfg.n_space, cfg.n_air, cfg.n_ground)
        for i in space:
            nb = set(g[i])
            assert len(nb & set(space.tolist())) == 3, (s, i)  # ring of 5 + same slot next plane
            assert nb & set(air.tolist()) == _nearest(pos, i, air, cfg.sat_to_uav), (s, i)
            assert not nb & set(ground.tolist()), (s, i)  # no space-ground link but repair
        air_set = set(air.tolist())
        for i in air:
            nb = set(g[i])
            others = air[air != i]
            assert _nearest(pos, i, others, cfg.air_k_nearest) <= nb, (s, i)
            assert nb & set(ground.tolist()) == _nearest(pos, i, ground, cfg.uav_to_ground), (s, i)
            for j in nb & air_set:  # every air link is some endpoint's k-nearest
                assert i in _nearest(pos, j, air[air != j], cfg.air_k_nearest) or \
                    j in _nearest(pos, i, others, cfg.air_k_nearest), (s, i, j)


def test_waxman_ground_edge_frequency():
    """Ground pairs are linked with p = alpha * exp(-d / (beta * L)), L the largest ground-pair
    distance of the scenario (repair links excluded). Pairs are binned by predicted p; per bin a
    binomial z-test |z| < Z, over all bins chi-square p > P_MIN, and the mean edge count per
    scenario within Z standard errors of sum p."""
    sc, cfg = scenarios(), PAPER
    ps, hits = [], []
    for s in range(len(SEEDS)):
        ground = np.flatnonzero(sc.sub.segment[s] == GROUND)
        pos = sc.pos[s][ground].astype(np.float64)
        a, b = np.triu_indices(len(ground), 1)
        d = np.linalg.norm(pos[a] - pos[b], axis=1)
        p = cfg.waxman_alpha * np.exp(-d / (cfg.waxman_beta * d.max()))
        g = _graph(sc, s, with_repair=False)
        ps.append(p)
        hits.append(np.array([g.has_edge(int(ground[i]), int(ground[j])) for i, j in zip(a, b)]))
    p, hit = np.concatenate(ps), np.concatenate(hits)
    edges = np.quantile(p, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    zs = []
    for k in range(10):
        sel = which == k
        expect = p[sel].sum()
        var = (p[sel] * (1 - p[sel])).sum()
        zs.append((hit[sel].sum() - expect) / math.sqrt(var))
    assert max(abs(z) for z in zs) < Z, zs
    assert stats.chi2.sf(sum(z * z for z in zs), 10) > P_MIN, zs
    per_scenario = np.array([h.sum() for h in hits])
    expected = np.array([q.sum() for q in ps])
    se = math.sqrt(sum((q * (1 - q)).sum() for q in ps)) / len(ps)
    assert abs(per_scenario.mean() - expected.mean()) < Z * se, (per_scenario.mean(),
                                                                 expected.mean(), se)


def test_capacities_and_bandwidths_integer_in_range_uniform():
    sc, cfg = scenarios(), PAPER
    seg = sc.sub.segment
    for field, ranges in (("cpu", cfg.cpu_range), ("sto", cfg.sto_range)):
        x = getattr(sc.sub, field)
        assert (x == np.round(x)).all(), field
        for k, (lo, hi) in enumerate(ranges):
            vals = x[seg == k].astype(np.int64)
            assert vals.min() >= lo and vals.max() <= hi, (field, k, vals.min(), vals.max())
            assert _chi2_uniform(vals, lo, hi) > P_MIN, (field, k)
    by_type = {}
    for s in range(len(SEEDS)):
        u, v, bw = _edges(sc, s)
        assert (bw == np.round(bw)).all()
        su, sv = seg[s][u], seg[s][v]
        for t in (SPACE, AIR, GROUND):
            by_type.setdefault(t, []).append(bw[(su == t) & (sv == t)])
        by_type.setdefault("inter", []).append(bw[su != sv])
    for t, vals in by_type.items():
        vals = np.concatenate(vals).astype(np.int64)
        lo, hi = cfg.inter_bw_range if t == "inter" else cfg.bw_range[t]
        assert vals.min() >= lo and vals.max() <= hi, (t, vals.min(), vals.max())
        assert _chi2_uniform(vals, lo, hi) > P_MIN, t


@pytest.mark.parametrize("split", ["train", "test"])
def test_arrivals_and_lifetimes(split):
    """Poisson arrivals at ``arrival_rate`` rounded to integers: inter-arrival mean 1/rate and
    variance (1/rate)^2 + 1/6 (two independent roundings); exponential lifetimes of mean
    ``mean_lifetime`` rounded to integers >= 1. Each within Z standard errors (+ 1 time unit of
    rounding/clipping bias for the lifetime mean)."""
    sc, cfg = scenarios(), PAPER
    reqs = getattr(sc, split)
    arr, life = reqs.arrival.astype(np.float64), reqs.lifetime.astype(np.float64)
    assert (arr == np.round(arr)).all() and (np.diff(arr, axis=1) >= 0).all()
    gaps = np.diff(arr, axis=1).ravel()
    mu = 1.0 / cfg.arrival_rate
    n = gaps.size
    assert abs(gaps.mean() - mu) < Z * mu / math.sqrt(n), (gaps.mean(), mu)
    var = mu * mu + 1.0 / 6.0
    se_var = math.sqrt(8.0) * mu * mu / math.sqrt(n)  # exponential: Var((X-mu)^2) = 8 mu^4
    assert abs(gaps.var() - var) < Z * se_var, (gaps.var(), var, se_var)
    assert (life == np.round(life)).all() and life.min() >= 1
    se_life = cfg.mean_lifetime / math.sqrt(life.size)
    assert abs(life.mean() - cfg.mean_lifetime) < Z * se_life + 1.0, life.mean()


@pytest.mark.parametrize("split", ["train", "test"])
def test_request_graphs(split):
    sc, cfg = scenarios(), PAPER
    r = getattr(sc, split)
    n_nodes = r.node_mask.sum(-1).ravel()
    lo, hi = cfg.req_nodes
    assert n_nodes.min() >= lo and n_nodes.max() <= hi
    assert _chi2_uniform(n_nodes.astype(np.int64), lo, hi) > P_MIN
    m = r.node_mask
    for field, (a, b) in (("cpu", cfg.req_cpu), ("sto", cfg.req_sto)):
        x = getattr(r, field)[m]
        assert (x == np.round(x)).all() and x.min() >= a and x.max() <= b, field
    bw = r.link_bw[r.link_mask]
    assert (bw == np.round(bw)).all() and bw.min() >= cfg.req_bw[0] and bw.max() <= cfg.req_bw[1]
    n_dom = sum(cfg.domains_per_segment)
    dom = r.domain[m].astype(np.int64)
    assert _chi2_uniform(dom, 0, n_dom - 1) > P_MIN
    links = possible = 0
    S, R = r.node_mask.shape[:2]
    for s in range(S):
        for k in range(R):
            n = int(m[s, k].sum())
            assert m[s, k, :n].all()  # live nodes first
            lm = r.link_mask[s, k]
            a, b = r.link_a[s, k][lm], r.link_b[s, k][lm]
            assert (a != b).all() and (a < n).all() and (b < n).all() and (a >= 0).all()
            pairs = {(min(x, y), max(x, y)) for x, y in zip(a.tolist(), b.tolist())}
            assert len(pairs) == len(a)
            g = nx.Graph()
            g.add_nodes_from(range(n))
            g.add_edges_from(pairs)
            assert nx.is_connected(g), (s, k)
            links += len(pairs)
            possible += n * (n - 1) // 2
    # the repair only adds links: density >= p minus Z standard errors of a binomial
    density = links / possible
    se = math.sqrt(cfg.req_link_prob * (1 - cfg.req_link_prob) / possible)
    assert density >= cfg.req_link_prob - Z * se, (density, se)
