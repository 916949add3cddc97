"""Link mapping by minimum-hop BFS over links with enough residual bandwidth (eqs. 3, 6).

Tie-break (docs/rules.md): the parent of a node is its smallest-id neighbour one level closer
to the source. ``shortest_path`` first tries the static min-hop tree's path (no BFS when all its
links are eligible), else runs a level-synchronous BFS until the destination is reached. Two BFS
layouts give the same tree, chosen by substrate size (``bfs_tree``):

* bitset (N <= ``BITSET_MAX_NODES``): the eligible adjacency as N x ceil(N/32) words, built from
  the neighbour lists without a scatter; a BFS level is a handful of word operations per node;
* edge list (larger N): one ``segment_min`` over the directed links per level, O(E) per level
  and no N^2/32 words per level.

Scatter-free code matters on a CPU: XLA compiles a loop without scatters or sorts as one
function instead of dispatching each operation (see ``sagin_jax.SMALL_LOOP_BYTES`` and README,
Performance).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from sagin_jax.scenario.types import Requests, Substrate

BITSET_MAX_NODES = 512


def _directed(sub: Substrate, eligible: jax.Array):
    """Each undirected link as two directed ones: ``(tail[2E], head[2E], eligible[2E])``."""
    return (jnp.concatenate([sub.edge_u, sub.edge_v]), jnp.concatenate([sub.edge_v, sub.edge_u]),
            jnp.concatenate([eligible, eligible]))


def eligible_adjacency(sub: Substrate, eligible: jax.Array, words: int) -> jax.Array:
    """u32[N, words]: bit j of word w of row t is set iff the link t -> 32 w + j is eligible.

    Built from the neighbour lists with one-hot word selection (no scatter, so the loops around
    it stay small for XLA CPU, see ``sagin_jax.SMALL_LOOP_BYTES``). A node's neighbours are
    distinct, so summing their bits is OR-ing them.
    """
    slot_ok = (sub.nbr_edge >= 0) & eligible[jnp.maximum(sub.nbr_edge, 0)]  # [N, K]
    nbr = jnp.maximum(sub.nbr_node, 0)
    bit = jnp.where(slot_ok, jnp.left_shift(jnp.uint32(1), (nbr % 32).astype(jnp.uint32)),
                    jnp.uint32(0))
    word = nbr // 32
    return jnp.stack([jnp.sum(jnp.where(word == w, bit, jnp.uint32(0)), axis=-1,
                              dtype=jnp.uint32) for w in range(words)], axis=-1)


def frontier_parents(adj: jax.Array, frontier: jax.Array) -> jax.Array:
    """i32[..., N]: each node's smallest-id neighbour on the frontier (-1: none), from the
    eligible adjacency words u32[..., N, W] and the frontier's words u32[..., W]."""
    words = adj.shape[-1]
    best = jnp.full(adj.shape[:-1], -1, jnp.int32)
    for w in reversed(range(words)):  # the lowest word with a frontier neighbour wins
        x = adj[..., w] & frontier[..., None, w]
        lowest = x & (~x + jnp.uint32(1))
        best = jnp.where(x != 0, w * 32 + 31 - jax.lax.clz(lowest).astype(jnp.int32), best)
    return best


def pack_bits(mask: jax.Array, words: int) -> jax.Array:
    """bool[..., N] -> u32[..., words]: bit j of word w is ``mask[..., 32 w + j]``."""
    *lead, n = mask.shape
    lane = jnp.left_shift(jnp.uint32(1), jnp.arange(32, dtype=jnp.uint32))
    m = jnp.pad(mask, [(0, 0)] * len(lead) + [(0, words * 32 - n)]).reshape(*lead, words, 32)
    return jnp.where(m, lane, jnp.uint32(0)).sum(axis=-1, dtype=jnp.uint32)


