"""The environment's transitions as pure functions over ``EnvState`` (no gymnax import).

They call the simulator's own steps (``simulation.online``: ``placement_mask``, ``place_step``,
``commit_request``; the link embedding and releases of ``embedding``/``simulation.state``), so a
request handled through the environment gets the same numbers as in ``simulate``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sagin_jax import features
from sagin_jax.embedding.batched import embed_links_batched
from sagin_jax.embedding.links import LinkEmbedding, embed_links
from sagin_jax.env.batching import RowView, batch_index, broadcast_unbatched, cond_rows
from sagin_jax.env.types import EnvParams, EnvState, Observation, ScenarioPool
from sagin_jax.policies.base import NodeContext
from sagin_jax.policies.rlvne import rlvne_columns
from sagin_jax.scenario.types import Requests, widen
from sagin_jax.simulation.metrics import running_metrics
from sagin_jax.simulation.online import (commit_request, place_step, placement_mask,
                                         start_placement)
from sagin_jax.simulation.state import (SimState, release_expired, release_expired_batched,
                                        release_row, released, with_released)

NODE_ORDERS = ("index", "nrm")
"""``index``: a request's nodes in index order (DDRL-NRA, RLVNE); ``nrm``: by NRM rank, highest
first (NRMVNE)."""


def request_at(state: EnvState, pool: ScenarioPool | None, k: jax.Array) -> Requests:
    """Request ``k`` of the state's request set (clipped to the last), widened."""
    if pool is None:
        reqs = state.requests
        return widen(reqs.at(jnp.minimum(k, reqs.n_requests - 1)))
    k = jnp.minimum(k, pool.requests.n_requests - 1)
    return widen(jax.tree_util.tree_map(lambda x: x[state.scenario, k], pool.requests))


def n_requests(state: EnvState, pool: ScenarioPool | None) -> int:
    return (state.requests if pool is None else pool.requests).n_requests


def node_order(req: Requests, rule: str) -> jax.Array:
    """i32[M] the order in which ``req``'s nodes are placed (``NODE_ORDERS``)."""
    if rule == "nrm":
        return features.rank_order(features.nrm_request(req)).astype(jnp.int32)
    return jnp.arange(req.max_nodes, dtype=jnp.int32)


def next_position(order: jax.Array, node_mask: jax.Array, start: jax.Array) -> jax.Array:
    """The first position >= ``start`` in ``order`` holding a real node, else M."""
    m = order.shape[0]
    real = node_mask[order] & (jnp.arange(m) >= start)
    return jnp.where(real.any(), jnp.argmax(real), m).astype(jnp.int32)


def objective(sim: SimState, clock: jax.Array, params: EnvParams) -> jax.Array:
    """O = w_ar · AR / ar_scale + w_rc · R/C + w_acr · ACR at time ``clock`` (eqs. 9-12)."""
    m = running_metrics(sim, clock)
    return params.w_ar * m.ar / params.ar_scale + params.w_rc * m.rc + params.w_acr * m.acr


FROZEN_SLOTS = ("slot_arrival", "slot_departure", "slot_revenue", "slot_hosts", "slot_cpu",
                "slot_sto", "slot_bw")
"""Active-table columns that releases only read and that only an accepted request's commit
writes: all but ``slot_active`` (the [A + 1, E] ``slot_bw`` is about half an environment's
state)."""


INDEXED_SLOTS = ("slot_hosts", "slot_cpu", "slot_sto", "slot_bw")
"""The two-dimensional ``FROZEN_SLOTS``, which a release reads one row at a time."""


def on_rows(pred: jax.Array, fn, state: EnvState, pool, fields: tuple[str, ...],
            sparse: bool) -> EnvState:
    """``fn(state, pool)`` where ``pred``, else ``state``, for an ``fn`` that changes only
    ``fields`` and does not write ``FROZEN_SLOTS``. ``fn`` must not close over traced values
    (pass them in ``pool``).

    ``sparse``: ``batching.cond_rows`` (under ``vmap`` only the environments taking the branch
    run ``fn``, and it reads ``INDEXED_SLOTS`` through ``RowView``s, by row); else ``fn`` runs
    everywhere and a select keeps its result where ``pred`` (accelerators: no loop over
    environments)."""
    frozen = {f: getattr(state.sim, f) for f in FROZEN_SLOTS}

    def carried(s: EnvState):
        return tuple(s.sim.replace(**{f: None for f in FROZEN_SLOTS}) if f == "sim"
                     else getattr(s, f) for f in fields)

    def whole(base: EnvState, moving, slots) -> EnvState:
        s = base.replace(**dict(zip(fields, moving)))
        return s.replace(sim=s.sim.replace(**slots)) if "sim" in fields else s

    # what fn reads but does not change, without the fields it does (no aliasing of the carry)
    base = state.replace(**{f: None for f in fields})

    indexed = {f: frozen[f] for f in INDEXED_SLOTS}
    sliced = {f: v for f, v in frozen.items() if f not in INDEXED_SLOTS}

    def step(consts, moving, indexed):
        base, slots, pool = consts
        return carried(fn(whole(base, moving, {**slots, **indexed}), pool))

    if sparse:
        moving = cond_rows(step, pred, (base, sliced, pool), carried(state), indexed)
    else:
        new, old = step((base, sliced, pool), carried(state), indexed), carried(state)
        moving = jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)
    return whole(state.replace(**{f: None for f in fields}), moving, frozen)


