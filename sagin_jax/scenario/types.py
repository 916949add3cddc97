"""Fixed-shape pytrees for one scenario: the substrate G^P and a padded request set G^R.

Every array has a fixed shape so the whole online process compiles once and vmaps over seeds.
Padding is masked (``*_mask``) and padded indices point at node 0 with zero demand.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Substrate:
    """The SAGIN substrate. N nodes, E undirected links stored once as ``(edge_u, edge_v)``."""

    cpu: jax.Array  # f32[N] CPU capacity (CPU^P)
    sto: jax.Array  # f32[N] storage capacity (STO^P)
    segment: jax.Array  # i32[N] 0 space, 1 air, 2 ground
    domain: jax.Array  # i32[N] edge physical domain id, 0..U-1
    edge_u: jax.Array  # i32[E]
    edge_v: jax.Array  # i32[E]
    edge_bw: jax.Array  # f32[E] bandwidth capacity (BW^P); 0 on padding
    edge_mask: jax.Array  # bool[E] real link (False = padding)
    nbr_node: jax.Array  # i32[N, K] each node's neighbours, ascending id, -1 padded
    nbr_edge: jax.Array  # i32[N, K] the link to each of those neighbours, -1 padded
    hops: jax.Array  # i32[N, N] static hop distance over the full topology
    tree_parent: jax.Array  # i32[N, N] [s, v]: v's parent in the min-hop tree from s (-1 at s)
    edge_id: jax.Array  # i32[N, N] id of the link between two nodes, -1 where none
    domain_nodes: jax.Array  # i32[U, D] node ids of each domain, -1 padded (D = largest domain)
    ad: jax.Array  # f32[N] eq. 16 average hop distance to the other nodes of the node's domain

    @property
    def n_nodes(self) -> int:
        return self.cpu.shape[-1]

    @property
    def n_edges(self) -> int:
        return self.edge_u.shape[-1]

    @property
    def n_domains(self) -> int:
        return self.domain_nodes.shape[-2]


@struct.dataclass
class Requests:
    """R requests in arrival order, each padded to M nodes and L = M(M-1)/2 links."""

    arrival: jax.Array  # f32[R]
    lifetime: jax.Array  # f32[R]
    node_mask: jax.Array  # bool[R, M]
    cpu: jax.Array  # f32[R, M]
    sto: jax.Array  # f32[R, M]
    domain: jax.Array  # i32[R, M] candidate domain of each request node (eq. 1)
    link_a: jax.Array  # i32[R, L] request-node index, a < b
    link_b: jax.Array  # i32[R, L]
    link_bw: jax.Array  # f32[R, L]
    link_mask: jax.Array  # bool[R, L]

    @property
    def n_requests(self) -> int:
        return self.arrival.shape[-1]

    @property
    def max_nodes(self) -> int:
        return self.cpu.shape[-1]

    @property
    def max_links(self) -> int:
        return self.link_bw.shape[-1]

    def at(self, k) -> "Requests":
        """The k-th request (leading axis indexed away)."""
        return jax.tree_util.tree_map(lambda x: x[k], self)


def stack(items):
    """Stack a list of equally shaped pytrees along a new leading (seed) axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *items)


@struct.dataclass
class Scenario:
    """One generated scenario: the substrate, both request sets and what the generator knows
    beyond them (positions, which links the connectivity repair added, bound overflow)."""

    sub: Substrate  # links padded to Bounds.max_edges, neighbour lists to Bounds.max_degree
    train: Requests  # ScenarioConfig.n_train requests
    test: Requests  # ScenarioConfig.n_test requests
    pos: jax.Array  # f32[N, 2] node positions (satellites on their fixed plane x slot grid)
    repair: jax.Array  # bool[E] link added by the connectivity repair (False on padding)
    overflow: jax.Array  # bool[] a static bound was too small: the scenario is invalid
