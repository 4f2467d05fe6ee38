"""The plugin through the framework's public surface: entry point, CLI, reproduce lines, --set guards, and the
planted variants every claim's resolution implies (the rule of the framework's quality tier)."""
import json
import shlex
from importlib import metadata

import pytest
import torch

from verify.cli import main
from verify.plugin import ENTRY_POINT_GROUP, RunContext, planted_problems
from verify.registry import all_claims

import linear_icl

CLAIMS = all_claims("linear")


def test_the_paper_registers_through_the_entry_point():
    (entry,) = [e for e in metadata.entry_points(group=ENTRY_POINT_GROUP) if e.name == "linear"]
    assert entry.value == "linear_icl:PAPER" and entry.load() is linear_icl.PAPER
    assert len(CLAIMS) >= 5 and all(c.id.startswith("linear.") for c in CLAIMS)


def test_verify_list_shows_the_claims(capsys):
    assert main(["list", "--paper", "linear"]) == 0
    out = capsys.readouterr().out
    assert all(c.id in out for c in CLAIMS)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["run", "linear.*", "--out", str(out)]) == 0
    return json.loads((out / "report.json").read_text()), tmp_path_factory


def test_the_quick_run_verifies_every_claim_with_tracked_numbers(report):
    claims = report[0]["claims"]
    assert [c["id"] for c in claims] == [c.id for c in CLAIMS]
    for c in claims:
        assert c["verdict"] == "VERIFIED", (c["id"], c["summary"])
        assert c["tracked"] and c["resolution"]["text"], c["id"]


def test_every_reproduce_line_runs_as_printed_and_reproduces_the_numbers(report):
    claims, factory = report
    for c in claims["claims"]:
        argv = shlex.split(c["reproduce"])
        assert argv[0] == "verify"
        out = factory.mktemp("again")
        assert main(argv[1:] + ["--out", str(out)]) == 0, c["reproduce"]
        (again,) = json.loads((out / "report.json").read_text())["claims"]
        assert again["tracked"] == c["tracked"], c["id"]  # same seed, same device: the same numbers


@pytest.mark.parametrize("argv,message", [
    (["run", "linear.error.order-in-N", "--set", "M=5"], "M = ∞"),
    (["run", "linear.shift.task-robust", "--set", "N=8"], "at least 3 distinct values of N"),
    (["run", "linear.shift.covariate-fragile", "--set", "test_spectrum=[1,2]"], "a covariate shift"),
    (["run", "linear.gf.global-minimum", "--set", "eta=10"], "eta < 1/μ_max"),
    (["run", "linear.lsa.trained-predictor", "--set", "replicates=2"], "replicates"),
    (["run", "linear.error.test-length", "--set", "spectrum=[1,-1,2]"], "positive eigenvalues"),
    (["run", "linear.error.test-length", "--set", "Mm=3"], "unknown --set key"),
])
def test_overrides_that_break_a_claim_are_exit_2(argv, message, tmp_path, capsys):
    assert main(argv + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.fixture(scope="module")
def ctx():
    return RunContext(device=torch.device("cpu"), budget="quick", seed=0)


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.id for c in CLAIMS])
def test_planted_variants_decide_at_the_resolution(claim, ctx):
    """The framework's rule for every claim (verify.plugin.planted_problems), plus this plugin's own:
    every claim is VERIFIED at seed 0 and a counterexample names the failing config by label or family."""
    real, problems = planted_problems(claim, ctx)
    assert real.verdict.value == "VERIFIED" and not problems, (claim.id, real.summary, problems)
    configs = claim.configs(ctx.budget)
    rows = claim.measure(configs, ctx)
    for planted in claim.resolution.beyond(claim.params):
        counter = claim.judge(configs, rows, {**claim.params, **planted}, ctx).counterexample
        assert "label" in counter or "family" in counter, (claim.id, counter)  # named from the config
        json.dumps(counter, default=str)
