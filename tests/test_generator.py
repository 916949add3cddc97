"""The JAX scenario generator (``sagin_jax.scenario.generate``) against the host-side packer
(``scenario/build.py``, numpy) and against its own contracts: fixed shapes, bit-identical results
whatever the batch, loud overflow, one compile per program shape.

The distributions (connectivity, degree patterns, Waxman frequency, moments) are checked
independently in ``tests/test_generator_statistics.py``.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from sagin_jax.config import PAPER, ScenarioConfig
from sagin_jax.scenario import bitlines as B
from sagin_jax.scenario import draw_requests as R
from sagin_jax.scenario import draw_substrate as S
from sagin_jax.scenario import generate as G
from sagin_jax.scenario import plan as P
from sagin_jax.scenario import words as W
from sagin_jax.scenario.build import build_requests, build_substrate
from sagin_jax.scenario.io import scenario_document
from sagin_jax.scenario.types import widen
from tests.conftest import small

CFG = small(domains_per_segment=(1, 2, 2), n_train=30, n_test=40)
SEEDS = list(range(8))


@pytest.fixture(scope="module")
def batch():
    return G.make_scenarios(CFG, SEEDS)


def _at(tree, i):
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[i], tree)


def _same(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y)


def _rebuild(sub):
    """The generated link list through build_substrate (numpy), padded like the generator."""
    m = np.asarray(sub.edge_mask)
    return build_substrate(np.asarray(sub.cpu), np.asarray(sub.sto), np.asarray(sub.segment),
                           np.asarray(sub.domain), np.asarray(sub.edge_u)[m],
                           np.asarray(sub.edge_v)[m], np.asarray(sub.edge_bw)[m],
                           pad_edges_to=sub.n_edges, pad_degree_to=sub.nbr_node.shape[-1])


def test_derived_layouts_equal_the_numpy_derivation(batch):
    """hops, tree parents (smallest-id closer neighbour), link ids, neighbour lists, domain
    lists and eq. 16's AD, computed in JAX, equal build.py's numpy derivation for the same links;
    so does the canonical order and padding of the link list."""
    bounds = G.scenario_bounds(CFG)
    assert batch.sub.edge_u.shape == (len(SEEDS), bounds.max_edges)
    assert batch.sub.nbr_node.shape == (len(SEEDS), CFG.n_nodes, bounds.max_degree)
    for i in range(len(SEEDS)):
        sub = _at(batch.sub, i)
        _same(_rebuild(sub), sub)


def test_derived_layouts_paper_scenario():
    sc = G.make_scenarios(PAPER.replace(n_train=2, n_test=2), [11])
    sub = _at(sc.sub, 0)
    assert int(np.asarray(sub.edge_mask).sum()) > 250
    _same(_rebuild(sub), sub)


def test_scenario_json_round_trip_is_bit_identical(batch, tmp_path):
    for i in (0, 5):
        sub, test = _at(batch.sub, i), _at(batch.test, i)
        path = tmp_path / f"scenario{i}.json"
        path.write_text(json.dumps(scenario_document(sub, test)))
        doc = json.loads(path.read_text())
        n = np.array
        back = build_substrate(
            [d["cpu"] for d in doc["nodes"]], [d["sto"] for d in doc["nodes"]],
            n([d["segment"] for d in doc["nodes"]]), n([d["domain"] for d in doc["nodes"]]),
            n([lk["u"] for lk in doc["links"]]), n([lk["v"] for lk in doc["links"]]),
            [lk["bw"] for lk in doc["links"]], pad_edges_to=sub.n_edges,
            pad_degree_to=sub.nbr_node.shape[-1])
        _same(back, sub)
        _same(build_requests(doc["requests"], CFG.n_domains, CFG.max_req_nodes), widen(test))


def test_same_seed_same_scenario_whatever_the_batch(batch):
    """seed 3 alone (padded batch), inside batches of other seeds at other positions, and as one
    un-vmapped call of ``generate`` (batch size 1, another program): bit-identical."""
    alone = G.make_scenarios(CFG, [3])
    _same(_at(alone, 0), _at(batch, 3))
    other = G.make_scenarios(CFG, [9, 3, 10])
    _same(_at(other, 1), _at(batch, 3))
    single = jax.jit(G.generate, static_argnums=1)(G.seed_key(3), CFG)
    assert not bool(single.overflow)
    _same(_at(jax.tree_util.tree_map(lambda x: x[None], single.replace(overflow=None)), 0),
          _at(batch.replace(overflow=None), 3))


def test_streams_are_independent():
    """A seed's train set does not depend on n_test, nor its substrate on the request counts."""
    a = G.make_scenarios(CFG, [2])
    b = G.make_scenarios(CFG.replace(n_test=7, n_train=30), [2])
    _same(a.train, b.train)
    _same(a.sub, b.sub)
    assert not np.array_equal(np.asarray(a.train.cpu), np.asarray(a.test.cpu[:, :30]))


