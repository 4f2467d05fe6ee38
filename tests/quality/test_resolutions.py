"""Every claim states its resolution, and the planted variants derived from it decide as they must.

For each claim of the catalogue the quick sweep is measured once; the judge then runs on the same rows with
the real params and with planted params derived from ``claim.resolution``:

- every prediction moved just beyond the resolution (both directions where both are meaningful, or the
  reversed inequality / swapped order) must be REFUTED, with a counterexample;
- every prediction moved well inside it must keep a VERIFIED verdict VERIFIED.

A claim without a resolution fails here, so a new claim cannot enter the catalogue without one. Planted
variants change only ``params`` (measure does not see them), which is why one measurement serves all.
"""
import pytest
import torch

from verify.quality import planted_problems
from verify.registry import RunContext, all_claims

CLAIMS = all_claims()


@pytest.fixture(scope="module")
def ctx():
    return RunContext(device=torch.device("cpu"), budget="quick", seed=0)


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.id for c in CLAIMS])
def test_planted_variants_decide_at_the_resolution(claim, ctx):
    _, problems = planted_problems(claim, ctx)
    assert not problems, problems
