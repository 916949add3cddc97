"""Simulation state: residual resources plus a fixed table of active (accepted, not departed)
requests, so departures cost O(active requests) rather than O(all requests)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from sagin_jax.scenario.types import Substrate
from sagin_jax.simulation import exact


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
    # The same time integral exactly, for integer-valued inputs (``exact_integer``): with R the
    # revenue of the active requests, Σ revenue · time held at t = departed + t · R - arrivals.
    held_departed_exact: jax.Array  # Wide: Σ revenue · departure over departed requests
    revenue_arrival_exact: jax.Array  # Wide: Σ revenue · arrival over accepted requests
    revenue_active_exact: jax.Array  # Wide: Σ revenue over active requests
    integer_valued: jax.Array  # bool: every accepted request passed ``exact_integer``


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
                      link_revenue=f0, link_cost=f0, held_departed=f0,
                      held_departed_exact=exact.zero(), revenue_arrival_exact=exact.zero(),
                      revenue_active_exact=exact.zero(), integer_valued=jnp.bool_(True)),
    )


def exact_integer(x: jax.Array) -> jax.Array:
    """x is an integer in [0, 2^24): exact in float32 and a valid factor of ``exact.product``."""
    return (x >= 0) & (x < exact.MAX_FACTOR) & (x == jnp.floor(x))


def to_uint(x: jax.Array) -> jax.Array:
    """float32 -> uint32 for values passing ``exact_integer`` (others give 0)."""
    return jnp.where(exact_integer(x), x, 0.0).astype(jnp.uint32)


def accept_totals(totals: Totals, revenue: jax.Array, arrival: jax.Array,
                  departure: jax.Array, accepted: jax.Array) -> Totals:
    """The exact time-integral terms of a newly accepted request (no change when rejected)."""
    ok = exact_integer(revenue) & exact_integer(arrival) & exact_integer(departure)
    rev = jnp.where(accepted, to_uint(revenue), jnp.uint32(0))
    return totals.replace(
        revenue_arrival_exact=exact.add(totals.revenue_arrival_exact,
                                        exact.product(rev, to_uint(arrival))),
        revenue_active_exact=exact.add(totals.revenue_active_exact, exact.from_uint(rev)),
        integer_valued=totals.integer_valued & (ok | ~accepted))


Released = tuple
"""What a release changes: (res_cpu f32[N], res_sto f32[N], res_bw f32[E], held_departed,
held_departed_exact, revenue_active_exact)."""


@jax.custom_batching.custom_vmap
def write_rows(tables, row: jax.Array, values, when: jax.Array):
    """Each of ``tables`` (a pytree of [A + 1, ...] arrays) with its row ``row`` set to the
    matching leaf of ``values`` where ``when``; unchanged elsewhere.

    Under ``vmap`` (the environment) one loop writes the rows of the environments where
    ``when`` holds, each in place: a vmapped ``.at[row].set`` is a scatter over every
    environment's row, and XLA CPU's scatter of the [A + 1, E] bandwidth table cost ~6% of a
    1,024-environment step."""
    return jax.lax.cond(when, lambda t: jax.tree_util.tree_map(
        lambda x, v: x.at[row].set(v), t, values), lambda t: t, tables)


@write_rows.def_vmap
def _write_rows_vmap(axis_size, in_batched, tables, row, values, when):
    tables, row, values, when = jax.tree_util.tree_map(
        lambda x, b: x if b else jnp.broadcast_to(x, (axis_size,) + jnp.shape(x)),
        (tables, row, values, when), tuple(in_batched))
    todo = jnp.nonzero(when, size=axis_size, fill_value=0)[0]

    def body(k, tables):
        i = todo[k]
        return jax.tree_util.tree_map(
            lambda x, v: jax.lax.dynamic_update_slice(
                x, v[i][None, None], (i, row[i]) + (0,) * (x.ndim - 2)), tables, values)

    out = jax.lax.fori_loop(0, when.sum(dtype=jnp.int32), body, tables)
    return out, jax.tree_util.tree_map(lambda _: True, out)


def released(state: SimState) -> Released:
    t = state.totals
    return (state.res_cpu, state.res_sto, state.res_bw, t.held_departed, t.held_departed_exact,
            t.revenue_active_exact)


def release_row(acc: Released, hosts: jax.Array, cpu: jax.Array, sto: jax.Array,
                bw: jax.Array, revenue: jax.Array, arrival: jax.Array,
                departure: jax.Array) -> Released:
    """Give one departing request's resources back (its table row: ``hosts``/``cpu``/``sto``
    i32/f32[M], ``bw`` f32[E], and its ``revenue``, ``arrival``, ``departure``) and move its
    revenue · lifetime into the departed totals (eq. 9)."""
    res_cpu, res_sto, res_bw, held, held_exact, active_exact = acc
    # hosts are distinct (padding adds 0.0), so a one-hot sum is exact and keeps the loop
    # free of scatters (XLA CPU then compiles it as one small loop, sagin_jax.SMALL_LOOP_BYTES)
    onehot = hosts[:, None] == jnp.arange(res_cpu.shape[0])[None, :]  # [M, N]
    res_cpu = res_cpu + jnp.sum(jnp.where(onehot, cpu[:, None], 0.0), axis=0)
    res_sto = res_sto + jnp.sum(jnp.where(onehot, sto[:, None], 0.0), axis=0)
    res_bw = res_bw + bw
    held = held + revenue * (departure - arrival)
    rev = to_uint(revenue)
    held_exact = exact.add(held_exact, exact.product(rev, to_uint(departure)))
    active_exact = exact.subtract(active_exact, exact.from_uint(rev))
    return res_cpu, res_sto, res_bw, held, held_exact, active_exact


def with_released(state: SimState, acc: Released, leaving: jax.Array) -> SimState:
    """``state`` with a release's results ``acc`` and the ``leaving`` rows made inactive."""
    res_cpu, res_sto, res_bw, held, held_exact, active_exact = acc
    return state.replace(res_cpu=res_cpu, res_sto=res_sto, res_bw=res_bw,
                         slot_active=state.slot_active & ~leaving,
                         totals=state.totals.replace(held_departed=held,
                                                     held_departed_exact=held_exact,
                                                     revenue_active_exact=active_exact))


