"""Properties of the online process that must hold for every scenario (hypothesis).

Every scenario of a test has the same array shapes (same node counts, padding, request count;
edge lists padded to ``PAD``), so each jitted function compiles once per policy; hypothesis varies
the seed, the load (arrival rate, lifetime) and the capacity / demand ranges.
"""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from sagin_jax.policies.baselines import GRC, NRMVNE, RANDOM
from sagin_jax.scenario.generator import generate_requests, generate_substrate
from sagin_jax.scenario.io import scenario_document
from sagin_jax.simulation.batch import simulate_batch
from sagin_jax.simulation.online import handle_request, map_nodes, simulate
from sagin_jax.simulation.state import init_state, release_all, release_expired
from tests.conftest import small

R = 40  # requests per scenario (n_test)
PAD = 96  # edge padding: the small topology has ~40 links
PAD_DEGREE = 19  # neighbour-list padding: N - 1 for the 20-node topology, a bound for any seed
ACTIVE = R  # active-request table: can never overflow
DOMAINS = (1, 2, 2)  # U = 5 domains; fixed so domain_nodes has one shape
POLICIES = {"nrmvne": NRMVNE, "grc": GRC, "random": RANDOM}
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, print_blob=True)


def _range(lo_min, lo_max, width_max):
    return st.integers(lo_min, lo_max).flatmap(
        lambda lo: st.tuples(st.just(lo), st.integers(lo, lo + width_max)))


@st.composite
def scenarios(draw):
    """(config, seed): the shapes never change, the numbers do."""
    cap = draw(_range(5, 80, 60))
    sto = draw(_range(5, 80, 60))
    bw = draw(_range(5, 80, 60))
    cfg = small(
        n_test=R, domains_per_segment=DOMAINS,
        arrival_rate=draw(st.sampled_from([0.004, 0.02, 0.04, 0.2, 1.0])),
        mean_lifetime=draw(st.sampled_from([30.0, 300.0, 1000.0, 3000.0])),
        cpu_range=(cap, cap, cap), sto_range=(sto, sto, sto), bw_range=(bw, bw, bw),
        inter_bw_range=bw,
        req_nodes=(2, draw(st.integers(2, 10))),
        req_cpu=draw(_range(0, 30, 30)), req_sto=draw(_range(0, 30, 30)),
        req_bw=draw(_range(0, 30, 30)),
    )
    return cfg, draw(st.integers(0, 10_000))


def scenario(cfg, seed):
    return (generate_substrate(cfg, seed, pad_edges_to=PAD, pad_degree_to=PAD_DEGREE),
            generate_requests(cfg, seed, "test"))


@functools.lru_cache(maxsize=None)
def stepper(policy_name: str):
    """jit of: the online pass step by step, returning the state before (after departures) and
    after every request, the outcomes, the final state and the fully drained state."""
    policy = POLICIES[policy_name]

    def run(key, sub, reqs):
        keys = jax.random.split(key, reqs.n_requests)

        def step(state, xs):
            req, k = xs
            pre = release_expired(state, req.arrival)
            post, out = handle_request(policy, None, k, sub, pre, req)
            return post, (pre, post, out)

        final, (pre, post, out) = jax.lax.scan(
            step, init_state(sub, ACTIVE, reqs.max_nodes), (reqs, keys))
        return final, release_all(final), pre, post, out

    run.__name__ = f"run_{policy_name}"  # chex counts traces per name and source
    return jax.jit(chex.assert_max_traces(run, n=1))


def run_steps(policy_name, cfg, seed):
    sub, reqs = scenario(cfg, seed)
    res = stepper(policy_name)(jax.random.key(seed), sub, reqs)
    return sub, reqs, jax.tree_util.tree_map(np.asarray, res)


def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _tree_diff(a, b) -> list[str]:
    """Paths of the leaves where two pytrees differ (dtype or any bit); [] when identical."""
    if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
        return ["<structure>"]
    la = jax.tree_util.tree_leaves_with_path(a)
    return [jax.tree_util.keystr(p) for (p, x), y in zip(la, jax.tree_util.tree_leaves(b))
            if np.asarray(x).dtype != np.asarray(y).dtype
            or not np.array_equal(np.asarray(x), np.asarray(y))]


def _trees_equal(a, b) -> bool:
    return not _tree_diff(a, b)


