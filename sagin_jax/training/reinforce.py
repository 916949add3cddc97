"""Algorithm 1 as one pure function: ``make_train(cfg)`` returns ``train(key, hyper, sub, reqs)``.

Epochs × batches × requests are nested ``lax.scan``s over the same ``handle_request`` the test-time
simulation uses, so ``jit(vmap(train))`` runs seeds × hyperparameter settings in one compiled call.
REINFORCE: g = α · O · g' (eq. 21), g' = Σ_steps ∇ log π(a) of the request (the stacked
log-prob gradient), summed over the batch and applied with optax SGD (the rate is traced via
``optax.inject_hyperparams``). Every numeric setting is a field of the traced ``Hyper``; the
variance-reduction options (baseline, normalisation, entropy bonus, clipping) default to off and
then leave the paper's update bit for bit unchanged.
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
from sagin_jax.simulation.online import request_step_strategy, run_online, simulate
from sagin_jax.simulation.state import init_state
from sagin_jax.training.config import Hyper, TrainConfig

DEFAULT_AR_SCALE = TrainConfig.ar_scale


def policies_for(cfg: TrainConfig):
    """(training policy, test policy, init_params(key, sub, scale=cfg.init_scale)).

    The initial weights are drawn with std 1 and multiplied by ``scale`` (may be traced): flax's
    ``normal(std)`` initialiser is ``std * normal(key)``, so this is bit for bit the same draw."""
    def scaled(params, scale):
        return jax.tree_util.tree_map(lambda x: x * scale, params)

    if cfg.algo == "ddrl-nra":
        return (make_ddrl_policy(False, cfg.init_scale), make_ddrl_policy(True, cfg.init_scale),
                lambda key, sub, scale=cfg.init_scale: scaled(
                    init_ddrl_params(key, sub.n_domains, 1.0), scale))
    return (make_rlvne_policy(False), make_rlvne_policy(True),
            lambda key, sub, scale=cfg.init_scale: scaled(init_rlvne_params(key, 1.0), scale))


def with_score_terms(policy):
    """``with_gradients(policy)`` whose ``extra`` also holds ``entropy_grad = -logp · ∇logp``
    per placement (summed per request by the simulation): since E[∇ log π] = 0,
    ∇H(π) = -E[log π(a) ∇ log π(a)], so this is an unbiased score-function estimate of the
    gradient of the policy's entropy, built from what every policy returns (no change to the
    policies; the exact entropy would need each policy to expose its distribution)."""
    grad_policy = with_gradients(policy)

    def select(key, params, ctx, aux):
        host, extra = grad_policy.select(key, params, ctx, aux)
        ent = jax.tree_util.tree_map(lambda g: -extra["logp"] * g, extra["grad"])
        return host, {**extra, "entropy_grad": ent}

    return grad_policy._replace(select=select)


def make_optimizer() -> optax.GradientTransformation:
    return optax.inject_hyperparams(optax.sgd)(learning_rate=0.0)


@struct.dataclass
class TrainCurves:
    """Running metrics at the end of every batch (the x axis of Fig. 4), f32[epochs, batches]."""

    ar: jax.Array
    acr: jax.Array
    rc: jax.Array
    objective: jax.Array  # the reward objective O with the run's weights (see ``objective``)


def _weighted(w, x):
    """w · x, but exactly x when w = 1: a plain traced ``w * x + y`` is contracted into a fused
    multiply-add by the CPU backend, which rounds differently from the paper's unweighted sum."""
    return jnp.where(w == 1.0, x, w * x)


