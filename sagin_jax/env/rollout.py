"""Play one episode of ``SaginEnv`` with a given action rule, without auto-reset."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from sagin_jax.env.types import EnvParams, EnvState, Observation


def play(env, params: EnvParams, act: Callable[[jax.Array, Observation, EnvState], jax.Array],
         key: jax.Array, obs: Observation, state: EnvState, steps: int):
    """``steps`` calls of ``env.step_env`` with ``act(key, obs, state)``; pure (jit/vmap it).
    Steps after the episode ends change nothing. -> (final state, per step: (info, reward,
    terminated, mask_empty)) where ``mask_empty`` flags a step taken with an empty
    ``action_mask`` before the episode ended (never expected)."""
    def body(carry, k):
        obs, state = carry
        running = ~env.is_terminated(state, params)
        empty = running & ~obs.action_mask.any()
        a_key, s_key = jax.random.split(k)
        obs, state, reward, term, info = env.step_env(s_key, state, act(a_key, obs, state),
                                                      params)
        return (obs, state), (info, jnp.where(running, reward, 0.0), term, empty)

    (_, state), ys = jax.lax.scan(body, (obs, state), jax.random.split(key, steps))
    return state, ys


def episode_steps(requests) -> int:
    """An upper bound on an episode's steps: the real request nodes (of the largest set)."""
    mask = np.asarray(requests.node_mask)
    return int(mask.reshape(-1, *mask.shape[-2:]).sum(axis=(-2, -1)).max())


def request_outcomes(info: dict, n_requests: int, max_nodes: int):
    """Per request (numpy): (accepted bool[R], hosts i32[R, M] of accepted requests, -1
    elsewhere, revenue f32[R]) from ``play``'s per-step ``info`` of one episode."""
    acc = np.zeros(n_requests, bool)
    hosts = np.full((n_requests, max_nodes), -1, np.int32)
    revenue = np.zeros(n_requests, np.float32)
    fin, req = np.asarray(info["finished"]), np.asarray(info["request"])
    ok, h = np.asarray(info["accepted"]), np.asarray(info["hosts"])
    rev = np.asarray(info["revenue"])
    for t in np.flatnonzero(fin & ok):
        acc[req[t]], hosts[req[t]], revenue[req[t]] = True, h[t], rev[t]
    return acc, hosts, revenue
