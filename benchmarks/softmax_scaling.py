"""Time per step of the softmax simulations as the number of configs C grows, with the fitted exponent.

A batched step costs ``a C^b``: b near 0 means per-op overhead dominates (batching is free), b near 1
that the work does.  Measured for the reduced model (N infinite, and N finite with Monte Carlo counts)
and the full model's GD step.  Run from the repository root:

    OMP_NUM_THREADS=1 python benchmarks/softmax_scaling.py [--device cpu] [--sizes 1 4 16 64 256]
"""
from __future__ import annotations

import argparse
import json

import torch

from sims.softmax.full import FullStep
from sims.softmax.dynamics import SoftmaxConfig, compile_mode, compiled, reuse_freed_memory, simulate_reduced
from verify.timing import fit_exponent
from verify.timing import best_time


def reduced_step_s(C: int, N: int | None, device: torch.device, steps: int = 100) -> float:
    """Seconds per step of a batched reduced run of C configs (K = 10, dominant c and eta varying)."""
    configs = [SoftmaxConfig.dominant(10, 0.3 + 0.4 * i / max(C - 1, 1), eta=0.5 + i % 8 / 7, N=N, steps=steps,
                                      log_every=steps, seed=i) for i in range(C)]
    return best_time(lambda: simulate_reduced(configs, device=device, count_samples=256), device) / steps


def full_step_s(C: int, device: torch.device, steps: int = 10) -> float:
    """Seconds per GD step of the full model (K = d = 16, N = 64, 256 prompts per config)."""
    configs = [SoftmaxConfig.balanced(16, N=64, batch=256, steps=steps, seed=i) for i in range(C)]
    full = FullStep.build(configs, device, torch.float64)
    step = compiled(full, compile_mode(None, device))
    return best_time(lambda: full.run(steps, step), device) / steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
        reuse_freed_memory()
    cases = {"reduced_N_inf": lambda C: reduced_step_s(C, None, device),
             "reduced_N_100_monte_carlo": lambda C: reduced_step_s(C, 100, device),
             "full_step": lambda C: full_step_s(C, device)}
    for name, case in cases.items():
        times = [case(C) for C in args.sizes]
        exponent = fit_exponent(args.sizes, times)
        print(json.dumps({"case": name, "C": args.sizes, "step_s": times, "exponent": round(exponent, 3)}))


if __name__ == "__main__":
    main()
