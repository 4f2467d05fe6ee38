"""The ``verify`` command line (architecture.md, "CLI contract").

Exit codes: 0 all verified; 1 a claim refuted, errored, or regressed; 2 bad usage or bad input;
3 only inconclusive.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

from theory.errors import InputError
from verify import atomic

__all__ = ["main", "build_parser"]

DEFAULT_OUT = Path("reports/latest")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of a usage dump."""

    def error(self, message: str):  # noqa: D401
        raise InputError(f"{self.prog}: {message}")


# ---------------------------------------------------------------------------------------------------
# value parsers (user strings are data: parsed, never evaluated)
# ---------------------------------------------------------------------------------------------------
def _int_or_inf(text: str):
    if text.lower() in ("inf", "infinity"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'inf', got {text!r}") from None
    return value


def _float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _tolerance(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a tolerance >= 0, got {text!r}")
    return value


def _override(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)  # numbers, lists, true/false/null; never eval
    except ValueError:
        value = raw
    return key, value


def resolve_device(name: str, threads: int | None = None) -> torch.device:
    """auto -> cuda when present else cpu; asking for cuda without CUDA is bad input.

    On the CPU, torch uses ``threads`` intra-op threads (default 1, or $VERIFY_THREADS): the dynamics
    are many small tensor ops, for which intra-op threading costs more than it gains (measured 5-20x
    slower with 2 threads on a loaded 2-core machine); parallelism across claims comes from --workers.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA device is available")
    if name == "cpu":
        threads = threads or int(os.environ.get("VERIFY_THREADS", "1"))
        if threads < 1:
            raise InputError(f"thread count must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.device(name)


def _progress_printer():
    quiet = os.environ.get("CI") == "true"
    return (lambda message: None) if quiet else (lambda message: print(message, file=sys.stderr, flush=True))


# ---------------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------------
def cmd_list(args) -> int:
    from verify.registry import all_claims

    claims = all_claims(args.paper)
    if args.json:
        print(json.dumps([{"id": c.id, "paper": c.paper, "location": c.location, "provenance": c.provenance,
                           "statement": c.statement} for c in claims], indent=2))
        return 0
    width = max(len(c.id) for c in claims)
    for c in claims:
        print(f"{c.id:<{width}}  {c.paper:<9}  {c.provenance:<8}  {c.location}: {c.statement}")
    return 0


def cmd_show(args) -> int:
    from verify.registry import get
    from verify.runner import jsonable

    claim = get(args.id)
    print(f"{claim.id}  [{claim.paper}, {claim.location}, provenance: {claim.provenance}]")
    print(f"statement:   {claim.statement}")
    print(f"formula:     {claim.latex}")
    print(f"prediction:  {claim.formula}")
    print("assumptions: " + "; ".join(a.text for a in claim.assumptions))
    print(f"params:      {json.dumps(jsonable(claim.params))}")
    for budget in ("quick", "full"):
        configs = claim.sweep(budget)
        print(f"sweep[{budget}]: {len(configs)} configs, e.g. {json.dumps(configs[0]) if configs else '-'}")
    last = args.out / "report.json"
    if last.exists():
        from verify.report import load_report

        for r in load_report(last)["claims"]:
            if r["id"] == claim.id:
                print(f"last evidence ({last}): {r['verdict']} — {r['summary']}")
                print(json.dumps(r["evidence"], indent=2))
    return 0


def cmd_run(args) -> int:
    from verify.registry import RunContext, select
    from verify.report import build_report, exit_code, run_metadata, write_report
    from verify.runner import run_claims

    distributed = args.workers is not None or args.scheduler is not None
    if distributed:
        from verify.distributed import check_options, run_claims_distributed

        check_options(args.workers, args.scheduler)
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    atomic.check_target(args.out / "report.json")
    torch.set_float32_matmul_precision("highest")
    claims = select(args.ids)
    ctx = RunContext(device=resolve_device(args.device), budget=args.budget, seed=args.seed,
                     figure_dir=args.out / "figures", progress=_progress_printer())
    start = time.perf_counter()
    options = dict(overrides=dict(args.set or []), resume=args.resume)
    if distributed:
        results = run_claims_distributed(claims, ctx, args.out, workers=args.workers, scheduler=args.scheduler,
                                         **options)
    else:
        results = run_claims(claims, ctx, args.out, **options)
    report = build_report(results, run_metadata(ctx, time.perf_counter() - start, sys.argv[1:]))
    write_report(report, args.out)
    width = max(len(r["id"]) for r in results)
    for r in results:
        print(f"{r['id']:<{width}}  {r['verdict']:<12}  {r['summary']}")
    print(f"wrote {args.out}/report.json, report.md, junit.xml ({report['run']['wall_time_s']} s)")
    return exit_code(results)


def cmd_simulate(args) -> int:
    if args.model == "landscape":
        from verify.simulate_landscape import simulate_landscape_command

        return simulate_landscape_command(args)
    from verify.simulate import simulate_softmax_command

    return simulate_softmax_command(args)


def cmd_baseline(args) -> int:
    """Regenerate the committed CI baseline: the quick catalogue on the CPU, float64, seed 0."""
    import tempfile

    atomic.check_target(args.out)
    with tempfile.TemporaryDirectory() as tmp:
        code = main(["run", "--budget", "quick", "--device", "cpu", "--seed", "0", "--out", tmp])
        if code not in (0, 1, 3):
            return code
        atomic.write_text(args.out, (Path(tmp) / "report.json").read_text(encoding="utf-8"))
    print(f"wrote baseline {args.out}; commit it together with the change that moved it")
    return 0


def cmd_evaluate(args) -> int:
    from verify.evaluate import evaluate_landscape_command

    resolve_device("cpu")
    return evaluate_landscape_command(args)


def cmd_bench(args) -> int:
    atomic.check_target(args.out)
    from verify.bench import format_table, run_bench

    torch.set_float32_matmul_precision("highest")
    results = run_bench(resolve_device(args.device), args.out, catalogue=args.catalogue)
    print(format_table(results))
    print(f"wrote {args.out}")
    return 0


def cmd_diff(args) -> int:
    from verify.diff import diff_reports
    from verify.report import load_report

    regressions, notes = diff_reports(load_report(args.base), load_report(args.new), args.rtol, args.atol)
    for line in notes:
        print(f"note: {line}")
    for line in regressions:
        print(f"REGRESSION: {line}")
    print(f"{len(regressions)} regression(s) against {args.base}")
    return 1 if regressions else 0


# ---------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="verify", description="Symbolic-numeric verifier for in-context learning theorems. "
                     "Exit codes: 0 all verified, 1 refuted/error/regression, 2 bad input, 3 only inconclusive.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="the claims catalogue")
    p.add_argument("--paper", choices=None, help="softmax or landscape")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="one claim: statement, formula, assumptions, sweep, last evidence")
    p.add_argument("id")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder to read the last evidence from")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("run", help="run claims (ids or shell globs; all when none) and write reports")
    p.add_argument("ids", nargs="*", metavar="ID|GLOB")
    p.add_argument("--budget", choices=("quick", "full"), default="quick")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--set", type=_override, action="append", metavar="KEY=VALUE",
                   help="override a config field in every swept config (checked against the claim's assumptions)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the checkpoints in --out: finished claims and measured sweep chunks")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run claims and sweep chunks as tasks on a local Dask cluster of N single-threaded "
                            'worker processes (needs pip install ".[distributed]")')
    scale.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run them on the Dask cluster whose scheduler is at ADDRESS (tcp://host:port)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("simulate", help="raw trajectories")
    sim = p.add_subparsers(dest="model", required=True, parser_class=_Parser)
    s = sim.add_parser("softmax", help="softmax attention dynamics (Huang, Cheng & Liang)")
    s.add_argument("--K", type=int, default=5, help="number of features")
    s.add_argument("--d", type=int, default=None, help="embedding dimension (default K)")
    s.add_argument("--N", type=_int_or_inf, default=None, help="prompt length, an integer or inf (default inf)")
    group = s.add_mutually_exclusive_group()
    group.add_argument("--p", type=_float_list, default=None, help="feature probabilities, comma-separated")
    group.add_argument("--dominant", type=_finite_float, default=None, metavar="C", help="p_1 = C, rest equal")
    s.add_argument("--eta", type=_finite_float, default=1.0)
    s.add_argument("--steps", type=int, default=500)
    s.add_argument("--log-every", type=int, default=1)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch", type=int, default=512, help="prompts per step (full model)")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--reduced", dest="full", action="store_false", help="exact reduced dynamics (default)")
    mode.add_argument("--full", dest="full", action="store_true", help="full model on sampled prompts")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    s.add_argument("--out", type=Path, default=None, help="FILE.json or FILE.npz (default: JSON on stdout)")
    s.set_defaults(func=cmd_simulate, full=False)
    s = sim.add_parser("landscape", help="mean-field dynamics on the attention landscape (Kim & Suzuki)",
                       description="Unset options come from --preset, else erf, d 10, k 3, M 64 (M k with --saddle), "
                                   "two-timescale; M, k, d also from --student/--teacher files.")
    s.add_argument("--preset", default=None, help="base config: paper (sigmoid, joint W) or paper-probit")
    for flag, kind, text in (("--d", int, "input dimension"), ("--k", int, "feature (output) dimension"),
                             ("--M", int, "student particles"),
                             ("--activation", str, "erf, probit, relu, sigmoid or tanh"),
                             ("--teacher-M", int, "particles of the random teacher"),
                             ("--teacher-seed", int, "teacher seed (default: each run's --seed)"),
                             ("--init-scale", float, "E|w_i|^2 = init-scale^2 at initialisation"),
                             ("--a-scale", float, "a_i ~ N(0, a-scale^2 I) at initialisation"),
                             ("--lr", float, "Euler step in mean-field time"), ("--steps", int, "Euler steps"),
                             ("--log-every", int, "log every N steps (and the last)"),
                             ("--seed", int, "seed of the first run"),
                             ("--dynamics", str, "two-timescale (W = W*) or joint (explicit W)"),
                             ("--w-speed", float, "joint: W learning-rate ratio"),
                             ("--w-init", str, "joint: optimal or zero"),
                             ("--birth-death", float, "birth-death rate (0 = off)"),
                             ("--noise", float, "noise injection scale (0 = off)"),
                             ("--noise-threshold", float, "inject noise while mean |grad V|^2 < this (inf: always)"),
                             ("--label-noise", float, "label noise variance s^2"),
                             ("--quad-order", int, "Gauss-Hermite order for sigmoid/tanh")):
        s.add_argument(flag, type=kind, default=None, help=text)
    s.add_argument("--teacher", default=None, help="orthonormal, random, or FILE.npz with a (M_o x k), w (M_o x d)")
    start = s.add_mutually_exclusive_group()
    start.add_argument("--student", type=Path, default=None, help="FILE.npz: initial a (M x k), w (M x d)")
    start.add_argument("--saddle", action="store_true", help="start at the exact strict saddle (erf, d >= k + 1)")
    s.add_argument("--delta", type=float, default=None, help="with --saddle: perturbation size (default 0)")
    s.add_argument("--direction", choices=("hessian", "random"), default=None,
                   help="with --saddle: perturbation direction (default hessian)")
    s.add_argument("--seeds", type=int, default=1, metavar="N", help="run seeds seed..seed+N-1 in one batch")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    s.add_argument("--out", type=Path, default=None,
                   help="FILE.json (NaN/inf as strings) or FILE.npz (default: JSON on stdout)")
    s.set_defaults(func=cmd_simulate)

    p = sub.add_parser("evaluate", help="landscape quantities of a particle measure")
    ev = p.add_subparsers(dest="model", required=True, parser_class=_Parser)
    e = ev.add_parser("landscape", help="L, L_TF at W*, W*, covariances, first variation, saddle indicator (JSON)")
    e.add_argument("--student", type=Path, required=True, help="FILE.npz with a (M x k) and w (M x d)")
    e.add_argument("--teacher", type=Path, default=None,
                   help="FILE.npz likewise (default: f°_j(x) = sigma(e_j . x), j = 1..k)")
    e.add_argument("--activation", default="erf", help="erf, probit, relu, sigmoid or tanh")
    e.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    e.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="performance figures, measured side by side on this device")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--out", type=Path, default=Path("reports/bench.json"))
    p.add_argument("--no-catalogue", dest="catalogue", action="store_false",
                   help="skip timing the quick catalogue (a `verify run --budget quick` subprocess)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("baseline", help="regenerate reports/baseline.json (quick budget, CPU, float64, seed 0)")
    p.add_argument("--out", type=Path, default=Path("reports/baseline.json"))
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("diff", help="regressions between two reports")
    p.add_argument("base", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--rtol", type=_tolerance, default=1e-6, help="relative tolerance for tracked numbers")
    p.add_argument("--atol", type=_tolerance, default=1e-9, help="absolute tolerance for tracked numbers")
    p.set_defaults(func=cmd_diff)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``verify`` console script; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except InputError as exc:
        print(f"verify: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        return 0
    except KeyboardInterrupt:
        print("verify: interrupted; finished claims and measured chunks are checkpointed (rerun with --resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
