"""The ``verify`` command line.

Exit codes: 0 all verified; 1 a claim refuted, errored, or regressed; 2 bad usage or bad input;
3 only inconclusive.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from theory.errors import InputError
from sims.devices import resolve_device
from verify import argtypes, atomic
from verify.papers import subcommands
from verify.diff import DEFAULT_ATOL, DEFAULT_RTOL

__all__ = ["main", "build_parser"]

DEFAULT_OUT = Path("reports/latest")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) instead of a usage dump."""

    def error(self, message: str):  # noqa: D401
        raise InputError(f"{self.prog}: {message}")


def _override(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value = json.loads(raw)  # numbers, lists, true/false/null; never eval
    except ValueError:
        value = raw
    return key, value


def _progress_printer():
    quiet = os.environ.get("CI") == "true"
    return (lambda message: None) if quiet else (lambda message: print(message, file=sys.stderr, flush=True))


# ---------------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------------
def _catalogue(args) -> list[dict]:
    """Load the installed papers and the ``--claims`` files; warn (one line each) of broken plugins.

    Returns the path and SHA-256 of every claim file, for the report."""
    from verify.registry import BROKEN, load_claim_paths

    records = load_claim_paths(args.claims or [])
    for line in BROKEN:
        print(f"verify: warning: {line}", file=sys.stderr)
    return records


def cmd_list(args) -> int:
    from verify.registry import all_claims

    _catalogue(args)
    claims = all_claims(args.paper)
    if args.json:
        print(json.dumps([{"id": c.id, "paper": c.paper, "location": c.location, "provenance": c.provenance,
                           "statement": c.statement,
                           "resolution": c.resolution.as_json() if c.resolution else None} for c in claims],
                         indent=2))
        return 0
    width = max(len(c.id) for c in claims)
    for c in claims:
        print(f"{c.id:<{width}}  {c.paper:<9}  {c.provenance:<8}  {c.location}: {c.statement}")
    return 0


def cmd_show(args) -> int:
    from verify.registry import get
    from verify.runner import jsonable

    _catalogue(args)
    claim = get(args.id)
    print(f"{claim.id}  [{claim.paper}, {claim.location}, provenance: {claim.provenance}]")
    print(f"statement:   {claim.statement}")
    print(f"formula:     {claim.latex}")
    print(f"prediction:  {claim.formula}")
    print("assumptions: " + "; ".join(a.text for a in claim.assumptions))
    print(f"params:      {json.dumps(jsonable(claim.params))}")
    print(f"resolution:  {claim.resolution.text if claim.resolution else 'not stated'}")
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
    from verify.runner import jsonable, run_claims

    distributed = args.workers is not None or args.scheduler is not None
    if distributed:
        from verify.distributed import check_options, run_claims_distributed

        check_options(args.workers, args.scheduler)
    atomic.check_target(args.out / "report.json")
    torch.set_float32_matmul_precision("highest")
    claim_files = _catalogue(args)
    claims = select(args.ids)
    ctx = RunContext(device=resolve_device(args.device), budget=args.budget, seed=args.seed,
                     figure_dir=args.out / "figures", progress=_progress_printer(),
                     claim_paths=tuple(str(Path(p).resolve()) for p in args.claims or ()))
    start = time.perf_counter()
    options = dict(overrides=dict(args.set or []), resume=args.resume)
    if distributed:
        results = run_claims_distributed(claims, ctx, args.out, workers=args.workers, scheduler=args.scheduler,
                                         **options)
    else:
        results = run_claims(claims, ctx, args.out, **options)
    meta = {**run_metadata(ctx, time.perf_counter() - start, sys.argv[1:]), "overrides": jsonable(options["overrides"]),
            "claim_files": claim_files}
    report = build_report(results, meta)
    write_report(report, args.out)
    width = max(len(r["id"]) for r in results)
    for r in results:
        print(f"{r['id']:<{width}}  {r['verdict']:<12}  {r['summary']}")
    print(f"wrote {args.out}/report.json, report.md, junit.xml ({report['run']['wall_time_s']} s)")
    return exit_code(results)


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

    regressions, notes = diff_reports(load_report(args.base), load_report(args.new), args.rtol, args.atol,
                                      whole_catalogue=args.whole_catalogue)
    for line in notes:
        print(f"note: {line}")
    for line in regressions:
        print(f"REGRESSION: {line}")
    print(f"{len(regressions)} regression(s) against {args.base}")
    return 1 if regressions else 0


# ---------------------------------------------------------------------------------------------------
def build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``wanted`` is the command that will run (its papers' options are loaded only for it)."""
    parser = _Parser(prog="verify", description="Symbolic-numeric verifier for in-context learning theorems. "
                     "Exit codes: 0 all verified, 1 refuted/error/regression, 2 bad input, 3 only inconclusive.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="the claims catalogue")
    p.add_argument("--paper", default=None, help="one paper's claims (a paper id, see `verify list`)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--claims", type=Path, action="append", metavar="PATH",
                   help="also load the claims of a .py claim file or a folder of them (see docs/plugins.md)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="one claim: statement, formula, assumptions, sweep, last evidence")
    p.add_argument("id")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder to read the last evidence from")
    p.add_argument("--claims", type=Path, action="append", metavar="PATH",
                   help="also load the claims of a .py claim file or a folder of them (see docs/plugins.md)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("run", help="run claims (ids or shell globs; all when none) and write reports")
    p.add_argument("ids", nargs="*", metavar="ID|GLOB")
    p.add_argument("--budget", choices=("quick", "full"), default="quick")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--seed", type=argtypes.seed, default=0, help="run seed, an integer in [0, 2^63)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--set", type=_override, action="append", metavar="KEY=VALUE",
                   help="override a config field in every swept config (checked against the claim's assumptions)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the checkpoints in --out: finished claims and measured sweep chunks")
    p.add_argument("--claims", type=Path, action="append", metavar="PATH",
                   help="also load the claims of a .py claim file or a folder of them (see docs/plugins.md)")
    scale = p.add_mutually_exclusive_group()
    scale.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run claims and sweep chunks as tasks on a local Dask cluster of N single-threaded "
                            'worker processes (needs pip install ".[distributed]")')
    scale.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run them on the Dask cluster whose scheduler is at ADDRESS (tcp://host:port)")
    p.set_defaults(func=cmd_run)

    for kind, what in (("simulate", "raw trajectories of a paper's dynamics"),
                       ("evaluate", "a paper's landscape quantities of given parameters")):
        p = sub.add_parser(kind, help=what)
        inner = p.add_subparsers(dest="paper", required=True, parser_class=_Parser)
        for paper_id, command in subcommands(kind).items():
            s = inner.add_parser(paper_id, help=command.help, description=command.description)
            if wanted == kind:  # a paper's options are built only when its command runs
                command.load().add_arguments(s)
            s.set_defaults(func=lambda args, command=command: command.load().run(args))

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
    p.add_argument("--rtol", type=argtypes.tolerance, default=DEFAULT_RTOL, help="relative tolerance for tracked numbers "
                   "(the default covers reduction-order rounding across CPUs: verify/diff.py)")
    p.add_argument("--atol", type=argtypes.tolerance, default=DEFAULT_ATOL, help="absolute tolerance for tracked numbers")
    p.add_argument("--whole-catalogue", action="store_true",
                   help="count claims of BASE that NEW did not run as regressions (default: listed as notes)")
    p.set_defaults(func=cmd_diff)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``verify`` console script; returns the exit code."""
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(argv[0] if argv else None).parse_args(argv)
        return args.func(args)
    except InputError as exc:
        print(f"verify: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        return 0
    except OSError as exc:  # a path of the command line that the file system refuses (checked paths say more)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"verify: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("verify: interrupted; finished claims and measured chunks are checkpointed (rerun with --resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