def objective(metrics, hyper_or_scale) -> jax.Array:
    """O of eq. 14: AR/ar_scale + R/C + ACR, from running metrics (any shape).

    ``hyper_or_scale``: the AR scale (a number), or a ``Hyper`` whose ``ar_scale`` and weights
    ``w_ar``, ``w_rc``, ``w_acr`` are used (all 1 in the paper; a weight of 1 gives the same bits)."""
    m = metrics
    if isinstance(hyper_or_scale, Hyper):
        h = hyper_or_scale
        weighted = (_weighted(h.w_ar, m.ar / h.ar_scale) + _weighted(h.w_rc, m.rc)
                    + _weighted(h.w_acr, m.acr))
        # At the paper's setting (unit weights, the default scale) use the untraced expression,
        # whose constant divisor XLA compiles differently (1 ulp): the default training then
        # keeps the bits it had before the hyperparameters were traced.
        paper = m.ar / DEFAULT_AR_SCALE + m.rc + m.acr
        is_paper = ((h.w_ar == 1.0) & (h.w_rc == 1.0) & (h.w_acr == 1.0)
                    & (h.ar_scale == DEFAULT_AR_SCALE))
        return jnp.where(is_paper, paper, weighted)
    return m.ar / hyper_or_scale + m.rc + m.acr


def request_rewards(cfg: TrainConfig, out, hyper: Hyper | None = None) -> jax.Array:
    """Reward of each request of a batch (eq. 14 or RLVNE's R/C); failed ones get
    ``failed_reward`` (0 when None; whether they count at all is ``Hyper.failed_weight``)."""
    hyper = Hyper.from_config(cfg) if hyper is None else hyper
    if cfg.reward_kind == "objective":
        r = objective(out.metrics, hyper)
    else:
        v = out.value
        r = jnp.where(v.cost > 0, v.revenue / jnp.where(v.cost > 0, v.cost, 1.0), 0.0)
    return jnp.where(out.accepted, r, hyper.failed_reward)


def advantages(hyper: Hyper, rewards: jax.Array, accepted: jax.Array, baseline: jax.Array
               ) -> jax.Array:
    """Per-request weight of ∇ log π in the update: the reward minus ``baseline_weight`` x the
    running baseline, times ``failed_weight`` for failed requests (0: no gradient, the paper),
    then normalised to zero mean and unit std over the contributing requests when
    ``reward_norm`` = 1. Off settings leave the reward bit for bit."""
    adv = rewards - hyper.baseline_weight * baseline
    adv = jnp.where(accepted, adv, hyper.failed_weight * adv)
    w = jnp.where(accepted, 1.0, (hyper.failed_weight != 0).astype(jnp.float32))
    n = jnp.maximum(w.sum(), 1.0)
    mu = (w * adv).sum() / n
    sd = jnp.sqrt((w * (adv - mu) ** 2).sum() / n)
    normed = w * (adv - mu) / (sd + 1e-8)
    return jnp.where(hyper.reward_norm > 0, normed, adv)


def update_baseline(hyper: Hyper, rewards, accepted, baseline, n_updates):
    """(baseline used for this batch, new running baseline): an exponential moving average with
    decay ``baseline_decay`` of the batch-mean reward of the contributing requests; the first
    batch uses its own mean."""
    w = jnp.where(accepted, 1.0, (hyper.failed_weight != 0).astype(jnp.float32))
    batch_mean = (w * rewards).sum() / jnp.maximum(w.sum(), 1.0)
    used = jnp.where(n_updates == 0, batch_mean, baseline)
    new = jnp.where(n_updates == 0, batch_mean,
                    hyper.baseline_decay * baseline + (1.0 - hyper.baseline_decay) * batch_mean)
    return used, new


def reinforce_gradient(cfg: TrainConfig, rewards: jax.Array, grads, entropy_bonus=None) -> Any:
    """Ascent direction Σ_k r_k · ∇ log π(a_k) (eq. 21 without α) plus an optional entropy
    gradient term (already scaled), or the batch mean of that."""
    g = jax.tree_util.tree_map(lambda x: jnp.tensordot(rewards, x, axes=1), grads)
    if entropy_bonus is not None:
        g = jax.tree_util.tree_map(jnp.add, g, entropy_bonus)
    if cfg.batch_reduce == "mean":
        g = jax.tree_util.tree_map(lambda x: x / rewards.shape[0], g)
    return g