@jax.custom_batching.custom_vmap
def release_env(sim: SimState, now: jax.Array) -> SimState:
    """``release_expired`` for a step of the environment, which its users ``vmap``.

    Under ``vmap`` one loop runs over the environments with departures and, inside it, over
    their departing rows, each ``release_row`` reading its table row where it lies: slicing
    each environment's [A + 1, E] table out first would cost more than the release. Same order
    per environment (rows ascending), so the same numbers."""
    return release_expired(sim, now)


@release_env.def_vmap
def _release_env_vmap(axis_size, in_batched, sim, now):
    sim, now = broadcast_unbatched((sim, now), tuple(in_batched), axis_size)
    leaving = sim.slot_active & (sim.slot_departure <= now[:, None])  # [B, A + 1]
    some = leaving.any(axis=1)
    envs = jnp.nonzero(some, size=axis_size, fill_value=0)[0]

    def one_env(k, acc):
        i = envs[k]

        def one_row(c):
            left, acc = c
            a = jnp.argmax(left)  # rows ascending, as release_expired
            mine = jax.tree_util.tree_map(lambda x: x[i], acc)
            new = release_row(mine, *(batch_index(getattr(sim, f), i, a) for f in (
                "slot_hosts", "slot_cpu", "slot_sto", "slot_bw", "slot_revenue",
                "slot_arrival", "slot_departure")))
            acc = jax.tree_util.tree_map(lambda x, y: x.at[i].set(y), acc, new)
            return left & (jnp.arange(left.shape[0]) != a), acc

        return jax.lax.while_loop(lambda c: c[0].any(), one_row, (leaving[i], acc))[1]

    acc = jax.lax.fori_loop(0, some.sum(dtype=jnp.int32), one_env, released(sim))
    out = with_released(sim, acc, leaving)
    return out, jax.tree_util.tree_map(lambda _: True, out)


_STARTING = ("request", "order", "position", "work", "inc_bw", "hop_sum")


def start_request(state: EnvState, pool, rule: str) -> EnvState:
    """Start the next request's node stage on the residuals as they are (released already)."""
    k = state.request + 1
    req = request_at(state, pool, k)
    order = node_order(req, rule)
    return state.replace(
        request=k, order=order, position=next_position(order, req.node_mask, 0),
        work=start_placement(state.sim, req.max_nodes),
        inc_bw=features.residual_incident_bw(state.sub, state.sim.res_bw),
        hop_sum=jnp.zeros_like(state.hop_sum))


def advance(state: EnvState, pool, go: jax.Array, rule: str, batched: bool) -> EnvState:
    """Where ``go``: move to the next request, release what departs by its arrival
    (``release_env``) and start its node stage (``start_request``, ``on_rows``). Elsewhere
    nothing changes."""
    k = state.request + 1
    arrival = request_at(state, pool, k).arrival
    now = jnp.where(go & (k < n_requests(state, pool)), arrival, -jnp.inf)  # -inf: no release
    sim = (release_expired_batched if batched else release_env)(state.sim, now)
    state = state.replace(sim=sim)
    return on_rows(go, lambda s, pool: start_request(s, pool, rule), state, pool, _STARTING,
                   sparse=not batched)


def current_node(state: EnvState) -> jax.Array:
    return state.order[jnp.minimum(state.position, state.order.shape[0] - 1)]


def current_mask(state: EnvState, req: Requests, pool) -> jax.Array:
    """bool[N] feasible hosts of the node being placed; all false once the set is done."""
    live = (state.position < state.order.shape[0]) & (state.request < n_requests(state, pool))
    return placement_mask(state.sub, state.work, req, current_node(state)) & live


