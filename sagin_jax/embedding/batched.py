"""Link mapping with few sequential loop trips (the "batched" request-step strategy).

The sequential rule (docs/rules.md, ``links.embed_links``) embeds a request's links one by one in
bandwidth order, each on the min-hop path over links whose *current* residual covers its
demand, smallest-id parent on ties. Here the request's links are handled several at once, in
rounds, each round over a window of the next ``LINK_WINDOW`` pending links in bandwidth order; a
round is one ``while_loop`` trip (plus the BFS levels it needs):

1. Each pending link of the window gets a candidate path under the residual at the round's
   start: the static min-hop tree's path when all its links are eligible (no search), else a BFS
   run for all such links together (``bfs_many``: bitset frontiers [window, ceil(N/32)],
   ``BFS_LEVELS_PER_TRIP`` levels per trip).
2. The candidates are checked in bandwidth order against the residual the sequential rule would
   see, i.e. the round's residual minus the demands of the earlier candidates (an exclusive
   cumulative sum). The leading run of candidates that stay eligible is committed.
3. A candidate that stays eligible *is* the sequential answer: eligibility only shrank, and as in
   ``links.shortest_path``'s docstring, removing links never shortens a distance and leaves each
   path node's smallest-id parent among its (shrunken) candidates. A link with no path at the
   round's start has none later either: the request fails. The first candidate that lost
   bandwidth to an earlier link starts the next round, which recomputes it exactly, so every
   round commits at least one link. A round whose whole window is committed moves the window on.

Paths are read from the parent trees without walking them: binary lifting (``ancestor_tables``,
``jump``; ceil(log2 N) unrolled gathers) marks the nodes on each path, and a link is on a path
when one end is on it and has the other as its parent. Sums of demands are exact for the
integer-valued demands of generated scenarios, so the result equals the sequential rule's.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sagin_jax.embedding import links
from sagin_jax.embedding.links import (LinkEmbedding, eligible_adjacency, frontier_parents,
                                       link_keys, pack_bits)
from sagin_jax.features import rank_order
from sagin_jax.scenario.types import Requests, Substrate


def ancestor_tables(parent: jax.Array) -> list[jax.Array]:
    """[up_0, up_1, ...]: up_b[..., x] is x's ancestor 2^b levels up (roots map to themselves),
    ceil(log2 N) tables, enough to jump any depth < N."""
    n = parent.shape[-1]
    up = jnp.where(parent >= 0, parent, jnp.arange(n, dtype=parent.dtype))
    tables = [up]
    for _ in range(max(1, math.ceil(math.log2(max(n, 2)))) - 1):
        up = jnp.take_along_axis(up, up, axis=-1)
        tables.append(up)
    return tables


def jump(tables: list[jax.Array], node: jax.Array, steps: jax.Array) -> jax.Array:
    """Each ``node[..., X]`` moved ``steps[..., X]`` (>= 0) levels up its tree."""
    for b, up in enumerate(tables):
        up_node = jnp.take_along_axis(up, node, axis=-1)
        node = jnp.where(((steps >> b) & 1) == 1, up_node, node)
    return node


def path_links(sub: Substrate, parent: jax.Array, depth: jax.Array, dst: jax.Array,
               hops: jax.Array) -> jax.Array:
    """bool[L, E]: the links on the tree path to each ``dst[L]`` (``hops[L]`` long; none when 0).

    ``parent[L, N]``/``depth[L, N]`` describe one tree per row (-1 depth: not in the tree).
    """
    ids = jnp.arange(parent.shape[-1], dtype=jnp.int32)
    steps = jnp.maximum(hops[:, None] - depth, 0)
    up = jump(ancestor_tables(parent), jnp.broadcast_to(dst[:, None], parent.shape), steps)
    on = (depth >= 0) & (depth <= hops[:, None]) & (up == ids)  # node on the path (ends included)
    eu = jnp.broadcast_to(sub.edge_u, (parent.shape[0], sub.n_edges))
    ev = jnp.broadcast_to(sub.edge_v, (parent.shape[0], sub.n_edges))
    par_u, par_v = jnp.take_along_axis(parent, eu, 1), jnp.take_along_axis(parent, ev, 1)
    on_u, on_v = jnp.take_along_axis(on, eu, 1), jnp.take_along_axis(on, ev, 1)
    return sub.edge_mask & ((on_v & (par_v == eu)) | (on_u & (par_u == ev)))


def path_node_lists(parent: jax.Array, dst: jax.Array, hops: jax.Array) -> jax.Array:
    """i32[L, N]: each path's nodes from source to ``dst`` (-1 padded), as ``links.path_nodes``."""
    n = parent.shape[-1]
    pos = jnp.arange(n, dtype=jnp.int32)[None, :]
    steps = jnp.maximum(hops[:, None] - pos, 0)
    nodes = jump(ancestor_tables(parent), jnp.broadcast_to(dst[:, None], parent.shape), steps)
    return jnp.where(pos <= hops[:, None], nodes, -1)


