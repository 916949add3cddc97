"""The kernel's per-seed arrays: the substrate and the requests padded to powers of two.

Triton blocks have power-of-two sizes, so every node axis is padded to ``NP`` = the next power of
two of N, links to ``EP``, neighbour slots to ``KP``, request nodes to ``MP`` and request links
to ``LP`` (paper config, from ``scenario_bounds``: 100 -> 128 nodes, 466 -> 512 links, degree 28
-> 32, 10 -> 16 request nodes, 45 -> 64 request links). Padding never takes part: a padded node
has domain -1 (no request node's candidate domain), a padded neighbour slot has link -1, a padded
link has bandwidth 0 and appears in no neighbour list, path tree or ``edge_id`` entry.

The request-only quantities that do not depend on the residual state are computed here, in XLA,
with the simulator's own functions: the order of the request's links (``links.link_keys``,
``features.rank_order``) and, for the ranked policies, the order of its nodes.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sagin_jax import features
from sagin_jax.embedding.links import link_keys
from sagin_jax.scenario.types import Requests, Substrate, widen


def next_pow2(n: int) -> int:
    """The smallest power of two >= max(n, 1)."""
    return 1 << max(0, int(n) - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class Dims:
    """Static sizes of one kernel program: padded (``*P``) and real."""

    n_nodes: int
    n_edges: int
    max_nodes: int  # M, request nodes
    max_links: int  # L, request links
    n_requests: int  # R (not padded: requests are read one row at a time)
    max_active: int  # A, rows of the active-request table
    NP: int
    EP: int
    KP: int
    MP: int
    LP: int
    AP: int
    UP: int = 1  # agents (domains) of the linear policies' weight rows

    @staticmethod
    def of(sub: Substrate, req: Requests, max_active: int) -> "Dims":
        """Sizes for per-seed (unbatched) ``sub`` and ``req``."""
        n, e, k = sub.n_nodes, sub.n_edges, sub.nbr_node.shape[-1]
        m, l_ = req.max_nodes, req.max_links
        return Dims(n, e, m, l_, req.n_requests, max_active, next_pow2(n), next_pow2(e),
                    next_pow2(k), next_pow2(m), next_pow2(l_), next_pow2(max_active),
                    next_pow2(sub.n_domains))


def _pad(x: jax.Array, shape: tuple[int, ...], value) -> jax.Array:
    return jnp.pad(x, [(0, t - s) for s, t in zip(x.shape, shape)], constant_values=value)


SUBSTRATE_FIELDS = ("cpu", "sto", "domain", "nbr_node", "nbr_edge", "hops", "tree_parent",
                    "edge_id", "bw0", "ad", "degree", "real", "grc_nbr", "grc_edge", "grc_side")
REQUEST_FIELDS = ("arrival", "lifetime", "node_mask", "cpu", "sto", "domain", "link_a",
                  "link_b", "link_bw", "node_order", "link_order", "n_links", "uniform")


def substrate_arrays(sub: Substrate, d: Dims) -> dict[str, jax.Array]:
    """One seed's substrate, padded (see the module docstring); ``bw0`` is the initial residual
    bandwidth (0 on padding, as ``state.init_state``), ``ad``, ``degree`` the learning agents'
    static features, ``real`` 1 on real nodes."""
    np_, ep, kp = d.NP, d.EP, d.KP
    i32 = lambda x: x.astype(jnp.int32)  # noqa: E731 (tables may be stored narrower)
    return {
        "cpu": _pad(sub.cpu, (np_,), 0.0), "sto": _pad(sub.sto, (np_,), 0.0),
        "domain": _pad(i32(sub.domain), (np_,), -1),
        "nbr_node": _pad(i32(sub.nbr_node), (np_, kp), -1),
        "nbr_edge": _pad(i32(sub.nbr_edge), (np_, kp), -1),
        "hops": _pad(i32(sub.hops), (np_, np_), -1),
        "tree_parent": _pad(i32(sub.tree_parent), (np_, np_), -1),
        "edge_id": _pad(i32(sub.edge_id), (np_, np_), -1),
        "bw0": _pad(jnp.where(sub.edge_mask, sub.edge_bw, 0.0), (ep,), 0.0),
        "ad": _pad(sub.ad, (np_,), 0.0),  # eq. 16 (DDRL-NRA's feature)
        "degree": _pad(features.degree(sub), (np_,), 0.0),  # RLVNE's feature
        "real": _pad(jnp.ones((d.n_nodes,), jnp.int32), (np_,), 0),  # 1: a real node
        **grc_slots(sub, d),
    }


def grc_slots(sub: Substrate, d: Dims) -> dict[str, jax.Array]:
    """Each node's neighbour slots in the order ``features.grc_vector`` sums them: first the
    links the node is ``edge_u`` of, then those it is ``edge_v`` of, each by link id (the two
    ``segment_sum``s, accumulated in link order). ``grc_side``: 0 / 1 for those groups, -1 on
    empty slots."""
    edge = sub.nbr_edge.astype(jnp.int32)
    valid = edge >= 0
    ids = jnp.arange(sub.n_nodes, dtype=jnp.int32)[:, None]
    side = jnp.where(valid, jnp.where(sub.edge_u[jnp.maximum(edge, 0)] == ids, 0, 1), -1)
    key = jnp.where(valid, side * sub.n_edges + edge, 2 * sub.n_edges)
    order = jnp.argsort(key, axis=1, stable=True)
    take = lambda x: jnp.take_along_axis(x, order, axis=1)  # noqa: E731
    kp, np_ = d.KP, d.NP
    return {"grc_nbr": _pad(take(sub.nbr_node.astype(jnp.int32)), (np_, kp), -1),
            "grc_edge": _pad(take(edge), (np_, kp), -1),
            "grc_side": _pad(take(side), (np_, kp), -1)}


def request_arrays(req: Requests, d: Dims, node_order: jax.Array,
                   uniform: jax.Array) -> dict[str, jax.Array]:
    """One seed's requests, padded; ``node_order`` i32[R, M] is the policy's placement order
    (position -> request node), ``uniform`` f32[R, M] the uniform draw of each placement
    (position). Links are ordered by ``link_keys`` descending, ties by smaller
    index (``features.rank_order``, as ``links.embed_links`` picks them)."""
    req = widen(req)
    r, mp, lp = d.n_requests, d.MP, d.LP
    link_order = jax.vmap(lambda q: features.rank_order(link_keys(q)))(req)
    return {
        "arrival": req.arrival, "lifetime": req.lifetime,
        "node_mask": _pad(req.node_mask.astype(jnp.int32), (r, mp), 0),
        "cpu": _pad(req.cpu, (r, mp), 0.0), "sto": _pad(req.sto, (r, mp), 0.0),
        "domain": _pad(req.domain, (r, mp), -1),
        "link_a": _pad(req.link_a, (r, lp), 0), "link_b": _pad(req.link_b, (r, lp), 0),
        "link_bw": _pad(req.link_bw, (r, lp), 0.0),
        # padded positions point at padded (masked) nodes / links
        "node_order": jnp.concatenate(
            [node_order.astype(jnp.int32),
             jnp.broadcast_to(jnp.arange(d.max_nodes, mp, dtype=jnp.int32), (r, mp - d.max_nodes))],
            axis=1),
        "link_order": _pad(link_order.astype(jnp.int32), (r, lp), 0),
        "n_links": req.link_mask.sum(axis=1, dtype=jnp.int32),
        "uniform": _pad(uniform.astype(jnp.float32), (r, mp), 0.0),
    }