class _SubstrateRow:
    """Substrate ``row`` of a batched one, as ``embed_links`` reads it: the N x N tables
    indexed in place, the other fields sliced where they are used."""

    _TABLES = ("hops", "tree_parent", "edge_id")

    def __init__(self, sub, row: jax.Array):
        self._sub, self._row = sub, row

    def __getattr__(self, name: str):
        x = getattr(self._sub, name)
        return RowView(x, self._row) if name in self._TABLES else x[self._row]

    @property
    def n_nodes(self) -> int:
        return self._sub.cpu.shape[-1]

    @property
    def n_edges(self) -> int:
        return self._sub.edge_u.shape[-1]


def _no_links(res_bw: jax.Array, req: Requests) -> LinkEmbedding:
    """``embed_links``' result for an inactive request."""
    return LinkEmbedding(ok=jnp.bool_(False), res_bw=res_bw, usage=jnp.zeros_like(res_bw),
                         hops=jnp.zeros((req.link_mask.shape[-1],), jnp.int32), paths=None,
                         trips=jnp.int32(0))


@jax.custom_batching.custom_vmap
def embed_env_links(sub, res_bw: jax.Array, req: Requests, hosts: jax.Array,
                    active: jax.Array) -> LinkEmbedding:
    """``embed_links`` for a step of the environment, which its users ``vmap``.

    Under ``vmap`` only the environments whose request is being committed (``active``, about
    one in six per step) embed links, one after another, each with the sequential step's code
    and its substrate's N x N tables read where they lie in the batch (``_SubstrateRow``:
    with them copied out first, 1,024-environment steps took 8.1-10.3 ms against 6.8-7.4 ms);
    the others get ``embed_links``' result for an inactive request. A plain ``vmap`` of
    ``embed_links`` would run every environment's BFS loops to the slowest one's trip count at
    every step (the batched search cost ~8x the rest of a 1,024-environment step). Same
    results either way."""
    return jax.lax.cond(active, lambda: embed_links(sub, res_bw, req, hosts, jnp.bool_(True)),
                        lambda: _no_links(res_bw, req))


@embed_env_links.def_vmap
def _embed_env_links_vmap(axis_size, in_batched, sub, res_bw, req, hosts, active):
    sub, res_bw, req, hosts, active = broadcast_unbatched(
        (sub, res_bw, req, hosts, active), tuple(in_batched), axis_size)
    todo = jnp.nonzero(active, size=axis_size, fill_value=0)[0]

    def body(k, out):
        i = todo[k]
        mine = jax.tree_util.tree_map(lambda x: x[i], (res_bw, req, hosts))
        new = embed_links(_SubstrateRow(sub, i), *mine, jnp.bool_(True))
        return jax.tree_util.tree_map(lambda x, y: x.at[i].set(y), out, new)

    out = jax.lax.fori_loop(0, active.sum(dtype=jnp.int32), body, jax.vmap(_no_links)(res_bw, req))
    return out, jax.tree_util.tree_map(lambda _: True, out)


def finish(state: EnvState, req: Requests, handled: jax.Array, batched: bool):
    """Embed the links and commit or reject the current request where ``handled``;
    -> (state, accepted, RequestValue, overflow)."""
    ok = ~state.work.failed
    if batched:
        links = embed_links_batched(state.sub, state.sim.res_bw, req, state.work.hosts,
                                    handled & ok)
    else:  # the env is vmapped by its users
        links = embed_env_links(state.sub, state.sim.res_bw, req, state.work.hosts,
                                handled & ok)
    sim, accepted, value, overflow = commit_request(
        state.sim, req, ok, state.work.hosts, state.work.res_cpu, state.work.res_sto, links,
        handled=handled, sparse=not batched)
    return (state.replace(sim=sim, clock=jnp.where(handled, req.arrival, state.clock)),
            accepted, value, overflow)


_MOVING = ("sim", "request", "order", "position", "work", "inc_bw", "hop_sum", "clock")
"""The ``EnvState`` fields a request's rejection changes."""


def stuck(state: EnvState, pool) -> jax.Array:
    """The node to place has no feasible host (and the request set is not done)."""
    return ((state.request < n_requests(state, pool))
            & ~current_mask(state, request_at(state, pool, state.request), pool).any())


