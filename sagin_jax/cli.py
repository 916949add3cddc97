"""The ``sagin-jax`` command line.

Every flag and every file is checked (``sagin_jax.validate``) before any computation, and every
output folder is checked writable first. Bad input: ONE readable line on stderr naming the flag or
the file and field, and exit code 2. Ctrl-C: one line saying what was kept, exit code 130, no
half-written output (every file is written atomically, see ``sagin_jax.files``). Every command
ends by listing the files it wrote.

To add a command, write an ``add_<name>_parser(sub)`` that calls ``sub.add_parser(...)`` and
``set_defaults(func=...)``, and call it from ``build_parser``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings

import jax

from sagin_jax import backend_started, validate
from sagin_jax.compilation import enable_persistent_cache
from sagin_jax.config import PAPER, ScenarioConfig
from sagin_jax.experiments.sweep.command import add_sweep_parser
from sagin_jax.experiments.sweep.spec import train_section
from sagin_jax.files import check_writable_file, read_json
from sagin_jax.host_memory import tune_malloc
from sagin_jax.scenario.build import max_concurrent
from sagin_jax.scenario.generator import generate_requests, generate_substrate
from sagin_jax.training.checkpoint import load_checkpoint, save_checkpoint
from sagin_jax.training.config import TrainConfig
from sagin_jax.validate import ALGOS, LEARNING_ALGOS

# The simulator, the trainer and the experiments are imported by the commands that run them:
# importing them here would add 1.2 s of CPU (reproduce 1.1 s, training 0.3 s, bench 0.2 s, the
# simulation 0.2 s) to every --help and every bad-input error, which take 1.6 s without them.

DEFAULT_LR = 0.005
INTERRUPTED = {
    "reproduce": "interrupted; finished experiments are kept, run again with --resume to continue",
    "evaluate": "interrupted; a --seeds run keeps its finished chunks in --out, run it again "
                "with --resume to continue",
    "train": "interrupted; a --seeds run keeps its finished chunks in --out (--resume "
             "continues it); otherwise no checkpoint was written",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``sagin-jax CMD: error: ...`` and exit code 2 (argparse's
    own prints the whole usage first)."""

    def error(self, message: str):
        msg = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {msg} (see {self.prog} --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    pass


# ---- shared helpers -----------------------------------------------------------------------

def _scenario_config(path: str | None):
    if path is None:
        return PAPER
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a scenario config must be a JSON object, got "
                         f"{type(doc).__name__}")
    if "scenario" in doc:
        return ScenarioConfig.from_json(doc["scenario"], path)
    return ScenarioConfig.from_json(doc, path, field="config")


def _load_agent(path: str, algo: str | None = None):
    """(params, ScenarioConfig, TrainConfig, meta) of a checkpoint, checked."""
    return load_checkpoint(path, algo)


def _scenario_from_file(args, cfg, split: str):
    """(substrate, requests) of ``--scenario FILE``."""
    return validate.scenario_file(args.scenario, cfg, args.seed or 0, split)


def _written(paths) -> None:
    for p in paths:
        print(f"wrote {p}")


# ---- commands -------------------------------------------------------------------------------

def cmd_simulate(args) -> int:
    validate.output_dir(args.out, "--out")
    if args.algo not in LEARNING_ALGOS:
        if args.checkpoint:
            raise ValueError(f"--checkpoint is for the learning agents, not --algo {args.algo}")
        cfg = _scenario_config(args.config)
        policy, params = None, None
    else:
        if not args.checkpoint:
            raise ValueError(f"--algo {args.algo} needs --checkpoint (train one with "
                             "`sagin-jax train`)")
        if args.config:
            raise ValueError("--config is taken from the checkpoint; leave it out with "
                             "--checkpoint")
        params, cfg, tcfg, _ = _load_agent(args.checkpoint, args.algo)
    if args.scenario:
        sub, reqs = _scenario_from_file(args, cfg, args.split)
        if params is not None and sub.n_domains != cfg.n_domains:
            raise ValueError(f"--scenario {args.scenario}: the substrate has {sub.n_domains} "
                             f"domains but the checkpoint's agent was trained for "
                             f"{cfg.n_domains}")
    # lazy: the simulation, 0.2 s of import CPU (see the top)
    from sagin_jax.audit_trail import AUDIT_FILES, write_audit
    from sagin_jax.policies.baselines import BASELINES
    from sagin_jax.simulation.online import simulate
    if params is None:
        policy = BASELINES[args.algo]
    else:
        from sagin_jax.training.reinforce import policies_for  # lazy: 0.3 s of import CPU
        policy = policies_for(tcfg)[1]
    if not args.scenario:
        sub = generate_substrate(cfg, args.seed)
        reqs = generate_requests(cfg, args.seed, args.split)
    run = jax.jit(simulate, static_argnums=(0,), static_argnames=("max_active", "record_paths"))
    _, out = run(policy, params, jax.random.key(args.seed), sub, reqs,
                 max_active=max_concurrent(reqs), record_paths=True)
    out_dir = write_audit(args.out, sub, reqs, out)
    m = out.metrics
    source = f"on {args.scenario}" if args.scenario else f"seed {args.seed} ({args.split})"
    print(f"{args.algo} {source}: AR={float(m.ar[-1]):.1f} "
          f"ACR={float(m.acr[-1]):.4f} R/C={float(m.rc[-1]):.4f} "
          f"R/C(link)={float(m.rc_link[-1]):.4f}")
    _written(out_dir / f for f in AUDIT_FILES)
    return 0


