"""Node-mapping feasibility (eqs. 1, 2, 4, 5)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from sagin_jax.scenario.types import Substrate


def feasible_hosts(sub: Substrate, res_cpu: jax.Array, res_sto: jax.Array, used: jax.Array,
                   cpu: jax.Array, sto: jax.Array, domain: jax.Array) -> jax.Array:
    """bool[N]: hosts a request node (cpu, sto, candidate domain) may map to.

    In its candidate domain (eq. 1), enough residual CPU and storage (eqs. 4, 5), and not already
    hosting another node of the same request (distinct hosts; eq. 2 gives one host per node).
    """
    return (sub.domain == domain) & (res_cpu >= cpu) & (res_sto >= sto) & ~used


def place_node(res_cpu, res_sto, used, host, cpu, sto, do: jax.Array):
    """Deduct a node's demand from ``host`` in the working copy when ``do`` is true."""
    onehot = (jnp.arange(res_cpu.shape[0]) == host) & do
    return (res_cpu - jnp.where(onehot, cpu, 0.0), res_sto - jnp.where(onehot, sto, 0.0),
            used | onehot)