def skip_unplaceable(state: EnvState, pool, rule: str, batched: bool) -> EnvState:
    """Reject requests while the node to place has no feasible host (the simulator's node stage
    stops there too), so an agent is only asked when it has a choice. Only the environments
    that are stuck run the loop (``on_rows``); a rejection there writes no table row, and the
    releases between two rejections read the departing rows in place (``INDEXED_SLOTS``: with
    each environment's rows copied out first, 1,024-environment steps late in an episode took
    1.34 ms in this loop instead of 0.51 ms)."""
    def reject_while_stuck(s: EnvState, pool) -> EnvState:
        return jax.lax.while_loop(lambda s: stuck(s, pool), lambda s: reject(s, pool), s)

    def reject(s: EnvState, pool) -> EnvState:
        req = request_at(s, pool, s.request)
        w = s.work
        sim, _, _, _ = commit_request(s.sim, req, False, w.hosts, w.res_cpu, w.res_sto,
                                      _no_links(s.sim.res_bw, req))
        s = s.replace(sim=sim, clock=req.arrival)
        return advance(s, pool, jnp.bool_(True), rule, batched)

    return on_rows(stuck(state, pool), reject_while_stuck, state, pool, _MOVING,
                   sparse=not batched)


def node_context(state: EnvState, pool) -> NodeContext:
    """What a ``NodePolicy`` sees for the node being placed (``policy.select(key, params,
    node_context(...), aux)`` then drives the environment with a project policy)."""
    req = request_at(state, pool, state.request)
    return NodeContext(sub=state.sub, req=req, res_cpu=state.work.res_cpu,
                       res_sto=state.work.res_sto, res_bw=state.sim.res_bw,
                       used=state.work.used, hosts=state.work.hosts, node=current_node(state),
                       feasible=current_mask(state, req, pool))


def observe(state: EnvState, pool) -> Observation:
    """The observation of ``state`` (``types.NODE_FEATURES``)."""
    ctx = node_context(state, pool)
    sub, req, j = ctx.sub, ctx.req, ctx.node
    raw = jnp.stack([ctx.res_cpu, ctx.res_sto, state.inc_bw, sub.ad], axis=-1)
    # each domain's largest |value| per column: a masked max (no scatter under vmap) along the
    # node axis laid out last, [U, 4, N] (half the time of [U, N, 4] under vmap on XLA CPU)
    member = sub.domain[None, :] == jnp.arange(sub.n_domains)[:, None]  # [U, N]
    tops = jnp.max(jnp.where(member[:, None, :], jnp.abs(raw).T[None], 0.0), axis=-1)  # [U, 4]
    top = tops[sub.domain]
    ddrl = raw / jnp.where(top > 0, top, 1.0)
    # RLVNE's mean hops to the hosts from the running sum (``place``): a gather of one column
    # per step instead of M
    rlvne = rlvne_columns(ctx.res_cpu, state.degree, state.inc_bw, state.hop_sum,
                          (ctx.hosts >= 0).sum())
    nodes = jnp.concatenate([ddrl, rlvne, raw[:, :3]], axis=-1)
    m = req.max_nodes
    after = (jnp.arange(m) > state.position) & req.node_mask[state.order]
    rest = jnp.stack([after.sum().astype(jnp.float32),
                      jnp.sum(jnp.where(after, req.cpu[state.order], 0.0)),
                      jnp.sum(jnp.where(after, req.sto[state.order], 0.0))])
    demand = jnp.stack([req.cpu[j], req.sto[j], features.request_incident_bw(req)[j]])
    return Observation(nodes=nodes, demand=demand, domain=req.domain[j], remaining=rest,
                       action_mask=ctx.feasible)


def place(state: EnvState, pool, action: jax.Array, rule: str, batched: bool):
    """One agent step: map the node being placed onto ``action``; after the request's last node
    (or an infeasible ``action``, which rejects the request) commit it and move to the next
    request. -> (state, accepted, RequestValue, overflow, finished, hosts i32[M] of the request
    as committed or rejected)."""
    req = request_at(state, pool, state.request)
    j = current_node(state)
    mask = current_mask(state, req, pool)
    # an action outside [0, N) is infeasible (place_step would clip it onto a real node)
    in_range = (action >= 0) & (action < mask.shape[0])
    work, placed = place_step(state.work, req, j, action, mask & in_range, jnp.bool_(True))
    position = next_position(state.order, req.node_mask, state.position + 1)
    # integers: the running sum equals policies.rlvne.hops_to_hosts exactly; the host's row,
    # as hops is symmetric (undirected links), reads one contiguous row instead of a column
    hops = state.sub.hops[jnp.clip(action, 0, mask.shape[0] - 1)].astype(jnp.float32)
    state = state.replace(work=work, position=position,
                          hop_sum=state.hop_sum + jnp.where(placed, hops, 0.0))
    # once the set is done a step changes nothing (gymnax resets before it is read)
    running = state.request < n_requests(state, pool)
    finished = running & (work.failed | (position >= state.order.shape[0]))
    state, accepted, value, overflow = finish(state, req, finished, batched)
    state = advance(state, pool, finished, rule, batched)
    return state, accepted, value, overflow, finished, work.hosts
