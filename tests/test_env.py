"""``SaginEnv``: driven with a policy's own choices it reproduces ``simulate`` bit for bit (and
so the networkx reference, through the equivalence tests); masks, spaces, wrappers, vmap, the
reward's telescoping sums and bad input."""
from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

gymnax = pytest.importorskip("gymnax")

from sagin_jax.config import PAPER  # noqa: E402
from sagin_jax.env import SaginEnv  # noqa: E402
from sagin_jax.env.dynamics import node_context  # noqa: E402
from sagin_jax.env.rollout import episode_steps, play, request_outcomes  # noqa: E402
from sagin_jax.env.throughput import nrm_action  # noqa: E402
from sagin_jax.policies.baselines import NRMVNE  # noqa: E402
from sagin_jax.policies.ddrl import make_ddrl_policy  # noqa: E402
from sagin_jax.scenario.generate import make_scenarios, seed_key  # noqa: E402
from sagin_jax.simulation.batch import make_requests, make_substrates, table_size  # noqa: E402
from sagin_jax.simulation.online import simulate  # noqa: E402
from sagin_jax.training.config import TrainConfig  # noqa: E402
from sagin_jax.training.reinforce import make_train  # noqa: E402
from tests.conftest import small, unstack  # noqa: E402

SMALL = small(n_train=40, n_test=40)


@functools.lru_cache(maxsize=None)
def scenario(cfg, seed: int, split: str = "test"):
    scen = make_scenarios(cfg, [seed])
    reqs = scen.test if split == "test" else scen.train
    return unstack(scen.sub, 0), unstack(reqs, 0), table_size(reqs)


def nrm_choice(key, obs, state):
    """NRMVNE's rule from the observation alone: highest (CPU + STO) · Σ BW within the mask."""
    score = (obs.nodes[:, 8] + obs.nodes[:, 9]) * obs.nodes[:, 10]
    return jnp.argmax(jnp.where(obs.action_mask, score, -jnp.inf)).astype(jnp.int32)


def run_both(policy, params, choose, node_order, cfg=PAPER, seed=3):
    """``simulate(policy)`` and an env episode with ``choose(params, env_params, key, obs,
    state)`` on test set ``seed`` of ``cfg``."""
    sub, reqs, table = scenario(cfg, seed)
    sim_state, out = jax.jit(lambda p: simulate(policy, p, jax.random.key(0), sub, reqs,
                                                table))(params)
    env = SaginEnv.from_scenarios(sub, reqs, node_order=node_order, max_active=table)
    env_params = env.default_params

    @jax.jit
    def episode(p):
        obs, state = env.reset_to(0, env_params)
        return play(env, env_params, functools.partial(choose, p, env_params),
                    jax.random.key(1), obs,
                    state, episode_steps(reqs))

    state, (info, _, term, empty) = episode(params)
    return out, sim_state, state, info, term, empty, reqs


