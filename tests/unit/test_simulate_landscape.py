"""``verify simulate landscape``: outputs round-trip, equal a direct simulation, the saddle start, seeds
batching, and bad input (one line on stderr, exit code 2, nothing written)."""
import json
import math

import numpy as np
import pytest
import torch

from sims.landscape.flow import MeanFieldConfig, MeanFieldTrajectory, perturb, simulate, strict_saddle
from theory.landscape.objective import ParticleMeasure
from verify.cli import main

TINY = ["simulate", "landscape", "--d", "4", "--k", "2", "--M", "8", "--steps", "20", "--device", "cpu"]
LOGGED = ("time", "loss", "loss_tf", "lambda_min", "cond", "saddle", "grad_sq", "events", "noise_steps")


def _strict_json(text: str):
    """json.loads that refuses NaN/Infinity tokens (standard JSON only)."""
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))


def _run_npz(tmp_path, *argv, name="traj.npz") -> dict:
    out = tmp_path / name
    assert main([*TINY, *argv, "--out", str(out)]) == 0
    with np.load(out) as data:
        return {key: data[key] for key in data.files}


def _assert_same(traj: MeanFieldTrajectory, arrays: dict):
    """Every array of ``traj`` equals the CLI's (exactly; NaN where NaN)."""
    for key, value in traj.to_arrays().items():
        assert key in arrays, key
        if value.dtype.kind in "fi":
            assert np.array_equal(value, arrays[key], equal_nan=True), key
        else:
            assert str(value) == str(arrays[key]), key


def _write_particles(path, a, w):
    np.savez(path, a=np.asarray(a, dtype=np.float64), w=np.asarray(w, dtype=np.float64))


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_outputs_hold_every_field_with_its_shape(tmp_path, suffix, capsys):
    out = tmp_path / f"traj{suffix}"
    assert main([*TINY, "--activation", "probit", "--log-every", "5", "--seeds", "2", "--out", str(out)]) == 0
    assert "2 run(s) x 5 logged steps" in capsys.readouterr().out
    if suffix == ".npz":
        with np.load(out) as data:
            traj = MeanFieldTrajectory.from_arrays(data)
            assert str(data["init"]) == "config" and str(data["teacher"]) == "config"
        assert traj.t.tolist() == [0, 5, 10, 15, 20] and traj.s_mu_eig.shape == (2, 5, 2)
        assert traj.a.shape == (2, 8, 2) and traj.w.shape == (2, 8, 4) and traj.W.shape == (2, 2, 2)
        assert [c.seed for c in traj.configs] == [0, 1] and traj.configs[0].activation == "probit"
        return
    data = _strict_json(out.read_text())
    assert data["model"] == "landscape" and data["t"] == [0, 5, 10, 15, 20] and len(data["runs"]) == 2
    run = data["runs"][1]
    assert run["config"]["seed"] == 1 and run["failed_at"] == -1
    for key in LOGGED:
        assert np.array(run[key]).shape == (5,), key
    shapes = {"s_mu_eig": (5, 2), "a": (8, 2), "w": (8, 4), "W": (2, 2), "teacher_a": (2, 2), "teacher_w": (2, 4)}
    for key, shape in shapes.items():
        assert np.array(run[key]).shape == shape, key


def test_json_and_npz_equal_a_direct_simulation(tmp_path, capsys):
    configs = [MeanFieldConfig(d=4, k=2, M=8, steps=20, activation="probit", seed=s) for s in (3, 4)]
    direct = simulate(configs)
    argv = ["--activation", "probit", "--seed", "3", "--seeds", "2"]
    _assert_same(direct, _run_npz(tmp_path, *argv))
    capsys.readouterr()
    assert main([*TINY, *argv]) == 0  # JSON on stdout
    runs = _strict_json(capsys.readouterr().out)["runs"]
    for i, run in enumerate(runs):
        for key in (*LOGGED, "s_mu_eig", "a", "w", "W"):
            assert np.array_equal(np.array(run[key]), getattr(direct, key)[i].numpy()), key


def test_seeds_batch_equals_single_seed_runs(tmp_path):
    noisy = ["--birth-death", "2", "--noise", "0.05", "--noise-threshold", "inf", "--seed", "5"]
    batch = MeanFieldTrajectory.from_arrays(_run_npz(tmp_path, *noisy, "--seeds", "3"))
    assert int(batch.events[:, -1].min()) > 0 and int(batch.noise_steps[:, -1].min()) == 20
    for i in range(3):
        single = _run_npz(tmp_path, *noisy[:-1], str(5 + i), name=f"seed{i}.npz")
        _assert_same(batch.select(i), single)


