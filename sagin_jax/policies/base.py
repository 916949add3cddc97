"""The node-selection policy interface the simulation calls for every request node.

A policy is two pure functions, so learning agents plug into the same compiled simulation as the
heuristics:

* ``prepare(params, ctx) -> (order i32[M], aux)`` once per request: the order in which the request's
  nodes are placed (a permutation of 0..M-1, padding anywhere) and any per-request scores;
* ``select(key, params, ctx, aux) -> (host i32, extra)`` once per request node: a host among
  ``ctx.feasible`` and a per-placement auxiliary pytree ``extra``; every policy gives at least
  ``{"logp": f32}``, the log-probability of that choice (0 for deterministic rules).

A host outside ``ctx.feasible`` is treated as a failed placement (the request is rejected). The
simulation sums ``extra`` leaf by leaf over the request's placed nodes (``Outcome.extra``) and
knows nothing else about it: training wraps a policy with ``with_gradients`` to add
``∇_params logp`` as ``extra["grad"]``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from sagin_jax.scenario.types import Requests, Substrate


@struct.dataclass
class NodeContext:
    """What a policy may look at when placing a request node."""

    sub: Substrate
    req: Requests  # the current request (no leading axis)
    res_cpu: jax.Array  # f32[N] working residual CPU (this request's earlier nodes deducted)
    res_sto: jax.Array  # f32[N]
    res_bw: jax.Array  # f32[E] residual bandwidth at the request's arrival
    used: jax.Array  # bool[N] hosts already taken by this request
    hosts: jax.Array  # i32[M] hosts chosen so far (-1 = none yet)
    node: jax.Array  # i32 request node being placed (-1 in ``prepare``)
    feasible: jax.Array  # bool[N] feasible hosts of ``node`` (eqs. 1, 2, 4, 5)


class NodePolicy(NamedTuple):
    name: str
    prepare: Callable[[Any, NodeContext], tuple[jax.Array, Any]]
    select: Callable[[jax.Array, Any, NodeContext, Any], tuple[jax.Array, Any]]


def with_gradients(policy: NodePolicy) -> NodePolicy:
    """The same policy, whose ``select`` also returns ``∇_params logp`` as ``extra["grad"]``
    (the score-function term of REINFORCE, eq. 21); summed over a request's placed nodes by the
    simulation, it is the request's ∇ log π(a)."""

    def select(key, params, ctx: NodeContext, aux):
        def logp_of(p):
            host, extra = policy.select(key, p, ctx, aux)
            return extra["logp"], (host, extra)

        (_, (host, extra)), grad = jax.value_and_grad(logp_of, has_aux=True)(params)
        return host, {**extra, "grad": grad}

    return policy._replace(select=select)


def index_order(params, ctx: NodeContext):
    """Place request nodes in index order 0..M-1 (no per-request aux)."""
    return jnp.arange(ctx.req.max_nodes, dtype=jnp.int32), None


def argmax_feasible(score: jax.Array, feasible: jax.Array) -> jax.Array:
    """Highest-scoring feasible node, ties by smallest id."""
    return jnp.argmax(jnp.where(feasible, score, -jnp.inf)).astype(jnp.int32)


def inverse_cdf(p: jax.Array, u: jax.Array) -> jax.Array:
    """The first index whose cumulative weight exceeds ``u · Σp``, for weights ``p >= 0`` and
    ``u`` in [0, 1]: i32. ``cdf[i-1] <= u·Σp < cdf[i]`` implies ``p[i] > 0``, so an entry of
    weight 0 is never returned while some weight is positive; ``u · Σp`` may round up to ``Σp``
    (or ``u`` be 1), so the index is capped at the last positive entry. All weights 0: the last
    index."""
    cdf = jnp.cumsum(p)
    last = p.shape[0] - 1 - jnp.argmax((p > 0)[::-1])
    return jnp.minimum(jnp.sum(cdf <= u * cdf[-1]), last).astype(jnp.int32)


def sample_masked(key: jax.Array, logp: jax.Array, mask: jax.Array) -> jax.Array:
    """One draw from the categorical distribution ``exp(logp)`` over the ``mask``ed entries
    (eq. 20) by ``inverse_cdf`` of one uniform: one random word per draw, where
    ``jax.random.categorical`` draws a Gumbel per entry (most of a training step's time on a
    CPU). With an empty mask the result is the last index (the caller sees an infeasible host)."""
    p = jnp.where(mask, jnp.exp(jnp.where(mask, logp, 0.0)), 0.0)
    return inverse_cdf(p, jax.random.uniform(key, dtype=p.dtype))


def masked_log_softmax(logits: jax.Array, mask: jax.Array) -> jax.Array:
    """log softmax over the masked entries (eq. 20 restricted to feasible nodes); -inf elsewhere."""
    z = jnp.where(mask, logits, -jnp.inf)
    zmax = jax.lax.stop_gradient(jnp.max(jnp.where(mask, logits, -1e30)))
    ez = jnp.where(mask, jnp.exp(z - zmax), 0.0)
    lse = jnp.log(jnp.maximum(ez.sum(), 1e-30)) + zmax
    return jnp.where(mask, logits - lse, -jnp.inf)
