"""The environment's pytrees: parameters, state and observation (no gymnax import)."""
from __future__ import annotations

from typing import Any

import jax
from flax import struct

from sagin_jax.scenario.types import Requests, Substrate
from sagin_jax.simulation.online import Placement
from sagin_jax.simulation.state import SimState

NODE_FEATURES = ("ddrl_cpu", "ddrl_sto", "ddrl_bw", "ddrl_ad",
                 "rlvne_cpu", "rlvne_degree", "rlvne_bw", "rlvne_dst",
                 "res_cpu", "res_sto", "res_bw")
"""Columns of ``Observation.nodes``: DDRL-NRA's feature matrix (eq. 18: residual CPU, storage,
Σ incident residual bandwidth, AD of eq. 16, each divided by its maximum over the node's domain),
RLVNE's four min-max normalised columns (residual CPU, degree, Σ incident residual bandwidth,
mean hops to this request's hosts), and the raw residual CPU, storage and Σ incident bandwidth
(NRMVNE's NRM is ``(res_cpu + res_sto) · res_bw``)."""


@struct.dataclass
class ScenarioPool:
    """S fixed scenarios (leading axis): ``reset`` picks one uniformly at random."""

    sub: Substrate  # [S, ...]
    requests: Requests  # [S, R, ...]

    @property
    def size(self) -> int:
        return self.sub.cpu.shape[0]


@struct.dataclass
class EnvParams:
    """Traced numbers of the environment.

    The reward of a step is ``w_revenue · revenue / revenue_scale + ΔO`` with
    ``O = w_ar · AR / ar_scale + w_rc · R/C + w_acr · ACR`` (eqs. 9-12, 14) after the step's
    commits and ``revenue`` the eq. 7 revenue of the requests accepted in the step."""

    generator: dict  # the scenario config's traced numbers (``scenario.plan._params``)
    pool: ScenarioPool | None  # fixed scenarios, or None: draw one with the generator per reset
    w_revenue: jax.Array
    revenue_scale: jax.Array
    w_ar: jax.Array
    w_rc: jax.Array
    w_acr: jax.Array
    ar_scale: jax.Array
    max_steps_in_episode: int  # gymnax truncation; the default never truncates a request set
    # (obs, state) of ``reset_to`` for each pool scenario (leading axis S), computed by
    # ``SaginEnv.make_params`` from ``pool``: change the pool through ``make_params(pool=...)``
    starts: Any = None


@struct.dataclass
class EnvState:
    """Residuals and active table (``sim``), the current request and the node being placed."""

    sub: Substrate
    requests: Requests | None  # the drawn request set (None with a pool: read from the pool)
    scenario: jax.Array  # i32 pool index (0 without a pool)
    sim: SimState
    request: jax.Array  # i32 index of the current request (R once the set is done)
    order: jax.Array  # i32[M] the current request's node order
    position: jax.Array  # i32 position in ``order`` of the node being placed
    work: Placement  # this request's working copy
    degree: jax.Array  # f32[N] each node's number of links (the substrate's; kept, not re-read)
    inc_bw: jax.Array  # f32[N] Σ residual bandwidth at each node at the request's arrival
    hop_sum: jax.Array  # f32[N] Σ hops from each node to this request's hosts placed so far
    clock: jax.Array  # f32 arrival time of the last request handled (0 before the first)
    objective: jax.Array  # f32 O after the last request handled
    time: jax.Array  # i32 steps taken in this episode (gymnax)


@struct.dataclass
class Observation:
    nodes: jax.Array  # f32[N, F] per substrate node, columns ``NODE_FEATURES``
    demand: jax.Array  # f32[3] the request node's CPU, storage and Σ bandwidth of its links
    domain: jax.Array  # i32 the request node's candidate domain (eq. 1)
    remaining: jax.Array  # f32[3] nodes of the request after this one, their Σ CPU and Σ storage
    action_mask: jax.Array  # bool[N] feasible hosts of the request node (eqs. 1, 2, 4, 5)


Info = dict[str, Any]
