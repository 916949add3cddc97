"""PPO on SaginEnv: GAE by hand, masked log-probabilities, a small jit(vmap(train)) over seeds,
and the policy's size independence."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("gymnax")

from sagin_jax.env import SaginEnv  # noqa: E402
from sagin_jax.scenario.generate import make_scenarios  # noqa: E402
from sagin_jax.training.ppo import (PPOConfig, Transition, evaluate_greedy, gae,  # noqa: E402
                                    make_train, masked_log_probs)
from tests.conftest import small  # noqa: E402

SMALL = small(n_train=40, n_test=40)


def test_gae_hand_worked():
    # T = 3, one env, gamma = 0.5, lambda = 0.5; an episode ends after step 1
    r, v, d = [1.0, 2.0, 4.0], [0.5, 1.0, 2.0], [0.0, 1.0, 0.0]
    traj = Transition(done=jnp.array(d)[:, None], action=None, value=jnp.array(v)[:, None],
                      reward=jnp.array(r)[:, None], logp=None, obs=None, finished=None,
                      accepted=None)
    adv, ret = gae(traj, jnp.array([8.0]), 0.5, 0.5)
    d2 = 4.0 + 0.5 * 8.0 - 2.0  # 6
    d1 = 2.0 + 0.0 - 1.0  # 1 (done: no bootstrap)
    d0 = 1.0 + 0.5 * 1.0 - 0.5  # 1
    want = [d0 + 0.25 * d1, d1, d2]  # the done after step 1 cuts the sum
    np.testing.assert_allclose(np.asarray(adv)[:, 0], want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ret)[:, 0], np.array(want) + v, rtol=1e-6)


def test_masked_log_probs_put_all_mass_on_the_mask():
    logits = jnp.array([[1.0, -jnp.inf, 3.0, -jnp.inf], [-jnp.inf] * 4])
    lp = masked_log_probs(logits)
    p = np.exp(np.asarray(lp))
    np.testing.assert_allclose(p[0], [np.exp(1) / (np.exp(1) + np.exp(3)), 0,
                                      np.exp(3) / (np.exp(1) + np.exp(3)), 0], rtol=1e-6)
    assert not np.isnan(np.asarray(lp)).any() and p[1].sum() == 0


@functools.lru_cache(maxsize=None)
def pools():
    scen = make_scenarios(SMALL, [0, 1, 2, 3])
    return (SaginEnv.from_scenarios(scen.sub, scen.train, reward="revenue"),
            SaginEnv.from_scenarios(scen.sub, scen.test))


@pytest.mark.slow
def test_small_ppo_trains_over_seeds_and_evaluates_greedily():
    env, test_env = pools()
    params = env.make_params(revenue_scale=1000.0)
    cfg = PPOConfig(num_envs=4, num_steps=8, num_updates=2, update_epochs=1, num_minibatches=2,
                    hidden=16)
    net, train = make_train(cfg, env, params)
    states, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 2))
    acc = np.asarray(metrics["acceptance"])
    assert acc.shape == (2, 2) and ((acc >= 0) & (acc <= 1)).all()
    assert np.isfinite(np.asarray(metrics["reward"])).all()
    w = jax.tree_util.tree_leaves(states.params)
    assert all(np.isfinite(np.asarray(x)).all() for x in w)
    assert any(not np.array_equal(np.asarray(x[0]), np.asarray(x[1])) for x in w)  # per seed
    one = jax.tree_util.tree_map(lambda x: x[0], states.params)
    m = jax.jit(lambda p: evaluate_greedy(net, p, test_env, test_env.default_params,
                                          SMALL.n_test * SMALL.max_req_nodes))(one)
    assert m.acr.shape == (4,) and (np.asarray(m.acr) > 0).all()


def test_policy_parameters_fit_any_substrate_size():
    env, _ = pools()
    big = small(n_train=40, n_test=40, n_ground=30)
    scen = make_scenarios(big, [0])
    big_env = SaginEnv.from_scenarios(scen.sub, scen.train)
    cfg = PPOConfig(hidden=16)
    net, _ = make_train(cfg, env, env.default_params)
    obs, _ = env.reset(jax.random.key(0), env.default_params)
    params = net.init(jax.random.key(0), obs)
    big_obs, _ = big_env.reset(jax.random.key(0), big_env.default_params)
    logits, value = net.apply(params, big_obs)
    assert logits.shape == (big.n_nodes,) and value.shape == ()
    assert bool((np.isneginf(np.asarray(logits)) == ~np.asarray(big_obs.action_mask)).all())


def test_bad_ppo_config_names_the_field():
    with pytest.raises(ValueError, match="ppo.num_minibatches must divide"):
        PPOConfig(num_envs=3, num_steps=5, num_minibatches=2).validate()
    with pytest.raises(ValueError, match="ppo.lr must be"):
        PPOConfig(lr=float("nan")).validate()


def test_ppo_command_bad_flags_exit_2_and_write_nothing(tmp_path, capsys):
    from sagin_jax.cli import main
    out = tmp_path / "ppo"
    assert main(["ppo", "--updates", "0", "--out", str(out)]) == 2
    assert main(["ppo", "--sweep-best", str(tmp_path / "none.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sagin-jax ppo: error: --updates must be a positive integer, got 0",
                   f"sagin-jax ppo: error: --sweep-best: no such file: {tmp_path / 'none.json'}"]
    assert not out.exists()


def test_ppo_command_defaults_are_the_committed_results_settings():
    """``sagin-jax ppo`` with no flags runs the settings behind ``results/ppo``."""
    from sagin_jax.cli import build_parser
    from sagin_jax.experiments.ppo_compare import RESULTS_PPO
    args = build_parser().parse_args(["ppo"])
    assert (args.updates, args.envs, args.steps) == (
        RESULTS_PPO["num_updates"], RESULTS_PPO["num_envs"], RESULTS_PPO["num_steps"])
