"""The ``sagin-jax`` command line. Bad input: one readable line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import os
import sys

ALGOS = ("nrmvne", "grc", "random", "ddrl-nra", "rlvne")


def _scenario_config(path: str | None):
    from sagin_jax.config import PAPER, ScenarioConfig
    from sagin_jax.scenario.io import read_json
    if path is None:
        return PAPER
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a scenario config must be a JSON object, got "
                         f"{type(doc).__name__}")
    doc = doc.get("scenario", doc)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: field 'scenario' must be a JSON object, got "
                         f"{type(doc).__name__}")
    return ScenarioConfig.from_dict(doc)


def cmd_simulate(args) -> int:
    import jax
    from sagin_jax.audit import write_audit
    from sagin_jax.policies.baselines import BASELINES
    from sagin_jax.scenario.build import max_concurrent
    from sagin_jax.scenario.generator import generate_requests, generate_substrate
    from sagin_jax.simulation.online import simulate

    if args.algo in BASELINES:
        if args.checkpoint:
            raise ValueError(f"--checkpoint is for the learning agents, not --algo {args.algo}")
        cfg = _scenario_config(args.config)
        policy, params = BASELINES[args.algo], None
    else:
        if not args.checkpoint:
            raise ValueError(f"--algo {args.algo} needs --checkpoint (train one with "
                             "`sagin-jax train`)")
        from sagin_jax.training.checkpoint import load_checkpoint
        from sagin_jax.training.reinforce import policies_for
        params, cfg, tcfg, _ = load_checkpoint(args.checkpoint)
        if tcfg.algo != args.algo:
            raise ValueError(f"checkpoint {args.checkpoint} holds a {tcfg.algo} agent, "
                             f"not {args.algo}")
        policy = policies_for(tcfg)[1]
    sub = generate_substrate(cfg, args.seed)
    reqs = generate_requests(cfg, args.seed, args.split)
    run = jax.jit(simulate, static_argnums=(0,), static_argnames=("max_active", "record_paths"))
    _, out = run(policy, params, jax.random.key(args.seed), sub, reqs,
                 max_active=max_concurrent(reqs), record_paths=True)
    out_dir = write_audit(args.out, sub, reqs, out)
    m = out.metrics
    print(f"{args.algo} seed {args.seed} ({args.split}): AR={float(m.ar[-1]):.1f} "
          f"ACR={float(m.acr[-1]):.4f} R/C={float(m.rc[-1]):.4f} "
          f"R/C(link)={float(m.rc_link[-1]):.4f} -> {out_dir}/")
    return 0


def cmd_train(args) -> int:
    from sagin_jax.training.checkpoint import save_checkpoint
    from sagin_jax.training.config import TrainConfig
    from sagin_jax.training.run import train_grid

    cfg = _scenario_config(args.config)
    tcfg = TrainConfig(algo=args.algo, epochs=args.epochs, batch_size=args.batch_size,
                       central_server_every=args.central_server_every)
    if args.config:  # a "train" section (e.g. a sweep's best.json) sets every training field
        from sagin_jax.experiments.sweep import train_section
        tcfg = train_section(args.config, tcfg)
    lr = args.lr if args.lr is not None else tcfg.lr
    res = train_grid(cfg, tcfg, seeds=[args.seed], lrs=[lr], progress=not args.quiet)
    params = res.params_at(0, 0)
    save_checkpoint(args.out, params, cfg, tcfg, args.seed, lr)
    c = res.curves
    print(f"trained {args.algo} seed {args.seed} lr {lr}: last-batch AR={float(c.ar[0, 0, -1, -1]):.1f}"
          f" ACR={float(c.acr[0, 0, -1, -1]):.4f} R/C={float(c.rc[0, 0, -1, -1]):.4f} "
          f"(compile {res.compile_s:.1f}s, run {res.run_s:.1f}s) -> {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    import jax
    from sagin_jax.scenario.build import max_concurrent
    from sagin_jax.scenario.generator import generate_requests, generate_substrate
    from sagin_jax.training.checkpoint import load_checkpoint
    from sagin_jax.training.reinforce import make_evaluate

    params, cfg, tcfg, meta = load_checkpoint(args.checkpoint)
    seed = meta["seed"] if args.seed is None else args.seed
    sub = generate_substrate(cfg, seed)
    reqs = generate_requests(cfg, seed, "test")
    ev = jax.jit(make_evaluate(tcfg, max_concurrent(reqs)))
    _, out = ev(params, jax.random.key(seed), sub, reqs)
    m = out.metrics
    result = {"algo": tcfg.algo, "seed": seed, "AR": float(m.ar[-1]), "ACR": float(m.acr[-1]),
              "RC": float(m.rc[-1]), "RC_link": float(m.rc_link[-1])}
    print(json.dumps(result) if args.json else
          f"{tcfg.algo} test on seed {seed}: AR={result['AR']:.1f} ACR={result['ACR']:.4f} "
          f"R/C={result['RC']:.4f} R/C(link)={result['RC_link']:.4f}")
    return 0


def cmd_reproduce(args) -> int:
    from sagin_jax.experiments.reproduce import reproduce
    out = args.out or ("results" if args.full else "results/small")
    reproduce(config=args.config, full=args.full, out=out, resume=args.resume,
              seeds=args.seeds, progress=not args.quiet)
    return 0


def cmd_bench(args) -> int:
    from sagin_jax.experiments.bench import bench
    bench(config=args.config, out=args.out, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sagin-jax",
        description="Vectorised JAX simulator of online resource allocation in a space-air-ground "
                    "integrated network (SAGIN): the DDRL-NRA agent, RLVNE, NRMVNE, GRC, random.")
    p.add_argument("--host-devices", type=int, metavar="N",
                   help="split the CPU into N JAX devices and run the seed axis on all of them "
                        "(e.g. the number of cores); results are identical")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("simulate", help="one online pass on one seed, writing an audit trail",
                       description="Run one online pass over a seed's request set and write "
                                   "DIR/scenario.json, DIR/trace.jsonl and DIR/metrics.csv.")
    s.add_argument("--algo", choices=ALGOS, required=True)
    s.add_argument("--seed", type=int, default=0, help="scenario seed (default 0)")
    s.add_argument("--out", required=True, metavar="DIR", help="output directory")
    s.add_argument("--checkpoint", help="trained agent (ddrl-nra / rlvne)")
    s.add_argument("--split", choices=("train", "test"), default="test",
                   help="which request set (default test)")
    s.add_argument("--config", help="scenario config JSON (default: the paper scenario)")
    s.set_defaults(func=cmd_simulate)

    t = sub.add_parser("train", help="train DDRL-NRA or RLVNE on one seed's scenario",
                       description="REINFORCE training (Algorithm 1) on the training requests of "
                                   "--seed; writes a checkpoint with the configs.")
    t.add_argument("--algo", choices=("ddrl-nra", "rlvne"), required=True)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, metavar="CKPT")
    t.add_argument("--lr", type=float, help="learning rate α (default 0.005)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--central-server-every", type=int, default=0,
                   help="average a segment's agents every K updates (0 = off)")
    t.add_argument("--config", help="scenario config JSON (default: the paper scenario); its "
                                    "'train' section, if any (a sweep's best.json), sets the "
                                    "training config, overriding --epochs etc.")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="greedy test pass of a checkpoint (Algorithm 2)")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--seed", type=int, help="scenario seed (default: the checkpoint's)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("reproduce", help="run the paper's experiments (Figs. 4-8) into results/",
                       description="Run every experiment of the paper's section V and write one "
                                   "CSV and one PNG per figure plus results/README.md.")
    r.add_argument("--full", action="store_true",
                   help="the paper's settings and 32 seeds (default: a small, ~2 minute run)")
    r.add_argument("--config", help="experiment file (default experiments/reproduce_small.json "
                                    "or experiments/reproduce_full.json with --full)")
    r.add_argument("--out", help="output directory (default: results/ with --full, "
                                 "results/small/ otherwise, so a quick run never overwrites the "
                                 "committed full results)")
    r.add_argument("--seeds", type=int, help="override the number of seeds")
    r.add_argument("--resume", action="store_true", help="skip experiments already complete")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_reproduce)

    b = sub.add_parser("bench", help="throughput vs the networkx reference, compile time apart")
    b.add_argument("--config", help="bench config JSON (default experiments/bench.json)")
    b.add_argument("--out", default="results", help="output directory (default results/)")
    b.add_argument("--quick", action="store_true", help="fewer seeds and requests")
    b.set_defaults(func=cmd_bench)
    from sagin_jax.experiments.sweep import add_sweep_parser
    add_sweep_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.host_devices is not None:
        if args.host_devices < 1:
            parser.error(f"--host-devices must be >= 1, got {args.host_devices}")
        if "jax" in sys.modules:
            print("sagin-jax: warning: JAX already imported; --host-devices ignored",
                  file=sys.stderr)
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={args.host_devices}")
    try:
        return args.func(args)
    except (ValueError, OSError) as err:
        # bad input (incl. a missing or unreadable file): one readable line, exit code 2
        msg = " ".join(str(err).split())
        print(f"sagin-jax {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
