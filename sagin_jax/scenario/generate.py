"""Scenario generation as one pure, fixed-shape JAX program (DESIGN section 2).

``generate(key, cfg)`` draws a substrate and its train/test request sets without host callbacks
or Python control flow on traced values, so ``jit(vmap(generate))`` makes thousands of scenarios in
one compiled call and a larger jitted program (generation fused with simulation) can inline it.

Streams. The substrate, train and test draws use independent keys ``fold_in(key, 0 / 1 / 2)``, so
a seed's train set does not depend on ``n_test``. Each stream's key (threefry) seeds a
counter-based hash (``_hash_words``): XLA's threefry costs ~30-40 ns per 32-bit word on a CPU,
the hash ~2 ns, and a scenario needs ~10^5 words. The hash is pure integer arithmetic, so the bits
are identical on every backend and batch size.

Uniform integers. A uniform on ``[0, span)`` is ``floor(w * span / 2**32)`` of a 32-bit word ``w``
(Lemire's multiply-high, without rejection); two digits share a word when ``span**2 <= 2**16``.
The probability of each outcome is off by at most ``span**d / 2**32 <= 2**-16`` relative (numpy's
rejection sampling is exact; the difference is far below any sample size the project uses).
Spans above ``2**16`` fall back to ``jax.random.randint``. A Bernoulli(p) compares a k-bit digit
with ``p * 2**k``: exact when ``p * 2**k`` is an integer for some k <= 16 (p = 0.5 costs one bit),
otherwise p is rounded to a multiple of ``2**-16``.

Times. Arrivals are the rounded cumulative sum of exponential gaps; the sum is accumulated in
integer fixed point (integer part and ``F``-bit fraction, ``F = min(20, 30 - ceil(log2(R + 1)))``)
so it is exact and independent of how XLA orders a cumsum on a backend or batch size.

Static bounds. The link list is padded to ``Bounds.max_edges`` and the neighbour lists to
``Bounds.max_degree`` (``scenario_bounds``); a scenario that needs more sets ``Scenario.overflow``
and ``make_scenarios`` raises, naming the seed and the field to raise. Nothing is truncated
silently.

Compiles. Only the shape-relevant part of the config (node counts, k-nearest counts, domains,
request counts, padding, and the bit layout of each draw) is static; ranges, rates and
probabilities are traced arguments, so configs that differ only in numbers share one program.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from sagin_jax.checks import is_int
from sagin_jax.config import ScenarioConfig
from sagin_jax.scenario.types import Requests, Scenario, Substrate

SPACE, AIR, GROUND = 0, 1, 2
_PACK2 = 256  # spans up to this share a word two digits at a time (span**2 <= 2**16)
_WORD = 1 << 16  # spans up to this take one word each; larger ones use jax.random.randint
_MAX_REQ_NODES = 31  # the request connectivity works on one uint32 bitmask per request node
_MIN_BUCKET = 8  # make_* pad the seed axis to a power of two >= this (fewer compiles)
MAX_CHUNK = 512  # seeds per compiled call on an accelerator (memory: ~1.5 MB per paper seed)
CPU_CHUNK_PER_DEVICE = 64  # on a CPU: chunks small enough to stay in cache (2 host devices,
#                            4,096 paper scenarios: 1.61 s with 64 seeds per device, 1.67 s
#                            with 32, 1.87 s with 16, 2.13 s with 128)


# --------------------------------------------------------------------------------------------
# static bounds


class Bounds(NamedTuple):
    max_edges: int  # padded length of the link list
    max_degree: int  # padded width of the neighbour lists


def _grid_links(cfg: ScenarioConfig) -> np.ndarray:
    """The +Grid satellite links (ring within each plane, same slot across neighbouring planes)."""
    per_plane = cfg.n_space // cfg.space_planes
    links = set()
    for p in range(cfg.space_planes):
        for s in range(per_plane):
            u = p * per_plane + s
            if per_plane > 1:
                v = p * per_plane + (s + 1) % per_plane
                if u != v:
                    links.add((min(u, v), max(u, v)))
            if p + 1 < cfg.space_planes:
                links.add((u, (p + 1) * per_plane + s))
    return np.array(sorted(links), dtype=np.int64).reshape(-1, 2)


def _square_distance_density(d: np.ndarray) -> np.ndarray:
    """Density of the distance between two uniform points of the unit square."""
    f = np.zeros_like(d)
    a = d <= 1
    f[a] = 2 * d[a] * (np.pi - 4 * d[a] + d[a] ** 2)
    b = (d > 1) & (d <= math.sqrt(2))
    db = d[b]
    f[b] = 2 * db * (4 * np.sqrt(db ** 2 - 1) - (db ** 2 + 2 - np.pi) - 4 * np.arccos(1 / db))
    return f


def _waxman_pair_probability(cfg: ScenarioConfig) -> float:
    """E[p(u, v)] over two uniform ground points with L = sqrt(2), the largest possible L: an
    upper bound on the mean Waxman link probability (p grows with L)."""
    d = (np.arange(200_000) + 0.5) * (math.sqrt(2) / 200_000)
    f = _square_distance_density(d)
    p = cfg.waxman_alpha * np.exp(-d / (cfg.waxman_beta * math.sqrt(2)))
    return float((p * f).sum() * (math.sqrt(2) / 200_000))


def _waxman_centre_probability(cfg: ScenarioConfig) -> float:
    """E[p(c, v)] for c the centre of the square (the node with the largest expected Waxman
    degree), L = sqrt(2)."""
    g = (np.arange(400) + 0.5) / 400 - 0.5
    r = np.hypot(g[:, None], g[None, :])
    return float((cfg.waxman_alpha * np.exp(-r / (cfg.waxman_beta * math.sqrt(2)))).mean())


def _poisson_quantile(mu: float, delta: float) -> int:
    """Smallest q with P(Poisson(mu) > q) <= delta."""
    if mu <= 0:
        return 0
    q, logp = 0, -mu
    tail = 1.0 - math.exp(logp)
    while tail > delta:
        q += 1
        logp += math.log(mu / q)
        tail -= math.exp(logp)
    return q


_DELTA = 1e-6  # tail probability each random part of a bound is sized for


def scenario_bounds(cfg: ScenarioConfig) -> Bounds:
    """Static padding for the link list and the neighbour lists, from the config.

    ``max_edges`` = exact deterministic links + bounds on the random ones:
      * satellites: the +Grid links, counted exactly;
      * air: at most ``n_air * air_k_nearest`` (each UAV adds at most k links);
      * inter-segment: exactly ``n_air * uav_to_ground + n_space * sat_to_uav``;
      * Waxman: the Poisson quantile at 1 - 1e-6 of the mean link count computed with the largest
        possible L (sqrt 2), i.e. with every link probability rounded up (the count given the
        positions is a sum of independent Bernoullis, which is no more spread than a Poisson);
      * repair: ``n_nodes // 10 + 2`` links (one per extra component before the repair).
    ``max_degree`` = the largest, over the segments, of the deterministic degree plus the Poisson
    quantile at 1 - 1e-6 of the mean random degree:
      * satellite: Grid degree + ``sat_to_uav`` + 1 (a repair link);
      * UAV: ``air_k_nearest`` + ``uav_to_ground`` + random in-links (from other UAVs, mean k;
        from satellites, mean ``n_space * sat_to_uav / n_air``);
      * ground: random Waxman degree (mean at the centre of the square, the node with the most
        expected links, L = sqrt 2) + random in-links from UAVs (mean
        ``n_air * uav_to_ground / n_ground``);
    capped at ``n_nodes - 1``. Paper config: 466 links, degree 28 (measured over 4,096 seeds:
    links 321 +- 16, max 386; largest degree 13.4 +- 1.6, max 22; repair links 0 in 89% of
    seeds, at most 3). ``ScenarioConfig.max_edges`` / ``max_degree`` override both; a scenario
    that needs more is reported (``Scenario.overflow``, ``make_scenarios`` raises), never cut.
    """
    cfg.validate()
    ns, na, ng = cfg.n_space, cfg.n_air, cfg.n_ground
    n = cfg.n_nodes
    grid = _grid_links(cfg)
    repair = n // 10 + 2
    k_air = cfg.air_k_nearest if na > 1 else 0
    pairs = ng * (ng - 1) // 2
    waxman = min(pairs, _poisson_quantile(pairs * _waxman_pair_probability(cfg), _DELTA))
    edges = len(grid) + na * k_air + na * cfg.uav_to_ground + ns * cfg.sat_to_uav + waxman + repair
    edges = min(edges, n * (n - 1) // 2)

    grid_deg = int(np.bincount(grid.ravel(), minlength=ns).max()) if len(grid) else 0
    sat = grid_deg + cfg.sat_to_uav + 1
    uav = k_air + cfg.uav_to_ground + _poisson_quantile(k_air + ns * cfg.sat_to_uav / na, _DELTA)
    ground = _poisson_quantile((ng - 1) * _waxman_centre_probability(cfg)
                               + na * cfg.uav_to_ground / ng, _DELTA)
    degree = min(max(sat, uav, ground), n - 1)
    return Bounds(max_edges=int(cfg.max_edges if cfg.max_edges is not None else edges),
                  max_degree=int(cfg.max_degree if cfg.max_degree is not None else degree))


# --------------------------------------------------------------------------------------------
# the static plan and the traced parameters


class _Plan(NamedTuple):
    """Everything that shapes the program (hashable; one compile per distinct plan)."""

    ns: int
    na: int
    ng: int
    planes: int
    k_air: int
    u2g: int
    s2u: int
    domains_per_segment: tuple
    max_edges: int
    max_degree: int
    cap_big: bool  # some substrate capacity span exceeds 2**16: use randint
    m: int  # max_req_nodes
    req_digits: tuple  # digits per word for (cpu, sto, bw, domain): 2, 1 or 0 (= randint)
    n_domains: int
    bern_bits: int  # bits per Bernoulli draw of a request link


def _digits(span: int) -> int:
    return 2 if span <= _PACK2 else (1 if span <= _WORD else 0)


def _bern_bits(p: float) -> int:
    for k in range(1, 17):
        if float(p * (1 << k)).is_integer():
            return k
    return 16


def _plan(cfg: ScenarioConfig) -> _Plan:
    b = scenario_bounds(cfg)
    if cfg.max_req_nodes > _MAX_REQ_NODES:
        raise ValueError(f"max_req_nodes={cfg.max_req_nodes} exceeds {_MAX_REQ_NODES}, the "
                         "largest request the JAX generator draws")
    spans = [hi - lo + 1 for r in (cfg.cpu_range, cfg.sto_range, cfg.bw_range) for lo, hi in r]
    spans.append(cfg.inter_bw_range[1] - cfg.inter_bw_range[0] + 1)
    return _Plan(
        ns=cfg.n_space, na=cfg.n_air, ng=cfg.n_ground, planes=cfg.space_planes,
        k_air=cfg.air_k_nearest if cfg.n_air > 1 else 0, u2g=cfg.uav_to_ground,
        s2u=cfg.sat_to_uav, domains_per_segment=tuple(cfg.domains_per_segment),
        max_edges=b.max_edges, max_degree=b.max_degree, cap_big=max(spans) > _WORD,
        m=cfg.max_req_nodes,
        req_digits=tuple(_digits(r[1] - r[0] + 1) for r in (cfg.req_cpu, cfg.req_sto,
                                                              cfg.req_bw))
        + (_digits(cfg.n_domains),),
        n_domains=cfg.n_domains, bern_bits=_bern_bits(cfg.req_link_prob),
    )


def _params(cfg: ScenarioConfig) -> dict:
    """The numbers of the config as arrays (traced, so they do not trigger compiles)."""
    def lo_span(ranges):
        return (np.array([r[0] for r in ranges], np.int32),
                np.array([r[1] - r[0] + 1 for r in ranges], np.int32))

    cpu_lo, cpu_span = lo_span(cfg.cpu_range)
    sto_lo, sto_span = lo_span(cfg.sto_range)
    bw_lo, bw_span = lo_span(tuple(cfg.bw_range) + (cfg.inter_bw_range,))
    req_lo, req_span = lo_span((cfg.req_cpu, cfg.req_sto, cfg.req_bw, cfg.req_nodes))
    k = _bern_bits(cfg.req_link_prob)
    return dict(
        cpu_lo=cpu_lo, cpu_span=cpu_span, sto_lo=sto_lo, sto_span=sto_span, bw_lo=bw_lo,
        bw_span=bw_span, req_lo=req_lo, req_span=req_span,
        link_threshold=np.uint32(min(round(cfg.req_link_prob * (1 << k)), 1 << k)),
        alpha=np.float32(cfg.waxman_alpha), beta=np.float32(cfg.waxman_beta),
        gap_scale=np.float32(1.0 / cfg.arrival_rate), mean_lifetime=np.float32(cfg.mean_lifetime),
        one=np.int32(1),  # the trip count of ``_pin``'s loop: traced, so XLA cannot drop it
    )


# --------------------------------------------------------------------------------------------
# random words


def _mix(x):
    """A 32-bit integer finaliser (bijective avalanche hash, "triple32" constants)."""
    x = x ^ (x >> 17)
    x = x * jnp.uint32(0xED5AD4BB)
    x = x ^ (x >> 11)
    x = x * jnp.uint32(0xAC4C1B51)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x31848BAB)
    return x ^ (x >> 14)


class _Stream:
    """Counter-based words from one key: word ``c`` is ``mix(mix(c ^ k0) + k1)`` with ``(k0, k1)``
    the key's threefry data. Each call takes the next block of counters (static offsets)."""

    def __init__(self, key):
        data = jax.random.key_data(key).reshape(-1)
        self.key = key
        self.k0, self.k1 = data[0].astype(jnp.uint32), data[1].astype(jnp.uint32)
        self.offset = 0
        self.fallbacks = 0

    def words(self, *shape: int):
        n = int(np.prod(shape))
        c = lax.iota(jnp.uint32, n).reshape(shape) + jnp.uint32(self.offset)
        self.offset += n
        return self._word(c)

    def words_transposed(self, rows: int, cols: int):
        """``words(rows, cols).T``, the same counters laid out [cols, rows] (no transpose)."""
        c = (lax.broadcasted_iota(jnp.uint32, (cols, rows), 1) * jnp.uint32(cols)
             + lax.broadcasted_iota(jnp.uint32, (cols, rows), 0) + jnp.uint32(self.offset))
        self.offset += rows * cols
        return self._word(c)

    def _word(self, c):
        """The word of counter(s) ``c``."""
        return _mix(_mix(c ^ self.k0) + self.k1)

    def symmetric_uniform(self, n: int):
        """f32[n, n]: entry (i, j) is ``uniform(n, n)[min(i, j), max(i, j)]`` of the same
        counters (a symmetric matrix whose upper triangle is the plain draw)."""
        i = lax.broadcasted_iota(jnp.uint32, (n, n), 0)
        j = lax.broadcasted_iota(jnp.uint32, (n, n), 1)
        c = jnp.minimum(i, j) * jnp.uint32(n) + jnp.maximum(i, j) + jnp.uint32(self.offset)
        self.offset += n * n
        return (self._word(c) >> 8).astype(jnp.float32) * jnp.float32(2.0 ** -24)

    def words_by_column(self, lead: tuple, width: int, column):
        """Word ``column`` of each row of a ``(*lead, width)`` block (the block's counters, as
        ``words(*lead, width)`` numbers them), broadcast to ``(*lead, len(column))``: one
        elementwise expression, so XLA fuses and vectorises it (a concatenate of two word blocks
        does not vectorise and recomputes the hash per operand)."""
        rows = int(np.prod(lead))
        row = lax.iota(jnp.uint32, rows).reshape(*lead, 1) * jnp.uint32(width)
        c = row + column.astype(jnp.uint32) + jnp.uint32(self.offset)
        self.offset += rows * width
        return self._word(c)

    def uniform(self, *shape: int):
        """f32 uniform on [0, 1), 24-bit resolution."""
        return (self.words(*shape) >> 8).astype(jnp.float32) * jnp.float32(2.0 ** -24)

    def randint(self, shape, lo, span):
        """Exact uniform integers (threefry) for spans too wide for one word."""
        self.fallbacks += 1
        k = jax.random.fold_in(self.key, 1_000_000 + self.fallbacks)
        return jax.random.randint(k, shape, lo, lo + span, dtype=jnp.int32)