def cmd_train(args) -> int:
    if args.seeds is not None:
        if args.scenario or args.seed:
            raise ValueError("--scenario and --seed are for one seed; leave them out with --seeds")
        validate.output_dir(args.out, "--out")
        _check_stream_flags(args)
    else:
        for flag, value in (("--chunk", args.chunk), ("--resume", args.resume)):
            if value:
                raise ValueError(f"{flag} is for --seeds runs; add --seeds N or leave it out")
        check_writable_file(args.out, "--out")
    cfg = _scenario_config(args.config)
    tdoc = {"algo": args.algo, "epochs": args.epochs, "batch_size": args.batch_size,
            "central_server_every": args.central_server_every}
    subs = train_reqs = None
    if args.scenario:
        sub, reqs = _scenario_from_file(args, cfg, "train")
        n_train, where = reqs.n_requests, f"the {reqs.n_requests} requests of {args.scenario}"
    else:
        n_train, where = cfg.n_train, f"the {cfg.n_train} training requests (n_train)"
    if n_train % args.batch_size:
        raise ValueError(f"--batch-size {args.batch_size} must divide {where}")
    tcfg = TrainConfig.from_json(tdoc, None, field="flags", n_train=n_train)
    if args.config:  # a "train" section (e.g. a sweep's best.json) sets every training field
        tcfg = train_section(args.config, tcfg)
        if n_train % tcfg.batch_size:
            raise ValueError(f"{args.config}: train batch_size {tcfg.batch_size} must divide "
                             f"{where}")
    lr = tcfg.lr if args.lr is None else args.lr
    if args.seeds is not None:
        from sagin_jax.experiments.evaluate import parse_seeds, train_seeds_to  # lazy
        paths = train_seeds_to(cfg, tcfg, parse_seeds(args.seeds), args.out, lr,
                               args.time_points, args.chunk, args.resume,
                               progress=not args.quiet)
        _print_summary(args.out, f"{tcfg.algo} trained and tested")
        _written(paths)
        return 0
    from sagin_jax.training.run import train_grid  # lazy: 0.3 s of import CPU (see the top)
    if args.scenario:
        cfg = cfg.replace(n_train=n_train)
        subs = jax.tree_util.tree_map(lambda x: x[None], sub)
        train_reqs = jax.tree_util.tree_map(lambda x: x[None], reqs)
    res = train_grid(cfg, tcfg, seeds=[args.seed], lrs=[lr], progress=not args.quiet,
                     subs=subs, train_reqs=train_reqs)
    params = res.params_at(0, 0)
    extra = {"scenario_file": os.path.abspath(args.scenario)} if args.scenario else None
    path = save_checkpoint(args.out, params, cfg, tcfg, args.seed, lr, extra)
    c = res.curves
    print(f"trained {args.algo} seed {args.seed} lr {lr}: last-batch AR={float(c.ar[0, 0, -1, -1]):.1f}"
          f" ACR={float(c.acr[0, 0, -1, -1]):.4f} R/C={float(c.rc[0, 0, -1, -1]):.4f} "
          f"(compile {res.compile_s:.1f}s, run {res.run_s:.1f}s)")
    _written([path])
    return 0


