"""Scenario documents: the scenario.json schema (docs/rules.md); networkx graphs and node-link
JSON are in ``scenario.node_link``.

Loading validates everything (``ValueError`` naming field and value) before building anything.
"""
from __future__ import annotations

import os

import numpy as np

from sagin_jax.files import read_json
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
