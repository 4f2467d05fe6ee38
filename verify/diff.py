"""``verify diff``: regressions between two reports (worse verdicts, tracked numbers that moved).

Like is compared with like: reports of another budget, seed, device class (cpu, cuda) or ``--set``
overrides are refused (InputError, exit 2) naming the mismatch, since their numbers were never meant to
agree. A report that ran a subset of the other's claims is compared on the claims both ran; the absent
ones are listed as notes, and count as regressions only with ``whole_catalogue``.

Tolerances (:data:`DEFAULT_RTOL`, :data:`DEFAULT_ATOL`) cover what a tracked number may move between two
runs of the same code, seed and device class on different CPUs, where the order of floating-point
reductions differs (SIMD width, BLAS blocking, the alignment of a batch slice). Measured: the quick
catalogue with torch's scalar kernels (ATEN_CPU_CAPABILITY=default) and MKL restricted to SSE4.2, against
the committed baseline (AVX-512): every verdict equal, every tracked number within 1.6e-13 relative (the
largest: landscape.attention.tracks-static worst_ratio, a loss ratio after 1e3-1e4 Euler steps; fitted
slopes within 3e-15). DEFAULT_RTOL leaves a factor ~1e7 above that; a change of the code that moves a
tracked number by more than 1e-6 relative is a change of a result.
"""
from __future__ import annotations

import math

from theory.errors import InputError
from verify.verdicts import Verdict

__all__ = ["DEFAULT_RTOL", "DEFAULT_ATOL", "IDENTITY", "diff_reports"]

DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-9
#: Run metadata that must agree for two reports to be comparable (absent ``overrides``: none were given).
IDENTITY = {"budget": "budget", "seed": "seed", "device": "device class", "overrides": "--set overrides"}


def _moved(old, new, rtol: float, atol: float) -> bool:
    if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
        return old != new
    if not (math.isfinite(old) and math.isfinite(new)):
        return old != new
    return abs(new - old) > atol + rtol * abs(old)


def _check_comparable(base: dict, new: dict) -> None:
    """Refuse reports of different runs (InputError naming every field that differs)."""
    defaults = {"overrides": {}}
    mismatches = []
    for key, name in IDENTITY.items():
        old, now = (report["run"].get(key, defaults.get(key)) for report in (base, new))
        if old != now:
            mismatches.append(f"{name} {old!r:.60} vs {now!r:.60}")
    if mismatches:
        raise InputError("the reports are of different runs and not comparable: " + "; ".join(mismatches)
                         + " (rerun one of them with the other's options)")


def diff_reports(base: dict, new: dict, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, *,
                 whole_catalogue: bool = False) -> tuple[list[str], list[str]]:
    """Return ``(regressions, notes)`` as readable one-line messages (reports as :func:`load_report` reads).

    A regression is a verdict that got worse, or a tracked number that moved by more than
    ``atol + rtol * |old|``, or a tracked number that disappeared; with ``whole_catalogue`` also a claim of
    ``base`` missing from ``new``. Improvements, new claims and (by default) absent claims are notes.
    Raises InputError when the reports are of different runs (module docstring).
    """
    _check_comparable(base, new)
    regressions, notes = [], []
    new_claims = {c["id"]: c for c in new["claims"]}
    absent = []
    for old in base["claims"]:
        cur = new_claims.pop(old["id"], None)
        if cur is None:
            absent.append(old["id"])
            continue
        v_old, v_new = Verdict(old["verdict"]), Verdict(cur["verdict"])
        if v_new.rank > v_old.rank:
            regressions.append(f"{old['id']}: verdict {v_old.value} -> {v_new.value} ({cur['summary']})")
        elif v_new.rank < v_old.rank:
            notes.append(f"{old['id']}: verdict improved {v_old.value} -> {v_new.value}")
        for key, value in old["tracked"].items():
            now = cur["tracked"].get(key)
            if _moved(value, now, rtol, atol):
                regressions.append(f"{old['id']}: tracked {key} moved {value!r} -> {now!r} "
                                   f"(tolerance {atol:g} + {rtol:g}*|old|)")
    if absent and whole_catalogue:
        regressions += [f"{cid}: missing from the new report" for cid in absent]
    elif absent:
        notes.append(f"{len(absent)} claim(s) of the base report were not run (compared on the "
                     f"{len(base['claims']) - len(absent)} both ran; --whole-catalogue counts them): "
                     + ", ".join(absent))
    notes += [f"{cid}: new claim ({c['verdict']})" for cid, c in new_claims.items()]
    return regressions, notes
