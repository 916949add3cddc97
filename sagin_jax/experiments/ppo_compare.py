"""PPO against the paper's agent: ``sagin-jax ppo`` writes ``results/ppo/``.

PPO (``training.ppo``) trains one policy on the training request sets of the reproduction's
seeds (a pool environment; each reset picks one) and is tested greedily on the same seeds'
test sets, the 32 test scenarios of Figs. 5-7. Against it on those test sets: DDRL-NRA trained
per seed with the paper's settings (``experiments/full/fig5_7.json``: 10 epochs, batch 100,
rate 0.005) and with the sweep's best configuration (``results/sweeps/ddrl_paper/best.json``),
and NRMVNE. Paired 95% intervals over the seeds of AR and ACR at the last test request
(``stats.mean_ci`` of the per-seed differences).
"""
from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np

from sagin_jax.config import PAPER
from sagin_jax.experiments.stats import mean_ci
from sagin_jax.files import read_json, write_csv, write_json

DDRL_PAPER = {"epochs": 10, "batch_size": 100, "lr": 0.005}
"""DDRL-NRA's settings in Figs. 5-7 (``experiments/full/fig5_7.json``)."""
METRICS = ("AR", "ACR", "RC")


def _final(metrics) -> dict:
    """Per-seed metrics at the last request: {"AR": f[S], ...} from Metrics with a request axis
    last (or none)."""
    pick = lambda x: np.asarray(x, np.float64).reshape(np.shape(x)[0], -1)[:, -1]  # noqa: E731
    return {"AR": pick(metrics.ar), "ACR": pick(metrics.acr), "RC": pick(metrics.rc)}


def _ddrl(tcfg, lr, subs, train, test, seeds, table, progress) -> dict:
    from sagin_jax.training.run import evaluate_grid, train_grid
    res = train_grid(PAPER, tcfg, seeds, [lr], progress=progress, subs=subs, train_reqs=train,
                     max_active=table)
    out = evaluate_grid(tcfg, res.params, subs, test, seeds, max_active=table)
    return _final(jax.tree_util.tree_map(lambda x: x[:, 0], out.metrics))


def _scenarios(seeds: list) -> tuple:
    """(substrates, train requests, test requests, table size) of ``seeds`` on the paper's
    scenario, materialised on the host (PPO's pool environment plays them). Link and neighbour
    lists are cut to what the seeds use, rounded up to buckets (masked padding: no number
    changes)."""
    from sagin_jax.scenario.generate import make_scenarios, trim_padding
    from sagin_jax.simulation.batch import table_size
    scen = make_scenarios(PAPER, seeds)
    subs = trim_padding(scen.sub, edge_bucket=32, degree_bucket=4)
    return subs, scen.train, scen.test, table_size(scen.train, scen.test)


def _tick_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc="ppo updates", disable=not enabled)

    def tick(*_):
        bar.update(1)
    return bar, tick


