"""Figures in the paper's layout (matplotlib, Agg backend): mean over seeds with a 95% band,
clipped to the metric's possible range (``stats.METRIC_RANGE``).

matplotlib is imported, and its backend chosen, only when a figure is drawn (``pyplot()``):
importing this module changes no global state.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sagin_jax.experiments.load import in_series
from sagin_jax.experiments.stats import clip_to_range
from sagin_jax.files import atomic_path


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend (chosen on first use, unless the
    caller already imported pyplot with a backend of their own)."""
    import sys
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt

LABELS = {"AR": "long-term average revenue (AR)", "ACR": "acceptance rate (ACR)",
          "RC": "revenue / cost (R/C)", "RC_link": "link revenue / cost", "O": "objective O"}
STYLE = {"ddrl-nra": ("tab:red", "-"), "rlvne": ("tab:blue", "--"), "nrmvne": ("tab:green", "-."),
         "grc": ("tab:purple", ":"), "random": ("tab:gray", ":")}


def _band(ax, x, mean, half, metric: str | None = None, **kw):
    line, = ax.plot(x, mean, **kw)
    if half is not None and np.isfinite(half).all():
        lo, hi = clip_to_range(metric, mean - half, mean + half)
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return line


def save_figure(fig, path: Path, rect=(0, 0, 1, 1)) -> None:
    """Save ``fig`` as PNG atomically (temp file + rename) and close it; the axes are laid out
    within ``rect`` (figure fractions left, bottom, right, top)."""
    plt = pyplot()
    try:
        fig.tight_layout(rect=rect)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)


def training_curves(path: Path, lrs, curves: dict, batches_per_epoch: int) -> None:
    """Fig. 4: training AR, ACR, R/C per update for each learning rate."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, name in zip(axes, ("AR", "ACR", "RC")):
        mean, half = curves[name]
        x = np.arange(1, mean.shape[1] + 1)
        for j, lr in enumerate(lrs):
            _band(ax, x, mean[j], half[j], name, label=f"lr={lr:g}")
        ax.set_xlabel(f"update ({batches_per_epoch} per epoch)")
        ax.set_ylabel(LABELS[name])
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Fig. 4 — DDRL-NRA training (mean and 95% interval over seeds)")
    save_figure(fig, path)


def comparison(out: Path, stem: str, algos, grid, curves: dict) -> None:
    """Figs. 5, 6, 7: test AR, ACR and R/C (with link-only R/C) over time, one line per algo."""
    panels = {"fig5": ["AR"], "fig6": ["ACR"], "fig7": ["RC", "RC_link"]}
    titles = {"fig5": "Fig. 5 — test AR", "fig6": "Fig. 6 — test acceptance rate",
              "fig7": "Fig. 7 — test revenue/cost"}
    for fig_name, names in panels.items():
        plt = pyplot()
        fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.8), squeeze=False)
        for ax, name in zip(axes[0], names):
            for algo in algos:
                color, ls = STYLE.get(algo, (None, "-"))
                mean, half = curves[(algo, name)]
                _band(ax, grid, mean, half, name, label=algo, color=color, linestyle=ls)
            ax.set_xlabel("time")
            ax.set_ylabel(LABELS[name])
            ax.grid(alpha=0.3)
        axes[0][0].legend()
        fig.suptitle(titles[fig_name] + " (mean, 95% interval over seeds)", fontsize=10)
        save_figure(fig, out / f"{fig_name}.png")


def storage(path: Path, labels, grid, curves: dict) -> None:
    """Fig. 8: DDRL-NRA under storage demand ranges, (A) AR (B) ACR (C) R/C (D) O."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for ax, name, tag in zip(axes, ("AR", "ACR", "RC", "O"), "ABCD"):
        for label in labels:
            mean, half = curves[(label, name)]
            _band(ax, grid, mean, half, name, label=f"STO {label}")
        ax.set_xlabel("time")
        ax.set_ylabel(LABELS[name])
        ax.set_title(f"({tag})")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Fig. 8 — DDRL-NRA under storage demand ranges (mean, 95% interval, clipped to range)")
    save_figure(fig, path)


