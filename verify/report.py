"""Reports of a run: report.json (versioned schema), report.md (the audit) and junit.xml."""
from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import torch

from theory.errors import InputError
from verify import atomic, documents, limits
from verify.registry import PAPERS, RunContext
from verify.verdicts import Verdict, worst

__all__ = ["SCHEMA", "SCHEMA_VERSION", "run_metadata", "build_report", "write_report", "load_report",
           "exit_code"]

SCHEMA = "icl-theory-verifier/report"
SCHEMA_VERSION = 1
#: Headline groups: the papers' own claims (stated, recalled) and checks of our model and derivations (derived).
GROUPS = {"paper": ("stated", "recalled"), "model": ("derived",)}
GROUP_TITLES = {"paper": "Claims of the papers (stated or recalled)",
                "model": "Checks of our model and its derivations (derived)"}
PROVENANCE_NOTE = ("The papers' full texts were not available: 'recalled' claims are checked in order and form "
                   "(scaling exponents, ordering of events) or against constants derived here, never against "
                   "unconfirmed constants.")


def _git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def device_name(device: torch.device) -> str:
    """Human name of the device the run used."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run_metadata(ctx: RunContext, wall_time_s: float, argv: list[str]) -> dict:
    """Run metadata recorded in every report."""
    return {
        "git_sha": _git_sha(),
        "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["verify", *argv]),
        "python": sys.version.split()[0],
        "packages": {p: _version(p) for p in ("torch", "numpy", "scipy", "sympy", "matplotlib")},
        "device": ctx.device.type, "device_name": device_name(ctx.device),
        "dtype_policy": f"{str(ctx.dtype).removeprefix('torch.')} for every checked identity and bound; "
                        "matmul precision 'highest' (TF32 off)",
        "seed": ctx.seed, "budget": ctx.budget, "wall_time_s": round(wall_time_s, 2),
    }


def _counts(results: list[dict]) -> dict[str, int]:
    counts = Counter(r["verdict"] for r in results)
    return {v.value: counts.get(v.value, 0) for v in Verdict}


def _group(result: dict) -> str:
    return next(g for g, provenances in GROUPS.items() if result["provenance"] in provenances)


def build_report(results: list[dict], meta: dict) -> dict:
    """The report.json document: ``summary`` counts every claim, ``summary_by_group`` the papers' claims
    (stated, recalled) apart from checks of our own model and derivations (derived)."""
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "run": meta,
            "summary": _counts(results),
            "summary_by_group": {g: _counts([r for r in results if _group(r) == g]) for g in GROUPS},
            "provenance_note": PROVENANCE_NOTE, "claims": results}


def exit_code(results: list[dict]) -> int:
    """0 all verified; 1 any refuted or error; 3 only inconclusive besides verified."""
    verdict = worst(Verdict(r["verdict"]) for r in results)
    return {Verdict.VERIFIED: 0, Verdict.INCONCLUSIVE: 3}.get(verdict, 1)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and len(value) > 12:
        return json.dumps(value[:12])[:-1] + ", ...]"
    return json.dumps(value) if not isinstance(value, str) else value


def _cell(text) -> str:
    """A markdown table cell: one line, with ``|`` escaped so it cannot split the cell."""
    return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|")


def _citation(paper: str) -> str:
    return PAPERS[paper].citation if paper in PAPERS else paper


def _resolution_text(result: dict) -> str:
    resolution = result.get("resolution")
    return resolution["text"] if resolution else "not stated"


def _counts_line(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _table(results: list[dict]) -> list[str]:
    lines = ["| claim | paper | where | provenance | resolution | verdict | summary |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| [`{r['id']}`](#{r['id'].replace('.', '').lower()}) | {r['paper']} | {_cell(r['location'])} | "
                     f"{r['provenance']} | {_cell(_resolution_text(r))} | **{r['verdict']}** | {_cell(r['summary'])} |")
    return lines


def _markdown(report: dict) -> str:
    run = report["run"]
    lines = [f"# Theory verification report ({run['budget']} budget)", "",
             f"- command: `{run['command']}`", f"- git: `{run['git_sha']}`",
             f"- device: {run['device_name']}; {run['dtype_policy']}",
             f"- seed {run['seed']}; wall time {run['wall_time_s']} s; started {run['started_utc']}",
             "- packages: " + ", ".join(f"{k} {v}" for k, v in run["packages"].items()),
             *[f"- {GROUP_TITLES[g].lower()}: {_counts_line(counts)}"
               for g, counts in report["summary_by_group"].items()],
             "", f"> {report['provenance_note']}"]
    for group in GROUPS:
        members = [r for r in report["claims"] if _group(r) == group]
        if members:
            lines += ["", f"## {GROUP_TITLES[group]}", "", *_table(members)]
    for r in report["claims"]:
        lines += ["", f"### {r['id']}", "", f"**{r['verdict']}** — {r['summary']}", "",
                  f"- paper: {_citation(r['paper'])}, {r['location']} (provenance: {r['provenance']})",
                  f"- statement: {r['statement']}", f"- formula: $ {r['latex']} $",
                  f"- prediction from: `{r['formula']}`",
                  f"- resolution: {_resolution_text(r)}",
                  f"- tolerance: {_fmt(r['tolerance'])}; margin: {_fmt(r['margin'])} (positive = inside)",
                  f"- reproduce: `{r['reproduce']}`", f"- wall time: {r['wall_time_s']} s", "",
                  "| evidence | value |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(_fmt(v))} |" for k, v in r["evidence"].items()]
        if r["counterexample"]:
            lines += ["", f"Counterexample: `{json.dumps(r['counterexample'])}`"]
        lines += ["", *[f"![{Path(f).stem}]({f})" for f in r["figures"]]]
        if r["traceback"]:
            lines += ["", "```", r["traceback"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _junit(report: dict) -> str:
    results = report["claims"]
    fails = sum(r["verdict"] == "REFUTED" for r in results)
    errors = sum(r["verdict"] == "ERROR" for r in results)
    skips = sum(r["verdict"] == "INCONCLUSIVE" for r in results)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<testsuite name="verify" tests="{len(results)}" failures="{fails}" errors="{errors}" '
           f'skipped="{skips}" time="{report["run"]["wall_time_s"]}">']
    for r in results:
        head = f'  <testcase classname={quoteattr(r["paper"])} name={quoteattr(r["id"])} time="{r["wall_time_s"]}"'
        body = {"REFUTED": f'<failure message={quoteattr(r["summary"])}>{escape(json.dumps(r["counterexample"]))}</failure>',
                "ERROR": f'<error message={quoteattr(r["summary"])}>{escape(r["traceback"] or "")}</error>',
                "INCONCLUSIVE": f'<skipped message={quoteattr(r["summary"])}/>'}.get(r["verdict"])
        out.append(f"{head}>{body}</testcase>" if body else f"{head}/>")
    out.append("</testsuite>")
    return "\n".join(out) + "\n"


def write_report(report: dict, out_dir: Path) -> None:
    """Write report.json, report.md and junit.xml atomically into ``out_dir``, then remove the figures of
    earlier runs that this report does not show (a rerun into the same directory leaves none stale)."""
    out_dir = Path(out_dir)
    atomic.write_json(out_dir / "report.json", report)
    atomic.write_text(out_dir / "report.md", _markdown(report))
    atomic.write_text(out_dir / "junit.xml", _junit(report))
    shown = {out_dir / f for r in report["claims"] for f in r["figures"]}
    for figure in (out_dir / "figures").glob("*.png"):
        if figure not in shown:
            figure.unlink(missing_ok=True)


def load_report(path: Path) -> dict:
    """Read a report.json through :mod:`verify.documents` (size policy, standard JSON, the published
    verify/schemas/report.schema.json); other schemas and versions, and duplicate claim ids, are refused
    with a one-line InputError."""
    label = f"report {path}"
    report = documents.parse(limits.read_json_text(path, "report"), label)
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise InputError(f"{path} is not a verifier report (schema {SCHEMA!r} expected)")
    if report.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path} has report schema version {report.get('schema_version')!r:.40}, "
                         f"this verifier reads version {SCHEMA_VERSION}")
    documents.validate(report, "report", label)
    repeated = sorted(cid for cid, n in Counter(c["id"] for c in report["claims"]).items() if n > 1)
    if repeated:
        raise InputError(f"{label} lists claim id(s) more than once: {', '.join(repeated)[:200]}")
    return report