def _observable(state):
    """What the process reads of a state: residuals, active flags and the active rows (an
    inactive row of the table holds whatever was last written there and is never read)."""
    active = np.asarray(state.slot_active)
    def rows(x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] != active.shape[0]:
            return x
        return np.where(active.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0)
    return jax.tree_util.tree_map(rows, state.replace(totals=None))


def _np_stack(items):
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *items)


def _at(tree, k):
    return jax.tree_util.tree_map(lambda x: x[k], tree)


@pytest.fixture(autouse=True)
def _fresh_trace_counter():
    chex.clear_trace_counter()
    yield


policy_names = pytest.mark.parametrize("name", sorted(POLICIES))


# ---- resources --------------------------------------------------------------------------------

@policy_names
@SETTINGS
@given(sc=scenarios())
def test_residuals_never_negative_nor_above_capacity(name, sc):
    sub, reqs, (final, drained, pre, post, out) = run_steps(name, *sc)
    cap_cpu, cap_sto = np.asarray(sub.cpu), np.asarray(sub.sto)
    cap_bw = np.where(np.asarray(sub.edge_mask), np.asarray(sub.edge_bw), 0.0)
    for st_ in (pre, post):
        assert (st_.res_cpu >= 0).all() and (st_.res_sto >= 0).all() and (st_.res_bw >= 0).all()
        assert (st_.res_cpu <= cap_cpu).all() and (st_.res_sto <= cap_sto).all()
        assert (st_.res_bw <= cap_bw).all()
        assert (st_.res_bw[:, ~np.asarray(sub.edge_mask)] == 0).all()  # padding stays empty
    assert not out.overflow.any()


@policy_names
@SETTINGS
@given(sc=scenarios())
def test_release_all_restores_every_capacity_exactly(name, sc):
    sub, reqs, (final, drained, pre, post, out) = run_steps(name, *sc)
    assert np.array_equal(drained.res_cpu, np.asarray(sub.cpu))
    assert np.array_equal(drained.res_sto, np.asarray(sub.sto))
    assert np.array_equal(drained.res_bw,
                          np.where(np.asarray(sub.edge_mask), np.asarray(sub.edge_bw), 0.0))
    assert not drained.slot_active.any()
    # the final state still holds exactly the requests that have not departed yet
    t_end = float(np.asarray(reqs.arrival)[-1])
    dep = np.asarray(reqs.arrival) + np.asarray(reqs.lifetime)
    assert final.slot_active.sum() == (out.accepted & (dep > t_end)).sum()


@policy_names
@SETTINGS
@given(sc=scenarios())
def test_each_request_changes_exactly_its_own_demand(name, sc):
    """Rejected: the state (residuals, active table, money) is untouched. Accepted: exactly its
    demand leaves the hosts and the links of its paths (eqs. 4-6), hosts are legal (eqs. 1, 2)."""
    sub, reqs, (final, drained, pre, post, out) = run_steps(name, *sc)
    nreq = _np(reqs)
    dom = np.asarray(sub.domain)
    for k in range(R):
        before, after = _at(pre, k), _at(post, k)
        t0, t1 = before.totals, after.totals
        assert t1.arrived == t0.arrived + 1
        if not out.accepted[k]:
            assert _trees_equal(_observable(before), _observable(after)), k
            assert _trees_equal(t0.replace(arrived=0), t1.replace(arrived=0)), k
            assert out.value.revenue[k] == out.value.cost[k] == 0
            continue
        mask = nreq.node_mask[k]
        hosts = out.hosts[k][mask]
        assert len(set(hosts.tolist())) == len(hosts)  # eq. 2: distinct hosts
        assert (dom[hosts] == nreq.domain[k][mask]).all()  # eq. 1
        used_cpu = np.zeros_like(before.res_cpu)
        used_sto = np.zeros_like(before.res_sto)
        np.add.at(used_cpu, hosts, nreq.cpu[k][mask])
        np.add.at(used_sto, hosts, nreq.sto[k][mask])
        assert np.array_equal(before.res_cpu - after.res_cpu, used_cpu), k
        assert np.array_equal(before.res_sto - after.res_sto, used_sto), k
        assert (before.res_bw - after.res_bw).sum() == out.value.link_cost[k], k
        assert after.slot_active.sum() == before.slot_active.sum() + 1


