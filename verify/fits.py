"""Small numeric tools the judges share: log-log fits and interpolated crossing times (numpy)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LogLogFit", "loglog_fit", "crossing_time"]


@dataclass(frozen=True)
class LogLogFit:
    """Least-squares line ``ln y = slope ln x + intercept`` with the slope's standard error."""

    slope: float
    intercept: float
    stderr: float

    def predict(self, x):
        return np.exp(self.intercept) * np.asarray(x, dtype=float) ** self.slope


def loglog_fit(x, y) -> LogLogFit:
    """Fit a power law to positive data; raises ValueError on non-positive or non-finite values."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or np.any(~np.isfinite(y)) or np.any(y <= 0) or np.any(x <= 0):
        raise ValueError(f"log-log fit needs >= 2 positive finite points, got x={x.tolist()} y={y.tolist()}")
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (slope * lx + intercept)
    dof = max(x.size - 2, 1)
    stderr = float(np.sqrt(resid @ resid / dof / np.sum((lx - lx.mean()) ** 2))) if x.size > 2 else 0.0
    return LogLogFit(float(slope), float(intercept), stderr)


def crossing_time(t, y, level: float, rising: bool = True) -> float:
    """First time ``y`` crosses ``level`` (upwards if ``rising``), linearly interpolated; NaN if never.

    ``t`` (T,) and ``y`` (T,) are one logged trajectory.  Interpolation removes the whole-step
    quantisation that would otherwise dominate comparisons of short phases with closed forms.
    """
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    hit = y >= level if rising else y <= level
    if not hit.any():
        return float("nan")
    i = int(np.argmax(hit))
    if i == 0:
        return float(t[0])
    frac = (level - y[i - 1]) / (y[i] - y[i - 1])
    return float(t[i - 1] + frac * (t[i] - t[i - 1]))