def _mulhi(w, span):
    """floor(w * span / 2**32) for uint32 w and span <= 2**16, in 32-bit arithmetic."""
    span = jnp.asarray(span).astype(jnp.uint32)
    hi, lo = w >> 16, w & jnp.uint32(0xFFFF)
    return ((hi * span + ((lo * span) >> 16)) >> 16).astype(jnp.int32)


def _divmod_small(v, span):
    """(v // span, v % span) for int32 ``0 <= v < 2**16`` and ``1 <= span <= 256`` (the spans
    that pack two digits per word; tested for every one), exactly.

    In f32, ``(v + 0.5) / span`` lies at least ``1 / (2 span)`` inside an integer interval and
    is computed to a relative error of ~2**-23 (XLA may multiply by a rounded reciprocal
    instead of dividing), an absolute error below ``2**16 / span * 2**-22 < 1 / (2 span)``, so
    the floor is exact. ``floor(v / span)`` is not: with the reciprocal it is one too small for
    some multiples of span (38 spans in 1..256, e.g. 41)."""
    spanf = jnp.asarray(span).astype(jnp.float32)
    q = jnp.floor((v.astype(jnp.float32) + jnp.float32(0.5)) / spanf).astype(jnp.int32)
    return q, v - q * jnp.asarray(span, jnp.int32)


