"""Time and profile one GD step of the full softmax model (sims.softmax.full.FullStep).

Heavier than ``verify bench``: any shape, eager or compiled, a phase breakdown (drawing the prompts vs
the gradient) and a torch.profiler table of the step.  Run from the repository root, single-threaded:

    OMP_NUM_THREADS=1 python benchmarks/softmax_full_step.py                      # the bench shape, eager
    OMP_NUM_THREADS=1 python benchmarks/softmax_full_step.py --compile default    # compiled (minutes on CPU)
    OMP_NUM_THREADS=1 python benchmarks/softmax_full_step.py --C 64 --N 256 --K 32 --grad counts

Prints JSON per gradient path (seconds per step, best of ``--repeats`` runs of ``--steps`` steps;
``first_run_s`` includes compilation) and, with ``--profile``, the profiler table of ``--steps`` steps
sorted by self time.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from sims.softmax.full import GRADIENTS, FullStep
from sims.softmax.dynamics import COMPILE_MODES, SoftmaxConfig, compiled, reuse_freed_memory
from verify.timing import best_time, sync


def measure(args, grad: str) -> dict:
    """Seconds per step for ``grad`` (as run: eager or compiled), and its two phases run eagerly:
    drawing the prompts and the gradient."""
    device = torch.device(args.device)
    configs = [SoftmaxConfig.balanced(args.K, d=args.K, N=args.N, batch=args.batch, steps=args.steps, seed=i)
               for i in range(args.C)]
    full = FullStep.build(configs, device, torch.float64, grad)
    step = compiled(full, None if args.compile == "none" else args.compile)

    def run():
        full.run(args.steps, step)

    start = time.perf_counter()
    run()  # warm-up: includes compilation
    sync(device)
    first = time.perf_counter() - start
    Q0, t0 = full.start()
    prompts = full.prompts.draw(t0)
    out = {"grad": grad, "step_s": best_time(run, device, args.repeats) / args.steps,
           "first_run_s": first,
           "eager_draw_s": best_time(lambda: full.prompts.draw(t0), device, args.repeats),
           "eager_gradient_s": best_time(lambda: full.gradient(Q0, full.V, prompts), device, args.repeats)}
    if args.profile:
        with torch.profiler.profile() as prof:
            run()
            sync(device)
        out["profile"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--C", type=int, default=16, help="configs (distinct seeds)")
    parser.add_argument("--batch", type=int, default=1024, help="prompts per step")
    parser.add_argument("--N", type=int, default=64, help="tokens per prompt")
    parser.add_argument("--K", type=int, default=16, help="features (d = K)")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--grad", choices=(*GRADIENTS, "both"), default="both",
                        help="gradient path; both = manual and counts")
    parser.add_argument("--compile", choices=("none", *COMPILE_MODES), default="none")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of the step")
    parser.add_argument("--rows", type=int, default=20, help="rows of the profile table")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        torch.set_num_threads(1)
        reuse_freed_memory()
    torch.set_float32_matmul_precision("highest")
    for grad in ("manual", "counts") if args.grad == "both" else (args.grad,):
        result = measure(args, grad)
        table = result.pop("profile", None)
        print(json.dumps({"shape": {k: getattr(args, k) for k in ("C", "batch", "N", "K")},
                          "compile": args.compile, **result}))
        if table:
            print(table)


if __name__ == "__main__":
    main()
