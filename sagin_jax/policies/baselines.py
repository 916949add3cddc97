"""The heuristic baselines as node-selection policies (DESIGN section 4, docs/rules.md)."""
from __future__ import annotations

import jax.numpy as jnp

from sagin_jax import features
from sagin_jax.policies.base import (NodeContext, NodePolicy, argmax_feasible, index_order,
                                     sample_masked)


def _nrm_prepare(params, ctx: NodeContext):
    order = features.rank_order(features.nrm_request(ctx.req)).astype(jnp.int32)
    return order, features.nrm_substrate(ctx.sub, ctx.res_cpu, ctx.res_sto, ctx.res_bw)


def _rank_select(key, params, ctx: NodeContext, score):
    return argmax_feasible(score, ctx.feasible), {"logp": jnp.float32(0.0)}


NRMVNE = NodePolicy("nrmvne", _nrm_prepare, _rank_select)
"""NRMVNE (Zhang, Yao, Liu 2018): nodes by NRM = (CPU + STO) · Σ BW, highest first."""


def make_grc(damping: float = 0.85, tol: float = 1e-5, max_iter: int = 1000) -> NodePolicy:
    """GRC (Gong et al. 2014): r ← (1-d)c + dMr ranks, greedy by rank."""

    def prepare(params, ctx: NodeContext):
        order = features.rank_order(features.grc_request(ctx.req, damping, tol, max_iter))
        score = features.grc_substrate(ctx.sub, ctx.res_cpu, ctx.res_bw, damping, tol, max_iter)
        return order.astype(jnp.int32), score

    return NodePolicy("grc", prepare, _rank_select)


GRC = make_grc()


def _random_select(key, params, ctx: NodeContext, aux):
    count = jnp.maximum(ctx.feasible.sum(), 1)
    logp = -jnp.log(count.astype(jnp.float32))
    host = sample_masked(key, jnp.full(ctx.feasible.shape, logp), ctx.feasible)
    return host, {"logp": logp}


RANDOM = NodePolicy("random", index_order, _random_select)
"""Uniformly random feasible host for each request node, in index order."""

BASELINES = {"nrmvne": NRMVNE, "grc": GRC, "random": RANDOM}