def _uniform_ints(stream: _Stream, digits: int, shape: tuple, lo, span):
    """i32 uniform on [lo, lo + span), ``digits`` per word (2, 1, or 0 = exact randint).

    Two digits: the ``half = ceil(last / 2)`` words of a row give the row's first ``half``
    values as ``v % span`` and the rest as ``v // span`` (``v`` the word's uniform on
    ``[0, span**2)``)."""
    if digits == 0:
        return stream.randint(shape, lo, span)
    if digits == 1:
        return lo + _mulhi(stream.words(*shape), span)
    *lead, last = shape
    half = (last + 1) // 2
    col = jnp.arange(last, dtype=jnp.int32)
    low = col < half
    w = stream.words_by_column(tuple(lead), half, jnp.where(low, col, col - half))
    q, r = _divmod_small(_mulhi(w, span * span), span)  # v uniform on [0, span**2) < 2**16
    return lo + jnp.where(low, r, q)


# --------------------------------------------------------------------------------------------
# the substrate


def _min_first(x):
    """(min, ``jnp.argmin``) over the last axis (the first of equal minima; no NaN in x) as
    two plain reductions, a min and a min of the indices that hold it: XLA CPU vectorises those,
    not the (value, index) pair reduction of argmin (~3x slower on the substrate's arrays)."""
    idx = lax.broadcasted_iota(jnp.int32, x.shape, x.ndim - 1)
    low = x.min(axis=-1)
    return low, jnp.where(x == low[..., None], idx, x.shape[-1]).min(axis=-1)


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
        return jnp.where(idx == j[:, None], jnp.inf, dd), low, j
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


def _domains(plan: _Plan, x):
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


