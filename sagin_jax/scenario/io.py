"""Scenario documents: the scenario.json schema (docs/rules.md), networkx graphs, node-link JSON.

Loading validates everything (``ValueError`` naming field and value) before building anything.
"""
from __future__ import annotations

import os

import networkx as nx
import numpy as np

from sagin_jax.files import read_json, write_json

from sagin_jax.scenario.build import build_requests, build_substrate
from sagin_jax.scenario.types import Requests, Substrate


def json_number(x):
    """A number as JSON writes it best: an int when it is integral, else a float."""
    x = float(x)
    return int(x) if x.is_integer() else x


_num = json_number  # short local name


def substrate_to_dict(sub: Substrate) -> dict:
    cpu, sto = np.asarray(sub.cpu), np.asarray(sub.sto)
    seg, dom = np.asarray(sub.segment), np.asarray(sub.domain)
    mask = np.asarray(sub.edge_mask)
    eu, ev, bw = (np.asarray(a)[mask] for a in (sub.edge_u, sub.edge_v, sub.edge_bw))
    return {
        "nodes": [{"id": i, "segment": int(seg[i]), "domain": int(dom[i]), "cpu": _num(cpu[i]),
                   "sto": _num(sto[i])} for i in range(cpu.shape[0])],
        "links": [{"u": int(u), "v": int(v), "bw": _num(b)} for u, v, b in zip(eu, ev, bw)],
    }


def requests_to_dicts(reqs: Requests) -> list[dict]:
    out = []
    arr, life = np.asarray(reqs.arrival), np.asarray(reqs.lifetime)
    nm, cpu, sto, dom = (np.asarray(a) for a in (reqs.node_mask, reqs.cpu, reqs.sto, reqs.domain))
    lm, la, lb, lbw = (np.asarray(a) for a in (reqs.link_mask, reqs.link_a, reqs.link_b,
                                                reqs.link_bw))
    for k in range(arr.shape[0]):
        nodes = [{"cpu": _num(cpu[k, i]), "sto": _num(sto[k, i]), "domain": int(dom[k, i])}
                 for i in np.flatnonzero(nm[k])]
        links = [{"a": int(la[k, j]), "b": int(lb[k, j]), "bw": _num(lbw[k, j])}
                 for j in np.flatnonzero(lm[k])]
        out.append({"id": k, "arrival": _num(arr[k]), "lifetime": _num(life[k]),
                    "nodes": nodes, "links": links})
    return out


def scenario_document(sub: Substrate, reqs: Requests) -> dict:
    """The scenario.json document: initial capacities and the requests in arrival order."""
    return {**substrate_to_dict(sub), "requests": requests_to_dicts(reqs)}


def _field(obj, key, where):
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(obj).__name__}")
    if key not in obj:
        raise ValueError(f"{where}: missing field '{key}'")
    return obj[key]


def substrate_from_dict(doc: dict, pad_edges_to: int | None = None) -> Substrate:
    nodes = _field(doc, "nodes", "scenario")
    links = _field(doc, "links", "scenario")
    if not isinstance(nodes, list) or not nodes:
        raise ValueError("scenario field 'nodes' must be a non-empty list")
    if not isinstance(links, list):
        raise ValueError("scenario field 'links' must be a list")
    cols = {k: [] for k in ("cpu", "sto", "segment", "domain")}
    for i, nd in enumerate(nodes):
        node_id = _field(nd, "id", f"node {i}")
        if node_id != i:
            raise ValueError(f"node {i}: field 'id' = {node_id!r}; ids must be 0..N-1 in order")
        for k in cols:
            val = _field(nd, k, f"node {i}")
            if val is None:
                raise ValueError(f"node {i}: field '{k}' is null")
            cols[k].append(val)
    for k in ("segment", "domain"):
        bad = [v for v in cols[k] if not isinstance(v, int) or isinstance(v, bool)]
        if bad:
            raise ValueError(f"node field '{k}' must be integers, got {bad[0]!r}")
    for k in ("cpu", "sto"):
        bad = [v for v in cols[k] if not isinstance(v, (int, float)) or isinstance(v, bool)]
        if bad:
            raise ValueError(f"node field '{k}' must be numbers, got {bad[0]!r}")
    eu, ev, ebw = [], [], []
    for j, lk in enumerate(links):
        u, v, b = (_field(lk, k, f"link {j}") for k in ("u", "v", "bw"))
        for k, val in (("u", u), ("v", v)):
            if not isinstance(val, int) or isinstance(val, bool) or not 0 <= val < len(nodes):
                raise ValueError(f"link {j}: field '{k}' = {val!r} is not a node id "
                                 f"(0..{len(nodes) - 1})")
        if not isinstance(b, (int, float)) or isinstance(b, bool):
            raise ValueError(f"link {j}: field 'bw' must be a number, got {b!r}")
        eu.append(u), ev.append(v), ebw.append(b)
    return build_substrate(cols["cpu"], cols["sto"], np.array(cols["segment"], dtype=np.int64),
                           np.array(cols["domain"], dtype=np.int64),
                           np.array(eu, dtype=np.int64), np.array(ev, dtype=np.int64), ebw,
                           pad_edges_to=pad_edges_to)


def requests_from_dict(doc: dict, n_domains: int, max_nodes: int = 10) -> Requests:
    reqs = _field(doc, "requests", "scenario")
    if not isinstance(reqs, list):
        raise ValueError("scenario field 'requests' must be a list")
    return build_requests(reqs, n_domains, max_nodes)


def load_scenario(path: str | os.PathLike, max_nodes: int = 10) -> tuple[Substrate, Requests]:
    """Load a scenario.json (substrate and requests)."""
    doc = read_json(path)
    sub = substrate_from_dict(doc)
    return sub, requests_from_dict(doc, sub.n_domains, max_nodes)


# ---- networkx -------------------------------------------------------------------------------

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
