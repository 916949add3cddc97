"""Plain-Python + networkx reference simulator of the allocation rules in ``docs/rules.md``.

This module is deliberately independent of the JAX simulator: it shares no code with it and is
written for readability (Python floats / numpy float64, networkx for the graph and BFS). It is
the oracle of the tests and the sequential baseline of the benchmark.

Public API
----------
``simulate(scenario, algo, choices=None, drain=False) -> dict``
    Run the whole online process of a scenario (the ``scenario.json`` dict of docs/rules.md).
``grc_vector(weights, edges, ...) -> np.ndarray``
    The GRC (Gong et al. 2014) power iteration, exposed for tests.
``bfs_path(graph, residual_bw, src, dst, demand) -> list[int] | None``
    The minimum-hop path with the min-id-parent tie-break, exposed for tests.
"""

from __future__ import annotations

import heapq

import networkx as nx
import numpy as np

ALGOS = ("nrmvne", "grc", "replay")

GRC_DAMPING = 0.85
GRC_TOL = 1e-5
GRC_MAX_ITER = 1000


def _edge(u: int, v: int) -> tuple[int, int]:
    """Canonical key of an undirected substrate link: (smaller id, larger id)."""
    return (u, v) if u < v else (v, u)


# --------------------------------------------------------------------------------------------
# Substrate and residual state
# --------------------------------------------------------------------------------------------


class Substrate:
    """Static part of the substrate: node domains, capacities, links and the networkx graph."""

    def __init__(self, scenario: dict):
        nodes = scenario["nodes"]
        for pos, node in enumerate(nodes):
            if int(node["id"]) != pos:
                raise ValueError(f"substrate node at list position {pos} has id {node['id']}")
        self.n = len(nodes)
        self.domain = [int(node["domain"]) for node in nodes]
        self.cpu = [float(node["cpu"]) for node in nodes]
        self.sto = [float(node["sto"]) for node in nodes]
        self.bw: dict[tuple[int, int], float] = {}
        self.graph = nx.Graph()
        self.graph.add_nodes_from(range(self.n))
        for link in scenario["links"]:
            u, v = int(link["u"]), int(link["v"])
            if u == v or not (0 <= u < self.n and 0 <= v < self.n):
                raise ValueError(f"bad substrate link {link}")
            key = _edge(u, v)
            if key in self.bw:
                raise ValueError(f"duplicate substrate link {key}")
            self.bw[key] = float(link["bw"])
            self.graph.add_edge(u, v)
        self.edges = sorted(self.bw)


class Residual:
    """Residual (free) resources: CPU and storage per node, bandwidth per link."""

    def __init__(self, cpu: list[float], sto: list[float], bw: dict[tuple[int, int], float]):
        self.cpu = list(cpu)
        self.sto = list(sto)
        self.bw = dict(bw)

    def copy(self) -> "Residual":
        return Residual(self.cpu, self.sto, self.bw)

    def as_dict(self) -> dict:
        return {"cpu": list(self.cpu), "sto": list(self.sto), "bw": dict(self.bw)}


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------


def grc_vector(
    weights,
    edges: dict,
    n: int | None = None,
    d: float = GRC_DAMPING,
    tol: float = GRC_TOL,
    max_iter: int = GRC_MAX_ITER,
) -> np.ndarray:
    """GRC vector by power iteration, exactly as docs/rules.md says.

    ``weights[u]`` is the node weight (CPU), ``edges`` maps an undirected pair ``(u, v)`` to its
    bandwidth. ``c_u = w_u / sum(w)`` (all zeros if the sum is 0);
    ``M[u, v] = bw(u, v) / sum_w bw(v, w)`` (0 where that sum is 0);
    ``r <- (1 - d) c + d M r`` from ``r = c`` until ``||r_new - r||_2 < tol`` or ``max_iter``
    updates; the last iterate is returned.
    """
    w = np.asarray(weights, dtype=np.float64)
    n = len(w) if n is None else n
    total = w.sum()
    c = w / total if total != 0 else np.zeros(n, dtype=np.float64)

    bw = np.zeros((n, n), dtype=np.float64)
    for (u, v), value in edges.items():
        bw[u, v] = value
        bw[v, u] = value
    col = bw.sum(axis=0)  # col[v] = sum_w bw(v, w)  (bw is symmetric)
    m = np.zeros((n, n), dtype=np.float64)
    nz = col != 0
    m[:, nz] = bw[:, nz] / col[nz]

    r = c.copy()
    for _ in range(max_iter):
        r_new = (1.0 - d) * c + d * (m @ r)
        converged = np.linalg.norm(r_new - r) < tol
        r = r_new
        if converged:
            break
    return r


