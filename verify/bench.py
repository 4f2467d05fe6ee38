"""``verify bench``: performance figures measured side by side in one run, on the device it runs on.

Every figure is a ratio or a rate measured in this run: batched vs one-by-one sweeps, the full-model
step's rate beside its roofline (a plain matmul and a large copy timed in the same run,
:mod:`verify.bench_limits`), closed-form kernels vs Monte Carlo at equal accuracy, mean-field time per
step as the particle count M grows (fitted exponent), the fused kernel route against autograd through
every tile at M = 2000 (the fused rate beside its roofline), and peak memory of one step against M^2
floats (:mod:`verify.bench_meanfield`; memory in a fresh subprocess), peers written in plain torch on
the same work (:mod:`verify.bench_peers`: a Monte Carlo mean-field flow at equal accuracy, the full
softmax model with ``torch.multinomial`` and autograd), and the quick catalogue's wall time (a
``verify run --budget quick`` subprocess).  Absolute times hold only for the named device.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from sims.softmax_full import FullStep
from sims.softmax_icl import SoftmaxConfig, compile_mode, compiled, simulate_full, simulate_reduced
from theory import gaussian
from verify import atomic
from verify.bench_limits import copy_bandwidth, roofline
from verify.bench_meanfield import meanfield_memory, meanfield_routes, meanfield_scaling
from verify.bench_peers import meanfield_vs_monte_carlo, softmax_vs_plain_torch
from verify.report import device_name
from verify.timing import best_time

__all__ = ["run_bench", "softmax_sweep", "full_model_flops", "kernel_vs_monte_carlo", "quick_catalogue",
           "format_table"]


def softmax_sweep(device: torch.device, C: int = 64, steps: int = 400, K: int = 10) -> dict:
    """C configs (different eta and dominant c) in one batched reduced run vs the same C one by one.

    Also a Monte Carlo eta sweep (16 configs, N = 50, count vectors drawn every step) whose configs share
    one seed, so their draws are made once (``shared_seed_s``), against the same configs with 16 seeds.
    """
    configs = [SoftmaxConfig.dominant(K, 0.3 + 0.4 * i / (C - 1), eta=0.5 + 1.5 * (i % 8) / 7, steps=steps,
                                      log_every=10) for i in range(C)]
    batched = best_time(lambda: simulate_reduced(configs, device=device), device, repeats=2)
    single = best_time(lambda: [simulate_reduced([c], device=device) for c in configs], device, repeats=1)
    sweep = {seeds: [SoftmaxConfig.dominant(K, 0.5, eta=0.5 + 0.1 * i, N=50, steps=steps // 20, seed=i % seeds)
                     for i in range(16)] for seeds in (1, 16)}
    sampled = {seeds: best_time(lambda: simulate_reduced(cfgs, device=device), device, repeats=2)
               for seeds, cfgs in sweep.items()}
    return {"configs": C, "K": K, "steps": steps, "batched_s": batched, "one_by_one_s": single,
            "speedup": single / batched, "config_steps_per_s": C * steps / batched,
            "shared_seed_s": sampled[1], "distinct_seeds_s": sampled[16], "sharing_speedup": sampled[16] / sampled[1]}


def full_model_flops(device: torch.device, C: int = 16, batch: int = 1024, N: int = 64, K: int = 16,
                     steps: int = 20) -> dict:
    """Achieved FLOP/s of the full-model GD step against a plain matmul of comparable size, same run.

    FLOPs of a step are counted analytically for the useful work of the token-level model: per token,
    forward score gather, softmax (exp, sum, divide: 3), weighted label sum (2), and the backward (6) —
    11 per token — plus the two (d x d x K) products of V^T Q V and V G^T V^T (drawing the prompts is
    not counted).  The comparison matmul multiplies a (C*batch, N) by an (N, N) matrix, the token
    tensor's shape.  ``step_s`` times :class:`sims.softmax_full.FullStep` alone (compiled where
    :func:`sims.softmax_icl.compile_mode` says so: on CUDA); ``counts_step_s`` the same step through
    count vectors (``grad="counts"``; its FLOP/s are per token-model FLOP, ``counts_gflops_equiv``);
    ``run_s_per_step`` a whole ``simulate_full`` run (setup, first and last log, ``steps`` steps) divided
    by ``steps``.

    The token-level step's roofline (:mod:`verify.bench_limits`, per token): the FLOPs above, and
    192 bytes counted on the code as 8-byte passes over the (C, batch, N) token tensors: the drawn
    token index (written, 8), its flat score index (16), the score gather (16), softmax (16), label
    gather (16), attention times labels and its sum (32), labels - y_hat (16), the three in-place
    scalings of dz (16 + 24 + 16) and the scatter-add (16); the draw's integer hashing is not counted,
    as in the FLOPs.  Limits: the matmul above and the large-copy bandwidth.
    """
    cfgs = [SoftmaxConfig.balanced(K, d=K, N=N, batch=batch, steps=steps, log_every=steps, seed=i) for i in range(C)]
    run_s = best_time(lambda: simulate_full(cfgs, device=device), device, repeats=2) / steps
    mode = compile_mode(None, device)
    step_s = {}
    for grad in ("manual", "counts"):
        full = FullStep.build(cfgs, device, torch.float64, grad)
        step = compiled(full, mode)
        step_s[grad] = best_time(lambda: full.run(steps, step), device) / steps
    flops = C * (11.0 * batch * N + 4.0 * 2 * K ** 3)
    a = torch.randn(C * batch, N, device=device, dtype=torch.float64)
    b = torch.randn(N, N, device=device, dtype=torch.float64)
    mm_s = best_time(lambda: a @ b, device, repeats=5)
    mm_flops = 2.0 * C * batch * N * N
    tokens = C * batch * N
    bw = copy_bandwidth(device)
    limits = roofline(tokens / step_s["manual"], flops / tokens, 192.0, mm_flops / mm_s, bw)
    return {"configs": C, "batch": batch, "N": N, "K": K, "compile": mode or "eager", "step_s": step_s["manual"],
            "step_gflops": flops / step_s["manual"] / 1e9, "matmul_gflops": mm_flops / mm_s / 1e9,
            "fraction_of_matmul": (flops / step_s["manual"]) / (mm_flops / mm_s),
            "counts_step_s": step_s["counts"], "counts_gflops_equiv": flops / step_s["counts"] / 1e9,
            "run_s_per_step": run_s, "tokens_per_s": tokens / step_s["manual"], "copy_gbs": bw / 1e9, **limits}


def kernel_vs_monte_carlo(device: torch.device, M: int = 256, d: int = 20, target: float = 0.01) -> dict:
    """Closed-form erf kernel (M x M) vs Monte Carlo with just enough samples for ``target`` accuracy.

    Accuracy is the RMS error of the kernel entries relative to their RMS size; the Monte Carlo sample
    count is doubled until it reaches the target (measured against the closed form).
    """
    gen = torch.Generator(device=device).manual_seed(0)
    W = torch.randn(M, d, generator=gen, device=device, dtype=torch.float64) / math.sqrt(d)  # (M, d)
    exact = gaussian.pair_kernel("erf", W, W)  # (M, M)
    scale = float(exact.pow(2).mean().sqrt())
    n = 256
    while True:
        mc = gaussian.mc_pair_kernel("erf", W, W, n, generator=gen).mean
        err = float((mc - exact).pow(2).mean().sqrt()) / scale
        if err <= target or n >= 1 << 22:
            break
        n *= 2
    closed_s = best_time(lambda: gaussian.pair_kernel("erf", W, W), device)
    mc_s = best_time(lambda: gaussian.mc_pair_kernel("erf", W, W, n, generator=gen), device)
    return {"M": M, "d": d, "target_relative_error": target, "mc_samples": n, "mc_relative_error": err,
            "closed_form_s": closed_s, "monte_carlo_s": mc_s, "speedup": mc_s / closed_s}


def quick_catalogue(device: torch.device, timeout: float = 1800.0) -> dict:
    """Wall time of ``verify run --budget quick --device <device>`` (the whole catalogue, seed 0).

    Runs in a fresh subprocess (same interpreter and environment, so the same thread count) into a
    temporary folder; ``wall_time_s`` is the report's own ``run.wall_time_s``, ``process_s`` the
    subprocess's wall time including interpreter start and imports, ``exit_code`` the run's exit
    code (0 all verified, 1 refuted/error, 3 only inconclusive).
    """
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["run", "--budget", "quick", "--device", device.type, "--seed", "0", "--out", tmp]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "verify.cli", *argv], capture_output=True, text=True,
                              timeout=timeout, check=False)
        process_s = time.perf_counter() - start
        report = Path(tmp) / "report.json"
        if not report.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            return {"wall_time_s": None, "exit_code": proc.returncode, "error": " ".join(tail)}
        run = json.loads(report.read_text())["run"]
    return {"budget": "quick", "wall_time_s": run["wall_time_s"], "process_s": process_s,
            "exit_code": proc.returncode}


def run_bench(device: torch.device, out: Path, extra: dict[str, Callable[[torch.device], dict]] | None = None,
              catalogue: bool = True) -> dict:
    """Run every benchmark on ``device`` and write the JSON atomically to ``out``.

    ``catalogue=False`` skips the quick catalogue's wall time (``verify bench --no-catalogue``).
    """
    torch.set_float32_matmul_precision("highest")
    sections = {"softmax_sweep": softmax_sweep, "full_model_flops": full_model_flops,
                "kernel_vs_monte_carlo": kernel_vs_monte_carlo, "meanfield_scaling": meanfield_scaling,
                "meanfield_routes": meanfield_routes, "meanfield_vs_monte_carlo": meanfield_vs_monte_carlo,
                "softmax_vs_plain_torch": softmax_vs_plain_torch, "meanfield_memory": meanfield_memory,
                **(extra or {})}
    if catalogue:
        sections["quick_catalogue"] = quick_catalogue
    results = {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    for name, bench in sections.items():
        results[name] = bench(device)
    atomic.write_json(out, _plain(results))
    return results


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def format_table(results: dict) -> str:
    """The printed table: one line per figure."""
    lines = [f"device: {results['device']} (torch {results['torch']}, {results['threads']} threads)"]
    for section, values in results.items():
        if isinstance(values, dict):
            body = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
            lines.append(f"{section:<24} {body}")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)

