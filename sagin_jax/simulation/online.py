"""One online pass over a request set: ``lax.scan`` over requests in arrival order.

For each request: release what has departed, map its nodes with the policy (eqs. 1, 2, 4, 5), map
its links by min-hop BFS (eqs. 3, 6), commit all or nothing, and record the outcome and the running
metrics (eqs. 7-11). ``jit(vmap(simulate))`` runs many seeds in one compiled call.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from sagin_jax.embedding.accounting import RequestValue, request_value
from sagin_jax.embedding.batched import embed_links_batched
from sagin_jax.embedding.links import LinkEmbedding, embed_links
from sagin_jax.embedding.nodes import feasible_hosts, place_node
from sagin_jax.policies.base import NodeContext, NodePolicy
from sagin_jax.scenario.types import Requests, Substrate, widen
from sagin_jax.simulation.metrics import Metrics, running_metrics
from sagin_jax.simulation.state import (SimState, accept_totals, init_state, release_expired,
                                        release_expired_batched, write_rows)


@struct.dataclass
class NodeStage:
    ok: jax.Array  # bool: every request node got a feasible host
    hosts: jax.Array  # i32[M] host per request node, -1 where none was chosen
    res_cpu: jax.Array  # f32[N] working copy after the placements
    res_sto: jax.Array
    extra: Any  # the policy's per-placement ``extra`` summed over the placed nodes
    trips: jax.Array  # i32 node-loop trips

    @property
    def logp(self) -> jax.Array:
        """Σ log-probability of the choices made."""
        return self.extra["logp"]


def sum_placed(total, extra, placed: jax.Array):
    """``total + extra`` leaf by leaf where ``placed``, else ``total`` (adds an exact 0.0)."""
    return jax.tree_util.tree_map(lambda a, b: a + jnp.where(placed, b, jnp.zeros_like(b)),
                                  total, extra)


@struct.dataclass
class Placement:
    """The working copy of one request's node stage."""

    res_cpu: jax.Array  # f32[N] residual CPU with this request's placed nodes deducted
    res_sto: jax.Array  # f32[N]
    used: jax.Array  # bool[N] hosts taken by this request
    hosts: jax.Array  # i32[M] host per request node, -1 where none was chosen
    failed: jax.Array  # bool: some real node found no feasible host (or got an infeasible one)


def start_placement(state: SimState, max_nodes: int) -> Placement:
    """The working copy before a request's first node: the residuals at its arrival."""
    n = state.res_cpu.shape[0]
    return Placement(res_cpu=state.res_cpu, res_sto=state.res_sto, used=jnp.zeros((n,), bool),
                     hosts=jnp.full((max_nodes,), -1, jnp.int32), failed=jnp.bool_(False))


def placement_mask(sub: Substrate, work: Placement, req: Requests, j: jax.Array) -> jax.Array:
    """bool[N]: the feasible hosts of request node ``j`` given the working copy (eqs. 1, 2, 4,
    5)."""
    return feasible_hosts(sub, work.res_cpu, work.res_sto, work.used, req.cpu[j], req.sto[j],
                          req.domain[j])


def place_step(work: Placement, req: Requests, j: jax.Array, host: jax.Array,
               feasible: jax.Array, live: jax.Array) -> tuple[Placement, jax.Array]:
    """Map request node ``j`` onto ``host`` when ``live``; -> (working copy, placed).

    ``host`` is clipped to the substrate's node range; a host outside ``feasible`` is a failed
    placement (``failed`` is set, the working copy is unchanged), as is any step once ``failed``
    is set by the caller's ``live``."""
    host = jnp.clip(host, 0, work.res_cpu.shape[0] - 1)
    placed = live & feasible[host]
    cpu, sto, used = place_node(work.res_cpu, work.res_sto, work.used, host, req.cpu[j],
                                req.sto[j], placed)
    return Placement(res_cpu=cpu, res_sto=sto, used=used,
                     hosts=work.hosts.at[j].set(jnp.where(placed, host, work.hosts[j])),
                     failed=work.failed | (live & ~placed)), placed


