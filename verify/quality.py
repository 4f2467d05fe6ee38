"""Planted variants of a claim, derived from its resolution (the quality rule every claim must pass).

:func:`planted_problems` measures a claim's sweep once and judges the same rows with its real params and
with the planted ones of :class:`verify.registry.Resolution`: every prediction moved just beyond the
resolution (or replaced by the reversed inequality / swapped order) must be REFUTED with a
counterexample, and every prediction moved well inside it must keep a VERIFIED verdict VERIFIED. Planted
variants change only ``params``, which ``measure`` never sees, so one measurement serves them all. The
built-in catalogue runs it in tests/quality/test_resolutions.py; a plugin's tests call it the same way.
"""
from __future__ import annotations

from verify.registry import Claim, RunContext
from verify.runner import measure_rows
from verify.verdicts import Outcome, Verdict

__all__ = ["planted_problems"]


def planted_problems(claim: Claim, ctx: RunContext) -> tuple[Outcome, list[str]]:
    """The claim's real outcome on ``ctx.budget``'s sweep and one line per planted variant that decided wrongly
    (empty when the check resolves what its resolution states)."""
    if claim.resolution is None:
        return Outcome(Verdict.ERROR, "no resolution"), [f"{claim.id} states no resolution"]
    configs = claim.configs(ctx.budget)
    rows = measure_rows(claim.measure, configs, ctx)
    real = claim.judge(configs, rows, claim.params, ctx)
    problems = [] if real.tracked else [f"{claim.id} tracks no number its verdict rests on"]
    for planted in claim.resolution.beyond(claim.params):
        outcome = claim.judge(configs, rows, {**claim.params, **planted}, ctx)
        if outcome.verdict is not Verdict.REFUTED or not outcome.counterexample:
            problems.append(f"planted {planted} beyond the resolution came out {outcome.verdict.value}"
                            f"{'' if outcome.counterexample else ' without a counterexample'}: {outcome.summary}")
    if real.verdict is Verdict.VERIFIED:
        for planted in claim.resolution.inside(claim.params):
            outcome = claim.judge(configs, rows, {**claim.params, **planted}, ctx)
            if outcome.verdict is not Verdict.VERIFIED:
                problems.append(f"planted {planted} inside the resolution came out {outcome.verdict.value}: "
                                f"{outcome.summary}")
    return real, problems
