"""The substrate program: one seed's SAGIN substrate (DESIGN section 2) as a pure, fixed-shape
function of its key (``draw_substrate``): the satellite +Grid, UAV k-nearest links, the Waxman ground
graph, inter-segment links, the connectivity repair, capacities, domains and the tables the
simulator reads (link ids, neighbour lists, hop counts, min-hop trees, domain lists).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from sagin_jax.scenario.bitlines import bit_lines, count_through, nth_set_bits, pin, where
from sagin_jax.scenario.plan import Plan, grid_links_plan
from sagin_jax.scenario.types import Substrate
from sagin_jax.scenario.words import mulhi, Stream


def _min_first(x):
    """(min, ``jnp.argmin``) over the last axis (the first of equal minima; no NaN in x) as
    two plain reductions, a min and a min of the indices that hold it: XLA CPU vectorises those,
    not the (value, index) pair reduction of argmin (~3x slower on the substrate's arrays)."""
    idx = lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    low = x.min(axis=-1)
    return low, where(x == low[..., None], idx, x.shape[-1]).min(axis=-1)


def _kth_nearest(d, k: int):
    """The k-th smallest (value, column) of each row of d in (value, column) order, i.e. the
    last of k argmin picks: f32[R], i32[R]; (-inf, -1) for k = 0. Entry (i, j) is among row
    i's k nearest (ties by smaller column) iff ``_within(d[i, j], j, value[i], column[i])``."""
    if k == 0:
        return jnp.full(d.shape[:1], -jnp.inf), jnp.full(d.shape[:1], -1, jnp.int32)
    idx = lax.broadcasted_iota(jnp.int32, d.shape, 1)

    def pick(_, carry):
        dd, _, _ = carry
        low, j = _min_first(dd)
        return where(idx == j[:, None], jnp.inf, dd), low, j
    _, value, column = lax.fori_loop(0, k, pick, (d, d[:, 0], jnp.zeros(d.shape[:1], jnp.int32)))
    return value, column


def _within(v, j, value, column):
    """(v, j) <= (value, column) in (value, column) order."""
    return (v < value) | ((v == value) & (j <= column))


def _near_links(d, d_mirror, k: int):
    """The k-nearest links of block d [R, C] (each row picks its k nearest columns) and the
    same links seen from the other side, [C, R], read from ``d_mirror`` = the distance block
    at the mirrored position (the distance matrix is exactly symmetric): no transpose."""
    value, column = _kth_nearest(d, k)
    col = lax.broadcasted_iota(jnp.int32, d.shape, 1)
    row = lax.broadcasted_iota(jnp.int32, d_mirror.shape, 0)
    return (_within(d, col, value[:, None], column[:, None]),
            _within(d_mirror, row, value[None, :], column[None, :]))


def _domains(plan: Plan, x):
    """Split each segment into its domains by x position, equal sizes (np.array_split),
    ties by node id: i32[N]."""
    out, base, first = [], 0, 0
    for seg, (count, k) in enumerate(zip((plan.ns, plan.na, plan.ng),
                                         plan.domains_per_segment)):
        xs = x[base:base + count]
        idx = jnp.arange(count)
        before = (xs[None, :] < xs[:, None]) | ((xs[None, :] == xs[:, None])
                                                & (idx[None, :] < idx[:, None]))
        rank = before.sum(axis=1)
        sizes = [len(c) for c in np.array_split(np.arange(count), k)]
        chunk_of_rank = np.repeat(np.arange(k), sizes).astype(np.int32)
        out.append(first + jnp.asarray(chunk_of_rank)[rank])
        base += count
        first += k
    return jnp.concatenate(out)


def _domain_sizes(plan: Plan) -> np.ndarray:
    sizes = []
    for count, k in zip((plan.ns, plan.na, plan.ng), plan.domains_per_segment):
        sizes += [len(c) for c in np.array_split(np.arange(count), k)]
    return np.array(sizes)


def _components_repair(adj, dist):
    """Join the component of node 0 to the rest by the shortest missing link until connected
    (ties by smaller (component-0 node, other node)): -> (adjacency, repair-link matrix)."""
    n = adj.shape[0]
    big = jnp.int32(n)

    def spread(state):
        lab, _ = state
        # min label over each node's neighbours, reduced down the columns (adj is symmetric):
        # XLA CPU vectorises a reduction over the major axis; over rows it splits it in two
        nb = jnp.min(where(adj, lab[:, None], big), axis=0)
        new = jnp.minimum(lab, nb)
        new = new[new]  # pointer jumping: a label is a node of the same component
        return new, jnp.any(new != lab)

    labels, _ = lax.while_loop(lambda s: s[1], spread, (jnp.arange(n, dtype=jnp.int32),
                                                        jnp.bool_(True)))

    def join(state):
        a_mat, rep, lab = state
        in0 = lab == 0
        # the first (a, b) in row-major order at the least distance from component 0 (a) to
        # another (b): each a's nearest outsider reduced down the columns (dist is symmetric),
        # then the smallest such a and, in its row, the smallest b at that distance
        near = where(in0, jnp.min(where(in0[:, None], jnp.inf, dist), axis=0), jnp.inf)
        low = near.min()
        ids = jnp.arange(n)
        a = where(near == low, ids, n).min()
        b = where(~in0 & (lax.dynamic_index_in_dim(dist, a, 0, False) == low), ids, n).min()
        rows, cols = ids[:, None], ids[None, :]
        hit = ((rows == a) & (cols == b)) | ((rows == b) & (cols == a))
        lab = where(lab == lab[b], 0, lab)
        return a_mat | hit, rep | hit, lab

    adj, rep, _ = lax.while_loop(lambda s: jnp.any(s[2] != 0), join,
                                 (adj, jnp.zeros_like(adj), labels))
    return adj, rep


def _hops_bitset(nbr_node, n: int):
    """All-pairs hop distance by BFS over the neighbour lists, all sources at once, the visited
    sets as bitsets: i32[N, N], -1 = unreachable.

    The level at which each (node, source) pair is reached is written into ``bit_length(N - 1)``
    bit planes of [N, W] words (plane b holds bit b of level - 1 of the pairs reached so far), so
    a level touches N W words, not N N entries; the hop counts are read out once at the end."""
    w = -(-n // 32)
    n_planes = max(1, (n - 1).bit_length())
    ids = jnp.arange(n)
    vis = jnp.zeros((n + 1, w), jnp.uint32).at[ids, ids // 32].set(
        jnp.uint32(1) << (ids % 32).astype(jnp.uint32))
    nbr = where(nbr_node < 0, n, nbr_node)

    def step(state):
        vis, planes, _, level = state  # level: the one this step reaches, minus one
        nb = jnp.bitwise_or.reduce(vis[nbr], axis=1)  # [N, W]
        new = nb & ~vis[:n]
        # rows 0..N-1 by index, the same as a slice update but a scatter: XLA CPU does not
        # compile a while loop that holds one into a single function (its "small call"), and
        # as separate kernels this loop is faster (the substrate program 203 -> 158 us per seed
        # on one core; the labels loop gained nothing that way, the tree parents lost 3x)
        vis = vis.at[ids].set(vis[:n] | new)
        bits = (level >> jnp.arange(n_planes, dtype=jnp.int32)) & 1  # of level - 1, per plane
        planes = planes | where(bits[:, None, None] == 1, new[None], jnp.uint32(0))
        return vis, planes, jnp.any(new != 0), level + 1

    vis, planes, _, _ = lax.while_loop(lambda s: s[2], step, (
        vis, jnp.zeros((n_planes, n, w), jnp.uint32), jnp.bool_(True), jnp.int32(0)))
    col_word = ids // 32
    col_bit = (ids % 32).astype(jnp.uint32)
    count = jnp.zeros((n, n), jnp.int32)
    for b in range(n_planes):
        count = count | (((planes[b][:, col_word] >> col_bit[None, :]) & 1).astype(jnp.int32) << b)
    reached = ((vis[:n][:, col_word] >> col_bit[None, :]) & 1).astype(bool)
    return where(reached, where(jnp.eye(n, dtype=bool), 0, count + 1), -1)


def _tree_parents(hops, nbr_node):
    """i32[N, N]: ``[s, v]`` = smallest-id neighbour of v one hop closer to s (-1 at v == s).

    One pass per neighbour slot (ascending ids), each over [N, N]: the first slot whose
    neighbour is one hop closer wins. (A single [N, K, N] gather costs ~4x more once vmapped
    over a chunk of seeds: it does not stay in cache. A loop over the slots compiles 0.5 s
    faster than the K passes unrolled, and runs no slower.)"""
    n, k = nbr_node.shape

    def by_slot(j, parent):  # parent [v, s]
        u = lax.dynamic_index_in_dim(nbr_node, j, axis=1, keepdims=False)  # [v]
        closer = (u[:, None] >= 0) & (hops[jnp.maximum(u, 0)] == hops - 1) & (parent < 0)
        return where(closer, u[:, None], parent)

    parent = lax.fori_loop(0, k, by_slot, jnp.full((n, n), -1, jnp.int32))
    # the transpose inside an elementwise fusion (XLA's copy for a bare one costs ~50 ms more to
    # compile); the values stay: parent is -1 where hops is 0 (v == s) or -1 (unreachable)
    return where(hops > 0, parent.T, -1)


def _link_ranks(adj, max_edges: int, max_degree: int, one=None):
    """From a symmetric adjacency bool[N, N]: (edge_id i32[N, N], n_edges, nbr_node i32[N, K],
    deg i32[N]). Link (i, j), i < j, is numbered by its row-major rank over the upper triangle
    (-1 past ``max_edges``, and off the links); ``nbr_node[i]`` lists i's neighbours in
    ascending order, -1 padded (cut at K = ``max_degree``).

    All from the adjacency packed into bit words (``bit_lines``) and popcounts, elementwise
    (no prefix sum over [N, N], no scatter): the rank of (i, j) counts row i's bits through j,
    and entry (j, i) of the lower triangle counts the same bits down column i (by symmetry
    column i's words are row i's), so neither needs a transpose. The per-node counts are
    pinned (``pin``): XLA CPU would recompute them for every entry of the [N, N] ranks."""
    n = adj.shape[0]
    words, before, deg = bit_lines(adj)
    ids = jnp.arange(n, dtype=jnp.int32)
    low = count_through(words, before, ids)  # node i's links to nodes <= i
    up = deg - low  # links (i, j > i)
    first = jnp.cumsum(up) - up  # rank of row i's first link
    pinned = pin(one, *words, *before, low, first)
    words, before = list(pinned[:len(words)]), list(pinned[len(words):2 * len(words)])
    low, first = pinned[-2:]
    row_through = count_through([x[:, None] for x in words], [x[:, None] for x in before],
                                 ids[None, :])  # [i, j]: row i's bits through j
    col_through = count_through([x[None, :] for x in words], [x[None, :] for x in before],
                                 ids[:, None])  # [i, j]: column j's bits through i
    rank_up = first[:, None] + row_through - low[:, None] - 1
    rank_low = first[None, :] + col_through - low[None, :] - 1
    i, j = ids[:, None], ids[None, :]
    eid = where(adj & (j > i) & (rank_up < max_edges), rank_up,
                 where(adj & (j < i) & (rank_low < max_edges), rank_low, -1))
    nbr = nth_set_bits(words, before, deg, max_degree)
    return eid, up.sum(), nbr, deg


def _domain_lists(domain, sizes: np.ndarray):
    """i32[U, D] (D = the largest of ``sizes``): each domain's node ids ascending, -1 padded,
    from the membership bit lines (``bit_lines``, ``nth_set_bits``), no sort."""
    member = domain[:, None] == jnp.arange(len(sizes), dtype=domain.dtype)[None, :]
    return nth_set_bits(*bit_lines(member), int(sizes.max()))


def draw_substrate(key, plan: Plan, prm: dict):
    """-> (Substrate, pos, repair[E], edge overflow, degree overflow)."""
    ns, na, ng = plan.ns, plan.na, plan.ng
    n = ns + na + ng
    st = Stream(key)
    per_plane = ns // plan.planes
    sat = np.array([((s + 0.5) / per_plane, (p + 0.5) / plan.planes)
                    for p in range(plan.planes) for s in range(per_plane)], np.float32)
    pos = jnp.concatenate([jnp.asarray(sat).reshape(ns, 2), st.uniform(na + ng, 2)])
    segment = np.repeat(np.arange(3), (ns, na, ng)).astype(np.int32)
    seg = jnp.asarray(segment)
    if plan.cap_big:
        cpu = st.randint((n,), prm["cpu_lo"][seg], prm["cpu_span"][seg])
        sto = st.randint((n,), prm["sto_lo"][seg], prm["sto_span"][seg])
    else:
        cpu = prm["cpu_lo"][seg] + mulhi(st.words(n), prm["cpu_span"][seg])
        sto = prm["sto_lo"][seg] + mulhi(st.words(n), prm["sto_span"][seg])

    dx = pos[:, None, 0] - pos[None, :, 0]
    dy = pos[:, None, 1] - pos[None, :, 1]
    dist = jnp.sqrt(dx * dx + dy * dy)  # (a sum over a length-2 axis becomes a slow custom call)
    # the adjacency, symmetric block by block (no [N, N] transpose)
    grid = grid_links_plan(plan)
    ss = np.zeros((ns, ns), bool)
    ss[grid[:, 0], grid[:, 1]] = ss[grid[:, 1], grid[:, 0]] = True
    a0, g0 = ns, ns + na
    if plan.k_air:
        d_air = dist[a0:g0, a0:g0] + where(jnp.eye(na, dtype=bool), jnp.inf, 0.0)
        fwd, bwd = _near_links(d_air, d_air, plan.k_air)  # d_air is symmetric too
        aa = fwd | bwd
    else:
        aa = jnp.zeros((na, na), bool)
    ag, ga = _near_links(dist[a0:g0, g0:], dist[g0:, a0:g0], min(plan.u2g, ng))
    sa, as_ = _near_links(dist[:ns, a0:g0], dist[a0:g0, :ns], min(plan.s2u, na))
    dg = dist[g0:, g0:]
    big_l = jnp.maximum(dg.max(), 1e-9)
    prob = prm["alpha"] * jnp.exp(-dg / (prm["beta"] * big_l))
    gg = (st.symmetric_uniform(ng) < prob) & ~jnp.eye(ng, dtype=bool)
    adj = np.zeros((n, n), bool)
    adj[:ns, :ns] = ss
    adj = jnp.asarray(adj)  # blocks written in place (a concatenate of them costs ~3x more)
    for r0, c0, block in ((0, a0, sa), (a0, 0, as_), (a0, a0, aa), (a0, g0, ag), (g0, a0, ga),
                          (g0, g0, gg)):
        adj = lax.dynamic_update_slice(adj, block, (r0, c0))
    adj, rep = _components_repair(adj, dist)

    # canonical link order: row-major over the upper triangle = by (min id, max id)
    eid, n_edges, nbr_node, deg = _link_ranks(adj, plan.max_edges, plan.max_degree, prm["one"])
    k = plan.max_degree
    rows = jnp.broadcast_to(jnp.arange(n)[:, None], (n, k))
    nbr_edge = where(nbr_node < 0, -1,
                      jnp.take_along_axis(eid, jnp.maximum(nbr_node, 0), axis=1))
    e = plan.max_edges
    own = (nbr_node > jnp.arange(n)[:, None]) & (nbr_edge >= 0)
    dest = where(own, nbr_edge, e)
    edge_u = jnp.zeros(e + 1, jnp.int32).at[dest].set(rows)[:e]
    edge_v = jnp.zeros(e + 1, jnp.int32).at[dest].set(nbr_node)[:e]
    edge_mask = jnp.arange(e) < jnp.minimum(n_edges, e)
    etype = where(seg[edge_u] == seg[edge_v], seg[edge_u], 3)
    if plan.cap_big:
        bw = st.randint((e,), prm["bw_lo"][etype], prm["bw_span"][etype])
    else:
        bw = prm["bw_lo"][etype] + mulhi(st.words(e), prm["bw_span"][etype])
    bw = where(edge_mask, bw, 0)
    repair = rep[edge_u, edge_v] & edge_mask

    hops = _hops_bitset(nbr_node, n)
    domain = _domains(plan, pos[:, 0])
    sizes = _domain_sizes(plan)
    domain_nodes = _domain_lists(domain, sizes)
    same = domain[:, None] == domain[None, :]
    ad = (where(same, hops, 0).sum(axis=1).astype(jnp.float32)
          / jnp.asarray(sizes, jnp.float32)[domain])

    sub = Substrate(
        cpu=cpu.astype(jnp.float32), sto=sto.astype(jnp.float32), segment=seg,
        domain=domain.astype(jnp.int32), edge_u=edge_u, edge_v=edge_v,
        edge_bw=bw.astype(jnp.float32), edge_mask=edge_mask, nbr_node=nbr_node,
        nbr_edge=nbr_edge.astype(jnp.int32), hops=hops, tree_parent=_tree_parents(hops, nbr_node),
        edge_id=eid, domain_nodes=domain_nodes.astype(jnp.int32), ad=ad)
    return sub, pos, repair, n_edges > e, deg.max() > k
