"""Claim registry: resolutions, --set keys and sweep designs are checked before anything runs."""
import pytest

from theory.errors import InputError
from verify.registry import Claim, Resolution, needs_distinct


def _claim(**kw):
    base = dict(id="t.c", paper="softmax", location="docs", provenance="derived", statement="s", latex="x",
                formula="f", assumptions=(), sweep=lambda budget: [{"K": K, "eta": 1.0} for K in (4, 8, 16)],
                measure=lambda configs, ctx: [{} for _ in configs], judge=None,
                params={"slope": 2.0}, resolution=Resolution("slope", "absolute", 0.1, "exponent ± 0.1"),
                design=needs_distinct("K", 3, "a slope fit"))
    return Claim(**{**base, **kw})


def test_planted_predictions_are_derived_from_the_resolution():
    res = Resolution("slope", "absolute", 0.1, "exponent ± 0.1")
    assert [p["slope"] for p in res.beyond({"slope": 2.0})] == pytest.approx([2.11, 1.89])
    assert [p["slope"] for p in res.inside({"slope": 2.0})] == pytest.approx([2.01, 1.99])
    rel = Resolution("c", "relative", 0.2, "threshold ± 20%", directions=(+1,))
    assert [p["c"] for p in rel.beyond({"c": 0.5})] == pytest.approx([0.61])
    flip = Resolution("order", "replace", None, "order of phases", planted=("II", "I"))
    assert flip.beyond({"order": ("I", "II")}) == [{"order": ("II", "I")}] and flip.inside({}) == []


@pytest.mark.parametrize("kw,message", [
    (dict(resolution=Resolution("nope", "absolute", 0.1, "t")), "not one of its params"),
])
def test_bad_registrations_are_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        _claim(**kw)


def test_bad_resolutions_are_refused():
    with pytest.raises(ValueError):
        Resolution("p", "sideways", 0.1, "t")
    with pytest.raises(ValueError):
        Resolution("p", "absolute", 0.0, "t")
    with pytest.raises(ValueError):
        Resolution("p", "replace", None, "t")


def test_unknown_set_keys_are_refused():
    with pytest.raises(InputError, match="unknown --set key.*ste"):
        _claim().configs("quick", {"ste": 5})
    assert [c["eta"] for c in _claim().configs("quick", {"eta": 0.5})] == [0.5] * 3


def test_overrides_that_break_the_design_are_refused():
    with pytest.raises(InputError, match="a slope fit needs at least 3 distinct values of K"):
        _claim().configs("quick", {"K": 8})
