"""The env's sparse batching rules: ``cond_rows``, ``release_env`` and ``SaginEnv.step``'s
auto-reset, each against a plain reference (a row-by-row loop, the simulator's sequential
release, gymnax's own ``step``)."""
from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("gymnax")

from gymnax.environments import environment  # noqa: E402

from sagin_jax.env import SaginEnv  # noqa: E402
from sagin_jax.env.batching import RowView, cond_rows  # noqa: E402
from sagin_jax.env.dynamics import release_env  # noqa: E402
from sagin_jax.scenario.generate import make_scenarios  # noqa: E402
from sagin_jax.simulation.state import init_state, release_expired  # noqa: E402
from tests.conftest import small  # noqa: E402

SMALL = small(n_train=30, n_test=30)


def _fn(consts, carry):
    """An arbitrary branch: a loop whose trip count depends on the row's data."""
    scale, offset = consts
    x, n = carry

    def body(c):
        x, n = c
        return x * scale + offset, n + 1

    return jax.lax.while_loop(lambda c: c[0].sum() < 50.0, body, (x, n))


def test_cond_rows_under_vmap_equals_the_branch_row_by_row():
    rows = 7
    pred = jnp.array([True, False, True, True, False, False, True])
    scale = jnp.linspace(1.5, 3.0, rows)  # batched
    offset = jnp.float32(0.25)  # shared by every row, never broadcast
    x = jnp.arange(rows * 3, dtype=jnp.float32).reshape(rows, 3) / 10.0
    n = jnp.int32(0)  # an unbatched carry leaf: every row gets its own copy

    got = jax.jit(jax.vmap(lambda p, s, xx: cond_rows(_fn, p, (s, offset), (xx, n))))(
        pred, scale, x)
    for i in range(rows):
        want = _fn((scale[i], offset), (x[i], n)) if bool(pred[i]) else (x[i], n)
        np.testing.assert_array_equal(np.asarray(got[0][i]), np.asarray(want[0]))
        assert int(got[1][i]) == int(want[1])
    # nested vmap (seeds of environments): the outer vmap batches the rule's loop
    nested = jax.jit(jax.vmap(jax.vmap(
        lambda p, s, xx: cond_rows(_fn, p, (s, offset), (xx, n)))))(
        jnp.stack([pred, ~pred]), jnp.stack([scale, scale[::-1]]), jnp.stack([x, x + 1.0]))
    for r, (p, s, xx) in enumerate([(pred, scale, x), (~pred, scale[::-1], x + 1.0)]):
        for i in range(rows):
            want = _fn((s[i], offset), (xx[i], n)) if bool(p[i]) else (xx[i], n)
            np.testing.assert_array_equal(np.asarray(nested[0][r, i]), np.asarray(want[0]))
            assert int(nested[1][r, i]) == int(want[1])
    # alone it is a cond
    alone = cond_rows(_fn, pred[0], (scale[0], offset), (x[0], n))
    np.testing.assert_array_equal(np.asarray(alone[0]), np.asarray(got[0][0]))


def test_cond_rows_runs_the_branch_only_for_rows_taking_it():
    calls = []

    def fn(consts, carry):
        jax.debug.callback(lambda: calls.append(1))
        return carry + consts

    pred = jnp.array([False, True, False, False, True, False, False, False])
    out = jax.jit(jax.vmap(lambda p, c: cond_rows(fn, p, jnp.float32(1.0), c)))(
        pred, jnp.zeros((8,)))
    jax.block_until_ready(out)
    assert len(calls) == 2  # a select-based cond would run the branch for all 8 rows
    np.testing.assert_array_equal(np.asarray(out), np.asarray(pred, np.float32))


def _read_rows(consts, carry, table):
    """A branch that reads ``table`` only by row (``table[a]``), a data-dependent number of
    rows."""
    picks, (total, count) = consts, carry

    def body(c):
        total, k = c
        return total + table[picks[k]], k + 1

    total, _ = jax.lax.while_loop(lambda c: c[1] < count, body, (total, jnp.int32(0)))
    return total, count