def clip_by_global_norm(tree, max_norm: jax.Array):
    """``tree`` scaled to global norm ``max_norm`` when larger (inf = unchanged, bit for bit)."""
    norm = optax.global_norm(tree)
    over = norm > max_norm
    scale = jnp.where(over, max_norm / jnp.where(over, norm, 1.0), 1.0)
    return jax.tree_util.tree_map(lambda x: jnp.where(over, x * scale, x), tree)


def segment_average_matrix(sub: Substrate) -> jax.Array:
    """f32[U, U]: row d averages the agents of domain d's segment (central server, IV-C)."""
    seg = sub.segment[jnp.maximum(sub.domain_nodes[:, 0], 0)]
    same = (seg[:, None] == seg[None, :]).astype(jnp.float32)
    return same / same.sum(axis=1, keepdims=True)


def central_average(params, avg: jax.Array, strength=None):
    """Replace each agent's parameters by the mean over its segment's agents (IV-C), or with
    ``strength`` s: (1-s) params + s mean (s = 1 gives the mean bit for bit)."""
    mean = jax.tree_util.tree_map(lambda x: jnp.tensordot(avg, x, axes=1), params)
    if strength is None:
        return mean
    return jax.tree_util.tree_map(lambda x, m: (1.0 - strength) * x + strength * m, params, mean)


@struct.dataclass
class TrainCarry:
    params: Any
    opt_state: Any
    updates_done: jax.Array
    epoch_keys: jax.Array  # one key per epoch
    epoch: jax.Array
    hyper: Hyper  # the run's traced hyperparameters
    baseline: jax.Array  # running-mean reward baseline (used when hyper.baseline_weight > 0)


class Trainer(NamedTuple):
    """Pure functions of one training configuration.

    ``train(key, hyper, sub, reqs) -> (params, TrainCurves)`` runs every epoch in one call;
    ``init(key, hyper, sub)`` + repeated ``epoch(carry, sub, reqs)`` give the same numbers one
    epoch at a time (for progress bars). ``hyper`` is a ``Hyper`` or just a learning rate (the
    other fields then take the config's defaults).
    """

    init: Callable
    epoch: Callable
    train: Callable


