"""Fixed-shape pytrees for one scenario: the substrate G^P and a padded request set G^R.

Every array has a fixed shape so the whole online process compiles once and vmaps over seeds.
Padding is masked (``*_mask``) and padded indices point at node 0 with zero demand.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
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


REQUEST_DTYPES = {"arrival": jnp.float32, "lifetime": jnp.float32, "node_mask": jnp.bool_,
                  "cpu": jnp.float32, "sto": jnp.float32, "domain": jnp.int32,
                  "link_a": jnp.int32, "link_b": jnp.int32, "link_bw": jnp.float32,
                  "link_mask": jnp.bool_}
"""The dtypes every rule computes with (``widen``)."""


def widen(req: Requests) -> Requests:
    """``req`` with the dtypes of ``REQUEST_DTYPES`` (no-op for fields that have them): the
    online pass applies it to each request it reads, so it may be given ``compact_requests``
    storage."""
    return req.replace(**{k: getattr(req, k).astype(t) for k, t in REQUEST_DTYPES.items()
                          if getattr(req, k).dtype != t})


def _narrowest(x: np.ndarray, kinds) -> np.ndarray:
    for t in kinds:
        info = np.iinfo(t)
        if x.size == 0 or (np.all(x == np.floor(x)) and x.min() >= info.min
                           and x.max() <= info.max):
            return x.astype(t)
    return x


def compact_requests(req: Requests) -> Requests:
    """Host copy of ``req`` with each demand (``cpu``, ``sto``, ``link_bw``) stored as uint8 or
    uint16 and each index (``domain``, ``link_a``, ``link_b``) as int8 or int16 when every value
    fits exactly, else as it was: ``widen`` gives back the same numbers. For the paper's
    requests this is 3x less memory (the training requests are most of a wide training
    program's arguments)."""
    out = {}
    for k in ("cpu", "sto", "link_bw"):
        out[k] = _narrowest(np.asarray(getattr(req, k)), (np.uint8, np.uint16))
    for k in ("domain", "link_a", "link_b"):
        out[k] = _narrowest(np.asarray(getattr(req, k)), (np.int8, np.int16))
    return jax.tree_util.tree_map(np.asarray, req).replace(**out)


def compact_substrate(sub: Substrate) -> Substrate:
    """Host copy of ``sub`` with its N x N tables (``hops``, ``tree_parent``, ``edge_id``)
    stored as int16 when every value fits (any substrate below 32,768 nodes), else as they were.
    The request step casts what it reads from them to int32, so the numbers are the same; for
    the paper's substrate this halves the 120 KiB those tables take per seed."""
    out = {k: _narrowest(np.asarray(getattr(sub, k)), (np.int16,))
           for k in ("hops", "tree_parent", "edge_id")}
    return jax.tree_util.tree_map(np.asarray, sub).replace(**out)


def narrow_substrate(sub: Substrate) -> Substrate:
    """``compact_substrate``, then the N x N tables as int8 where every value fits (up to 127
    nodes) and the neighbour lists as int16: the same numbers, for code that only casts,
    compares or indexes with these tables (the link embedding, the features). ``SaginEnv``'s
    fixed scenarios are stored so: these tables are most of an environment's state, which
    every step carries (the paper's: 82 KiB with the N x N tables as int16 and the lists as
    int32, 51 KiB narrowed; 1,024-environment steps took 6.7-7.2 ms against 7.8-8.0 ms)."""
    sub = compact_substrate(sub)
    tables = {k: _narrowest(np.asarray(getattr(sub, k)), (np.int8, np.int16))
              for k in ("hops", "tree_parent", "edge_id")}
    lists = {k: _narrowest(np.asarray(getattr(sub, k)), (np.int16,))
             for k in ("nbr_node", "nbr_edge")}
    return sub.replace(**tables, **lists)


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
