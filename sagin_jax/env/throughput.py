"""Requests per second of ``SaginEnv`` under ``vmap`` against ``simulate`` on the same
scenarios, measured side by side (``sagin-jax bench``'s env row)."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from sagin_jax.config import ScenarioConfig
from sagin_jax.env.sagin import SaginEnv
from sagin_jax.policies.baselines import NRMVNE
from sagin_jax.scenario.generate import make_scenarios
from sagin_jax.simulation.batch import simulate_batch, table_size
from sagin_jax.devices.seed_axis import seed_keys


def nrm_action(obs) -> jax.Array:
    """NRMVNE's choice from an observation: highest (CPU + STO) · Σ BW within the mask, the
    smallest id on ties (``argmax``'s answer, as a max and a min: XLA CPU's argmax, a reduction
    over (value, index) pairs, took ~5% of a 1,024-environment step)."""
    score = jnp.where(obs.action_mask, (obs.nodes[:, 8] + obs.nodes[:, 9]) * obs.nodes[:, 10],
                      -jnp.inf)
    ids = jnp.arange(score.shape[-1], dtype=jnp.int32)
    return jnp.min(jnp.where(score == score.max(), ids, score.shape[-1]))


def _timed(fn, *args, repeats: int = 2):
    """(compile s, best run s of ``repeats`` after a warm-up run, output)."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return compile_s, best, out


def env_vs_simulate(cfg: ScenarioConfig, n_envs: int, steps: int) -> dict:
    """``n_envs`` test scenarios of ``cfg``: ``steps`` vmapped ``SaginEnv.step`` calls with
    NRMVNE's choice (NRM node order; auto-reset as in training) against ``simulate(NRMVNE)``
    over the same scenarios (the default seed loop). A request counts when it is committed or
    rejected (``totals.arrived``). The steps start from the environments' first observation
    (``reset_to``, timed apart as ``env_reset_s``); each figure is the best of two runs after a
    warm-up.

    ``simulate`` is timed twice: over the requests the environments handled (each scenario's
    first K, K the mean count handled per environment; ``ratio``), and over whole episodes
    (``ratio_episode``). The two mixes differ: early in an episode the substrate is nearly
    empty, so almost every request is mapped and embedded, where later many are rejected at the
    node stage, which costs far less."""
    seeds = list(range(n_envs))
    scen = make_scenarios(cfg, seeds)
    table = table_size(scen.test)
    env = SaginEnv.from_scenarios(scen.sub, scen.test, node_order="nrm", max_active=table)
    params = env.default_params

    def reset(params):
        return jax.vmap(env.reset_to, in_axes=(0, None))(jnp.arange(n_envs), params)

    def play(key, params, obs, state):
        def body(carry, k):
            obs, state, handled = carry
            before = state.sim.totals.arrived
            obs, state, _, term, _, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k, n_envs), state, jax.vmap(nrm_action)(obs), params)
            # an auto-reset zeroes the count: the finished episode's requests are all handled
            done = jnp.where(term, env.n_requests - before, state.sim.totals.arrived - before)
            return (obs, state, handled + done.sum()), None

        (_, _, handled), _ = jax.lax.scan(body, (obs, state, jnp.int32(0)),
                                          jax.random.split(key, steps))
        return handled

    _, reset_s, (obs, state) = _timed(reset, params, repeats=1)
    env_c, env_s, handled = _timed(play, jax.random.key(0), params, obs, state)
    env_rate = int(handled) / env_s

    def sim(keys, subs, reqs):
        return simulate_batch(NRMVNE, None, keys, subs, reqs, max_active=table)[1].accepted

    first = max(1, min(env.n_requests, round(int(handled) / n_envs)))
    window = jax.tree_util.tree_map(lambda x: x[:, :first], scen.test)
    sim_c, sim_s, _ = _timed(sim, seed_keys(seeds), scen.sub, window)
    sim_rate = n_envs * first / sim_s
    _, episode_s, _ = _timed(sim, seed_keys(seeds), scen.sub, scen.test)
    episode_rate = n_envs * scen.test.n_requests / episode_s
    return {"n_envs": n_envs, "steps": steps, "env_reset_s": reset_s, "env_compile_s": env_c,
            "env_run_s": env_s, "env_steps_per_s": n_envs * steps / env_s,
            "env_requests_per_s": env_rate, "sim_first_requests": first,
            "sim_compile_s": sim_c, "sim_run_s": sim_s, "sim_requests_per_s": sim_rate,
            "ratio": env_rate / sim_rate, "sim_episode_run_s": episode_s,
            "sim_episode_requests_per_s": episode_rate, "ratio_episode": env_rate / episode_rate}
