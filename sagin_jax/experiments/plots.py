"""Figures in the paper's layout (matplotlib, Agg backend): mean over seeds with a 95% band."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {"AR": "long-term average revenue (AR)", "ACR": "acceptance rate (ACR)",
          "RC": "revenue / cost (R/C)", "RC_link": "link revenue / cost", "O": "objective O"}
STYLE = {"ddrl-nra": ("tab:red", "-"), "rlvne": ("tab:blue", "--"), "nrmvne": ("tab:green", "-."),
         "grc": ("tab:purple", ":"), "random": ("tab:gray", ":")}


def _band(ax, x, mean, half, **kw):
    line, = ax.plot(x, mean, **kw)
    if half is not None and np.isfinite(half).all():
        ax.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2, lw=0)
    return line


def _save(fig, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def training_curves(path: Path, lrs, curves: dict, batches_per_epoch: int) -> None:
    """Fig. 4: training AR, ACR, R/C per update for each learning rate."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, name in zip(axes, ("AR", "ACR", "RC")):
        mean, half = curves[name]
        x = np.arange(1, mean.shape[1] + 1)
        for j, lr in enumerate(lrs):
            _band(ax, x, mean[j], half[j], label=f"lr={lr:g}")
        ax.set_xlabel(f"update ({batches_per_epoch} per epoch)")
        ax.set_ylabel(LABELS[name])
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Fig. 4 — DDRL-NRA training (mean and 95% interval over seeds)")
    _save(fig, path)


def comparison(out: Path, stem: str, algos, grid, curves: dict) -> None:
    """Figs. 5, 6, 7: test AR, ACR and R/C (with link-only R/C) over time, one line per algo."""
    panels = {"fig5": ["AR"], "fig6": ["ACR"], "fig7": ["RC", "RC_link"]}
    titles = {"fig5": "Fig. 5 — test AR", "fig6": "Fig. 6 — test acceptance rate",
              "fig7": "Fig. 7 — test revenue/cost"}
    for fig_name, names in panels.items():
        fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.8), squeeze=False)
        for ax, name in zip(axes[0], names):
            for algo in algos:
                color, ls = STYLE.get(algo, (None, "-"))
                mean, half = curves[(algo, name)]
                _band(ax, grid, mean, half, label=algo, color=color, linestyle=ls)
            ax.set_xlabel("time")
            ax.set_ylabel(LABELS[name])
            ax.grid(alpha=0.3)
        axes[0][0].legend()
        fig.suptitle(titles[fig_name] + " (mean, 95% interval over seeds)", fontsize=10)
        _save(fig, out / f"{fig_name}.png")


def storage(path: Path, labels, grid, curves: dict) -> None:
    """Fig. 8: DDRL-NRA under storage demand ranges, (A) AR (B) ACR (C) R/C (D) O."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for ax, name, tag in zip(axes, ("AR", "ACR", "RC", "O"), "ABCD"):
        for label in labels:
            mean, half = curves[(label, name)]
            _band(ax, grid, mean, half, label=f"STO {label}")
        ax.set_xlabel("time")
        ax.set_ylabel(LABELS[name])
        ax.set_title(f"({tag})")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Fig. 8 — DDRL-NRA under storage demand ranges (mean, 95% interval)")
    _save(fig, path)
