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
    """Residuals plus the active-request table.

    The table has ``max_active`` rows plus one scratch row (never active) that takes the write of
    a request finding no free row, so every request writes its row without reading the old one
    or branching. An inactive row's contents mean nothing.
    """

    res_cpu: jax.Array  # f32[N]
    res_sto: jax.Array  # f32[N]
    res_bw: jax.Array  # f32[E]
    slot_active: jax.Array  # bool[A + 1]
    slot_arrival: jax.Array  # f32[A + 1]
    slot_departure: jax.Array  # f32[A + 1]
    slot_revenue: jax.Array  # f32[A + 1]
    slot_hosts: jax.Array  # i32[A + 1, M]
    slot_cpu: jax.Array  # f32[A + 1, M]
    slot_sto: jax.Array  # f32[A + 1, M]
    slot_bw: jax.Array  # f32[A + 1, E] bandwidth held on each link
    totals: Totals


def init_state(sub: Substrate, max_active: int, max_nodes: int) -> SimState:
    """Empty network: residuals equal capacities, no active request."""
    a, m, e = max_active, max_nodes, sub.n_edges
    f0 = jnp.float32(0.0)
    return SimState(
        res_cpu=sub.cpu, res_sto=sub.sto, res_bw=jnp.where(sub.edge_mask, sub.edge_bw, 0.0),
        slot_active=jnp.zeros((a + 1,), bool), slot_arrival=jnp.zeros((a + 1,), jnp.float32),
        slot_departure=jnp.zeros((a + 1,), jnp.float32),
        slot_revenue=jnp.zeros((a + 1,), jnp.float32),
        slot_hosts=jnp.zeros((a + 1, m), jnp.int32), slot_cpu=jnp.zeros((a + 1, m), jnp.float32),
        slot_sto=jnp.zeros((a + 1, m), jnp.float32), slot_bw=jnp.zeros((a + 1, e), jnp.float32),
        totals=Totals(arrived=jnp.int32(0), accepted=jnp.int32(0), revenue=f0, cost=f0,
                      link_revenue=f0, link_cost=f0, held_departed=f0),
    )


def release_expired(state: SimState, now: jax.Array) -> SimState:
    """Release every active request whose departure <= now (departures before arrivals).

    One table row per departing request (a ``while_loop``), so the cost is O(departures · E),
    not O(table size · E).
    """
    leaving0 = state.slot_active & (state.slot_departure <= now)
    # the table rides in the loop carry (read-only) so the loop's output, not its input, feeds
    # the next commit; as a captured constant XLA would copy it every request
    table = (state.slot_hosts, state.slot_cpu, state.slot_sto, state.slot_bw,
             state.slot_revenue, state.slot_arrival, state.slot_departure)

    def cond(c):
        return c[0].any()

    def body(c):
        leaving, res_cpu, res_sto, res_bw, held, table = c
        hosts_t, cpu_t, sto_t, bw_t, rev_t, arr_t, dep_t = table
        a = jnp.argmax(leaving)
        # hosts are distinct (padding adds 0.0), so a one-hot sum is exact and keeps the loop
        # free of scatters (XLA CPU then compiles it as one small loop, sagin_jax.SMALL_LOOP_BYTES)
        onehot = hosts_t[a][:, None] == jnp.arange(res_cpu.shape[0])[None, :]  # [M, N]
        res_cpu = res_cpu + jnp.sum(jnp.where(onehot, cpu_t[a][:, None], 0.0), axis=0)
        res_sto = res_sto + jnp.sum(jnp.where(onehot, sto_t[a][:, None], 0.0), axis=0)
        res_bw = res_bw + bw_t[a]
        held = held + rev_t[a] * (dep_t[a] - arr_t[a])
        return leaving.at[a].set(False), res_cpu, res_sto, res_bw, held, table

    _, res_cpu, res_sto, res_bw, held, table = jax.lax.while_loop(
        cond, body, (leaving0, state.res_cpu, state.res_sto, state.res_bw,
                     state.totals.held_departed, table))
    hosts_t, cpu_t, sto_t, bw_t, rev_t, arr_t, dep_t = table
    return state.replace(res_cpu=res_cpu, res_sto=res_sto, res_bw=res_bw,
                         slot_active=state.slot_active & ~leaving0,
                         slot_hosts=hosts_t, slot_cpu=cpu_t, slot_sto=sto_t, slot_bw=bw_t,
                         slot_revenue=rev_t, slot_arrival=arr_t, slot_departure=dep_t,
                         totals=state.totals.replace(held_departed=held))


def release_all(state: SimState) -> SimState:
    """Release every active request (end of the horizon)."""
    return release_expired(state, jnp.float32(jnp.inf))
