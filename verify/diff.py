"""``verify diff``: regressions between two reports (worse verdicts, tracked numbers that moved)."""
from __future__ import annotations

import math

from verify.verdicts import Verdict

__all__ = ["diff_reports"]


def _moved(old, new, rtol: float, atol: float) -> bool:
    if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
        return old != new
    if not (math.isfinite(old) and math.isfinite(new)):
        return old != new
    return abs(new - old) > atol + rtol * abs(old)


def diff_reports(base: dict, new: dict, rtol: float = 1e-6, atol: float = 1e-9) -> tuple[list[str], list[str]]:
    """Return ``(regressions, notes)`` as readable one-line messages.

    A regression is a claim of ``base`` missing from ``new``, a verdict that got worse, or a tracked
    number that moved by more than ``atol + rtol * |old|``.  Improvements and new claims are notes.
    """
    regressions, notes = [], []
    new_claims = {c["id"]: c for c in new["claims"]}
    for old in base["claims"]:
        cur = new_claims.pop(old["id"], None)
        if cur is None:
            regressions.append(f"{old['id']}: missing from the new report")
            continue
        v_old, v_new = Verdict(old["verdict"]), Verdict(cur["verdict"])
        if v_new.rank > v_old.rank:
            regressions.append(f"{old['id']}: verdict {v_old.value} -> {v_new.value} ({cur['summary']})")
        elif v_new.rank < v_old.rank:
            notes.append(f"{old['id']}: verdict improved {v_old.value} -> {v_new.value}")
        for key, value in old.get("tracked", {}).items():
            now = cur.get("tracked", {}).get(key)
            if _moved(value, now, rtol, atol):
                regressions.append(f"{old['id']}: tracked {key} moved {value!r} -> {now!r} "
                                   f"(tolerance {atol:g} + {rtol:g}*|old|)")
    notes += [f"{cid}: new claim ({c['verdict']})" for cid, c in new_claims.items()]
    return regressions, notes