def test_overflow_is_detected_never_truncated():
    tiny_e = CFG.replace(max_edges=12)
    with pytest.raises(ValueError, match=r"seed 0: .*max_edges=12.*ScenarioConfig.max_edges"):
        G.make_substrates(tiny_e, [0, 1])
    tiny_k = CFG.replace(max_degree=2, n_train=3, n_test=3)
    with pytest.raises(ValueError, match=r"seed 4: .*max_degree=2.*ScenarioConfig.max_degree"):
        G.make_scenarios(tiny_k, [4])
    gen = jax.jit(G.generate, static_argnums=1)
    assert bool(gen(G.seed_key(4), tiny_k).overflow)


@pytest.mark.parametrize("seed", [-1, 2 ** 32, 1.5, True, "3"])
def test_seed_range_is_validated(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        G.seed_key(seed)
    with pytest.raises(ValueError, match=r"seed must be an integer"):
        G.make_requests(CFG, [0, seed], "test")


def test_one_compile_per_program_shape(batch):
    """Seed lists of another length (same bucket) and configs that differ only in numbers
    (ranges, rates, lifetimes) reuse the compiled programs. (Waxman parameters change the
    static bounds and req_link_prob the bit layout, so they may compile anew.)"""
    compiles = []
    listener = lambda event, *a, **k: compiles.append(event) if "backend_compile" in event else 0
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        G.make_scenarios(CFG, [20, 21, 22])
        other = CFG.replace(cpu_range=((5, 9), (10, 30), (7, 70)), req_cpu=(3, 8),
                            arrival_rate=0.5, mean_lifetime=40.0, req_nodes=(3, 6))
        G.make_scenarios(other, [1, 2])
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []


def test_chunks_share_one_shape_and_compile_in_the_background(batch):
    """50 seeds made 40 per call: the short last chunk (10 seeds) is padded to the chunk size,
    so one substrate and one request program compile (train and test share it; no other test
    uses this shape), the request one in make_scenarios' worker thread, and the scenarios equal
    those of one call."""
    import threading
    compiles = []

    def listener(event, *a, **k):
        if "backend_compile" in event:
            compiles.append(threading.current_thread() is threading.main_thread())
    cfg = CFG.replace(n_test=CFG.n_train)
    seeds = list(range(50))
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        chunked = G.make_scenarios(cfg, seeds, chunk=40, mesh=None)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert sorted(compiles) == [False, True]  # one in the worker, one in the main thread
    _same(chunked, G.make_scenarios(cfg, seeds, mesh=None))
    _same(_at(chunked.train, slice(0, 8)), batch.train)


def test_requests_respect_padding_and_rules(batch):
    cfg = CFG
    for split, count in (("train", cfg.n_train), ("test", cfg.n_test)):
        r = _at(getattr(batch, split), slice(None))
        m = cfg.max_req_nodes
        assert r.cpu.shape == (len(SEEDS), count, m)
        assert r.link_bw.shape == (len(SEEDS), count, m * (m - 1) // 2)
        nm, lm = r.node_mask, r.link_mask
        n = nm.sum(-1)
        assert (n >= cfg.req_nodes[0]).all() and (n <= cfg.req_nodes[1]).all()
        # masks are prefixes; padding is zero
        assert (nm == (np.arange(m) < n[..., None])).all()
        assert (lm == (np.arange(lm.shape[-1]) < lm.sum(-1)[..., None])).all()
        for f, (lo, hi) in ((r.cpu, cfg.req_cpu), (r.sto, cfg.req_sto)):
            assert (f[~nm] == 0).all() and (f[nm] >= lo).all() and (f[nm] <= hi).all()
        assert (r.domain[~nm] == 0).all() and (r.domain < cfg.n_domains).all()
        assert (r.link_bw[~lm] == 0).all() and (r.link_a[~lm] == 0).all()
        assert (r.link_b[~lm] == 0).all()
        assert (r.link_bw[lm] >= cfg.req_bw[0]).all() and (r.link_bw[lm] <= cfg.req_bw[1]).all()
        assert (r.arrival == np.round(r.arrival)).all() and (np.diff(r.arrival) >= 0).all()
        assert (r.lifetime >= 1).all() and (r.lifetime == np.round(r.lifetime)).all()
        for s in range(len(SEEDS)):
            for k in range(count):
                a, b = r.link_a[s, k][lm[s, k]], r.link_b[s, k][lm[s, k]]
                assert (a < b).all() and (b < n[s, k]).all()
                key = a * m + b
                assert (np.diff(key) > 0).all()  # lexicographic, no duplicates
                g = nx.Graph()
                g.add_nodes_from(range(n[s, k]))
                g.add_edges_from(zip(a.tolist(), b.tolist()))
                assert nx.is_connected(g)


def test_arrivals_fixed_point_equals_float64_rounding():
    """round(cumsum(gaps)) in integer fixed point equals float64 rounding except within the
    fixed-point resolution of a half."""
    rng = np.random.default_rng(0)
    gaps = rng.exponential(25.0, size=1000).astype(np.float32)
    got = np.asarray(R._arrivals(jnp.asarray(gaps), 1000))
    exact = np.cumsum(gaps.astype(np.float64))
    want = np.round(exact)
    close = np.abs(exact - np.floor(exact) - 0.5) < 1000 * 2.0 ** -(R._fixed_point_bits(1000) + 1)
    assert ((got == want) | close).all()
    assert (got == want).mean() > 0.99


@pytest.mark.parametrize("change, field", [
    (dict(air_k_nearest=6), "air_k_nearest"),
    (dict(uav_to_ground=11), "uav_to_ground"),
    (dict(sat_to_uav=7), "sat_to_uav"),
    (dict(cpu_range=((1, 2), (1, 2), (1, 2 * 10 ** 9))), "cpu_range"),
    (dict(req_bw=(1, 10 ** 10)), "req_bw"),
    (dict(waxman_beta=float("inf")), "waxman_beta"),
    (dict(max_edges=0), "max_edges"),
    (dict(max_degree=2.5), "max_degree"),
])
def test_config_refuses_silent_nonsense(change, field):
    with pytest.raises(ValueError, match=field):
        small(**change).validate()


def test_bounds_formula_and_overrides():
    b = G.scenario_bounds(PAPER)
    # deterministic parts: 15 Grid + 30*3 air + 30*2 + 10*2 inter-segment links
    assert b.max_edges > 15 + 90 + 60 + 20
    assert b.max_degree <= PAPER.n_nodes - 1
    assert G.scenario_bounds(PAPER.replace(max_edges=400, max_degree=20)) == (400, 20)
    assert isinstance(ScenarioConfig.from_dict({"max_edges": 300}).max_edges, int)


def _pack_pairs(flags):
    """Pair flags bool[R, L] (lexicographic pairs) -> the generator's pair words, numpy: bit
    p % 32 of word p // 32."""
    r, n_pairs = flags.shape
    padded = np.zeros((r, -(-n_pairs // 32) * 32), np.uint64)
    padded[:, :n_pairs] = flags
    weights = np.uint64(1) << np.arange(32, dtype=np.uint64)
    words = (padded.reshape(r, -1, 32) * weights).sum(axis=2).astype(np.uint32)
    return [jnp.asarray(words[:, i]) for i in range(words.shape[1])]


def _unpack_pairs(words, n_pairs):
    w = np.stack([np.asarray(x) for x in words], axis=1).astype(np.uint64)
    bits = (w[:, :, None] >> np.arange(32, dtype=np.uint64)) & np.uint64(1)
    return bits.reshape(len(w), -1)[:, :n_pairs] == 1


@pytest.mark.parametrize("m", [2, 3, 10, 31])
def test_request_connect_rule_matches_the_numpy_rule(m):
    """``_upper_rows`` then ``_connect_requests`` (Warshall on bitmask rows, then a prefix OR
    of the reachability rows, no loop over v) equal the numpy generator's sequential union-find
    rule, given the same draws and uniform choices: pairs reaching a node >= n are dropped, and
    each v outside the component of node 0 gets one link. M = 31: pair words straddled by rows,
    an odd number of Warshall steps."""
    rng = np.random.default_rng(m)
    pa, pb = R._pair_tables(m)
    r = 600 if m < 31 else 200
    n = rng.integers(min(2, m), m + 1, r)
    p = rng.choice([0.0, 0.05, 0.2, 0.5], (r, 1))
    drawn = rng.random((r, len(pa))) < p  # before masking by n
    words = rng.integers(0, 2 ** 32, (r, m - 1), dtype=np.uint64).astype(np.uint32)
    nj = jnp.asarray(n, jnp.int32)
    up = jax.jit(R._upper_rows, static_argnums=2)(_pack_pairs(drawn), nj, m)
    out = jax.jit(R._connect_requests)(up, nj, jnp.asarray(words.T))
    got = _unpack_pairs(out, len(pa))
    for k in range(r):
        comp = list(range(n[k]))

        def find(x):
            while comp[x] != x:
                x = comp[x]
            return x

        links = {(int(pa[i]), int(pb[i])) for i in np.flatnonzero(drawn[k]) if pb[i] < n[k]}
        for a, b in links:
            comp[find(a)] = find(b)
        for v in range(1, n[k]):
            if find(v) != find(0):
                members = [w for w in range(n[k]) if find(w) == find(0)]
                u = members[(int(words[k, v - 1]) * len(members)) >> 32]
                links.add((min(u, v), max(u, v)))
                comp[find(v)] = find(0)
        want = np.array([(int(a), int(b)) in links for a, b in zip(pa, pb)])
        assert (got[k] == want).all(), k


@pytest.mark.parametrize("p", [0.0, 0.25, 0.375, 0.5, 0.2, 1.0])
def test_pair_draws_are_the_digits_below_the_threshold(p):
    """``_pair_bernoulli``: pair i is drawn iff digit ``i % (32 // k)`` of random word
    ``i // (32 // k)`` is below ``round(p * 2**k)`` (numpy, on the same stream's words), for
    1, 2, 3 and 16 bits per draw; M = 31 (465 pairs, 15 pair words)."""
    m, r = 31, 64
    cfg = ScenarioConfig(req_link_prob=p, max_req_nodes=m, req_nodes=(2, m))
    bits, thr = P._bern_bits(p), int(G.plan_params(cfg)["link_threshold"])
    n_pairs, per = m * (m - 1) // 2, 32 // bits
    key = jax.random.key(7)
    got = _unpack_pairs(R._pair_bernoulli(W.Stream(key), bits, r, m, jnp.uint32(thr)), n_pairs)
    w = np.asarray(W.Stream(key).words(r, -(-n_pairs // per))).astype(np.int64)
    i = np.arange(n_pairs)
    digit = (w[:, i // per] >> ((i % per) * bits)) & ((1 << bits) - 1)
    np.testing.assert_array_equal(got, digit < thr)
    assert abs(got.mean() - p) < 0.03


def test_two_digit_split_is_exact_for_every_small_span():
    """``_divmod_small`` (f32, as XLA compiles it) equals integer divmod for every span that
    packs two digits per word (1..256) and every 16-bit word value. ``floor(v / span)`` in f32
    fails this for 38 spans (XLA multiplies by a rounded reciprocal), e.g. span 41."""
    spans = np.arange(1, 257, dtype=np.int32)[:, None]
    v = np.arange(1 << 16, dtype=np.int32)[None, :]
    q, r = jax.jit(W._divmod_small)(jnp.asarray(v), jnp.asarray(spans))
    np.testing.assert_array_equal(np.asarray(q), v // spans)
    np.testing.assert_array_equal(np.asarray(r), v % spans)


@pytest.mark.parametrize("digits, shape, span", [(2, (50, 45), 41), (2, (50, 10), 256),
                                                 (2, (3, 7, 9), 3), (2, (20, 1), 100),
                                                 (1, (40, 10), 1000)])
@pytest.mark.parametrize("pinned", [False, True])
def test_uniform_ints_take_their_digits_from_the_streams_words(digits, shape, span, pinned):
    """``uniform_ints``: with two digits per word, row i's values are ``v % span`` for its
    first ``half = ceil(last / 2)`` entries and ``v // span`` for the rest, ``v = (w * span**2)
    >> 32`` of word ``i * half + j`` of the stream (numpy, int64 arithmetic); with one digit,
    ``(w * span) >> 32`` of word i. Both with and without the ``pin`` barrier, in and out of
    jit."""
    key, lo = jax.random.key(3), 7
    *lead, last = shape
    rows, half = int(np.prod(lead)), (last + 1) // 2

    def draw(one):
        return W.uniform_ints(W.Stream(key), digits, shape, lo, span, one)
    got = np.asarray(jax.jit(draw)(jnp.int32(1)) if pinned else draw(None))
    if digits == 1:
        w = np.asarray(W.Stream(key).words(*shape)).astype(np.int64)
        want = lo + ((w * span) >> 32)
    else:
        w = np.asarray(W.Stream(key).words(rows * half)).astype(np.int64).reshape(rows, half)
        v = (w * span * span) >> 32
        want = lo + np.concatenate([v % span, (v // span)[:, :last - half]], axis=1)
    np.testing.assert_array_equal(got, want.reshape(shape))


def test_request_draws_stay_in_range_for_spans_a_reciprocal_gets_wrong():
    """Spans 41, 47 and 55 (two digits per word) once drew ``hi + 1``: every drawn value lies
    in its configured range and every value of the range occurs."""
    cfg = small(req_cpu=(10, 50), req_sto=(1, 47), req_bw=(5, 59), n_train=400, n_test=1)
    r = G.make_scenarios(cfg, range(4)).train
    nm, lm = np.asarray(r.node_mask), np.asarray(r.link_mask)
    for name, values, (lo, hi) in (("cpu", r.cpu, cfg.req_cpu), ("sto", r.sto, cfg.req_sto),
                                   ("bw", r.link_bw, cfg.req_bw)):
        x = np.asarray(values)[nm if name != "bw" else lm].astype(np.int64)
        assert x.min() >= lo and x.max() <= hi, (name, x.min(), x.max())
        assert set(np.unique(x)) == set(range(lo, hi + 1)), name


@pytest.mark.parametrize("m, pinned", [(2, False), (3, False), (10, True), (31, False),
                                       (31, True)])
def test_link_compaction_lists_the_chosen_pairs_in_lexicographic_order(m, pinned):
    """``_compact_links`` of the pair words equals numpy's list of the chosen pairs
    (np.flatnonzero over the lexicographic pair flags), padded with zeros, any row sizes
    (M = 31: 465 pairs over 15 pair words), with and without the ``pin`` barriers."""
    rng = np.random.default_rng(m)
    pa, pb = R._pair_tables(m)
    r = 300
    pairs = rng.random((r, len(pa))) < rng.choice([0.0, 0.1, 0.5, 1.0], (r, 1))
    compact = jax.jit(R._compact_links, static_argnums=1) if pinned else R._compact_links
    out = compact(_pack_pairs(pairs), m, jnp.int32(1) if pinned else None)
    a, b, mask = (np.asarray(x) for x in out)
    for k in range(r):
        chosen = np.flatnonzero(pairs[k])
        n = len(chosen)
        assert (mask[k] == (np.arange(len(pa)) < n)).all(), k
        np.testing.assert_array_equal(a[k, :n], pa[chosen])
        np.testing.assert_array_equal(b[k, :n], pb[chosen])
        assert (a[k, n:] == 0).all() and (b[k, n:] == 0).all()


def test_min_first_takes_the_first_minimum():
    """``_min_first`` (a min, then the smallest index holding it) equals numpy's min and
    argmin on rows full of ties, with infinities, and on a row of only infinities."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, (200, 37)).astype(np.float32)
    x[rng.random(x.shape) < 0.3] = np.inf
    x[0] = np.inf
    low, first = jax.jit(S._min_first)(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(low), x.min(axis=1))
    np.testing.assert_array_equal(np.asarray(first), np.argmin(x, axis=1))


@pytest.mark.parametrize("k", [0, 1, 3, 9])
def test_near_links_pick_each_rows_k_nearest_seen_from_both_sides(k):
    """``_near_links``: row i of a block links its k nearest columns (ties by smaller column,
    numpy's stable sort), and the mirrored block holds the same links transposed, read from the
    mirrored distances of a symmetric matrix (no transpose in the code)."""
    rng = np.random.default_rng(k)
    n, r0, c0, rows, cols = 30, 4, 15, 11, 9
    d = rng.integers(0, 6, (n, n)).astype(np.float32)  # many ties
    d = np.minimum(d, d.T)
    block, mirror = d[r0:r0 + rows, c0:c0 + cols], d[c0:c0 + cols, r0:r0 + rows]
    fwd, bwd = jax.jit(S._near_links, static_argnums=2)(jnp.asarray(block), jnp.asarray(mirror), k)
    want = np.zeros((rows, cols), bool)
    for i in range(rows):
        want[i, np.argsort(block[i], kind="stable")[:k]] = True
    np.testing.assert_array_equal(np.asarray(fwd), want)
    np.testing.assert_array_equal(np.asarray(bwd), want.T)


def test_symmetric_uniform_mirrors_the_upper_triangle_of_the_plain_draw():
    """``Stream.symmetric_uniform(n)`` is ``uniform(n, n)`` on and above the diagonal and its
    mirror below, and it takes the same counters (the next draw is the same)."""
    key = jax.random.key(11)
    a, b = W.Stream(key), W.Stream(key)
    plain, sym = np.asarray(a.uniform(13, 13)), np.asarray(b.symmetric_uniform(13))
    upper = np.triu(np.ones((13, 13), bool))
    np.testing.assert_array_equal(sym[upper], plain[upper])
    np.testing.assert_array_equal(sym, sym.T)
    np.testing.assert_array_equal(np.asarray(a.words(5)), np.asarray(b.words(5)))


@pytest.mark.parametrize("n, p, max_edges, max_degree", [(7, 0.5, 21, 6), (40, 0.3, 300, 39),
                                                        (100, 0.1, 400, 30), (100, 0.2, 300, 12)])
def test_link_ranks_number_the_upper_triangle_and_list_neighbours(n, p, max_edges, max_degree):
    """``_link_ranks`` against numpy on random symmetric graphs (1 to 4 bit words per row):
    link (i < j) has its row-major rank over the upper triangle at (i, j) and (j, i), -1 past
    ``max_edges`` (the last two cases cut both lists) and off the links; each node's
    neighbours in ascending order, -1 padded and cut at ``max_degree``; the degrees."""
    rng = np.random.default_rng(n)
    upper = np.triu(rng.random((n, n)) < p, 1)
    adj = upper | upper.T
    eid, n_edges, nbr, deg = jax.jit(S._link_ranks, static_argnums=(1, 2))(
        jnp.asarray(adj), max_edges, max_degree, jnp.int32(1))
    iu, ju = np.nonzero(upper)  # row-major order = the rank order
    want = -np.ones((n, n), np.int64)
    keep = np.arange(len(iu)) < max_edges
    want[iu[keep], ju[keep]] = want[ju[keep], iu[keep]] = np.arange(len(iu))[keep]
    np.testing.assert_array_equal(np.asarray(eid), want)
    assert int(n_edges) == len(iu)
    np.testing.assert_array_equal(np.asarray(deg), adj.sum(axis=1))
    for i in range(n):
        row = np.flatnonzero(adj[i])[:max_degree]
        want_row = np.concatenate([row, -np.ones(max_degree - len(row), np.int64)])
        np.testing.assert_array_equal(np.asarray(nbr)[i], want_row)


@pytest.mark.parametrize("n, sizes", [(7, (3, 4)), (100, (10, 40, 25, 25, 0)),
                                      (70, (1, 33, 36)), (33, (33,))])
def test_domain_lists_are_each_domains_ids_ascending(n, sizes):
    """``_domain_lists`` against numpy on shuffled domain assignments (1 to 4 bit words, an
    empty domain, domains straddling words): each domain's node ids ascending, -1 padded to
    the largest."""
    rng = np.random.default_rng(n)
    domain = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    got = np.asarray(jax.jit(lambda d: S._domain_lists(d, np.array(sizes)))(
        jnp.asarray(domain, jnp.int32)))
    assert got.shape == (len(sizes), max(sizes))
    for u, size in enumerate(sizes):
        want = np.concatenate([np.flatnonzero(domain == u), -np.ones(max(sizes) - size)])
        np.testing.assert_array_equal(got[u], want)


def test_where_is_jnp_where_without_a_nested_jit():
    """``where`` gives ``jnp.where``'s values, dtype, weak type and shape for the operand kinds
    the generator passes (arrays of several dtypes, Python and numpy scalars, broadcasting),
    and traces to primitives only, no nested jit (the reason it exists)."""
    rng = np.random.default_rng(0)
    c = jnp.asarray(rng.random((3, 4)) < 0.5)
    cases = [(jnp.arange(12, dtype=jnp.int32).reshape(3, 4), 0),
             (jnp.arange(4, dtype=jnp.uint32), jnp.uint32(7)),
             (jnp.float32(2.5), jnp.arange(12, dtype=jnp.float32).reshape(3, 4)),
             (jnp.arange(4, dtype=jnp.uint8), -1), (np.int32(3), jnp.arange(4, dtype=jnp.int32)),
             (c, False), (jnp.arange(3, dtype=jnp.int32)[:, None], jnp.arange(4)[None, :]),
             (jnp.ones((3, 4), jnp.float32), 1)]
    for x, y in cases:
        want, got = jnp.where(c, x, y), B.where(c, x, y)
        assert (got.dtype, got.shape, got.weak_type) == (want.dtype, want.shape, want.weak_type)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        jaxpr = jax.make_jaxpr(B.where)(c, x, y) if hasattr(x, "shape") and hasattr(y, "shape") \
            else jax.make_jaxpr(lambda c: B.where(c, x, y))(c)
        assert not any(e.primitive.name in ("pjit", "jit") for e in jaxpr.jaxpr.eqns), jaxpr


def test_select_bit_finds_the_kth_set_bit():
    """``select_bit(x, k)`` is the k-th (from 0) entry of numpy's list of the set bits of x,
    for every k < popcount(x), on random words of every density and the extreme ones."""
    rng = np.random.default_rng(5)
    w = rng.integers(0, 2 ** 32, (3, 400), dtype=np.uint64)
    x = np.where(rng.random(400) < 0.5, w[0] & w[1], w[0] | w[2])  # sparse and dense words
    x = np.concatenate([x, [1, 2 ** 31, 2 ** 32 - 1, 0x80000001]]).astype(np.uint32)
    bits = [np.flatnonzero((int(w) >> np.arange(32)) & 1) for w in x]
    xs = np.repeat(x, [len(b) for b in bits])
    ks = np.concatenate([np.arange(len(b)) for b in bits]).astype(np.int32)
    got = np.asarray(B.select_bit(jnp.asarray(xs), jnp.asarray(ks)))
    np.testing.assert_array_equal(got, np.concatenate(bits))


def test_pin_returns_its_inputs_and_stays_a_loop():
    """``pin`` changes no bit (every dtype the generator pins) and, with a traced trip count,
    survives XLA's optimisations as a while loop (the fusion barrier it exists for)."""
    xs = (jnp.asarray([0, 1, 2 ** 32 - 1], jnp.uint32), jnp.asarray([-5, 0, 7], jnp.int32))
    got = jax.jit(B.pin)(jnp.int32(1), *xs)
    for g, x in zip(got, xs):
        assert g.dtype == x.dtype
        np.testing.assert_array_equal(np.asarray(g), np.asarray(x))
    hlo = jax.jit(B.pin).lower(jnp.int32(1), *xs).compile().as_text()
    assert " while(" in hlo


def test_bfs_loop_is_not_compiled_as_one_small_call():
    """The package asks XLA CPU to compile small while loops into one function each (the
    simulator's loops gain); the substrate's BFS loop is faster as separate kernels, and keeps
    them by holding a scatter (XLA does not hoist a loop with one). Its compiled program, for a
    batch of substrates as the generator runs it, has no small call."""
    nbr = jnp.zeros((64, 100, 28), jnp.int32)
    hlo = jax.jit(jax.vmap(lambda x: S._hops_bitset(x, 100))).lower(nbr).compile().as_text()
    assert " while(" in hlo and "xla_cpu_small_call" not in hlo


def test_hop_counts_match_networkx_with_unreachable_pairs():
    """``_hops_bitset`` (bit-sliced level counters) against networkx on a small graph of
    three components, one a single node: hop counts, 0 on the diagonal, -1 between components."""
    g = nx.Graph([(0, 1), (1, 2), (2, 6), (6, 7), (4, 5)])
    g.add_nodes_from(range(9))  # 3 and 8 isolated
    n, k = g.number_of_nodes(), 3
    nbr = np.full((n, k), -1, np.int32)
    for v in range(n):
        adj = sorted(g.neighbors(v))
        nbr[v, :len(adj)] = adj
    got = np.asarray(S._hops_bitset(jnp.asarray(nbr), n))
    want = np.full((n, n), -1)
    for s, dist in nx.all_pairs_shortest_path_length(g):
        for v, d in dist.items():
            want[s, v] = d
    np.testing.assert_array_equal(got, want)
