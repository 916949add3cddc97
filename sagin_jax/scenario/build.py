"""Validate host-side (numpy) scenario data and pack it into the fixed-shape pytrees.

Every check raises ``ValueError`` naming the field and the offending value, before anything is
built, so a bad input never leaves a half-made scenario behind.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import jax.numpy as jnp

from sagin_jax.checks import is_int, is_number
from sagin_jax.scenario.types import Requests, Substrate


def _check_finite_nonneg(name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] must be a finite number >= 0, got {arr[i].item()!r}")


def hop_distances(n_nodes: int, edge_u: np.ndarray, edge_v: np.ndarray) -> np.ndarray:
    """All-pairs hop distance (BFS levels, by boolean frontier products); -1 = unreachable."""
    adj = np.zeros((n_nodes, n_nodes), dtype=np.float32)
    adj[edge_u, edge_v] = 1.0
    adj[edge_v, edge_u] = 1.0
    dist = np.full((n_nodes, n_nodes), -1, dtype=np.int32)
    np.fill_diagonal(dist, 0)
    frontier = np.eye(n_nodes, dtype=np.float32)
    level = 0
    while frontier.any():
        level += 1
        reach = (frontier @ adj) > 0
        new = reach & (dist < 0)
        dist[new] = level
        frontier = new.astype(np.float32)
    return dist


def tree_parents(hops: np.ndarray, edge_u: np.ndarray, edge_v: np.ndarray) -> np.ndarray:
    """i32[N, N]: ``[s, v]`` = parent of ``v`` in the min-hop BFS tree from ``s`` over every link,
    the smallest-id neighbour one hop closer to ``s`` (-1 for ``v == s``; docs/rules.md)."""
    n = hops.shape[0]
    tail = np.concatenate([edge_u, edge_v]).astype(np.int64)
    head = np.concatenate([edge_v, edge_u]).astype(np.int64)
    order = np.lexsort((tail, head))  # directed links grouped by head, tails ascending
    tail, head = tail[order], head[order]
    parent = np.full((n, n), -1, dtype=np.int32)
    if tail.size == 0:
        return parent
    heads, starts = np.unique(head, return_index=True)
    big = tail.size
    pos = np.arange(tail.size)
    chunk = max(1, 4_000_000 // tail.size)
    for s0 in range(0, n, chunk):
        h = hops[s0:s0 + chunk]
        closer = h[:, tail] == h[:, head] - 1  # [sources, 2E]
        first = np.minimum.reduceat(np.where(closer, pos, big), starts, axis=1)  # per head
        found = first < big
        rows = np.nonzero(found)[0]
        parent[s0 + rows, heads[np.nonzero(found)[1]]] = tail[first[found]]
    return parent


def neighbour_lists(n_nodes: int, edge_u: np.ndarray, edge_v: np.ndarray,
                    pad_degree_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(nbr_node, nbr_edge)``, each i32[N, K]: each node's neighbours in ascending id order and
    the ids of the links to them, -1 padded to K = the largest degree (or ``pad_degree_to``)."""
    deg = np.bincount(np.concatenate([edge_u, edge_v]).astype(np.int64), minlength=n_nodes)
    k = int(deg.max()) if deg.size else 0
    pad = k if pad_degree_to is None else pad_degree_to
    if pad < k:
        raise ValueError(f"pad_degree_to={pad} is smaller than the largest node degree {k}")
    ids = np.arange(edge_u.shape[0])
    owner = np.concatenate([edge_u, edge_v]).astype(np.int64)
    other = np.concatenate([edge_v, edge_u]).astype(np.int64)
    eid = np.concatenate([ids, ids])
    order = np.lexsort((other, owner))  # by owner, then neighbour id
    owner, other, eid = owner[order], other[order], eid[order]
    start = np.concatenate([[0], np.cumsum(deg)[:-1]])
    slot = np.arange(owner.shape[0]) - start[owner]
    nbr_node = np.full((n_nodes, pad), -1, dtype=np.int32)
    nbr_edge = np.full((n_nodes, pad), -1, dtype=np.int32)
    nbr_node[owner, slot] = other
    nbr_edge[owner, slot] = eid
    return nbr_node, nbr_edge


