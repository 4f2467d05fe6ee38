"""report.md layout: papers' claims apart from model checks, resolutions shown, '|' escaped, no stale figures."""
import re

import torch

from verify.registry import RunContext
from verify.report import build_report, run_metadata, write_report


def _result(cid, provenance, verdict="VERIFIED", summary="ok", figures=()):
    return {"id": cid, "paper": "softmax", "location": "docs/x.md", "provenance": provenance, "statement": "s",
            "latex": "x", "formula": "f", "params": {"p": 2.0},
            "resolution": {"param": "p", "kind": "absolute", "step": 0.1, "text": "exponent ± 0.1",
                           "directions": [1, -1], "planted": None},
            "verdict": verdict, "summary": summary, "evidence": {"|t| max": "a|b"}, "tolerance": 0.1,
            "margin": 0.05, "counterexample": None, "tracked": {"x": 1.0}, "figures": list(figures),
            "configs": [], "reproduce": f"verify run {cid}", "wall_time_s": 0.1, "traceback": None}


def _report(results):
    ctx = RunContext(device=torch.device("cpu"), budget="quick", seed=0)
    return build_report(results, run_metadata(ctx, 1.0, ["run"]))


def _cells(row: str) -> list[str]:
    """Split a markdown table row on unescaped pipes, as a markdown renderer does."""
    return re.split(r"(?<!\\)\|", row.strip())[1:-1]


def test_headline_counts_and_tables_separate_paper_claims_from_model_checks(tmp_path):
    report = _report([_result("a", "stated"), _result("b", "recalled", "REFUTED"), _result("c", "derived")])
    assert report["summary_by_group"] == {
        "paper": {"VERIFIED": 1, "INCONCLUSIVE": 0, "REFUTED": 1, "ERROR": 0},
        "model": {"VERIFIED": 1, "INCONCLUSIVE": 0, "REFUTED": 0, "ERROR": 0}}
    write_report(report, tmp_path)
    md = (tmp_path / "report.md").read_text()
    paper, model = md.index("## Claims of the papers"), md.index("## Checks of our model")
    assert paper < md.index("[`a`]") < md.index("[`b`]") < model < md.index("[`c`]")
    assert "exponent ± 0.1" in md


def test_pipes_in_cells_are_escaped(tmp_path):
    write_report(_report([_result("a", "stated", summary="max |t| 3.4 | tol 5")]), tmp_path)
    rows = [line for line in (tmp_path / "report.md").read_text().splitlines() if line.startswith("| ")]
    header = rows[0]
    claim_row = next(r for r in rows if r.startswith("| [`a`]"))
    assert len(_cells(claim_row)) == len(_cells(header)) == 7
    evidence_row = next(r for r in rows if "max" in r and "a\\|b" in r)
    assert len(_cells(evidence_row)) == 2


def test_rerun_into_the_same_directory_leaves_no_stale_figures(tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    for name in ("old.png", "kept.png"):
        (figures / name).write_bytes(b"png")
    write_report(_report([_result("a", "stated", figures=["figures/kept.png"])]), tmp_path)
    assert sorted(p.name for p in figures.iterdir()) == ["kept.png"]
