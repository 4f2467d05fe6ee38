"""Report writing: schema fields, atomic files, junit, markdown, diff semantics, exit codes."""
import json
import xml.etree.ElementTree as ET

import torch

from verify.diff import diff_reports
from verify.registry import RunContext
from verify.report import build_report, exit_code, load_report, run_metadata, write_report


def _result(cid, verdict, tracked=None):
    return {"id": cid, "paper": "softmax", "location": "§2", "provenance": "derived", "statement": "s",
            "latex": "x", "formula": "f", "params": {}, "verdict": verdict, "summary": f"{cid} {verdict}",
            "evidence": {"n": 1.5}, "tolerance": 0.1, "margin": 0.05, "counterexample": None,
            "tracked": tracked or {}, "figures": [], "configs": [], "reproduce": f"verify run {cid}",
            "wall_time_s": 0.1, "traceback": "Traceback: boom" if verdict == "ERROR" else None}


def _report(results):
    ctx = RunContext(device=torch.device("cpu"), budget="quick", seed=3)
    return build_report(results, run_metadata(ctx, 1.25, ["run"]))


def test_report_files_and_schema(tmp_path):
    results = [_result("a", "VERIFIED"), _result("b", "REFUTED"), _result("c", "INCONCLUSIVE"), _result("d", "ERROR")]
    write_report(_report(results), tmp_path)
    report = load_report(tmp_path / "report.json")
    run = report["run"]
    for key in ("git_sha", "packages", "device_name", "dtype_policy", "seed", "budget", "wall_time_s"):
        assert key in run
    assert report["summary"] == {"VERIFIED": 1, "INCONCLUSIVE": 1, "REFUTED": 1, "ERROR": 1}
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("4", "1", "1", "1")
    md = (tmp_path / "report.md").read_text()
    assert "| claim | paper |" in md and "## d" in md and "Traceback: boom" in md
    assert not list(tmp_path.glob(".*.tmp"))


def test_exit_codes():
    assert exit_code([_result("a", "VERIFIED")]) == 0
    assert exit_code([_result("a", "VERIFIED"), _result("b", "INCONCLUSIVE")]) == 3
    assert exit_code([_result("a", "INCONCLUSIVE"), _result("b", "REFUTED")]) == 1
    assert exit_code([_result("a", "ERROR")]) == 1


def test_diff_flags_worse_verdicts_moved_numbers_and_missing_claims():
    base = _report([_result("a", "VERIFIED", {"x": 1.0}), _result("b", "INCONCLUSIVE"), _result("gone", "VERIFIED")])
    new = _report([_result("a", "REFUTED", {"x": 1.1}), _result("b", "VERIFIED"), _result("fresh", "VERIFIED")])
    regressions, notes = diff_reports(base, new)
    text = "\n".join(regressions)
    assert "a: verdict VERIFIED -> REFUTED" in text and "tracked x moved" in text and "gone" not in text
    assert any("b: verdict improved" in n for n in notes) and any("fresh: new claim" in n for n in notes)
    assert any("1 claim(s) of the base report were not run" in n and n.endswith(": gone") for n in notes)
    assert "gone: missing" in "\n".join(diff_reports(base, new, whole_catalogue=True)[0])
    assert diff_reports(base, base) == ([], [])
    assert json.dumps(new)  # plain JSON
