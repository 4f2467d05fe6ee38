"""The whole catalogue at the quick budget, through the CLI, as CI and a newcomer run it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from verify.registry import all_claims
from verify.report import load_report

BASELINE = Path(__file__).resolve().parents[2] / "reports" / "baseline.json"


def _verify(*argv, timeout=1800):
    return subprocess.run([sys.executable, "-m", "verify.cli", *argv], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick")
    proc = _verify("run", "--device", "cpu", "--out", str(out))
    return proc, out, load_report(out / "report.json")


def test_every_claim_has_a_verdict_and_no_check_errored(quick_run):
    proc, out, report = quick_run
    assert [c["id"] for c in report["claims"]] == [c.id for c in all_claims()]
    errors = [(c["id"], c["traceback"]) for c in report["claims"] if c["verdict"] == "ERROR"]
    assert not errors, errors
    expected = 0 if all(c["verdict"] == "VERIFIED" for c in report["claims"]) else \
        1 if any(c["verdict"] == "REFUTED" for c in report["claims"]) else 3
    assert proc.returncode == expected, proc.stderr[-2000:]


def test_report_artifacts_exist(quick_run):
    _, out, report = quick_run
    assert (out / "report.md").exists() and (out / "junit.xml").exists()
    figures = [f for c in report["claims"] for f in c["figures"]]
    assert figures and all((out / f).exists() for f in figures)
    assert all(c["reproduce"].startswith(f"verify run {c['id']} ") for c in report["claims"])


def test_no_regression_against_committed_baseline(quick_run):
    _, out, _ = quick_run
    proc = _verify("diff", str(BASELINE), str(out / "report.json"), "--whole-catalogue")
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_resume_takes_finished_claims_from_checkpoints(quick_run):
    _, out, report = quick_run
    marked = out / ".checkpoints" / f"{report['claims'][0]['id']}.json"
    saved = json.loads(marked.read_text())
    saved["result"]["summary"] = "taken from the checkpoint"
    marked.write_text(json.dumps(saved))
    proc = _verify("run", "--device", "cpu", "--out", str(out), "--resume", timeout=600)
    again = load_report(out / "report.json")
    assert again["claims"][0]["summary"] == "taken from the checkpoint"
    strip = lambda r: [{k: v for k, v in c.items() if k not in ("wall_time_s", "summary")} for c in r["claims"]]  # noqa: E731
    assert strip(again) == strip(report) and proc.returncode in (0, 1, 3)
