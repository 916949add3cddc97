"""The request program: one seed's request set (DESIGN section 2, Table II) as a pure,
fixed-shape function of its key (``draw_requests``): Poisson arrivals, exponential lifetimes, sizes,
demands, candidate domains and the random request topology with the numpy generator's
connectivity rule, all on bit words (no loop over requests or nodes).

Times. Arrivals are the rounded cumulative sum of exponential gaps, accumulated in integer fixed
point (integer part and ``F``-bit fraction, ``F = min(20, 30 - ceil(log2(R + 1)))``) so the sum is
exact and independent of how XLA orders a cumsum on a backend or batch size.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from sagin_jax.scenario.bitlines import pin, select_bit, where
from sagin_jax.scenario.plan import Plan
from sagin_jax.scenario.types import Requests
from sagin_jax.scenario.words import mulhi, Stream, uniform_ints


def _pair_tables(m: int):
    """Request link slots in lexicographic (a, b) order: a[L], b[L]."""
    pa, pb = np.triu_indices(m, k=1)
    return pa.astype(np.int32), pb.astype(np.int32)


def _fixed_point_bits(count: int) -> int:
    return min(20, 30 - math.ceil(math.log2(count + 1)))


def _arrivals(gaps, count: int):
    """round(cumsum(gaps)) in integer fixed point: exact and order-independent."""
    f = _fixed_point_bits(count)
    whole = jnp.floor(gaps)
    frac = jnp.round((gaps - whole) * jnp.float32(1 << f)).astype(jnp.int32)
    t_int = jnp.cumsum(whole.astype(jnp.int32))
    t_frac = jnp.cumsum(frac)
    t = t_int + (t_frac >> f) + ((t_frac & ((1 << f) - 1)) >= (1 << (f - 1)))
    return t.astype(jnp.float32)


def _row_start(a, m: int):
    """The lexicographic index of pair (a, a + 1), the first of row a: the M - 1 - a' pairs of
    each row a' < a come before it (a Python int or an int array)."""
    return a * (m - 1) - ((a * (a - 1)) >> 1)