def assert_same_as_simulate(out, sim_state, state, info, term, empty, reqs):
    acc, hosts, revenue = request_outcomes(info, reqs.n_requests, reqs.max_nodes)
    want = np.asarray(out.accepted)
    assert want.sum() > 0 and (~want).sum() > 0  # both outcomes occur
    np.testing.assert_array_equal(acc, want)
    np.testing.assert_array_equal(hosts[want], np.asarray(out.hosts)[want])
    np.testing.assert_array_equal(revenue, np.asarray(out.value.revenue))
    for a, b in zip(jax.tree_util.tree_leaves((state.sim.res_cpu, state.sim.res_sto,
                                               state.sim.res_bw, state.sim.totals)),
                    jax.tree_util.tree_leaves((sim_state.res_cpu, sim_state.res_sto,
                                               sim_state.res_bw, sim_state.totals))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert bool(np.asarray(term).any())  # the episode ended within the steps
    assert not bool(np.asarray(empty).any())  # the mask was never empty while it ran


def test_nrmvne_choice_through_env_reproduces_simulate_on_paper_config():
    res = run_both(NRMVNE, None, lambda p, ep, k, obs, s: nrm_choice(k, obs, s), "nrm")
    assert_same_as_simulate(*res)


def test_fixed_scenarios_store_their_tables_narrow_with_the_same_numbers():
    """``narrow_substrate`` (how ``from_scenarios`` stores a pool): int8 N x N tables where
    every value fits, int16 neighbour lists, the same numbers; a value above 127 keeps int16."""
    from sagin_jax.scenario.types import narrow_substrate
    sub = unstack(make_substrates(PAPER, (0,)), 0)
    narrow = narrow_substrate(sub)
    assert narrow.hops.dtype == np.int8 and narrow.tree_parent.dtype == np.int8
    assert narrow.edge_id.dtype == np.int16  # 466 links: an id above 127
    assert narrow.nbr_node.dtype == np.int16 and narrow.nbr_edge.dtype == np.int16
    for k in ("hops", "tree_parent", "edge_id", "nbr_node", "nbr_edge"):
        np.testing.assert_array_equal(np.asarray(getattr(narrow, k)).astype(np.int64),
                                      np.asarray(getattr(sub, k)).astype(np.int64))
    far = narrow_substrate(sub.replace(hops=jnp.asarray(sub.hops).at[0, 1].set(200)))
    assert far.hops.dtype == np.int16 and int(far.hops[0, 1]) == 200


@functools.lru_cache(maxsize=None)
def trained_ddrl_params():
    """DDRL-NRA trained two epochs on a small scenario (the shapes test_agents trains with)."""
    sub = unstack(make_substrates(SMALL, (1,)), 0)
    train_reqs = make_requests(SMALL, (1,), "train")
    cfg = TrainConfig(algo="ddrl-nra", epochs=2, batch_size=20, init_scale=0.5)
    trainer = make_train(cfg, 40, table_size(train_reqs))
    params, _ = jax.jit(trainer.train)(jax.random.key(0), jnp.float32(0.05), sub,
                                       unstack(train_reqs, 0))
    return params


def test_ddrl_greedy_through_env_reproduces_simulate_with_trained_params():
    policy = make_ddrl_policy(True)

    def choose(p, env_params, key, obs, state):
        # the policy's own select on what it sees in the simulator (aux: Σ residual BW)
        return policy.select(key, p, node_context(state, env_params.pool), state.inc_bw)[0]

    res = run_both(policy, trained_ddrl_params(), choose, "index")
    assert_same_as_simulate(*res)


def test_vmapped_envs_equal_each_env_alone_and_embed_only_the_committing_ones():
    """Under ``vmap`` only the environments committing a request embed its links
    (``embed_env_links``' batching rule); every environment's whole episode (states, infos,
    rewards) equals the same environment stepped alone, bit for bit. The lone episodes are the
    sequential step's code, which the equivalence tests above hold to ``simulate``. The
    accelerator layout (``strategy="batched"``) plays the same episodes."""
    scen = make_scenarios(SMALL, [0, 1, 2, 3])
    env = SaginEnv.from_scenarios(scen.sub, scen.test, node_order="nrm")
    params = env.default_params
    steps = episode_steps(scen.test)

    def episode(i):
        obs, state = env.reset_to(i, params)
        return play(env, params, lambda k, o, s: nrm_choice(k, o, s), jax.random.key(1), obs,
                    state, steps)

    together = jax.jit(jax.vmap(episode))(jnp.arange(4))
    alone = jax.jit(episode)
    finished = np.asarray(together[1][0]["finished"])
    assert 0 < finished.sum(axis=1).min() and (finished.sum(axis=0) < 4).any()  # out of step
    for i in range(4):
        jax.tree_util.tree_map(
            lambda a, b: np.testing.assert_array_equal(np.asarray(a)[i], np.asarray(b)),
            together, alone(i))
    # the accelerator layout (selects, the batched embedding; no loop over environments)
    # plays the same episodes, bit for bit on the generator's integer-valued scenarios
    env = SaginEnv.from_scenarios(scen.sub, scen.test, node_order="nrm", strategy="batched")
    params = env.default_params
    state, (info, reward, _, _) = jax.jit(jax.vmap(episode))(jnp.arange(4))
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
        (state.sim.res_bw, state.sim.totals, info, reward),
        (together[0].sim.res_bw, together[0].sim.totals, together[1][0], together[1][1]))


@functools.lru_cache(maxsize=None)
def small_pool_env():
    scen = make_scenarios(SMALL, [0, 1, 2, 3])
    return SaginEnv.from_scenarios(scen.sub, scen.train), scen


def random_masked(key, obs):
    """A uniformly random feasible host (an arbitrary host when the mask is empty)."""
    return jax.random.categorical(key, jnp.where(obs.action_mask, 0.0, -jnp.inf)).astype(
        jnp.int32)


