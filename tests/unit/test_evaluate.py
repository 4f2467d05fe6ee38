"""`verify evaluate landscape`: numbers against an independent Monte Carlo regression; bad files -> exit 2."""
import json

import numpy as np
import pytest
import torch

from theory.landscape.gaussian import activation_fn
from verify.cli import main


def _write(path, a, w):
    np.savez(path, a=a, w=w)
    return str(path)


def test_landscape_matches_monte_carlo_least_squares(tmp_path, capsys):
    """Twin: L = 1/2 E||f° - S_om S_mm^{-1} h||^2 is the least-squares residual of f° on h.

    docs/attention_landscape.md §3.
    """
    rng = np.random.default_rng(1)
    a, w = rng.normal(size=(30, 3)), rng.normal(size=(30, 5)) / 2
    assert main(["evaluate", "landscape", "--student", _write(tmp_path / "s.npz", a, w), "--activation", "tanh"]) == 0
    got = json.loads(capsys.readouterr().out)
    x = torch.from_numpy(rng.normal(size=(400_000, 5)))  # (n, d)
    sigma = activation_fn("tanh")
    h = sigma(x @ torch.from_numpy(w).T) @ torch.from_numpy(a) / 30  # (n, k)
    f = sigma(x[:, :3]) @ (3 * torch.eye(3, dtype=torch.float64)) / 3  # (n, k): default teacher sigma(e_j . x)
    coef = torch.linalg.lstsq(h, f).solution  # (k, k)
    resid = 0.5 * ((f - h @ coef) ** 2).sum(1)  # (n,)
    se = float(resid.std() / np.sqrt(len(resid)))
    assert abs(got["L"] - float(resid.mean())) < 5 * se + 1e-3 * got["L"]  # 5 SE + lstsq-on-sample bias O(k^2/n)
    assert got["L_TF_at_W_star"] == pytest.approx(got["L"], rel=1e-10)
    np.testing.assert_allclose(np.array(got["S_mm"]), (h.T @ h / len(h)).numpy(), atol=5e-3)
    assert abs(np.mean(got["first_variation"])) < 1e-10  # int V dmu = 0 (normal equations)
    assert got["lambda_min_S_mm"] > 0 and len(got["first_variation"]) == 30


@pytest.mark.parametrize("arrays,message", [
    ({"a": np.full((4, 2), np.nan), "w": np.zeros((4, 3))}, "NaN or inf"),
    ({"a": np.ones((4, 2)), "w": np.full((4, 3), np.inf)}, "NaN or inf"),
    ({"a": np.ones((4, 2)), "w": np.ones((5, 3))}, "same M"),
    ({"a": np.ones(4), "w": np.ones((4, 3))}, "must be (M x k)"),
    ({"w": np.ones((4, 3))}, "lacks array(s) ['a']"),
    ({"a": np.array([["x", "y"]] * 4), "w": np.ones((4, 3))}, "real numbers"),
    ({"a": np.ones((4, 2)), "w": np.ones((4, 3))}, "numerically singular"),
])
def test_bad_particle_files(tmp_path, capsys, arrays, message):
    np.savez(tmp_path / "p.npz", **arrays)
    assert main(["evaluate", "landscape", "--student", str(tmp_path / "p.npz")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_activation_k_mismatch_missing_and_non_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    student = _write(tmp_path / "s.npz", rng.normal(size=(6, 2)), rng.normal(size=(6, 3)))
    teacher = _write(tmp_path / "t.npz", rng.normal(size=(6, 3)), rng.normal(size=(6, 3)))
    (tmp_path / "junk.npz").write_text("not a zip")
    for argv, message in (
        (["--student", student, "--activation", "softplus"], "unknown activation"),
        (["--student", student, "--teacher", teacher], "k mismatch"),
        (["--student", str(tmp_path / "none.npz")], "does not exist"),
        (["--student", str(tmp_path)], "is a directory"),
        (["--student", str(tmp_path / "junk.npz")], "not a readable .npz"),
    ):
        assert main(["evaluate", "landscape", *argv]) == 2
        assert message in capsys.readouterr().err


def test_huge_particle_file_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VERIFY_MEMORY_BUDGET", "1K")  # 40 x 5 float64 values, stored and converted: 4.7 KiB
    rng = np.random.default_rng(0)
    assert main(["evaluate", "landscape", "--student", _write(tmp_path / "s.npz", rng.normal(size=(40, 2)),
                                                             rng.normal(size=(40, 3)))]) == 2
    assert "over the limit of 1 KiB" in capsys.readouterr().err
