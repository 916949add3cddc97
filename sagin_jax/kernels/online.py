"""The "kernel" request-step strategy: a whole online pass as one Pallas (Triton) program per seed.

``grid`` = the seeds. Each program holds its seed's residual CPU, storage and bandwidth and its
active-request table, and handles the requests in arrival order with in-kernel loops (no host
round trip): release what has departed, place the nodes with the policy (eqs. 1, 2, 4, 5), map
the links by min-hop BFS over eligible links (eqs. 3, 6), commit all or nothing
(docs/rules.md). It writes one outcome row per request (``KernelRows``); revenue, cost and the
running metrics are computed from the rows in XLA by the simulator's own functions
(``kernels.rows``).

The rules are those of ``simulation.online`` with the "sequential" strategy, step for step:

* release: departing rows in increasing row order, each row's CPU, storage and bandwidth added
  back (``state.release_expired``);
* nodes: the policy's order, stop at the first request node with no feasible host; a ranked
  choice is the feasible host of highest score, ties by smallest id (``base.argmax_feasible``);
* links: the order of ``layout.request_arrays``; the static min-hop tree's path when all its
  links are eligible, else a level-synchronous BFS whose parent of a node is its smallest-id
  neighbour one level closer (neighbour lists are sorted by id); the demand is subtracted from
  each path link before the next request link (``links.embed_links``);
* commit: accepted when every node and link was mapped and the table has a free row (the first
  free row is taken, as ``online.handle_request``).

Sums of residuals are the sequential strategy's in the same order, except the substrate NRM
score's Σ of incident residual bandwidth, a reduction whose order may differ: exact for the
integer-valued capacities and demands of generated scenarios, as ``embedding.batched`` states.

Policies (``KERNEL_POLICIES``), test mode:

* NRMVNE, and GRC (``baselines.GRC``): the substrate score from the residuals at the request's
  arrival; GRC's rank vector is iterated in the kernel to the same stopping rule, each node's
  sum taken in the XLA path's order (``layout.grc_slots``); the request's node order (NRM or
  GRC of the request) is computed in XLA before the kernel;
* random: uniforms drawn outside the kernel from the XLA path's keys (``uniforms``);
* DDRL-NRA and RLVNE greedy: the per-domain or central linear score on the normalised
  features, argmax over the feasible nodes, ties by smallest id, and the choice's
  log-probability. The score is summed feature by feature here and by a dot product in XLA:
  the same decisions unless two feasible nodes' scores lie within rounding of each other.

Training (``train=True``, ``kernels.train``): one call per REINFORCE batch from the carried state
(``STATE_FIELDS``), the sampled DDRL-NRA and RLVNE (``KERNEL_TRAIN_POLICIES``): softmax over the
feasible nodes, inverse-CDF draws from uniforms made outside the kernel from the XLA path's keys,
and per request the analytic Σ ∇ log π and Σ -log π · ∇ log π (rows ``grad_*``, ``ent_*``).

A sampled test pass (``simulate`` with a training policy) and the audit trail's paths are not
expressed in the kernel: ``policy_kind`` raises ``NotImplementedError`` for them and
``batch.simulate_batch`` keeps the XLA strategy.

``interpret=True`` runs the same kernel on the CPU (Pallas interpret mode) for the tests;
``kernels.cost.cuda_cost`` lowers it for a GPU on a machine without one.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plt

from sagin_jax import features
from sagin_jax.kernels.layout import (REQUEST_FIELDS, SUBSTRATE_FIELDS, Dims, next_pow2,
                                      request_arrays, substrate_arrays)
from sagin_jax.policies.base import NodePolicy
from sagin_jax.scenario.types import Requests, Substrate, widen

KERNEL_TRAIN_POLICIES = {"ddrl-nra": "ddrl", "rlvne": "rlvne"}
"""Sampled (training) policies (``NodePolicy.name``) the training kernel expresses -> kind."""

KERNEL_POLICIES = {"nrmvne": "nrmvne", "grc": "grc", "ddrl-nra-greedy": "ddrl",
                   "rlvne-greedy": "rlvne", "random": "random"}
"""Policies (``NodePolicy.name``) the kernel expresses -> the kernel's policy kind. "grc" is
``baselines.GRC`` (``GRC_DAMPING``, ``GRC_TOL``, ``GRC_MAX_ITER``): a ``make_grc`` policy with
other settings has the same name, so the kernel must not be used for it."""

NUM_WARPS = 4
GRC_DAMPING, GRC_TOL, GRC_MAX_ITER = 0.85, 1e-5, 1000  # baselines.GRC (make_grc's defaults)

# the Triton compiler parameters' class, as spelt by the installed JAX (renamed in 0.5)
TritonParams = getattr(plt, "CompilerParams", None) or getattr(plt, "TritonCompilerParams")


@struct.dataclass
class KernelRows:
    """One outcome row per request, leaves [S, R, ...]."""

    status: jax.Array  # i32: 1 accepted, 2 embedded but no free table row (overflow), 0 rejected
    hosts: jax.Array  # i32[M] host per request node, -1 where none was chosen
    hops: jax.Array  # i32[L] path length per request link (0 unless the links were all mapped)
    logp: jax.Array  # f32 Σ log-probability of the node choices (0 for the ranked heuristics)


def _scratch_shapes(d: Dims) -> dict[str, tuple[tuple[int, ...], jnp.dtype]]:
    """Per-seed state, kept in outputs the program reads and writes (the Triton backend has no
    scratch buffers); discarded by the caller."""
    f32, i32 = jnp.float32, jnp.int32
    return {
        "res_cpu": ((d.NP,), f32), "res_sto": ((d.NP,), f32), "res_bw": ((d.EP,), f32),
        "work_bw": ((d.EP,), f32), "usage": ((d.EP,), f32),
        "dist": ((d.NP,), i32), "parent": ((d.NP,), i32), "grc_vec": ((d.NP,), f32),
        "slot_active": ((d.AP,), i32), "slot_departure": ((d.AP,), f32),
        "slot_hosts": ((d.AP, d.MP), i32), "slot_cpu": ((d.AP, d.MP), f32),
        "slot_sto": ((d.AP, d.MP), f32), "slot_usage": ((d.AP, d.EP), f32),
    }


STATE_FIELDS = ("res_cpu", "res_sto", "res_bw", "slot_active", "slot_departure", "slot_hosts",
                "slot_cpu", "slot_sto", "slot_usage")
"""The per-seed state a training call starts from and returns (``_scratch_shapes``)."""


def _row_shapes(d: Dims, train: bool = False):
    i32, f32, r = jnp.int32, jnp.float32, d.n_requests
    rows = {"status": ((r,), i32), "hosts": ((r, d.MP), i32), "hops": ((r, d.LP), i32),
            "logp": ((r,), f32)}
    if train:  # per request: Σ ∇logp and Σ -logp·∇logp over its placements, weights and biases
        rows.update({"grad_w": ((r, d.UP, 4), f32), "grad_b": ((r, d.UP), f32),
                     "ent_w": ((r, d.UP, 4), f32), "ent_b": ((r, d.UP), f32)})
    return rows


def output_names(d: Dims, train: bool = False) -> tuple[str, ...]:
    """The names of ``kernel_call``'s outputs, in order: the rows, then the scratch state."""
    return tuple(_row_shapes(d, train)) + tuple(_scratch_shapes(d))