def run(out: Path, seeds: int = 32, ppo=None, sweep_best: str | Path | None = None,
        progress: bool = True) -> dict:
    """Train and test everything, write ``out``; -> the summary dict."""
    from sagin_jax.env import SaginEnv
    from sagin_jax.env.rollout import episode_steps
    from sagin_jax.policies.baselines import NRMVNE
    from sagin_jax.simulation.batch import simulate_seeds
    from sagin_jax.training import ppo as ppo_lib
    from sagin_jax.training.config import TrainConfig

    cfg = ppo or ppo_lib.PPOConfig()
    cfg.validate()
    seed_list = list(range(seeds))
    t0 = time.perf_counter()
    subs, train, test, table = _scenarios(seed_list)
    finals, walls = {}, {}

    t = time.perf_counter()
    env = SaginEnv.from_scenarios(subs, train, reward="revenue", max_active=table)
    params = env.make_params(revenue_scale=1000.0)
    bar, tick = _tick_bar(cfg.num_updates, progress)
    net, train_fn = ppo_lib.make_train(cfg, env, params, on_update=tick)
    # one PPO seed, through jit(vmap(train)) as any number of seeds would run
    state, curve = jax.block_until_ready(jax.jit(jax.vmap(train_fn))(
        jax.random.split(jax.random.key(0), 1)))
    bar.close()
    ppo_params = jax.tree_util.tree_map(lambda x: x[0], state.params)
    test_env = SaginEnv.from_scenarios(subs, test, max_active=table)
    m = jax.jit(lambda p: ppo_lib.evaluate_greedy(net, p, test_env, test_env.default_params,
                                                  episode_steps(test)))(ppo_params)
    finals["ppo"] = _final(jax.tree_util.tree_map(lambda x: np.asarray(x)[:, None], m))
    walls["ppo"] = time.perf_counter() - t

    t = time.perf_counter()
    paper = TrainConfig.from_dict({"algo": "ddrl-nra", "epochs": DDRL_PAPER["epochs"],
                                   "batch_size": DDRL_PAPER["batch_size"]})
    finals["ddrl-nra"] = _ddrl(paper, DDRL_PAPER["lr"], subs, train, test, seed_list, table,
                               progress)
    walls["ddrl-nra"] = time.perf_counter() - t
    if sweep_best is not None:
        t = time.perf_counter()
        best = dict(read_json(sweep_best)["train"])
        lr = best.pop("lr")
        tuned = TrainConfig.from_dict({**best, "algo": "ddrl-nra"})
        finals["ddrl-nra-sweep"] = _ddrl(tuned, lr, subs, train, test, seed_list, table,
                                         progress)
        walls["ddrl-nra-sweep"] = time.perf_counter() - t
    t = time.perf_counter()
    _, o = simulate_seeds(NRMVNE, None, seed_list, subs, test, max_active=table)
    finals["nrmvne"] = _final(o.metrics)
    walls["nrmvne"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    return write(out, cfg, finals, np.asarray(curve["acceptance"])[0],
                 np.asarray(curve["reward"])[0], walls, total, seeds)


def paired(finals: dict, a: str, b: str, metric: str) -> dict:
    """Mean and 95% interval over seeds of ``a - b`` (paired by seed)."""
    d = finals[a][metric] - finals[b][metric]
    mean, half = mean_ci(d)
    return {"a": a, "b": b, "metric": metric, "mean_diff": float(mean),
            "ci_low": float(mean - half), "ci_high": float(mean + half), "n_seeds": len(d)}


def _verdict(row: dict) -> str:
    if row["ci_low"] > 0:
        return "higher"
    if row["ci_high"] < 0:
        return "lower"
    return "no clear difference"


def write(out: Path, cfg, finals: dict, acceptance, reward, walls: dict, total: float,
          seeds: int) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    algos = list(finals)
    rows = []
    for algo in algos:
        for metric in METRICS:
            mean, half = mean_ci(finals[algo][metric])
            rows.append({"algo": algo, "metric": metric, "mean": float(mean),
                         "ci_low": float(mean - half), "ci_high": float(mean + half),
                         "n_seeds": seeds})
    write_csv(out / "comparison.csv", list(rows[0]), rows)
    pairs = [paired(finals, "ppo", b, m) for b in algos if b != "ppo" for m in ("AR", "ACR")]
    pairs += [paired(finals, a, "nrmvne", m) for a in algos if a.startswith("ddrl")
              for m in ("AR", "ACR")]
    write_csv(out / "paired.csv", list(pairs[0]), pairs)
    per_seed = [{"seed": s, "algo": a, **{m: float(finals[a][m][s]) for m in METRICS}}
                for a in algos for s in range(seeds)]
    write_csv(out / "per_seed.csv", ["seed", "algo", *METRICS], per_seed)
    curve = [{"update": i + 1, "env_steps": (i + 1) * cfg.num_envs * cfg.num_steps,
              "train_acceptance": float(acceptance[i]), "mean_step_reward": float(reward[i])}
             for i in range(len(acceptance))]
    write_csv(out / "learning_curve.csv", list(curve[0]), curve)
    _plot_curve(out / "learning_curve.png", curve, finals)
    summary = {"ppo_config": cfg.to_dict(), "seeds": seeds, "paired": pairs,
               "wall_s": {**{k: round(v, 1) for k, v in walls.items()}, "total": round(total, 1)}}
    write_json(out / "summary.json", summary)
    (out / "README.md").write_text(_readme(cfg, rows, pairs, summary))
    return summary


def _plot_curve(path: Path, curve: list, finals: dict) -> None:
    from sagin_jax.experiments.plots import pyplot
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = [c["env_steps"] for c in curve]
    ax.plot(x, [c["train_acceptance"] for c in curve], color="tab:orange",
            label="PPO, training rollouts (sampled actions)")
    for algo, style in (("ddrl-nra", ("tab:red", "--")), ("nrmvne", ("tab:green", "-.")),
                        ("ppo", ("tab:orange", ":"))):
        ax.axhline(float(np.mean(finals[algo]["ACR"])), color=style[0], ls=style[1],
                   label=f"{algo}, test mean (greedy)")
    ax.set_xlabel("environment steps (node placements)")
    ax.set_ylabel("acceptance rate")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(row: dict) -> str:
    return f"{row['mean_diff']:+.4g} [{row['ci_low']:+.4g}, {row['ci_high']:+.4g}]"


def _readme(cfg, rows, pairs, summary) -> str:
    by = {(p["b"], p["metric"]): p for p in pairs if p["a"] == "ppo"}
    lines = ["# PPO against DDRL-NRA and NRMVNE", "",
             "Written by `sagin-jax ppo --out results/ppo`. PPO trains one policy on the "
             f"training request sets of seeds 0..{summary['seeds'] - 1} (paper config) and is "
             "tested greedily on the same seeds' test sets, the test scenarios of Figs. 5-7. "
             "DDRL-NRA is trained per seed (paper settings; and the sweep's best configuration "
             "where listed). AR and ACR at the last test request; intervals are 95%, paired by "
             "seed.", "",
             f"PPO: {cfg.num_updates} updates x {cfg.num_envs} environments x {cfg.num_steps} "
             f"steps = {cfg.num_updates * cfg.num_envs * cfg.num_steps:,} node placements; "
             f"wall time {summary['wall_s']['ppo']} s of {summary['wall_s']['total']} s in all.",
             "", "## Does PPO beat the paper's agent?", ""]
    for b in ("ddrl-nra", "ddrl-nra-sweep", "nrmvne"):
        if (b, "AR") not in by:
            continue
        ar, acr = by[(b, "AR")], by[(b, "ACR")]
        lines.append(f"- PPO vs {b}: AR {_verdict(ar)} ({_fmt(ar)}); "
                     f"ACR {_verdict(acr)} ({_fmt(acr)}).")
    wins = [b for b in ("ddrl-nra", "ddrl-nra-sweep") if (b, "AR") in by
            and by[(b, "AR")]["ci_low"] > 0]
    lines += ["", "PPO beats the paper's agent on AR." if wins else
              "PPO does not beat the paper's agent: no AR interval lies above zero."]
    steps = cfg.num_updates * cfg.num_steps
    lines += ["", "learning_curve.png: the acceptance over each update's training rollouts "
              "(sampled actions). Acceptance falls as an episode's network fills, and each "
              f"environment took {steps:,} steps in all (an episode of 1,000 requests is about "
              "4,500 steps), so the curve mixes episode phases; the horizontal lines are the "
              "greedy test means.",
              "", "## Means over seeds", "", "| algo | metric | mean | 95% interval |",
              "|---|---|---|---|"]
    lines += [f"| {r['algo']} | {r['metric']} | {r['mean']:.4g} | "
              f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}] |" for r in rows]
    lines += ["", "## Paired differences (a - b)", "", "| a | b | metric | mean [95%] |",
              "|---|---|---|---|"]
    lines += [f"| {p['a']} | {p['b']} | {p['metric']} | {_fmt(p)} |" for p in pairs]
    lines += ["", "Files: comparison.csv, paired.csv, per_seed.csv, learning_curve.csv/.png, "
              "summary.json.", ""]
    return "\n".join(lines)


