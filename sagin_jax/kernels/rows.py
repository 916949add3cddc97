"""From the kernel's outcome rows to the simulator's ``Outcome``, in XLA, with the simulator's own
functions: revenue and cost by ``accounting.request_value`` (eqs. 7, 8), the running metrics by
``metrics.running_metrics`` (eqs. 9-11) over the totals and active-request table that
``online.handle_request`` keeps.

The table here holds only what the metrics read (arrival, departure, revenue); the residuals and
the per-row demands stay in the kernel. Rows are released with
``state.release_expired_batched`` (one masked reduction, no loop): AR is computed exactly for the
integer-valued inputs of generated scenarios and is then the sequential strategy's value; with
fractional inputs its float fallback may differ from the sequential release order in the last bit.
The rows are read by one ``lax.scan`` of R steps, a loop with a fixed trip count (on a GPU no
host round trip, but R steps of small kernels).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sagin_jax.embedding.accounting import request_value
from sagin_jax.kernels.online import KernelRows
from sagin_jax.scenario.types import Requests, Substrate, widen
from sagin_jax.simulation.metrics import running_metrics
from sagin_jax.simulation.online import Outcome
from sagin_jax.simulation.state import SimState, accept_totals, init_state, release_expired_batched


def metrics_state(max_active: int) -> SimState:
    """``init_state`` with one-node, one-link residuals and row demands: the metrics need the
    table's arrival, departure and revenue and the totals only."""
    one = Substrate(**{f: jnp.zeros((1,) * (2 if f in ("nbr_node", "nbr_edge", "hops",
                                                        "tree_parent", "edge_id",
                                                        "domain_nodes") else 1),
                                    jnp.bool_ if f == "edge_mask" else jnp.float32)
                       for f in Substrate.__dataclass_fields__})
    return init_state(one, max_active, 1)


def outcome_rows(sub: Substrate, req: Requests, rows: KernelRows, max_active: int,
                 state: SimState | None = None):
    """One seed's ``Outcome[R]`` (paths not recorded, ``trips`` 0: the loops run in the kernel)
    and final metrics state from its rows, from ``state`` (``metrics_state``: an empty network)."""
    del sub  # the rows carry everything the outcome needs

    def step(state, k):
        q = widen(req.at(k))
        now = q.arrival
        state = release_expired_batched(state, now)
        accepted = rows.status[k] == 1
        value = request_value(q, rows.hops[k], accepted)
        free = ~state.slot_active[:-1]
        slot = jnp.where(free.any(), jnp.argmax(free), free.shape[0])
        put = lambda table, v: table.at[slot].set(v)  # noqa: E731
        state = state.replace(
            slot_active=put(state.slot_active, accepted),
            slot_arrival=put(state.slot_arrival, now),
            slot_departure=put(state.slot_departure, now + q.lifetime),
            slot_revenue=put(state.slot_revenue, value.revenue))
        t = state.totals
        t = t.replace(arrived=t.arrived + 1, accepted=t.accepted + accepted.astype(jnp.int32),
                      revenue=t.revenue + value.revenue, cost=t.cost + value.cost,
                      link_revenue=t.link_revenue + value.link_revenue,
                      link_cost=t.link_cost + value.link_cost)
        state = state.replace(totals=accept_totals(t, value.revenue, now, now + q.lifetime,
                                                   accepted))
        out = Outcome(accepted=accepted, hosts=rows.hosts[k], value=value,
                      metrics=running_metrics(state, now), extra={"logp": rows.logp[k]},
                      paths=None, overflow=rows.status[k] == 2, trips=jnp.int32(0))
        return state, out

    start = metrics_state(max_active) if state is None else state
    return jax.lax.scan(step, start, jnp.arange(req.n_requests))
