"""The audit trail of one online pass: scenario.json, trace.jsonl and metrics.csv (issue #2 item 7).

Anyone can re-check an allocation from these three files alone, e.g. with
``sagin_jax.reference.audit.check_audit``.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from sagin_jax.scenario.io import _num, scenario_document, write_json
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


def write_audit(out_dir: str | os.PathLike, sub: Substrate, reqs: Requests, out: Outcome) -> Path:
    """Write scenario.json, trace.jsonl and metrics.csv for one seed's online pass."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "scenario.json", scenario_document(sub, reqs))
    tmp = out_dir / "trace.jsonl.tmp"
    with open(tmp, "w") as fh:
        for rec in trace_records(reqs, out):
            fh.write(json.dumps(rec) + "\n")
    os.replace(tmp, out_dir / "trace.jsonl")
    tmp = out_dir / "metrics.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["time", "AR", "ACR", "RC", "RC_link"])
        w.writeheader()
        for row in metrics_rows(out):
            w.writerow({k: repr(v) for k, v in row.items()})
    os.replace(tmp, out_dir / "metrics.csv")
    return out_dir
