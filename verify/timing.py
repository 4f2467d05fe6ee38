"""Measurements shared by ``verify bench`` and benchmarks/: device-synchronised wall time (best of several
runs), peak memory of one call, and the fitted exponent of time against size."""
from __future__ import annotations

import math
import resource
import sys
import time
from typing import Callable, Sequence

import torch

from verify.fits import loglog_fit

__all__ = ["sync", "best_time", "peak_memory", "fit_exponent"]


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_time(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: bool = True) -> float:
    """Best wall time of ``repeats`` calls of ``fn``, after one warm-up call (which compiles, if compiled)
    unless ``warmup`` is False (for calls too long to repeat, warmed up by a smaller one)."""
    if warmup:
        fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def fit_exponent(Ms: Sequence[float], seconds: Sequence[float]) -> float:
    """Least-squares slope b of log(seconds) = log a + b log M (NaN with fewer than two points).

    Parameters
    ----------
    Ms, seconds : sequence of float
        Particle counts and the measured times, same length.

    Returns
    -------
    float
        The fitted exponent b.
    """
    if len(Ms) < 2:
        return math.nan
    return loglog_fit(Ms, seconds).slope


def _status(field: str) -> int:
    """A field of /proc/self/status in bytes (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def peak_memory(fn: Callable[[], object], device: torch.device) -> dict:
    """Run ``fn`` once; its wall time and the peak memory it added (method: :func:`step_peak_memory`).

    Returns ``seconds``, ``peak_bytes`` (increase over the start), ``base_bytes`` and ``method``.
    """
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base, method = torch.cuda.memory_allocated(device), "torch.cuda.max_memory_allocated"
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            base, method = _status("VmRSS"), "VmHWM after /proc/self/clear_refs reset"
        except OSError:
            scale = 1 if sys.platform == "darwin" else 1024
            base, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "getrusage ru_maxrss"
    start = time.perf_counter()
    fn()
    sync(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    elif method.startswith("VmHWM"):
        peak = _status("VmHWM")
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"seconds": seconds, "peak_bytes": max(0, peak - base), "base_bytes": base, "method": method}