def map_nodes(policy: NodePolicy, params, key, sub: Substrate, state: SimState,
              req: Requests, unrolled: bool = False) -> NodeStage:
    """Stage 1: place the request's nodes one by one in the policy's order.

    A ``while_loop`` over the request's real nodes that stops at the first failure, or with
    ``unrolled`` all ``max_nodes`` steps unrolled with masks (no loop trips; a step after a
    failure or on padding changes nothing, so the result is the same).
    """
    m, n = req.max_nodes, sub.n_nodes
    blank = NodeContext(sub=sub, req=req, res_cpu=state.res_cpu, res_sto=state.res_sto,
                        res_bw=state.res_bw, used=jnp.zeros((n,), bool),
                        hosts=jnp.full((m,), -1, jnp.int32), node=jnp.int32(-1),
                        feasible=jnp.zeros((n,), bool))
    order, aux = policy.prepare(params, blank)
    extra_shape = jax.eval_shape(policy.select, key, params, blank, aux)[1]
    zero_extra = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), extra_shape)
    n_live = req.node_mask.sum()

    def place(carry):
        i, done, work, extra_sum = carry
        j = order[i]
        live = req.node_mask[j] & ~work.failed
        feas = placement_mask(sub, work, req, j)
        ctx = blank.replace(res_cpu=work.res_cpu, res_sto=work.res_sto, used=work.used,
                            hosts=work.hosts, node=j, feasible=feas)
        host, extra = policy.select(jax.random.fold_in(key, i), params, ctx, aux)
        work, placed = place_step(work, req, j, host, feas, live)
        extra_sum = sum_placed(extra_sum, extra, placed)
        done = done + req.node_mask[j].astype(jnp.int32)
        return i + 1, done, work, extra_sum

    def more(carry):
        i, done, work = carry[0], carry[1], carry[2]
        return (i < m) & (done < n_live) & ~work.failed

    # loop over the request's real nodes only, stopping at the first one with no feasible host
    init = (jnp.int32(0), jnp.int32(0), start_placement(state, m), zero_extra)
    if unrolled:
        carry = init
        for _ in range(m):
            carry = place(carry)
        _, _, work, extra_sum = carry
        trips = jnp.int32(0)
    else:
        trips, _, work, extra_sum = jax.lax.while_loop(more, place, init)
    return NodeStage(ok=~work.failed, hosts=work.hosts, res_cpu=work.res_cpu,
                     res_sto=work.res_sto, extra=extra_sum, trips=trips)


@struct.dataclass
class Outcome:
    """Per-request record of one online pass."""

    accepted: jax.Array  # bool
    hosts: jax.Array  # i32[M] (also for rejected requests: the choices made before failing)
    value: RequestValue  # revenue / cost (eqs. 7, 8); zero when rejected
    metrics: Metrics  # running metrics after this request
    extra: Any  # the policy's ``extra`` summed over the placed nodes ({"logp": ..., ...})
    paths: Any  # i32[L, P] path nodes (audit only)
    overflow: jax.Array  # bool: accepted but no free active-table slot (never expected)
    trips: jax.Array  # i32 sequential loop trips of this request step (``trips_per_request``)

    @property
    def logp(self) -> jax.Array:
        """Σ log-probability of the node choices."""
        return self.extra["logp"]


STRATEGIES = ("sequential", "batched", "kernel")
STRATEGY_ENV = "SAGIN_JAX_REQUEST_STEP"