def max_degree(edge_u, edge_v) -> int:
    """Largest node degree of an edge list (0 without links)."""
    ends = np.concatenate([np.asarray(edge_u), np.asarray(edge_v)]).astype(np.int64)
    return int(np.bincount(ends).max()) if ends.size else 0


def edge_ids(n_nodes: int, edge_u: np.ndarray, edge_v: np.ndarray) -> np.ndarray:
    """i32[N, N]: id of the link between two nodes, -1 where there is none."""
    eid = np.full((n_nodes, n_nodes), -1, dtype=np.int32)
    ids = np.arange(edge_u.shape[0], dtype=np.int32)
    eid[edge_u, edge_v] = ids
    eid[edge_v, edge_u] = ids
    return eid


def _validate_nodes(cpu, sto, segment, domain):
    """Node fields as arrays, checked: -> (cpu, sto, segment, domain, n_domains)."""
    cpu = np.asarray(cpu, dtype=np.float64)
    sto = np.asarray(sto, dtype=np.float64)
    segment = np.asarray(segment)
    domain = np.asarray(domain)
    n = cpu.shape[0]
    if n < 1:
        raise ValueError("substrate has no nodes")
    for name, arr in (("sto", sto), ("segment", segment), ("domain", domain)):
        if arr.shape != (n,):
            raise ValueError(f"node field '{name}' has shape {arr.shape}, expected ({n},)")
    _check_finite_nonneg("node cpu", cpu)
    _check_finite_nonneg("node sto", sto)
    if not np.issubdtype(domain.dtype, np.integer) or (domain < 0).any():
        raise ValueError(f"node domain must be integers >= 0, got {domain.tolist()[:10]}...")
    if not np.issubdtype(segment.dtype, np.integer) or ((segment < 0) | (segment > 2)).any():
        raise ValueError(f"node segment must be integers 0 (space), 1 (air) or 2 (ground), "
                         f"got {segment.tolist()[:10]}...")
    n_domains = int(domain.max()) + 1
    for d in range(n_domains):
        members = np.flatnonzero(domain == d)
        if members.size == 0:
            raise ValueError(f"node domain ids must be 0..{n_domains - 1} with none empty; "
                             f"domain {d} has no node")
        segs = np.unique(segment[members])
        if segs.size != 1:
            raise ValueError(f"domain {d} spans several segments {segs.tolist()}; "
                             "an edge physical domain lies inside one segment")
    return cpu, sto, segment, domain, n_domains


def _validate_links(n: int, edge_u, edge_v, edge_bw):
    """Link fields checked (ids, no self-loops, no duplicates, bw >= 0):
    -> (lo, hi, bw, key) with lo < hi and key = lo * n + hi, in the input order."""
    eu = np.asarray(edge_u)
    ev = np.asarray(edge_v)
    # an empty Python list becomes a float array: give it the integer dtype of node ids
    eu = eu.astype(np.int64) if eu.size == 0 else eu
    ev = ev.astype(np.int64) if ev.size == 0 else ev
    ebw = np.asarray(edge_bw, dtype=np.float64)
    e = eu.shape[0]
    if ev.shape != (e,) or ebw.shape != (e,):
        raise ValueError(f"link fields u, v, bw have shapes {eu.shape}, {ev.shape}, {ebw.shape}")
    if e and not (np.issubdtype(eu.dtype, np.integer) and np.issubdtype(ev.dtype, np.integer)):
        raise ValueError("link endpoints u, v must be integer node ids")
    for name, arr in (("u", eu), ("v", ev)):
        bad = (arr < 0) | (arr >= n)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"link {i} field '{name}' = {arr[i]} is not a node id (0..{n - 1})")
    if (eu == ev).any():
        i = int(np.flatnonzero(eu == ev)[0])
        raise ValueError(f"link {i} is a self-loop on node {eu[i]}")
    _check_finite_nonneg("link bw", ebw)
    lo, hi = np.minimum(eu, ev), np.maximum(eu, ev)
    keys = lo.astype(np.int64) * n + hi
    uniq, counts = np.unique(keys, return_counts=True)
    if (counts > 1).any():
        k = int(uniq[np.flatnonzero(counts > 1)[0]])
        raise ValueError(f"duplicate link between nodes {k // n} and {k % n}")
    return lo, hi, ebw, keys