def _first(mask: jax.Array, size: int) -> jax.Array:
    """Index of the first true entry of a 1-D mask (``size`` when none)."""
    return jnp.min(jnp.where(mask, jnp.arange(size, dtype=jnp.int32), size))


def _any(mask: jax.Array) -> jax.Array:
    """``mask.any()`` (Triton lowers no boolean reductions)."""
    return jnp.max(mask.astype(jnp.int32)) > 0


def _pick(vec: jax.Array, i: jax.Array) -> jax.Array:
    """``vec[i]`` for a value held in registers (a one-hot sum: exact, one non-zero term)."""
    return jnp.sum(jnp.where(jnp.arange(vec.shape[0], dtype=jnp.int32) == i, vec,
                             jnp.zeros_like(vec)))


def _kernel(d: Dims, kind: str, interpret: bool, train: bool, *refs):
    names = (tuple("sub_" + f for f in SUBSTRATE_FIELDS)
             + tuple("req_" + f for f in REQUEST_FIELDS) + ("pol_w", "pol_b")
             + (tuple("in_" + f for f in STATE_FIELDS) if train else ())
             + tuple("out_" + f for f in _row_shapes(d, train)) + tuple(_scratch_shapes(d)))
    r = dict(zip(names, refs))
    domain = r["sub_domain"][...]
    real = r["sub_real"][...] == 1
    NP, EP, MP, LP, AP = d.NP, d.EP, d.MP, d.LP, d.AP
    node_ids = jnp.arange(NP, dtype=jnp.int32)
    slot_ids = jnp.arange(AP, dtype=jnp.int32)
    edge_ids = jnp.arange(EP, dtype=jnp.int32)
    m_ids = jnp.arange(MP, dtype=jnp.int32)
    l_ids = jnp.arange(LP, dtype=jnp.int32)
    u_ids = jnp.arange(d.UP, dtype=jnp.int32)
    c_ids = jnp.arange(4, dtype=jnp.int32)

    def sync():
        """A barrier of this program's threads: between a store and another thread's load of
        the same words (and back). Read-modify-writes are whole vectors, each word updated by
        the thread that owns it."""
        if not interpret:
            plt.debug_barrier()

    if train:  # the carried state
        for f in STATE_FIELDS:
            r[f][...] = r["in_" + f][...]
    else:  # an empty network
        r["res_cpu"][...] = r["sub_cpu"][...]
        r["res_sto"][...] = r["sub_sto"][...]
        r["res_bw"][...] = r["sub_bw0"][...]
        r["slot_active"][...] = jnp.zeros((AP,), jnp.int32)
    sync()

    def release(now):
        """``state.release_expired``: every active row with departure <= now, in row order."""
        leaving0 = (r["slot_active"][...] == 1) & (r["slot_departure"][...] <= now)

        def body(leaving):
            a = _first(leaving, AP)
            # hosts are distinct, so each node's one-hot sum has at most one non-zero term
            onehot = r["slot_hosts"][a, :][None, :] == node_ids[:, None]  # [NP, MP]
            back = lambda x: jnp.sum(jnp.where(onehot, x[None, :], 0.0), axis=1)  # noqa: E731
            r["res_cpu"][...] = r["res_cpu"][...] + back(r["slot_cpu"][a, :])
            r["res_sto"][...] = r["res_sto"][...] + back(r["slot_sto"][a, :])
            r["res_bw"][...] = r["res_bw"][...] + r["slot_usage"][a, :]
            sync()
            return leaving & (slot_ids != a)

        jax.lax.while_loop(_any, body, leaving0)
        r["slot_active"][...] = jnp.where(leaving0, 0, r["slot_active"][...])

    def incident_bw():
        """``features.residual_incident_bw`` on the residuals at the request's arrival."""
        nbr_edge = r["sub_nbr_edge"][...]
        bw = r["res_bw"][jnp.maximum(nbr_edge, 0)]  # [NP, KP]
        return jnp.sum(jnp.where(nbr_edge >= 0, bw, 0.0), axis=1)

    def linear(cols, w, b):
        """Σ_c cols[c] · w[c] + b, in column order (the policies' 1x1 convolution)."""
        out = cols[0] * w[0]
        for c in range(1, len(cols)):
            out = out + cols[c] * w[c]
        return out + b

    def greedy(score, feas):
        """The feasible node of highest score, ties by smallest id (``base.argmax_feasible``),
        and its log-probability under the softmax over the feasible nodes
        (``base.masked_log_softmax``; 0 when none is feasible)."""
        best = jnp.max(jnp.where(feas, score, -jnp.inf))
        host = _first(feas & (score == best), NP)
        if kind in ("nrmvne", "grc"):
            return host, jnp.float32(0.0)
        zmax = jnp.max(jnp.where(feas, score, -1e30))
        ez = jnp.where(feas, jnp.exp(jnp.where(feas, score, -jnp.inf) - zmax), 0.0)
        lse = jnp.log(jnp.maximum(jnp.sum(ez), 1e-30)) + zmax
        return host, jnp.where(_any(feas), best - lse, 0.0)

    def uniform_choice(u, feas):
        """``baselines.RANDOM``'s draw: ``base.inverse_cdf`` of the uniform ``u`` over equal
        weights on the n feasible nodes picks the feasible node of rank floor(u · n) by id
        (capped at the last), and its log-probability is -log n. Exact arithmetic gives the
        same node as the float cumulative sum unless u · n lies within rounding of an integer."""
        n = jnp.sum(feas.astype(jnp.int32))
        before = jnp.sum(jnp.where(feas[None, :] & (node_ids[None, :] < node_ids[:, None]), 1, 0),
                         axis=1)  # [NP]: feasible nodes with a smaller id
        rank = jnp.minimum(jnp.floor(u * n.astype(jnp.float32)).astype(jnp.int32), n - 1)
        host = _first(feas & (before == rank), NP)
        return host, -jnp.log(jnp.maximum(n, 1).astype(jnp.float32))

    def sampled(u, score, feas):
        """``base.sample_masked`` of the softmax over the feasible nodes (eq. 20,
        ``base.masked_log_softmax``): ``base.inverse_cdf`` of the uniform ``u``, the first node
        (by id) whose cumulative weight exceeds u·Σp, capped at the last node of positive
        weight; -> (host, its log-probability, the softmax probabilities). The cumulative sums
        are masked reductions: the same node as XLA's ``cumsum`` unless u·Σp lies within
        rounding of a cumulative weight."""
        zmax = jnp.max(jnp.where(feas, score, -1e30))
        ez = jnp.where(feas, jnp.exp(jnp.where(feas, score, -jnp.inf) - zmax), 0.0)
        total_ez = jnp.sum(ez)
        lse = jnp.log(jnp.maximum(total_ez, 1e-30)) + zmax
        logp = jnp.where(feas, score - lse, 0.0)
        p = jnp.where(feas, jnp.exp(logp), 0.0)
        cdf = jnp.sum(jnp.where(node_ids[None, :] <= node_ids[:, None], p[None, :], 0.0), axis=1)
        first = _first((p > 0) & (cdf > u * jnp.sum(p)), NP)
        last = jnp.max(jnp.where(p > 0, node_ids, -1))
        host = jnp.where(first < NP, first, last)
        return host, _pick(logp, host), ez / jnp.maximum(total_ez, 1e-30)

    def grad_logp(host, prob, cols, lin, row):
        """∇ log π(host) of the linear score (eq. 19 / RLVNE's ReLU unit), analytically: with
        g = onehot(host) - softmax (zero off the feasible nodes) and the ReLU's derivative
        1[lin > 0] (``jax.nn.relu``'s, 0 at 0), ∂/∂w_c = Σ_i g_i x_ic, ∂/∂b = Σ_i g_i, in weight
        row ``row``; -> (f32[UP, 4], f32[UP])."""
        g = jnp.where(node_ids == host, 1.0, 0.0) - prob
        if kind == "rlvne":
            g = jnp.where(lin > 0, g, 0.0)
        gw = functools.reduce(lambda a, b: a + b, [
            jnp.where(c_ids == c, jnp.sum(g * cols[c]), 0.0) for c in range(4)])
        at = u_ids == row
        return jnp.where(at[:, None], gw[None, :], 0.0), jnp.where(at, jnp.sum(g), 0.0)

    def scores(k, j, cpu, sto, inc, hosts):
        """The policy's node scores for request node ``j`` on the working residuals."""
        if kind in ("nrmvne", "grc"):  # the rank score, fixed at the request's arrival
            return inc
        return linear_scores(k, j, cpu, sto, inc, hosts)[0]

    def linear_scores(k, j, cpu, sto, inc, hosts):
        """The learning agents' (score, feature columns, pre-activation, weight row) of request
        node ``j``: DDRL-NRA's eq. 19 on its domain's FM, RLVNE's ReLU of its linear score."""
        if kind == "ddrl":  # ddrl.domain_feature_matrix of j's domain, the domain's agent
            dj = r["req_domain"][k, j]
            member = domain == dj
            cols = []
            for x in (cpu, sto, inc, r["sub_ad"][...]):
                scale = jnp.max(jnp.where(member, jnp.abs(x), 0.0))
                cols.append(jnp.where(member, x, 0.0) / jnp.where(scale > 0, scale, 1.0))
            w = [r["pol_w"][dj, c] for c in range(4)]
            lin = linear(cols, w, r["pol_b"][dj])
            return lin, cols, lin, dj
        # rlvne.rlvne_features: [cpu, degree, incident bw, AVG(DST)] min-max over real nodes
        placed = hosts >= 0
        cols_h = r["sub_hops"][node_ids[:, None], jnp.maximum(hosts, 0)[None, :]]  # [NP, MP]
        dst = (jnp.sum(jnp.where(placed[None, :], cols_h.astype(jnp.float32), 0.0), axis=1)
               / (jnp.sum(placed.astype(jnp.float32)) + 1.0))
        cols = []
        for x in (cpu, r["sub_degree"][...], inc, dst):
            lo = jnp.min(jnp.where(real, x, jnp.inf))
            hi = jnp.max(jnp.where(real, x, -jnp.inf))
            span = hi - lo
            cols.append((x - lo) / jnp.where(span > 0, span, 1.0))
        w = [r["pol_w"][0, c] for c in range(4)]
        lin = linear(cols, w, r["pol_b"][0])
        return jnp.maximum(lin, 0.0), cols, lin, jnp.int32(0)

    def grc_scores(damping=GRC_DAMPING, tol=GRC_TOL, max_iter=GRC_MAX_ITER):
        """``features.grc_substrate`` on the residuals at the request's arrival: the same
        iteration, stopping rule and per-node summation order (``layout.grc_slots``)."""
        cpu = r["res_cpu"][...]
        total = jnp.sum(cpu)
        c = jnp.where(total > 0, cpu / jnp.where(total > 0, total, 1.0), 0.0)
        slots = range(d.KP)
        side = [r["sub_grc_side"][:, s] for s in slots]
        nbr = [jnp.maximum(r["sub_grc_nbr"][:, s], 0) for s in slots]
        w = [jnp.where(side[s] >= 0, r["res_bw"][jnp.maximum(r["sub_grc_edge"][:, s], 0)], 0.0)
             for s in slots]
        out_w = functools.reduce(lambda a, b: a + b, w)  # integer-valued: exact in any order
        r["grc_vec"][...] = jnp.where(out_w > 0, 1.0 / jnp.where(out_w > 0, out_w, 1.0), 0.0)
        sync()
        coef = [w[s] * r["grc_vec"][nbr[s]] for s in slots]  # w(u, v) / out_w(v)

        def body(carry):
            vec, _, it = carry
            sync()  # every thread has read the previous iterate before it is overwritten
            r["grc_vec"][...] = vec
            sync()
            to_u = to_v = jnp.zeros((NP,), jnp.float32)
            for s in slots:
                term = coef[s] * r["grc_vec"][nbr[s]]
                to_u = to_u + jnp.where(side[s] == 0, term, 0.0)
                to_v = to_v + jnp.where(side[s] == 1, term, 0.0)
            new = (1.0 - damping) * c + damping * (to_u + to_v)
            diff = new - vec
            return new, jnp.sqrt(jnp.sum(diff * diff)), it + 1

        vec, _, _ = jax.lax.while_loop(lambda cr: (cr[1] >= tol) & (cr[2] < max_iter), body,
                                       (c, jnp.float32(jnp.inf), jnp.int32(0)))
        return vec

    def map_nodes(k):
        """Stage 1 (``online.map_nodes``); -> (ok, hosts i32[MP], cpu, sto working copies,
        Σ log-probability of the choices)."""
        if kind == "grc":
            inc = grc_scores()
        else:
            inc = incident_bw()
        if kind == "nrmvne":
            inc = (r["res_cpu"][...] + r["res_sto"][...]) * inc

        def more(c):
            i, failed = c[0], c[1]
            return (i < MP) & ~failed

        def place(c):
            i, failed, cpu, sto, used, hosts, logp, grads = c
            j = r["req_node_order"][k, i]
            live = r["req_node_mask"][k, j] == 1
            need_cpu, need_sto = r["req_cpu"][k, j], r["req_sto"][k, j]
            feas = ((domain == r["req_domain"][k, j]) & (cpu >= need_cpu) & (sto >= need_sto)
                    & ~used)
            placed = live & _any(feas)
            if kind == "random":
                host, lp = uniform_choice(r["req_uniform"][k, i], feas)
            elif train:
                score, cols, lin, row = linear_scores(k, j, cpu, sto, inc, hosts)
                host, lp, prob = sampled(r["req_uniform"][k, i], score, feas)
                gw, gb = grad_logp(host, prob, cols, lin, row)
                keep = lambda x: jnp.where(placed, x, 0.0)  # noqa: E731 (online.sum_placed)
                grads = (grads[0] + keep(gw), grads[1] + keep(gb),
                         grads[2] + keep(-lp * gw), grads[3] + keep(-lp * gb))
            else:
                host, lp = greedy(scores(k, j, cpu, sto, inc, hosts), feas)
            at = placed & (node_ids == host)
            cpu = cpu - jnp.where(at, need_cpu, 0.0)
            sto = sto - jnp.where(at, need_sto, 0.0)
            hosts = jnp.where(placed & (m_ids == j), host, hosts)
            logp = logp + jnp.where(placed, lp, 0.0)
            return i + 1, failed | (live & ~placed), cpu, sto, used | at, hosts, logp, grads

        zw, zb = jnp.zeros((d.UP, 4), jnp.float32), jnp.zeros((d.UP,), jnp.float32)
        init = (jnp.int32(0), jnp.bool_(False), r["res_cpu"][...], r["res_sto"][...],
                jnp.zeros((NP,), jnp.bool_), jnp.full((MP,), -1, jnp.int32), jnp.float32(0.0),
                (zw, zb, zw, zb))
        _, failed, cpu, sto, _, hosts, logp, grads = jax.lax.while_loop(more, place, init)
        return ~failed, hosts, cpu, sto, logp, grads

    def tree_path_ok(src, dst, demand):
        """Every link of the static min-hop tree's path is eligible (``links.walk_path``)."""
        def body(c):
            v, left, ok = c
            p = r["sub_tree_parent"][src, v]
            e = r["sub_edge_id"][v, p]
            return p, left - 1, ok & (r["work_bw"][e] >= demand)

        _, _, ok = jax.lax.while_loop(lambda c: c[1] > 0, body,
                                      (dst, r["sub_hops"][src, dst], jnp.bool_(True)))
        return ok

    def bfs(src, dst, demand):
        """``links.bfs_tree`` over links with work_bw >= demand; fills dist/parent, -> hops."""
        nbr = r["sub_nbr_node"][...]
        nbr_edge = r["sub_nbr_edge"][...]
        slot_ok = (nbr_edge >= 0) & (r["work_bw"][jnp.maximum(nbr_edge, 0)] >= demand)
        r["dist"][...] = jnp.where(node_ids == src, 0, -1)
        r["parent"][...] = jnp.full((NP,), -1, jnp.int32)
        sync()

        def body(c):
            level, _ = c
            at_level = slot_ok & (r["dist"][jnp.maximum(nbr, 0)] == level)  # [NP, KP]
            best = jnp.min(jnp.where(at_level, nbr, NP), axis=1)
            dist = r["dist"][...]
            new = (dist < 0) & (best < NP)
            r["dist"][...] = jnp.where(new, level + 1, dist)
            r["parent"][...] = jnp.where(new, best, r["parent"][...])
            sync()
            return level + 1, (r["dist"][dst] < 0) & _any(new)

        jax.lax.while_loop(lambda c: c[1], body, (jnp.int32(0), src != dst))
        return jnp.maximum(r["dist"][dst], 0)

    def take_path(src, dst, hops, from_tree, demand):
        """Subtract ``demand`` along the path read back from ``dst`` (``links.walk_path``): the
        path's links are marked walking back, then every link is updated by the threads that
        own it, as ``links.embed_links`` does (x - 0.0 off the path)."""
        def body(c):
            v, left, on = c
            p = jnp.where(from_tree, r["sub_tree_parent"][src, v], r["parent"][v])
            return p, left - 1, on | (edge_ids == r["sub_edge_id"][v, p])

        _, _, on = jax.lax.while_loop(lambda c: c[1] > 0, body,
                                      (dst, hops, jnp.zeros((EP,), jnp.bool_)))
        take = jnp.where(on, demand, 0.0)
        sync()  # every thread has read work_bw for this link's eligibility
        r["work_bw"][...] = r["work_bw"][...] - take
        r["usage"][...] = r["usage"][...] + take
        sync()

    def map_links(k, hosts, active):
        """Stage 2 (``links.embed_links``) on work_bw; -> (ok, hops i32[LP] by link index)."""
        r["work_bw"][...] = r["res_bw"][...]
        r["usage"][...] = jnp.zeros((EP,), jnp.float32)
        sync()
        n_live = jnp.where(active, r["req_n_links"][k], 0)

        def body(c):
            i, ok, hops_out = c
            j = r["req_link_order"][k, i]
            demand = r["req_link_bw"][k, j]
            src = _pick(hosts, r["req_link_a"][k, j])
            dst = _pick(hosts, r["req_link_b"][k, j])
            from_tree = tree_path_ok(src, dst, demand)
            hops = jax.lax.cond(from_tree, lambda: r["sub_hops"][src, dst],
                                lambda: bfs(src, dst, demand))
            take_path(src, dst, hops, from_tree, demand)
            return i + 1, hops > 0, jnp.where(l_ids == j, hops, hops_out)

        _, ok, hops = jax.lax.while_loop(
            lambda c: (c[0] < n_live) & c[1], body,
            (jnp.int32(0), jnp.bool_(True), jnp.zeros((LP,), jnp.int32)))
        ok = ok & active
        return ok, jnp.where(ok, hops, 0)

    def request(k, carry):
        now = r["req_arrival"][k]
        release(now)
        nodes_ok, hosts, cpu, sto, logp, grads = map_nodes(k)
        links_ok, hops = map_links(k, hosts, nodes_ok)
        free = (r["slot_active"][...] == 0) & (slot_ids < d.max_active)
        slot = _first(free, AP)
        has_free = slot < d.max_active
        embedded = nodes_ok & links_ok
        accepted = embedded & has_free

        @pl.when(accepted)
        def _commit():
            r["res_cpu"][...] = cpu
            r["res_sto"][...] = sto
            r["res_bw"][...] = r["work_bw"][...]
            r["slot_active"][slot] = jnp.int32(1)
            r["slot_departure"][slot] = now + r["req_lifetime"][k]
            mask = r["req_node_mask"][k, :] == 1
            r["slot_hosts"][slot, :] = jnp.where(mask, hosts, -1)
            r["slot_cpu"][slot, :] = jnp.where(mask, r["req_cpu"][k, :], 0.0)
            r["slot_sto"][slot, :] = jnp.where(mask, r["req_sto"][k, :], 0.0)
            r["slot_usage"][slot, :] = r["usage"][...]

        sync()
        r["out_status"][k] = jnp.where(accepted, 1, jnp.where(embedded, 2, 0)).astype(jnp.int32)
        r["out_hosts"][k, :] = hosts
        r["out_hops"][k, :] = hops
        r["out_logp"][k] = logp
        if train:
            for name, g in zip(("grad_w", "grad_b", "ent_w", "ent_b"), grads):
                if g.ndim == 2:
                    r["out_" + name][k, :, :] = g
                else:
                    r["out_" + name][k, :] = g
        return carry

    jax.lax.fori_loop(0, d.n_requests, request, 0)


