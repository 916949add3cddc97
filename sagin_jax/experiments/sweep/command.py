"""The ``sweep`` command line.

This module imports nothing heavy: the CLI builds every command's parser on each call, and the
sweep itself (JAX, Optuna, matplotlib: about 2 s of imports) is imported only when it runs."""
from __future__ import annotations


def cmd_sweep(args) -> int:
    # imported when the command runs (see the module docstring)
    from sagin_jax.experiments.sweep.report import claims_row
    from sagin_jax.experiments.sweep.run import run_sweep
    s = run_sweep(args.config, out=args.out, budget=args.budget, resume=args.resume,
                  progress=not args.quiet, compare=not args.no_compare, storage=args.storage,
                  worker=args.worker)
    if not s["written"]:
        running = sum(s.get("running", {}).values())
        print(f"this process's trials are done; {running} trial(s) still running on other "
              "workers (the last one to end writes the outputs)" if running else
              "the study is finished and its outputs were already written")
        return 0
    for algo, b in s["best"].items():
        print(f"{algo}: {s['n_trials'][algo]} trials, best validation O={b['value']:.4f} "
              f"{b['params']}")
    if "comparison" in s and "ddrl-nra" in s["comparison"]["gain_vs"]:
        print(claims_row(s))
    return 0


def add_sweep_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="hyperparameter search (Optuna) of DDRL-NRA / RLVNE, a batch of trials "
                      "trained as one compiled program",
        description="Search the traced hyperparameters (lr, init_scale, ar_scale, w_ar, w_rc, "
                    "w_acr, failed_reward, failed_weight, central_strength, baseline_weight, "
                    "baseline_decay, reward_norm, entropy_coef, max_grad_norm) given in the "
                    "sweep file; the static ones (algo, epochs, batch_size, "
                    "central_server_every, reward, batch_reduce) are fixed per sweep in its "
                    "'train' section. Validation on the training seeds; the best configuration "
                    "is retrained and compared on separate test seeds. Several processes, on "
                    "one machine or many, can search one study: start it once, then join it "
                    "with --worker NAME (same --storage).")
    p.add_argument("--config", required=True, metavar="SWEEP_JSON",
                   help="sweep file (e.g. experiments/sweeps/ddrl_paper.json)")
    p.add_argument("--out", metavar="DIR", help="output folder (default results/sweeps/NAME)")
    p.add_argument("--budget", help="trials (N) of the whole study, every worker's together, or "
                                    "wall seconds ('300s') of this process, per algorithm; "
                                    "default: the file's 'budget'")
    p.add_argument("--storage", metavar="URL",
                   help="where the studies live: a postgresql://... or mysql://... URL (for "
                        "workers on several machines); default: the journal file "
                        "DIR/study.journal (several processes on one machine)")
    p.add_argument("--worker", metavar="NAME",
                   help="join the existing studies as worker NAME, with a population of its "
                        "own (checkpoint DIR/<algo>_population.NAME.npz; run again with the "
                        "same NAME to continue it); the last process to end writes the outputs")
    p.add_argument("--resume", action="store_true",
                   help="continue the studies (finished trials are kept); on a finished sweep, "
                        "train nothing and rewrite the comparison and the report")
    p.add_argument("--no-compare", action="store_true",
                   help="skip the test-seed retraining and comparison")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_sweep)