def _check_connected(hops: np.ndarray) -> None:
    if (hops < 0).any():
        unreachable = int(np.flatnonzero(hops[0] < 0)[0]) if (hops[0] < 0).any() else -1
        raise ValueError(f"substrate is disconnected: node {unreachable} is not reachable from node 0")


def _pad_links(lo, hi, bw, pad_edges_to: int | None):
    """The links padded to ``pad_edges_to`` (endpoints 0, bw 0, mask False on padding):
    -> (edge_u, edge_v, edge_bw, edge_mask)."""
    e = lo.shape[0]
    pad = e if pad_edges_to is None else pad_edges_to
    if pad < e:
        raise ValueError(f"pad_edges_to={pad} is smaller than the {e} links")
    mask = np.zeros(pad, dtype=bool)
    mask[:e] = True
    eu_p = np.zeros(pad, dtype=np.int32)
    ev_p = np.zeros(pad, dtype=np.int32)
    bw_p = np.zeros(pad, dtype=np.float32)
    eu_p[:e], ev_p[:e], bw_p[:e] = lo, hi, bw
    return eu_p, ev_p, bw_p, mask


def domain_layout(domain: np.ndarray, hops: np.ndarray, n_domains: int):
    """``(domain_nodes, ad)``: each domain's node ids ascending (-1 padded to the largest
    domain) and eq. 16's AD, a node's summed hop distance to its domain's nodes / domain size."""
    sizes = np.bincount(domain, minlength=n_domains)
    domain_nodes = np.full((n_domains, int(sizes.max())), -1, dtype=np.int32)
    ad = np.zeros(domain.shape[0], dtype=np.float32)
    for d in range(n_domains):
        members = np.flatnonzero(domain == d)
        domain_nodes[d, : members.size] = members
        sub = hops[np.ix_(members, members)].astype(np.float64)
        ad[members] = sub.sum(axis=1) / members.size  # eq. 16
    return domain_nodes, ad


def build_substrate(
    cpu: Sequence[float],
    sto: Sequence[float],
    segment: Sequence[int],
    domain: Sequence[int],
    edge_u: Sequence[int],
    edge_v: Sequence[int],
    edge_bw: Sequence[float],
    pad_edges_to: int | None = None,
    pad_degree_to: int | None = None,
) -> Substrate:
    """Check a substrate and return it as a ``Substrate`` pytree; the link list is padded to
    ``pad_edges_to`` links and the neighbour lists to ``pad_degree_to`` slots if asked (so that
    substrates of several seeds stack). Links are stored in canonical order (min id, max id)."""
    cpu, sto, segment, domain, n_domains = _validate_nodes(cpu, sto, segment, domain)
    n = cpu.shape[0]
    lo, hi, bw, keys = _validate_links(n, edge_u, edge_v, edge_bw)
    hops = hop_distances(n, lo, hi)
    _check_connected(hops)
    order = np.argsort(keys, kind="stable")
    lo, hi, bw = lo[order], hi[order], bw[order]
    edge_u, edge_v, edge_bw, edge_mask = _pad_links(lo, hi, bw, pad_edges_to)
    nbr_node, nbr_edge = neighbour_lists(n, lo, hi, pad_degree_to)
    domain_nodes, ad = domain_layout(domain, hops, n_domains)
    return Substrate(
        cpu=jnp.asarray(cpu, dtype=jnp.float32),
        sto=jnp.asarray(sto, dtype=jnp.float32),
        segment=jnp.asarray(segment, dtype=jnp.int32),
        domain=jnp.asarray(domain, dtype=jnp.int32),
        edge_u=jnp.asarray(edge_u),
        edge_v=jnp.asarray(edge_v),
        edge_bw=jnp.asarray(edge_bw),
        edge_mask=jnp.asarray(edge_mask),
        nbr_node=jnp.asarray(nbr_node),
        nbr_edge=jnp.asarray(nbr_edge),
        hops=jnp.asarray(hops),
        tree_parent=jnp.asarray(tree_parents(hops, lo, hi)),
        edge_id=jnp.asarray(edge_ids(n, lo, hi)),
        domain_nodes=jnp.asarray(domain_nodes),
        ad=jnp.asarray(ad),
    )