# --- command line ---------------------------------------------------------------------------
DEFAULT_SWEEP_BEST = Path("results/sweeps/ddrl_paper/best.json")
RESULTS_PPO = dict(  # the ppo command's --help names these defaults
    num_envs=32, num_steps=64, num_updates=1000, update_epochs=2, hidden=32)
"""PPO's settings for ``results/ppo``: 2,048,000 node placements, about 455,000 requests at
~4.5 steps each, against the 320,000 training requests of DDRL-NRA's 32 runs (10 epochs of
1,000); about 3 minutes of PPO training on 2 cores."""


def cmd_ppo(args) -> int:
    from sagin_jax import validate
    from sagin_jax.training.ppo import PPOConfig
    validate.output_dir(args.out, "--out")
    for flag in ("updates", "envs", "steps"):
        v = getattr(args, flag)
        if v is not None and v < 1:
            raise ValueError(f"--{flag} must be a positive integer, got {v}")
    if args.sweep_best is not None and not Path(args.sweep_best).is_file():
        raise ValueError(f"--sweep-best: no such file: {args.sweep_best}")
    over = {"num_updates": args.updates, "num_envs": args.envs, "num_steps": args.steps}
    cfg = PPOConfig(**{**RESULTS_PPO, **{k: v for k, v in over.items() if v is not None}})
    cfg.validate()
    best = args.sweep_best
    if best is None and not args.no_sweep and DEFAULT_SWEEP_BEST.is_file():
        best = DEFAULT_SWEEP_BEST
    run(Path(args.out), seeds=args.seeds, ppo=cfg, sweep_best=best, progress=not args.quiet)
    print("wrote " + ", ".join(str(Path(args.out) / f) for f in (
        "README.md", "comparison.csv", "paired.csv", "per_seed.csv", "learning_curve.csv",
        "learning_curve.png", "summary.json")))
    return 0
