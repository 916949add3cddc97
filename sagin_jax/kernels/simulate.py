"""``simulate`` with the "kernel" strategy: the Pallas pass (``kernels.online``) then the outcome
rows turned into the simulator's ``Outcome`` (``kernels.rows``)."""
from __future__ import annotations

import jax

from sagin_jax.kernels.online import KERNEL_POLICIES, run_kernel
from sagin_jax.kernels.rows import outcome_rows
from sagin_jax.policies.base import NodePolicy
from sagin_jax.scenario.types import Requests, Substrate


def kernel_applies(policy: NodePolicy, strategy: str | None, record_paths: bool,
                   mesh=None) -> bool:
    """The request-step strategy is "kernel" (``online.request_step_strategy``) and the kernel
    expresses the pass: a policy of ``KERNEL_POLICIES``, no recorded paths (the audit trail),
    no device mesh. Otherwise the XLA strategy runs ("batched", the kernel's fallback)."""
    from sagin_jax.simulation.online import request_step_strategy
    return (request_step_strategy(strategy) == "kernel" and policy.name in KERNEL_POLICIES
            and not record_paths and mesh is None)


def simulate_kernel(policy: NodePolicy, params, keys, subs: Substrate, reqs: Requests,
                    max_active: int, interpret: bool = False, params_per_seed: bool = False):
    """One online pass per seed from an empty network, leaves with a leading seed axis;
    -> (final state, Outcome[S, R]) as ``batch.simulate_batch``.

    The final state has the kernel's residuals (``res_cpu``, ``res_sto``, ``res_bw``), the
    totals and the active table's arrival, departure and revenue; the table's per-row demands
    stay in the kernel (``slot_hosts``, ``slot_cpu``, ``slot_sto``, ``slot_bw`` are [A + 1, 1]
    placeholders). ``params``: shared by the seeds, or with a leading seed axis when
    ``params_per_seed``; ``keys`` (one per seed) drive the random policy's draws as in
    ``online.simulate``. Raises ``NotImplementedError`` for a policy the kernel does not
    express."""
    rows, (res_cpu, res_sto, res_bw) = run_kernel(policy, params, keys, subs, reqs, max_active,
                                                  interpret, params_per_seed)
    state, out = jax.vmap(lambda s, q, r: outcome_rows(s, q, r, max_active))(subs, reqs, rows)
    return state.replace(res_cpu=res_cpu, res_sto=res_sto, res_bw=res_bw), out