def test_particle_files_are_the_start_and_the_teacher(tmp_path):
    gen = torch.Generator().manual_seed(0)
    student = ParticleMeasure(torch.randn(8, 2, generator=gen, dtype=torch.float64),
                              torch.randn(8, 4, generator=gen, dtype=torch.float64) / 2)
    teacher = ParticleMeasure(2 * torch.randn(3, 2, generator=gen, dtype=torch.float64),
                              torch.randn(3, 4, generator=gen, dtype=torch.float64) / 2)
    _write_particles(tmp_path / "s.npz", student.a, student.w)
    _write_particles(tmp_path / "t.npz", teacher.a, teacher.w)
    arrays = _run_npz(tmp_path, "--student", str(tmp_path / "s.npz"), "--teacher", str(tmp_path / "t.npz"))
    cfg = MeanFieldConfig(d=4, k=2, M=8, steps=20, teacher="random", teacher_M=3)
    _assert_same(simulate([cfg], init=[student], teachers=[teacher]), arrays)
    assert str(arrays["init"]).startswith("file ") and np.array_equal(arrays["teacher_w"][0], teacher.w.numpy())


def test_singular_start_is_logged_as_nan_strings_in_standard_json(tmp_path):
    _write_particles(tmp_path / "twin.npz", [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0, 0.0, 0.0]] * 2)  # S_mm rank 1
    out = tmp_path / "twin.json"
    assert main([*TINY[:6], "--steps", "3", "--device", "cpu", "--student", str(tmp_path / "twin.npz"),
                 "--out", str(out)]) == 0
    run = _strict_json(out.read_text())["runs"][0]
    assert run["failed_at"] == 0 and run["loss"] == ["nan"] * 4 and run["W"][0][0] == "nan"


def test_exact_saddle_stays_and_a_perturbed_one_escapes(tmp_path):
    saddle = ["--saddle", "--lr", "0.5", "--steps", "60", "--log-every", "10"]
    still = _run_npz(tmp_path, *saddle, "--delta", "0", name="still.npz")
    c = (2 / math.pi) * math.asin(2 / 3)  # L = c/2 at the saddle (docs/attention_landscape.md §6)
    assert np.allclose(still["loss"], c / 2, rtol=0, atol=1e-15) and still["grad_sq"].max() < 1e-25
    assert str(still["init"]) == "saddle" and still["saddle"].max() < 1e-15
    moved = _run_npz(tmp_path, *saddle, "--delta", "1e-3", name="moved.npz")
    assert abs(moved["loss"][0, 0] - c / 2) < 1e-5 and moved["loss"][0, -1] < 1e-3 * c
    student, teacher = strict_saddle(4, 2, 8)
    cfg = MeanFieldConfig(d=4, k=2, M=8, lr=0.5, steps=60, log_every=10)
    start = perturb(student, 1e-3, direction="hessian", teacher=teacher)
    _assert_same(simulate([cfg], init=[start], teachers=[teacher]), moved)


def test_random_saddle_perturbation_differs_per_seed(tmp_path):
    arrays = _run_npz(tmp_path, "--saddle", "--delta", "1e-3", "--direction", "random", "--seeds", "2")
    assert str(arrays["init"]) == "saddle + delta 0.001 along random"
    assert not np.array_equal(arrays["a"][0], arrays["a"][1])


def _files(**named):
    """Setup: write particle files name -> (a, w) into the test folder."""
    def setup(tmp):
        for name, (a, w) in named.items():
            path = tmp / name
            if isinstance(a, str):
                path.write_text(a)
            else:
                np.savez(path, a=np.asarray(a, dtype=float), w=np.asarray(w, dtype=float))
    return setup


