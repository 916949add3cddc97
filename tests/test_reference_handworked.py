"""Hand-worked tests of the plain-Python reference (sagin_jax/reference) against docs/rules.md.

Every expected number below is worked out by hand in the comments from the rules, not taken from
a run of the code.
"""

from __future__ import annotations

import copy
import json
import math
import random

import networkx as nx
import numpy as np
import pytest

from sagin_jax.reference import check_audit, load_audit_dir
from sagin_jax.reference.simulate import (
    bfs_path,
    capacities,
    grc_vector,
    running_metrics,
    simulate,
)

TRACE_KEYS = {
    "id", "arrival", "departure", "accepted", "node_map", "paths",
    "revenue", "cost", "link_revenue", "link_cost",
}


# ---------------------------------------------------------------------------------------------
# Scenario builders
# ---------------------------------------------------------------------------------------------

def sub_node(i, domain, cpu=100.0, sto=100.0, segment=0):
    return {"id": i, "segment": segment, "domain": domain, "cpu": float(cpu), "sto": float(sto)}


def sub_link(u, v, bw):
    return {"u": u, "v": v, "bw": float(bw)}


def rnode(cpu, sto, domain):
    return {"cpu": float(cpu), "sto": float(sto), "domain": domain}


def rlink(a, b, bw):
    return {"a": a, "b": b, "bw": float(bw)}


def request(rid, arrival, lifetime, nodes, links):
    return {"id": rid, "arrival": float(arrival), "lifetime": float(lifetime),
            "nodes": nodes, "links": links}


def scenario(nodes, links, requests):
    return {"nodes": nodes, "links": links, "requests": requests}


