"""Running performance indexes after each request (eqs. 9-11 and the link-only R/C)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from sagin_jax.simulation.state import SimState


@struct.dataclass
class Metrics:
    time: jax.Array
    ar: jax.Array  # eq. 9: time-average revenue held by active requests
    acr: jax.Array  # eq. 11: accepted / arrived
    rc: jax.Array  # eq. 10: Σ revenue / Σ cost over accepted requests
    rc_link: jax.Array  # Σ bw / Σ bw · hops over accepted requests


def _ratio(a, b):
    return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)


def running_metrics(state: SimState, now: jax.Array) -> Metrics:
    """Metrics over every request handled so far, at time ``now`` (docs/rules.md)."""
    t = state.totals
    held_active = jnp.sum(jnp.where(state.slot_active,
                                    state.slot_revenue * (now - state.slot_arrival), 0.0))
    ar = jnp.where(now > 0, (t.held_departed + held_active) / jnp.where(now > 0, now, 1.0), 0.0)
    # max(arrived, accepted) == arrived; it keeps the divisor per-seed under vmap, where XLA
    # would otherwise rewrite x / shared_count as x * (1 / shared_count) (off by one ulp)
    arrived = jnp.maximum(t.arrived, t.accepted).astype(jnp.float32)
    return Metrics(time=now, ar=ar, acr=_ratio(t.accepted.astype(jnp.float32), arrived),
                   rc=_ratio(t.revenue, t.cost), rc_link=_ratio(t.link_revenue, t.link_cost))
