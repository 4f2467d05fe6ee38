"""Wall-clock timing shared by ``verify bench`` and benchmarks/ (device-synchronised, best of several runs)."""
from __future__ import annotations

import time
from typing import Callable

import torch

__all__ = ["sync", "best_time"]


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
