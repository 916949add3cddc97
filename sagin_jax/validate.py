"""The validation layer: every value read from the command line or from a file is checked here,
BEFORE any computation, one function per input kind:

* ``cli_args``          command-line flags (learning rate, counts, seeds, device count);
* ``experiment``        an experiment file of ``sagin-jax reproduce``;
* ``bench_config``      a ``sagin-jax bench --config`` file;
* ``scenario_file``     ``--scenario FILE``: a scenario.json or a node-link substrate.

Each layer checks its own objects, and this module uses those checks: a scenario config
(``ScenarioConfig.from_json``), a ``train`` object (``TrainConfig.from_json``), a hyperparameter
(``training.config.check_domain``), a checkpoint (``training.checkpoint.checkpoint_contents``).

Each raises ``ValueError`` with a message naming the file and the field (or the flag) and the bad
value; the CLI turns it into one line on stderr and exit code 2. The type predicates are those of
``sagin_jax.checks``.
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from sagin_jax.checks import (SEED_LIMIT, check_seed, is_finite_number, is_int, is_number,
                              one_line, where_prefix)
from sagin_jax.config import MAX_CAPACITY, MAX_TIME, ScenarioConfig
from sagin_jax.files import check_writable_dir, read_json
from sagin_jax.scenario.generator import generate_requests
from sagin_jax.scenario.io import requests_from_dict, substrate_from_dict
from sagin_jax.training.config import HYPER_DOMAINS, TrainConfig, check_domain

ALGOS = ("nrmvne", "grc", "random", "ddrl-nra", "rlvne")
LEARNING_ALGOS = ("ddrl-nra", "rlvne")
EXPERIMENT_KINDS = ("fig4", "compare", "storage", "load")
EXPERIMENT_FIELDS = {
    "common": ("name", "kind", "seeds", "description", "scenario", "train", "seed_loop",
               "chunk"),
    "fig4": ("lrs",),
    "compare": ("algos", "lr", "rlvne_lr", "time_points"),
    "storage": ("sto_ranges", "lr", "time_points"),
    "load": ("loads", "lifetime_loads", "req_nodes_ranges", "algos", "lr", "rlvne_lr",
             "best_config"),
}
_STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


# ---- command-line flags -------------------------------------------------------------------

def flag_positive_int(flag: str, v) -> None:
    if not is_int(v) or v < 1:
        raise ValueError(f"{flag} must be an integer >= 1, got {v!r}")


def flag_learning_rate(flag: str, v) -> None:
    check_domain("lr", v, flag)


def cli_args(args) -> None:
    """Check the flags of a parsed ``sagin-jax`` command line (argparse has checked the types)."""
    if getattr(args, "host_devices", None) is not None:
        flag_positive_int("--host-devices", args.host_devices)
    for name in ("seed",):
        if getattr(args, name, None) is not None:
            check_seed(f"--{name}", getattr(args, name))
    for name in ("epochs", "batch_size", "seeds"):
        if getattr(args, name, None) is not None and not isinstance(getattr(args, name), str):
            flag_positive_int("--" + name.replace("_", "-"), getattr(args, name))
    if getattr(args, "lr", None) is not None:
        flag_learning_rate("--lr", args.lr)
    if getattr(args, "central_server_every", None) is not None:
        v = args.central_server_every
        if not is_int(v) or v < 0:
            raise ValueError(f"--central-server-every must be an integer >= 0, got {v!r}")


# ---- scenario and training configs ----------------------------------------------------------

# ---- experiment files -----------------------------------------------------------------------

def _is_learning_rate(v) -> bool:
    return v in HYPER_DOMAINS["lr"]


def _int_ranges(exp: dict, key: str, scenario_field: str, low: int, w: str, path,
                non_empty: bool) -> None:
    """``exp[key]``: a list of [lo, hi] integer ranges, ``low <= lo <= hi``, each valid as the
    scenario's ``scenario_field``."""
    ranges = exp.get(key, [])
    if not isinstance(ranges, list) or (non_empty and not ranges):
        raise ValueError(f"{w}field '{key}' must be a {'non-empty ' * non_empty}list of "
                         f"[lo, hi], got {ranges!r}")
    for i, r in enumerate(ranges):
        if not (isinstance(r, list) and len(r) == 2 and all(is_int(x) for x in r)
                and low <= r[0] <= r[1]):
            raise ValueError(f"{w}field '{key}'[{i}] must be [lo, hi] integers with "
                             f"{low} <= lo <= hi, got {r!r}")
        ScenarioConfig.from_json({**exp.get("scenario", {}), scenario_field: r}, path,
                                 field=f"{key}[{i}] with scenario")