def _domain_sizes(plan: _Plan) -> np.ndarray:
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
        nb = jnp.min(jnp.where(adj, lab[:, None], big), axis=0)
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
        near = jnp.where(in0, jnp.min(jnp.where(in0[:, None], jnp.inf, dist), axis=0), jnp.inf)
        low = near.min()
        ids = jnp.arange(n)
        a = jnp.where(near == low, ids, n).min()
        b = jnp.where(~in0 & (lax.dynamic_index_in_dim(dist, a, 0, False) == low), ids, n).min()
        rows, cols = ids[:, None], ids[None, :]
        hit = ((rows == a) & (cols == b)) | ((rows == b) & (cols == a))
        lab = jnp.where(lab == lab[b], 0, lab)
        return a_mat | hit, rep | hit, lab

    adj, rep, _ = lax.while_loop(lambda s: jnp.any(s[2] != 0), join,
                                 (adj, jnp.zeros_like(adj), labels))
    return adj, rep


def _hops_bitset(nbr_node, n: int):
    """All-pairs hop distance by BFS over the neighbour lists, all sources at once, the visited
    sets as bitsets: i32[N, N], -1 = unreachable.

    Each level adds one to a bit-sliced counter of every (node, source) pair not yet reached
    (``bit_length(N - 1)`` planes of [N, W] words), so a level touches N W words, not N N
    entries; the hop count of a reached pair is that count + 1, read out once at the end."""
    w = -(-n // 32)
    n_planes = max(1, (n - 1).bit_length())
    ids = jnp.arange(n)
    vis = jnp.zeros((n + 1, w), jnp.uint32).at[ids, ids // 32].set(
        jnp.uint32(1) << (ids % 32).astype(jnp.uint32))
    nbr = jnp.where(nbr_node < 0, n, nbr_node)

    def step(state):
        vis, planes, _ = state
        nb = jnp.bitwise_or.reduce(vis[nbr], axis=1)  # [N, W]
        new = nb & ~vis[:n]
        vis = vis.at[:n].set(vis[:n] | new)
        carry = ~vis[:n]  # still unreached after this level: one more level to count
        counted = []
        for b in range(n_planes):
            counted.append(planes[b] ^ carry)
            carry = planes[b] & carry
        return vis, jnp.stack(counted), jnp.any(new != 0)

    vis, planes, _ = lax.while_loop(lambda s: s[2], step, (
        vis, jnp.zeros((n_planes, n, w), jnp.uint32), jnp.bool_(True)))
    col_word = ids // 32
    col_bit = (ids % 32).astype(jnp.uint32)
    count = jnp.zeros((n, n), jnp.int32)
    for b in range(n_planes):
        count = count | (((planes[b][:, col_word] >> col_bit[None, :]) & 1).astype(jnp.int32) << b)
    reached = ((vis[:n][:, col_word] >> col_bit[None, :]) & 1).astype(bool)
    return jnp.where(reached, jnp.where(jnp.eye(n, dtype=bool), 0, count + 1), -1)


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
        return jnp.where(closer, u[:, None], parent)

    parent = lax.fori_loop(0, k, by_slot, jnp.full((n, n), -1, jnp.int32))
    # the transpose inside an elementwise fusion (XLA's copy for a bare one costs ~50 ms more to
    # compile); the values stay: parent is -1 where hops is 0 (v == s) or -1 (unreachable)
    return jnp.where(hops > 0, parent.T, -1)


def _pack_columns(adj):
    """bool[N, C] -> u32[W, C]: bit b of word [w, j] is ``adj[32 w + b, j]`` (a reduction over
    the major axis, which XLA CPU vectorises). For a symmetric adjacency, column j's words are
    row j's: ``words[:, i]`` are node i's links."""
    n, cols = adj.shape
    w = -(-n // 32)
    lane = jnp.uint32(1) << jnp.arange(32, dtype=jnp.uint32)
    x = jnp.pad(adj, [(0, w * 32 - n), (0, 0)]).reshape(w, 32, cols)
    return jnp.where(x, lane[None, :, None], jnp.uint32(0)).sum(axis=1, dtype=jnp.uint32)


def _count_through(words, before, pos):
    """The set bits at positions <= pos of a bit line given as its words (list, each
    broadcastable against pos) and the set bits before each word (``before``, same form)."""
    x, c = words[0], before[0]
    for i in range(1, len(words)):
        on = (pos >> 5) == i
        x, c = jnp.where(on, words[i], x), jnp.where(on, before[i], c)
    through = (jnp.uint32(2) << (pos & 31).astype(jnp.uint32)) - jnp.uint32(1)
    return c + lax.population_count(x & through).astype(jnp.int32)


def _link_ranks(adj, max_edges: int, max_degree: int, one=None):
    """From a symmetric adjacency bool[N, N]: (edge_id i32[N, N], n_edges, nbr_node i32[N, K],
    deg i32[N]). Link (i, j), i < j, is numbered by its row-major rank over the upper triangle
    (-1 past ``max_edges``, and off the links); ``nbr_node[i]`` lists i's neighbours in
    ascending order, -1 padded (cut at K = ``max_degree``).

    All from the adjacency packed into bit words (``_pack_columns``) and popcounts, elementwise
    (no prefix sum over [N, N], no scatter): the rank of (i, j) counts row i's bits through j,
    and entry (j, i) of the lower triangle counts the same bits down column i (by symmetry
    column i's words are row i's), so neither needs a transpose. The per-node counts are
    pinned (``_pin``): XLA CPU would recompute them for every entry of the [N, N] ranks."""
    n = adj.shape[0]
    bits = _pack_columns(adj)
    pc = lax.population_count(bits).astype(jnp.int32)  # [W, N]
    words = [bits[i] for i in range(bits.shape[0])]
    before = [jnp.zeros((n,), jnp.int32)]
    for i in range(1, len(words)):
        before.append(before[-1] + pc[i - 1])
    deg = before[-1] + pc[-1]
    ids = jnp.arange(n, dtype=jnp.int32)
    low = _count_through(words, before, ids)  # node i's links to nodes <= i
    up = deg - low  # links (i, j > i)
    first = jnp.cumsum(up) - up  # rank of row i's first link
    pinned = _pin(one, *words, *before, low, first)
    words, before = list(pinned[:len(words)]), list(pinned[len(words):2 * len(words)])
    low, first = pinned[-2:]
    row_through = _count_through([x[:, None] for x in words], [x[:, None] for x in before],
                                 ids[None, :])  # [i, j]: row i's bits through j
    col_through = _count_through([x[None, :] for x in words], [x[None, :] for x in before],
                                 ids[:, None])  # [i, j]: column j's bits through i
    rank_up = first[:, None] + row_through - low[:, None] - 1
    rank_low = first[None, :] + col_through - low[None, :] - 1
    i, j = ids[:, None], ids[None, :]
    eid = jnp.where(adj & (j > i) & (rank_up < max_edges), rank_up,
                    jnp.where(adj & (j < i) & (rank_low < max_edges), rank_low, -1))
    nbr = _nth_set_bits(words, before, deg, max_degree)
    return eid, up.sum(), nbr, deg


def _nth_set_bits(words, before, count, width: int):
    """i32[R, width]: entry [r, t] is the position of the t-th (from 0) set bit of bit line r,
    -1 from t = ``count[r]`` on. A line is given by its words (list of [R], word i holding
    positions 32 i .. 32 i + 31) and the set bits before each word (``before``, same form)."""
    t = jnp.arange(width, dtype=jnp.int32)[None, :]  # the t-th bit: its word, then its position
    x, c, word = words[0][:, None], before[0][:, None], jnp.zeros((1, width), jnp.int32)
    for w in range(1, len(words)):
        on = before[w][:, None] <= t
        x, c, word = (jnp.where(on, words[w][:, None], x), jnp.where(on, before[w][:, None], c),
                      jnp.where(on, w, word))
    return jnp.where(t < count[:, None], 32 * word + _select_bit(x, t - c), -1)


def _domain_lists(domain, sizes: np.ndarray):
    """i32[U, D] (D = the largest of ``sizes``): each domain's node ids ascending, -1 padded,
    from the membership bit lines (``_pack_columns``, ``_nth_set_bits``), no sort."""
    u = len(sizes)
    member = _pack_columns(domain[:, None] == jnp.arange(u, dtype=domain.dtype)[None, :])
    pc = lax.population_count(member).astype(jnp.int32)  # [W, U]
    before = [jnp.zeros((u,), jnp.int32)]
    for i in range(1, member.shape[0]):
        before.append(before[-1] + pc[i - 1])
    words = [member[i] for i in range(member.shape[0])]
    return _nth_set_bits(words, before, jnp.asarray(sizes, jnp.int32), int(sizes.max()))


def _substrate(key, plan: _Plan, prm: dict):
    """-> (Substrate, pos, repair[E], edge overflow, degree overflow)."""
    ns, na, ng = plan.ns, plan.na, plan.ng
    n = ns + na + ng
    st = _Stream(key)
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
        cpu = prm["cpu_lo"][seg] + _mulhi(st.words(n), prm["cpu_span"][seg])
        sto = prm["sto_lo"][seg] + _mulhi(st.words(n), prm["sto_span"][seg])

    dx = pos[:, None, 0] - pos[None, :, 0]
    dy = pos[:, None, 1] - pos[None, :, 1]
    dist = jnp.sqrt(dx * dx + dy * dy)  # (a sum over a length-2 axis becomes a slow custom call)
    # the adjacency, symmetric block by block (no [N, N] transpose)
    grid = _grid_links_plan(plan)
    ss = np.zeros((ns, ns), bool)
    ss[grid[:, 0], grid[:, 1]] = ss[grid[:, 1], grid[:, 0]] = True
    a0, g0 = ns, ns + na
    if plan.k_air:
        d_air = dist[a0:g0, a0:g0] + jnp.where(jnp.eye(na, dtype=bool), jnp.inf, 0.0)
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
    nbr_edge = jnp.where(nbr_node < 0, -1,
                         jnp.take_along_axis(eid, jnp.maximum(nbr_node, 0), axis=1))
    e = plan.max_edges
    own = (nbr_node > jnp.arange(n)[:, None]) & (nbr_edge >= 0)
    dest = jnp.where(own, nbr_edge, e)
    edge_u = jnp.zeros(e + 1, jnp.int32).at[dest].set(rows)[:e]
    edge_v = jnp.zeros(e + 1, jnp.int32).at[dest].set(nbr_node)[:e]
    edge_mask = jnp.arange(e) < jnp.minimum(n_edges, e)
    etype = jnp.where(seg[edge_u] == seg[edge_v], seg[edge_u], 3)
    if plan.cap_big:
        bw = st.randint((e,), prm["bw_lo"][etype], prm["bw_span"][etype])
    else:
        bw = prm["bw_lo"][etype] + _mulhi(st.words(e), prm["bw_span"][etype])
    bw = jnp.where(edge_mask, bw, 0)
    repair = rep[edge_u, edge_v] & edge_mask

    hops = _hops_bitset(nbr_node, n)
    domain = _domains(plan, pos[:, 0])
    sizes = _domain_sizes(plan)
    domain_nodes = _domain_lists(domain, sizes)
    same = domain[:, None] == domain[None, :]
    ad = (jnp.where(same, hops, 0).sum(axis=1).astype(jnp.float32)
          / jnp.asarray(sizes, jnp.float32)[domain])

    sub = Substrate(
        cpu=cpu.astype(jnp.float32), sto=sto.astype(jnp.float32), segment=seg,
        domain=domain.astype(jnp.int32), edge_u=edge_u, edge_v=edge_v,
        edge_bw=bw.astype(jnp.float32), edge_mask=edge_mask, nbr_node=nbr_node,
        nbr_edge=nbr_edge.astype(jnp.int32), hops=hops, tree_parent=_tree_parents(hops, nbr_node),
        edge_id=eid, domain_nodes=domain_nodes.astype(jnp.int32), ad=ad)
    return sub, pos, repair, n_edges > e, deg.max() > k


def _grid_links_plan(plan: _Plan) -> np.ndarray:
    return _grid_links(ScenarioConfig(n_space=plan.ns, space_planes=plan.planes))


# --------------------------------------------------------------------------------------------
# the requests


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


def _pin(one, *xs):
    """``xs`` unchanged, computed once: a fusion barrier for XLA CPU.

    XLA CPU copies a chain of cheap elementwise ops into every fusion that reads it, once per
    element read: the [R, L] link fusions recomputed the request rows (a chain over all M rows)
    for each of the L slots. A while loop whose trip count ``one`` (= 1) is a traced value
    cannot be unrolled or removed, so its results are materialised buffers. ``one=None``
    (a direct call outside the generator) returns ``xs`` as they are."""
    if one is None:
        return xs if len(xs) > 1 else xs[0]

    def body(c):
        zero = (c[0] >= one).astype(jnp.uint32)  # 0 inside the loop; XLA cannot fold it
        return (c[0] + 1,) + tuple(x ^ zero.astype(x.dtype) for x in c[1:])
    out = lax.while_loop(lambda c: c[0] < one, body, (jnp.int32(0),) + xs)[1:]
    return out if len(xs) > 1 else out[0]


def _row_start(a, m: int):
    """The lexicographic index of pair (a, a + 1), the first of row a: the M - 1 - a' pairs of
    each row a' < a come before it (a Python int or an int array)."""
    return a * (m - 1) - ((a * (a - 1)) >> 1)


def _pair_bernoulli(stream: _Stream, bits: int, count: int, m: int, threshold):
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
        out = [jnp.where(thr >= 2, full, jnp.where(thr == 1, ~c, jnp.uint32(0))) for c in cols]
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
            out = jnp.where(col(index == i, bool), w[None, :], out)
        return out
    seg = word(k) >> col(off)
    seg = seg | jnp.where(col(straddle, bool), word(np.where(straddle, k + 1, k))
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
    u = _select_bit(joined, _mulhi(pick_words, jnp.maximum(size0, 1)))
    lo, hi = jnp.minimum(u, v), jnp.maximum(u, v)
    p = _row_start(lo, m) + hi - lo - 1
    p = _pin(one, jnp.where(event, p, 32 * m * m))  # the new link's pair, or none (a single
    #                                       array: XLA would recompute the chain for each output)
    bit = jnp.uint32(1) << (p & 31).astype(jnp.uint32)
    return [w | jnp.bitwise_or.reduce(jnp.where((p >> 5) == i, bit, jnp.uint32(0)), axis=0)
            for i, w in enumerate(_pair_words(up))]


def _select_bit(x, k):
    """The position of the k-th (from 0) set bit of u32 ``x`` (k < popcount(x)): a binary
    search over halves, quarters, ... of the word by popcount, no loop over the bits."""
    pos = jnp.zeros_like(k)
    for w in (16, 8, 4, 2, 1):
        c = lax.population_count(x & jnp.uint32((1 << w) - 1)).astype(jnp.int32)
        up = k >= c
        k = jnp.where(up, k - c, k)
        x = jnp.where(up, x >> w, x)
        pos = jnp.where(up, pos + w, pos)
    return pos


def _compact_links(words, m: int, one=None):
    """(link_a, link_b, link_mask) [R, L] from the pair words of requests of M = ``m`` nodes
    (list of u32[R]): slot j holds the (j+1)-th chosen pair in lexicographic order, i.e. the
    pair at the (j+1)-th set bit.

    The words and their popcounts are made once per request (``_pin``); per slot, the
    word holding the bit is chosen by the running popcounts and the bit by ``_select_bit``;
    the pair index p becomes (a, b) by counting the rows that start at or before p (elementwise
    over [R, L]; XLA CPU's scatter, the direct way, costs ~5 ns per element)."""
    r = words[0].shape[0]
    n_pairs = m * (m - 1) // 2
    counts = [lax.population_count(w).astype(jnp.int32) for w in words]
    pinned = _pin(one, *words, *counts)
    words, counts = pinned[:len(words)], pinned[len(words):]
    j = jnp.arange(n_pairs, dtype=jnp.int32)[None, :]
    k = jnp.broadcast_to(j, (r, n_pairs))  # rank of the wanted bit within the current word
    x = jnp.broadcast_to(words[0][:, None], (r, n_pairs))
    cur = jnp.zeros((r, n_pairs), jnp.int32)  # the current word
    for i in range(1, len(words)):
        on = (cur == i - 1) & (k >= counts[i - 1][:, None])
        x = jnp.where(on, words[i][:, None], x)
        k = jnp.where(on, k - counts[i - 1][:, None], k)
        cur = jnp.where(on, i, cur)
    mask = j < sum(counts)[:, None]
    p = _pin(one, jnp.where(mask, 32 * cur + _select_bit(x, k), 0))
    a = jnp.zeros_like(p)
    for row in range(1, m - 1):  # the last row has no pair (a, b > a)
        a = a + (p >= _row_start(row, m)).astype(jnp.int32)
    b = a + 1 + p - _row_start(a, m)
    return jnp.where(mask, a, 0), jnp.where(mask, b, 0), mask


def _requests(key, plan: _Plan, prm: dict, count: int) -> Requests:
    """``count`` requests in arrival order, padded to M = max_req_nodes nodes and M(M-1)/2 links.

    Topology: each pair with probability req_link_prob, then the numpy generator's repair: for
    v = 1..n-1 in order, a v outside the component of node 0 is linked to a uniformly chosen node
    of that component. Since whole components join, this links the smallest node v of each other
    component (in increasing v) to a member of {w : the smallest node of w's component < v}."""
    m, r = plan.m, count
    n_pairs = m * (m - 1) // 2
    st = _Stream(key)
    dig_cpu, dig_sto, dig_bw, dig_dom = plan.req_digits
    lo, span = prm["req_lo"], prm["req_span"]

    u_gap, u_life = st.uniform(2, r)
    gaps = -jnp.log1p(-u_gap) * prm["gap_scale"]
    lifetime = jnp.maximum(1.0, jnp.round(-jnp.log1p(-u_life) * prm["mean_lifetime"]))
    arrival = _arrivals(gaps, r)
    n_nodes = _pin(prm["one"], lo[3] + _mulhi(st.words(r), span[3]))  # (else its hash is
    #                                         recomputed for every entry of the [R, M] draws)
    node_mask = jnp.arange(m)[None, :] < n_nodes[:, None]
    cpu = jnp.where(node_mask, _uniform_ints(st, dig_cpu, (r, m), lo[0], span[0]), 0)
    sto = jnp.where(node_mask, _uniform_ints(st, dig_sto, (r, m), lo[1], span[1]), 0)
    dom = jnp.where(node_mask, _uniform_ints(st, dig_dom, (r, m), 0, plan.n_domains), 0)

    drawn = _pair_bernoulli(st, plan.bern_bits, r, m, prm["link_threshold"])
    up = _pin(prm["one"], _upper_rows(drawn, n_nodes, m))
    words = _connect_requests(up, n_nodes, st.words_transposed(r, m - 1), prm["one"])
    link_a, link_b, link_mask = _compact_links(words, m, prm["one"])
    bw = jnp.where(link_mask, _uniform_ints(st, dig_bw, (r, n_pairs), lo[2], span[2]), 0)
    return Requests(
        arrival=arrival, lifetime=lifetime.astype(jnp.float32), node_mask=node_mask,
        cpu=cpu.astype(jnp.float32), sto=sto.astype(jnp.float32), domain=dom.astype(jnp.int32),
        link_a=link_a.astype(jnp.int32), link_b=link_b.astype(jnp.int32),
        link_bw=bw.astype(jnp.float32), link_mask=link_mask)


# --------------------------------------------------------------------------------------------
# public API


def seed_key(seed: int) -> jax.Array:
    """``jax.random.key(seed)`` for a seed in [0, 2**32)."""
    if not is_int(seed) or not 0 <= seed < 2 ** 32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return jax.random.key(int(seed))


_SPLITS = {"train": 1, "test": 2}


def _scenario(key, plan: _Plan, prm: dict, n_train: int, n_test: int):
    sub, pos, repair, over_e, over_k = _substrate(jax.random.fold_in(key, 0), plan, prm)
    train = _requests(jax.random.fold_in(key, 1), plan, prm, n_train)
    test = _requests(jax.random.fold_in(key, 2), plan, prm, n_test)
    return Scenario(sub=sub, train=train, test=test, pos=pos, repair=repair,
                    overflow=over_e | over_k), over_e, over_k


def generate(key: jax.Array, cfg: ScenarioConfig) -> Scenario:
    """One scenario from ``key``: pure and fixed-shape (``cfg`` is static), so it can be jitted,
    vmapped over keys and inlined in a larger program."""
    cfg.validate()
    plan, prm = _plan(cfg), _params(cfg)
    prm = jax.tree_util.tree_map(jnp.asarray, prm)
    return _scenario(key, plan, prm, cfg.n_train, cfg.n_test)[0]


def _generation_mesh(mesh):
    """The mesh generation runs on: ``"local"`` (the default) is every device of this process
    when there are several (``--host-devices``, several GPUs), else None (one device). A
    scenario depends only on its seed, so generation never crosses processes."""
    if mesh != "local":
        return mesh
    devices = jax.local_devices()
    if len(devices) < 2:
        return None
    from sagin_jax.simulation.sharding import seed_mesh
    return seed_mesh(devices)


def _n_devices(mesh) -> int:
    return 1 if mesh is None else mesh.devices.size


def _on_mesh(fn, mesh):
    """``fn(prm, key_data)`` with the seed axis of ``key_data`` split over ``mesh``: each device
    generates its own block of seeds (``shard_map``; no communication, the same bits)."""
    if mesh is None:
        return fn
    from jax.sharding import PartitionSpec as P
    from sagin_jax.simulation.sharding import AXIS
    return jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P(AXIS),
                         check_vma=False)


_COMPILER_OPTIONS = {"xla_cpu_prefer_vector_width": 512}
"""XLA options of the generation programs. A CPU with AVX-512 then gets 512-bit vectors (XLA
prefers 256): the generator is integer work on wide arrays, and was 5-10% faster with the same
bits (on the 2-core AMD EPYC these figures come from). Other CPUs and backends ignore it."""


@partial(jax.jit, static_argnums=(0, 3), compiler_options=_COMPILER_OPTIONS)
def _substrate_batch(plan: _Plan, prm: dict, key_data, mesh=None):
    def run(prm, kd):
        return jax.vmap(lambda k: _substrate(jax.random.fold_in(jax.random.wrap_key_data(k), 0),
                                             plan, prm))(kd)
    return _on_mesh(run, mesh)(prm, key_data)


@partial(jax.jit, static_argnums=(0, 3, 5), compiler_options=_COMPILER_OPTIONS)
def _requests_batch(plan: _Plan, prm: dict, key_data, count: int, split, mesh=None):
    def run(prm, kd):
        return jax.vmap(lambda k: _requests(jax.random.fold_in(jax.random.wrap_key_data(k),
                                                               split), plan, prm, count))(kd)
    return _on_mesh(run, mesh)(prm, key_data)


def _seed_array(seeds: Sequence[int]) -> np.ndarray:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must not be empty")
    for s in seeds:
        if not is_int(s) or not 0 <= s < 2 ** 32:
            raise ValueError(f"seed must be an integer in [0, 2**32), got {s!r}")
    return np.asarray(seeds, dtype=np.uint32)


def _key_data(seeds, mesh):
    """The raw key data [S, 2] of ``seed_key`` for each seed, made on the host (no program per
    chunk) and placed on the device, or split over ``mesh`` if any."""
    from sagin_jax.simulation.seed_axis import seed_key_data
    data = seed_key_data(seeds)
    if mesh is None:
        return jax.device_put(data)
    from sagin_jax.simulation.sharding import seed_sharding
    return jax.device_put(data, seed_sharding(mesh))


def default_chunk(mesh=None) -> int:
    """Seeds per compiled generation call: ``CPU_CHUNK_PER_DEVICE`` per device on a CPU,
    ``MAX_CHUNK`` on an accelerator."""
    return CPU_CHUNK_PER_DEVICE * _n_devices(mesh) if jax.default_backend() == "cpu" else MAX_CHUNK


def _chunks(seeds: np.ndarray, chunk: int | None, mesh=None):
    """(key data, n_real) per chunk of ``chunk`` seeds (None: ``default_chunk``), each padded
    (repeating its last seed) to ``_padded_size``: one batch shape per call of make_*."""
    chunk = _check_chunk(chunk, mesh)
    size = _padded_size(len(seeds), chunk, mesh)
    for start in range(0, len(seeds), chunk):
        part = seeds[start:start + chunk]
        idx = np.minimum(np.arange(size), len(part) - 1)
        yield _key_data(part[idx], mesh), len(part)


def _check_chunk(chunk: int | None, mesh) -> int:
    chunk = default_chunk(mesh) if chunk is None else chunk
    if not is_int(chunk) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    return chunk


def _padded_size(n: int, chunk: int, mesh) -> int:
    """The seed-axis length of every chunk when ``n`` seeds are made ``chunk`` at a time: the
    chunk size when there are several chunks (a short last chunk padded to it costs less than
    compiling both programs again, ~2.5 s on 2 cores, for a second shape), else the power of two
    >= max(n, _MIN_BUCKET) (few shapes for small runs); a multiple of the mesh's device count."""
    size = min(max(_MIN_BUCKET, 1 << (n - 1).bit_length()), chunk)
    return -(-size // _n_devices(mesh)) * _n_devices(mesh)


def _host(tree, n):
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[:n], tree)


def _concat(parts):
    return jax.tree_util.tree_map(lambda *xs: jax.device_put(np.concatenate(xs)), *parts)


def _raise_overflow(seeds, over_e, over_k, bounds: Bounds) -> None:
    """Raise for the first seed that overflowed a static bound (no loop over the seeds)."""
    bad = np.flatnonzero(np.asarray(over_e) | np.asarray(over_k))
    if bad.size == 0:
        return
    i = int(bad[0])
    if over_e[i]:
        raise ValueError(f"seed {seeds[i]}: the scenario needs more than max_edges="
                         f"{bounds.max_edges} links; raise ScenarioConfig.max_edges")
    raise ValueError(f"seed {seeds[i]}: a node has more than max_degree={bounds.max_degree} "
                     "links; raise ScenarioConfig.max_degree")


def _make_subs(cfg, seeds, chunk, mesh="local"):
    cfg.validate()
    plan = _plan(cfg)
    prm = _params(cfg)
    seeds = _seed_array(seeds)
    mesh = _generation_mesh(mesh)
    out, start = [], 0
    for keys, n in _chunks(seeds, chunk, mesh):
        sub, pos, rep, oe, ok = _host(_substrate_batch(plan, prm, keys, mesh), n)
        _raise_overflow(seeds[start:start + n], oe, ok, Bounds(plan.max_edges, plan.max_degree))
        out.append((sub, pos, rep))
        start += n
    return out


def _make_reqs(cfg, seeds, split, chunk, mesh="local"):
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    cfg.validate()
    plan = _plan(cfg)
    prm = _params(cfg)
    count = cfg.n_train if split == "train" else cfg.n_test
    mesh = _generation_mesh(mesh)
    return [_host(_requests_batch(plan, prm, keys, count, _SPLITS[split], mesh), n)
            for keys, n in _chunks(_seed_array(seeds), chunk, mesh)]


def _compile_requests(pool, plan: _Plan, prm: dict, keys, counts, mesh) -> list:
    """Lower the request program for each count here and compile it on ``pool`` (XLA releases
    the GIL): the futures of the compiled programs. A later call of ``_requests_batch`` with the
    same shapes reuses the compiled program."""
    return [pool.submit(_requests_batch.lower(plan, prm, keys, n, 1, mesh).compile)
            for n in sorted(set(counts))]


def make_scenarios(cfg: ScenarioConfig, seeds: Sequence[int], chunk: int | None = None,
                   mesh="local") -> Scenario:
    """The scenarios of ``seeds`` on a leading seed axis (``generate`` of ``seed_key(seed)``),
    made ``chunk`` seeds per compiled call (None: ``default_chunk``), split over ``mesh``
    (default ``"local"``: every device of this process; None: one device); raises ValueError
    naming the first seed that overflows a static bound and the config field to raise. The
    request program compiles in a worker thread while the substrates are made."""
    cfg.validate()
    mesh = _generation_mesh(mesh)
    array = _seed_array(seeds)
    chunk = _check_chunk(chunk, mesh)
    size = _padded_size(len(array), chunk, mesh)  # every chunk's shape
    with ThreadPoolExecutor(1) as pool:
        compiling = _compile_requests(pool, _plan(cfg), _params(cfg),
                                      _key_data(np.resize(array, size), mesh),
                                      (cfg.n_train, cfg.n_test), mesh)
        subs = _make_subs(cfg, seeds, chunk, mesh)
        for c in compiling:
            c.result()
    train = _make_reqs(cfg, seeds, "train", chunk, mesh)
    test = _make_reqs(cfg, seeds, "test", chunk, mesh)
    sub, pos, rep = _concat(subs)
    return Scenario(sub=sub, train=_concat(train), test=_concat(test), pos=pos, repair=rep,
                    overflow=jax.device_put(np.zeros(len(pos), bool)))


def trim_padding(sub: Substrate, edge_bucket: int = 1, degree_bucket: int = 1) -> Substrate:
    """Cut a stacked substrate's link list and neighbour lists to the most any seed uses,
    rounded up to a multiple of ``edge_bucket`` / ``degree_bucket`` (so that batches of seeds
    share compiled programs). Padding is masked, so the cut changes no result; the static bounds
    of ``make_scenarios`` are safe for any seed but cost simulation time (O(E) and O(N K) work per
    request)."""
    e_used = max(1, int(np.asarray(sub.edge_mask).sum(axis=-1).max()))
    k_used = max(1, int((np.asarray(sub.nbr_node) >= 0).sum(axis=-1).max()))
    e = min(sub.n_edges, -(-e_used // edge_bucket) * edge_bucket)
    k = min(sub.nbr_node.shape[-1], -(-k_used // degree_bucket) * degree_bucket)

    def cut(x, n):
        return jax.device_put(np.asarray(x)[..., :n])
    return sub.replace(
        edge_u=cut(sub.edge_u, e), edge_v=cut(sub.edge_v, e), edge_bw=cut(sub.edge_bw, e),
        edge_mask=cut(sub.edge_mask, e), nbr_node=cut(sub.nbr_node, k),
        nbr_edge=cut(sub.nbr_edge, k))


def make_substrates(cfg: ScenarioConfig, seeds: Sequence[int], mesh="local") -> Substrate:
    """The substrates of ``seeds`` stacked, link and neighbour lists padded to the largest among
    them (as the simulator has always received them; ``make_scenarios`` keeps the static
    bounds)."""
    return trim_padding(_concat([s for s, _, _ in _make_subs(cfg, seeds, None, mesh)]))


def make_requests(cfg: ScenarioConfig, seeds: Sequence[int], split: str,
                  mesh="local") -> Requests:
    """The ``split`` ('train' or 'test') request sets of ``seeds``, stacked."""
    return _concat(_make_reqs(cfg, seeds, split, None, mesh))


def time_generation(cfg: ScenarioConfig, n_seeds: int, chunk: int | None = None,
                    mesh="local") -> dict:
    """Time ``make_scenarios``' compiled programs on ``n_seeds`` seeds, ``chunk`` per call, split
    over ``mesh`` as ``make_scenarios`` splits them: -> {compile_s, run_s, per_seed_s, n_seeds,
    chunk, devices}. The train and test sets share one program when their sizes are equal (as
    in ``make_scenarios``). Outputs are discarded chunk by chunk. As in ``make_scenarios``, the
    request program compiles in a worker thread while the substrate program is traced and
    compiled."""
    cfg.validate()
    plan, prm = _plan(cfg), _params(cfg)
    mesh = _generation_mesh(mesh)
    d = _n_devices(mesh)
    chunk = _check_chunk(chunk, mesh)
    chunk = -(-chunk // d) * d
    keys = _key_data(np.arange(chunk), mesh)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:  # as make_scenarios: requests compile in a thread
        counts = sorted({cfg.n_train, cfg.n_test})
        compiling = _compile_requests(pool, plan, prm, keys, counts, mesh)
        sub_prog = _substrate_batch.lower(plan, prm, keys, mesh).compile()
        req_progs = {n: c.result() for n, c in zip(counts, compiling)}
    compile_s = time.perf_counter() - t0
    n_chunks = -(-n_seeds // chunk)
    t0 = time.perf_counter()
    for c in range(n_chunks):
        keys = _key_data(np.arange(c * chunk, (c + 1) * chunk), mesh)
        outs = [sub_prog(prm, keys), req_progs[cfg.n_train](prm, keys, 1),
                req_progs[cfg.n_test](prm, keys, 2)]
        jax.block_until_ready(outs)
    run_s = time.perf_counter() - t0
    return dict(compile_s=compile_s, run_s=run_s, per_seed_s=run_s / (n_chunks * chunk),
                n_seeds=n_chunks * chunk, chunk=chunk, devices=d)