def _pair_bernoulli(stream: Stream, bits: int, count: int, m: int, threshold):
    """The request link draws as pair words: u32[R] words, bit ``p % 32`` of word ``p // 32``
    set iff the lexicographic pair p is drawn, Bernoulli(threshold / 2**bits) each.

    Pair p is the k-bit digit ``p % (32 // k)`` of random word ``p // (32 // k)`` (k = bits),
    drawn iff the digit is below ``threshold``. With one bit per draw (p = 0.5, the paper's) a
    random word is its pair word: the pair is drawn iff its bit is 0. Bits past the last pair
    are unspecified (``_upper_rows`` reads only the pairs)."""
    n_pairs = m * (m - 1) // 2
    per = 32 // bits
    w = stream.words(count, -(-n_pairs // per))
    cols = [w[:, i] for i in range(w.shape[1])]
    if bits == 1:
        thr = jnp.asarray(threshold).astype(jnp.uint32)
        full = jnp.uint32(0xFFFFFFFF)
        out = [where(thr >= 2, full, where(thr == 1, ~c, jnp.uint32(0))) for c in cols]
    else:
        out = [jnp.zeros((count,), jnp.uint32) for _ in range(-(-n_pairs // 32))]
        digit_mask = jnp.uint32((1 << bits) - 1)
        for p in range(n_pairs):
            word, field = divmod(p, per)
            hit = ((cols[word] >> (field * bits)) & digit_mask) < threshold
            out[p // 32] = out[p // 32] | (hit.astype(jnp.uint32) << (p % 32))
    return out


def _upper_rows(words, n_nodes, m: int):
    """u32[M, R] from pair words: bit b of row a is set iff the pair (a, b), a < b < n_nodes,
    is drawn. Row a's pairs are the consecutive indices from ``_row_start(a)``, so each row is
    one shifted segment of the words (two words where it straddles one): one elementwise pass
    over [M, R] with the rows' word, offset and width as constants (a row at a time, XLA
    compiled M kernels, ~0.15 s of LLVM time)."""
    valid = (jnp.uint32(1) << n_nodes.astype(jnp.uint32)) - jnp.uint32(1)  # [R] nodes < n
    a = np.arange(m)
    width = m - 1 - a
    k, off = np.divmod(_row_start(a, m), 32)
    straddle = off + width > 32

    def col(x, dtype=np.uint32):  # a per-row constant, broadcast over the requests
        return jnp.asarray(np.asarray(x, dtype)[:, None])

    def word(index):  # [M, R]: word ``index[a]`` of each request
        out = jnp.zeros((m, words[0].shape[0]), jnp.uint32)
        for i, w in enumerate(words):
            out = where(col(index == i, bool), w[None, :], out)
        return out
    seg = word(k) >> col(off)
    seg = seg | where(col(straddle, bool), word(np.where(straddle, k + 1, k))
                       << col(np.where(straddle, 32 - off, 0)), jnp.uint32(0))
    seg = seg & col((1 << width) - 1)  # bit b - a - 1 = pair (a, b)
    return (seg << col(a + 1)) & valid[None, :]


def _pair_words(up):
    """The pairs of upper rows u32[M, R] as pair words (the inverse of ``_upper_rows``)."""
    m, r = up.shape
    words = [jnp.zeros((r,), jnp.uint32) for _ in range(-(-(m * (m - 1) // 2) // 32))]
    for a in range(m - 1):
        seg = up[a] >> (a + 1)  # bit b - a - 1 = pair (a, b)
        k, off = divmod(_row_start(a, m), 32)
        words[k] = words[k] | (seg << off)
        if off + (m - 1 - a) > 32:
            words[k + 1] = words[k + 1] | (seg >> (32 - off))
    return words


def _reach_rows(up):
    """u32[M, R]: bit w of row x is set iff request node w is connected to x (transitive
    closure of the links, given as upper rows, by Warshall's algorithm on bitmasks).

    Node-major rows keep each step one pass over contiguous [R] vectors. The steps run in a
    loop, two per trip: unrolled, XLA fuses them into one expression whose pivot rows it
    recomputes for every row (exponentially in the steps)."""
    m = up.shape[0]
    x = jnp.arange(m, dtype=jnp.uint32)[:, None]
    reach = up | (jnp.uint32(1) << x)
    for a in range(m - 1):  # the symmetric half: bit a of row x for each link (a, x)
        reach = reach | (((up[a][None, :] >> x) & jnp.uint32(1)) << a)

    def step(k, reach):
        pivot = lax.dynamic_index_in_dim(reach, k, 0, keepdims=True)
        has = (reach >> k.astype(jnp.uint32)) & jnp.uint32(1)
        return reach | ((jnp.uint32(0) - has) & pivot)

    reach = lax.fori_loop(0, m // 2, lambda i, r: step(2 * i + 1, step(2 * i, r)), reach)
    return step(jnp.int32(m - 1), reach) if m % 2 else reach


def _connect_requests(up, n_nodes, pick_words, one=None):
    """The pair words after the connectivity rule of the numpy generator, from the drawn links
    as upper rows u32[M, R]: for v = 1..n-1 in order, a v outside the component of node 0 is
    linked to the ``floor(pick_words[v - 1] * c / 2**32)``-th (ascending) of the c nodes of that
    component (``pick_words`` u32[M-1, R]).

    Whole components join, so "the component of node 0 when v's turn comes" is the set of nodes
    connected to some node < v: a prefix OR of the reachability rows. No v depends on another,
    so all M - 1 of them are one elementwise pass over [M-1, R] (with v unrolled, XLA fused the
    whole chain into the expression of each pair word: ~0.2 s more LLVM time, same run time)."""
    m, r = up.shape
    valid = (jnp.uint32(1) << n_nodes.astype(jnp.uint32)) - jnp.uint32(1)
    reach = _reach_rows(up) & valid[None, :]
    # joined[v - 1]: the nodes connected to some node < v (a prefix OR over the rows; one
    # windowed reduction, not M - 2 kernels)
    joined = lax.reduce_window(reach, np.uint32(0), lax.bitwise_or, (m, 1), (1, 1),
                               ((m - 1, 0), (0, 0)))[:-1]
    v = jnp.arange(1, m, dtype=jnp.int32)[:, None]
    event = (((joined >> v.astype(jnp.uint32)) & 1) == 0) & (v < n_nodes[None, :])
    size0 = lax.population_count(joined).astype(jnp.int32)
    u = select_bit(joined, mulhi(pick_words, jnp.maximum(size0, 1)))
    lo, hi = jnp.minimum(u, v), jnp.maximum(u, v)
    p = _row_start(lo, m) + hi - lo - 1
    p = pin(one, where(event, p, 32 * m * m))  # the new link's pair, or none (a single
    #                                    array: XLA would recompute the chain for each output)
    bit = jnp.uint32(1) << (p & 31).astype(jnp.uint32)
    return [w | jnp.bitwise_or.reduce(where((p >> 5) == i, bit, jnp.uint32(0)), axis=0)
            for i, w in enumerate(_pair_words(up))]


def _compact_links(words, m: int, one=None):
    """(link_a, link_b, link_mask) [R, L] from the pair words of requests of M = ``m`` nodes
    (list of u32[R]): slot j holds the (j+1)-th chosen pair in lexicographic order, i.e. the
    pair at the (j+1)-th set bit.

    The words and their popcounts are made once per request (``pin``); per slot, the
    word holding the bit is chosen by the running popcounts and the bit by ``select_bit``;
    the pair index p becomes (a, b) by counting the rows that start at or before p (elementwise
    over [R, L]; XLA CPU's scatter, the direct way, costs ~5 ns per element)."""
    r = words[0].shape[0]
    n_pairs = m * (m - 1) // 2
    counts = [lax.population_count(w).astype(jnp.int32) for w in words]
    pinned = pin(one, *words, *counts)
    words, counts = pinned[:len(words)], pinned[len(words):]
    j = jnp.arange(n_pairs, dtype=jnp.int32)[None, :]
    k = jnp.broadcast_to(j, (r, n_pairs))  # rank of the wanted bit within the current word
    x = jnp.broadcast_to(words[0][:, None], (r, n_pairs))
    cur = jnp.zeros((r, n_pairs), jnp.int32)  # the current word
    for i in range(1, len(words)):
        on = (cur == i - 1) & (k >= counts[i - 1][:, None])
        x = where(on, words[i][:, None], x)
        k = where(on, k - counts[i - 1][:, None], k)
        cur = where(on, i, cur)
    mask = j < sum(counts)[:, None]
    p = pin(one, where(mask, 32 * cur + select_bit(x, k), 0))
    a = jnp.zeros_like(p)
    for row in range(1, m - 1):  # the last row has no pair (a, b > a)
        a = a + (p >= _row_start(row, m)).astype(jnp.int32)
    b = a + 1 + p - _row_start(a, m)
    return where(mask, a, 0), where(mask, b, 0), mask


def draw_requests(key, plan: Plan, prm: dict, count: int) -> Requests:
    """``count`` requests in arrival order, padded to M = max_req_nodes nodes and M(M-1)/2 links,
    stored in the dtypes of ``plan.req_storage`` (``scenario.plan.request_storage_dtypes``: uint8
    demands and int8 indices for the paper's config; ``types.widen`` gives the dtypes the rules
    compute with).

    Topology: each pair with probability req_link_prob, then the numpy generator's repair: for
    v = 1..n-1 in order, a v outside the component of node 0 is linked to a uniformly chosen node
    of that component. Since whole components join, this links the smallest node v of each other
    component (in increasing v) to a member of {w : the smallest node of w's component < v}."""
    m, r = plan.m, count
    n_pairs = m * (m - 1) // 2
    st = Stream(key)
    dig_cpu, dig_sto, dig_bw, dig_dom = plan.req_digits
    lo, span, one = prm["req_lo"], prm["req_span"], prm["one"]

    u_gap, u_life = st.uniform(2, r)
    gaps = -jnp.log1p(-u_gap) * prm["gap_scale"]
    lifetime = jnp.maximum(1.0, jnp.round(-jnp.log1p(-u_life) * prm["mean_lifetime"]))
    arrival = _arrivals(gaps, r)
    n_nodes = pin(one, lo[3] + mulhi(st.words(r), span[3]))  # (else its hash is
    #                                recomputed for every entry of the [R, M] draws)
    node_mask = jnp.arange(m)[None, :] < n_nodes[:, None]
    cpu = where(node_mask, uniform_ints(st, dig_cpu, (r, m), lo[0], span[0], one), 0)
    sto = where(node_mask, uniform_ints(st, dig_sto, (r, m), lo[1], span[1], one), 0)
    dom = where(node_mask, uniform_ints(st, dig_dom, (r, m), 0, plan.n_domains, one), 0)

    drawn = _pair_bernoulli(st, plan.bern_bits, r, m, prm["link_threshold"])
    up = pin(one, _upper_rows(drawn, n_nodes, m))
    words = _connect_requests(up, n_nodes, st.words_transposed(r, m - 1), one)
    link_a, link_b, link_mask = _compact_links(words, m, one)
    bw = where(link_mask, uniform_ints(st, dig_bw, (r, n_pairs), lo[2], span[2], one), 0)
    fields = dict(arrival=arrival, lifetime=lifetime, node_mask=node_mask, cpu=cpu, sto=sto,
                  domain=dom, link_a=link_a, link_b=link_b, link_bw=bw, link_mask=link_mask)
    return Requests(**{k: fields[k].astype(t) for k, t in plan.req_storage})