def _load_fields(exp: dict, w: str, path) -> None:
    """The fields of a load experiment: offered loads (numbers > 0), request-size ranges, each
    point's scenario valid, and the sweep's best configuration as a relative path."""
    base = exp.get("scenario", {})
    for key in ("loads", "lifetime_loads"):
        vals = exp.get(key, [] if key == "lifetime_loads" else None)
        if not isinstance(vals, list) or (key == "loads" and not vals):
            raise ValueError(f"{w}field '{key}' must be a {'non-empty ' * (key == 'loads')}"
                             f"list of offered loads, got {vals!r}")
        for i, rho in enumerate(vals):
            if not (is_finite_number(rho) and rho > 0):
                raise ValueError(f"{w}field '{key}'[{i}] must be a finite number > 0, got "
                                 f"{rho!r}")
            cfg = ScenarioConfig.from_json(base, path)
            varied = ("arrival_rate", "mean_lifetime")[key == "lifetime_loads"]
            other = cfg.mean_lifetime if key == "loads" else cfg.arrival_rate
            ScenarioConfig.from_json({**base, varied: rho / other}, path,
                                     field=f"{key}[{i}] with scenario")
    _int_ranges(exp, "req_nodes_ranges", "req_nodes", 1, w, path, non_empty=False)
    best = exp.get("best_config")
    if best is not None and not (isinstance(best, str) and best and not os.path.isabs(best)
                                 and ".." not in best.split("/")):
        raise ValueError(f"{w}field 'best_config' must be a path relative to the output "
                         f"folder (no '..'), or null, got {best!r}")