@jax.jit
def _handle_variants(sub, state, variants):
    """From ``state``: the departures, stage 1 of each variant, and each variant handled."""
    key = jax.random.key(1)
    now_state = release_expired(state, variants.arrival[0])
    nodes = jax.vmap(lambda r: map_nodes(NRMVNE, None, key, sub, now_state, r))(variants)
    new, out = jax.vmap(lambda r: handle_request(NRMVNE, None, key, sub, state, r))(variants)
    return now_state, nodes, new, out


def test_rejection_is_atomic_after_a_partial_allocation():
    """A request whose nodes fit but whose link cannot be routed, and one whose node cannot be
    placed, leave the state exactly as it was although the working copy was modified."""
    cfg = small(n_test=R, domains_per_segment=DOMAINS)
    sub, reqs, (final, drained, pre, post, out) = run_steps("nrmvne", cfg, 0)
    k = int(np.flatnonzero(out.accepted)[min(5, out.accepted.sum() - 1)])
    state = _at(post, k)  # a network with load on it
    assert state.slot_active.sum() > 0
    base = _at(_np(reqs), min(k + 1, R - 1))
    m, links = base.max_nodes, base.max_links
    two = np.arange(m) < 2  # nodes 0 and 1 of the next request, joined by one link (0, 1)
    first = np.arange(links) == 0
    link_fails = base.replace(
        node_mask=two, cpu=np.where(two, 1.0, 0.0).astype(np.float32),
        sto=np.where(two, 1.0, 0.0).astype(np.float32), link_mask=first,
        link_a=np.zeros(links, np.int32), link_b=first.astype(np.int32),
        link_bw=np.where(first, 1e6, 0.0).astype(np.float32))
    node_fails = base.replace(cpu=np.where(np.arange(m) == 0, 1e6, base.cpu).astype(np.float32))
    routable = link_fails.replace(link_bw=first.astype(np.float32))
    variants = jax.tree_util.tree_map(lambda *xs: np.stack(xs), link_fails, node_fails, routable)
    now_state, nodes, new, res = _np(_handle_variants(sub, state, variants))

    # stage 1 of the link-failing request succeeded on the working copy ...
    assert nodes.ok[0] and not np.array_equal(nodes.res_cpu[0], now_state.res_cpu)
    assert not nodes.ok[1]
    for v in (0, 1):  # ... yet neither rejected request changed anything
        assert not res.accepted[v]
        after = _at(new, v)
        assert _trees_equal(_observable(after), _observable(now_state)), v
        assert _trees_equal(after.totals.replace(arrived=0),
                            now_state.totals.replace(arrived=0)), v
        assert after.totals.arrived == now_state.totals.arrived + 1
    # the same request with a routable demand is accepted from the same state
    assert res.accepted[2]
    assert _at(new, 2).res_cpu.sum() == now_state.res_cpu.sum() - 2.0
    assert _at(new, 2).slot_active.sum() == now_state.slot_active.sum() + 1


# ---- money and metrics -----------------------------------------------------------------------

@policy_names
@SETTINGS
@given(sc=scenarios())
def test_totals_agree_with_per_request_outcomes(name, sc):
    sub, reqs, (final, drained, pre, post, out) = run_steps(name, *sc)
    nreq = _np(reqs)
    acc = out.accepted
    node_part = np.where(nreq.node_mask, nreq.cpu + nreq.sto, 0).sum(1)
    link_rev = np.where(nreq.link_mask, nreq.link_bw, 0).sum(1)
    v = out.value
    # eqs. 7, 8 per request, zero when rejected
    assert np.array_equal(v.revenue, np.where(acc, node_part + link_rev, 0))
    assert np.array_equal(v.link_revenue, np.where(acc, link_rev, 0))
    assert np.array_equal(v.cost - v.revenue, v.link_cost - v.link_revenue)
    assert (v.link_cost >= v.link_revenue).all()  # every path has >= 1 hop
    # running totals
    t = final.totals
    assert t.arrived == R and t.accepted == acc.sum()
    for field in ("revenue", "cost", "link_revenue", "link_cost"):
        assert getattr(t, field) == getattr(v, field).sum(dtype=np.float64), field
    # running metrics after each request
    n_acc = np.cumsum(acc)
    m = out.metrics
    assert np.array_equal(m.time, nreq.arrival)
    np.testing.assert_allclose(m.acr, n_acc / np.arange(1, R + 1), rtol=1e-6)
    rev, cost = np.cumsum(v.revenue), np.cumsum(v.cost)
    np.testing.assert_allclose(m.rc, np.where(cost > 0, rev / np.where(cost > 0, cost, 1), 0),
                               rtol=1e-6)
    lrev, lcost = np.cumsum(v.link_revenue), np.cumsum(v.link_cost)
    np.testing.assert_allclose(m.rc_link,
                               np.where(lcost > 0, lrev / np.where(lcost > 0, lcost, 1), 0),
                               rtol=1e-6)
    assert ((m.rc > 0) == (rev > 0)).all() and (m.rc <= 1 + 1e-6).all()


