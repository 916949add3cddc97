"""Link mapping by minimum-hop BFS over links with enough residual bandwidth (eqs. 3, 6).

Level-synchronous BFS on the frontier over the edge list (O(E) per level). Tie-break
(docs/rules.md): the parent of a node is its smallest-id neighbour one level closer to the source.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from sagin_jax.scenario.types import Requests, Substrate

_UNSEEN = jnp.iinfo(jnp.int32).max


def bfs_parents(sub: Substrate, eligible: jax.Array, src: jax.Array, dst: jax.Array):
    """BFS from ``src`` over ``eligible`` links until ``dst`` is reached or the frontier dies.

    Returns ``(dist[N], parent_edge[N])``: hop distance (-1 unseen) and the id of the link to the
    node's parent (-1 for the source and unseen nodes).
    """
    n, e = sub.n_nodes, sub.n_edges
    u, v = sub.edge_u, sub.edge_v
    node_ids = jnp.arange(n, dtype=jnp.int32)
    dist0 = jnp.where(node_ids == src, 0, -1).astype(jnp.int32)
    edge_ids = jnp.arange(e, dtype=jnp.int32)

    def cond(c):
        dist, _, level = c
        frontier = dist == level
        return (dist[dst] < 0) & frontier.any()

    def body(c):
        dist, pedge, level = c
        frontier = dist == level
        unseen = dist < 0
        # key = parent id * E + edge id, so the min picks the smallest parent id
        key_uv = jnp.where(eligible & frontier[u] & unseen[v], u * e + edge_ids, _UNSEEN)
        key_vu = jnp.where(eligible & frontier[v] & unseen[u], v * e + edge_ids, _UNSEEN)
        best = jnp.minimum(jax.ops.segment_min(key_uv, v, num_segments=n),
                           jax.ops.segment_min(key_vu, u, num_segments=n))
        new = best < _UNSEEN
        dist = jnp.where(new, level + 1, dist)
        pedge = jnp.where(new, best % e, pedge)
        return dist, pedge, level + 1

    dist, pedge, _ = jax.lax.while_loop(
        cond, body, (dist0, jnp.full((n,), -1, jnp.int32), jnp.int32(0)))
    return dist, pedge


def path_edge_mask(sub: Substrate, parent_edge: jax.Array, dst: jax.Array, hops: jax.Array):
    """bool[E] of the links on the path read back from ``dst`` along parents (``hops`` steps)."""
    def body(c):
        node, mask, left = c
        pe = parent_edge[node]
        mask = mask.at[pe].set(True)
        other = jnp.where(sub.edge_u[pe] == node, sub.edge_v[pe], sub.edge_u[pe])
        return other, mask, left - 1

    _, mask, _ = jax.lax.while_loop(lambda c: c[2] > 0, body,
                                    (dst, jnp.zeros((sub.n_edges,), bool), hops))
    return mask


def path_nodes(sub: Substrate, parent_edge: jax.Array, src, dst, hops, max_len: int):
    """i32[max_len]: the path's nodes from ``src`` to ``dst`` (-1 padded); for the audit trail."""
    def body(i, c):
        node, out = c
        pe = parent_edge[node]
        other = jnp.where(sub.edge_u[pe] == node, sub.edge_v[pe], sub.edge_u[pe])
        pos = hops - i  # write dst at index hops, then walk back to src at index 0
        out = jnp.where((jnp.arange(max_len) == pos) & (pos >= 0), node, out)
        return jnp.where(i < hops, other, node), out

    _, out = jax.lax.fori_loop(0, max_len, body,
                               (dst, jnp.full((max_len,), -1, jnp.int32)))
    return out


@struct.dataclass
class LinkEmbedding:
    ok: jax.Array  # bool: every request link found a path
    res_bw: jax.Array  # f32[E] working residual bandwidth after the request's links
    usage: jax.Array  # f32[E] bandwidth this request takes on each substrate link
    hops: jax.Array  # i32[L] path length of each request link (0 on padding / failure)
    paths: jax.Array | None  # i32[L, P] path nodes (only when recorded)


def link_order(req: Requests) -> jax.Array:
    """Request links by bandwidth demand descending, ties by link index; padding last."""
    key = jnp.where(req.link_mask, req.link_bw, -jnp.inf)
    return jnp.argsort(-key, stable=True)


def embed_links(sub: Substrate, res_bw: jax.Array, req: Requests, hosts: jax.Array,
                active: jax.Array, record_paths: bool = False) -> LinkEmbedding:
    """Embed one request's links (eqs. 3, 6) on the working copy ``res_bw``.

    Links go in ``link_order``; each takes the min-hop path over links whose working residual
    >= its demand, and the demand is deducted before the next link. Stops at the first failure.
    ``active`` false (node stage failed) embeds nothing. The loop runs over the request's real
    links only (a ``while_loop``), not over the padding.
    """
    n, l_max = sub.n_nodes, req.max_links
    if l_max == 0:  # single-node requests only: nothing to embed
        z = jnp.zeros((0,), jnp.int32)
        return LinkEmbedding(ok=active, res_bw=res_bw, usage=jnp.zeros_like(res_bw), hops=z,
                             paths=jnp.zeros((0, n), jnp.int32) if record_paths else None)
    order = link_order(req)
    n_live = jnp.where(active, req.link_mask.sum(), 0)

    def cond(c):
        i, _, _, ok, _, _ = c
        return (i < n_live) & ok

    def body(c):
        i, bw_left, usage, ok, hops, paths = c
        j = order[i]
        demand = req.link_bw[j]
        src, dst = hosts[req.link_a[j]], hosts[req.link_b[j]]
        eligible = sub.edge_mask & (bw_left >= demand)
        dist, pedge = bfs_parents(sub, eligible, src, dst)
        found = dist[dst] > 0
        hop = jnp.where(found, dist[dst], 0)
        take = jnp.where(path_edge_mask(sub, pedge, dst, hop), demand, 0.0)
        hops = hops.at[j].set(hop)
        if record_paths:
            paths = paths.at[j].set(path_nodes(sub, pedge, src, dst, hop, n))
        return i + 1, bw_left - take, usage + take, found, hops, paths

    init = (jnp.int32(0), res_bw, jnp.zeros_like(res_bw), jnp.bool_(True),
            jnp.zeros((l_max,), jnp.int32),
            jnp.full((l_max, n), -1, jnp.int32) if record_paths else None)
    _, bw_left, usage, ok, hops, paths = jax.lax.while_loop(cond, body, init)
    ok = ok & active
    return LinkEmbedding(ok=ok, res_bw=jnp.where(ok, bw_left, res_bw),
                         usage=jnp.where(ok, usage, 0.0), hops=jnp.where(ok, hops, 0),
                         paths=paths)
