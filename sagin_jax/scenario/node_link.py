"""Substrates as networkx graphs and node-link JSON files (``networkx.node_link_data``): either
key for the link list, ``"edges"`` (networkx >= 3.4's default) or ``"links"`` (older networkx).

Loading validates everything (``ValueError`` naming field and value) before building anything.
"""
from __future__ import annotations

import os

import networkx as nx

from sagin_jax.files import read_json, write_json
from sagin_jax.scenario.io import substrate_from_dict, substrate_to_dict
from sagin_jax.scenario.types import Substrate


def substrate_to_networkx(sub: Substrate) -> nx.Graph:
    doc = substrate_to_dict(sub)
    g = nx.Graph()
    for nd in doc["nodes"]:
        g.add_node(nd["id"], segment=nd["segment"], domain=nd["domain"], cpu=nd["cpu"],
                   sto=nd["sto"])
    for lk in doc["links"]:
        g.add_edge(lk["u"], lk["v"], bw=lk["bw"])
    return g


def substrate_from_networkx(g: nx.Graph, pad_edges_to: int | None = None) -> Substrate:
    """A substrate from a networkx graph with node attributes ``cpu``, ``sto``, ``segment``,
    ``domain`` (defaults to ``segment``) and edge attribute ``bw``. Nodes are relabelled 0..N-1 in
    sorted order of their labels."""
    if g.is_directed() or g.is_multigraph():
        raise ValueError("substrate graph must be an undirected simple graph (nx.Graph)")
    if g.number_of_nodes() == 0:
        raise ValueError("substrate graph has no nodes")
    try:
        labels = sorted(g.nodes)
    except TypeError:
        raise ValueError("substrate graph node labels must be mutually comparable (e.g. all "
                         f"ints), got {sorted({type(x).__name__ for x in g.nodes})}") from None
    index = {lab: i for i, lab in enumerate(labels)}
    nodes = []
    for lab in labels:
        attrs = g.nodes[lab]
        for k in ("cpu", "sto", "segment"):
            if k not in attrs:
                raise ValueError(f"node {lab!r}: missing attribute '{k}'")
        nodes.append({"id": index[lab], "segment": attrs["segment"],
                      "domain": attrs.get("domain", attrs["segment"]), "cpu": attrs["cpu"],
                      "sto": attrs["sto"]})
    links = []
    for u, v, attrs in g.edges(data=True):
        if "bw" not in attrs:
            raise ValueError(f"link ({u!r}, {v!r}): missing attribute 'bw'")
        links.append({"u": index[u], "v": index[v], "bw": attrs["bw"]})
    return substrate_from_dict({"nodes": nodes, "links": links}, pad_edges_to)


def save_node_link(sub: Substrate, path: str | os.PathLike) -> None:
    write_json(path, nx.node_link_data(substrate_to_networkx(sub), edges="links"))


def node_link_edges_key(doc: dict) -> str:
    """The key of a node-link document's link list: ``"edges"`` (networkx >= 3.4's default) or
    ``"links"`` (older networkx, and what ``save_node_link`` writes); ``"links"`` if it has both
    or neither."""
    return "edges" if "edges" in doc and "links" not in doc else "links"


def substrate_from_node_link(doc) -> Substrate:
    """A substrate from a node-link document (either key for the links, see
    ``node_link_edges_key``); a file that does not say otherwise is an undirected simple graph
    (networkx would default to a multigraph). Problems are one-line ValueErrors."""
    if not isinstance(doc, dict):
        raise ValueError(f"not a node-link graph (a JSON object expected, got "
                         f"{type(doc).__name__})")
    key = node_link_edges_key(doc)
    try:
        g = nx.node_link_graph(doc, directed=False, multigraph=False, edges=key)
    except (KeyError, TypeError, AttributeError, ValueError, nx.NetworkXError) as err:
        raise ValueError(f"not a node-link graph ({err.__class__.__name__}: {err})") from None
    if len(doc[key]) != g.number_of_edges():
        raise ValueError(f"{len(doc[key])} links but only {g.number_of_edges()} distinct node "
                         "pairs: duplicate link")
    return substrate_from_networkx(g)


def load_node_link(path: str | os.PathLike) -> Substrate:
    try:
        return substrate_from_node_link(read_json(path))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