def _check_fields(where: str, obj, keys) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(obj).__name__}")
    for key in keys:
        if key not in obj:
            raise ValueError(f"{where}: missing field '{key}'")


def _check_times(where: str, req: dict, prev: float) -> tuple:
    """-> (arrival, lifetime), checked (finite, arrival >= 0 and in order, lifetime > 0)."""
    t, life = req["arrival"], req["lifetime"]
    if not is_number(t) or not np.isfinite(t) or t < 0:
        raise ValueError(f"{where}: arrival must be a finite number >= 0, got {t!r}")
    if t < prev:
        raise ValueError(f"{where}: arrival {t} is earlier than the previous request's {prev}; "
                         "requests must be in arrival order")
    if not is_number(life) or not np.isfinite(life) or life <= 0:
        raise ValueError(f"{where}: lifetime must be a finite number > 0, got {life!r}")
    return t, life


def _check_request_nodes(where: str, nodes, max_nodes: int, n_domains: int) -> None:
    if not 1 <= len(nodes) <= max_nodes:
        raise ValueError(f"{where}: has {len(nodes)} nodes; must be 1..{max_nodes} (the padding "
                         "size max_req_nodes)")
    for i, nd in enumerate(nodes):
        _check_fields(f"{where} node {i}", nd, ("cpu", "sto", "domain"))
        for key in ("cpu", "sto"):
            v = nd[key]
            if not is_number(v) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{where} node {i}: {key} must be a finite number >= 0, "
                                 f"got {v!r}")
        d = nd["domain"]
        if not is_int(d) or not 0 <= d < n_domains:
            raise ValueError(f"{where} node {i}: candidate domain {d!r} does not exist "
                             f"(domains are 0..{n_domains - 1})")


def _sorted_request_links(where: str, links, n_nodes: int) -> list:
    """The request's links checked and normalised: [(a, b, bw)] with a < b, lexicographic."""
    seen = {}
    for j, lk in enumerate(links):
        _check_fields(f"{where} link {j}", lk, ("a", "b", "bw"))
        a, b, bw = lk["a"], lk["b"], lk["bw"]
        for key, v in (("a", a), ("b", b)):
            if not is_int(v) or not 0 <= v < n_nodes:
                raise ValueError(f"{where} link {j}: endpoint {key}={v!r} is not a node of "
                                 f"the request (0..{n_nodes - 1})")
        if a == b:
            raise ValueError(f"{where} link {j}: self-loop on request node {a}")
        if not is_number(bw) or not np.isfinite(bw) or bw < 0:
            raise ValueError(f"{where} link {j}: bw must be a finite number >= 0, got {bw!r}")
        key = (min(a, b), max(a, b))
        if key in seen:
            raise ValueError(f"{where} link {j}: duplicate of link {seen[key]} {key}")
        seen[key] = j
    return [(a, b, links[seen[(a, b)]]["bw"]) for a, b in sorted(seen)]


