"""Run claims: sweep -> measure -> judge, with per-claim checkpoints so ``--resume`` loses nothing.

The pieces (plan, measure, judge, result row) are shared with :mod:`verify.distributed`, which runs the
same claims as Dask tasks.
"""
from __future__ import annotations

import json
import math
import shlex
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from theory.errors import InputError
from verify.checkpoints import CHECKPOINT_DIR, ClaimCheckpoints, Partial
from verify.registry import Claim, RunContext
from verify.verdicts import Outcome, Verdict

__all__ = ["run_claim", "run_claims", "reproduce_command", "jsonable", "failure", "measure_rows", "judge_rows",
           "claim_result", "fingerprint", "Planned", "plan_run", "resume_note", "report_progress"]


def jsonable(obj: Any) -> Any:
    """Plain-JSON copy of evidence: tensors/arrays to lists, non-finite floats to strings."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, (bool, int, str)) or obj is None:
        return obj
    return str(obj)


def reproduce_command(claim_id: str, ctx: RunContext, overrides: Mapping[str, Any] | None) -> str:
    """The one command that re-runs a claim exactly (same budget, seed and device)."""
    sets = "".join(f" --set {k}={json.dumps(v, separators=(',', ':'))}" for k, v in (overrides or {}).items())
    files = "".join(f" --claims {shlex.quote(path)}" for path in ctx.claim_paths)
    return f"verify run {claim_id} --budget {ctx.budget} --seed {ctx.seed} --device {ctx.device.type}{files}{sets}"


def failure(exc: BaseException) -> tuple[Outcome, str]:
    """The ERROR outcome and the traceback text for an exception raised by a claim's check."""
    return Outcome(Verdict.ERROR, f"{type(exc).__name__}: {exc}"), "".join(traceback.format_exception(exc))


def measure_rows(measure: Callable[[list[dict], RunContext], list[dict]], configs: list[dict],
                 ctx: RunContext) -> list[dict]:
    """``measure(configs, ctx)``, checked to return one row per config."""
    rows = measure(configs, ctx)
    if len(rows) != len(configs):
        raise ValueError(f"measure returned {len(rows)} rows for {len(configs)} configs")
    return rows


def judge_rows(claim: Claim, configs: list[dict], rows: list[dict], ctx: RunContext) -> tuple[Outcome, str | None]:
    """The claim's judge on measured rows: its outcome, or an ERROR outcome and traceback if it fails."""
    try:
        return claim.judge(configs, rows, claim.params, ctx), None
    except InputError:
        raise
    except Exception as exc:  # the check itself failed: keep the traceback
        return failure(exc)


def claim_result(claim: Claim, ctx: RunContext, overrides: Mapping[str, Any] | None, configs: list[dict],
                 outcome: Outcome, tb: str | None, seconds: float) -> dict:
    """The report row of one claim (plain JSON)."""
    return {
        "id": claim.id, "paper": claim.paper, "location": claim.location, "provenance": claim.provenance,
        "statement": claim.statement, "latex": claim.latex, "formula": claim.formula,
        "params": jsonable(claim.params),
        "resolution": jsonable(claim.resolution.as_json()) if claim.resolution else None,
        "verdict": outcome.verdict.value, "summary": outcome.summary,
        "evidence": jsonable(outcome.evidence), "tolerance": jsonable(outcome.tolerance),
        "margin": jsonable(outcome.margin), "counterexample": jsonable(outcome.counterexample),
        "tracked": jsonable(outcome.tracked), "figures": list(outcome.figures),
        "configs": jsonable(configs), "reproduce": reproduce_command(claim.id, ctx, overrides),
        "wall_time_s": round(seconds, 3), "traceback": tb,
    }


