"""WRITES the audit trail of one online pass: scenario.json, trace.jsonl and metrics.csv.

Anyone can re-check an allocation from these three files alone with the independent checker
``sagin_jax.reference.check_audit`` (``python -m sagin_jax.reference.check_audit DIR``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sagin_jax.files import write_csv, write_json, write_jsonl
from sagin_jax.scenario.io import json_number as _num
from sagin_jax.scenario.io import scenario_document
from sagin_jax.scenario.types import Requests, Substrate
from sagin_jax.simulation.online import Outcome


def trace_records(reqs: Requests, out: Outcome) -> list[dict]:
    """One record per request: id, arrival, departure, accepted, node_map, paths, revenue, cost."""
    if out.paths is None:
        raise ValueError("the outcome has no paths: run the simulation with record_paths=True")
    acc = np.asarray(out.accepted)
    hosts = np.asarray(out.hosts)
    paths = np.asarray(out.paths)
    arr, life = np.asarray(reqs.arrival), np.asarray(reqs.lifetime)
    nmask, lmask = np.asarray(reqs.node_mask), np.asarray(reqs.link_mask)
    rev, cost = np.asarray(out.value.revenue), np.asarray(out.value.cost)
    records = []
    for k in range(acc.shape[0]):
        node_map = path_list = None
        if acc[k]:
            node_map = [int(h) for h in hosts[k][nmask[k]]]
            path_list = [[int(x) for x in paths[k, j] if x >= 0] for j in np.flatnonzero(lmask[k])]
        records.append({"id": k, "arrival": _num(arr[k]), "departure": _num(arr[k] + life[k]),
                        "accepted": bool(acc[k]), "node_map": node_map, "paths": path_list,
                        "revenue": _num(rev[k]), "cost": _num(cost[k])})
    return records


def metrics_rows(out: Outcome) -> list[dict]:
    m = out.metrics
    cols = {"time": m.time, "AR": m.ar, "ACR": m.acr, "RC": m.rc, "RC_link": m.rc_link}
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    n = arrays["time"].shape[0]
    return [{k: float(arrays[k][i]) for k in cols} for i in range(n)]


AUDIT_FILES = ("scenario.json", "trace.jsonl", "metrics.csv")


def write_audit(out_dir: str | os.PathLike, sub: Substrate, reqs: Requests, out: Outcome) -> Path:
    """Write scenario.json, trace.jsonl and metrics.csv for one seed's online pass, each
    atomically (everything is computed before the first file is written)."""
    out_dir = Path(out_dir)
    doc = scenario_document(sub, reqs)
    records = trace_records(reqs, out)
    rows = [{k: repr(v) for k, v in row.items()} for row in metrics_rows(out)]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "scenario.json", doc)
    write_jsonl(out_dir / "trace.jsonl", records)
    write_csv(out_dir / "metrics.csv", ["time", "AR", "ACR", "RC", "RC_link"], rows)
    return out_dir