def request_step_strategy(strategy: str | None = None) -> str:
    """How a request step is compiled; the one place that chooses by backend.

    * ``"sequential"``: data-dependent ``while_loop``s (release, node, link loops, one BFS per
      link). On a CPU each loop compiles into one small function, the fastest there.
    * ``"batched"``: few loop trips per request (``Outcome.trips``), for accelerators, where
      every trip is a host round trip: release as one masked reduction, the node loop unrolled,
      all links mapped at once in rounds (``embedding.batched``).

    * ``"kernel"``: a whole pass as one Pallas program per seed (``sagin_jax.kernels``), for
      GPUs; ``batch.simulate_batch`` runs it for the policies it expresses and falls back to
      ``"batched"`` otherwise (other policies, recorded paths, a mesh, a single request step).

    All give the same results (tested against each other and the reference). ``strategy``, else
    the environment variable ``SAGIN_JAX_REQUEST_STEP``, else by backend: sequential on cpu,
    kernel on gpu, batched on tpu.
    """
    backend = jax.default_backend()
    choice = strategy or os.environ.get(STRATEGY_ENV) or (
        {"cpu": "sequential", "gpu": "kernel"}.get(backend, "batched"))
    if choice not in STRATEGIES:
        raise ValueError(f"request-step strategy must be one of {STRATEGIES}, got {choice!r} "
                         f"(argument or ${STRATEGY_ENV})")
    return choice


def commit_request(state: SimState, req: Requests, nodes_ok: jax.Array, hosts: jax.Array,
                   res_cpu: jax.Array, res_sto: jax.Array, links: LinkEmbedding,
                   handled: jax.Array | bool = True, sparse: bool = True):
    """Accept or reject a mapped request atomically and update the totals (eqs. 7-9, 11);
    -> (state, accepted, RequestValue, overflow).

    Accepted when every node got a host (``nodes_ok``), every link a path (``links.ok``) and the
    active table has a free row (``overflow`` marks the last case failing alone). The residuals
    become the working copies ``res_cpu``/``res_sto``/``links.res_bw`` only when accepted; the
    request's table row is written whatever the outcome (one row, O(E)) and becomes active only
    if accepted, so a rejected request changes nothing that is read.

    ``handled`` false (traced; the environment between two nodes of a request) leaves
    everything as it was: no row is written and no total moves. ``nodes_ok=False`` (static: a
    request rejected at the node stage, with ``links`` of none) writes no row either: the
    totals move as for any rejection. ``sparse`` (with a traced
    ``handled``): under ``vmap`` only the handled rows are written, one after another
    (``state.write_rows``); else every environment writes (the accelerators' layout)."""
    now = req.arrival
    free = ~state.slot_active[:-1]
    has_free = free.any()
    slot = jnp.where(has_free, jnp.argmax(free), free.shape[0])  # the scratch row when full
    accepted = nodes_ok & links.ok & has_free
    overflow = nodes_ok & links.ok & ~has_free
    arrived = jnp.int32(1)
    if handled is not True:
        slot = jnp.where(handled, slot, free.shape[0])
        accepted, overflow = accepted & handled, overflow & handled
        arrived = handled.astype(jnp.int32)
    value = request_value(req, links.hops, accepted)
    keep = lambda new, old: jnp.where(accepted, new, old)  # noqa: E731
    row = {"slot_active": accepted, "slot_arrival": now,
           "slot_departure": now + req.lifetime, "slot_revenue": value.revenue,
           "slot_hosts": jnp.maximum(hosts, 0),
           "slot_cpu": jnp.where(req.node_mask, req.cpu, 0.0),
           "slot_sto": jnp.where(req.node_mask, req.sto, 0.0), "slot_bw": links.usage}
    tables = {k: getattr(state, k) for k in row}
    if nodes_ok is False:  # rejected before its links: no row is read, none is written
        tables = {}
    elif handled is True:
        tables = {k: tables[k].at[slot].set(v) for k, v in row.items()}
    elif sparse:  # the environment under vmap on a CPU: a loop over the handled rows
        tables = write_rows(tables, slot, row, handled)
    else:  # accelerators: every environment writes, an unhandled one its row's own values
        tables = {k: tables[k].at[slot].set(jnp.where(handled, v, tables[k][slot]))
                  for k, v in row.items()}
    state = state.replace(
        res_cpu=keep(res_cpu, state.res_cpu), res_sto=keep(res_sto, state.res_sto),
        res_bw=keep(links.res_bw, state.res_bw), **tables)
    t = state.totals
    state = state.replace(totals=t.replace(
        arrived=t.arrived + arrived, accepted=t.accepted + accepted.astype(jnp.int32),
        revenue=t.revenue + value.revenue, cost=t.cost + value.cost,
        link_revenue=t.link_revenue + value.link_revenue,
        link_cost=t.link_cost + value.link_cost))
    state = state.replace(totals=accept_totals(state.totals, value.revenue, now,
                                               now + req.lifetime, accepted))
    return state, accepted, value, overflow


