"""Independent constraint checker for an audit trail (scenario + trace + metrics).

It never re-runs an allocation algorithm: it only checks that what the trace claims is a legal
allocation under eqs. 1-8 of the paper and that the metrics rows follow from the trace by the
formulas of docs/rules.md.

Public API
----------
``check_audit(scenario, trace, metrics, rtol=1e-4) -> list[str]``  (empty list = all good)
``load_audit_dir(path) -> (scenario, trace, metrics)``
"""

from __future__ import annotations

import csv
import heapq
import json
import os
import sys

TRACE_KEYS = (
    "id",
    "arrival",
    "departure",
    "accepted",
    "node_map",
    "paths",
    "revenue",
    "cost",
)
# optional keys: checked when present; the link-only R/C is otherwise derived from the scenario's
# link demands and the trace's paths
OPTIONAL_TRACE_KEYS = ("link_revenue", "link_cost")
METRIC_KEYS = ("time", "AR", "ACR", "RC", "RC_link")
ATOL = 1e-6  # absolute tolerance of every float comparison
RES_ATOL = 1e-6  # resources may not go below -RES_ATOL


def _close(x: float, y: float, rtol: float) -> bool:
    return abs(float(x) - float(y)) <= ATOL + rtol * abs(float(y))


def _key(u: int, v: int) -> tuple[int, int]:
    return (u, v) if u < v else (v, u)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def load_audit_dir(path: str) -> tuple[dict, list[dict], list[dict]]:
    """Read ``scenario.json``, ``trace.jsonl`` and ``metrics.csv`` from a directory."""
    with open(os.path.join(path, "scenario.json")) as f:
        scenario = json.load(f)
    trace = []
    with open(os.path.join(path, "trace.jsonl")) as f:
        for line in f:
            if line.strip():
                trace.append(json.loads(line))
    metrics = []
    with open(os.path.join(path, "metrics.csv"), newline="") as f:
        for row in csv.DictReader(f):
            metrics.append({k: float(v) for k, v in row.items()})
    return scenario, trace, metrics


def _check_structure(k, req, rec, n_sub, dom, adj, rtol) -> tuple[list[str], bool]:
    """Eqs. 1-3 and 7-8 for one accepted record. Returns (violations, usable_for_accounting)."""
    out: list[str] = []
    where = f"request #{k} (id {rec.get('id')})"
    nodes, links = req["nodes"], req["links"]
    node_map, paths = rec.get("node_map"), rec.get("paths")

    # ---- node map (eqs. 1, 2) ----
    hosts_ok = True
    if not isinstance(node_map, list) or len(node_map) != len(nodes):
        out.append(f"{where}: node_map must list one host per request node ({len(nodes)}), "
                   f"got {node_map!r}")
        return out, False
    for i, h in enumerate(node_map):
        if not _is_int(h) or not 0 <= h < n_sub:
            out.append(f"{where}: node {i} host {h!r} is not a substrate node id")
            hosts_ok = False
        elif dom[h] != int(nodes[i]["domain"]):
            out.append(f"{where}: node {i} host {h} is in domain {dom[h]}, candidate domain is "
                       f"{nodes[i]['domain']} (eq. 1)")
    valid_hosts = [h for h in node_map if _is_int(h)]
    if len(set(valid_hosts)) != len(valid_hosts):
        out.append(f"{where}: hosts are not distinct {node_map} (eq. 2)")

    # ---- paths (eq. 3) ----
    paths_ok = True
    if not isinstance(paths, list) or len(paths) != len(links):
        out.append(f"{where}: paths must list one path per request link ({len(links)}), "
                   f"got {paths!r}")
        return out, False
    for j, (link, p) in enumerate(zip(links, paths)):
        a, b = int(link["a"]), int(link["b"])
        if not isinstance(p, list) or len(p) < 2 or not all(_is_int(x) for x in p):
            out.append(f"{where}: link {j} path {p!r} is not a list of >= 2 node ids")
            paths_ok = False
            continue
        if hosts_ok and p[0] != node_map[a]:
            out.append(f"{where}: link {j} path {p} does not start at host({a}) = {node_map[a]}")
        if hosts_ok and p[-1] != node_map[b]:
            out.append(f"{where}: link {j} path {p} does not end at host({b}) = {node_map[b]}")
        if len(set(p)) != len(p):
            out.append(f"{where}: link {j} path {p} repeats a node")
        for u, v in zip(p, p[1:]):
            if _key(u, v) not in adj:
                out.append(f"{where}: link {j} path {p} uses ({u}, {v}), not a substrate link")
                paths_ok = False

    # ---- revenue and cost (eqs. 7, 8) ----
    node_part = sum(float(nd["cpu"]) + float(nd["sto"]) for nd in nodes)
    link_rev = sum(float(link["bw"]) for link in links)
    link_cost = 0.0
    for link, p in zip(links, paths):
        if isinstance(p, list):
            link_cost += float(link["bw"]) * (len(p) - 1)
    expect = {
        "revenue": node_part + link_rev,
        "cost": node_part + link_cost,
        "link_revenue": link_rev,
        "link_cost": link_cost,
    }
    for name, value in expect.items():
        if name in rec and not _close(rec[name], value, rtol):
            out.append(f"{where}: {name} = {rec[name]} but eqs. 7/8 give {value}")
    return out, hosts_ok and paths_ok