def policy_kind(policy: NodePolicy) -> str:
    """The kernel's name for ``policy``; ``NotImplementedError`` for one it does not express."""
    if policy.name not in KERNEL_POLICIES:
        raise NotImplementedError(
            f"policy {policy.name!r} is not expressed in the kernel (kernel policies: "
            f"{', '.join(KERNEL_POLICIES)}); use the 'sequential' or 'batched' strategy")
    return KERNEL_POLICIES[policy.name]


def node_order(kind: str, req: Requests) -> jax.Array:
    """i32[R, M]: the order the policy places each request's nodes in (request data only):
    NRMVNE by request NRM descending, the learning agents in index order."""
    req = widen(req)
    if kind == "nrmvne":
        return jax.vmap(lambda q: features.rank_order(features.nrm_request(q)))(req)
    if kind == "grc":
        return jax.vmap(lambda q: features.rank_order(features.grc_request(
            q, GRC_DAMPING, GRC_TOL, GRC_MAX_ITER)))(req)
    return jnp.broadcast_to(jnp.arange(req.max_nodes, dtype=jnp.int32), req.cpu.shape)


def uniforms(kind: str, key: jax.Array, n_requests: int, max_nodes: int,
             sampled: bool = False) -> jax.Array:
    """f32[R, M]: the uniform of each placement, drawn as ``online.run_online`` and
    ``map_nodes`` derive the policy's keys (request k: ``split(key, R)[k]``, placement i:
    ``fold_in`` i) and ``base.sample_masked`` draws: for the random policy and the ``sampled``
    (training) agents, zeros for the deterministic policies."""
    if kind != "random" and not sampled:
        return jnp.zeros((n_requests, max_nodes), jnp.float32)
    keys = jax.random.split(key, n_requests)
    return jax.vmap(lambda k: jax.vmap(lambda i: jax.random.uniform(
        jax.random.fold_in(k, i), dtype=jnp.float32))(jnp.arange(max_nodes)))(keys)


