"""Simulation state: residual resources plus a fixed table of active (accepted, not departed)
requests, so departures cost O(active requests) rather than O(all requests)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from sagin_jax.scenario.types import Substrate


@struct.dataclass
class Totals:
    """Running sums behind the metrics of eqs. 9-11."""

    arrived: jax.Array
    accepted: jax.Array
    revenue: jax.Array
    cost: jax.Array
    link_revenue: jax.Array
    link_cost: jax.Array
    held_departed: jax.Array  # Σ revenue · lifetime of requests that have departed (eq. 9)


@struct.dataclass
class SimState:
    res_cpu: jax.Array  # f32[N]
    res_sto: jax.Array  # f32[N]
    res_bw: jax.Array  # f32[E]
    slot_active: jax.Array  # bool[A]
    slot_arrival: jax.Array  # f32[A]
    slot_departure: jax.Array  # f32[A]
    slot_revenue: jax.Array  # f32[A]
    slot_hosts: jax.Array  # i32[A, M]
    slot_cpu: jax.Array  # f32[A, M]
    slot_sto: jax.Array  # f32[A, M]
    slot_bw: jax.Array  # f32[A, E] bandwidth held on each link
    totals: Totals


def init_state(sub: Substrate, max_active: int, max_nodes: int) -> SimState:
    """Empty network: residuals equal capacities, no active request."""
    a, m, e = max_active, max_nodes, sub.n_edges
    f0 = jnp.float32(0.0)
    return SimState(
        res_cpu=sub.cpu, res_sto=sub.sto, res_bw=jnp.where(sub.edge_mask, sub.edge_bw, 0.0),
        slot_active=jnp.zeros((a,), bool), slot_arrival=jnp.zeros((a,), jnp.float32),
        slot_departure=jnp.zeros((a,), jnp.float32), slot_revenue=jnp.zeros((a,), jnp.float32),
        slot_hosts=jnp.zeros((a, m), jnp.int32), slot_cpu=jnp.zeros((a, m), jnp.float32),
        slot_sto=jnp.zeros((a, m), jnp.float32), slot_bw=jnp.zeros((a, e), jnp.float32),
        totals=Totals(arrived=jnp.int32(0), accepted=jnp.int32(0), revenue=f0, cost=f0,
                      link_revenue=f0, link_cost=f0, held_departed=f0),
    )


def release_expired(state: SimState, now: jax.Array) -> SimState:
    """Release every active request whose departure <= now (departures before arrivals)."""
    n = state.res_cpu.shape[0]
    leaving = state.slot_active & (state.slot_departure <= now)
    back_cpu = jnp.where(leaving[:, None], state.slot_cpu, 0.0)
    back_sto = jnp.where(leaving[:, None], state.slot_sto, 0.0)
    hosts = state.slot_hosts.reshape(-1)
    res_cpu = state.res_cpu + jax.ops.segment_sum(back_cpu.reshape(-1), hosts, num_segments=n)
    res_sto = state.res_sto + jax.ops.segment_sum(back_sto.reshape(-1), hosts, num_segments=n)
    res_bw = state.res_bw + jnp.where(leaving[:, None], state.slot_bw, 0.0).sum(axis=0)
    held = jnp.sum(jnp.where(leaving, state.slot_revenue
                             * (state.slot_departure - state.slot_arrival), 0.0))
    totals = state.totals.replace(held_departed=state.totals.held_departed + held)
    return state.replace(res_cpu=res_cpu, res_sto=res_sto, res_bw=res_bw,
                         slot_active=state.slot_active & ~leaving, totals=totals)


def release_all(state: SimState) -> SimState:
    """Release every active request (end of the horizon)."""
    return release_expired(state, jnp.float32(jnp.inf))
