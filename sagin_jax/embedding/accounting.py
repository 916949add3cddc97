"""Revenue and cost of an embedded request (eqs. 7, 8)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from sagin_jax.scenario.types import Requests


@struct.dataclass
class RequestValue:
    revenue: jax.Array  # eq. 7
    cost: jax.Array  # eq. 8
    link_revenue: jax.Array  # Σ bw
    link_cost: jax.Array  # Σ bw · hops


def request_value(req: Requests, hops: jax.Array, accepted: jax.Array) -> RequestValue:
    """Eq. 7 revenue and eq. 8 cost of one request; all zero when it was rejected."""
    node_part = jnp.sum(jnp.where(req.node_mask, req.cpu + req.sto, 0.0))
    bw = jnp.where(req.link_mask, req.link_bw, 0.0)
    link_rev = jnp.sum(bw)
    link_cost = jnp.sum(bw * hops.astype(bw.dtype))
    z = lambda x: jnp.where(accepted, x, 0.0)  # noqa: E731
    return RequestValue(revenue=z(node_part + link_rev), cost=z(node_part + link_cost),
                        link_revenue=z(link_rev), link_cost=z(link_cost))
