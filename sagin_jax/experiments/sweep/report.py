"""A finished sweep's outputs: trials.csv, the plots, best.json, summary.json and README.md."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sagin_jax.experiments.plots import pyplot
from sagin_jax.experiments.report import PAPER_GAINS, gain_verdict
from sagin_jax.files import atomic_path, atomic_write_text, write_csv


def trial_rows(studies: dict, spaces: dict) -> tuple[list[str], list[dict]]:
    """Every trial of every algorithm's study: algo, number, state, the searched hyperparameters
    (blank where that algorithm does not search one), final value and the intermediate value of
    each epoch (blank after a trial was pruned)."""
    trials = {a: st.get_trials(deepcopy=False) for a, st in studies.items()}
    n_steps = max((max(t.intermediate_values, default=-1) + 1
                   for ts in trials.values() for t in ts), default=0)
    names = sorted(set().union(*(spaces[a] for a in studies)))
    epochs = [f"epoch_{e}" for e in range(n_steps)]
    rows = []
    for algo, ts in trials.items():
        for t in ts:
            rows.append({"algo": algo, "number": t.number, "state": t.state.name,
                         **{p: t.params.get(p, "") for p in names},
                         "value": "" if t.value is None else repr(t.value),
                         **{f"epoch_{e}": repr(t.intermediate_values[e])
                            if e in t.intermediate_values else "" for e in range(n_steps)}})
    return ["algo", "number", "state", *names, "value", *epochs], rows


def _save(fig, path: Path) -> None:
    # bbox_inches: Optuna's slice plot has a colour bar, which tight_layout cannot place
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    finally:
        pyplot().close(fig)


def plot_study(study: optuna.Study, out: Path, algo: str, space: dict) -> list[Path]:
    """Optuna's optimisation history and slice plot (objective against each searched
    hyperparameter) of the study's complete trials, as ``{algo}_history.png`` and
    ``{algo}_params.png``."""
    pyplot()  # the Agg backend, chosen before pyplot is first imported
    # imported here, not above: importing Optuna's plots imports pyplot (and fixes its backend)
    import optuna.visualization.matplotlib as optuna_plots
    paths = [out / f"{algo}_history.png", out / f"{algo}_params.png"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna_plots.plot_optimization_history(study, target_name="validation objective O")
        ax.set_title(f"{algo}: optimisation history")
        _save(ax.figure, paths[0])
        axes = optuna_plots.plot_slice(study, params=sorted(space),
                                       target_name="validation objective O")
        fig = getattr(axes, "figure", None) or axes.flat[0].figure
        fig.suptitle(f"{algo}: objective against each searched hyperparameter")
        _save(fig, paths[1])
    return paths


def search_span_s(study: optuna.Study) -> float:
    """Seconds from the first trial's start to the last trial's end (the study's own
    timestamps, so it spans every worker and every resumed run)."""
    ts = [t for t in study.get_trials(deepcopy=False)
          if t.datetime_start is not None and t.datetime_complete is not None]
    if not ts:
        return 0.0
    return (max(t.datetime_complete for t in ts)
            - min(t.datetime_start for t in ts)).total_seconds()


def _trials(study_or_trials) -> list:
    if isinstance(study_or_trials, optuna.Study):
        return study_or_trials.get_trials(deepcopy=False)
    return list(study_or_trials)


def state_counts(study_or_trials) -> dict[str, int]:
    """{state name: trials} of a study, or of a snapshot of its trials."""
    out: dict[str, int] = {}
    for t in _trials(study_or_trials):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def n_running(study_or_trials) -> int:
    """Trials still running, in a study or a snapshot of its trials."""
    return sum(t.state == TrialState.RUNNING for t in _trials(study_or_trials))


def claims_row(summary: dict) -> str:
    """The claims-table row "DDRL-NRA, best found configuration vs NRMVNE" (paper: +18.15% AR,
    +8.35% ACR) for results/README.md, with the paired 95% intervals on the test seeds and the
    reproduction's verdict rule (``report.gain_verdict``: an interval wider than the paper's
    effect is "inconclusive", never "agrees")."""
    g = summary["comparison"]["gain_vs"]["ddrl-nra"]["nrmvne"]
    n = g["AR"]["n_seeds"]
    fmt = lambda d: f"{100 * d['mean']:+.2f}% ± {100 * d['ci95']:.2f}%"  # noqa: E731
    verdict = "; ".join(f"{k}: " + gain_verdict({"mean": g[k]["mean"], "ci": g[k]["ci95"]}, claim)
                        for k, claim in PAPER_GAINS.items())
    paper = ", ".join(f"+{100 * c:.2f}% {k}" for k, c in PAPER_GAINS.items())
    return (f"| DDRL-NRA, best found configuration vs NRMVNE | {paper} | "
            f"AR {fmt(g['AR'])}, ACR {fmt(g['ACR'])} ({n} test seeds, paired 95% CI; "
            f"{summary['n_trials']['ddrl-nra']} trials) | {verdict} |")


def readme_section(summary: dict) -> str:
    """The sweep's README section (markdown), from ``summary`` (``run_sweep``)."""
    n_seeds = len(summary["train_seeds"])
    lines = [f"## Hyperparameter sweep `{summary['name']}`", "",
             f"Search on {n_seeds} training seeds (validation objective O = AR/ar_scale + R/C + "
             f"ACR with unit weights, on the training requests, seed mean at the end of each "
             f"epoch), {summary['slots']} trials trained at once as one compiled program, a "
             f"pruned or finished trial's slot refilled at once; best configuration retrained "
             f"and evaluated on {len(summary['test_seeds'])} separate test seeds "
             f"{_seed_range(summary['test_seeds'])}. Files: `trials.csv` (every trial), "
             f"`best.json` (`sagin-jax train --config best.json`), "
             f"`{summary.get('storage', 'study.journal')}` (the Optuna studies), "
             f"`summary.json`.", ""]
    for algo, b in summary["best"].items():
        st = summary["states"][algo]
        lines.append(f"- **{algo}**: {summary['n_trials'][algo]} trials ("
                     + ", ".join(f"{n} {k.lower()}" for k, n in sorted(st.items()))
                     + f"), search {summary['search_wall_s'][algo]:.0f} s from the first "
                     f"trial's start to the last one's end; best "
                     f"validation O = {b['value']:.4f} (trial {b['number']}) with "
                     + ", ".join(f"{k}={v:.4g}" for k, v in b["params"].items()))
    if "comparison" in summary:
        lines += ["", "Test seeds, paired 95% intervals of the per-seed relative difference "
                  "(final running values after the test requests):", "",
                  "| agent (best config) | vs | AR | ACR | R/C |", "|---|---|---|---|---|"]
        for a, per in summary["comparison"]["gain_vs"].items():
            for b, g in per.items():
                cells = [f"{100 * g[k]['mean']:+.2f}% ± {100 * g[k]['ci95']:.2f}%"
                         for k in ("AR", "ACR", "RC")]
                lines.append(f"| {a} | {b} | " + " | ".join(cells) + " |")
        lines += ["", "Claims-table row:", "", claims_row(summary) if "ddrl-nra" in
                  summary["comparison"]["gain_vs"] else "(DDRL-NRA not searched)"]
        lines += ["", f"Test comparison (retraining on the test seeds and evaluation): "
                      f"{summary['compare_wall_s']:.0f} s wall."]
    else:
        lines += ["", "(no test-seed comparison: run without --no-compare)"]
    lines.append("")
    for algo in summary["best"]:
        lines.append(f"![{algo} history]({algo}_history.png) ![{algo} params]({algo}_params.png)")
    return "\n".join(lines) + "\n"


def _seed_range(seeds) -> str:
    s = list(seeds)
    if s and s == list(range(s[0], s[0] + len(s))):
        return f"{s[0]}..{s[-1]}"
    return str(s)


def write_outputs(out: Path, studies: dict, spaces: dict, best_doc: dict,
                  summary: dict) -> list[Path]:
    """Every output of a finished sweep, each written atomically."""
    paths = []
    for algo, study in studies.items():
        paths += plot_study(study, out, algo, spaces[algo])
    fields, rows = trial_rows(studies, spaces)
    paths.append(write_csv(out / "trials.csv", fields, rows))
    # best.json: loadable by `sagin-jax train --config` (scenario + train sections)
    paths.append(atomic_write_text(out / "best.json", json.dumps(best_doc, indent=2)))
    paths.append(atomic_write_text(out / "README.md", readme_section(summary)))
    paths.append(atomic_write_text(out / "summary.json", json.dumps(summary, indent=2)))
    return paths