def release_expired(state: SimState, now: jax.Array) -> SimState:
    """Release every active request whose departure <= now (departures before arrivals), in
    row order (``release_row``).

    One table row per departing request (a ``while_loop``), so the cost is O(departures · E),
    not O(table size · E).
    """
    leaving0 = state.slot_active & (state.slot_departure <= now)

    def body(c):
        leaving, acc = c
        a = jnp.argmax(leaving)
        acc = release_row(acc, state.slot_hosts[a], state.slot_cpu[a], state.slot_sto[a],
                          state.slot_bw[a], state.slot_revenue[a], state.slot_arrival[a],
                          state.slot_departure[a])
        return leaving.at[a].set(False), acc

    _, acc = jax.lax.while_loop(lambda c: c[0].any(), body, (leaving0, released(state)))
    return with_released(state, acc, leaving0)


def release_expired_batched(state: SimState, now: jax.Array) -> SimState:
    """``release_expired`` as one masked reduction over the table (no loop: for accelerators).

    Same result for the integer-valued demands of generated scenarios (their float32 sums are
    exact in any order); with fractional demands the last bit may differ from the row-by-row
    sums.
    """
    leaving = state.slot_active & (state.slot_departure <= now)
    n = state.res_cpu.shape[0]
    rows = leaving[:, None]
    hosts = state.slot_hosts.ravel()
    res_cpu = state.res_cpu + jax.ops.segment_sum(
        jnp.where(rows, state.slot_cpu, 0.0).ravel(), hosts, num_segments=n)
    res_sto = state.res_sto + jax.ops.segment_sum(
        jnp.where(rows, state.slot_sto, 0.0).ravel(), hosts, num_segments=n)
    res_bw = state.res_bw + jnp.sum(jnp.where(rows, state.slot_bw, 0.0), axis=0)
    t = state.totals
    held = t.held_departed + jnp.sum(jnp.where(
        leaving, state.slot_revenue * (state.slot_departure - state.slot_arrival), 0.0))
    rev = to_uint(state.slot_revenue)
    held_exact = exact.add(t.held_departed_exact, exact.masked_sum(
        exact.product(rev, to_uint(state.slot_departure)), leaving))
    active_exact = exact.subtract(t.revenue_active_exact,
                                  exact.masked_sum(exact.from_uint(rev), leaving))
    return state.replace(res_cpu=res_cpu, res_sto=res_sto, res_bw=res_bw,
                         slot_active=state.slot_active & ~leaving,
                         totals=t.replace(held_departed=held, held_departed_exact=held_exact,
                                          revenue_active_exact=active_exact))


def release_all(state: SimState) -> SimState:
    """Release every active request (end of the horizon)."""
    return release_expired(state, jnp.float32(jnp.inf))