def build_requests(requests: Sequence[dict], n_domains: int, max_nodes: int = 10) -> Requests:
    """Check request dicts (scenario.json schema) and pack them padded to ``max_nodes``.

    Each request is ``{"arrival", "lifetime", "nodes": [{"cpu", "sto", "domain"}],
    "links": [{"a", "b", "bw"}]}``. Links are normalised to ``a < b`` in lexicographic order.
    """
    r = len(requests)
    if r < 1:
        raise ValueError("request set is empty")
    m = max_nodes
    l_max = m * (m - 1) // 2
    arrival = np.zeros(r, np.float32)
    lifetime = np.zeros(r, np.float32)
    node_mask = np.zeros((r, m), bool)
    cpu = np.zeros((r, m), np.float32)
    sto = np.zeros((r, m), np.float32)
    dom = np.zeros((r, m), np.int32)
    la = np.zeros((r, l_max), np.int32)
    lb = np.zeros((r, l_max), np.int32)
    lbw = np.zeros((r, l_max), np.float32)
    lmask = np.zeros((r, l_max), bool)
    prev = -np.inf
    for k, req in enumerate(requests):
        where = f"request {k}"
        _check_fields(where, req, ("arrival", "lifetime", "nodes", "links"))
        arrival[k], lifetime[k] = _check_times(where, req, prev)
        prev = req["arrival"]
        nodes, links = req["nodes"], req["links"]
        for key, val in (("nodes", nodes), ("links", links)):
            if not isinstance(val, (list, tuple)):
                raise ValueError(f"{where}: field '{key}' must be a list, got "
                                 f"{type(val).__name__}")
        _check_request_nodes(where, nodes, m, n_domains)
        for i, nd in enumerate(nodes):
            node_mask[k, i] = True
            cpu[k, i], sto[k, i], dom[k, i] = nd["cpu"], nd["sto"], nd["domain"]
        for j, (a, b, bw) in enumerate(_sorted_request_links(where, links, len(nodes))):
            la[k, j], lb[k, j], lbw[k, j], lmask[k, j] = a, b, bw, True
    return Requests(
        arrival=jnp.asarray(arrival), lifetime=jnp.asarray(lifetime),
        node_mask=jnp.asarray(node_mask), cpu=jnp.asarray(cpu), sto=jnp.asarray(sto),
        domain=jnp.asarray(dom), link_a=jnp.asarray(la), link_b=jnp.asarray(lb),
        link_bw=jnp.asarray(lbw), link_mask=jnp.asarray(lmask),
    )


def max_concurrent(requests: Requests) -> int:
    """Most requests alive at once (arrival <= t < departure) over every seed of ``requests``
    (leading axes are seeds): an upper bound on active ones. Sizes the fixed active-request
    table, so it can never overflow.

    Alive at request k: j <= k with departure_j > arrival_k (departures first at ties); no j > k
    has departure_j <= arrival_k (lifetimes > 0), so the count runs over all j. Vectorised over
    seeds: each seed's times are shifted by ``seed * span`` so one ``searchsorted`` serves all.
    """
    r = requests.n_requests
    arr = np.asarray(requests.arrival, dtype=np.float64).reshape(-1, r)
    dep = arr + np.asarray(requests.lifetime, dtype=np.float64).reshape(arr.shape)
    span = float(max(dep.max(), arr.max())) + 1.0
    shift = np.arange(arr.shape[0], dtype=np.float64)[:, None] * span
    gone = np.searchsorted(np.sort(dep, axis=1).ravel() + np.repeat(shift[:, 0], r),
                           (arr + shift).ravel(), side="right").reshape(arr.shape)
    gone -= np.arange(arr.shape[0])[:, None] * r  # the other seeds' departures before this one
    return max(1, int((np.arange(1, r + 1)[None, :] - gone).max()))