def check_audit(scenario: dict, trace: list[dict], metrics: list[dict],
                rtol: float = 1e-4) -> list[str]:
    """Check an audit trail; return human-readable violations (empty list = all good)."""
    out: list[str] = []
    subnodes = scenario["nodes"]
    n_sub = len(subnodes)
    dom = [int(nd["domain"]) for nd in subnodes]
    cpu = [float(nd["cpu"]) for nd in subnodes]
    sto = [float(nd["sto"]) for nd in subnodes]
    bw = {}
    for link in scenario["links"]:
        bw[_key(int(link["u"]), int(link["v"]))] = float(link["bw"])
    requests = scenario["requests"]

    if len(trace) != len(requests):
        out.append(f"trace has {len(trace)} records but the scenario has {len(requests)} requests")
    if len(metrics) != len(trace):
        out.append(f"metrics has {len(metrics)} rows but the trace has {len(trace)} records")

    # Timeline replay: resources held by committed requests, released at departure.
    held: list[tuple[float, int, list]] = []  # heap (departure, k, [(kind, key, amount), ...])
    for k, (req, rec) in enumerate(zip(requests, trace)):
        where = f"request #{k} (id {rec.get('id')})"
        missing = [key for key in TRACE_KEYS if key not in rec]
        if missing:
            out.append(f"{where}: trace record lacks keys {missing}")
        arrival = float(req["arrival"])
        departure = arrival + float(req["lifetime"])
        if rec.get("id") != req["id"]:
            out.append(f"{where}: id {rec.get('id')} but the scenario's request #{k} has id "
                       f"{req['id']}")
        if "arrival" in rec and not _close(rec["arrival"], arrival, rtol):
            out.append(f"{where}: arrival {rec['arrival']} but the scenario says {arrival}")
        if "departure" in rec and not _close(rec["departure"], departure, rtol):
            out.append(f"{where}: departure {rec['departure']} != arrival + lifetime = "
                       f"{departure}")
        if k > 0 and arrival < float(requests[k - 1]["arrival"]):
            out.append(f"{where}: scenario requests are not in arrival order")

        # Release everything that departs at or before this arrival (departures first).
        while held and held[0][0] <= arrival:
            _, _, items = heapq.heappop(held)
            for kind, key, amount in items:
                if kind == "cpu":
                    cpu[key] += amount
                elif kind == "sto":
                    sto[key] += amount
                else:
                    bw[key] += amount

        accepted = rec.get("accepted")
        if not isinstance(accepted, bool):
            out.append(f"{where}: accepted must be a bool, got {accepted!r}")
            continue
        if not accepted:
            if rec.get("node_map") is not None or rec.get("paths") is not None:
                out.append(f"{where}: rejected but node_map/paths are not null")
            for name in ("revenue", "cost", "link_revenue", "link_cost"):
                if name in rec and rec[name] != 0:
                    out.append(f"{where}: rejected but {name} = {rec[name]} (must be 0)")
            continue

        problems, usable = _check_structure(k, req, rec, n_sub, dom, bw, rtol)
        out.extend(problems)
        if not usable:
            continue

        # Commit: every demand must fit the residual at that moment (eqs. 4-6).
        items = []
        for i, (nd, h) in enumerate(zip(req["nodes"], rec["node_map"])):
            c, s = float(nd["cpu"]), float(nd["sto"])
            if cpu[h] - c < -RES_ATOL:
                out.append(f"{where}: node {i} needs cpu {c} but host {h} has residual cpu "
                           f"{cpu[h]} at t={arrival} (eq. 4)")
            if sto[h] - s < -RES_ATOL:
                out.append(f"{where}: node {i} needs sto {s} but host {h} has residual sto "
                           f"{sto[h]} at t={arrival} (eq. 5)")
            cpu[h] -= c
            sto[h] -= s
            items += [("cpu", h, c), ("sto", h, s)]
        for j, (link, p) in enumerate(zip(req["links"], rec["paths"])):
            demand = float(link["bw"])
            for u, v in zip(p, p[1:]):
                e = _key(u, v)
                if bw[e] - demand < -RES_ATOL:
                    out.append(f"{where}: link {j} needs bw {demand} but substrate link {e} "
                               f"has residual bw {bw[e]} at t={arrival} (eq. 6)")
                bw[e] -= demand
                items.append(("bw", e, demand))
        heapq.heappush(held, (departure, k, items))

    out.extend(_check_metrics(requests, trace, metrics, rtol))
    return out


