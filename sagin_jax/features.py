"""Per-node quantities computed from the residual state: pure functions of fixed-shape arrays.

Scores used by the heuristics (NRM, GRC) and by the learning agents' feature matrices
(eqs. 16-18) all start from these.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sagin_jax.scenario.types import Requests, Substrate


def incident_sum(values: jax.Array, edge_u: jax.Array, edge_v: jax.Array, n: int) -> jax.Array:
    """Σ of an edge quantity over the links at each node (BW(n) of eq. 17 when values = res_bw)."""
    return (jax.ops.segment_sum(values, edge_u, num_segments=n)
            + jax.ops.segment_sum(values, edge_v, num_segments=n))


def node_link_sum(sub: Substrate, values: jax.Array) -> jax.Array:
    """Σ of a link quantity over each substrate node's links, f32[N], from the neighbour lists
    (a gather and a row sum; no scatter, so the loops around it stay small for XLA CPU)."""
    slot = sub.nbr_edge >= 0
    return jnp.sum(jnp.where(slot, values[jnp.maximum(sub.nbr_edge, 0)], 0.0), axis=-1)


def residual_incident_bw(sub: Substrate, res_bw: jax.Array) -> jax.Array:
    """Σ residual bandwidth of each substrate node's links."""
    return node_link_sum(sub, jnp.where(sub.edge_mask, res_bw, 0.0))


def degree(sub: Substrate) -> jax.Array:
    return jnp.sum(sub.nbr_edge >= 0, axis=-1).astype(jnp.float32)


def request_incident_bw(req: Requests) -> jax.Array:
    """Σ bandwidth demand of each request node's links, f32[M] (one request; one-hot sums)."""
    bw = jnp.where(req.link_mask, req.link_bw, 0.0)
    nodes = jnp.arange(req.max_nodes)
    ends = (req.link_a[:, None] == nodes) | (req.link_b[:, None] == nodes)  # [L, M]
    return jnp.sum(jnp.where(ends, bw[:, None], 0.0), axis=0)


def nrm_substrate(sub: Substrate, res_cpu, res_sto, res_bw) -> jax.Array:
    """NRM(n) = (CPU(n) + STO(n)) · Σ residual BW at n (NRMVNE, Zhang et al. 2018)."""
    return (res_cpu + res_sto) * residual_incident_bw(sub, res_bw)


def nrm_request(req: Requests) -> jax.Array:
    """NRM(i) = (cpu_i + sto_i) · Σ bw of i's request links; -inf on padding."""
    score = (req.cpu + req.sto) * request_incident_bw(req)
    return jnp.where(req.node_mask, score, -jnp.inf)


def grc_vector(c: jax.Array, edge_u, edge_v, edge_w, damping: float = 0.85,
               tol: float = 1e-5, max_iter: int = 1000) -> jax.Array:
    """Global resource capacity rank (Gong et al. 2014): r ← (1-d)c + d·M·r until ‖Δr‖₂ < tol.

    ``c`` is the node weight (normalised here to sum 1; all-zero stays zero),
    M[u, v] = w(u, v) / Σ_x w(v, x) (0 where that sum is 0). Masked edges carry w = 0.
    """
    n = c.shape[0]
    total = c.sum()
    c = jnp.where(total > 0, c / jnp.where(total > 0, total, 1.0), 0.0)
    out_w = incident_sum(edge_w, edge_u, edge_v, n)
    inv = jnp.where(out_w > 0, 1.0 / jnp.where(out_w > 0, out_w, 1.0), 0.0)

    def apply_m(r):
        # (M r)_u = Σ_v w(u,v) / out_w(v) · r_v over both directions of each undirected edge
        to_u = jax.ops.segment_sum(edge_w * inv[edge_v] * r[edge_v], edge_u, num_segments=n)
        to_v = jax.ops.segment_sum(edge_w * inv[edge_u] * r[edge_u], edge_v, num_segments=n)
        return to_u + to_v

    def cond(carry):
        _, delta, it = carry
        return (delta >= tol) & (it < max_iter)

    def body(carry):
        r, _, it = carry
        new = (1.0 - damping) * c + damping * apply_m(r)
        return new, jnp.linalg.norm(new - r), it + 1

    r, _, _ = jax.lax.while_loop(cond, body, (c, jnp.array(jnp.inf, c.dtype), 0))
    return r


def grc_substrate(sub: Substrate, res_cpu, res_bw, damping=0.85, tol=1e-5, max_iter=1000):
    w = jnp.where(sub.edge_mask, res_bw, 0.0)
    return grc_vector(res_cpu, sub.edge_u, sub.edge_v, w, damping, tol, max_iter)


def grc_request(req: Requests, damping=0.85, tol=1e-5, max_iter=1000):
    w = jnp.where(req.link_mask, req.link_bw, 0.0)
    r = grc_vector(jnp.where(req.node_mask, req.cpu, 0.0), req.link_a, req.link_b, w,
                   damping, tol, max_iter)
    return jnp.where(req.node_mask, r, -jnp.inf)


def rank_order(score: jax.Array) -> jax.Array:
    """Indices by score descending, ties by smaller index: ``argsort(-score, stable=True)``.

    Sort-free (O(n^2) pairwise comparisons in two fused loops) because the vectors here are short
    (a request's nodes or links) and an XLA CPU sort calls its comparator once per comparison,
    which made the link-order argsort the most expensive single step of a request. ``-0.0``
    ties with ``0.0``, as in ``jnp.argsort``; scores must not be NaN.
    """
    n = score.shape[-1]
    idx = jnp.arange(n)
    s_i, s_j = score[:, None], score[None, :]
    first = (s_j > s_i) | ((s_j == s_i) & (idx[None, :] < idx[:, None]))  # [i, j]: j before i
    rank = first.sum(axis=1)
    return jnp.sum(jnp.where(rank[None, :] == idx[:, None], idx[None, :], 0), axis=1)
