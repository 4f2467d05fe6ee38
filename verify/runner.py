"""Run claims: sweep -> measure -> judge, with per-claim checkpoints so ``--resume`` loses nothing."""
from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

from theory.errors import InputError
from verify import atomic
from verify.registry import Claim, RunContext
from verify.verdicts import Outcome, Verdict

__all__ = ["run_claim", "run_claims", "reproduce_command", "jsonable"]

CHECKPOINT_DIR = ".checkpoints"


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
    return f"verify run {claim_id} --budget {ctx.budget} --seed {ctx.seed} --device {ctx.device.type}{sets}"


def run_claim(claim: Claim, ctx: RunContext, overrides: Mapping[str, Any] | None = None) -> dict:
    """Run one claim; bad configs raise InputError, any other failure becomes an ERROR verdict."""
    configs = claim.configs(ctx.budget, overrides)
    start = time.perf_counter()
    try:
        rows = claim.measure(configs, ctx)
        outcome = claim.judge(configs, rows, claim.params, ctx)
        tb = None
    except InputError:
        raise
    except Exception as exc:  # the check itself failed: keep the traceback
        outcome = Outcome(Verdict.ERROR, f"{type(exc).__name__}: {exc}")
        tb = traceback.format_exc()
    return {
        "id": claim.id, "paper": claim.paper, "location": claim.location, "provenance": claim.provenance,
        "statement": claim.statement, "latex": claim.latex, "formula": claim.formula,
        "params": jsonable(claim.params),
        "verdict": outcome.verdict.value, "summary": outcome.summary,
        "evidence": jsonable(outcome.evidence), "tolerance": jsonable(outcome.tolerance),
        "margin": jsonable(outcome.margin), "counterexample": jsonable(outcome.counterexample),
        "tracked": jsonable(outcome.tracked), "figures": list(outcome.figures),
        "configs": jsonable(configs), "reproduce": reproduce_command(claim.id, ctx, overrides),
        "wall_time_s": round(time.perf_counter() - start, 3), "traceback": tb,
    }


def _fingerprint(claim: Claim, ctx: RunContext, overrides) -> dict:
    return jsonable({"id": claim.id, "budget": ctx.budget, "seed": ctx.seed, "device": ctx.device.type,
                     "dtype": str(ctx.dtype), "params": claim.params, "overrides": overrides or {}})


def _load_checkpoint(path: Path, fingerprint: dict) -> dict | None:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        result, saved_fp = saved["result"], saved["fingerprint"]
        result["verdict"], result["id"]  # noqa: B018  (shape check: KeyError if malformed)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"corrupt checkpoint {path}: {type(exc).__name__}: {exc}; "
                         "delete it or run without --resume") from None
    return result if saved_fp == fingerprint else None


def run_claims(claims: list[Claim], ctx: RunContext, out_dir: Path, *,
               overrides: Mapping[str, Any] | None = None, resume: bool = False) -> list[dict]:
    """Run ``claims`` in order; each finished claim is checkpointed atomically under ``out_dir``.

    With ``resume``, a claim whose checkpoint matches this run (id, budget, seed, device, params,
    overrides) is taken from it instead of being recomputed.
    """
    for claim in claims:  # refuse bad configs before any work is done
        claim.configs(ctx.budget, overrides)
    ckpt_dir = Path(out_dir) / CHECKPOINT_DIR
    results = []
    for index, claim in enumerate(claims, 1):
        path = ckpt_dir / f"{claim.id}.json"
        fingerprint = _fingerprint(claim, ctx, overrides)
        result = _load_checkpoint(path, fingerprint) if resume and path.exists() else None
        if result is None:
            ctx.progress(f"[{index}/{len(claims)}] {claim.id} ...")
            result = run_claim(claim, ctx, overrides)
            atomic.write_json(path, {"fingerprint": fingerprint, "result": result})
        ctx.progress(f"[{index}/{len(claims)}] {claim.id}: {result['verdict']} ({result['wall_time_s']:.1f}s)")
        results.append(result)
    return results
