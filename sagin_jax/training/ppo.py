"""PPO on ``SaginEnv`` in the PureJaxRL style: ``make_train(config, env, params)`` returns a pure
``train(key)``, so ``jit(vmap(train))`` runs several seeds in one compiled call.

The policy (``NodePolicyNet``) scores every substrate node from its own features
(``env.types.NODE_FEATURES``), the request node's demands and a pooled summary of all nodes,
with one MLP whose parameters are shared across nodes (so it works for any substrate size, like
DDRL-NRA's 1x1 convolution, but two hidden layers deep). Infeasible nodes get logit -inf
(masked logits); the value head reads the pooled node embeddings. Advantages by GAE, clipped
surrogate objective, value loss and entropy bonus, Adam with global-norm clipping.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from sagin_jax.env.rollout import play
from sagin_jax.env.types import EnvParams, Observation
from sagin_jax.simulation.metrics import running_metrics


@dataclass(frozen=True)
class PPOConfig:
    """PPO's settings (PureJaxRL's names). One update collects ``num_steps`` steps from each of
    ``num_envs`` environments (``num_envs · num_steps`` node placements)."""

    num_envs: int = 32
    num_steps: int = 64
    num_updates: int = 60
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 3e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64

    def validate(self) -> None:
        for name in ("num_envs", "num_steps", "num_updates", "update_epochs", "num_minibatches",
                     "hidden"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ppo.{name} must be a positive integer, got {v!r}")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError("ppo.num_minibatches must divide num_envs * num_steps "
                             f"({self.num_envs * self.num_steps})")
        for name in ("lr", "gamma", "gae_lambda", "clip_eps", "ent_coef", "vf_coef",
                     "max_grad_norm"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) \
                    or v < 0:
                raise ValueError(f"ppo.{name} must be a finite number >= 0, got {v!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def node_inputs(obs: Observation) -> jax.Array:
    """f32[N, F + 7]: each node's features (raw residuals log-scaled), the request node's
    demands and what remains of the request (scaled to about unit size), and the mask."""
    nodes = obs.nodes
    feats = jnp.concatenate([nodes[:, :8], jnp.log1p(nodes[:, 8:]) / 6.0], axis=-1)
    req = jnp.concatenate([obs.demand / 50.0, obs.remaining / jnp.array([10.0, 250.0, 250.0])])
    n = nodes.shape[0]
    return jnp.concatenate([feats, jnp.broadcast_to(req, (n, req.shape[0])),
                            obs.action_mask[:, None].astype(jnp.float32)], axis=-1)


class NodePolicyNet(nn.Module):
    """Per-node MLP (shared parameters) → logits over nodes, and a value from the mean of the
    node embeddings."""

    hidden: int = 64

    @nn.compact
    def __call__(self, obs: Observation):
        x = node_inputs(obs)  # [N, F']
        h = nn.relu(nn.Dense(self.hidden)(x))
        pooled = jnp.mean(h, axis=0)
        h = jnp.concatenate([h, jnp.broadcast_to(pooled, h.shape)], axis=-1)
        h = nn.relu(nn.Dense(self.hidden)(h))
        logits = nn.Dense(1, kernel_init=nn.initializers.orthogonal(0.01))(h)[:, 0]
        v = nn.relu(nn.Dense(self.hidden)(jnp.mean(h, axis=0)))
        value = nn.Dense(1, kernel_init=nn.initializers.orthogonal(1.0))(v)[0]
        return jnp.where(obs.action_mask, logits, -jnp.inf), value


def masked_log_probs(logits: jax.Array) -> jax.Array:
    """log softmax with -inf entries kept at -inf (a row with no finite entry gives all -inf
    replaced by 0 so nothing is NaN)."""
    top = jnp.max(jnp.where(jnp.isfinite(logits), logits, -1e30), axis=-1, keepdims=True)
    z = jnp.where(jnp.isfinite(logits), jnp.exp(logits - top), 0.0)
    lse = jnp.log(jnp.maximum(z.sum(axis=-1, keepdims=True), 1e-30)) + top
    return jnp.where(jnp.isfinite(logits), logits - lse, -jnp.inf)


def entropy(logp: jax.Array) -> jax.Array:
    p = jnp.exp(logp)
    return -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)


class Transition(NamedTuple):
    done: jax.Array
    action: jax.Array
    value: jax.Array
    reward: jax.Array
    logp: jax.Array
    obs: Any
    finished: jax.Array
    accepted: jax.Array


def gae(traj: Transition, last_value: jax.Array, gamma: float, lam: float):
    """Generalised advantage estimates and returns over a [T, envs] trajectory."""
    def back(carry, t):
        adv, next_value = carry
        delta = t.reward + gamma * next_value * (1 - t.done) - t.value
        adv = delta + gamma * lam * (1 - t.done) * adv
        return (adv, t.value), adv

    _, advantages = jax.lax.scan(back, (jnp.zeros_like(last_value), last_value), traj,
                                 reverse=True)
    return advantages, advantages + traj.value


def make_train(config: PPOConfig, env, env_params: EnvParams, on_update=None):
    """-> (network, ``train(key) -> (TrainState, metrics)``), pure. ``metrics`` per update:
    ``reward`` (mean per step), ``acceptance`` (accepted / finished requests in the rollout).
    ``on_update(metrics)``, if given, is called from the compiled loop after every update
    (``jax.debug.callback``; a progress bar)."""
    config.validate()
    net = NodePolicyNet(config.hidden)
    batch = config.num_envs * config.num_steps
    minibatch = batch // config.num_minibatches

    def schedule(count):
        frac = 1.0 - (count // (config.num_minibatches * config.update_epochs)) / config.num_updates
        return config.lr * frac

    def train(key):
        key, k_net, k_env = jax.random.split(key, 3)
        obs0, _ = env.reset(k_net, env_params)
        params = net.init(k_net, obs0)
        tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                         optax.adam(schedule if config.anneal_lr else config.lr, eps=1e-5))
        state = TrainState.create(apply_fn=net.apply, params=params, tx=tx)
        obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_env, config.num_envs), env_params)
        apply = jax.vmap(net.apply, in_axes=(None, 0))

        def update(runner, _):
            state, env_state, obs, key = runner

            def env_step(carry, _):
                state, env_state, obs, key = carry
                key, k_act, k_step = jax.random.split(key, 3)
                logits, value = apply(state.params, obs)
                logp_all = masked_log_probs(logits)
                action = jax.random.categorical(k_act, logp_all).astype(jnp.int32)
                logp = jnp.take_along_axis(logp_all, action[:, None], axis=-1)[:, 0]
                obs2, env_state, reward, term, trunc, info = jax.vmap(
                    env.step, in_axes=(0, 0, 0, None))(
                    jax.random.split(k_step, config.num_envs), env_state, action, env_params)
                t = Transition(done=(term | trunc).astype(jnp.float32), action=action,
                               value=value, reward=reward, logp=logp, obs=obs,
                               finished=info["finished"], accepted=info["accepted"])
                return (state, env_state, obs2, key), t

            (state, env_state, obs, key), traj = jax.lax.scan(
                env_step, (state, env_state, obs, key), None, config.num_steps)
            _, last_value = apply(state.params, obs)
            adv, targets = gae(traj, last_value, config.gamma, config.gae_lambda)

            def epoch(carry, _):
                state, key = carry
                key, k_perm = jax.random.split(key)
                flat = jax.tree_util.tree_map(lambda x: x.reshape((batch,) + x.shape[2:]),
                                              (traj, adv, targets))
                perm = jax.random.permutation(k_perm, batch)
                mbs = jax.tree_util.tree_map(
                    lambda x: x[perm].reshape((config.num_minibatches, minibatch) + x.shape[1:]),
                    flat)

                def minibatch_step(state, mb):
                    t, a, ret = mb

                    def loss_fn(params):
                        logits, value = apply(params, t.obs)
                        logp_all = masked_log_probs(logits)
                        logp = jnp.take_along_axis(logp_all, t.action[:, None], axis=-1)[:, 0]
                        v_clip = t.value + jnp.clip(value - t.value, -config.clip_eps,
                                                    config.clip_eps)
                        v_loss = 0.5 * jnp.maximum((value - ret) ** 2, (v_clip - ret) ** 2).mean()
                        ratio = jnp.exp(logp - t.logp)
                        an = (a - a.mean()) / (a.std() + 1e-8)
                        pg = -jnp.minimum(ratio * an, jnp.clip(ratio, 1 - config.clip_eps,
                                                               1 + config.clip_eps) * an).mean()
                        ent = entropy(logp_all).mean()
                        return pg + config.vf_coef * v_loss - config.ent_coef * ent

                    grads = jax.grad(loss_fn)(state.params)
                    return state.apply_gradients(grads=grads), None

                state, _ = jax.lax.scan(minibatch_step, state, mbs)
                return (state, key), None

            (state, key), _ = jax.lax.scan(epoch, (state, key), None, config.update_epochs)
            fin = traj.finished.sum()
            metrics = {"reward": traj.reward.mean(),
                       "acceptance": traj.accepted.sum() / jnp.maximum(fin, 1)}
            if on_update is not None:
                jax.debug.callback(on_update, metrics)
            return (state, env_state, obs, key), metrics

        runner, metrics = jax.lax.scan(update, (state, env_state, obs, key), None,
                                       config.num_updates)
        return runner[0], metrics

    return net, train


def greedy_action(net: NodePolicyNet, params):
    """The policy's argmax over feasible nodes, as a ``rollout.play`` action rule."""
    def act(key, obs, state):
        logits, _ = net.apply(params, obs)
        return jnp.argmax(logits).astype(jnp.int32)
    return act


def evaluate_greedy(net: NodePolicyNet, params, env, env_params: EnvParams, steps: int):
    """Greedy episodes on every scenario of ``env``'s pool (vmapped): -> final Metrics per
    scenario (AR, ACR, R/C at the last request's arrival, as ``simulate``'s last row)."""
    act = greedy_action(net, params)

    def one(index):
        obs, state = env.reset_to(index, env_params)
        final, _ = play(env, env_params, act, jax.random.key(0), obs, state, steps)
        return running_metrics(final.sim, final.clock)

    return jax.vmap(one)(jnp.arange(env_params.pool.size))