def test_cond_rows_hands_indexed_tables_to_the_branch_as_row_views():
    rows, a, e = 6, 5, 300
    pred = jnp.array([True, False, True, False, False, True])
    table = jnp.arange(rows * a * e, dtype=jnp.float32).reshape(rows, a, e) % 97.0
    picks = jnp.array([[4, 0, 2], [1, 1, 1], [3, 3, 0], [0, 1, 2], [2, 2, 2], [0, 4, 1]])
    count = jnp.array([3, 2, 1, 3, 0, 2])
    total = jnp.zeros((rows, e), jnp.float32)

    def one(p, pk, tot, c, tab):
        return cond_rows(_read_rows, p, pk, (tot, c), tab)

    vmapped = jax.jit(jax.vmap(one))
    got = vmapped(pred, picks, total, count, table)
    for i in range(rows):
        want = total[i] + sum((table[i, picks[i, k]] for k in range(int(count[i]))),
                              jnp.zeros((e,))) if bool(pred[i]) else total[i]
        np.testing.assert_array_equal(np.asarray(got[0][i]), np.asarray(want))
    # alone: the branch gets the array itself
    alone = one(pred[0], picks[0], total[0], count[0], table[0])
    np.testing.assert_array_equal(np.asarray(alone[0]), np.asarray(got[0][0]))
    # under vmap it gets a view, and no [a, e] row of the table is copied out
    seen = []
    jax.eval_shape(jax.vmap(lambda *x: cond_rows(
        lambda c, y, t: (seen.append(type(t)), y)[1], *x[:2], x[2:4], x[4])),
        pred, picks, total, count, table)
    assert seen[-1] is RowView  # (custom_vmap traces the unbatched branch first)
    hlo = vmapped.lower(pred, picks, total, count, table).compile().as_text()
    assert not re.search(rf"= f32\[{a},{e}\]", hlo)


@functools.lru_cache(maxsize=None)
def _substrate0():
    return jax.tree_util.tree_map(lambda x: x[0], make_scenarios(SMALL, [0]).sub)


def _busy_state(seed: int, rows: int = 12):
    """A table with random active rows (hosts, demands, bandwidth, times) on substrate 0."""
    state = init_state(_substrate0(), rows, SMALL.max_req_nodes)
    rng = np.random.default_rng(seed)
    sub = _substrate0()
    a, m, e, n = rows + 1, SMALL.max_req_nodes, sub.n_edges, sub.n_nodes
    hosts = np.stack([rng.choice(n, m, replace=False) for _ in range(a)]).astype(np.int32)
    arrival = rng.integers(0, 50, a).astype(np.float32)
    return state.replace(
        slot_active=jnp.asarray(rng.random(a) < 0.6).at[-1].set(False),
        slot_arrival=jnp.asarray(arrival),
        slot_departure=jnp.asarray(arrival + rng.integers(1, 60, a).astype(np.float32)),
        slot_revenue=jnp.asarray(rng.integers(1, 400, a).astype(np.float32)),
        slot_hosts=jnp.asarray(hosts),
        slot_cpu=jnp.asarray(rng.integers(0, 30, (a, m)).astype(np.float32)),
        slot_sto=jnp.asarray(rng.integers(0, 30, (a, m)).astype(np.float32)),
        slot_bw=jnp.asarray(np.where(rng.random((a, e)) < 0.1,
                                     rng.integers(1, 40, (a, e)), 0).astype(np.float32)),
        res_cpu=state.res_cpu - 100.0, res_bw=state.res_bw - 50.0)


