"""Mean-field figures of ``verify bench``: time per step as M grows, the two kernel routes side by side,
the fraction of the machine's limits reached, and peak memory.

All are measured on the device the bench runs on, in the same run as the other figures
(:mod:`verify.bench`).  The step is the two-timescale particle flow of :func:`sims.landscape.flow.simulate`
(W = W*(mu) at every step), whose cost is the two tiled kernel passes over all particle pairs
(:func:`sims.landscape.kernels.kernel_means` for c_m, c_o and
:func:`sims.landscape.kernels.kernel_means_and_grad` for grad_w V): O(M^2) work, so the fitted exponent
b of time ~ a M^b approaches 2 once the per-operation overhead is amortised; memory is bounded by the
tile (:data:`theory.landscape.gaussian.DEFAULT_TILE` squared per temporary), never M^2.  Rates come with their
roofline (:mod:`verify.bench_limits`): the FLOPs and bytes per pair of the fused route
(:func:`pair_cost`) against a Gram-tile matmul and a large copy timed in the same run.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from typing import Callable, Mapping, Sequence

import torch

from sims.landscape.flow import MeanFieldConfig, simulate
from sims.landscape.kernels import KERNEL_ROUTES, kernel_means, kernel_means_and_grad, kernel_route
from theory.landscape.gaussian import DEFAULT_ORDER, DEFAULT_TILE
from theory.landscape.hermite import HERMITE, HermiteTables
from verify.bench_limits import copy_bandwidth, matmul_rate, roofline
from theory.landscape import gaussian
from verify.claims.landscape.peers import meanfield_vs_monte_carlo
from verify.timing import best_time, fit_exponent, peak_memory, sync

__all__ = ["DEFAULT_MS", "QUAD_MS", "SECTIONS", "kernel_vs_monte_carlo", "meanfield_scaling", "meanfield_routes",
           "meanfield_memory", "pair_cost", "mirrored_fraction", "pair_roofline", "series_kernel_rates",
           "series_roofline", "step_peak_memory"]

#: Particle counts of the ``verify bench`` sweep (a few tens of seconds in total on one CPU thread).
DEFAULT_MS: tuple[int, ...] = (250, 500, 1000, 2000, 4000)


#: Particle counts of the quadrature side of :func:`series_kernel_rates`: about a second per kernel pass on one
#: CPU thread at the default quadrature orders (sigmoid 192, tanh 640 nodes per axis).
QUAD_MS = {"sigmoid": 32, "tanh": 12}


def _config(M: int, steps: int, activation: str, d: int, k: int, quad_order: int | None = None) -> MeanFieldConfig:
    return MeanFieldConfig(d=d, k=k, M=M, activation=activation, steps=steps, log_every=steps, seed=0,
                           quad_order=quad_order)


def pair_cost(d: int, k: int, m: int, mirrored: float = 0.0) -> tuple[float, float]:
    """(FLOPs, bytes) per particle pair of one mean-field step on the fused route (erf, probit).

    Counted on the code (:mod:`sims.landscape.kernels`, :mod:`theory.landscape.gaussian`) per element of the
    (C, t1, t2) tiles, transcendental functions as one FLOP, 8-byte elements; m is the width of the
    kernel-mean coefficients (k + k_o), k that of the gradient's:

    - kernel means, per tile element: Gram entry w.w' (2d FLOPs, writes 8 B); h = (c + S11)(c + S22)
      - S12^2 (square, scale, multiply-add: 4 FLOPs, 3 passes of 16 B); sqrt, atan2 and the scale
      (3 FLOPs; 16 + 24 + 16 B): 2d + 7 FLOPs, 112 B; per orientation served, the product with the m
      coefficients (2m FLOPs, reads 8 B);
    - gradient, per tile element: Gram entry (2d, 8 B), h (4, 48 B), rsqrt (1, 16 B), pair = S12 cross
      (1, 24 B): 2d + 6 FLOPs, 96 B; per orientation: beta = a_i . coef_j (2k, writes 8 B), the row sum
      of beta pair (2; 16 B forward, 24 + 8 B mirrored: in place, then a column sum), beta cross
      (1, 24 B) and the product with w'_j (2d, reads 8 B): 2d + 2k + 3 FLOPs, 56 or 72 B.

    A tile element serves one pair, or two where the tile is mirrored (a measure against itself,
    ``shared``); ``mirrored`` is the fraction of pairs in mirrored tiles.  An unmirrored pair costs
    6d + 2k + 2m + 16 FLOPs and 272 bytes, a mirrored one half the per-element work plus its own
    orientation, 4d + 2k + 2m + 9.5 FLOPs and 176 bytes; the result is their weighted mean.
    """
    flops_el, bytes_el = (2 * d + 7) + (2 * d + 6), 112.0 + 96.0  # per tile element, both passes
    own_flops = 2 * m + (2 * d + 2 * k + 3)  # per orientation: coefficient product, gradient contractions
    single = (flops_el + own_flops, bytes_el + 8.0 + 56.0)
    double = (flops_el / 2 + own_flops, bytes_el / 2 + 8.0 + (56.0 + 72.0) / 2)
    return tuple((1 - mirrored) * s + mirrored * t for s, t in zip(single, double))


def mirrored_fraction(M: int, M_o: int, tile: int) -> float:
    """Fraction of the M (M + M_o) pairs of a step that lie in mirrored tiles: all student pairs
    outside the diagonal tiles (blocks of ``tile`` particles)."""
    blocks = [min(tile, M - i) for i in range(0, M, tile)]
    return (M * M - sum(b * b for b in blocks)) / (M * (M + M_o))


def pair_roofline(device: torch.device, pairs_per_s: float, M: int, d: int, k: int, m: int,
                  tile: int = DEFAULT_TILE) -> dict:
    """:func:`verify.bench_limits.roofline` of a step rate: :func:`pair_cost` (with the mirrored
    fraction of an orthonormal teacher, M_o = k) against the FLOP rate of the Gram-tile matmul
    (1, t, d) @ (1, d, t), t = min(tile, M), and the large-copy bandwidth."""
    t = min(tile, M)
    flops, bytes_ = pair_cost(d, k, m, mirrored_fraction(M, k, tile))
    mm, bw = matmul_rate(device, 1, t, d, t), copy_bandwidth(device)
    return {"matmul_gflops": mm / 1e9, "copy_gbs": bw / 1e9, **roofline(pairs_per_s, flops, bytes_, mm, bw)}


def meanfield_scaling(device: torch.device, Ms: Sequence[int] = DEFAULT_MS, *, d: int = 20, k: int = 5,
                      steps: int = 3, activation: str = "erf", large_from: int = 1000) -> dict:
    """Seconds per mean-field step as M grows, and the fitted exponent of time ~ a M^b.

    For each M, one config (two-timescale flow, orthonormal teacher of k neurons, ``activation``,
    float64) is run by :func:`sims.landscape.flow.simulate` for ``steps`` steps with logs at the first and
    last step only.  A run evaluates the particle field ``steps + 1`` times (the last evaluation only
    logs), so ``seconds_per_step`` is the run's wall time divided by ``steps + 1``; it includes the
    O(M) setup (initial particles, teacher covariance), negligible beside the O(M^2) kernel passes.
    Times are the best of 3 runs for M <= 1000 and of 1 run above (after one tiny warm-up run, M = 8),
    device-synchronised.

    ``exponent`` is the least-squares slope over every M; ``exponent_large_M`` over M >= ``large_from``
    only, where per-operation overhead no longer dominates (expect about 2: the kernel means are
    all-pairs).  ``pairs_per_s`` is M (M + k) particle-source pairs of one step divided by its time
    at the largest M (each pair is visited twice: once for the kernel means, once for their gradient).

    Returns
    -------
    dict
        ``M`` (list), ``seconds_per_step`` (list), ``exponent``, ``exponent_large_M``, ``pairs_per_s``,
        and the shape (``d``, ``k``, ``activation``, ``steps``, ``dynamics``).
    """
    simulate(_config(8, 1, activation, d, k), device=device)  # warm-up: vmap and kernel set-up
    seconds = []
    for M in Ms:
        cfg = _config(M, steps, activation, d, k)
        best = best_time(lambda: simulate(cfg, device=device), device, repeats=3 if M <= 1000 else 1, warmup=False)
        seconds.append(best / (steps + 1))
    large = [i for i, M in enumerate(Ms) if M >= large_from]
    M_top = Ms[-1]
    rate = M_top * (M_top + k) / seconds[-1]
    return {"activation": activation, "d": d, "k": k, "dynamics": "two-timescale", "steps": steps,
            "M": list(Ms), "seconds_per_step": seconds, "exponent": fit_exponent(Ms, seconds),
            "exponent_large_M": fit_exponent([Ms[i] for i in large], [seconds[i] for i in large]),
            "pairs_per_s": rate, **pair_roofline(device, rate, M_top, d, k, 2 * k)}


def meanfield_routes(device: torch.device, M: int = 2000, *, d: int = 20, k: int = 5, activation: str = "erf",
                     repeats: int = 3) -> dict:
    """A full mean-field step at M by each kernel route (:data:`sims.landscape.kernels.KERNEL_ROUTES`),
    side by side in this run: the fused analytic gradient against autograd through every tile.

    One config as in :func:`meanfield_scaling`, one step (two particle-field evaluations, the second
    only logs) per run; the routes alternate, ``repeats`` times each after a warm-up of each, and the
    best time per route is kept (``fused_s``, ``autograd_s`` = run wall time / 2).  ``speedup`` is the
    autograd route's time over the fused one's; on a CPU also ``cpu_speedup``, the same ratio of the
    process's CPU time (``time.process_time``), which other processes' load on a shared machine does
    not inflate.  The fused rate comes with its roofline (:func:`pair_roofline`).
    """
    cfg = _config(M, 1, activation, d, k)

    def run(route: str) -> tuple[float, float]:
        with kernel_route(route):
            start, cpu = time.perf_counter(), time.process_time()
            simulate(cfg, device=device)
            sync(device)
            return (time.perf_counter() - start) / 2, (time.process_time() - cpu) / 2

    for route in KERNEL_ROUTES:
        run(route)  # warm-up
    wall = {route: math.inf for route in KERNEL_ROUTES}
    cpu = dict(wall)
    for _ in range(repeats):
        for route in KERNEL_ROUTES:
            w, c = run(route)
            wall[route], cpu[route] = min(wall[route], w), min(cpu[route], c)
    pairs = M * (M + k)
    fused, auto = wall["fused"], wall["autograd"]
    out = {"activation": activation, "M": M, "d": d, "k": k, "fused_s": fused, "autograd_s": auto,
           "speedup": auto / fused}
    if device.type == "cpu":
        out.update(fused_cpu_s=cpu["fused"], autograd_cpu_s=cpu["autograd"], cpu_speedup=cpu["autograd"] / cpu["fused"])
    return {**out, "autograd_pairs_per_s": pairs / auto, "pairs_per_s": pairs / fused,
            **pair_roofline(device, pairs / fused, M, d, k, 2 * k)}


def series_roofline(device: torch.device, pairs_per_s: float, tables: HermiteTables, M: int, d: int, k: int,
                    tile: int = DEFAULT_TILE) -> dict:
    """:func:`verify.bench_limits.roofline` of a Hermite-series pass (:func:`_pass_rate`): kernel means and gradient.

    Counted on the code (:func:`theory.landscape.hermite._horner`): a series of m terms costs, per tile
    element, m Horner steps ``P.mul_(x).addcmul_(F, G)`` = 3 FLOPs and two 16-byte passes over P (32 B).
    The kernel pass evaluates series (0, 0), the gradient pass (2, 0) and (1, 1), and (0, 2) on mirrored
    tiles; a mirrored tile element serves two pairs (:func:`mirrored_fraction`). The rest of a tile (Gram
    entries, rho, contractions: O(d + k) per element) is left out, so the limits are upper bounds. The tile
    stays in cache, so the memory limit is a copy of one tile's size (cache-resident), not a large copy;
    compute is the Gram-tile matmul's FLOP rate.
    """
    t = min(tile, M)
    mirrored = mirrored_fraction(M, k, tile)
    per_element = sum(tables.terms[s] for s in ((0, 0), (2, 0), (1, 1)))  # terms per tile element
    terms = per_element * (1 - mirrored / 2) + tables.terms[(0, 2)] * mirrored / 2  # per pair
    mm, bw = matmul_rate(device, 1, t, d, t), copy_bandwidth(device, max(1, (t * t * 8) >> 20))
    return {"matmul_gflops": mm / 1e9, "tile_copy_gbs": bw / 1e9,
            **roofline(pairs_per_s, 3.0 * terms, 32.0 * terms, mm, bw)}


def _pass_rate(device: torch.device, name: str, M: int, d: int, k: int, order: int | None, repeats: int) -> float:
    """Pairs per second of one kernel pass of a mean-field step: the kernel means and their gradient
    (:func:`sims.landscape.kernels.kernel_means`, :func:`~sims.landscape.kernels.kernel_means_and_grad`) of M
    particles w ~ N(0, I_d / d) against themselves and an orthonormal teacher of k (``shared``), M (M + k)
    pairs; best of ``repeats`` after a warm-up."""
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(1, M, d, generator=gen, dtype=torch.float64) / math.sqrt(d)).to(device)  # (1, M, d)
    src = torch.cat([w, torch.eye(d, dtype=torch.float64, device=device)[:k].unsqueeze(0)], 1)  # (1, M + k, d)
    a = torch.randn(1, M, k, generator=gen, dtype=torch.float64).to(device)  # (1, M, k)
    coef = torch.randn(1, M + k, k, generator=gen, dtype=torch.float64).to(device)  # (1, M + k, k)

    def one_pass():
        kernel_means(name, w, src, coef, order=order, shared=True)
        kernel_means_and_grad(name, w, a, src, coef, order=order, shared=True)

    return M * (M + k) / best_time(one_pass, device, repeats=repeats)


def series_kernel_rates(device: torch.device, M: int = 2000, *, d: int = 20, k: int = 5, repeats: int = 3,
                        step_M: int = 30, quad_Ms: Mapping[str, int] = QUAD_MS) -> dict:
    """Kernel-plus-gradient pair rates of the Hermite series (sigmoid, tanh) against Gauss-Hermite quadrature
    and the erf closed form, side by side in this run, and a mean-field step on sigmoid by both routes.

    Rates (:func:`_pass_rate`, pairs/s): the series and erf at M, the series and quadrature (the default
    order, through autograd of each tile, the route of an explicit ``quad_order``) at ``quad_Ms``
    (:data:`QUAD_MS`) particles, where a quadrature pass takes about a second; best of ``repeats`` (1 for
    quadrature).  ``speedup`` is the series rate at M over the quadrature rate; ``terms`` the highest
    degree in rho of the series (kernel and partials) at these particles (|w| up to ``max_norm``).  The
    step: one two-timescale step at ``step_M`` particles on sigmoid (as :func:`meanfield_scaling`: the
    run's time over 2 field evaluations), by the series and by quadrature (``quad_order`` = the default),
    and by the series at M.  Timings are wall times on a possibly shared machine: best of ``repeats``.
    """
    out = {"M": M, "d": d, "k": k, "threads": torch.get_num_threads(),
           "erf_pairs_per_s": _pass_rate(device, "erf", M, d, k, None, repeats)}
    gen = torch.Generator().manual_seed(0)
    sq = (torch.randn(M, d, generator=gen, dtype=torch.float64) / math.sqrt(d)).square().sum(-1)  # (M,), as above
    for name in HERMITE:
        small = quad_Ms[name]
        tables = HermiteTables(name, sq, sq, [(0, 0), (2, 0), (1, 1), (0, 2)], shared=True)
        series = _pass_rate(device, name, M, d, k, None, repeats)
        out[name] = {"pairs_per_s": series, "small_M": small,
                     "small_M_pairs_per_s": _pass_rate(device, name, small, d, k, None, repeats),
                     "quad_order": DEFAULT_ORDER[name],
                     "quad_pairs_per_s": _pass_rate(device, name, small, d, k, DEFAULT_ORDER[name], 1),
                     "max_norm": float(sq.max().sqrt()), "terms": max(tables.degree(*s) for s in tables.terms),
                     **series_roofline(device, series, tables, M, d, k)}
        out[name]["speedup"] = series / out[name]["quad_pairs_per_s"]

    def step(M_: int, quad_order: int | None, reps: int) -> float:
        cfg = _config(M_, 1, "sigmoid", d, k, quad_order)
        return best_time(lambda: simulate(cfg, device=device), device, repeats=reps) / 2

    out["sigmoid_step_s"] = {"M": step_M, "series": step(step_M, None, repeats),
                             "quadrature": step(step_M, DEFAULT_ORDER["sigmoid"], 1),
                             f"series_at_{M}": step(M, None, 1)}
    return out


# Child process of :func:`step_peak_memory`: one fresh interpreter, one step, prints a JSON line.
_CHILD = r"""
import json, sys
import torch
from sims.landscape.flow import MeanFieldConfig, simulate
from verify.timing import peak_memory

M, d, k, activation, device, threads = json.loads(sys.argv[1])
torch.set_num_threads(threads)
device = torch.device(device)
cfg = lambda m: MeanFieldConfig(d=d, k=k, M=m, activation=activation, steps=1, log_every=1, seed=0)
simulate(cfg(8), device=device)  # warm-up (tiny: its temporaries stay far below the measured peak)
print(json.dumps(peak_memory(lambda: simulate(cfg(M), device=device), device)))
"""


def step_peak_memory(device: torch.device, M: int, *, d: int = 20, k: int = 5, activation: str = "erf",
                     timeout: float = 3600.0) -> dict:
    """Peak memory of one mean-field step at M particles, measured in a fresh subprocess.

    The child process imports the simulator, runs a tiny warm-up (M = 8), then one
    :func:`sims.landscape.flow.simulate` run of one step (two particle-field evaluations, two-timescale,
    float64) at M.  On the CPU it resets the kernel's resident-set high-water mark
    (``/proc/self/clear_refs`` = 5) and reports VmHWM - VmRSS around the run: every page the process
    touched at once (torch tensors, autograd saved tensors, allocator slack, Python objects), so it
    is an upper bound on the tensors' own peak; where ``clear_refs`` is not writable, the increase
    of ``getrusage(RUSAGE_SELF).ru_maxrss``.  On CUDA it reports ``torch.cuda.max_memory_allocated``
    minus the allocation before the run (tensors only, not the caching allocator's reserve).

    Returns
    -------
    dict
        ``M``, ``peak_bytes`` (the increase during the step), ``base_bytes`` (resident or allocated
        before it), ``m_squared_bytes`` (8 M^2: one M x M float64 kernel), their ratio
        ``peak_over_m_squared`` and ``method``.
    """
    arg = json.dumps([M, d, k, activation, str(device), torch.get_num_threads()])
    proc = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe at M = {M} failed: {proc.stderr.strip().splitlines()[-1:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    peak = out["peak_bytes"]
    return {"M": M, "peak_bytes": peak, "base_bytes": out["base_bytes"], "m_squared_bytes": 8 * M * M,
            "peak_over_m_squared": peak / (8.0 * M * M), "method": out["method"]}


def meanfield_memory(device: torch.device, Ms: Sequence[int] = (DEFAULT_MS[2], DEFAULT_MS[-1]), *,
                     d: int = 20, k: int = 5, activation: str = "erf") -> dict:
    """Peak memory of one step at a moderate and at the largest M, against M^2 float64s.

    :func:`step_peak_memory` at each M of ``Ms``: the kernel is contracted in tiles of at most
    :data:`theory.landscape.gaussian.DEFAULT_TILE` squared pairs, so once M exceeds the tile side the peak stays
    near a constant (tile temporaries) plus O(M) particle data, while 8 M^2 bytes grow quadratically.

    Returns
    -------
    dict
        ``M`` (list), ``peak_mb`` (list, MiB), ``m_squared_mb`` (list, MiB), ``peak_over_m_squared``
        at the largest M, ``method``.
    """
    runs = [step_peak_memory(device, M, d=d, k=k, activation=activation) for M in Ms]
    mib = float(1 << 20)
    return {"M": list(Ms), "peak_mb": [r["peak_bytes"] / mib for r in runs],
            "m_squared_mb": [r["m_squared_bytes"] / mib for r in runs],
            "peak_over_m_squared": runs[-1]["peak_over_m_squared"], "method": runs[-1]["method"]}


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


#: This paper's sections of ``verify bench`` (name -> function of the device), in order.
SECTIONS = {"kernel_vs_monte_carlo": kernel_vs_monte_carlo, "meanfield_scaling": meanfield_scaling,
            "meanfield_routes": meanfield_routes, "series_kernel_rates": series_kernel_rates,
            "meanfield_vs_monte_carlo": meanfield_vs_monte_carlo, "meanfield_memory": meanfield_memory}