def test_vmapped_step_over_1024_envs_traces_once_and_masks_are_never_empty():
    env, _ = small_pool_env()
    params = env.default_params
    n_env, n_steps = 1024, 12
    one = chex.assert_max_traces(lambda k, s, a, p: env.step(k, s, a, p), n=1)
    step = jax.jit(jax.vmap(one, in_axes=(0, 0, 0, None)))
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(
        jax.random.split(jax.random.key(0), n_env), params)
    keys = jax.random.split(jax.random.key(1), n_steps)
    bench_agent, argmax_agent = jax.jit(jax.vmap(nrm_action)), jax.jit(jax.vmap(
        lambda o: nrm_choice(None, o, None)))
    random_agent = jax.jit(jax.vmap(random_masked))
    ended = 0
    for t in range(n_steps):
        # every environment, fresh or auto-reset, is asked only when it has a choice
        assert bool(np.asarray(obs.action_mask.any(axis=-1)).all()), t
        akeys = jax.random.split(keys[t], n_env)
        # the bench's NRMVNE agent (a max and a min) is argmax's answer on every observation
        np.testing.assert_array_equal(bench_agent(obs), argmax_agent(obs))
        action = random_agent(akeys, obs)
        obs, state, reward, term, trunc, info = step(akeys, state, action, params)
        ended += int(np.asarray(info["finished"]).sum())
        assert not bool(np.asarray(trunc).any())
    assert ended > n_env  # requests were committed along the way


def test_bench_agent_takes_the_smallest_id_among_equal_best_scores():
    from sagin_jax.env.types import Observation
    nodes = jnp.zeros((5, 11)).at[:, 8].set(jnp.array([1.0, 3.0, 3.0, 9.0, 3.0]))
    nodes = nodes.at[:, 10].set(1.0)
    obs = Observation(nodes=nodes, demand=jnp.zeros(3), domain=jnp.int32(0),
                      remaining=jnp.zeros(3),
                      action_mask=jnp.array([True, True, True, False, True]))
    assert int(nrm_action(obs)) == 1  # node 3 scores more but is masked; 1, 2, 4 tie


def test_gymnax_wrappers_run_and_legacy_api_gives_five_values():
    from gymnax.wrappers import LegacyStepAPIWrapper, LogWrapper
    env, _ = small_pool_env()
    params = env.default_params
    wrapped = LegacyStepAPIWrapper(LogWrapper(env))
    obs, state = wrapped.reset(jax.random.key(0), params)
    for t in range(3):
        a = random_masked(jax.random.key(t), obs)
        out = wrapped.step(jax.random.key(10 + t), state, a, params)
        assert len(out) == 5  # PureJaxRL's (obs, state, reward, done, info)
        obs, state, reward, done, info = out
        assert done.dtype == jnp.bool_ and reward.shape == ()
        assert "returned_episode_returns" in info and "terminated" in info


def test_spaces_agree_with_step_outputs():
    env, _ = small_pool_env()
    params = env.default_params
    space = env.observation_space(params)
    obs, state = env.reset(jax.random.key(0), params)
    for t in range(4):
        assert bool(space.contains(obs))
        for name, sub_space in space.spaces.items():
            leaf = getattr(obs, name)
            assert leaf.shape == tuple(sub_space.shape), name
            assert leaf.dtype == jnp.dtype(sub_space.dtype), name
        a = random_masked(jax.random.key(t), obs)
        assert bool(env.action_space(params).contains(a))
        obs, state, *_ = env.step(jax.random.key(t), state, a, params)
    assert env.action_space(params).n == SMALL.n_nodes == obs.action_mask.shape[0]
    assert bool(env.action_space(params).contains(
        env.action_space(params).sample(jax.random.key(0))))


def test_rewards_telescope_to_total_revenue_and_final_objective():
    env, scen = small_pool_env()
    steps = episode_steps(scen.train)
    outs = {}
    for reward in ("revenue", "objective"):
        params = env.make_params(reward)

        @jax.jit
        def episode(params):
            obs, state = env.reset_to(2, params)
            return play(env, params, lambda k, o, s: random_masked(k, o), jax.random.key(5),
                        obs, state, steps)

        outs[reward] = episode(params)
    state, (_, r_rev, term, _) = outs["revenue"]
    assert bool(np.asarray(term).any())
    assert float(np.asarray(r_rev, np.float64).sum()) == pytest.approx(
        float(state.sim.totals.revenue), rel=1e-6)
    state, (_, r_obj, _, _) = outs["objective"]
    t = state.sim.totals
    from sagin_jax.simulation.metrics import running_metrics
    m = running_metrics(state.sim, state.clock)
    final_o = m.ar / TrainConfig.ar_scale + m.rc + m.acr
    assert float(t.arrived) == scen.train.n_requests
    assert float(np.asarray(r_obj, np.float64).sum()) == pytest.approx(float(final_o), rel=1e-4)


