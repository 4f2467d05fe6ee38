"""Mean-field step: time per step as the particle count M grows, peak memory up to M = 1e5, a profile.

Heavier than ``verify bench`` (:mod:`verify.claims.landscape.bench`): any M, activation and device.  Three parts,
each optional:

1. scaling (``--sizes``): seconds per step of :func:`sims.landscape.flow.simulate` (two-timescale flow, one
   config, float64), the run's wall time divided by its ``--steps + 1`` particle-field evaluations, best of
   ``--repeats`` after a warm-up run; the fitted exponent b of time ~ a M^b over all sizes and over
   M >= 1000;
2. large M (``--large``, default 1e5): one evaluation at M particles with the peak memory it added —
   ``kernel-mean`` (:func:`sims.landscape.flow.landscape`: the kernel means c_m, c_o over all M + M_o
   sources and the covariances, the no-gradient half of a step) or ``step``
   (:func:`sims.landscape.flow.particle_field`: a whole step's field, with the gradient pass);
   M^2 float64s would take 8 M^2 bytes (80 GB at 1e5), so finishing within a few GB shows the kernel is
   never materialised;
3. profile (``--profile``): the torch.profiler table of one particle-field evaluation at ``--profile-M``.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` minus the allocation before; on Linux CPUs the
resident-set high-water mark VmHWM, reset to the current resident size through ``/proc/self/clear_refs``
just before the evaluation, minus that size (every touched page: tensors, autograd temporaries,
allocator slack); elsewhere the increase of ``getrusage`` ru_maxrss.  Run from the repository root:

    OMP_NUM_THREADS=1 python benchmarks/meanfield_scaling.py                        # all three parts
    OMP_NUM_THREADS=1 python benchmarks/meanfield_scaling.py --sizes 250 500 --large 0 --profile
    OMP_NUM_THREADS=1 python benchmarks/meanfield_scaling.py --route autograd --large 0   # the autograd route
    python benchmarks/meanfield_scaling.py --device cuda --large 100000 --large-mode step

``--route`` selects how closed-form kernel tiles are evaluated (:func:`sims.landscape.kernels.kernel_route`):
``fused`` (analytic gradient contracted in the tile loop, the default) or ``autograd`` (autograd through
every tile).
"""
from __future__ import annotations

import argparse
import json

import torch

from sims.landscape.flow import MeanFieldConfig, landscape, make_student, make_teacher, particle_field, simulate
from sims.landscape.kernels import KERNEL_ROUTES, kernel_route
from theory.landscape.gaussian import DEFAULT_TILE
from verify.timing import fit_exponent, peak_memory
from verify.timing import best_time, sync


def _config(args, M: int, steps: int) -> MeanFieldConfig:
    return MeanFieldConfig(d=args.d, k=args.k, M=M, activation=args.activation, steps=steps, log_every=steps)


def scaling(args, device: torch.device) -> dict:
    """Seconds per step for each M of ``--sizes`` and the fitted exponents."""
    seconds = []
    for M in args.sizes:
        cfg = _config(args, M, args.steps)
        run_s = best_time(lambda: simulate(cfg, device=device, tile=args.tile), device, repeats=args.repeats)
        seconds.append(run_s / (args.steps + 1))
        print(json.dumps({"M": M, "step_s": seconds[-1]}), flush=True)
    large = [(M, s) for M, s in zip(args.sizes, seconds) if M >= 1000]
    return {"part": "scaling", "activation": args.activation, "d": args.d, "k": args.k, "M": args.sizes,
            "step_s": seconds, "exponent": round(fit_exponent(args.sizes, seconds), 3),
            "exponent_M_ge_1000": round(fit_exponent(*zip(*large)), 3) if len(large) > 1 else None}


def large_m(args, device: torch.device) -> dict:
    """One kernel-mean evaluation or one step's field at M = ``--large``, with its peak memory."""
    M = args.large
    cfg = _config(args, M, 1)
    a, w = make_student([cfg], device=device)  # (1, M, k), (1, M, d)
    ta, tw = make_teacher([cfg], device=device)  # (1, M_o, k), (1, M_o, d)
    particle_field(args.activation, a[:, :8], w[:, :8], ta, tw)  # warm-up at 8 particles
    result = {}

    def run():
        if args.large_mode == "step":
            field = particle_field(args.activation, a, w, ta, tw, tile=args.tile)
            result["loss"], result["grad_sq"] = float(field.land.loss[0]), float(field.grad_sq[0])
        else:
            land = landscape(args.activation, a, w, ta, tw, tile=args.tile)[0]
            result["loss"] = float(land.loss[0])

    out = peak_memory(run, device)
    gib = float(1 << 30)
    return {"part": "large", "mode": args.large_mode, "M": M, "activation": args.activation, "d": args.d,
            "k": args.k, "tile": args.tile, "seconds": round(out["seconds"], 1), **result,
            "pairs_per_s": M * (M + ta.shape[1]) / out["seconds"],
            "peak_gib": out["peak_bytes"] / gib, "base_gib": out["base_bytes"] / gib,
            "m_squared_float64_gib": 8.0 * M * M / gib, "method": out["method"]}


def profile(args, device: torch.device) -> str:
    """torch.profiler table (self time) of one particle-field evaluation at ``--profile-M``."""
    cfg = _config(args, args.profile_M, 1)
    a, w = make_student([cfg], device=device)
    ta, tw = make_teacher([cfg], device=device)
    particle_field(args.activation, a, w, ta, tw, tile=args.tile)  # warm-up
    sync(device)
    with torch.profiler.profile() as prof:
        particle_field(args.activation, a, w, ta, tw, tile=args.tile)
        sync(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=args.rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--activation", default="erf", help="erf or probit (closed forms); sigmoid/tanh are "
                        "quadrature, far slower")
    parser.add_argument("--d", type=int, default=20)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="kernel tile side")
    parser.add_argument("--route", choices=KERNEL_ROUTES, default=KERNEL_ROUTES[0],
                        help="closed-form kernel route: fused analytic gradient or autograd per tile")
    parser.add_argument("--sizes", type=int, nargs="*", default=[250, 500, 1000, 2000, 4000, 8000],
                        help="particle counts of the scaling part (none: skip it)")
    parser.add_argument("--steps", type=int, default=1, help="steps per timed run (scaling part)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per size, after a warm-up run")
    parser.add_argument("--large", type=int, default=100_000, help="M of the large-M part (0: skip it)")
    parser.add_argument("--large-mode", choices=("kernel-mean", "step"), default="kernel-mean")
    parser.add_argument("--profile", action="store_true", help="profile one step at --profile-M")
    parser.add_argument("--profile-M", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=25, help="rows of the profiler table")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    with kernel_route(args.route):
        if args.sizes:
            print(json.dumps({"route": args.route, **scaling(args, device)}), flush=True)
        if args.large > 0:
            print(json.dumps({"route": args.route, **large_m(args, device)}), flush=True)
        if args.profile:
            print(profile(args, device))


if __name__ == "__main__":
    main()