BFS_LEVELS_PER_TRIP = 2
"""BFS levels ``bfs_many`` runs per ``while_loop`` trip (unrolled): more levels, fewer trips (host
round trips on a GPU) for some wasted levels once every row is done."""


def _run_levels(level_step, carry):
    """``level_step`` on ``carry`` (its last element: bool[L], the rows still searching),
    ``BFS_LEVELS_PER_TRIP`` levels per ``while_loop`` trip until no row searches;
    -> (carry, trips)."""
    def body(c):
        carry, trips = c
        for _ in range(BFS_LEVELS_PER_TRIP):
            carry = level_step(carry)
        return carry, trips + 1

    return jax.lax.while_loop(lambda c: jnp.any(c[0][-1]), body, (carry, jnp.int32(0)))


def bfs_many(sub: Substrate, eligible: jax.Array, src: jax.Array, dst: jax.Array,
             need: jax.Array):
    """Level-synchronous BFS from every ``src[L]`` over its own ``eligible[L, E]`` links, for all
    rows at once, until every ``need`` row has reached its ``dst`` or stalled.

    Returns ``(dist[L, N], parent[L, N], trips)`` with ``links.bfs_tree``'s rule: a node's
    parent is its smallest-id neighbour one level closer to the source. Each row's eligible
    adjacency is packed into ceil(N/32) words per node once (``links.eligible_adjacency``), so a
    level is a few word operations per node and row (``links.frontier_parents``), not a gather
    over every neighbour slot. ``trips`` counts the loop trips (``BFS_LEVELS_PER_TRIP`` levels
    each). Above ``links.BITSET_MAX_NODES`` nodes the words would cost N^2/32 per row, so each
    level reads the frontier through the neighbour lists instead (the same tree).
    """
    n = sub.n_nodes
    ids = jnp.arange(n, dtype=jnp.int32)
    row = jnp.arange(src.shape[0])
    dist0 = jnp.where(ids[None, :] == src[:, None], 0, -1).astype(jnp.int32)
    parent0 = jnp.full(dist0.shape, -1, jnp.int32)
    live0 = need & (src != dst)

    if n <= links.BITSET_MAX_NODES:
        words = -(-n // 32)
        adj = jax.vmap(lambda e: eligible_adjacency(sub, e, words))(eligible)  # [L, N, words]

        def level_step(c):
            dist, parent, level, frontier, live = c
            best = frontier_parents(adj, frontier)
            new = (dist < 0) & (best >= 0)
            dist, parent = jnp.where(new, level + 1, dist), jnp.where(new, best, parent)
            frontier = pack_bits(new, words)
            live = live & (dist[row, dst] < 0) & (frontier != 0).any(axis=-1)
            return dist, parent, level + 1, frontier, live

        carry = (dist0, parent0, jnp.int32(0), pack_bits(dist0 == 0, words), live0)
    else:
        nbr = jnp.maximum(sub.nbr_node, 0)  # [N, K]
        slot_ok = (sub.nbr_edge >= 0)[None] & eligible[:, jnp.maximum(sub.nbr_edge, 0)]

        def level_step(c):
            dist, parent, level, live = c
            at_level = (dist == level)[:, nbr]  # [L, N, K]: neighbour k of x on the frontier
            best = jnp.min(jnp.where(slot_ok & at_level, nbr[None], n), axis=-1)
            new = (dist < 0) & (best < n)
            dist, parent = jnp.where(new, level + 1, dist), jnp.where(new, best, parent)
            return dist, parent, level + 1, live & (dist[row, dst] < 0) & new.any(axis=-1)

        carry = (dist0, parent0, jnp.int32(0), live0)
    (dist, parent, *_), trips = _run_levels(level_step, carry)
    return dist, parent, trips


LINK_WINDOW = 4
"""Links a round of ``embed_links_batched`` looks at: the next ``LINK_WINDOW`` pending links in
bandwidth order, not all ``max_links`` (45) slots. A round's work (static paths, BFS frontier, path
reads) is proportional to it, and on a GPU running many seeds that work, not the loop trips, sets
the time. Measured on one CPU core (paper scenario, 2 seeds x 300 requests, NRMVNE; a process per
window): windows 45 / 16 / 8 / 4 / 2 / 1 cost 1,146 / 439 / 261 / 162 / 122 / 96 us per request
for 5.83 / 5.83 / 5.86 / 6.08 / 7.06 / 8.85 loop trips per request: rounds restart at the first
spoilt candidate anyway, so a small window adds few trips."""


def embed_links_batched(sub: Substrate, res_bw: jax.Array, req: Requests, hosts: jax.Array,
                        active: jax.Array, record_paths: bool = False) -> LinkEmbedding:
    """``links.embed_links`` (same result) in rounds over a window of the request's links at once
    (the next ``LINK_WINDOW`` pending ones in bandwidth order)."""
    n, l_max = sub.n_nodes, req.max_links
    if l_max == 0:
        z = jnp.zeros((0,), jnp.int32)
        return LinkEmbedding(ok=active, res_bw=res_bw, usage=jnp.zeros_like(res_bw), hops=z,
                             paths=jnp.zeros((0, n), jnp.int32) if record_paths else None,
                             trips=jnp.int32(0))
    w = min(LINK_WINDOW, l_max)
    order = rank_order(link_keys(req)).astype(jnp.int32)  # position -> link index
    n_live = jnp.where(active, req.link_mask.sum(dtype=jnp.int32), 0)
    # by position, padded by one window so that a window starting before l_max is never clamped
    pad = lambda x: jnp.concatenate([x, jnp.zeros((w,) + x.shape[1:], x.dtype)])  # noqa: E731
    demand = pad(req.link_bw[order])
    src = pad(jnp.maximum(hosts[req.link_a[order]], 0))
    dst = pad(jnp.maximum(hosts[req.link_b[order]], 0))
    local = jnp.arange(w, dtype=jnp.int32)
    window = lambda x, start: jax.lax.dynamic_slice_in_dim(x, start, w)  # noqa: E731

    def cond(c):
        start, _, _, _, ok, _, _ = c
        return (start < n_live) & ok

    def body(c):
        start, bw_left, usage, hops, ok, trips, paths = c
        d, s, t = window(demand, start), window(src, start), window(dst, start)
        pending = start + local < n_live
        # (the tables may be stored narrower: ``compact_substrate``)
        with jax.named_scope("static_paths"):
            static_parent = sub.tree_parent[s].astype(jnp.int32)  # [w, N]
            static_depth = sub.hops[s].astype(jnp.int32)
            static_hops = sub.hops[s, t].astype(jnp.int32)
            static_mask = path_links(sub, static_parent, static_depth, t, static_hops)
            eligible = sub.edge_mask[None] & (bw_left[None] >= d[:, None])  # [w, E]
            static_ok = ~jnp.any(static_mask & ~eligible, axis=-1)
            need = pending & ~static_ok

        def search():
            with jax.named_scope("bfs"):
                dist, parent, bfs_trips = bfs_many(sub, eligible, s, t, need)
            with jax.named_scope("bfs_paths"):
                found_hops = jnp.maximum(dist[local, t], 0)
                found_mask = path_links(sub, parent, dist, t, found_hops)
            return found_hops, found_mask, parent, bfs_trips

        def no_search():
            return (jnp.zeros_like(static_hops), jnp.zeros_like(static_mask), static_parent,
                    jnp.int32(0))

        bfs_hops, bfs_mask, bfs_parent, bfs_trips = jax.lax.cond(need.any(), search, no_search)
        cand_hops = jnp.where(static_ok, static_hops, bfs_hops)
        cand_mask = jnp.where(static_ok[:, None], static_mask, bfs_mask)
        found = cand_hops > 0
        take = jnp.where(cand_mask & pending[:, None], d[:, None], 0.0)  # [w, E]
        before = jnp.cumsum(take, axis=0) - take  # demands of the earlier candidates
        stays = ~jnp.any(cand_mask & (bw_left[None] - before < d[:, None]), axis=-1)
        valid = found & stays
        first_bad = jnp.min(jnp.where(pending & ~valid, local, w))  # w: the window is done
        commit = pending & (local < first_bad)
        taken = jnp.sum(jnp.where(commit[:, None], take, 0.0), axis=0)
        failed = (first_bad < w) & ~found[jnp.minimum(first_bad, w - 1)]
        hops = jax.lax.dynamic_update_slice_in_dim(
            hops, jnp.where(commit, cand_hops, window(hops, start)), start, 0)
        if record_paths:
            parent = jnp.where(static_ok[:, None], static_parent, bfs_parent)
            lists = path_node_lists(parent, t, cand_hops)
            keep = (commit | (pending & (local == first_bad)))[:, None]
            paths = jax.lax.dynamic_update_slice_in_dim(
                paths, jnp.where(keep, lists, window(paths, start)), start, 0)
        return (jnp.minimum(start + first_bad, n_live), bw_left - taken, usage + taken, hops,
                ok & ~failed, trips + 1 + bfs_trips, paths)

    init = (jnp.int32(0), res_bw, jnp.zeros_like(res_bw), jnp.zeros((l_max + w,), jnp.int32),
            jnp.bool_(True), jnp.int32(0),
            jnp.full((l_max + w, n), -1, jnp.int32) if record_paths else None)
    _, bw_left, usage, hops, ok, trips, paths = jax.lax.while_loop(cond, body, init)
    ok = ok & active
    rank = jnp.argmax(order[None, :] == jnp.arange(l_max)[:, None], axis=1)  # link -> position
    return LinkEmbedding(ok=ok, res_bw=jnp.where(ok, bw_left, res_bw),
                         usage=jnp.where(ok, usage, 0.0), hops=jnp.where(ok, hops[rank], 0),
                         paths=paths[rank] if record_paths else None, trips=trips)