def substrate_nrm(sub: Substrate, res: Residual) -> list[float]:
    """NRM(n) = (res_cpu(n) + res_sto(n)) * sum of residual BW of the links at n."""
    bw_sum = [0.0] * sub.n
    for (u, v), value in res.bw.items():
        bw_sum[u] += value
        bw_sum[v] += value
    return [(res.cpu[n] + res.sto[n]) * bw_sum[n] for n in range(sub.n)]


def request_nrm(req: dict) -> list[float]:
    """NRM(i) = (cpu_i + sto_i) * sum of the BW demands of the request links at i."""
    nodes = req["nodes"]
    bw_sum = [0.0] * len(nodes)
    for link in req["links"]:
        bw_sum[int(link["a"])] += float(link["bw"])
        bw_sum[int(link["b"])] += float(link["bw"])
    return [(float(nd["cpu"]) + float(nd["sto"])) * bw_sum[i] for i, nd in enumerate(nodes)]


def substrate_grc(sub: Substrate, res: Residual) -> list[float]:
    return [float(x) for x in grc_vector(res.cpu, res.bw, sub.n)]


def request_grc(req: dict) -> list[float]:
    nodes = req["nodes"]
    edges: dict[tuple[int, int], float] = {}
    for link in req["links"]:
        edges[_edge(int(link["a"]), int(link["b"]))] = float(link["bw"])
    return [float(x) for x in grc_vector([float(nd["cpu"]) for nd in nodes], edges, len(nodes))]