GAIN_STYLE = {("ddrl-nra", "nrmvne"): ("tab:green", "-"), ("ddrl-nra", "rlvne"): ("tab:blue", "-"),
              ("ddrl-nra-best", "nrmvne"): ("tab:green", "--"),
              ("ddrl-nra-best", "rlvne"): ("tab:blue", "--")}


def _load_axis(ax, points) -> None:
    """Log ρ axis labelled at the tested loads only."""
    from matplotlib.ticker import NullFormatter, NullLocator
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    rhos = sorted({p["rho"] for p in points if {"rate", "lifetime"} & set(p["series"])})
    ax.set_xticks(rhos, [f"{r:g}" for r in rhos])


def _gain_panel(ax, points, metric: str, claim: float | None) -> None:
    """Paired gain of each DDRL-NRA variant over NRMVNE and RLVNE vs ρ (log axis): the rate
    series as lines with 95% bands, the lifetime series as open markers with error bars."""
    rate, life = in_series(points, "rate"), in_series(points, "lifetime")
    for (variant, vs), (color, ls) in GAIN_STYLE.items():
        def get(p):
            return p["gain"].get(variant, {}).get(vs, {}).get(metric)
        pts = [(p["rho"], get(p)) for p in rate if get(p) is not None]
        if pts:
            x = np.array([r for r, _ in pts])
            mean = np.array([g["mean"] for _, g in pts]) * 100
            half = np.array([g["ci"] for _, g in pts]) * 100
            _band(ax, x, mean, half, None, color=color, linestyle=ls, marker="o",
                  label=f"{variant} vs {vs}")
        lp = [(p["rho"], get(p)) for p in life if get(p) is not None]
        if lp:
            ax.errorbar([r for r, _ in lp], [g["mean"] * 100 for _, g in lp],
                        yerr=[g["ci"] * 100 for _, g in lp], fmt="s" if ls == "-" else "D",
                        mfc="none", color=color, capsize=3,
                        label=f"{variant} vs {vs}, lifetime varied")
    ax.axhline(0.0, color="black", lw=0.8)
    if claim is not None:
        ax.axhline(claim * 100, color="tab:red", lw=0.8, linestyle=":",
                   label=f"paper: +{claim * 100:.2f}%")
    _load_axis(ax, points)
    ax.set_xlabel("offered load ρ = arrival rate × mean lifetime")
    ax.set_ylabel(f"DDRL-NRA gain in {metric} (%)")
    ax.grid(alpha=0.3, which="both")


def _clipped_errorbar(ax, x, stats: list, metric: str, **kw) -> None:
    """Error bars of mean +- 95% half-width, clipped to ``metric``'s range."""
    mean = np.array([s["mean"] for s in stats])
    lo, hi = clip_to_range(metric, mean - np.array([s["ci"] for s in stats]),
                           mean + np.array([s["ci"] for s in stats]))
    ax.errorbar(x, mean, yerr=np.nan_to_num(np.stack([mean - lo, hi - mean])), capsize=3, **kw)


def _acceptance_panel(ax, points) -> None:
    rate, life = in_series(points, "rate"), in_series(points, "lifetime")
    x = np.array([p["rho"] for p in rate])
    for v in rate[0]["final"] if rate else ():
        color, ls = STYLE.get(v, ("tab:orange", "--"))
        mean = np.array([p["final"][v]["ACR"]["mean"] for p in rate])
        half = np.array([p["final"][v]["ACR"]["ci"] for p in rate])
        _band(ax, x, mean, half, "ACR", color=color, linestyle=ls, marker=".", label=v)
        if life:
            _clipped_errorbar(ax, [p["rho"] for p in life], [p["final"][v]["ACR"] for p in life],
                              "ACR", fmt="s", mfc="none", color=color)
    ax.axhline(0.9, color="black", lw=0.8, linestyle=":")
    _load_axis(ax, points)
    ax.set_xlabel("offered load ρ (squares: lifetime varied instead of rate)")
    ax.set_ylabel(LABELS["ACR"])
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3, which="both")