def _evaluate_many(args) -> int:
    """``evaluate --seeds``: the streaming test pass (``experiments.evaluate``)."""
    from sagin_jax.experiments.evaluate import parse_seeds
    for flag, value in (("--scenario", args.scenario), ("--seed", args.seed),
                        ("--json", args.json)):
        if value:
            raise ValueError(f"{flag} is for one seed; leave it out with --seeds")
    if not args.out:
        raise ValueError("--seeds needs --out DIR")
    validate.output_dir(args.out, "--out")
    _check_stream_flags(args)
    seeds = parse_seeds(args.seeds)
    if args.checkpoint:
        if args.config:
            raise ValueError("--config is taken from the checkpoint; leave it out with "
                             "--checkpoint")
        params, cfg, tcfg, _ = _load_agent(args.checkpoint, args.algo)
        from sagin_jax.training.reinforce import policies_for  # lazy (see the top)
        algo, policy = tcfg.algo, policies_for(tcfg)[1]
        source = {"checkpoint": os.path.abspath(args.checkpoint)}
    else:
        if args.algo is None:
            raise ValueError("--seeds needs --algo (or --checkpoint for a trained agent)")
        if args.algo in LEARNING_ALGOS:
            raise ValueError(f"--algo {args.algo} needs --checkpoint (train one with "
                             "`sagin-jax train`)")
        from sagin_jax.policies.baselines import BASELINES
        cfg, algo, policy, params = _scenario_config(args.config), args.algo, None, None
        policy = BASELINES[algo]
        source = {"config": os.path.abspath(args.config)} if args.config else {}
    from sagin_jax.experiments.evaluate import evaluate_seeds  # lazy (see the top)
    paths = evaluate_seeds(cfg, algo, policy, params, seeds, args.out, args.time_points,
                           args.chunk, args.resume, progress=not args.quiet, source=source)
    _print_summary(args.out, algo)
    _written(paths)
    return 0


def _check_stream_flags(args) -> None:
    from sagin_jax.experiments.evaluate import parse_seeds
    parse_seeds(args.seeds)
    if args.chunk is not None and args.chunk < 1:
        raise ValueError(f"--chunk must be >= 1, got {args.chunk}")
    if args.time_points < 2:
        raise ValueError(f"--time-points must be >= 2, got {args.time_points}")


def _print_summary(out: str, what: str) -> None:
    summary = read_json(os.path.join(out, "summary.json"))
    m = summary["metrics"]
    print(f"{what} on {summary['n_seeds']} seeds (test pass): " + " ".join(
        f"{k}={m[k]['mean']:.4g}±{m[k]['half_width']:.2g}" for k in ("AR", "ACR", "RC", "O")))


def cmd_evaluate(args) -> int:
    if args.seeds is not None:
        return _evaluate_many(args)
    for flag, value in (("--out", args.out), ("--algo", args.algo), ("--config", args.config),
                        ("--resume", args.resume), ("--chunk", args.chunk)):
        if value:
            raise ValueError(f"{flag} is for --seeds runs; add --seeds N or leave it out")
    if not args.checkpoint:
        raise ValueError("evaluate needs --checkpoint (or --seeds with --algo)")
    params, cfg, tcfg, meta = _load_agent(args.checkpoint)
    seed = meta["seed"] if args.seed is None else args.seed
    if args.scenario:
        args.seed = seed
        sub, reqs = _scenario_from_file(args, cfg, "test")
        if sub.n_domains != cfg.n_domains:
            raise ValueError(f"--scenario {args.scenario}: the substrate has {sub.n_domains} "
                             f"domains but the checkpoint's agent was trained for "
                             f"{cfg.n_domains}")
    from sagin_jax.training.reinforce import make_evaluate  # lazy: 0.3 s of import CPU
    if not args.scenario:
        sub = generate_substrate(cfg, seed)
        reqs = generate_requests(cfg, seed, "test")
    ev = jax.jit(make_evaluate(tcfg, max_concurrent(reqs)))
    _, out = ev(params, jax.random.key(seed), sub, reqs)
    m = out.metrics
    result = {"algo": tcfg.algo, "seed": seed, "AR": float(m.ar[-1]), "ACR": float(m.acr[-1]),
              "RC": float(m.rc[-1]), "RC_link": float(m.rc_link[-1])}
    if args.scenario:
        result["scenario"] = args.scenario
    source = args.scenario or f"seed {seed}"
    print(json.dumps(result) if args.json else
          f"{tcfg.algo} test on {source}: AR={result['AR']:.1f} ACR={result['ACR']:.4f} "
          f"R/C={result['RC']:.4f} R/C(link)={result['RC_link']:.4f}")
    return 0