def one_domain_per_node(n, cpu=100.0, sto=100.0):
    """Substrate nodes whose domain equals their id, so a request node's domain pins its host."""
    return [sub_node(i, i, cpu, sto) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Stage 2: BFS with the min-id parent rule
# ---------------------------------------------------------------------------------------------

# Substrate (edges listed in an order that makes networkx's own discovery order go 5-4-3-0):
#
#        5
#       / \
#      4   2
#     / \ /
#    3   1
#     \ /
#      0
BFS_EDGES = [(5, 4), (4, 3), (3, 0), (5, 2), (4, 1), (2, 1), (1, 0)]


def bfs_scenario(src, dst, bw=10.0):
    nodes = one_domain_per_node(6)
    links = [sub_link(u, v, 100) for u, v in BFS_EDGES]
    req = request(0, 1, 10, [rnode(1, 1, src), rnode(1, 1, dst)], [rlink(0, 1, bw)])
    return scenario(nodes, links, [req])


def test_bfs_min_id_parent_three_hops():
    # From 5: d(4)=d(2)=1, d(3)=d(1)=2, d(0)=3. Shortest paths 5-4-3-0, 5-4-1-0, 5-2-1-0.
    # parent(0) = min{3, 1} = 1; parent(1) = min{4, 2} = 2; parent(2) = 5  ->  [5, 2, 1, 0].
    out = simulate(bfs_scenario(5, 0), "nrmvne")
    rec = out["trace"][0]
    assert set(rec) == TRACE_KEYS
    assert rec["accepted"] is True
    assert rec["node_map"] == [5, 0]
    assert rec["paths"] == [[5, 2, 1, 0]]
    # revenue = (1+1)+(1+1) + 10 = 14 ; cost = 4 + 10*3 = 34
    assert rec["revenue"] == 14.0 and rec["cost"] == 34.0
    assert rec["link_revenue"] == 10.0 and rec["link_cost"] == 30.0
    bw = out["residual"]["bw"]
    assert bw[(2, 5)] == 90.0 and bw[(1, 2)] == 90.0 and bw[(0, 1)] == 90.0
    assert bw[(4, 5)] == 100.0 and bw[(3, 4)] == 100.0 and bw[(0, 3)] == 100.0


def test_bfs_min_id_parent_reverse_direction():
    # From 0: d(3)=d(1)=1, d(4)=d(2)=2, d(5)=3. parent(5) = min{4, 2} = 2, parent(2) = 1
    # (its only neighbour at distance 1), parent(1) = 0  ->  [0, 1, 2, 5].
    g = nx.Graph(BFS_EDGES)
    resid = {(min(u, v), max(u, v)): 100.0 for u, v in BFS_EDGES}
    assert bfs_path(g, resid, 0, 5, 10.0) == [0, 1, 2, 5]
    assert simulate(bfs_scenario(0, 5), "nrmvne")["trace"][0]["paths"] == [[0, 1, 2, 5]]
    # With (1, 2) lacking bandwidth: from 0, d(1)=d(3)=1, d(4)=2, d(5)=3 via 4 only,
    # parent(4) = min{3, 1} = 1  ->  [0, 1, 4, 5].
    resid[(1, 2)] = 9.0
    assert bfs_path(g, resid, 0, 5, 10.0) == [0, 1, 4, 5]


def test_bandwidth_forces_longer_path_and_ge_is_inclusive():
    # Square 0-1 (bw 5), 0-2, 2-3, 3-1 (bw 100). Hosts 0 and 1.
    nodes = one_domain_per_node(4)
    links = [sub_link(0, 1, 5), sub_link(0, 2, 100), sub_link(2, 3, 100), sub_link(3, 1, 100)]
    # bw 10 > 5: the direct link is not eligible; only path 0-2-3-1 (3 hops).
    req = request(0, 1, 10, [rnode(2, 3, 0), rnode(4, 5, 1)], [rlink(0, 1, 10)])
    out = simulate(scenario(nodes, links, [req]), "nrmvne")
    rec = out["trace"][0]
    assert rec["paths"] == [[0, 2, 3, 1]]
    # revenue = 2+3+4+5 + 10 = 24 ; cost = 14 + 10*3 = 44
    assert (rec["revenue"], rec["cost"]) == (24.0, 44.0)
    assert out["residual"]["bw"] == {(0, 1): 5.0, (0, 2): 90.0, (2, 3): 90.0, (1, 3): 90.0}
    # bw exactly 5 == residual 5: eligible (>=), so the 1-hop direct link is used.
    req5 = request(0, 1, 10, [rnode(2, 3, 0), rnode(4, 5, 1)], [rlink(0, 1, 5)])
    out5 = simulate(scenario(nodes, links, [req5]), "nrmvne")
    assert out5["trace"][0]["paths"] == [[0, 1]]
    assert out5["residual"]["bw"][(0, 1)] == 0.0


def test_links_embedded_by_bandwidth_descending_paths_reported_by_index():
    # Substrate: 0-1 (35), 1-2 (100), 0-3 (100), 3-2 (100). Request nodes pinned to hosts 0, 1, 2.
    # Request links: index 0 = (0,1) bw 10, index 1 = (0,2) bw 30.
    # Embedding order is bw descending: index 1 first.
    #   link 1: 0 -> 2, all eligible; d(1)=d(3)=1, d(2)=2, parent(2)=min{1,3}=1 -> [0,1,2];
    #           residual (0,1) = 5, (1,2) = 70.
    #   link 0: 0 -> 1 needs 10, (0,1) has 5 -> ineligible; 0-3-2-1 -> [0,3,2,1].
    # (Index order would instead give [[0,1],[0,3,2]].)
    nodes = one_domain_per_node(4)
    links = [sub_link(0, 1, 35), sub_link(1, 2, 100), sub_link(0, 3, 100), sub_link(3, 2, 100)]
    req = request(0, 1, 10, [rnode(1, 1, 0), rnode(1, 1, 1), rnode(1, 1, 2)],
                  [rlink(0, 1, 10), rlink(0, 2, 30)])
    out = simulate(scenario(nodes, links, [req]), "nrmvne")
    rec = out["trace"][0]
    assert rec["paths"] == [[0, 3, 2, 1], [0, 1, 2]]
    # link revenue = 40 ; link cost = 10*3 + 30*2 = 90 ; node part = 6
    assert (rec["link_revenue"], rec["link_cost"]) == (40.0, 90.0)
    assert (rec["revenue"], rec["cost"]) == (46.0, 96.0)
    # (0,1): 35-30 = 5 ; (1,2): 100-30-10 = 60 ; (0,3): 90 ; (2,3): 90
    assert out["residual"]["bw"] == {(0, 1): 5.0, (1, 2): 60.0, (0, 3): 90.0, (2, 3): 90.0}


# ---------------------------------------------------------------------------------------------
# Rejections are atomic
# ---------------------------------------------------------------------------------------------

def storage_scenario():
    # Node 0: domain 0. Nodes 1, 2, 3: domain 1, cpu 100, sto 5 / 8 / 9. Star around 0, bw 100.
    nodes = [sub_node(0, 0), sub_node(1, 1, 100, 5), sub_node(2, 1, 100, 8),
             sub_node(3, 1, 100, 9)]
    links = [sub_link(0, 1, 100), sub_link(0, 2, 100), sub_link(0, 3, 100)]
    # R0: the domain-1 node (1, 1) goes to the highest NRM in domain 1:
    #   NRM(1) = 105*100 = 10500, NRM(2) = 108*100 = 10800, NRM(3) = 109*100 = 10900 -> host 3,
    #   whose storage drops to 8.
    r0 = request(0, 0, 100, [rnode(10, 10, 0), rnode(1, 1, 1)], [rlink(0, 1, 10)])
    # R1: its domain-1 node needs sto 10; domain 1 now has sto 5, 8, 8 -> empty feasible set.
    #   (Node 0 has sto 90 but is in domain 0.) Request NRM: node0 (20+20)*1 = 40 > node1
    #   (1+10)*1 = 11 (GRC: cpu 20 vs 1, also node 0 first), so node 0 is mapped first (host 0,
    #   deducted in the working copy), then node 1 fails: rejected, host 0 gets nothing back
    #   because the working copy is thrown away.
    r1 = request(1, 1, 100, [rnode(20, 20, 0), rnode(1, 10, 1)], [rlink(0, 1, 1)])
    return scenario(nodes, links, [r0, r1])


@pytest.mark.parametrize("algo", ["nrmvne", "grc"])
def test_rejected_for_storage_in_candidate_domain_state_unchanged(algo):
    sc = storage_scenario()
    out = simulate(sc, algo)
    r0, r1 = out["trace"]
    # NRMVNE picks host 3 (see storage_scenario). GRC ignores storage: the domain-1 nodes are
    # three identical leaves of the star (cpu 100, spoke bw 100) -> exactly equal ranks -> the
    # smallest id, host 1, whose storage drops to 4. Either way domain 1 is left with storage
    # below 10 everywhere (NRMVNE: 5, 8, 8 ; GRC: 4, 8, 9) and R1 is rejected at its node 1.
    h = {"nrmvne": 3, "grc": 1}[algo]
    assert r0["accepted"] and r0["node_map"] == [0, h] and r0["paths"] == [[0, h]]
    assert r1 == {"id": 1, "arrival": 1.0, "departure": 101.0, "accepted": False,
                  "node_map": None, "paths": None, "revenue": 0.0, "cost": 0.0,
                  "link_revenue": 0.0, "link_cost": 0.0}
    assert out["choices"][1] == [0, -1]  # node 0 was mapped, node 1 found no host
    only_r0 = simulate(scenario(sc["nodes"], sc["links"], sc["requests"][:1]), algo)
    assert out["residual"] == only_r0["residual"]
    # cpu: node 0 100-10 = 90, host h 100-1 = 99 ; sto: node 0 90, host h minus 1 ; (0,h): 90
    cpu, sto = [90.0, 100.0, 100.0, 100.0], [90.0, 5.0, 8.0, 9.0]
    cpu[h] -= 1
    sto[h] -= 1
    bw = {(0, 1): 100.0, (0, 2): 100.0, (0, 3): 100.0}
    bw[(0, h)] -= 10
    assert out["residual"] == {"cpu": cpu, "sto": sto, "bw": bw}


def second_link_failure_scenario():
    # Path substrate 0 -(100)- 1 -(40)- 2, request nodes pinned to 0, 1, 2.
    nodes = one_domain_per_node(3)
    links = [sub_link(0, 1, 100), sub_link(1, 2, 40)]
    # R0 links: index 0 = (0,2) bw 30, index 1 = (1,2) bw 20. Order: index 0 first (30 > 20):
    #   0 -> 2 on [0,1,2]; residual (1,2) = 10. Index 1: 1 -> 2 needs 20, (1,2) has 10,
    #   node 2 unreachable -> rejected; nothing (cpu, sto, bw of link 0) stays allocated.
    r0 = request(0, 0, 1000, [rnode(5, 5, 0), rnode(5, 5, 1), rnode(5, 5, 2)],
                 [rlink(0, 2, 30), rlink(1, 2, 20)])
    # R1 needs the full 40 on (1,2): accepted only if R0 left nothing behind.
    r1 = request(1, 1, 1000, [rnode(5, 5, 1), rnode(5, 5, 2)], [rlink(0, 1, 40)])
    return scenario(nodes, links, [r0, r1])


def test_failure_on_second_link_releases_the_first():
    sc = second_link_failure_scenario()
    out = simulate(sc, "nrmvne")
    r0, r1 = out["trace"]
    assert not r0["accepted"] and r0["node_map"] is None and r0["paths"] is None
    assert out["choices"][0] == [0, 1, 2]  # all nodes were mapped; the links failed
    assert r1["accepted"] and r1["paths"] == [[1, 2]]
    assert out["residual"]["cpu"] == [100.0, 95.0, 95.0]
    assert out["residual"]["sto"] == [100.0, 95.0, 95.0]
    assert out["residual"]["bw"] == {(0, 1): 100.0, (1, 2): 0.0}
    # Replay of the same hosts gives the same result.
    rep = simulate(sc, "replay", choices=[[0, 1, 2], [1, 2]])
    assert rep["trace"] == out["trace"] and rep["residual"] == out["residual"]


# ---------------------------------------------------------------------------------------------
# Timeline: departures before arrivals at equal times; metrics
# ---------------------------------------------------------------------------------------------

def departure_scenario():
    # Node 0 (domain 0): cpu 10 ; node 1 (domain 1): cpu 100 ; link 0-1 bw 100.
    nodes = [sub_node(0, 0, 10, 10), sub_node(1, 1, 100, 100)]
    links = [sub_link(0, 1, 100)]

    def req(rid, arrival, lifetime):
        # Needs ALL of node 0's cpu. revenue = 10+1+1+1 + 1 = 14 ; cost = 13 + 1*1 = 14.
        return request(rid, arrival, lifetime, [rnode(10, 1, 0), rnode(1, 1, 1)],
                       [rlink(0, 1, 1)])

    # R0 [0, 5) accepted; R1 at 4: node 0 busy -> rejected; R2 at 5: R0 departs at 5 <= 5 and is
    # released first -> accepted; R3 at 5: R2 holds node 0 -> rejected.
    return scenario(nodes, links, [req(0, 0, 5), req(1, 4, 10), req(2, 5, 10), req(3, 5, 1)])


def test_departure_at_next_arrival_is_released_first():
    sc = departure_scenario()
    out = simulate(sc, "nrmvne", drain=True)
    assert [r["accepted"] for r in out["trace"]] == [True, False, True, False]
    assert [r["departure"] for r in out["trace"]] == [5.0, 14.0, 15.0, 6.0]
    # R2 still holds node 0 at the end; after draining everything is back to capacity.
    assert out["residual"]["cpu"] == [0.0, 99.0]
    assert out["drained"] == capacities(sc)
    # Metrics (revenue 14 per accepted request):
    #   k0 t=0: AR = 0 (t <= 0), ACR 1/1, RC 14/14, RC_link 1/1
    #   k1 t=4: AR = 14*(min(5,4)-0)/4 = 14, ACR 1/2
    #   k2 t=5: AR = (14*(5-0) + 14*(5-5))/5 = 14, ACR 2/3
    #   k3 t=5: AR = 14, ACR 2/4
    expect = [(0.0, 0.0, 1.0), (4.0, 14.0, 0.5), (5.0, 14.0, 2 / 3), (5.0, 14.0, 0.5)]
    for row, (t, ar, acr) in zip(out["metrics"], expect):
        assert row["time"] == t and row["AR"] == pytest.approx(ar) and row["ACR"] == acr
        assert row["RC"] == 1.0 and row["RC_link"] == 1.0


def metrics_scenario():
    # Path 0-1-2, domains 0, 1, 2, cpu = sto = bw = 20.
    nodes = [sub_node(i, i, 20, 20) for i in range(3)]
    links = [sub_link(0, 1, 20), sub_link(1, 2, 20)]
    # R0 t=10, life 20 (dep 30): hosts 0, 2 ; path [0,1,2] (2 hops).
    #    revenue = (2+3)+(1+1) + 4 = 11 ; cost = 7 + 4*2 = 15 ; link 4 / 8.
    r0 = request(0, 10, 20, [rnode(2, 3, 0), rnode(1, 1, 2)], [rlink(0, 1, 4)])
    # R1 t=20: needs cpu 30 in domain 1 (capacity 20) -> rejected.
    r1 = request(1, 20, 100, [rnode(30, 1, 1), rnode(1, 1, 0)], [rlink(0, 1, 1)])
    # R2 t=40, life 10: hosts 1, 0 ; path [1,0] (1 hop).
    #    revenue = (5+5)+(2+2) + 6 = 20 ; cost = 14 + 6 = 20 ; link 6 / 6.
    r2 = request(2, 40, 10, [rnode(5, 5, 1), rnode(2, 2, 0)], [rlink(0, 1, 6)])
    return scenario(nodes, links, [r0, r1, r2])


def test_metrics_three_requests_by_hand():
    out = simulate(metrics_scenario(), "nrmvne")
    tr = out["trace"]
    assert [r["accepted"] for r in tr] == [True, False, True]
    assert tr[0]["paths"] == [[0, 1, 2]] and tr[2]["paths"] == [[1, 0]]
    assert [(r["revenue"], r["cost"]) for r in tr] == [(11.0, 15.0), (0.0, 0.0), (20.0, 20.0)]
    # k0 t=10: AR = 11*(min(30,10)-10)/10 = 0 ; ACR 1 ; RC 11/15 ; RC_link 4/8
    # k1 t=20: AR = 11*(20-10)/20 = 5.5 ; ACR 1/2 ; RC 11/15 ; RC_link 1/2
    # k2 t=40: AR = (11*(30-10) + 20*(40-40))/40 = 220/40 = 5.5 ; ACR 2/3 ;
    #          RC = (11+20)/(15+20) = 31/35 ; RC_link = (4+6)/(8+6) = 10/14
    expect = [
        {"time": 10.0, "AR": 0.0, "ACR": 1.0, "RC": 11 / 15, "RC_link": 0.5},
        {"time": 20.0, "AR": 5.5, "ACR": 0.5, "RC": 11 / 15, "RC_link": 0.5},
        {"time": 40.0, "AR": 5.5, "ACR": 2 / 3, "RC": 31 / 35, "RC_link": 10 / 14},
    ]
    assert len(out["metrics"]) == 3
    for row, exp in zip(out["metrics"], expect):
        assert set(row) == set(exp)
        for key in exp:
            assert row[key] == pytest.approx(exp[key], rel=1e-12, abs=1e-12), key


def test_metrics_zero_when_nothing_accepted():
    sc = metrics_scenario()
    sc["requests"] = [sc["requests"][1]]  # only the rejected one
    (row,) = simulate(sc, "nrmvne")["metrics"]
    assert row == {"time": 20.0, "AR": 0.0, "ACR": 0.0, "RC": 0.0, "RC_link": 0.0}


# ---------------------------------------------------------------------------------------------
# NRMVNE
# ---------------------------------------------------------------------------------------------

def nrmvne_scenario():
    # All in domain 0. cpu/sto: n0 10/10, n1 20/20, n2 20/20, n3 30/30.
    # Links 0-1 (10), 0-2 (10), 1-3 (5), 2-3 (5). Incident bw: n0 20, n1 15, n2 15, n3 10.
    # NRM: n0 20*20 = 400 ; n1 40*15 = 600 ; n2 40*15 = 600 ; n3 60*10 = 600.
    nodes = [sub_node(0, 0, 10, 10), sub_node(1, 0, 20, 20), sub_node(2, 0, 20, 20),
             sub_node(3, 0, 30, 30)]
    links = [sub_link(0, 1, 10), sub_link(0, 2, 10), sub_link(1, 3, 5), sub_link(2, 3, 5)]
    # Request: node0 (1,1), node1 (5,5), node2 (5,5); links (0,1) bw 2, (0,2) bw 2.
    # Request NRM: node0 2*(2+2) = 8 ; node1 10*2 = 20 ; node2 10*2 = 20 -> order [1, 2, 0].
    req = request(0, 1, 10, [rnode(1, 1, 0), rnode(5, 5, 0), rnode(5, 5, 0)],
                  [rlink(0, 1, 2), rlink(0, 2, 2)])
    return scenario(nodes, links, [req])


def test_nrmvne_ranking_ties_by_smallest_id():
    out = simulate(nrmvne_scenario(), "nrmvne")
    rec = out["trace"][0]
    # node1: feasible {0,1,2,3}, top NRM 600 shared by 1, 2, 3 -> host 1.
    # node2: feasible {0,2,3}: 400, 600, 600 -> host 2.   node0: feasible {0,3}: 400, 600 -> 3.
    assert rec["node_map"] == [3, 1, 2]
    # Links (both bw 2, embedded in index order): 3->1 direct (1,3) ; 3->2 direct (2,3).
    assert rec["paths"] == [[3, 1], [3, 2]]
    # revenue = 2+10+10 + 4 = 26 = cost (all 1-hop)
    assert (rec["revenue"], rec["cost"]) == (26.0, 26.0)
    assert out["residual"]["cpu"] == [10.0, 15.0, 15.0, 29.0]


def test_nrmvne_skips_infeasible_top_node():
    # Same substrate, one request node of cpu 25: only n3 (cpu 30) is feasible even though n1
    # and n2 tie with it; then node 1 (cpu 1) takes the best remaining: n1 (600, smaller id).
    sc = nrmvne_scenario()
    sc["requests"] = [request(0, 1, 10, [rnode(25, 1, 0), rnode(1, 1, 0)], [rlink(0, 1, 1)])]
    # Request NRM: node0 26*1 = 26 > node1 2*1 = 2 -> order [0, 1].
    rec = simulate(sc, "nrmvne")["trace"][0]
    assert rec["node_map"] == [3, 1] and rec["paths"] == [[3, 1]]


# ---------------------------------------------------------------------------------------------
# GRC
# ---------------------------------------------------------------------------------------------

def test_grc_two_nodes_closed_form_and_stopping_rule():
    d = 0.85
    # cpu [3, 1] -> c = [0.75, 0.25]; M = [[0,1],[1,0]] (each column normalised by its only link).
    # One update: r1 = 0.15*c + 0.85*swap(c) = [0.1125+0.2125, 0.0375+0.6375] = [0.325, 0.675].
    r1 = grc_vector([3.0, 1.0], {(0, 1): 7.0}, max_iter=1)
    assert r1 == pytest.approx([0.325, 0.675], abs=1e-15)
    # Fixed point: r0 = 0.15 c0 + 0.85 r1, r1 = 0.15 c1 + 0.85 r0
    #   -> r0 = (0.15*0.75 + 0.1275*0.25)/(1-0.7225) = 0.144375/0.2775,
    #      r1 = (0.15*0.25 + 0.1275*0.75)/0.2775 = 0.133125/0.2775.
    star = np.array([0.144375 / 0.2775, 0.133125 / 0.2775])
    # Error e_t = r_t - r* = (-d)^t e_0 (swap flips the sign of [x, -x]); so
    # ||r_t - r_{t-1}|| = (1+d) d^(t-1) ||e_0||, ||e_0|| = sqrt(2)*(0.75 - 0.144375/0.2775).
    # First t with that < 1e-5: t - 1 > ln(1e-5 / ((1+d)||e_0||)) / ln(d) = 67.7 -> t = 69.
    e0 = np.array([0.75, 0.25]) - star
    steps = [(1 + d) * d ** (t - 1) * np.linalg.norm(e0) for t in (68, 69)]
    assert steps[0] >= 1e-5 > steps[1]
    r = grc_vector([3.0, 1.0], {(0, 1): 7.0})
    assert r == pytest.approx(star + (-d) ** 69 * e0, abs=1e-12)  # the 69th iterate
    assert np.array_equal(r, grc_vector([3.0, 1.0], {(0, 1): 7.0}, max_iter=69))
    assert not np.array_equal(r, grc_vector([3.0, 1.0], {(0, 1): 7.0}, max_iter=68))


def test_grc_matches_linear_solve_and_zero_cases():
    # Fixed point r* = (1-d) (I - d M)^-1 c on a small weighted graph.
    cpu = [100.0, 10.0, 20.0, 30.0, 5.0]
    edges = {(0, 1): 50.0, (0, 2): 50.0, (0, 3): 50.0, (3, 4): 20.0}
    bw = np.zeros((5, 5))
    for (u, v), w in edges.items():
        bw[u, v] = bw[v, u] = w
    m = bw / bw.sum(axis=0)
    c = np.array(cpu) / sum(cpu)
    star = 0.15 * np.linalg.solve(np.eye(5) - 0.85 * m, c)
    # After the stopping rule the error is at most d/(1-d) * 1e-5 ~ 6e-5 per component.
    assert grc_vector(cpu, edges) == pytest.approx(star, abs=1e-4)
    # Isolated node (column sum 0): M column is 0, so r_4 = 0.15 c_4 exactly at the fixed point.
    r = grc_vector([1.0, 1.0, 2.0], {(0, 1): 3.0})
    assert r[2] == pytest.approx(0.15 * 0.5, abs=1e-15)
    # All-zero cpu: c = 0, so r stays 0.
    assert np.all(grc_vector([0.0, 0.0], {(0, 1): 1.0}) == 0.0)


def test_grc_symmetric_cycle_equal_ranks_tie_by_id():
    # 4-cycle 0-1-2-3-0, equal cpu and bw: c = 1/4 each, M entries 1/2; ranks exactly equal.
    nodes = [sub_node(i, 0, 50, 50) for i in range(4)]
    links = [sub_link(0, 1, 50), sub_link(1, 2, 50), sub_link(2, 3, 50), sub_link(3, 0, 50)]
    r = grc_vector([50.0] * 4, {(0, 1): 50.0, (1, 2): 50.0, (2, 3): 50.0, (0, 3): 50.0})
    assert r[0] == r[1] == r[2] == r[3] == pytest.approx(0.25)
    # Request: two equal nodes -> equal request GRC -> order [0, 1]; hosts by smallest id: 0, 1.
    req = request(0, 1, 10, [rnode(10, 10, 0), rnode(10, 10, 0)], [rlink(0, 1, 5)])
    rec = simulate(scenario(nodes, links, [req]), "grc")["trace"][0]
    assert rec["node_map"] == [0, 1] and rec["paths"] == [[0, 1]]


def star_scenario():
    # Star: centre 0 (cpu 100, sto 100), leaves 1, 2, 3 with cpu 10, 20, 30 and sto 100, 50, 10.
    # Spokes bw 50. All domain 0.
    nodes = [sub_node(0, 0, 100, 100), sub_node(1, 0, 10, 100), sub_node(2, 0, 20, 50),
             sub_node(3, 0, 30, 10)]
    links = [sub_link(0, 1, 50), sub_link(0, 2, 50), sub_link(0, 3, 50)]
    # Request: a path 0-1-2 with cpu [1, 10, 1], sto 1, link bw 5.
    req = request(0, 1, 10, [rnode(1, 1, 0), rnode(10, 1, 0), rnode(1, 1, 0)],
                  [rlink(0, 1, 5), rlink(1, 2, 5)])
    return scenario(nodes, links, [req])


def test_grc_star_ranks_and_mapping():
    # Substrate GRC: a leaf's row of M has one entry 50/150 = 1/3 (column of the centre), so
    # r_leaf = 0.15 c_leaf + 0.85 r_0 / 3, increasing in c_leaf: r3 > r2 > r1. The centre gets
    # everything from the leaves (each column of a leaf is 1 at the centre): r0 is the largest.
    r = grc_vector([100.0, 10.0, 20.0, 30.0], {(0, 1): 50.0, (0, 2): 50.0, (0, 3): 50.0})
    assert r[0] > r[3] > r[2] > r[1]
    # Request GRC: c = [1, 10, 1]/12; nodes 0 and 2 are mirror images -> exact tie; node 1 (the
    # centre of the request path, with the most cpu) ranks first. Order [1, 0, 2].
    # node1 -> host 0 ; node0 -> best leaf 3 ; node2 -> next leaf 2.
    rec = simulate(star_scenario(), "grc")["trace"][0]
    assert rec["node_map"] == [3, 0, 2]
    assert rec["paths"] == [[3, 0], [0, 2]]
    # NRMVNE differs because it also counts storage: leaf NRM (cpu+sto)*50 = 5500, 3500, 2000,
    # centre 200*150 = 30000. Request NRM: node0 2*5 = 10, node1 11*10 = 110, node2 10
    # -> order [1, 0, 2]: node1 -> 0, node0 -> 1, node2 -> 2.
    rec_n = simulate(star_scenario(), "nrmvne")["trace"][0]
    assert rec_n["node_map"] == [1, 0, 2]
    assert rec_n["paths"] == [[1, 0], [0, 2]]


# ---------------------------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------------------------

def test_replay_reproduces_and_raises_on_bad_choices():
    sc = departure_scenario()
    good = [[0, 1], [-1, -1], [0, 1], [-1, -1]]
    rep = simulate(sc, "replay", choices=good)
    ref = simulate(sc, "nrmvne")
    assert rep["trace"] == ref["trace"] and rep["metrics"] == ref["metrics"]

    # Host 1 is in domain 1, request 0 node 0 needs domain 0.
    with pytest.raises(AssertionError, match=r"request 0 node 0.*not in the feasible set"):
        simulate(sc, "replay", choices=[[1, 1], [-1, -1], [0, 1], [-1, -1]])
    # Request 1 node 0: node 0's cpu is all held by request 0 -> feasible set empty.
    with pytest.raises(AssertionError, match=r"request 1 node 0.*not in the feasible set"):
        simulate(sc, "replay", choices=[[0, 1], [0, 1], [0, 1], [-1, -1]])
    # -1 while the feasible set {0} is non-empty.
    with pytest.raises(AssertionError, match=r"request 0 node 0: -1 given"):
        simulate(sc, "replay", choices=[[-1, -1], [-1, -1], [0, 1], [-1, -1]])
    # Request 1 failed at node 0; a host for node 1 afterwards is an error.
    with pytest.raises(AssertionError, match=r"request 1 node 1: host 1 given after"):
        simulate(sc, "replay", choices=[[0, 1], [-1, 1], [0, 1], [-1, -1]])
    # Distinct hosts: node 1 may not reuse node 0's host.
    with pytest.raises(AssertionError, match=r"request 0 node 1"):
        simulate(nrmvne_scenario(), "replay", choices=[[1, 1, 2]])
    # Wrong number of hosts.
    with pytest.raises(AssertionError):
        simulate(sc, "replay", choices=[[0], [-1, -1], [0, 1], [-1, -1]])


# ---------------------------------------------------------------------------------------------
# Random scenarios: audit passes, drain restores capacities
# ---------------------------------------------------------------------------------------------

def random_scenario(seed, n_sub=14, n_req=60, n_dom=3, node_cap=(50, 100)):
    """A random substrate (Watts-Strogatz) and ``n_req`` path-plus-chords requests. With the
    default node capacities both stages reject requests; ``node_cap=(10_000, 10_000)`` with
    ``n_sub >= 5 * n_dom`` makes every node stage succeed, so only the link stage rejects."""
    rnd = random.Random(seed)
    g = nx.connected_watts_strogatz_graph(n_sub, 4, 0.3, seed=seed)
    nodes = [sub_node(i, i % n_dom, rnd.randint(*node_cap), rnd.randint(*node_cap))
             for i in range(n_sub)]
    links = [sub_link(u, v, rnd.randint(50, 100)) for u, v in g.edges]
    t, reqs = 0.0, []
    for k in range(n_req):
        t += float(rnd.randint(0, 30))
        n = rnd.randint(2, 5)
        rn = [rnode(rnd.randint(1, 50), rnd.randint(1, 50), rnd.randrange(n_dom))
              for _ in range(n)]
        rl = [(a, a + 1) for a in range(n - 1)]  # a path keeps it connected
        rl += [(a, b) for a in range(n) for b in range(a + 2, n) if rnd.random() < 0.5]
        rl.sort()
        reqs.append(request(k, t, rnd.randint(0, 400), rn,
                            [rlink(a, b, rnd.randint(1, 50)) for a, b in rl]))
    return scenario(nodes, links, reqs)


@pytest.mark.parametrize("algo", ["nrmvne", "grc"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_runs_pass_audit_and_drain(algo, seed):
    sc = random_scenario(seed)
    out = simulate(sc, algo, drain=True)
    n_acc = sum(r["accepted"] for r in out["trace"])
    assert 0 < n_acc < len(sc["requests"])  # the scenario exercises both outcomes
    assert check_audit(sc, out["trace"], out["metrics"]) == []
    assert out["drained"] == capacities(sc)
    res = out["residual"]
    assert min(res["cpu"]) >= 0 and min(res["sto"]) >= 0 and min(res["bw"].values()) >= 0


@pytest.mark.parametrize("algo", ["nrmvne", "grc"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_replaying_own_choices_reproduces_the_run(algo, seed):
    """Replaying a heuristic's hosts in index order reproduces its run: its hosts are distinct
    and each fits on its own, so any placement order is feasible, and the link stage depends only
    on the hosts. Node capacities are ample and every domain has >= 5 nodes, so no request fails
    at the node stage (a node-stage failure leaves -1 hosts that an index-order replay cannot
    express); rejections come from the link stage."""
    sc = random_scenario(seed, n_sub=15, node_cap=(10_000, 10_000))
    out = simulate(sc, algo)
    assert all(-1 not in ch for ch in out["choices"])  # the scenario keeps its promise
    n_acc = sum(r["accepted"] for r in out["trace"])
    assert 0 < n_acc < len(sc["requests"])  # link-stage rejections are exercised
    rep = simulate(sc, "replay", choices=out["choices"])
    assert rep["trace"] == out["trace"]
    assert rep["metrics"] == out["metrics"] and rep["residual"] == out["residual"]


# ---------------------------------------------------------------------------------------------
# Audit: correct trails pass, planted violations are caught
# ---------------------------------------------------------------------------------------------

def _run(sc):
    out = simulate(sc, "nrmvne")
    return copy.deepcopy(out["trace"]), copy.deepcopy(out["metrics"])


def test_audit_passes_correct_trails_and_roundtrips_files(tmp_path):
    for sc in [bfs_scenario(5, 0), storage_scenario(), second_link_failure_scenario(),
               departure_scenario(), metrics_scenario(), nrmvne_scenario(), star_scenario()]:
        trace, metrics = _run(sc)
        assert check_audit(sc, trace, metrics) == []
    sc = metrics_scenario()
    trace, metrics = _run(sc)
    (tmp_path / "scenario.json").write_text(json.dumps(sc))
    (tmp_path / "trace.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trace))
    lines = ["time,AR,ACR,RC,RC_link"]
    lines += [f"{m['time']!r},{m['AR']!r},{m['ACR']!r},{m['RC']!r},{m['RC_link']!r}"
              for m in metrics]
    (tmp_path / "metrics.csv").write_text("\n".join(lines) + "\n")
    sc2, trace2, metrics2 = load_audit_dir(str(tmp_path))
    assert sc2 == sc and trace2 == trace and metrics2 == metrics
    assert check_audit(sc2, trace2, metrics2) == []


def test_audit_catches_wrong_domain():
    sc = metrics_scenario()
    trace, _ = _run(sc)
    # R0 node 0 wants domain 0; move it to host 1 (domain 1) with a consistent path [1, 2]
    # and consistent money: revenue 11, cost 7 + 4*1 = 11, link cost 4.
    trace[0].update(node_map=[1, 2], paths=[[1, 2]], cost=11.0, link_cost=4.0)
    v = check_audit(sc, trace, running_metrics(trace))
    assert len(v) == 1 and "domain" in v[0] and "eq. 1" in v[0] and "#0" in v[0]


def test_audit_catches_shared_host():
    sc = star_scenario()
    trace, _ = _run(sc)
    assert trace[0]["node_map"] == [1, 0, 2]
    # Request nodes 0 and 2 are not linked; put both on leaf 1 (capacity is ample: cpu 10 >= 2,
    # sto 100 >= 2; paths stay 1 hop so revenue and cost are unchanged).
    trace[0].update(node_map=[1, 0, 1], paths=[[1, 0], [0, 1]])
    v = check_audit(sc, trace, running_metrics(trace))
    assert len(v) == 1 and "not distinct" in v[0] and "eq. 2" in v[0]


def test_audit_catches_cpu_over_capacity():
    sc = departure_scenario()
    trace, _ = _run(sc)
    # Claim R1 (t=4) was accepted while R0 holds all of node 0's cpu.
    trace[1].update(accepted=True, node_map=[0, 1], paths=[[0, 1]], revenue=14.0, cost=14.0,
                    link_revenue=1.0, link_cost=1.0)
    v = check_audit(sc, trace, running_metrics(trace))
    assert v and all("eq. 4" in x for x in v)
    assert "#1" in v[0] and "residual cpu 0.0" in v[0]


def test_audit_catches_bandwidth_over_capacity():
    sc = second_link_failure_scenario()
    trace, _ = _run(sc)
    # Claim R0 was accepted: link 0 on [0,1,2] leaves (1,2) at 10, link 1 needs 20 on (1,2).
    # node part 3*(5+5) = 30 ; revenue = 30 + 50 = 80 ; cost = 30 + 30*2 + 20*1 = 110 ;
    # link 50 / 80.
    trace[0].update(accepted=True, node_map=[0, 1, 2], paths=[[0, 1, 2], [1, 2]],
                    revenue=80.0, cost=110.0, link_revenue=50.0, link_cost=80.0)
    v = check_audit(sc, trace, running_metrics(trace))
    assert v and all("eq. 6" in x for x in v)
    assert "#0" in v[0] and "(1, 2)" in v[0]


def test_audit_catches_broken_paths():
    sc = bfs_scenario(5, 0)
    base, metrics = _run(sc)
    # (5, 1) is not a substrate link (same hop count as before would need fixing the cost:
    # 2 hops -> cost 4 + 20 = 24, link cost 20).
    trace = copy.deepcopy(base)
    trace[0].update(paths=[[5, 1, 0]], cost=24.0, link_cost=20.0)
    v = check_audit(sc, trace, running_metrics(trace))
    assert len(v) == 1 and "not a substrate link" in v[0]
    # Path ending at the wrong node.
    trace = copy.deepcopy(base)
    trace[0].update(paths=[[5, 2, 1]], cost=24.0, link_cost=20.0)
    v = check_audit(sc, trace, running_metrics(trace))
    assert len(v) == 1 and "does not end at host(1) = 0" in v[0]
    # Repeated node (5-2-1-2-1-0 uses real links only): 5 hops -> cost 54, link cost 50.
    trace = copy.deepcopy(base)
    trace[0].update(paths=[[5, 2, 1, 2, 1, 0]], cost=54.0, link_cost=50.0)
    v = check_audit(sc, trace, running_metrics(trace))
    assert len(v) == 1 and "repeats a node" in v[0]


def test_audit_catches_wrong_revenue_and_rejected_fields():
    sc = metrics_scenario()
    trace, _ = _run(sc)
    trace[2]["revenue"] = 21.0  # eq. 7 gives 20
    v = check_audit(sc, trace, running_metrics(trace))
    assert v == ["request #2 (id 2): revenue = 21.0 but eqs. 7/8 give 20.0"]
    trace, metrics = _run(sc)
    trace[1]["node_map"] = [1, 0]  # rejected with a node map
    trace[1]["departure"] = 21.0  # 20 + 100 = 120
    v = check_audit(sc, trace, metrics)
    assert len(v) == 2
    assert any("departure" in x for x in v) and any("rejected but node_map" in x for x in v)


def test_audit_catches_wrong_metrics_row_within_tolerance_passes():
    sc = metrics_scenario()
    trace, metrics = _run(sc)
    tiny = copy.deepcopy(metrics)
    tiny[2]["RC"] *= 1 + 1e-7  # inside rtol=1e-4
    assert check_audit(sc, trace, tiny) == []
    bad = copy.deepcopy(metrics)
    bad[1]["AR"] = 5.6  # hand value 5.5
    v = check_audit(sc, trace, bad)
    assert len(v) == 1 and v[0].startswith("metrics row 1: AR = 5.6")
    bad = copy.deepcopy(metrics)
    bad[2]["ACR"] = 1.0  # hand value 2/3
    v = check_audit(sc, trace, bad)
    assert len(v) == 1 and v[0].startswith("metrics row 2: ACR")
    v = check_audit(sc, trace, metrics[:2])
    assert v == ["metrics has 2 rows but the trace has 3 records"]


def test_unknown_algo_rejected():
    with pytest.raises(ValueError):
        simulate(metrics_scenario(), "random")
    assert math.isfinite(simulate(metrics_scenario(), "grc")["metrics"][-1]["AR"])