GOOD = np.eye(8, 2).tolist(), np.eye(8, 4).tolist()  # M 8, k 2, d 4
K3 = np.ones((3, 3)).tolist(), np.eye(3, 4).tolist()  # teacher with k 3
NAN = [[math.nan, 0.0]] + GOOD[0][1:], GOOD[1]
INF = GOOD[0], [[math.inf, 0, 0, 0]] + GOOD[1][1:]
BASE = ["simulate", "landscape", "--device", "cpu", "--steps", "2"]
ROWS = [
    ("unknown activation", ["--activation", "softsign"], None, "unknown activation 'softsign'"),
    ("unknown teacher kind", ["--teacher", "orthogonal"], None, "unknown teacher 'orthogonal'"),
    ("unknown dynamics", ["--dynamics", "fast"], None, "unknown dynamics 'fast'"),
    ("unknown w_init", ["--w-init", "one"], None, "unknown w_init 'one'"),
    ("unknown preset", ["--preset", "huge"], None, "unknown preset 'huge'"),
    ("student k vs --k", ["--student", "{tmp}/s.npz", "--k", "3"], _files(**{"s.npz": GOOD}),
     "k mismatch: student file has k = 2, but k = 3 was given"),
    ("student M vs --M", ["--student", "{tmp}/s.npz", "--M", "9"], _files(**{"s.npz": GOOD}), "M mismatch"),
    ("student k vs teacher k", ["--student", "{tmp}/s.npz", "--teacher", "{tmp}/t.npz"],
     _files(**{"s.npz": GOOD, "t.npz": K3}), "k mismatch: teacher file has k = 3"),
    ("teacher k vs --k", ["--teacher", "{tmp}/t.npz", "--k", "2"], _files(**{"t.npz": K3}), "k mismatch"),
    ("student d vs teacher d", ["--student", "{tmp}/s.npz", "--teacher", "{tmp}/t.npz"],
     _files(**{"s.npz": GOOD, "t.npz": (GOOD[0], np.eye(8, 5).tolist())}), "d mismatch"),
    ("student shapes disagree", ["--student", "{tmp}/s.npz"],
     _files(**{"s.npz": (GOOD[0], GOOD[1][:7])}), "a must be (M x k) and w (M x d) with the same M"),
    ("student a is 1-D", ["--student", "{tmp}/s.npz"], _files(**{"s.npz": ([1.0, 2.0], GOOD[1][:2])}),
     "a must be (M x k)"),
    ("student lacks w", ["--student", "{tmp}/s.npz"],
     lambda tmp: np.savez(tmp / "s.npz", a=np.eye(8, 2)), "lacks array(s) ['w']"),
    ("NaN in the student", ["--student", "{tmp}/s.npz"], _files(**{"s.npz": NAN}), "contains NaN or inf"),
    ("inf in the teacher", ["--teacher", "{tmp}/t.npz"], _files(**{"t.npz": INF}), "contains NaN or inf"),
    ("student file missing", ["--student", "{tmp}/none.npz"], None, "does not exist"),
    ("teacher file not an npz", ["--teacher", "{tmp}/t.npz"], _files(**{"t.npz": ("text", None)}),
     "not a readable .npz"),
    ("saddle with probit", ["--saddle", "--activation", "probit"], None, "erf activation only"),
    ("saddle with d < k + 1", ["--saddle", "--d", "3", "--k", "3"], None, "needs d >= k + 1"),
    ("saddle with M not a multiple of k", ["--saddle", "--k", "2", "--M", "7"], None, "multiple of k"),
    ("saddle and a student file", ["--saddle", "--student", "{tmp}/s.npz"], _files(**{"s.npz": GOOD}),
     "not allowed with argument"),
    ("saddle and a teacher", ["--saddle", "--teacher", "random"], None, "brings its own"),
    ("negative delta", ["--saddle", "--delta=-1e-3"], None, "--delta must be finite and >= 0"),
    ("NaN delta", ["--saddle", "--delta", "nan"], None, "--delta must be finite and >= 0"),
    ("delta without saddle", ["--delta", "0.1"], None, "add --saddle"),
    ("direction without saddle", ["--direction", "random"], None, "add --saddle"),
    ("unknown direction", ["--saddle", "--direction", "up"], None, "invalid choice"),
    ("hessian of too many particles", ["--saddle", "--M", "600", "--delta", "1e-3"], None,
     "--direction hessian needs M (k + d) <= 2000"),
    ("zero seeds", ["--seeds", "0"], None, "--seeds must be >= 1"),
    ("seed past 2^63", ["--seed", str(2 ** 63)], None, "seed must be an integer in [0, 2^63)"),
    ("zero steps", ["--steps", "0"], None, "steps must be an integer >= 1"),
    ("NaN lr", ["--lr", "nan"], None, "lr must be finite and > 0"),
    ("negative noise", ["--noise", "-1"], None, "noise must be finite and >= 0"),
    ("fractional M", ["--M", "1.5"], None, "invalid int value"),
    ("logs past memory", ["--steps", "100000000", "--seeds", "100"], None, "over the memory limit"),
    ("particles past memory", ["--M", "10000000", "--d", "100"], None, "over the memory limit"),
    ("kernel tiles past memory", ["--M", "1024", "--seeds", "1000"], None, "over the memory limit"),
    ("noise keys past memory", ["--steps", "1000000000", "--log-every", "100000000", "--noise", "1",
                                "--noise-threshold", "inf", "--seeds", "20"], None, "over the memory limit"),
    ("--out suffix", ["--out", "{tmp}/t.csv"], None, "must end in .json or .npz"),
    ("--out is a folder", ["--out", "{tmp}/dir.json"], lambda tmp: (tmp / "dir.json").mkdir(), "it is a folder"),
]


def _state(tmp):
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(tmp.rglob("*"))}


@pytest.mark.parametrize("what,argv,setup,message", [pytest.param(*row, id=row[0]) for row in ROWS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(what, argv, setup, message, tmp_path, capsys):
    if setup:
        setup(tmp_path)
    before = _state(tmp_path)
    assert main([*BASE, *(a.format(tmp=tmp_path) for a in argv)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("verify: error:") and "Traceback" not in err, err
    assert message in err, err
    assert _state(tmp_path) == before


def test_console_script_bad_input_has_no_traceback(verify_cli):
    proc = verify_cli(*BASE, "--saddle", "--activation", "relu")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
