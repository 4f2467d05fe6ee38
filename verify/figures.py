"""Figures for reports: trajectories with predicted boundaries, and log-log fits (matplotlib, Agg)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["trajectory_figure", "loglog_figure"]


def _save(fig, figure_dir: Path | None, name: str) -> list[str]:
    if figure_dir is None:
        plt.close(fig)
        return []
    figure_dir = Path(figure_dir)
    figure_dir.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = figure_dir / f".{name}.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, figure_dir / f"{name}.png")  # atomic: a reader never sees half a figure
    return [f"figures/{name}.png"]


def trajectory_figure(figure_dir, name: str, title: str, panels: Sequence[Mapping]) -> list[str]:
    """One row of panels; each panel is a mapping with keys

    ``t`` (T,), ``series`` {label: (T,)}, optional ``predicted`` {label: (t, y)} drawn dashed,
    ``vlines`` {label: x} (phase boundaries), ``hlines`` {label: y} (levels), ``xlabel`` (default "GD step"),
    ``ylabel``, ``logy``, ``logx``.
    Returns the report-relative figure paths (empty when ``figure_dir`` is None).
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for label, y in panel["series"].items():
            ax.plot(panel["t"], y, label=label, lw=1.4)
        for label, (tp, yp) in panel.get("predicted", {}).items():
            ax.plot(tp, yp, "k--", lw=1.0, label=label)
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for j, (label, x) in enumerate(panel.get("vlines", {}).items()):
            if np.isfinite(x):
                ax.axvline(x, ls=":", color=colours[(j + 3) % len(colours)], label=label)
        for label, y in panel.get("hlines", {}).items():
            ax.axhline(y, ls="-.", color="grey", lw=1.0, label=label)
        ax.set_xlabel(panel.get("xlabel", "GD step"))
        ax.set_ylabel(panel.get("ylabel", ""))
        if panel.get("logy"):
            ax.set_yscale("log")
        if panel.get("logx"):
            ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, figure_dir, name)


def loglog_figure(figure_dir, name: str, title: str, x, y, fit, predicted_slope: float,
                  xlabel: str, ylabel: str) -> list[str]:
    """Measured points, the fitted power law, and a line of the predicted slope through the data's centre."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    ax.loglog(x, y, "o", label="measured")
    grid = np.geomspace(x.min(), x.max(), 50)
    ax.loglog(grid, fit.predict(grid), "-", label=f"fit slope {fit.slope:.3f} ± {fit.stderr:.3f}")
    centre = np.exp(np.mean(np.log(x))), np.exp(np.mean(np.log(y)))
    ax.loglog(grid, centre[1] * (grid / centre[0]) ** predicted_slope, "k--",
              label=f"predicted slope {predicted_slope:.3f}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, figure_dir, name)
