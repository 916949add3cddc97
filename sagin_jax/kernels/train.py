"""REINFORCE batches with the "kernel" strategy: one Pallas call per batch of training requests.

A call runs one batch (``TrainConfig.batch_size`` requests) of one seed from the state the
previous batch left (residuals and the active-request table, ``online.STATE_FIELDS``), with the
sampled linear agents (DDRL-NRA, RLVNE; ``online.KERNEL_TRAIN_POLICIES``): softmax over the
feasible hosts (eq. 20), inverse-CDF draws from uniforms made outside the kernel from the keys the
XLA path uses (``online.uniforms``), and per request the analytic Σ ∇ log π (eq. 21's g': chosen
features minus softmax-expected features, the ReLU's derivative for RLVNE) and Σ -log π · ∇ log π
(``reinforce.with_score_terms``), summed over the request's placed nodes.

The rewards (eq. 14's running metrics, or R/C) and their batch-wide baseline and normalisation
need the whole batch's outcomes, so they and the Σ_k r_k · g'_k weighting are computed in XLA after
the call by ``reinforce``'s own functions, from the outcome rows (``kernels.rows``); optax applies
the update between calls.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from sagin_jax.kernels.layout import (REQUEST_FIELDS, SUBSTRATE_FIELDS, Dims, request_arrays,
                                      substrate_arrays)
from sagin_jax.kernels.online import (KERNEL_TRAIN_POLICIES, STATE_FIELDS, KernelRows,
                                      kernel_call, node_order, output_names, policy_weights,
                                      uniforms)
from sagin_jax.kernels.rows import metrics_state, outcome_rows
from sagin_jax.policies.base import NodePolicy
from sagin_jax.scenario.types import Requests, Substrate
from sagin_jax.simulation.state import SimState


def kernel_trains(policy: NodePolicy) -> bool:
    """The training kernel expresses ``policy`` (a sampled linear agent)."""
    return policy.name in KERNEL_TRAIN_POLICIES


@struct.dataclass
class KernelCarry:
    """One seed's state between two batches: the kernel's padded residuals and table, and the
    metrics' table and totals (``kernels.rows``)."""

    kernel: dict
    metrics: SimState


def init_carry(sub: Substrate, d: Dims) -> KernelCarry:
    """An empty network (``state.init_state``), padded."""
    s = substrate_arrays(sub, d)
    f32, i32 = jnp.float32, jnp.int32
    kernel = {"res_cpu": s["cpu"], "res_sto": s["sto"], "res_bw": s["bw0"],
              "slot_active": jnp.zeros((d.AP,), i32), "slot_departure": jnp.zeros((d.AP,), f32),
              "slot_hosts": jnp.full((d.AP, d.MP), -1, i32),
              "slot_cpu": jnp.zeros((d.AP, d.MP), f32), "slot_sto": jnp.zeros((d.AP, d.MP), f32),
              "slot_usage": jnp.zeros((d.AP, d.EP), f32)}
    return KernelCarry(kernel=kernel, metrics=metrics_state(d.max_active))


def gradient_tree(kind: str, w: jax.Array, b: jax.Array, n_domains: int):
    """Per-request gradient rows (w f32[R, UP, 4], b f32[R, UP]) as the agent's parameter tree
    with a leading request axis: DDRL-NRA's stacked ``conv1x1`` (kernel [U, 4, 1], bias [U, 1]),
    RLVNE's ``{"w": [4], "b": []}``."""
    if kind == "ddrl":
        return {"params": {"conv1x1": {"kernel": w[:, :n_domains, :, None],
                                       "bias": b[:, :n_domains, None]}}}
    return {"w": w[:, 0, :], "b": b[:, 0]}


def batch_dims(sub: Substrate, batch: Requests, max_active: int) -> Dims:
    """The kernel's sizes for one seed's batch of requests."""
    return Dims.of(sub, batch, max_active)


def kernel_batch(policy: NodePolicy, params, key, sub: Substrate, batch: Requests,
                 carry: KernelCarry, max_active: int, interpret: bool = False,
                 sub_arrays: dict | None = None):
    """One seed's batch from ``carry`` with the sampled agent ``policy``; -> (carry, Outcome[B])
    as ``online.run_online`` with ``reinforce.with_score_terms(policy)``: ``extra`` holds
    "logp", "grad" and "entropy_grad" per request. ``key`` is the batch's key
    (``online.run_online``'s). ``sub_arrays``: ``layout.substrate_arrays`` of ``sub`` when
    already made (it is the same for every batch)."""
    kind = KERNEL_TRAIN_POLICIES[policy.name]
    d = batch_dims(sub, batch, max_active)
    if sub_arrays is None:
        sub_arrays = substrate_arrays(sub, d)
    u = uniforms(kind, key, d.n_requests, d.max_nodes, sampled=True)
    req = request_arrays(batch, d, node_order(kind, batch), u)
    w, b = policy_weights(kind, params, sub.n_domains)
    args = ([sub_arrays[f] for f in SUBSTRATE_FIELDS] + [req[f] for f in REQUEST_FIELDS]
            + [w, b] + [carry.kernel[f] for f in STATE_FIELDS])
    call = kernel_call(d, kind, 1, [a.shape for a in args], interpret, train=True)
    outs = {n: x[0] for n, x in zip(output_names(d, True), call(*[a[None] for a in args]))}
    rows = KernelRows(status=outs["status"], hosts=outs["hosts"][:, :d.max_nodes],
                      hops=outs["hops"][:, :d.max_links], logp=outs["logp"])
    metrics, out = outcome_rows(sub, batch, rows, max_active, carry.metrics)
    extra = {"logp": rows.logp,
             "grad": gradient_tree(kind, outs["grad_w"], outs["grad_b"], sub.n_domains),
             "entropy_grad": gradient_tree(kind, outs["ent_w"], outs["ent_b"], sub.n_domains)}
    carry = KernelCarry(kernel={f: outs[f] for f in STATE_FIELDS}, metrics=metrics)
    return carry, out.replace(extra=extra)