def test_release_env_under_vmap_equals_the_sequential_release_of_each_env():
    states = [_busy_state(s) for s in range(5)]
    batch = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)
    # per environment: nothing leaves, some rows leave, every active row leaves
    now = jnp.array([-jnp.inf, 40.0, 70.0, 25.0, 1e9], jnp.float32)
    got = jax.jit(jax.vmap(release_env))(batch, now)
    left = 0
    for i, s in enumerate(states):
        want = release_expired(s, now[i])
        left += int(s.slot_active.sum() - want.slot_active.sum())
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b)),
            got, want)
    assert left > 10  # the rows released make the comparison worth something


def test_step_auto_resets_as_gymnax_does():
    """``SaginEnv.step`` against gymnax's own ``Environment.step`` (which resets every
    environment and selects), under vmap, with episodes ending along the way: terminated,
    then (a short step limit, the same programs) truncated."""
    cfg = small(n_train=6, n_test=6)
    scen = make_scenarios(cfg, [0, 1, 2])
    env = SaginEnv.from_scenarios(scen.sub, scen.test)
    n_env, n_steps = 6, 80

    def policy(key, obs):
        return jax.random.categorical(key, jnp.where(obs.action_mask, 0.0, -jnp.inf)).astype(
            jnp.int32)

    def run(step, params):
        def body(carry, key):
            obs, state = carry
            keys = jax.random.split(key, n_env)
            act = jax.vmap(policy)(keys, obs)
            obs, state, reward, term, trunc, info = jax.vmap(step, in_axes=(0, 0, 0, None))(
                keys, state, act, params)
            return (obs, state), (obs, state, reward, term, trunc, info)

        start = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(jax.random.key(3), n_env), params)
        return jax.lax.scan(body, start, jax.random.split(jax.random.key(4), n_steps))[1]

    ours = jax.jit(lambda p: run(env.step, p))
    gymnax_own = jax.jit(lambda p: run(lambda *a: environment.Environment.step(env, *a), p))
    for ending, params in (("terminated", env.default_params),
                           ("truncated", env.default_params.replace(max_steps_in_episode=9))):
        got, want = ours(params), gymnax_own(params)
        ended = np.asarray(got[3] if ending == "terminated" else got[4])
        assert ended.sum() >= n_env, ending  # resets happened along the way
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a),
                                                                          np.asarray(b)),
                               got, want)



def test_accelerator_strategies_use_the_select_layout():
    """No loop over environments under the accelerators' strategies (each trip would be a
    kernel launch there); the CPU's sequential strategy loops over the rows taking a branch."""
    assert not SaginEnv(SMALL, strategy="sequential").batched
    assert SaginEnv(SMALL, strategy="batched").batched
    assert SaginEnv(SMALL, strategy="kernel").batched


def test_write_rows_writes_only_where_asked_alone_and_under_vmap():
    """``state.write_rows`` (the env's commit of table rows) against a numpy loop: row ``row``
    of each table becomes the value where ``when``, every other element stays; under ``vmap``
    without a scatter (its batching rule writes the rows in place)."""
    from sagin_jax.simulation.state import write_rows
    rng = np.random.default_rng(0)
    envs, rows, e = 6, 5, 7
    tables = {"bw": jnp.asarray(rng.normal(size=(envs, rows, e)), jnp.float32),
              "on": jnp.asarray(rng.random((envs, rows)) < 0.5)}
    row = jnp.array([0, 4, 2, 2, 1, 3])
    values = {"bw": jnp.asarray(rng.normal(size=(envs, e)), jnp.float32),
              "on": jnp.array([True, False, True, True, False, True])}
    when = jnp.array([True, True, False, True, False, True])
    want = jax.tree_util.tree_map(lambda x: np.array(x), tables)
    for i in range(envs):
        if when[i]:
            for k in want:
                want[k][i, int(row[i])] = np.asarray(values[k][i])
    got = jax.jit(jax.vmap(write_rows))(tables, row, values, when)
    for k in want:
        np.testing.assert_array_equal(np.asarray(got[k]), want[k])
    for i in range(envs):  # alone (a lax.cond)
        one = write_rows(*jax.tree_util.tree_map(lambda x: x[i], (tables, row, values, when)))
        for k in want:
            np.testing.assert_array_equal(np.asarray(one[k]), want[k][i])
    hlo = jax.jit(jax.vmap(write_rows)).lower(tables, row, values, when).compile().as_text()
    assert not re.search(r"= (f32\[6,5,7\]|pred\[6,5\])\S* scatter\(", hlo)


