"""Figures in the paper's layout (matplotlib, Agg backend): mean over seeds with a 95% band,
clipped to the metric's possible range (``stats.METRIC_RANGE``).

matplotlib is imported, and its backend chosen, only when a figure is drawn (``pyplot()``):
importing this module changes no global state.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

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


def save_figure(fig, path: Path) -> None:
    """Save ``fig`` as PNG atomically (temp file + rename) and close it."""
    plt = pyplot()
    try:
        fig.tight_layout()
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
