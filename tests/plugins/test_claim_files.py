"""Claim files and paper plugins run through the same CLI as the built-in papers."""
import json
import re
import shlex
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

from verify import registry
from verify.cli import main
from verify.papers import ENTRY_POINT_GROUP
from verify.registry import RunContext

EXAMPLE = Path(__file__).with_name("claim_file_example.py")


@pytest.fixture
def fresh_registry(monkeypatch):
    """A copy of the installed catalogue, discovered anew by the test and thrown away after it (claim files
    register into the process-wide registry)."""
    registry.all_claims()
    monkeypatch.setattr(registry, "PAPERS", dict(registry.PAPERS))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "BROKEN", [])
    monkeypatch.setattr(registry, "_LOADED", [])
    for name in [m for m in sys.modules if m.startswith("verify_claimfile_")]:
        monkeypatch.delitem(sys.modules, name)


def test_a_claim_file_runs_and_its_reproduce_line_works(fresh_registry, tmp_path, capsys):
    assert main(["run", "note.*", "--claims", str(EXAMPLE), "--out", str(tmp_path / "a")]) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    (claim,) = report["claims"]
    assert report["run"]["claim_files"][0]["path"] == str(EXAMPLE.resolve())
    assert len(report["run"]["claim_files"][0]["sha256"]) == 64
    assert claim["resolution"]["text"] == "limit ± 0.1" and claim["verdict"] == "VERIFIED"
    argv = shlex.split(claim["reproduce"])[1:] + ["--out", str(tmp_path / "b")]
    assert main(argv) == 0
    again = json.loads((tmp_path / "b" / "report.json").read_text())["claims"][0]
    assert again["tracked"] == claim["tracked"]


@pytest.mark.parametrize("body,message", [
    ("def broken(:", "SyntaxError"),
    ("import no_such_module_here", "ModuleNotFoundError"),
    ("from verify.plugin import Paper, register_paper\nregister_paper(Paper(id='softmax', title='t', reference='r'))",
     "duplicate paper id 'softmax'"),
])
def test_a_broken_claim_file_is_one_line_and_exit_2(fresh_registry, tmp_path, capsys, body, message):
    bad = tmp_path / "bad.py"
    bad.write_text(body)
    assert main(["run", "--claims", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(bad) in err, err
    assert not (tmp_path / "out").exists()


def test_a_broken_installed_plugin_leaves_the_other_papers_running(fresh_registry, monkeypatch, capsys):
    real = metadata.entry_points(group=ENTRY_POINT_GROUP)
    broken = metadata.EntryPoint(name="broken", value="no_such_package_xyz:PAPER", group=ENTRY_POINT_GROUP)
    monkeypatch.setattr(metadata, "entry_points", lambda group: [*real, broken])
    assert main(["list", "--paper", "softmax"]) == 0
    out, err = capsys.readouterr()
    assert "softmax.balanced.two-phases" in out
    assert err.count("\n") == 1 and "paper plugin 'broken'" in err and "ModuleNotFoundError" in err


def test_the_built_in_papers_register_through_the_entry_point_group():
    names = {e.name: e.value for e in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert names["softmax"] == "verify.claims.softmax:PAPER" and names["landscape"] == "verify.claims.landscape:PAPER"
    assert {"softmax", "landscape"} <= {c.paper for c in registry.all_claims()}


def test_the_walkthrough_in_docs_runs_as_written(fresh_registry, tmp_path):
    """docs/plugins.md's claim file, copied out of the page, runs and its planted variants decide."""
    page = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text(encoding="utf-8")
    claim_file = tmp_path / "mine.py"
    claim_file.write_text(re.search(r"```python\n(.*?)```", page, re.S).group(1))
    assert main(["run", "mine.*", "--claims", str(claim_file), "--out", str(tmp_path / "out")]) == 0
    claim = registry.get("mine.mean-std-rate")
    ctx = RunContext(device=torch.device("cpu"))
    configs = claim.configs("quick")
    rows = claim.measure(configs, ctx)
    for planted in claim.resolution.beyond(claim.params):
        assert claim.judge(configs, rows, {**claim.params, **planted}, ctx).verdict.value == "REFUTED"