def policy_weights(kind: str, params, n_domains: int) -> tuple[jax.Array, jax.Array]:
    """One seed's linear-policy parameters as (w f32[UP, 4], b f32[UP]): DDRL-NRA's per-domain
    1x1 convolution (``ddrl.NodeScorer``), RLVNE's one kernel in row 0, zeros for NRMVNE."""
    up = next_pow2(n_domains)
    if kind == "ddrl":
        conv = params["params"]["conv1x1"]
        w, b = conv["kernel"][..., 0], conv["bias"][..., 0]
    elif kind == "rlvne":
        w, b = params["w"][None, :], params["b"][None]
    else:
        w, b = jnp.zeros((1, 4), jnp.float32), jnp.zeros((1,), jnp.float32)
    w, b = w.astype(jnp.float32), b.astype(jnp.float32)
    return (jnp.pad(w, [(0, up - w.shape[0]), (0, 0)]), jnp.pad(b, [(0, up - b.shape[0])]))


def _seed_block(shape):
    """One seed's whole array per program (the seed axis squeezed away)."""
    zeros = (0,) * len(shape)
    return pl.BlockSpec((None,) + tuple(shape), lambda s: (s,) + zeros)


def kernel_call(d: Dims, kind: str, n_seeds: int, in_shapes, interpret: bool,
                train: bool = False):
    """The ``pallas_call`` over ``n_seeds`` programs; inputs are the ``SUBSTRATE_FIELDS`` then
    the ``REQUEST_FIELDS`` arrays and the policy weights (``policy_weights``), then with
    ``train`` the carried ``STATE_FIELDS``, each with a leading seed axis (``in_shapes``: their
    per-seed shapes); outputs the rows (``_row_shapes``) then the scratch state."""
    outs = {**_row_shapes(d, train), **_scratch_shapes(d)}
    return pl.pallas_call(
        functools.partial(_kernel, d, kind, interpret, train), grid=(n_seeds,),
        in_specs=[_seed_block(s) for s in in_shapes],
        out_shape=[jax.ShapeDtypeStruct((n_seeds,) + s, t) for s, t in outs.values()],
        out_specs=[_seed_block(s) for s, _ in outs.values()], interpret=interpret,
        name="sagin_train_batch" if train else "sagin_online_pass",
        compiler_params=TritonParams(num_warps=NUM_WARPS))