def cmd_reproduce(args) -> int:
    from sagin_jax.experiments.reproduce import reproduce  # lazy: 1.1 s of import CPU
    out = args.out or ("results" if args.full else "results/small")
    written: list = []
    reproduce(config=args.config, full=args.full, out=out, resume=args.resume,
              seeds=args.seeds, progress=not args.quiet, written=written)
    _written(written)
    return 0


def cmd_bench(args) -> int:
    validate.output_dir(args.out, "--out")
    from sagin_jax.experiments.bench import bench  # lazy: 0.2 s of import CPU (see the top)
    bench(config=args.config, out=args.out, quick=args.quick, accelerator=args.accelerator)
    return 0


# ---- parser -------------------------------------------------------------------------------

def _int(text: str) -> int:
    """An integer flag value (``1e3`` and ``2.0`` are refused, as argparse's ``int``)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _add(sub, name: str, **kw):
    return sub.add_parser(name, formatter_class=_Formatter, **kw)


def add_simulate_parser(sub) -> None:
    s = _add(sub, "simulate", help="one online pass on one seed or scenario file, writing an "
             "audit trail",
             description="Run one online pass over a seed's request set (or the substrate and "
                         "requests of --scenario FILE) and write DIR/scenario.json, "
                         "DIR/trace.jsonl and DIR/metrics.csv. Check them with "
                         "`python -m sagin_jax.reference.check_audit DIR`.")
    s.add_argument("--algo", choices=ALGOS, required=True, help="allocation algorithm")
    s.add_argument("--seed", type=_int, default=0,
                   help="scenario seed (and the policy's random key), in [0, 2**32)")
    s.add_argument("--out", required=True, metavar="DIR", help="output directory")
    s.add_argument("--checkpoint", metavar="CKPT",
                   help="trained agent (needed by ddrl-nra and rlvne)")
    s.add_argument("--split", choices=("train", "test"), default="test",
                   help="which generated request set")
    s.add_argument("--config", metavar="FILE",
                   help="scenario config JSON (default: the paper scenario)")
    s.add_argument("--scenario", metavar="FILE",
                   help="run on this substrate instead of a generated one: a scenario.json as "
                        "simulate writes it (substrate and requests) or a node-link JSON "
                        "(substrate only; requests generated from the config and --seed)")
    s.set_defaults(func=cmd_simulate)


def add_train_parser(sub) -> None:
    t = _add(sub, "train", help="train DDRL-NRA or RLVNE on one seed's scenario",
             description="REINFORCE training (Algorithm 1) on the training requests of --seed "
                         "(or of --scenario FILE); writes a checkpoint with the configs.")
    t.add_argument("--algo", choices=LEARNING_ALGOS, required=True, help="agent to train")
    t.add_argument("--seed", type=_int, default=0, help="scenario seed, in [0, 2**32)")
    t.add_argument("--out", required=True, metavar="CKPT",
                   help="checkpoint file to write (with --seeds: output folder)")
    t.add_argument("--lr", type=_float, default=None,
                   help=f"learning rate α, a finite number > 0 (default {DEFAULT_LR}, or the "
                        "--config file's train section)")
    t.add_argument("--epochs", type=_int, default=10, help="passes over the training requests")
    t.add_argument("--batch-size", type=_int, default=100,
                   help="requests per gradient update (must divide the training requests)")
    t.add_argument("--central-server-every", type=_int, default=0,
                   help="average a segment's agents every K updates (0 = off)")
    t.add_argument("--config", metavar="FILE",
                   help="scenario config JSON (default: the paper scenario); its 'train' "
                        "section, if any (a sweep's best.json), sets the training config, "
                        "overriding --epochs, --batch-size and the hyperparameters")
    t.add_argument("--scenario", metavar="FILE",
                   help="train on this substrate: a scenario.json (its requests are the "
                        "training set) or a node-link JSON (requests generated from the config)")
    t.add_argument("--seeds", metavar="N|A:B",
                   help="train one agent per seed 0..N-1 (or A..B-1) and test each greedily on "
                        "its seed's test requests, a chunk of seeds at a time in bounded memory; "
                        "writes --out/per_seed.csv, summary.json, curves.csv, per_seed.png and "
                        "params/chunk-*.npz")
    t.add_argument("--chunk", type=_int, default=None,
                   help="with --seeds: seeds per compiled call; changes no number")
    t.add_argument("--time-points", type=_int, default=60,
                   help="with --seeds: points of the test pass's time grid in curves.csv")
    t.add_argument("--resume", action="store_true",
                   help="with --seeds: continue an interrupted run from its last finished chunk")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)


def add_evaluate_parser(sub) -> None:
    e = _add(sub, "evaluate", help="test pass of an algorithm: one seed, or any number of seeds",
             description="Without --seeds: evaluate a trained agent greedily (Algorithm 2) on "
                         "the test requests of a seed (default: the seed it was trained on) or "
                         "of --scenario FILE, and print AR, ACR, R/C and link R/C. With --seeds: "
                         "run --algo (or the --checkpoint's agent) on the test requests of every "
                         "seed, generating, simulating and reducing a chunk of seeds at a time "
                         "(memory does not grow with the seed count), and write DIR/per_seed.csv, "
                         "summary.json (means, exact 95% intervals), curves.csv and "
                         "per_seed.png.")
    e.add_argument("--checkpoint", metavar="CKPT",
                   help="trained agent (ddrl-nra, rlvne); needed without --seeds")
    e.add_argument("--algo", choices=ALGOS,
                   help="with --seeds: the algorithm (ddrl-nra and rlvne need --checkpoint)")
    e.add_argument("--seed", type=_int, help="scenario seed (default: the checkpoint's)")
    e.add_argument("--seeds", metavar="N|A:B",
                   help="evaluate seeds 0..N-1 (or A..B-1) in bounded memory; needs --out")
    e.add_argument("--out", metavar="DIR", help="with --seeds: output folder")
    e.add_argument("--config", metavar="FILE",
                   help="with --seeds and a heuristic: scenario config JSON (default: the "
                        "paper scenario; a checkpoint brings its own)")
    e.add_argument("--chunk", type=_int, default=None,
                   help="seeds per compiled call (default: 64 per CPU device, 512 on an "
                        "accelerator); changes no number")
    e.add_argument("--time-points", type=_int, default=60,
                   help="points of the time grid of curves.csv (0 to the expected last arrival)")
    e.add_argument("--resume", action="store_true",
                   help="continue an interrupted --seeds run in --out from its last finished "
                        "chunk")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.add_argument("--scenario", metavar="FILE",
                   help="test on this substrate (scenario.json or node-link JSON)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_evaluate)


def add_reproduce_parser(sub) -> None:
    r = _add(sub, "reproduce", help="run the paper's experiments (Figs. 4-8)",
             description="Run every experiment of the paper's section V and write one CSV and "
                         "one PNG per figure plus README.md into --out. The default small run "
                         "(experiments/small/*.json: 4 seeds, 3 epochs) takes about a minute of "
                         "compute on 2 cores once programs are compiled (first run: a few "
                         "minutes); --full runs experiments/full/*.json. Ctrl-C keeps finished "
                         "experiments; --resume continues.")
    r.add_argument("--full", action="store_true",
                   help="the paper's settings and 32 seeds (experiments/full/*.json)")
    r.add_argument("--config", metavar="FILE",
                   help="one experiment file, e.g. experiments/small/fig5_7.json (default: "
                        "every file of experiments/small/, or experiments/full/ with --full)")
    r.add_argument("--out", metavar="DIR",
                   help="output directory (default: results/ with --full, results/small/ "
                        "otherwise, so a quick run never overwrites the committed full results)")
    r.add_argument("--seeds", type=_int, help="override the number of seeds (>= 1)")
    r.add_argument("--resume", action="store_true",
                   help="skip experiments already complete with the same settings")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.set_defaults(func=cmd_reproduce)


def add_bench_parser(sub) -> None:
    b = _add(sub, "bench", help="throughput vs the networkx reference, compile time apart",
             description="Measure request embeddings per second of the JAX simulator against the "
                         "sequential networkx reference in one run (compile time apart), and "
                         "write OUT/bench.csv and OUT/bench.png. Writes results/ only when "
                         "--out results is named.")
    b.add_argument("--config", metavar="FILE",
                   help="bench config JSON overriding the built-in workload sizes")
    b.add_argument("--out", default="out/bench", metavar="DIR", help="output directory")
    b.add_argument("--quick", action="store_true", help="fewer seeds and requests")
    b.add_argument("--accelerator", action="store_true",
                   help="wide vmap up to 16,384 seeds (meant for a GPU), bench-gpu.*")
    b.set_defaults(func=cmd_bench)


def cmd_ppo(args) -> int:
    from sagin_jax.experiments import ppo_compare  # lazy: imports gymnax (~3 s), an extra
    return ppo_compare.cmd_ppo(args)


def add_ppo_parser(sub) -> None:
    p = _add(
        sub, "ppo",
        help="train PPO on the gymnax environment and compare it with DDRL-NRA and NRMVNE",
        description="Train PPO (sagin_jax.training.ppo) on the training request sets of the "
                    "reproduction's seeds, test it greedily on their test sets against "
                    "DDRL-NRA (paper settings and the sweep's best) and NRMVNE, and write "
                    "paired 95%% intervals of AR and ACR, a learning curve and a README to OUT. "
                    "Needs the 'env' extra (gymnax).")
    p.add_argument("--out", default="out/ppo", metavar="DIR",
                   help="output folder (results/ppo for the committed results)")
    p.add_argument("--seeds", type=_int, default=32, help="scenario seeds 0..N-1")
    p.add_argument("--updates", type=_int, default=1000, help="PPO updates")
    p.add_argument("--envs", type=_int, default=32, help="environments")
    p.add_argument("--steps", type=_int, default=64, help="steps per environment per update")
    p.add_argument("--sweep-best", metavar="FILE",
                   help="the sweep's best.json (without it: results/sweeps/ddrl_paper/best.json "
                        "where present)")
    p.add_argument("--no-sweep", action="store_true",
                   help="skip DDRL-NRA with the sweep's best configuration")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_ppo)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sagin-jax", formatter_class=_Formatter,
        description="Vectorised JAX simulator of online resource allocation in a space-air-ground "
                    "integrated network (SAGIN): the DDRL-NRA agent, RLVNE, NRMVNE, GRC, random.",
        epilog="Compiled programs are cached on disk in ~/.cache/sagin-jax/xla (set "
               "SAGIN_JAX_CACHE_DIR to move it; --no-compile-cache to skip it). Bad input gives "
               "one line on stderr and exit code 2; Ctrl-C exit code 130.")
    p.add_argument("--host-devices", type=_int, metavar="N",
                   help="split the CPU into N JAX devices and run the seed axis on all of them "
                        "(e.g. the number of cores); results are identical")
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           parser_class=_Parser)
    add_simulate_parser(sub)
    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_reproduce_parser(sub)
    add_bench_parser(sub)
    add_sweep_parser(sub)
    add_ppo_parser(sub)
    return p


# ---- process setup --------------------------------------------------------------------------

_DEVICE_FLAG = re.compile(r"--xla_force_host_platform_device_count=\S*")


def set_host_devices(n: int) -> None:
    """Ask XLA for ``n`` CPU devices, replacing (never duplicating) a device count already in
    ``XLA_FLAGS``. Must run before JAX starts its backend; warns if it already has."""
    flags = _DEVICE_FLAG.sub("", os.environ.get("XLA_FLAGS", "")).split()
    flags.append(f"--xla_force_host_platform_device_count={n}")
    os.environ["XLA_FLAGS"] = " ".join(flags)
    if backend_started():
        warnings.warn("JAX's backend is already running; --host-devices has no effect",
                      RuntimeWarning, stacklevel=2)


def _fail(command: str, message: str, code: int) -> int:
    msg = " ".join(str(message).split())
    print(f"sagin-jax {command}: error: {msg}" if code == 2 else f"sagin-jax {command}: {msg}",
          file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a one-line usage error (2)
        return int(stop.code or 0)
    command = args.command
    try:
        validate.cli_args(args)
        tune_malloc()  # reuse freed memory for XLA's output buffers (no page faults per call)
        if args.host_devices is not None:
            set_host_devices(args.host_devices)
        if not args.no_compile_cache:
            enable_persistent_cache()
        return args.func(args)
    except (ValueError, OSError) as err:
        # bad input (incl. a missing or unreadable file): one readable line, exit code 2
        if isinstance(err, OSError) and err.filename is not None:
            err = f"{err.filename}: {err.strerror}"
        return _fail(command, err, 2)
    except KeyboardInterrupt:
        code = _fail(command, INTERRUPTED.get(command, "interrupted; nothing was written"), 130)
        if argv is None:
            # a real command line: leave at once, so JAX's worker threads cannot crash the
            # interpreter's shutdown (a segmentation fault after Ctrl-C)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code


if __name__ == "__main__":
    sys.exit(main())