def _check_metrics(requests, trace, metrics, rtol) -> list[str]:
    """Each metrics row must equal the running metrics recomputed from the trace."""
    out = []
    n_acc = 0
    rev = cost = lrev = lcost = 0.0
    accepted_so_far: list[tuple[float, float, float]] = []  # (revenue, arrival, departure)
    for k, (req, rec) in enumerate(zip(requests, trace)):
        if k >= len(metrics):
            break
        t = float(req["arrival"])
        if rec.get("accepted") is True:
            n_acc += 1
            rev += float(rec.get("revenue", 0.0))
            cost += float(rec.get("cost", 0.0))
            paths = rec.get("paths") or []
            lrev += sum(float(lk["bw"]) for lk in req["links"])
            lcost += sum(float(lk["bw"]) * (len(p) - 1)
                         for lk, p in zip(req["links"], paths) if isinstance(p, list))
            accepted_so_far.append(
                (float(rec.get("revenue", 0.0)), t, t + float(req["lifetime"])))
        if t > 0:
            ar = sum(r * (min(dep, t) - arr) for r, arr, dep in accepted_so_far) / t
        else:
            ar = 0.0
        expect = {
            "time": t,
            "AR": ar,
            "ACR": n_acc / (k + 1),
            "RC": rev / cost if cost != 0 else 0.0,
            "RC_link": lrev / lcost if lcost != 0 else 0.0,
        }
        row = metrics[k]
        for name, value in expect.items():
            if name not in row:
                out.append(f"metrics row {k}: missing {name}")
            elif not _close(row[name], value, rtol):
                out.append(f"metrics row {k}: {name} = {row[name]} but the trace gives {value}")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m sagin_jax.reference.check_audit DIR``: check an audit folder written by
    ``sagin-jax simulate``. Prints ``OK: N requests, ...`` (exit 0), the violations one per line
    (exit 1), or one line saying why the folder cannot be read (exit 2)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m sagin_jax.reference.check_audit DIR  (a folder written by "
              "`sagin-jax simulate --out DIR`)", file=sys.stderr)
        return 0 if args and args[0] in ("-h", "--help") else 2
    path = args[0]
    try:
        scenario, trace, metrics = load_audit_dir(path)
        violations = check_audit(scenario, trace, metrics)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        # a damaged folder (missing file, malformed JSON/CSV, missing field): one line
        what = f"{err.__class__.__name__}: {err}" if not isinstance(err, OSError) else \
            f"{err.strerror}: {err.filename}"
        msg = " ".join(what.split())
        print(f"check_audit: error: {path}: cannot check this audit folder ({msg})",
              file=sys.stderr)
        return 2
    if violations:
        for v in violations:
            print(v)
        print(f"FAILED: {len(violations)} violation(s) in {path}", file=sys.stderr)
        return 1
    print(f"OK: {len(trace)} requests, every constraint and metric holds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