def run_claim(claim: Claim, ctx: RunContext, overrides: Mapping[str, Any] | None = None,
              partial: Partial | None = None) -> dict:
    """Run one claim; bad configs raise InputError, any other failure becomes an ERROR verdict.

    ``partial`` holds rows an interrupted run already measured: only the other configs are measured
    (in one batch; a config's numbers do not depend on its batch), and its seconds count in the wall time.
    """
    configs = claim.configs(ctx.budget, overrides)
    partial = partial or Partial()
    start = time.perf_counter() - partial.seconds
    missing = [i for i in range(len(configs)) if i not in partial.rows]
    try:
        fresh = measure_rows(claim.measure, [configs[i] for i in missing], ctx) if missing else []
    except InputError:
        raise
    except Exception as exc:  # the check itself failed: keep the traceback
        outcome, tb = failure(exc)
    else:
        rows = {**partial.rows, **dict(zip(missing, fresh))}
        outcome, tb = judge_rows(claim, configs, [rows[i] for i in range(len(configs))], ctx)
    return claim_result(claim, ctx, overrides, configs, outcome, tb, time.perf_counter() - start)


def fingerprint(claim: Claim, ctx: RunContext, overrides: Mapping[str, Any] | None) -> dict:
    """What a checkpoint must match to be reused: id, budget, seed, device, dtype, params, overrides."""
    return jsonable({"id": claim.id, "budget": ctx.budget, "seed": ctx.seed, "device": ctx.device.type,
                     "dtype": str(ctx.dtype), "params": claim.params, "overrides": overrides or {}})


@dataclass
class Planned:
    """One claim of a run: its configs and checkpoints, and what an interrupted run left of it."""

    claim: Claim
    configs: list[dict]
    checkpoints: ClaimCheckpoints
    result: dict | None = None  # the finished claim, taken from its checkpoint
    partial: Partial = field(default_factory=Partial)  # measured chunks of an unfinished claim


def plan_run(claims: list[Claim], ctx: RunContext, out_dir: Path, overrides: Mapping[str, Any] | None = None,
             resume: bool = False) -> list[Planned]:
    """Check every claim's configs and, with ``resume``, read every checkpoint — all before any work.

    A config outside a claim's assumptions or a corrupt checkpoint raises InputError with nothing
    computed and nothing written.
    """
    planned = []
    for claim in claims:
        configs = claim.configs(ctx.budget, overrides)
        checkpoints = ClaimCheckpoints(Path(out_dir) / CHECKPOINT_DIR, claim.id, fingerprint(claim, ctx, overrides),
                                       jsonable(configs))
        item = Planned(claim, configs, checkpoints)
        if resume:
            item.result = checkpoints.load_result()
            if item.result is None:
                item.partial = checkpoints.load_partial()
        planned.append(item)
    return planned


def resume_note(item: Planned) -> str:
    """Progress note of a claim resumed from chunk checkpoints ('' when none)."""
    if not item.partial.rows:
        return ""
    return f" ({len(item.partial.rows)}/{len(item.configs)} configs from chunk checkpoints)"


def report_progress(ctx: RunContext, index: int, total: int, result: dict) -> None:
    """The one progress line of a finished (or checkpointed) claim."""
    ctx.progress(f"[{index}/{total}] {result['id']}: {result['verdict']} ({result['wall_time_s']:.1f}s)")


def run_claims(claims: list[Claim], ctx: RunContext, out_dir: Path, *,
               overrides: Mapping[str, Any] | None = None, resume: bool = False) -> list[dict]:
    """Run ``claims`` in order; each finished claim is checkpointed atomically under ``out_dir``.

    With ``resume``, a claim whose checkpoint matches this run (id, budget, seed, device, params,
    overrides) is taken from it instead of being recomputed, and an unfinished claim measures only the
    configs that no chunk checkpoint (left by a distributed run) holds.
    """
    planned = plan_run(claims, ctx, out_dir, overrides, resume)
    for index, item in enumerate(planned, 1):
        if item.result is None:
            ctx.progress(f"[{index}/{len(planned)}] {item.claim.id} ...{resume_note(item)}")
            item.result = run_claim(item.claim, ctx, overrides, item.partial)
            item.checkpoints.save_result(item.result)
        report_progress(ctx, index, len(planned), item.result)
    return [item.result for item in planned]
