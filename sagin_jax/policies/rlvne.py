"""RLVNE (Yao et al., Neurocomputing 2018) as DESIGN section 4 states it: one centralised policy
over all substrate nodes.

Features per node ``[residual CPU, degree, Σ residual incident BW, AVG(DST)]`` with
AVG(DST) = Σ hops to the nodes already used by this request / (count + 1), min-max normalised per
column; one 1x4 convolution kernel with bias → ReLU → softmax over the feasible nodes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sagin_jax import features
from sagin_jax.policies.base import (NodeContext, NodePolicy, index_order, masked_log_softmax,
                                     sample_masked)


def static_columns(ctx: NodeContext) -> tuple[jax.Array, jax.Array]:
    """(degree, Σ residual incident BW): fixed while one request's nodes are placed."""
    return features.degree(ctx.sub), features.residual_incident_bw(ctx.sub, ctx.res_bw)


def hops_to_hosts(sub, hosts: jax.Array) -> jax.Array:
    """f32[N] Σ hops from each substrate node to the used hosts (``hosts`` i32[M], -1: none),
    gathered from their columns instead of hops @ used over all N: the same integers, so the
    same f32 sum in any order."""
    placed = hosts >= 0
    cols = sub.hops[:, jnp.maximum(hosts, 0)].astype(jnp.float32)  # [N, M]
    return jnp.sum(jnp.where(placed[None, :], cols, 0.0), axis=1)


def rlvne_columns(res_cpu, deg, inc_bw, hop_sum, n_placed) -> jax.Array:
    """f32[N, 4] RLVNE's features: residual CPU, degree, Σ incident residual bandwidth and the
    mean hops to the used hosts (``hop_sum / (n_placed + 1)``), each min-max normalised over
    the substrate nodes."""
    dst = hop_sum / (n_placed.astype(jnp.float32) + 1.0)
    x = jnp.stack([res_cpu, deg, inc_bw, dst])  # [4, N]: each reduction along a contiguous N
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    span = hi - lo
    return ((x - lo) / jnp.where(span > 0, span, 1.0)).T


def rlvne_features(ctx: NodeContext, columns=None) -> jax.Array:
    """f32[N, 4] (``rlvne_columns``) of the node being placed."""
    deg, inc_bw = static_columns(ctx) if columns is None else columns
    return rlvne_columns(ctx.res_cpu, deg, inc_bw, hops_to_hosts(ctx.sub, ctx.hosts),
                         (ctx.hosts >= 0).sum())


def init_rlvne_params(key: jax.Array, init_scale: float = 0.1):
    return {"w": init_scale * jax.random.normal(key, (4,)), "b": jnp.zeros(())}


def make_rlvne_policy(greedy: bool) -> NodePolicy:
    def prepare(params, ctx: NodeContext):
        order, _ = index_order(params, ctx)
        return order, static_columns(ctx)

    def select(key, params, ctx: NodeContext, columns):
        logits = jax.nn.relu(rlvne_features(ctx, columns) @ params["w"] + params["b"])
        logp = masked_log_softmax(logits, ctx.feasible)
        if greedy:
            host = jnp.argmax(jnp.where(ctx.feasible, logits, -jnp.inf))
        else:
            host = sample_masked(key, logp, ctx.feasible)
        return host.astype(jnp.int32), {"logp": jnp.where(ctx.feasible.any(), logp[host], 0.0)}

    return NodePolicy("rlvne" + ("-greedy" if greedy else ""), prepare, select)
