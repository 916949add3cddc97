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
    e = sub.n_edges

    def body(_, c):
        node, mask, left = c
        pe = parent_edge[node]
        step = left > 0
        mask = mask | ((jnp.arange(e) == pe) & step)
        other = jnp.where(sub.edge_u[pe] == node, sub.edge_v[pe], sub.edge_u[pe])
        return jnp.where(step, other, node), mask, left - 1

    def cond(c):
        return c[2] > 0

    _, mask, _ = jax.lax.while_loop(cond, lambda c: body(None, c),
                                    (dst, jnp.zeros((e,), bool), hops))
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
    ``active`` false (node stage failed) embeds nothing.
    """
    n = sub.n_nodes
    p = n

    def one(carry, j):
        bw_left, usage, ok = carry
        live = req.link_mask[j] & ok & active
        demand = req.link_bw[j]
        src, dst = hosts[req.link_a[j]], hosts[req.link_b[j]]
        eligible = sub.edge_mask & (bw_left >= demand) & live
        dist, pedge = bfs_parents(sub, eligible, jnp.where(live, src, 0), jnp.where(live, dst, 0))
        found = dist[jnp.where(live, dst, 0)] > 0
        hop = jnp.where(live & found, dist[dst], 0)
        on_path = path_edge_mask(sub, pedge, dst, hop)
        take = jnp.where(on_path, demand, 0.0)
        out = (hop, path_nodes(sub, pedge, src, dst, hop, p) if record_paths else None)
        return (bw_left - take, usage + take, ok & (found | ~live)), (j, out)

    order = link_order(req)
    (bw_left, usage, ok), (js, (hop_sorted, path_sorted)) = jax.lax.scan(
        one, (res_bw, jnp.zeros_like(res_bw), jnp.bool_(True)), order)
    ok = ok & active
    # back to link-index order
    inv = jnp.argsort(order)
    hops = jnp.where(ok, hop_sorted[inv], 0)
    paths = path_sorted[inv] if record_paths else None
    return LinkEmbedding(ok=ok, res_bw=jnp.where(ok, bw_left, res_bw),
                         usage=jnp.where(ok, usage, 0.0), hops=hops, paths=paths)