def make_train(cfg: TrainConfig, n_train: int, max_active: int,
               strategy: str | None = None, interpret: bool | None = None) -> Trainer:
    """Build the trainer for fixed shapes (``n_train`` requests, active table ``max_active``).

    ``strategy`` (``online.request_step_strategy``): with "kernel" each batch is one Pallas call
    (``kernels.train.kernel_batch``, Pallas interpret mode on a CPU) for the agents it expresses
    (``kernels.train.kernel_trains``: DDRL-NRA and RLVNE), which returns each request's outcome
    and analytic ∇ log π; rewards, baseline, update and central averaging are the same XLA code
    below. Otherwise, and for agents the kernel does not express, the batch is
    ``online.run_online`` (the kernel strategy's fallback there is "batched"). ``interpret``:
    the kernel in Pallas interpret mode (default: on a CPU backend; False lowers it for a GPU
    on any machine, ``kernels.cost``)."""
    cfg.validate(n_train)
    base_policy, _, init_params = policies_for(cfg)
    train_policy = with_score_terms(base_policy)
    kernel = None
    if request_step_strategy(strategy) == "kernel":  # Pallas is imported only when used
        from sagin_jax.kernels import train as kernel
        kernel = kernel if kernel.kernel_trains(base_policy) else None
    opt = make_optimizer()
    n_batches = n_train // cfg.batch_size

    def init(key: jax.Array, hyper, sub: Substrate) -> TrainCarry:
        if not isinstance(hyper, Hyper):
            hyper = Hyper.from_config(cfg, lr=hyper)
        hyper = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), hyper)
        k_init, k_run = jax.random.split(key)
        params = init_params(k_init, sub, hyper.init_scale)
        opt_state = opt.init(params)
        opt_state.hyperparams["learning_rate"] = hyper.lr
        return TrainCarry(params=params, opt_state=opt_state, updates_done=jnp.int32(0),
                          epoch_keys=jax.random.split(k_run, cfg.epochs), epoch=jnp.int32(0),
                          hyper=hyper, baseline=jnp.float32(0.0))

    def epoch(carry: TrainCarry, sub: Substrate, reqs: Requests):
        """One pass over the training requests from an empty network; -> (carry, curve).

        Each batch is sliced out of ``reqs`` inside the scan: a reshape to [batches, batch, ...]
        scanned over its leading axis would, once vmapped over seeds, make XLA keep a transposed
        copy of every seed's requests (most of the program's memory on a wide batch)."""
        avg = segment_average_matrix(sub) if cfg.algo == "ddrl-nra" else None

        hyper = carry.hyper
        if kernel is not None:
            first = jax.tree_util.tree_map(lambda x: x[:cfg.batch_size], reqs)  # shapes only
            dims = kernel.batch_dims(sub, first, max_active)
            sub_arrays = kernel.substrate_arrays(sub, dims)
            interp = jax.default_backend() == "cpu" if interpret is None else interpret

            def run_batch(params, k, batch, state):
                return kernel.kernel_batch(base_policy, params, k, sub, batch, state,
                                           max_active, interp, sub_arrays)

            state = kernel.init_carry(sub, dims)
        else:
            def run_batch(params, k, batch, state):
                return run_online(train_policy, params, k, sub, batch, state, strategy=strategy)

            state = init_state(sub, max_active, reqs.max_nodes)

        def batch_step(c, xs):
            params, opt_state, state, updates_done, baseline = c
            b, k = xs
            batch = jax.tree_util.tree_map(  # kept in its storage dtypes: run_online widens
                lambda x: jax.lax.dynamic_slice_in_dim(x, b * cfg.batch_size, cfg.batch_size),
                reqs)
            state, out = run_batch(params, k, batch, state)
            rewards = request_rewards(cfg, out, hyper)
            used, baseline = update_baseline(hyper, rewards, out.accepted, baseline, updates_done)
            adv = advantages(hyper, rewards, out.accepted, used)
            bonus = jax.tree_util.tree_map(lambda x: hyper.entropy_coef * x.sum(0),
                                           out.extra["entropy_grad"])
            ascent = reinforce_gradient(cfg, adv, out.extra["grad"], bonus)
            ascent = clip_by_global_norm(ascent, hyper.max_grad_norm)
            descent = jax.tree_util.tree_map(jnp.negative, ascent)
            updates, opt_state = opt.update(descent, opt_state, params)
            params = optax.apply_updates(params, updates)
            updates_done = updates_done + 1
            if cfg.central_server_every > 0 and avg is not None:
                sync = (updates_done % cfg.central_server_every) == 0
                params = jax.tree_util.tree_map(
                    lambda a, b: jnp.where(sync, a, b),
                    central_average(params, avg, hyper.central_strength), params)
            m = jax.tree_util.tree_map(lambda x: x[-1], out.metrics)
            curve = (m.ar, m.acr, m.rc, objective(m, hyper))
            return (params, opt_state, state, updates_done, baseline), curve

        keys = jax.random.split(carry.epoch_keys[carry.epoch], n_batches)
        (params, opt_state, _, updates_done, baseline), curve = jax.lax.scan(
            batch_step, (carry.params, carry.opt_state, state, carry.updates_done,
                         carry.baseline), (jnp.arange(n_batches), keys))
        carry = carry.replace(params=params, opt_state=opt_state, updates_done=updates_done,
                              epoch=carry.epoch + 1, baseline=baseline)
        return carry, TrainCurves(*curve)

    def train(key: jax.Array, hyper, sub: Substrate, reqs: Requests):
        carry = init(key, hyper, sub)
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