def test_a_node_stage_rejection_moves_the_totals_and_writes_no_table_row():
    """``commit_request`` with ``nodes_ok=False`` (static: how the env rejects a request whose
    next node has no feasible host) leaves what a traced rejection leaves (residuals, totals,
    active rows), and no table row is written."""
    from sagin_jax.embedding.links import LinkEmbedding
    from sagin_jax.scenario.types import widen
    from sagin_jax.simulation.online import commit_request
    state = _busy_state(3)
    req = widen(jax.tree_util.tree_map(lambda x: x[0, 5], make_scenarios(SMALL, [0]).test))
    m, e = SMALL.max_req_nodes, state.res_bw.shape[0]
    links = LinkEmbedding(ok=jnp.bool_(True), res_bw=state.res_bw - 1.0,
                          usage=jnp.ones((e,)), hops=jnp.ones((req.link_mask.shape[0],),
                                                              jnp.int32),
                          paths=None, trips=jnp.int32(0))
    args = (jnp.arange(m, dtype=jnp.int32), state.res_cpu - 1.0, state.res_sto - 1.0, links)
    static, accepted, value, overflow = commit_request(state, req, False, *args)
    traced, *want = commit_request(state, req, jnp.bool_(False), *args)
    assert not bool(accepted) and not bool(overflow) and float(value.revenue) == 0.0
    for got, ref in zip((accepted, value, overflow), want):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), got, ref)
    assert int(static.totals.arrived) == int(state.totals.arrived) + 1
    for f in ("res_cpu", "res_sto", "res_bw", "slot_active", "totals"):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b),
                               getattr(static, f), getattr(traced, f))
    for f in ("slot_arrival", "slot_departure", "slot_revenue", "slot_hosts", "slot_cpu",
              "slot_sto", "slot_bw"):
        np.testing.assert_array_equal(getattr(static, f), getattr(state, f))


def test_a_release_inside_cond_rows_under_an_outer_vmap_reads_the_row_views():
    """The env's rejection loop under nested vmap (seeds of environments, as PPO runs it): a
    release inside ``cond_rows`` meets ``release_env``'s batching rule with ``RowView``s whose
    table and row both carry the outer axis (``batching.batch_index``); the same numbers as
    each environment's sequential release, and no change where the branch is not taken."""
    states = [_busy_state(s) for s in range(4)]
    now = jnp.array([40.0, 70.0, 25.0, 1e9], jnp.float32)
    pred = jnp.array([True, True, False, True])
    batch = jax.tree_util.tree_map(
        lambda *xs: jnp.stack(xs).reshape((2, 2) + jnp.shape(xs[0])), *states)
    big = ("slot_hosts", "slot_cpu", "slot_sto", "slot_bw")

    def one(p, sim, t):
        table = {f: getattr(sim, f) for f in big}

        def fn(t, rest, table):
            return release_env(rest.replace(**table), t).replace(**{f: None for f in big})

        out = cond_rows(fn, p, t, sim.replace(**{f: None for f in big}), table)
        return out.replace(**table)

    got = jax.jit(jax.vmap(jax.vmap(one)))(pred.reshape(2, 2), batch, now.reshape(2, 2))
    left = 0
    for k, s in enumerate(states):
        want = jax.jit(release_expired)(s, now[k]) if bool(pred[k]) else s
        left += int(s.slot_active.sum() - want.slot_active.sum())
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_array_equal(np.asarray(a)[k // 2, k % 2],
                                                       np.asarray(b)), got, want)
    assert left > 5