def run_kernel(policy: NodePolicy, params, keys, subs: Substrate, reqs: Requests,
               max_active: int, interpret: bool = False, params_per_seed: bool = False):
    """The kernel over a leading seed axis of ``keys``, ``subs`` and ``reqs``; ``params``
    shared by the seeds, or with a leading seed axis when ``params_per_seed``; -> (KernelRows
    with hosts [S, R, M] and hops [S, R, L], final residuals (res_cpu [S, N], res_sto,
    res_bw [S, E]))."""
    kind = policy_kind(policy)
    one_sub = jax.tree_util.tree_map(lambda x: x[0], subs)
    one_req = jax.tree_util.tree_map(lambda x: x[0], reqs)
    d = Dims.of(one_sub, one_req, max_active)
    n_seeds = subs.cpu.shape[0]
    weights = functools.partial(policy_weights, kind, n_domains=one_sub.n_domains)
    w, b = (jax.vmap(weights)(params) if params_per_seed else
            jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n_seeds,) + x.shape),
                                   weights(params)))
    order = jax.vmap(lambda q: node_order(kind, q))(reqs)
    sub_arrays = jax.vmap(lambda s: substrate_arrays(s, d))(subs)
    u = (jax.vmap(lambda k: uniforms(kind, k, d.n_requests, d.max_nodes))(keys)
         if kind == "random" else jnp.zeros((n_seeds, d.n_requests, d.max_nodes), jnp.float32))
    req_arrays = jax.vmap(lambda q, o, x: request_arrays(q, d, o, x))(reqs, order, u)
    args = ([sub_arrays[f] for f in SUBSTRATE_FIELDS] + [req_arrays[f] for f in REQUEST_FIELDS]
            + [w, b])
    call = kernel_call(d, kind, n_seeds, [a.shape[1:] for a in args], interpret)
    outs = dict(zip(output_names(d), call(*args)))
    rows = KernelRows(status=outs["status"], hosts=outs["hosts"][..., :d.max_nodes],
                      hops=outs["hops"][..., :d.max_links], logp=outs["logp"])
    residual = (outs["res_cpu"][:, :d.n_nodes], outs["res_sto"][:, :d.n_nodes],
                outs["res_bw"][:, :d.n_edges])
    return rows, residual