# ---- determinism and batching ------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def single_run(policy_name):
    policy = POLICIES[policy_name]

    def one_seed(key, sub, reqs):
        return simulate(policy, None, key, sub, reqs, max_active=ACTIVE, record_paths=True)

    one_seed.__name__ = f"one_seed_{policy_name}"
    return jax.jit(chex.assert_max_traces(one_seed, n=1))


@settings(max_examples=12, deadline=None, derandomize=True, print_blob=True,
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # shrinking recompiles: slow
@given(sc=scenarios())
def test_same_seed_gives_bit_identical_results_across_programs(sc):
    """Same config and seed -> the same scenario and the same results bit for bit, from two
    separately traced and compiled programs: the step-by-step ``stepper`` (which also releases
    departures itself before each request and records paths off) and ``simulate`` (paths on).
    Anything that leaks trace-time or program-specific state into the results (a key that is not
    derived from the seed, a constant baked in at trace time, an op whose result depends on how
    XLA fuses it) shows up as a difference."""
    cfg, seed = sc
    sub1, reqs1 = scenario(cfg, seed)
    sub2, reqs2 = scenario(cfg, seed)  # the generator keeps no state between calls
    assert scenario_document(sub1, reqs1) == scenario_document(sub2, reqs2)
    assert _trees_equal(sub1, sub2) and _trees_equal(reqs1, reqs2)
    _, _, (final, _drained, _pre, _post, out) = run_steps("random", cfg, seed)
    state, whole = single_run("random")(jax.random.key(seed), sub2, reqs2)
    # ``trips`` counts loop trips, and the stepper's own release leaves handle_request none to do
    assert _tree_diff(out.replace(trips=None), _np(whole.replace(paths=None, trips=None))) == []
    assert _tree_diff(final, _np(state)) == []


@pytest.mark.parametrize("name", ["grc", "random"])
@settings(max_examples=4, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.reuse, Phase.generate])  # shrinking seeds is pointless
@given(sc=scenarios(), more=st.lists(st.integers(0, 10_000), min_size=2, max_size=2))
def test_vmap_over_seeds_equals_per_seed_runs(name, sc, more):
    cfg, seed = sc
    seeds = [seed, *more]
    subs = _np_stack([generate_substrate(cfg, s, pad_edges_to=PAD, pad_degree_to=PAD_DEGREE)
                      for s in seeds])
    reqs = _np_stack([generate_requests(cfg, s, "test") for s in seeds])
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, dtype=jnp.uint32))
    policy = POLICIES[name]
    b_state, b_out = simulate_batch(policy, None, keys, subs, reqs, max_active=ACTIVE,
                                    record_paths=True)
    for i, s in enumerate(seeds):
        state, out = single_run(name)(jax.random.key(s), _at(subs, i), _at(reqs, i))
        assert _tree_diff(_at(b_out, i), out) == [], (name, s)
        assert _tree_diff(_at(b_state, i), state) == [], (name, s)


def test_one_trace_per_configuration():
    """Different scenarios of one shape reuse the compiled program; a second trace would raise."""
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def fresh(key, sub, reqs):
        return simulate(NRMVNE, None, key, sub, reqs, ACTIVE)

    for seed, rate in ((1, 0.04), (2, 0.4), (3, 0.004)):
        sub, reqs = scenario(small(n_test=R, domains_per_segment=DOMAINS, arrival_rate=rate),
                             seed)
        fresh(jax.random.key(seed), sub, reqs)
    # a different shape is a different configuration: it retraces, and chex notices
    sub, reqs = scenario(small(n_test=R + 1, domains_per_segment=DOMAINS), 4)
    with pytest.raises(AssertionError, match="traced"):
        fresh(jax.random.key(4), sub, reqs)
