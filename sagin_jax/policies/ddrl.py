"""DDRL-NRA agents (paper section IV-B): one small policy network per edge physical domain.

Each agent sees only its own domain's feature matrix FM (eq. 18): per node
``[CPU, STO, BW, AD]`` (eq. 17; BW = Σ residual bandwidth of incident links, AD = eq. 16), padded to
the largest domain. A 1x1 convolution gives each node a score (eq. 19) and a softmax over the
domain's feasible nodes gives the mapping probability (eq. 20). The agents' parameters are stacked
on a leading domain axis and applied with ``vmap``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from sagin_jax import features
from sagin_jax.policies.base import (NodeContext, NodePolicy, index_order, masked_log_softmax,
                                     sample_masked)

N_FEATURES = 4


class NodeScorer(nn.Module):
    """Eq. 19: v'_k = ω · v_k + d, a 1x1 convolution over each node's feature vector.

    A 1x1 convolution with one output channel is the same affine map applied to every node, so
    it is written as a per-node ``nn.Dense(1)`` (named ``conv1x1``); kernel [4, 1], bias [1].
    """

    init_scale: float = 0.1

    @nn.compact
    def __call__(self, fm: jax.Array) -> jax.Array:  # fm: [D, F] -> scores [D]
        conv = nn.Dense(features=1, use_bias=True, name="conv1x1",
                        kernel_init=nn.initializers.normal(self.init_scale),
                        bias_init=nn.initializers.zeros)
        return conv(fm)[:, 0]


def domain_feature_matrix(ctx: NodeContext, d: jax.Array, inc_bw: jax.Array | None = None
                          ) -> tuple[jax.Array, jax.Array]:
    """FM of domain ``d`` (eq. 18), each column divided by its max over the domain: f32[D, 4],
    and the padding mask bool[D]. ``inc_bw`` (Σ residual BW per node) may be passed in when
    already known: it does not change while a request's nodes are placed."""
    sub = ctx.sub
    if inc_bw is None:
        inc_bw = features.residual_incident_bw(sub, ctx.res_bw)
    members = sub.domain_nodes[d]
    valid = members >= 0
    m = jnp.maximum(members, 0)
    fm = jnp.stack([ctx.res_cpu[m], ctx.res_sto[m], inc_bw[m], sub.ad[m]], axis=-1)
    fm = jnp.where(valid[:, None], fm, 0.0)
    scale = jnp.max(jnp.abs(fm), axis=0, keepdims=True)
    return fm / jnp.where(scale > 0, scale, 1.0), valid


def domain_feature_matrices(ctx: NodeContext, inc_bw: jax.Array | None = None
                            ) -> tuple[jax.Array, jax.Array]:
    """``domain_feature_matrix`` of every domain: f32[U, D, 4] and bool[U, D]."""
    domains = jnp.arange(ctx.sub.domain_nodes.shape[0])
    return jax.vmap(lambda d: domain_feature_matrix(ctx, d, inc_bw))(domains)


def init_ddrl_params(key: jax.Array, n_domains: int, init_scale: float = 0.1):
    """Stacked parameters of ``n_domains`` agents (leading domain axis)."""
    module = NodeScorer(init_scale)
    keys = jax.random.split(key, n_domains)
    return jax.vmap(lambda k: module.init(k, jnp.zeros((1, N_FEATURES))))(keys)


def make_ddrl_policy(greedy: bool, init_scale: float = 0.1) -> NodePolicy:
    """DDRL-NRA as a node policy: sample from eq. 20 in training, argmax in test (Algorithm 2)."""
    module = NodeScorer(init_scale)

    def prepare(params, ctx: NodeContext):
        # links are embedded after every node, so BW(n) is fixed for the whole node stage
        order, _ = index_order(params, ctx)
        return order, features.residual_incident_bw(ctx.sub, ctx.res_bw)

    def select(key, params, ctx: NodeContext, inc_bw):
        # only the agent of the request node's domain acts (its own FM, its own parameters)
        d = ctx.req.domain[ctx.node]
        fm, valid = domain_feature_matrix(ctx, d, inc_bw)
        scores = module.apply(jax.tree_util.tree_map(lambda x: x[d], params), fm)  # [D]
        members = ctx.sub.domain_nodes[d]
        mask = valid & ctx.feasible[jnp.maximum(members, 0)]
        logp = masked_log_softmax(scores, mask)
        if greedy:
            idx = jnp.argmax(jnp.where(mask, scores, -jnp.inf))
        else:
            idx = sample_masked(key, logp, mask)
        return members[idx].astype(jnp.int32), {"logp": jnp.where(mask.any(), logp[idx], 0.0)}

    return NodePolicy("ddrl-nra" + ("-greedy" if greedy else ""), prepare, select)