def handle_request(policy: NodePolicy, params, key, sub: Substrate, state: SimState,
                   req: Requests, record_paths: bool = False, strategy: str | None = None):
    """Release expired requests, embed ``req`` atomically, update totals; -> (state, Outcome).

    ``strategy``: see ``request_step_strategy`` (same results, different loop structure)."""
    now = req.arrival
    batched = request_step_strategy(strategy) in ("batched", "kernel")  # kernel: its fallback
    active_before = state.slot_active.sum(dtype=jnp.int32)
    with jax.named_scope("release"):
        state = (release_expired_batched if batched else release_expired)(state, now)
    # the sequential release loop takes one trip per departure; the batched release none
    release_trips = 0 if batched else active_before - state.slot_active.sum(dtype=jnp.int32)
    with jax.named_scope("map_nodes"):
        nodes = map_nodes(policy, params, key, sub, state, req, unrolled=batched)
    with jax.named_scope("embed_links"):
        links = (embed_links_batched if batched else embed_links)(
            sub, state.res_bw, req, nodes.hosts, nodes.ok, record_paths)
    state, accepted, value, overflow = commit_request(state, req, nodes.ok, nodes.hosts,
                                                      nodes.res_cpu, nodes.res_sto, links)
    out = Outcome(accepted=accepted, hosts=nodes.hosts, value=value,
                  metrics=running_metrics(state, now), extra=nodes.extra,
                  paths=links.paths if record_paths else None, overflow=overflow,
                  trips=release_trips + nodes.trips + links.trips)
    return state, out


def trips_per_request(outcome: Outcome) -> tuple[float, int]:
    """(mean, max) over all requests (and seeds) of the sequential ``while_loop`` trips one
    request step took: departures released, request nodes placed, request links embedded, path
    steps walked and BFS levels run (policy-internal loops such as GRC's power iteration are not
    counted). Each trip is a host round trip on a GPU, so this is the latency proxy there."""
    trips = np.asarray(outcome.trips)
    return float(trips.mean()), int(trips.max())


def run_online(policy: NodePolicy, params, key, sub: Substrate, requests: Requests,
               state: SimState, record_paths: bool = False, strategy: str | None = None):
    """Scan ``handle_request`` over all requests from ``state``; -> (final state, Outcome[R]).

    The scan runs over request indices and reads each request from ``requests`` in the step:
    scanning over ``requests`` itself would, once vmapped over seeds, make XLA keep a copy of
    every seed's requests transposed to [R, seeds, ...]."""
    keys = jax.random.split(key, requests.n_requests)

    def step(s, xs):
        i, k = xs
        return handle_request(policy, params, k, sub, s, widen(requests.at(i)), record_paths,
                              strategy)

    return jax.lax.scan(step, state, (jnp.arange(requests.n_requests), keys))


def simulate(policy: NodePolicy, params, key, sub: Substrate, requests: Requests,
             max_active: int, record_paths: bool = False, strategy: str | None = None):
    """One online pass from an empty network; -> (final state, Outcome[R]). Pure; jit/vmap it."""
    state = init_state(sub, max_active, requests.max_nodes)
    return run_online(policy, params, key, sub, requests, state, record_paths=record_paths,
                      strategy=strategy)
