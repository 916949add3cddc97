"""``SaginEnv``: online SAGIN allocation as a gymnax environment, one substrate node per step.

An episode is one scenario's request set in arrival order. A step maps the node being placed
(the observation's ``domain``/``demand``; ``node_order`` picks which node comes next) onto the
substrate node ``action``. After the request's last node its links are embedded and it is
committed or rejected atomically, and the departures up to the next arrival are released, with
the simulator's own functions (``dynamics``), so the same choices give ``simulate``'s numbers
bit for bit.

* An infeasible action (outside ``action_mask``, or outside [0, N)) rejects the whole request,
  as a policy's infeasible host does in ``simulate``.
* A request node with no feasible host rejects its request without asking the agent (the
  simulator's node stage stops there too), so ``action_mask`` is never empty while the episode
  runs.
* Reward: ``w_revenue · revenue / revenue_scale + ΔO`` (``EnvParams``); ``reward="revenue"``
  and ``reward="objective"`` set the two usual choices.
* ``terminated`` once every request is handled; ``step`` auto-resets and reports ``truncated``
  (``max_steps_in_episode``) as gymnax 1.0 does.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment, spaces

from sagin_jax import features
from sagin_jax.config import ScenarioConfig
from sagin_jax.env import dynamics
from sagin_jax.env.batching import cond_rows
from sagin_jax.env.types import NODE_FEATURES, EnvParams, EnvState, Observation, ScenarioPool
from sagin_jax.scenario.draw_requests import draw_requests
from sagin_jax.scenario.draw_substrate import draw_substrate
from sagin_jax.scenario.plan import make_plan, plan_params
from sagin_jax.scenario.types import Requests, Substrate, narrow_substrate
from sagin_jax.simulation.batch import table_size
from sagin_jax.simulation.online import request_step_strategy, start_placement
from sagin_jax.simulation.state import init_state
from sagin_jax.training.config import TrainConfig

REWARDS = ("objective", "revenue")
_SPLITS = {"train": 1, "test": 2}


def _default_table(cfg: ScenarioConfig) -> int:
    """Active-table rows for drawn scenarios: three times the mean number of requests alive at
    once (arrival rate × mean lifetime), at least 64, rounded up to 16 (a full table is reported
    as ``info["overflow"]``, never dropped silently)."""
    rows = max(64, int(np.ceil(3 * cfg.arrival_rate * cfg.mean_lifetime)))
    return -(-rows // 16) * 16


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


class SaginEnv(environment.Environment):
    """Online SAGIN allocation (see the module docstring).

    ``SaginEnv(cfg)`` draws a scenario of ``cfg`` with the JAX generator at every reset (its
    ``split`` request set); ``SaginEnv.from_scenarios(sub, requests)`` plays fixed scenarios
    (one, or S stacked on a leading axis, one picked per reset). ``node_order``: ``"index"`` or
    ``"nrm"`` (``dynamics.NODE_ORDERS``). ``strategy``: the simulator's request-step strategy
    (the CPU's sequential one: rare transitions loop over the environments taking them; batched
    or kernel, the accelerators': selects over every environment).
    """

    def __init__(self, cfg: ScenarioConfig | None = None, *, split: str = "train",
                 node_order: str = "index", max_active: int | None = None,
                 strategy: str | None = None, reward: str = "objective",
                 pool: ScenarioPool | None = None):
        super().__init__()
        if node_order not in dynamics.NODE_ORDERS:
            raise ValueError(f"node_order must be one of {dynamics.NODE_ORDERS}, "
                             f"got {node_order!r}")
        if split not in _SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        if cfg is None and pool is None:
            raise ValueError("SaginEnv needs a scenario config or fixed scenarios")
        self.cfg, self.split, self.node_order, self.reward = cfg, split, node_order, reward
        # the kernel strategy (the GPU default) has no env form: like simulate's fallback, the
        # env then takes the batched layout (a loop over environments would be a sequence of
        # kernel launches on an accelerator)
        self.batched = request_step_strategy(strategy) in ("batched", "kernel")
        self._pool = pool
        if pool is not None:
            sub, reqs = pool.sub, pool.requests
            self.n_nodes, self.n_domains = sub.cpu.shape[1], sub.domain_nodes.shape[1]
            self.n_requests, self.max_nodes = reqs.cpu.shape[1], reqs.cpu.shape[2]
            self.max_active = max_active or table_size(reqs)
            self._sub_shapes = jax.tree_util.tree_map(lambda x: x.shape[1:], sub)
        else:
            cfg.validate()
            self._plan = make_plan(cfg)
            self.n_nodes, self.n_domains = cfg.n_nodes, cfg.n_domains
            self.n_requests = cfg.n_train if split == "train" else cfg.n_test
            self.max_nodes = cfg.max_req_nodes
            self.max_active = max_active or _default_table(cfg)

    @classmethod
    def from_scenarios(cls, sub: Substrate, requests: Requests, **kwargs) -> "SaginEnv":
        """An environment over fixed scenarios: ``sub``/``requests`` of one scenario, or S
        stacked on a leading axis (``make_scenarios``); ``reset`` picks one uniformly."""
        if sub.cpu.ndim == 1:
            sub, requests = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None],
                                                   (sub, requests))
        if requests.cpu.ndim != 3 or requests.cpu.shape[0] != sub.cpu.shape[0]:
            raise ValueError("requests must be one request set per substrate "
                             f"(got {requests.cpu.shape[:-1]} for {sub.cpu.shape[0]} "
                             "substrates)")
        pool = ScenarioPool(sub=jax.tree_util.tree_map(jnp.asarray, narrow_substrate(sub)),
                            requests=jax.tree_util.tree_map(jnp.asarray, requests))
        return cls(pool=pool, **kwargs)

    # --- parameters -------------------------------------------------------------------------

    def make_params(self, reward: str | None = None, ar_scale: float = TrainConfig.ar_scale,
                    **changes) -> EnvParams:
        """``EnvParams`` for ``reward`` ("objective": ΔO with unit weights and AR divided by
        ``ar_scale``; "revenue": the eq. 7 revenue of each accepted request), then
        ``changes``."""
        reward = reward or self.reward
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")
        objective = 1.0 if reward == "objective" else 0.0
        f = jnp.float32
        params = EnvParams(
            generator=(jax.tree_util.tree_map(jnp.asarray, plan_params(self.cfg))
                       if self._pool is None else {}),
            pool=self._pool, w_revenue=f(1.0 - objective), revenue_scale=f(1.0),
            w_ar=f(objective), w_rc=f(objective), w_acr=f(objective), ar_scale=f(ar_scale),
            max_steps_in_episode=self.n_requests * self.max_nodes + 1)
        params = params.replace(**changes)
        self.check_params(params)
        if params.pool is not None and params.starts is None:
            # gymnax's step computes a reset every step and keeps it where an episode ended:
            # with every start computed once, that reset is a gather
            starts = jax.jit(jax.vmap(self.reset_to, in_axes=(0, None)))(
                jnp.arange(params.pool.size), params)
            params = params.replace(starts=starts)
        return params

    @property
    def default_params(self) -> EnvParams:
        return self.make_params()

    def check_params(self, params: EnvParams) -> None:
        """Raise ValueError naming the field when ``params`` does not fit this environment
        (shapes always; values where they are concrete, i.e. not traced)."""
        if not isinstance(params, EnvParams):
            raise ValueError(f"params must be sagin_jax.env.EnvParams, got "
                             f"{type(params).__name__}")
        if (params.pool is None) != (self._pool is None):
            raise ValueError("params.pool: this environment was built "
                             + ("with fixed scenarios" if self._pool is not None
                                else "to draw scenarios") + ", params say otherwise")
        if params.pool is not None:
            got = jax.tree_util.tree_map(lambda x: x.shape[1:], params.pool.sub)
            if got != self._sub_shapes:
                raise ValueError("params.pool.sub: substrate shapes differ from the "
                                 "environment's")
            want = (self.n_requests, self.max_nodes)
            if params.pool.requests.cpu.shape[1:] != want:
                raise ValueError(f"params.pool.requests: shape {params.pool.requests.cpu.shape}"
                                 f" does not end in (R, M) = {want}")
        for name in ("w_revenue", "w_ar", "w_rc", "w_acr", "revenue_scale", "ar_scale"):
            v = getattr(params, name)
            if jnp.shape(v) != ():
                raise ValueError(f"params.{name} must be a scalar, got shape {jnp.shape(v)}")
            if _is_concrete(v) and not np.isfinite(float(v)):
                raise ValueError(f"params.{name} must be finite, got {float(v)}")
        for name in ("revenue_scale", "ar_scale"):
            v = getattr(params, name)
            if _is_concrete(v) and not float(v) > 0:
                raise ValueError(f"params.{name} must be > 0, got {float(v)}")
        steps = params.max_steps_in_episode
        if _is_concrete(steps) and not int(steps) > 0:
            raise ValueError(f"params.max_steps_in_episode must be > 0, got {steps}")

    # --- gymnax interface -------------------------------------------------------------------

    def _start(self, sub: Substrate, requests, index: jax.Array, params: EnvParams):
        m = self.max_nodes
        sim = init_state(sub, self.max_active, m)
        state = EnvState(
            sub=sub, requests=requests, scenario=index, sim=sim, request=jnp.int32(-1),
            order=jnp.arange(m, dtype=jnp.int32), position=jnp.int32(0),
            work=start_placement(sim, m), degree=features.degree(sub),
            inc_bw=jnp.zeros((self.n_nodes,), jnp.float32),
            hop_sum=jnp.zeros((self.n_nodes,), jnp.float32),
            clock=jnp.float32(0.0), objective=jnp.float32(0.0), time=jnp.int32(0))
        pool = params.pool
        state = dynamics.advance(state, pool, jnp.bool_(True), self.node_order, self.batched)
        state = dynamics.skip_unplaceable(state, pool, self.node_order, self.batched)
        state = state.replace(objective=dynamics.objective(state.sim, state.clock, params))
        return dynamics.observe(state, pool), state

    def reset_env(self, key: jax.Array, params: EnvParams):
        self.check_params(params)
        if params.pool is not None:
            index = jax.random.randint(key, (), 0, params.pool.size, dtype=jnp.int32)
            if params.starts is not None:  # reset_to(index), computed by make_params
                return jax.tree_util.tree_map(lambda x: x[index], params.starts)
            return self.reset_to(index, params)
        prm = params.generator
        sub = draw_substrate(jax.random.fold_in(key, 0), self._plan, prm)[0]
        reqs = draw_requests(jax.random.fold_in(key, _SPLITS[self.split]), self._plan, prm,
                         self.n_requests)
        return self._start(sub, reqs, jnp.int32(0), params)

    @partial(jax.jit, static_argnames=("self",))
    def reset_to(self, index, params: EnvParams):
        """Reset to fixed scenario ``index`` of the pool (no randomness): -> (obs, state)."""
        self.check_params(params)
        if params.pool is None:
            raise ValueError("reset_to needs an environment over fixed scenarios")
        index = jnp.asarray(index, jnp.int32)
        sub = jax.tree_util.tree_map(lambda x: x[index], params.pool.sub)
        return self._start(sub, None, index, params)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key: jax.Array, state: EnvState, action, params: EnvParams | None = None):
        """gymnax 1.0's ``step``: ``step_env``, then an auto-reset where the episode is
        terminated or truncated; -> (obs, state, reward, terminated, truncated, info with
        ``terminated``, ``truncated`` and ``final_observation``).

        The same numbers as gymnax's, but the reset runs only where an episode ended
        (``batching.cond_rows``): gymnax computes a reset for every environment and selects
        between whole states, which under ``vmap`` copies every environment's state at every
        step (about 40% of a 1,024-environment step)."""
        if params is None:
            params = self.default_params
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, info = self.step_env(key_step, state, action,
                                                                   params)
        truncated = self.is_truncated(state_st, params)
        done = jnp.logical_or(terminated, truncated)
        reset = lambda args, _: self.reset_env(*args)  # noqa: E731
        if self.batched:  # accelerators: no loop over environments
            obs_re, state_re = self.reset_env(key_reset, params)
            obs, state = jax.tree_util.tree_map(lambda r, s: jax.lax.select(done, r, s),
                                                (obs_re, state_re), (obs_st, state_st))
        else:
            obs, state = cond_rows(reset, done, (key_reset, params), (obs_st, state_st))
        info = {**info, "terminated": terminated, "truncated": truncated,
                "final_observation": obs_st}
        return obs, state, reward, terminated, truncated, info

    def step_env(self, key: jax.Array, state: EnvState, action, params: EnvParams):
        self.check_params(params)
        action = jnp.asarray(action)
        if action.shape != () or not jnp.issubdtype(action.dtype, jnp.integer):
            raise TypeError(f"action must be an integer scalar (a substrate node id), got "
                            f"{action.dtype} of shape {action.shape}")
        pool = params.pool
        request = state.request
        state, accepted, value, overflow, finished, hosts = dynamics.place(
            state, pool, action.astype(jnp.int32), self.node_order, self.batched)
        state = dynamics.skip_unplaceable(state, pool, self.node_order, self.batched)
        o = dynamics.objective(state.sim, state.clock, params)
        reward = params.w_revenue * value.revenue / params.revenue_scale + (o - state.objective)
        state = state.replace(objective=o, time=state.time + 1)
        terminated = self.is_terminated(state, params)
        info = {"finished": finished, "request": request, "accepted": accepted, "hosts": hosts,
                "revenue": value.revenue, "overflow": overflow}
        return (jax.lax.stop_gradient(dynamics.observe(state, pool)), state, reward,
                terminated, info)

    def is_terminated(self, state: EnvState, params: EnvParams) -> jax.Array:
        return state.request >= self.n_requests

    @property
    def name(self) -> str:
        return "SAGIN-allocation"

    @property
    def num_actions(self) -> int:
        return self.n_nodes

    def action_space(self, params: EnvParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self.n_nodes)

    def observation_space(self, params: EnvParams | None = None) -> spaces.Dict:
        n = self.n_nodes
        return spaces.Dict({
            "nodes": spaces.Box(0.0, jnp.inf, (n, len(NODE_FEATURES)), jnp.float32),
            "demand": spaces.Box(0.0, jnp.inf, (3,), jnp.float32),
            "domain": spaces.Discrete(self.n_domains),
            "remaining": spaces.Box(0.0, jnp.inf, (3,), jnp.float32),
            "action_mask": spaces.Box(0, 1, (n,), jnp.bool_),
        })


__all__ = ["SaginEnv", "EnvParams", "EnvState", "Observation", "ScenarioPool"]