def experiment(doc, path, seeds: int | None = None) -> dict:
    """Check one experiment file of ``reproduce`` (already parsed); ``seeds`` overrides its seed
    count. -> the document with ``_scenario`` (ScenarioConfig) added."""
    w = where_prefix(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{w}an experiment file must be a JSON object, got {type(doc).__name__}")
    for key in ("name", "kind", "seeds"):
        if key not in doc:
            raise ValueError(f"{w}missing field '{key}'")
    name, kind = doc["name"], doc["kind"]
    if not isinstance(name, str) or not _STEM.match(name) or ".." in name:
        raise ValueError(f"{w}field 'name' = {name!r} must be a plain file stem (letters, digits, "
                         "'_', '-', '.'; no '/' or '..')")
    if not isinstance(kind, str) or kind not in EXPERIMENT_KINDS:
        raise ValueError(f"{w}field 'kind' = {kind!r}; expected one of {EXPERIMENT_KINDS}")
    allowed = set(EXPERIMENT_FIELDS["common"]) | set(EXPERIMENT_FIELDS[kind])
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise ValueError(f"{w}unknown field(s) {unknown} for kind '{kind}'; known: "
                         f"{sorted(allowed)}")
    exp = dict(doc)
    if seeds is not None:
        flag_positive_int("--seeds", seeds)
        exp["seeds"] = seeds
    if not is_int(exp["seeds"]) or exp["seeds"] < 1:
        raise ValueError(f"{w}field 'seeds' must be a positive integer, got {exp['seeds']!r}")
    if exp["seeds"] > SEED_LIMIT:
        raise ValueError(f"{w}field 'seeds' = {exp['seeds']} exceeds 2**32 seeds")
    if "description" in exp and not isinstance(exp["description"], str):
        raise ValueError(f"{w}field 'description' must be a string")
    if "chunk" in exp and (not is_int(exp["chunk"]) or exp["chunk"] < 1):
        raise ValueError(f"{w}field 'chunk' (seeds per compiled call) must be a positive "
                         f"integer, got {exp['chunk']!r}")
    if exp.get("seed_loop") not in (None, "map", "vmap"):
        raise ValueError(f"{w}field 'seed_loop' = {exp['seed_loop']!r}; expected 'map', "
                         "'vmap' or null")
    if "lrs" in exp:
        lrs = exp["lrs"]
        if not isinstance(lrs, list) or not lrs:
            raise ValueError(f"{w}field 'lrs' must be a non-empty list of learning rates, got "
                             f"{lrs!r}")
        for i, lr in enumerate(lrs):
            if not _is_learning_rate(lr):
                raise ValueError(f"{w}field 'lrs'[{i}] must be a finite number > 0, got {lr!r}")
        if len(set(lrs)) != len(lrs):
            raise ValueError(f"{w}field 'lrs' has repeated values {lrs!r}")
    for key in ("lr", "rlvne_lr"):
        if key in exp and not _is_learning_rate(exp[key]):
            raise ValueError(f"{w}field '{key}' must be a finite number > 0, got {exp[key]!r}")
    if "algos" in exp:
        algos = exp["algos"]
        if not isinstance(algos, list) or not algos:
            raise ValueError(f"{w}field 'algos' must be a non-empty list of algorithms, got "
                             f"{algos!r}")
        for a in algos:
            if a not in ALGOS:
                raise ValueError(f"{w}field 'algos': unknown algorithm {a!r}; known: {ALGOS}")
        if len(set(algos)) != len(algos):
            raise ValueError(f"{w}field 'algos' has repeated entries {algos!r}")
    if "time_points" in exp:
        tp = exp["time_points"]
        if not is_int(tp) or not 2 <= tp <= 100_000:
            raise ValueError(f"{w}field 'time_points' must be an integer in [2, 100000], got "
                             f"{tp!r}")
    scen = ScenarioConfig.from_json(exp.get("scenario", {}), path)
    if "sto_ranges" in exp:
        _int_ranges(exp, "sto_ranges", "req_sto", 0, w, path, non_empty=True)
    if kind == "load":
        _load_fields(exp, w, path)
    train = exp.get("train", {})
    TrainConfig.from_json(train if not isinstance(train, dict) else {**train}, path,
                          n_train=scen.n_train)
    if kind == "compare" and not exp.get("algos", ALGOS):
        raise ValueError(f"{w}field 'algos' is empty")
    exp["_scenario"] = scen
    return exp


# ---- bench config ---------------------------------------------------------------------------

def _int_list(v, minimum: int = 1) -> bool:
    return isinstance(v, list) and all(is_int(x) and x >= minimum for x in v)


def bench_config(doc, path) -> None:
    """Check a ``bench --config`` file: known fields only, each of the right type."""
    w = where_prefix(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{w}a bench config must be a JSON object, got {type(doc).__name__}")
    checks = {
        "seeds": (lambda v: _int_list(v) and v, "a non-empty list of integers >= 1"),
        "loops": (lambda v: isinstance(v, list) and v and all(x in ("map", "vmap") for x in v),
                  "a non-empty list of 'map'/'vmap'"),
        "vmap_max_seeds": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
        "reference_seeds": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
        "speedup_seeds": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
        "speedup_loop": (lambda v: v in ("map", "vmap"), "'map' or 'vmap'"),
        "scenario": (lambda v: isinstance(v, dict), "a JSON object"),
        "train": (lambda v: isinstance(v, dict), "a JSON object"),
        "fig4": (lambda v: v is None or isinstance(v, dict), "a JSON object or null"),
        "scale_nodes": (lambda v: _int_list(v, 10), "a list of integers >= 10"),
        "scale_seeds": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
        "scale_requests": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
        "trip_seeds": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
        "trip_policies": (lambda v: isinstance(v, list) and v
                          and set(v) <= {"nrmvne", "ddrl-nra"},
                          "a non-empty list of 'nrmvne'/'ddrl-nra'"),
        "generation": (lambda v: v is None or isinstance(v, dict), "a JSON object or null"),
        "train_memory_seeds": (lambda v: isinstance(v, list) and _int_list(v),
                               "a list of integers >= 1"),
        "sweep": (lambda v: v is None or isinstance(v, dict), "a JSON object or null"),
        "warmup": (lambda v: isinstance(v, bool), "true or false"),
        "env": (lambda v: v is None or isinstance(v, dict), "a JSON object or null"),
        "end_to_end": (lambda v: v is None or isinstance(v, dict), "a JSON object or null"),
    }
    _sub_fields(doc, checks, w)
    fig4 = doc.get("fig4")
    if isinstance(fig4, dict):
        sub = {"seeds": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
               "epochs": (lambda v: is_int(v) and v >= 1, "an integer >= 1"),
               "lrs": (lambda v: isinstance(v, list) and v and all(_is_learning_rate(x) for x in v),
                       "a non-empty list of finite numbers > 0"),
               "loop": (lambda v: v in ("map", "vmap"), "'map' or 'vmap'")}
        _sub_fields(fig4, sub, w, "fig4")
    gen = doc.get("generation")
    if isinstance(gen, dict):
        sub = {k: (lambda v: is_int(v) and v >= 1, "an integer >= 1")
               for k in ("seeds", "chunk", "numpy_seeds")}
        _sub_fields(gen, sub, w, "generation")
    env = doc.get("env")
    if isinstance(env, dict):
        _sub_fields(env, {"envs": (lambda v: isinstance(v, list) and v and _int_list(v),
                                   "a non-empty list of integers >= 1"),
                          "steps": (lambda v: is_int(v) and v >= 1, "an integer >= 1")},
                    w, "env")
    e2e = doc.get("end_to_end")
    if isinstance(e2e, dict):
        sub = {k: (lambda v: is_int(v) and v >= 1, "an integer >= 1")
               for k in ("seeds", "component_seeds", "materialise_seeds", "chunk")}
        _sub_fields(e2e, sub, w, "end_to_end")
    sweep = doc.get("sweep")
    if isinstance(sweep, dict):
        sub = {k: (lambda v: is_int(v) and v >= 1, "an integer >= 1")
               for k in ("configs", "seeds", "epochs", "slots", "batch_size")}
        _sub_fields(sweep, sub, w, "sweep")
    if "scenario" in doc:
        ScenarioConfig.from_json(doc["scenario"], path)
    if "train" in doc:
        TrainConfig.from_json({"algo": "ddrl-nra", "epochs": 1, **doc["train"]}, path)


def _sub_fields(obj: dict, checks: dict, w: str, field: str | None = None) -> None:
    """Every key of ``obj`` known to ``checks`` ({key: (ok, what it must be)}) and its value ok;
    errors name the field as ``field.key``."""
    for key, v in obj.items():
        name = f"{field}.{key}" if field else key
        if key not in checks:
            raise ValueError(f"{w}unknown field '{name}'; known: {sorted(checks)}")
        ok, want = checks[key]
        if not ok(v):
            raise ValueError(f"{w}field '{name}' must be {want}, got {v!r}")


# ---- --scenario FILE --------------------------------------------------------------------------

def scenario_file(path, cfg, seed: int, split: str):
    """``--scenario FILE``: (substrate, requests). A scenario.json (what ``simulate`` writes:
    substrate and requests) gives both; a node-link JSON (substrate only) gets the requests of
    ``split`` generated from ``cfg`` and ``seed``. Every substrate and request check applies;
    errors name the file."""
    doc = read_json(path)
    w = where_prefix(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{w}a scenario file must be a JSON object, got {type(doc).__name__}")
    _check_magnitudes(doc, w)
    links = doc.get("links", doc.get("edges"))
    node_link = isinstance(links, list) and any(isinstance(lk, dict) and "source" in lk
                                                for lk in links)
    node_link = node_link or "directed" in doc or "multigraph" in doc
    try:
        if node_link:
            # lazy: networkx adds 0.2 s of import CPU to every --help and bad-input error (1.7 s)
            from sagin_jax.scenario.node_link import substrate_from_node_link
            sub = substrate_from_node_link(doc)
        else:
            sub = substrate_from_dict(doc)
        if "requests" in doc:
            reqs = requests_from_dict(doc, sub.n_domains, cfg.max_req_nodes)
        else:
            reqs = _generated_requests(cfg, seed, split, sub)
    except (TypeError, KeyError, IndexError, OverflowError) as err:
        raise ValueError(f"{w}malformed scenario ({err.__class__.__name__}: {err})") from None
    except ValueError as err:
        raise ValueError(f"{w}{one_line(err)}") from None
    _check_fits(sub, reqs)
    return sub, reqs


def _check_magnitudes(doc: dict, w: str) -> None:
    """Capacities and demands above ``MAX_CAPACITY`` and times above ``MAX_TIME`` would become
    inexact or infinite as float32 (1e39 -> inf): refuse them, naming the field."""

    def check(obj, keys, limit, where):
        if not isinstance(obj, dict):
            return
        for k in keys:
            v = obj.get(k)
            if is_number(v) and math.isfinite(float(v)) and abs(float(v)) > limit:
                raise ValueError(f"{w}{where} field '{k}' = {v!r} exceeds {limit:.0e} (float32 "
                                 "values would be inexact or infinite)")

    for i, nd in enumerate(doc.get("nodes") or [] if isinstance(doc.get("nodes"), list) else []):
        check(nd, ("cpu", "sto"), MAX_CAPACITY, f"node {i}")
    links = doc.get("links", doc.get("edges"))
    for j, lk in enumerate(links if isinstance(links, list) else []):
        check(lk, ("bw",), MAX_CAPACITY, f"link {j}")
    reqs = doc.get("requests")
    for k, rq in enumerate(reqs if isinstance(reqs, list) else []):
        check(rq, ("arrival", "lifetime"), MAX_TIME, f"request {k}")
        if isinstance(rq, dict):
            for i, nd in enumerate(rq.get("nodes") if isinstance(rq.get("nodes"), list) else []):
                check(nd, ("cpu", "sto"), MAX_CAPACITY, f"request {k} node {i}")
            for j, lk in enumerate(rq.get("links") if isinstance(rq.get("links"), list) else []):
                check(lk, ("bw",), MAX_CAPACITY, f"request {k} link {j}")


def _generated_requests(cfg, seed: int, split: str, sub):
    if cfg.n_domains > sub.n_domains:
        raise ValueError(f"the scenario config draws requests over {cfg.n_domains} domains but "
                         f"the substrate has {sub.n_domains}; set domains_per_segment in "
                         "--config to match")
    return generate_requests(cfg, seed, split)


def _check_fits(sub, reqs) -> None:
    """Requests must address existing domains (build_requests checks ids)."""
    dom = np.asarray(reqs.domain)[np.asarray(reqs.node_mask)]
    if dom.size and int(dom.max()) >= sub.n_domains:
        raise ValueError(f"a request names domain {int(dom.max())}, but the substrate has "
                         f"{sub.n_domains}")


def output_dir(path, flag: str) -> None:
    """An output directory must be creatable and writable (checked before compute)."""
    check_writable_dir(os.fspath(path), flag)