def test_infeasible_action_rejects_the_request():
    env, _ = small_pool_env()
    params = env.default_params
    obs, state = env.reset_to(0, params)
    for bad in (int(np.flatnonzero(~np.asarray(obs.action_mask))[0]), -1, SMALL.n_nodes + 5):
        _, after, _, _, _, info = env.step(jax.random.key(0), state, jnp.int32(bad), params)
        assert bool(info["finished"]) and not bool(info["accepted"]), bad
        assert int(after.sim.totals.arrived) == int(state.sim.totals.arrived) + 1
        assert int(after.sim.totals.accepted) == int(state.sim.totals.accepted)
        assert int(after.request) == int(state.request) + 1


def test_reset_draws_the_generators_scenario_from_the_key():
    env = SaginEnv(SMALL, split="test")
    _, state = env.reset(seed_key(7), env.default_params)
    scen = make_scenarios(SMALL, [7])
    np.testing.assert_array_equal(np.asarray(state.requests.cpu), np.asarray(scen.test.cpu[0]))
    np.testing.assert_array_equal(np.asarray(state.sub.hops), np.asarray(scen.sub.hops[0]))


def test_bad_action_and_bad_params_give_clear_errors():
    env, _ = small_pool_env()
    params = env.default_params
    obs, state = env.reset_to(0, params)
    with pytest.raises(TypeError, match="action must be an integer scalar"):
        env.step(jax.random.key(0), state, jnp.float32(1.0), params)
    with pytest.raises(TypeError, match="action must be an integer scalar"):
        env.step(jax.random.key(0), state, jnp.zeros((2,), jnp.int32), params)
    with pytest.raises(ValueError, match="params.ar_scale must be > 0"):
        env.make_params(ar_scale=0.0)
    with pytest.raises(ValueError, match="params.w_rc must be finite"):
        env.make_params(w_rc=jnp.float32(jnp.nan))
    other = small(n_train=40, n_test=40, n_ground=12)
    scen = make_scenarios(other, [0])
    bad_pool = SaginEnv.from_scenarios(scen.sub, scen.train).default_params.pool
    with pytest.raises(ValueError, match="params.pool.sub"):
        env.reset(jax.random.key(0), params.replace(pool=bad_pool))
    with pytest.raises(ValueError, match="node_order must be one of"):
        SaginEnv(SMALL, node_order="random")


def test_observation_features_are_the_agents_own_feature_matrices():
    """DDRL-NRA's FM (eq. 18) of each node's domain and RLVNE's features, from the policies'
    own feature functions, appear in ``Observation.nodes`` (columns ``NODE_FEATURES``)."""
    from sagin_jax.policies.ddrl import domain_feature_matrices
    from sagin_jax.policies.rlvne import rlvne_features
    env, _ = small_pool_env()
    params = env.default_params
    obs, state = env.reset_to(1, params)
    step = jax.jit(env.step)
    placed_seen = set()
    for t in range(12):  # through several requests: 0, 1, 2... nodes of a request placed
        a = random_masked(jax.random.key(t), obs)
        obs, state, *_ = step(jax.random.key(t), state, a, params)
        ctx = node_context(state, params.pool)
        placed_seen.add(int((np.asarray(ctx.hosts) >= 0).sum()))
        fms, valid = domain_feature_matrices(ctx)
        nodes = np.asarray(obs.nodes)
        members = np.asarray(state.sub.domain_nodes)
        for d in range(members.shape[0]):
            ids = members[d][np.asarray(valid[d])]
            np.testing.assert_allclose(nodes[ids, :4],
                                       np.asarray(fms[d])[np.asarray(valid[d])], rtol=1e-6)
        np.testing.assert_allclose(nodes[:, 4:8], np.asarray(rlvne_features(ctx)), rtol=1e-6)
        np.testing.assert_array_equal(nodes[:, 8], np.asarray(state.work.res_cpu))
    assert {0, 1, 2} <= placed_seen  # the running hop sum met a fresh request and two hosts
