"""Running performance indexes after each request (eqs. 9-11 and the link-only R/C)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from sagin_jax.simulation import exact
from sagin_jax.simulation.state import SimState, Totals, exact_integer, to_uint


@struct.dataclass
class Metrics:
    time: jax.Array
    ar: jax.Array  # eq. 9: time-average revenue held by active requests
    acr: jax.Array  # eq. 11: accepted / arrived
    rc: jax.Array  # eq. 10: Σ revenue / Σ cost over accepted requests
    rc_link: jax.Array  # Σ bw / Σ bw · hops over accepted requests


def _ratio(a, b):
    return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)


def exact_average_revenue(t: Totals, now: jax.Array) -> jax.Array:
    """Eq. 9 from the exact integer time integral, correctly rounded to float32 (needs integer
    inputs: ``t.integer_valued`` and ``exact_integer(now)``)."""
    now_u = to_uint(now)
    held = exact.subtract(
        exact.add(t.held_departed_exact, exact.multiply_small(t.revenue_active_exact, now_u)),
        t.revenue_arrival_exact)
    return exact.divide_to_f32(held, jnp.maximum(now_u, 1))


def running_metrics(state: SimState, now: jax.Array) -> Metrics:
    """Metrics over every request handled so far, at time ``now`` (docs/rules.md).

    AR (eq. 9) is exact, then rounded once to float32, when every accepted request's revenue,
    arrival and departure and ``now`` are integers below 2^24 (generated scenarios); otherwise
    it falls back to float32 sums.
    """
    t = state.totals
    held_active = jnp.sum(jnp.where(state.slot_active,
                                    state.slot_revenue * (now - state.slot_arrival), 0.0))
    ar_float = (t.held_departed + held_active) / jnp.where(now > 0, now, 1.0)
    use_exact = t.integer_valued & exact_integer(now)
    ar = jnp.where(now > 0, jnp.where(use_exact, exact_average_revenue(t, now), ar_float), 0.0)
    # max(arrived, accepted) == arrived; it keeps the divisor per-seed under vmap, where XLA
    # would otherwise rewrite x / shared_count as x * (1 / shared_count) (off by one ulp)
    arrived = jnp.maximum(t.arrived, t.accepted).astype(jnp.float32)
    return Metrics(time=now, ar=ar, acr=_ratio(t.accepted.astype(jnp.float32), arrived),
                   rc=_ratio(t.revenue, t.cost), rc_link=_ratio(t.link_revenue, t.link_cost))