def _bfs_bitset(sub: Substrate, eligible: jax.Array, src: jax.Array, dst: jax.Array,
                run: jax.Array | bool = True):
    n = sub.n_nodes
    words = -(-n // 32)
    # adj[t, w] bit j: eligible t -> 32 w + j; built per level when ``run`` is traced (under
    # vmap the BFS of most lanes takes no level, so the adjacency is then not built for them)
    adj = None if isinstance(run, jax.Array) else eligible_adjacency(sub, eligible, words)
    ids = jnp.arange(n, dtype=jnp.int32)

    def body(c):
        tree, level, frontier, _ = c  # tree = [dist, parent]; one array, one write per level
        dist, parent = tree[0], tree[1]
        best = frontier_parents(eligible_adjacency(sub, eligible, words) if adj is None else adj,
                                frontier)
        new = (dist < 0) & (best >= 0)
        tree = jnp.stack([jnp.where(new, level + 1, dist), jnp.where(new, best, parent)])
        frontier = pack_bits(new, words)
        return tree, level + 1, frontier, (tree[0, dst] < 0) & (frontier != 0).any()

    tree0 = jnp.stack([jnp.where(ids == src, 0, -1), jnp.full((n,), -1)]).astype(jnp.int32)
    init = (tree0, jnp.int32(0), pack_bits(ids == src, words), (src != dst) & run)
    tree, levels, _, _ = jax.lax.while_loop(lambda c: c[3], body, init)
    return tree[0], tree[1], levels


def _bfs_edges(sub: Substrate, eligible: jax.Array, src: jax.Array, dst: jax.Array,
               run: jax.Array | bool = True):
    n = sub.n_nodes
    tail, head, ok = _directed(sub, eligible)
    ids = jnp.arange(n, dtype=jnp.int32)

    def cond(c):
        dist, _, level = c
        return run & (dist[dst] < 0) & (dist == level).any()

    def body(c):
        dist, parent, level = c
        cross = ok & (dist[tail] == level) & (dist[head] < 0)
        best = jax.ops.segment_min(jnp.where(cross, tail, n), head, num_segments=n)
        new = best < n
        return jnp.where(new, level + 1, dist), jnp.where(new, best, parent), level + 1

    dist0 = jnp.where(ids == src, 0, -1).astype(jnp.int32)
    dist, parent, levels = jax.lax.while_loop(
        cond, body, (dist0, jnp.full((n,), -1, jnp.int32), jnp.int32(0)))
    return dist, parent, levels


def bfs_tree(sub: Substrate, eligible: jax.Array, src: jax.Array, dst: jax.Array,
             run: jax.Array | bool = True):
    """BFS from ``src`` over ``eligible`` links until ``dst`` is reached or the frontier dies.

    Returns ``(dist[N], parent[N], levels)``: hop distance (-1 unseen) and the parent node, the
    smallest-id neighbour one level closer to ``src`` over an eligible link (-1 for the source
    and unseen nodes), and the number of BFS levels run (loop trips). Bitset layout up to
    ``BITSET_MAX_NODES`` nodes, edge list above. ``run`` false: no level is run (the source
    alone is seen, ``levels`` 0).
    """
    if sub.n_nodes <= BITSET_MAX_NODES:
        return _bfs_bitset(sub, eligible, src, dst, run)
    return _bfs_edges(sub, eligible, src, dst, run)


def walk_path(sub: Substrate, parent: jax.Array, dst: jax.Array, hops: jax.Array,
              eligible: jax.Array, under_vmap: bool = False):
    """Read the path back from ``dst`` along ``parent`` for ``hops`` steps.

    Returns ``(mask, ok)``: bool[E] of the links on the path, and whether all of them are
    ``eligible``. Scalar steps (one ``edge_id`` lookup each), no O(E) work per step.
    """
    def body(c):
        node, mask, left, ok = c
        p = parent[node]
        e = sub.edge_id[node, p].astype(jnp.int32)
        mask = (mask | (jnp.arange(mask.shape[0]) == e)) if under_vmap else mask.at[e].set(True)
        return p, mask, left - 1, ok & eligible[e]

    _, mask, _, ok = jax.lax.while_loop(
        lambda c: c[2] > 0, body,
        (dst, jnp.zeros((sub.n_edges,), bool), hops, jnp.bool_(True)))
    return mask, ok


def shortest_path(sub: Substrate, eligible: jax.Array, src: jax.Array, dst: jax.Array,
                  under_vmap: bool = False):
    """The min-hop path over ``eligible`` links (eqs. 3, 6; tie-break of docs/rules.md).

    Returns ``(hops, mask, parent, trips)``: path length (0 if ``dst`` is unreachable), bool[E]
    of its links, the BFS tree's parents (for the audit trail), and the sequential loop trips
    taken (path-walk steps plus BFS levels; see ``Outcome.trips``).

    Fast path: if every link of the path in the static min-hop tree of the *whole* topology
    (``sub.tree_parent``) is eligible, that path is the answer and the BFS is skipped. It is the
    same path the BFS would find: removing links never shortens a distance, so the static path
    stays min-hop, and each of its nodes' eligible candidate parents are a subset of its static
    candidates that still holds the static (smallest-id) parent.

    ``under_vmap``: the same result without a ``lax.cond`` or indexed writes in loops. Under
    ``vmap`` a cond on a batched predicate runs both branches, so every link would run the BFS;
    here the search's loops take no trip where the static path holds (for code vmapped by its
    caller, such as ``SaginEnv``).
    """
    tree = sub.tree_parent[src].astype(jnp.int32)  # (may be stored narrower: compact_substrate)
    tree_hops = sub.hops[src, dst].astype(jnp.int32)
    tree_mask, tree_ok = walk_path(sub, tree, dst, tree_hops, eligible, under_vmap)

    def search():
        dist, parent, levels = bfs_tree(sub, eligible, src, dst)
        hops = jnp.maximum(dist[dst], 0)
        mask, _ = walk_path(sub, parent, dst, hops, eligible)
        return hops, mask, parent, levels + hops

    if under_vmap:
        dist, bfs_parent, levels = bfs_tree(sub, eligible, src, dst, run=~tree_ok)
        bfs_hops = jnp.where(tree_ok, 0, jnp.maximum(dist[dst], 0))
        bfs_mask, _ = walk_path(sub, bfs_parent, dst, bfs_hops, eligible, True)
        pick = lambda a, b: jnp.where(tree_ok, a, b)  # noqa: E731
        return (pick(tree_hops, bfs_hops), pick(tree_mask, bfs_mask), pick(tree, bfs_parent),
                tree_hops + pick(0, levels + bfs_hops))
    hops, mask, parent, search_trips = jax.lax.cond(
        tree_ok, lambda: (tree_hops, tree_mask, tree, jnp.int32(0)), search)
    return hops, mask, parent, tree_hops + search_trips


def path_nodes(sub: Substrate, parent: jax.Array, src, dst, hops, max_len: int):
    """i32[max_len]: the path's nodes from ``src`` to ``dst`` (-1 padded); for the audit trail."""
    def body(i, c):
        node, out = c
        pos = hops - i  # write dst at index hops, then walk back to src at index 0
        out = jnp.where((jnp.arange(max_len) == pos) & (pos >= 0), node, out)
        return jnp.where(i < hops, parent[node], node), out

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
    trips: jax.Array  # i32 sequential loop trips taken (links, path walks, BFS levels)


def link_keys(req: Requests) -> jax.Array:
    """f32[L]: the order key of each request link, its bandwidth demand (-inf on padding).

    Links are embedded by key descending, ties by smaller index (docs/rules.md). ``embed_links``
    takes the next link as the ``argmax`` of the keys left (first index on ties), which equals
    the stable descending sort without sorting all L = M(M-1)/2 padded entries: an XLA CPU sort
    of 45 keys costs more than the few argmaxes of a request's real links.
    """
    return jnp.where(req.link_mask, req.link_bw, -jnp.inf)


def embed_links(sub: Substrate, res_bw: jax.Array, req: Requests, hosts: jax.Array,
                active: jax.Array, record_paths: bool = False,
                under_vmap: bool = False) -> LinkEmbedding:
    """Embed one request's links (eqs. 3, 6) on the working copy ``res_bw``.

    Links go by ``link_keys`` descending (picked one at a time); each takes the min-hop
    path over links whose working residual >= its demand (``shortest_path``), and the demand is
    deducted before the next link. Stops at the first failure.
    ``active`` false (node stage failed) embeds nothing. The loop runs over the request's real
    links only (a ``while_loop``), not over the padding. ``under_vmap``: see
    ``shortest_path``.
    """
    n, l_max = sub.n_nodes, req.max_links
    if l_max == 0:  # single-node requests only: nothing to embed
        z = jnp.zeros((0,), jnp.int32)
        return LinkEmbedding(ok=active, res_bw=res_bw, usage=jnp.zeros_like(res_bw), hops=z,
                             paths=jnp.zeros((0, n), jnp.int32) if record_paths else None,
                             trips=jnp.int32(0))
    n_live = jnp.where(active, req.link_mask.sum(), 0)

    def cond(c):
        i, _, _, _, ok, _, _, _ = c
        return (i < n_live) & ok

    def body(c):
        i, keys, bw_left, usage, ok, hops, paths, trips = c
        j = jnp.argmax(keys)  # the next link: largest demand left, smallest index on ties
        pick = jnp.arange(l_max) == j
        keys = jnp.where(pick, -jnp.inf, keys) if under_vmap else keys.at[j].set(-jnp.inf)
        demand = req.link_bw[j]
        src, dst = hosts[req.link_a[j]], hosts[req.link_b[j]]
        eligible = sub.edge_mask & (bw_left >= demand)
        hop, path, parent, path_trips = shortest_path(sub, eligible, src, dst, under_vmap)
        trips = trips + 1 + path_trips
        found = hop > 0
        take = jnp.where(path, demand, 0.0)
        hops = jnp.where(pick, hop, hops) if under_vmap else hops.at[j].set(hop)
        if record_paths:
            paths = paths.at[j].set(path_nodes(sub, parent, src, dst, hop, n))
            trips = trips + n  # path_nodes' fori_loop
        return i + 1, keys, bw_left - take, usage + take, found, hops, paths, trips

    init = (jnp.int32(0), link_keys(req), res_bw, jnp.zeros_like(res_bw), jnp.bool_(True),
            jnp.zeros((l_max,), jnp.int32),
            jnp.full((l_max, n), -1, jnp.int32) if record_paths else None, jnp.int32(0))
    _, _, bw_left, usage, ok, hops, paths, trips = jax.lax.while_loop(cond, body, init)
    ok = ok & active
    return LinkEmbedding(ok=ok, res_bw=jnp.where(ok, bw_left, res_bw),
                         usage=jnp.where(ok, usage, 0.0), hops=jnp.where(ok, hops, 0),
                         paths=paths, trips=trips)