def load_curves(path: Path, points: list, claims: dict | None = None) -> None:
    """Fig. 9: DDRL-NRA's paired gains in AR and ACR over NRMVNE and RLVNE, and every
    algorithm's acceptance, against the offered load (log axis; mean and 95% interval)."""
    claims = claims or {}
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    _gain_panel(axes[0], points, "AR", claims.get("AR"))
    _gain_panel(axes[1], points, "ACR", claims.get("ACR"))
    _acceptance_panel(axes[2], points)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle("Fig. 9 — DDRL-NRA's gain and every algorithm's acceptance against offered load "
                 "(mean, 95% interval over seeds)", fontsize=10)
    save_figure(fig, path, rect=(0, 0.13, 1, 1))


def request_size(path: Path, points: list, claims: dict | None = None) -> None:
    """Fig. 10: the same gains and acceptance against the nodes per request, at one load."""
    claims = claims or {}
    size = sorted(in_series(points, "size"), key=lambda p: tuple(p["req_nodes"]))
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.0))
    x = np.arange(len(size))
    names = [f"{lo}-{hi}" for lo, hi in (p["req_nodes"] for p in size)]
    for ax, metric in zip(axes[:2], ("AR", "ACR")):
        pairs = [k for k in GAIN_STYLE if any(metric in p["gain"].get(k[0], {}).get(k[1], {})
                                              for p in size)]
        for i, (variant, vs) in enumerate(pairs):
            color, ls = GAIN_STYLE[(variant, vs)]
            g = [p["gain"][variant][vs][metric] for p in size]
            ax.errorbar(x + 0.08 * (i - (len(pairs) - 1) / 2), [s["mean"] * 100 for s in g],
                        yerr=[s["ci"] * 100 for s in g], fmt="o" if ls == "-" else "s",
                        mfc=color if ls == "-" else "none", color=color, capsize=3,
                        label=f"{variant} vs {vs}")
        ax.axhline(0.0, color="black", lw=0.8)
        if claims.get(metric) is not None:
            ax.axhline(claims[metric] * 100, color="tab:red", lw=0.8, linestyle=":",
                       label=f"paper: +{claims[metric] * 100:.2f}%")
        ax.set_ylabel(f"DDRL-NRA gain in {metric} (%)")
    variants = list(size[0]["final"]) if size else []
    for i, v in enumerate(variants):
        color, _ = STYLE.get(v, ("tab:orange", "--"))
        ax = axes[2]
        _clipped_errorbar(ax, x + 0.06 * (i - (len(variants) - 1) / 2),
                          [p["final"][v]["ACR"] for p in size], "ACR", fmt="o", color=color,
                          label=v)
    axes[2].set_ylabel(LABELS["ACR"])
    for ax in axes:
        ax.set_xticks(x, names)
        ax.set_xlabel("nodes per request" + (f" (ρ = {size[0]['rho']:g})" if size else ""))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    fig.suptitle("Fig. 10 — DDRL-NRA's gain and every algorithm's acceptance against request "
                 "size (mean, 95% interval over seeds)", fontsize=10)
    save_figure(fig, path)


def per_seed_histograms(path: Path, algo: str, ar, acr) -> None:
    """``evaluate --seeds``: the distribution over seeds of the final AR and ACR, with the mean
    marked."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    color = STYLE.get(algo, ("tab:blue", "-"))[0]
    for ax, name, x in zip(axes, ("AR", "ACR"), (np.asarray(ar), np.asarray(acr))):
        ax.hist(x, bins=min(60, max(10, int(np.sqrt(x.size)))), color=color, alpha=0.75)
        ax.axvline(float(x.mean()), color="k", lw=1, ls="--", label=f"mean {x.mean():.4g}")
        ax.set_xlabel(LABELS[name])
        ax.set_ylabel("seeds")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"{algo}: {np.asarray(ar).size} seeds, test pass")
    save_figure(fig, path, rect=(0, 0, 1, 0.95))
