"""CLI contract: bad input -> one line on stderr and exit code 2; list/show/simulate/diff work."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from verify.cli import main
from verify.report import SCHEMA, SCHEMA_VERSION

BAD_INPUT = [
    (["run", "softmax.no-such-claim"], "unknown claim id"),
    (["run", "nothing.*"], "no claim matches"),
    (["run", "softmax.balanced.two-phases", "--set", "K=1"], "violates assumption 'K >= 2'"),
    (["run", "softmax.balanced.two-phases", "--set", "eta=-1"], "violates assumption 'eta > 0'"),
    (["run", "softmax.balanced.two-phases", "--set", "d=2"], "K <= d"),
    (["run", "softmax.balanced.two-phases", "--set", "N=0"], "N >= 1"),
    (["run", "softmax.balanced.two-phases", "--set", "kind=dominant"], "cannot be checked against assumption"),
    (["run", "softmax.balanced.two-phases", "--set", "ste=5"], "unknown --set key(s) ste"),
    (["run", "softmax.balanced.quadratic-in-K", "--set", "K=8"], "needs at least 3 distinct values of K"),
    (["run", "--budget", "huge"], "invalid choice"),
    (["run", "--seed", "-3"], "seed must be an integer in [0, 2^63)"),
    (["run", "--workers", "0"], "--workers must be between 1 and"),
    (["show", "softmax.nope"], "unknown claim id"),
    (["list", "--paper", "nope"], "unknown paper"),
    (["simulate", "softmax", "--K", "5", "--d", "3"], "need K <= d"),
    (["simulate", "softmax", "--K", "3", "--p", "0.5,0.3,0.3"], "p must sum to 1"),
    (["simulate", "softmax", "--K", "3", "--p", "1.2,-0.1,-0.1"], "nonnegative"),
    (["simulate", "softmax", "--K", "3", "--p", "0.5,0.5"], "p has 2 entries"),
    (["simulate", "softmax", "--K", "3", "--p", "a,b,c"], "comma-separated numbers"),
    (["simulate", "softmax", "--eta", "0"], "eta must be finite and > 0"),
    (["simulate", "softmax", "--eta", "nan"], "finite number"),
    (["simulate", "softmax", "--N", "0"], "N must be an integer >= 1"),
    (["simulate", "softmax", "--N", "ten"], "integer or 'inf'"),
    (["simulate", "softmax", "--full"], "needs a finite --N"),
    (["simulate", "softmax", "--dominant", "1.5"], "--dominant must lie in (0, 1)"),
    (["simulate", "softmax", "--K", "4000", "--d", "4000", "--steps", "100000"], "over the memory limit"),
    (["simulate", "softmax", "--out", "x.csv"], "must end in .json or .npz"),
    (["simulate", "nothing"], "invalid choice"),
    (["diff", "/no/such/base.json", "/no/such/new.json"], "cannot read report"),
    ([], "required"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUT, ids=[" ".join(a) or "(none)" for a, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("verify: error:"), err
    assert message in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda(capsys):
    assert main(["run", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_diff_refuses_other_schema_versions(tmp_path, capsys):
    good = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "claims": []}
    (tmp_path / "base.json").write_text(json.dumps({**good, "schema_version": 99}))
    (tmp_path / "new.json").write_text(json.dumps(good))
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "broken.json").write_text("{not json")
    for base, message in (("base.json", "schema version 99"), ("other.json", "is not a verifier report"),
                          ("broken.json", "not valid JSON")):
        assert main(["diff", str(tmp_path / base), str(tmp_path / "new.json")]) == 2
        assert message in capsys.readouterr().err


def test_console_script_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "verify.cli", "simulate", "softmax", "--K", "5", "--d", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_list_json_and_show(capsys):
    assert main(["list", "--json"]) == 0
    catalogue = json.loads(capsys.readouterr().out)
    assert {"softmax.balanced.two-phases", "softmax.imbalanced.offtarget-rise-threshold"} <= {c["id"] for c in catalogue}
    assert all(c["provenance"] in ("stated", "derived", "recalled") for c in catalogue)
    assert main(["show", "softmax.imbalanced.offtarget-rise-threshold", "--out", "/nonexistent"]) == 0
    out = capsys.readouterr().out
    assert "assumptions:" in out and "sweep[quick]" in out and "1/sqrt(K)" in out


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_simulate_writes_every_field(tmp_path, suffix, capsys):
    out = tmp_path / f"traj{suffix}"
    assert main(["simulate", "softmax", "--K", "3", "--dominant", "0.6", "--steps", "20", "--out", str(out)]) == 0
    if suffix == ".json":
        data = json.loads(out.read_text())
        run = data["runs"][0]
        assert len(data["t"]) == 21 and np.array(run["A"]).shape == (21, 3) and np.array(run["B"]).shape == (21, 3, 3)
        assert np.array(run["attn"]).shape == (21, 3, 3) and np.array(run["loss_per_query"]).shape == (21, 3)
        assert np.array(run["loss"]).shape == (21,)
    else:
        data = np.load(out)
        assert {"t", "A", "B", "attn", "loss_per_query", "loss"} <= set(data.files)


def test_simulate_full_model_runs(tmp_path):
    out = tmp_path / "full.json"
    assert main(["simulate", "softmax", "--full", "--K", "3", "--d", "5", "--N", "8", "--steps", "5",
                 "--batch", "16", "--out", str(out)]) == 0
    run = json.loads(out.read_text())["runs"][0]
    assert abs(np.array(run["A"])[-1].sum() + np.array(run["B"])[-1].sum()) < 1e-12  # rows sum to zero
