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
from verify import atomic
from verify.registry import PAPERS, RunContext
from verify.verdicts import Verdict, worst

__all__ = ["SCHEMA", "SCHEMA_VERSION", "run_metadata", "build_report", "write_report", "load_report",
           "exit_code"]

SCHEMA = "icl-theory-verifier/report"
SCHEMA_VERSION = 1
PROVENANCE_NOTE = ("The papers' full texts were not available: 'recalled' claims are checked in order and form "
                   "only (scaling exponents, ordering of events), never against unconfirmed constants.")


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


def build_report(results: list[dict], meta: dict) -> dict:
    """The report.json document."""
    counts = Counter(r["verdict"] for r in results)
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "run": meta,
            "summary": {v.value: counts.get(v.value, 0) for v in Verdict},
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


def _markdown(report: dict) -> str:
    run = report["run"]
    lines = [f"# Theory verification report ({run['budget']} budget)", "",
             f"- command: `{run['command']}`", f"- git: `{run['git_sha']}`",
             f"- device: {run['device_name']}; {run['dtype_policy']}",
             f"- seed {run['seed']}; wall time {run['wall_time_s']} s; started {run['started_utc']}",
             "- packages: " + ", ".join(f"{k} {v}" for k, v in run["packages"].items()),
             "- verdicts: " + ", ".join(f"{k} {v}" for k, v in report["summary"].items()), "",
             f"> {report['provenance_note']}", "",
             "| claim | paper | where | provenance | verdict | summary |", "|---|---|---|---|---|---|"]
    for r in report["claims"]:
        lines.append(f"| [`{r['id']}`](#{r['id'].replace('.', '')}) | {r['paper']} | {r['location']} | "
                     f"{r['provenance']} | **{r['verdict']}** | {r['summary'].replace('|', '/')} |")
    for r in report["claims"]:
        lines += ["", f"## {r['id']}", "", f"**{r['verdict']}** — {r['summary']}", "",
                  f"- paper: {PAPERS[r['paper']]}, {r['location']} (provenance: {r['provenance']})",
                  f"- statement: {r['statement']}", f"- formula: $ {r['latex']} $",
                  f"- prediction from: `{r['formula']}`",
                  f"- tolerance: {_fmt(r['tolerance'])}; margin: {_fmt(r['margin'])} (positive = inside)",
                  f"- reproduce: `{r['reproduce']}`", f"- wall time: {r['wall_time_s']} s", "",
                  "| evidence | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in r["evidence"].items()]
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
    """Write report.json, report.md and junit.xml atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    atomic.write_json(out_dir / "report.json", report)
    atomic.write_text(out_dir / "report.md", _markdown(report))
    atomic.write_text(out_dir / "junit.xml", _junit(report))


def load_report(path: Path) -> dict:
    """Read a report.json, refusing other schemas and versions with a one-line InputError."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read report {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"report {path} is not valid JSON: {exc}") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        raise InputError(f"{path} is not a verifier report (schema {SCHEMA!r} expected)")
    if report.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path} has report schema version {report.get('schema_version')}, "
                         f"this verifier reads version {SCHEMA_VERSION}")
    bad = _malformed_claim(report.get("claims"))
    if bad:
        raise InputError(f"{path} is a malformed report: {bad}")
    return report


def _malformed_claim(claims) -> str | None:
    """What is wrong with a report's claims list (None when each claim has what readers use)."""
    if not isinstance(claims, list):
        return "'claims' is not a list"
    verdicts = {v.value for v in Verdict}
    for i, claim in enumerate(claims):
        if not (isinstance(claim, dict) and isinstance(claim.get("id"), str) and claim.get("verdict") in verdicts
                and isinstance(claim.get("summary"), str) and isinstance(claim.get("evidence"), dict)
                and isinstance(claim.get("tracked", {}), dict)):
            return f"claim {i} lacks a string id and summary, a known verdict, or evidence/tracked objects"
    return None
