"""Algorithm 1 as one pure function: ``make_train(cfg)`` returns ``train(key, lr, sub, reqs)``.

Epochs × batches × requests are nested ``lax.scan``s over the same ``handle_request`` the test-time
simulation uses, so ``jit(vmap(vmap(train)))`` runs seeds × learning rates in one compiled call.
REINFORCE: g = α · O · g' (eq. 21), g' = Σ_steps ∇ log π(a) of the request (the stacked
log-prob gradient), summed over the batch and applied with optax SGD (the rate is traced via
``optax.inject_hyperparams``).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from sagin_jax.policies.base import with_gradients
from sagin_jax.policies.ddrl import init_ddrl_params, make_ddrl_policy
from sagin_jax.policies.rlvne import init_rlvne_params, make_rlvne_policy
from sagin_jax.scenario.types import Requests, Substrate
from sagin_jax.simulation.online import run_online, simulate
from sagin_jax.simulation.state import init_state
from sagin_jax.training.config import TrainConfig


def policies_for(cfg: TrainConfig):
    """(training policy, test policy, init_params(key, sub))."""
    if cfg.algo == "ddrl-nra":
        return (make_ddrl_policy(False, cfg.init_scale), make_ddrl_policy(True, cfg.init_scale),
                lambda key, sub: init_ddrl_params(key, sub.n_domains, cfg.init_scale))
    return (make_rlvne_policy(False), make_rlvne_policy(True),
            lambda key, sub: init_rlvne_params(key, cfg.init_scale))


def make_optimizer() -> optax.GradientTransformation:
    return optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)


@struct.dataclass
class TrainCurves:
    """Running metrics at the end of every batch (the x axis of Fig. 4), f32[epochs, batches]."""

    ar: jax.Array
    acr: jax.Array
    rc: jax.Array
    objective: jax.Array  # AR/ar_scale + R/C + ACR


def request_rewards(cfg: TrainConfig, out) -> jax.Array:
    """Reward of each request of a batch (eq. 14 or RLVNE's R/C); failed ones per ``failed_reward``."""
    m = out.metrics
    if cfg.reward_kind == "objective":
        r = m.ar / cfg.ar_scale + m.rc + m.acr
    else:
        v = out.value
        r = jnp.where(v.cost > 0, v.revenue / jnp.where(v.cost > 0, v.cost, 1.0), 0.0)
    failed = 0.0 if cfg.failed_reward is None else cfg.failed_reward
    return jnp.where(out.accepted, r, failed)


def reinforce_gradient(cfg: TrainConfig, rewards: jax.Array, grads) -> Any:
    """Ascent direction Σ_k r_k · ∇ log π(a_k) (eq. 21 without α), or its batch mean."""
    g = jax.tree_util.tree_map(lambda x: jnp.tensordot(rewards, x, axes=1), grads)
    if cfg.batch_reduce == "mean":
        g = jax.tree_util.tree_map(lambda x: x / rewards.shape[0], g)
    return g


def segment_average_matrix(sub: Substrate) -> jax.Array:
    """f32[U, U]: row d averages the agents of domain d's segment (central server, IV-C)."""
    seg = sub.segment[jnp.maximum(sub.domain_nodes[:, 0], 0)]
    same = (seg[:, None] == seg[None, :]).astype(jnp.float32)
    return same / same.sum(axis=1, keepdims=True)


def central_average(params, avg: jax.Array):
    """Replace each agent's parameters by the mean over its segment's agents."""
    return jax.tree_util.tree_map(lambda x: jnp.tensordot(avg, x, axes=1), params)


@struct.dataclass
class TrainCarry:
    params: Any
    opt_state: Any
    updates_done: jax.Array
    epoch_keys: jax.Array  # one key per epoch
    epoch: jax.Array


class Trainer(NamedTuple):
    """Pure functions of one training configuration.

    ``train(key, lr, sub, reqs) -> (params, TrainCurves)`` runs every epoch in one call;
    ``init`` + repeated ``epoch`` give the same numbers one epoch at a time (for progress bars).
    """

    init: Callable
    epoch: Callable
    train: Callable


def make_train(cfg: TrainConfig, n_train: int, max_active: int) -> Trainer:
    """Build the trainer for fixed shapes (``n_train`` requests, active table ``max_active``)."""
    cfg.validate(n_train)
    train_policy, _, init_params = policies_for(cfg)
    train_policy = with_gradients(train_policy)
    opt = make_optimizer()
    n_batches = n_train // cfg.batch_size

    def init(key: jax.Array, lr: jax.Array, sub: Substrate) -> TrainCarry:
        k_init, k_run = jax.random.split(key)
        params = init_params(k_init, sub)
        opt_state = opt.init(params)
        opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        return TrainCarry(params=params, opt_state=opt_state, updates_done=jnp.int32(0),
                          epoch_keys=jax.random.split(k_run, cfg.epochs), epoch=jnp.int32(0))

    def epoch(carry: TrainCarry, sub: Substrate, reqs: Requests):
        """One pass over the training requests from an empty network; -> (carry, curve)."""
        batched = jax.tree_util.tree_map(
            lambda x: x.reshape((n_batches, cfg.batch_size) + x.shape[1:]), reqs)
        avg = segment_average_matrix(sub) if cfg.algo == "ddrl-nra" else None

        def batch_step(c, xs):
            params, opt_state, state, updates_done = c
            batch, k = xs
            state, out = run_online(train_policy, params, k, sub, batch, state)
            rewards = request_rewards(cfg, out)
            ascent = reinforce_gradient(cfg, rewards, out.extra["grad"])
            descent = jax.tree_util.tree_map(jnp.negative, ascent)
            updates, opt_state = opt.update(descent, opt_state, params)
            params = optax.apply_updates(params, updates)
            updates_done = updates_done + 1
            if cfg.central_server_every > 0 and avg is not None:
                sync = (updates_done % cfg.central_server_every) == 0
                params = jax.tree_util.tree_map(lambda a, b: jnp.where(sync, a, b),
                                                central_average(params, avg), params)
            m = jax.tree_util.tree_map(lambda x: x[-1], out.metrics)
            curve = (m.ar, m.acr, m.rc, m.ar / cfg.ar_scale + m.rc + m.acr)
            return (params, opt_state, state, updates_done), curve

        state = init_state(sub, max_active, reqs.max_nodes)
        keys = jax.random.split(carry.epoch_keys[carry.epoch], n_batches)
        (params, opt_state, _, updates_done), curve = jax.lax.scan(
            batch_step, (carry.params, carry.opt_state, state, carry.updates_done),
            (batched, keys))
        carry = carry.replace(params=params, opt_state=opt_state, updates_done=updates_done,
                              epoch=carry.epoch + 1)
        return carry, TrainCurves(*curve)

    def train(key: jax.Array, lr: jax.Array, sub: Substrate, reqs: Requests):
        carry = init(key, lr, sub)
        carry, curves = jax.lax.scan(lambda c, _: epoch(c, sub, reqs), carry, None,
                                     length=cfg.epochs)
        return carry.params, curves

    return Trainer(init=init, epoch=epoch, train=train)


def make_evaluate(cfg: TrainConfig, max_active: int, record_paths: bool = False,
                  strategy: str | None = None):
    """``evaluate(params, key, sub, reqs) -> (state, Outcome[R])``: greedy test pass (Algorithm 2);
    ``strategy``: the request-step strategy (``online.request_step_strategy``)."""
    _, test_policy, _ = policies_for(cfg)

    def evaluate(params, key, sub: Substrate, reqs: Requests):
        return simulate(test_policy, params, key, sub, reqs, max_active, record_paths,
                        strategy=strategy)

    return evaluate