def _order_desc(scores: list[float]) -> list[int]:
    """Request-node order: score descending, ties by smaller request-node index."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def _best(feasible: list[int], scores: list[float]) -> int:
    """Feasible node with the highest score, ties by smallest node id."""
    return min(feasible, key=lambda n: (-scores[n], n))


# --------------------------------------------------------------------------------------------
# Stage 1 and stage 2 primitives
# --------------------------------------------------------------------------------------------


def feasible_set(sub: Substrate, res: Residual, node: dict, used: set[int]) -> list[int]:
    """Substrate nodes of the request node's domain with enough residual CPU and storage, unused
    by earlier nodes of the same request (eqs. 1, 2, 4, 5). Sorted by id."""
    dom, cpu, sto = int(node["domain"]), float(node["cpu"]), float(node["sto"])
    return [
        n
        for n in range(sub.n)
        if sub.domain[n] == dom and res.cpu[n] >= cpu and res.sto[n] >= sto and n not in used
    ]


def bfs_path(
    graph: nx.Graph, residual_bw: dict, src: int, dst: int, demand: float
) -> list[int] | None:
    """Minimum-hop path src -> dst over links with residual bandwidth >= demand (eqs. 3, 6).

    Tie-break (docs/rules.md): with d(v) the hop distance from src over eligible links, the parent
    of v != src is the smallest id u such that (u, v) is eligible and d(u) = d(v) - 1. The path is
    read back from dst along parents. Returns the node list from src to dst, or None.
    """
    eligible = nx.Graph()
    eligible.add_nodes_from(graph.nodes)
    eligible.add_edges_from(e for e in graph.edges if residual_bw[_edge(*e)] >= demand)
    dist = nx.single_source_shortest_path_length(eligible, src)
    if dst not in dist:
        return None
    path = [dst]
    v = dst
    while v != src:
        v = min(u for u in eligible.neighbors(v) if dist.get(u) == dist[v] - 1)
        path.append(v)
    path.reverse()
    return path


# --------------------------------------------------------------------------------------------
# One request
# --------------------------------------------------------------------------------------------


def _handle_request(
    sub: Substrate,
    res: Residual,
    req: dict,
    k: int,
    algo: str,
    given: list[int] | None,
) -> tuple[Residual | None, list[int], dict | None]:
    """Try to embed one request on a working copy of ``res``.

    Returns ``(new_residual or None, hosts_by_index, embedding or None)`` where hosts_by_index
    has -1 for request nodes that got no host, and embedding is
    ``{"node_map", "paths"}`` for an accepted request.
    """
    nodes, links = req["nodes"], req["links"]
    n = len(nodes)
    work = res.copy()
    hosts = [-1] * n

    # ---- Stage 1: node mapping -------------------------------------------------------------
    if algo == "nrmvne":
        order = _order_desc(request_nrm(req))
    elif algo == "grc":
        order = _order_desc(request_grc(req))
        grc_sub = substrate_grc(sub, res)  # once per request, residual state at arrival
    else:  # replay
        order = list(range(n))
        if given is None or len(given) != n:
            raise AssertionError(
                f"replay: request {k} has {n} nodes but choices give "
                f"{None if given is None else len(given)} hosts"
            )

    used: set[int] = set()
    failed = False
    for i in order:
        if failed:
            # Only reachable in replay mode (other modes stop at the failure).
            if given[i] != -1:
                raise AssertionError(
                    f"replay: request {k} node {i}: host {given[i]} given after the request "
                    f"already failed (an earlier node had an empty feasible set)"
                )
            continue
        feas = feasible_set(sub, work, nodes[i], used)
        if algo == "nrmvne":
            if not feas:
                return None, hosts, None
            host = _best(feas, substrate_nrm(sub, work))
        elif algo == "grc":
            if not feas:
                return None, hosts, None
            host = _best(feas, grc_sub)
        else:
            g = int(given[i])
            if g == -1:
                if feas:
                    raise AssertionError(
                        f"replay: request {k} node {i}: -1 given but the feasible set is "
                        f"non-empty {feas}"
                    )
                failed = True
                continue
            if g not in feas:
                raise AssertionError(
                    f"replay: request {k} node {i}: host {g} is not in the feasible set {feas}"
                )
            host = g
        hosts[i] = host
        used.add(host)
        work.cpu[host] -= float(nodes[i]["cpu"])
        work.sto[host] -= float(nodes[i]["sto"])
    if failed:
        return None, hosts, None

    # ---- Stage 2: link mapping -------------------------------------------------------------
    link_order = sorted(range(len(links)), key=lambda j: (-float(links[j]["bw"]), j))
    paths: list[list[int] | None] = [None] * len(links)
    for j in link_order:
        a, b, bw = int(links[j]["a"]), int(links[j]["b"]), float(links[j]["bw"])
        path = bfs_path(sub.graph, work.bw, hosts[a], hosts[b], bw)
        if path is None:
            return None, hosts, None
        for u, v in zip(path, path[1:]):
            work.bw[_edge(u, v)] -= bw
        paths[j] = path

    return work, hosts, {"node_map": list(hosts), "paths": paths}


def _release(res: Residual, req: dict, emb: dict) -> None:
    """Add back exactly what an accepted request holds."""
    for i, node in enumerate(req["nodes"]):
        h = emb["node_map"][i]
        res.cpu[h] += float(node["cpu"])
        res.sto[h] += float(node["sto"])
    for j, link in enumerate(req["links"]):
        path = emb["paths"][j]
        for u, v in zip(path, path[1:]):
            res.bw[_edge(u, v)] += float(link["bw"])


def revenue_cost(req: dict, paths: list[list[int]]) -> dict:
    """Eqs. 7, 8 and their link-only parts for an accepted request."""
    node_part = sum(float(nd["cpu"]) + float(nd["sto"]) for nd in req["nodes"])
    link_rev = sum(float(link["bw"]) for link in req["links"])
    link_cost = sum(float(link["bw"]) * (len(p) - 1) for link, p in zip(req["links"], paths))
    return {
        "revenue": node_part + link_rev,
        "cost": node_part + link_cost,
        "link_revenue": link_rev,
        "link_cost": link_cost,
    }


def running_metrics(trace: list[dict]) -> list[dict]:
    """Running AR, ACR, RC, RC_link after each request (docs/rules.md)."""
    metrics = []
    accepted = 0
    rev = cost = lrev = lcost = 0.0
    for k, rec in enumerate(trace):
        t = rec["arrival"]
        if rec["accepted"]:
            accepted += 1
            rev += rec["revenue"]
            cost += rec["cost"]
            lrev += rec["link_revenue"]
            lcost += rec["link_cost"]
        if t > 0:
            held = sum(
                r["revenue"] * (min(r["departure"], t) - r["arrival"])
                for r in trace[: k + 1]
                if r["accepted"]
            )
            ar = held / t
        else:
            ar = 0.0
        metrics.append(
            {
                "time": t,
                "AR": ar,
                "ACR": accepted / (k + 1),
                "RC": rev / cost if cost != 0 else 0.0,
                "RC_link": lrev / lcost if lcost != 0 else 0.0,
            }
        )
    return metrics


# --------------------------------------------------------------------------------------------
# The online process
# --------------------------------------------------------------------------------------------


def simulate(
    scenario: dict,
    algo: str,
    choices: list[list[int]] | None = None,
    drain: bool = False,
) -> dict:
    """Run the online process of docs/rules.md on ``scenario``.

    ``algo``: "nrmvne", "grc" or "replay". In replay mode ``choices[k][i]`` is the host of request
    node ``i`` of request ``k`` (-1 where no host was chosen); nodes are handled in index order and
    an ``AssertionError`` is raised when a given host is not in the reference's feasible set, when
    -1 is given while the feasible set is non-empty, or when a host is given after the request
    already failed.

    Returns a dict with
      * ``trace``: one dict per request, keys ``id, arrival, departure, accepted, node_map, paths,
        revenue, cost, link_revenue, link_cost`` (node_map/paths None and money 0.0 if rejected;
        paths indexed by the request's link index);
      * ``metrics``: one dict per request, keys ``time, AR, ACR, RC, RC_link``;
      * ``choices``: per request, the host of each request node by index (-1 where none);
      * ``residual``: ``{"cpu": [...], "sto": [...], "bw": {(u, v): value, u < v}}`` after the
        last request is handled (no release after the last arrival);
      * ``drained`` (only with ``drain=True``): the residual after additionally releasing every
        still-active request; it must equal the capacities.
    """
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; expected one of {ALGOS}")
    requests = scenario["requests"]
    if algo == "replay":
        if choices is None or len(choices) != len(requests):
            raise AssertionError(
                f"replay: need one choice list per request ({len(requests)}), got "
                f"{None if choices is None else len(choices)}"
            )

    sub = Substrate(scenario)
    res = Residual(sub.cpu, sub.sto, sub.bw)
    active: list[tuple[float, int]] = []  # heap of (departure, request position)
    embeddings: dict[int, dict] = {}
    trace: list[dict] = []
    all_choices: list[list[int]] = []
    prev_arrival = -float("inf")

    for k, req in enumerate(requests):
        arrival = float(req["arrival"])
        departure = arrival + float(req["lifetime"])
        if arrival < prev_arrival:
            raise ValueError(f"request {k} arrives at {arrival} before request {k - 1}")
        prev_arrival = arrival

        # Departures at or before this arrival are released first.
        while active and active[0][0] <= arrival:
            _, j = heapq.heappop(active)
            _release(res, requests[j], embeddings.pop(j))

        given = choices[k] if algo == "replay" else None
        new_res, hosts, emb = _handle_request(sub, res, req, k, algo, given)
        all_choices.append(hosts)

        rec = {
            "id": req["id"],
            "arrival": arrival,
            "departure": departure,
            "accepted": emb is not None,
            "node_map": None,
            "paths": None,
            "revenue": 0.0,
            "cost": 0.0,
            "link_revenue": 0.0,
            "link_cost": 0.0,
        }
        if emb is not None:
            res = new_res  # atomic commit
            rec["node_map"] = emb["node_map"]
            rec["paths"] = emb["paths"]
            rec.update(revenue_cost(req, emb["paths"]))
            embeddings[k] = emb
            heapq.heappush(active, (departure, k))
        trace.append(rec)

    out = {
        "trace": trace,
        "metrics": running_metrics(trace),
        "choices": all_choices,
        "residual": res.as_dict(),
    }
    if drain:
        drained = res.copy()
        for j, emb in embeddings.items():
            _release(drained, requests[j], emb)
        out["drained"] = drained.as_dict()
    return out


def capacities(scenario: dict) -> dict:
    """The full capacities in the same layout as ``simulate(...)["residual"]``."""
    sub = Substrate(scenario)
    return {"cpu": list(sub.cpu), "sto": list(sub.sto), "bw": dict(sub.bw)}
