"""Fuzz tier: hypothesis generates argument vectors and malformed files (particle .npz, report JSON,
checkpoints) for every subcommand; each runs in its own process under memory and time limits
(tests/fuzz/conftest.py) and must keep the CLI contract (:func:`conftest.check`): exit code 0-3, never a
traceback, a kill or a timeout, a refusal in one line that leaves every existing file as it was.

Sizes are drawn small (a real run of a few steps) or far past any budget (refused before allocating),
never in between; commands that only do long work when valid (bench, baseline, --workers) are generated
invalid only.
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


CHEAP_CLAIM = "softmax.invariant.row-sums-zero"
EXIT_CODES = {0, 1, 2, 3}
#: Cases per test: 64 under the ci and dev profiles (~520 commands, about a minute on 2 cores), the profile's
#: max_examples under nightly (400).
CASES = settings(max_examples=max(64, settings.default.max_examples), deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------------
# values: small, huge (refused by the memory policy), malformed
# ---------------------------------------------------------------------------------------------------
HUGE = st.integers(10 ** 12, 10 ** 40).map(str)
GARBAGE = st.sampled_from(["", "abc", "1.5", "-0", "nan", "inf", "-inf", "1e999", "0x10", "١٢", "1_000", "--", " 7",
                           "9" * 5000, "-" + "9" * 30])
SEEDS = st.one_of(st.integers(0, 5), st.integers(2 ** 63 - 3, 2 ** 63 + 2), st.integers(-3, -1)).map(str)
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(["0", "1e-300", "1e300"]))


def small(low: int, high: int):
    return st.integers(low, high).map(str)


def size(low: int, high: int):
    """A size option: small (valid or just invalid), huge, or malformed."""
    return st.one_of(small(low, high), small(low, high), HUGE, GARBAGE)


@st.composite
def options(draw, table: dict) -> list[str]:
    """Some of the options of ``table`` (flag -> strategy of its value, or None for a bare flag)."""
    argv = []
    for flag in draw(st.lists(st.sampled_from(sorted(table)), unique=True, max_size=len(table))):
        argv += [flag] if table[flag] is None else [flag, draw(table[flag])]
    return argv


def out_paths(suffixes=(".json", ".npz")):
    """--out targets: new files, the existing old.json, and paths that cannot be written."""
    return st.one_of(st.sampled_from([f"{{tmp}}/new{s}" for s in suffixes] + [
        "{tmp}/old.json", "{tmp}/new.txt", "{tmp}/folder", "{tmp}/old.json/sub.json", "{tmp}/deep/er/x.json",
        "/proc/verify-fuzz.json", "/sys/verify-fuzz.npz", "/dev/null/x.json", "{tmp}/" + "x" * 300 + ".json"]))


# ---------------------------------------------------------------------------------------------------
# malformed files
# ---------------------------------------------------------------------------------------------------
def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npy_header_only(shape) -> bytes:
    """An .npy whose header claims ``shape`` (float64) with no data behind it."""
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()


@st.composite
def particle_files(draw) -> bytes:
    """An .npz particle file: valid, or malformed in one of many ways."""
    M, k, d = draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    members = {"a": _npy(rng.normal(size=(M, k))), "w": _npy(rng.normal(size=(M, d)) / np.sqrt(d))}
    kind = draw(st.sampled_from(["valid", "truncated", "flipped", "nan", "shapes", "dtype", "missing", "header",
                                 "empty", "not-zip", "compressed", "extra"]))
    if kind == "nan":
        members["a"] = _npy(np.full((M, k), draw(st.sampled_from([np.nan, np.inf, -np.inf]))))
    elif kind == "shapes":
        members["w"] = _npy(draw(st.sampled_from([np.ones((M + 1, d)), np.ones(M), np.ones((M, d, 1)),
                                                  np.ones((0, d)), np.float64(3.0)])))
    elif kind == "dtype":
        members["a"] = _npy(draw(st.sampled_from([np.ones((M, k), complex), np.array([["x"] * k] * M),
                                                  np.array([[None] * k] * M, dtype=object), np.ones((M, k), bool)])))
    elif kind == "missing":
        del members[draw(st.sampled_from(["a", "w"]))]
    elif kind == "header":
        members["a"] = _npy_header_only(draw(st.sampled_from([(10 ** 12, k), (M, 10 ** 9), (2 ** 62, 2 ** 62)])))
    elif kind == "empty":
        members = {}
    elif kind == "extra":
        members["junk"] = b"\x00" * draw(st.integers(0, 100))
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if kind == "compressed" else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    data = buffer.getvalue()
    if kind == "truncated":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif kind == "flipped":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    elif kind == "not-zip":
        data = draw(st.binary(max_size=200))
    return data


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True), st.text(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=8)


def _paths(node, prefix=()):
    """Every (path) of a JSON document, containers first."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield from _paths(child, prefix + (key,))


@st.composite
def mutated(draw, document) -> str:
    """The JSON text of ``document`` after a few random edits (replace or delete a value, duplicate a list
    item), or raw-text damage (cut short, a NaN token, deep nesting)."""
    doc = json.loads(json.dumps(document))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(_paths(doc))))
        if not path:
            doc = draw(JSON_VALUES) if draw(st.booleans()) else doc
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "duplicate"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, list):
            parent.append(parent[path[-1]])
    text = json.dumps(doc, allow_nan=True)
    damage = draw(st.sampled_from(["none", "none", "cut", "nan", "deep", "binary"]))
    if damage == "cut":
        text = text[:draw(st.integers(0, max(0, len(text) - 1)))]
    elif damage == "nan":
        text = text.replace("0", "NaN", 1)
    elif damage == "deep":
        text = "[" * 50_000 + text + "]" * 50_000
    elif damage == "binary":
        text = text + "\x00\udcff" if draw(st.booleans()) else text
    return text


def _row(cid: str, verdict: str = "VERIFIED", tracked=None) -> dict:
    return {"id": cid, "paper": "softmax", "verdict": verdict, "summary": "s", "evidence": {"n": 1.0},
            "tracked": {"x": 1.5} if tracked is None else tracked, "configs": [], "wall_time_s": 0.1}


REPORT = {"schema": "icl-theory-verifier/report", "schema_version": 1,
          "run": {"budget": "quick", "seed": 0, "device": "cpu", "overrides": {}},
          "summary": {"VERIFIED": 2}, "claims": [_row("a"), _row("b", tracked={"y": -2.0})]}


# ---------------------------------------------------------------------------------------------------
# the contract and the cases
# ---------------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict:
    """Every path under ``root`` (the runner's output files aside) with its bytes, or None for folders."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))
            if not p.name.startswith(".fuzz.")}


def check(result, before: dict, after: dict) -> None:
    """The tier's contract: an exit code of the CLI, never a kill, a timeout or a traceback; a refusal
    (exit 2) is exactly one line on stderr and changes no file that existed."""
    what = f"verify {' '.join(result.argv)}\nstderr: {result.stderr[-3000:]}"
    assert not result.timed_out, f"timed out after {result.seconds} s: {what}"
    assert result.signal is None, f"killed by signal {result.signal}: {what}"
    assert result.returncode in EXIT_CODES, f"exit code {result.returncode}: {what}"
    assert "Traceback" not in result.stderr, what
    if result.returncode == 2:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("verify: error: "), what
        assert after == before, f"a refused run changed files: {what}"


@pytest.fixture(scope="module")
def finished_run(runner, tmp_path_factory) -> Path:
    """A real run of the cheap claim: its report.json and checkpoints are the templates for --resume."""
    out = tmp_path_factory.mktemp("finished")
    result = runner(["run", CHEAP_CLAIM, "--device", "cpu", "--out", str(out)], out)
    assert result.returncode == 0, result.stderr
    return out


def _case(runner, argv, files: dict, env=None, setup=None):
    """Run ``argv`` ("{tmp}" replaced) in a fresh folder holding ``files`` and an old.json, and check it."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as name:
        tmp = Path(name)
        (tmp / "old.json").write_text('{"written": "before the run"}')
        (tmp / "folder").mkdir()
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
        if setup:
            setup(tmp)
        before = snapshot(tmp)
        result = runner([a.replace("{tmp}", name) for a in argv], tmp, env)
        check(result, before, snapshot(tmp))
        return result


SOFTMAX = {"--K": size(1, 5), "--d": size(1, 6), "--N": st.one_of(size(1, 12), st.just("inf")),
           "--steps": size(0, 20), "--log-every": size(0, 8), "--seed": SEEDS, "--batch": size(0, 12),
           "--eta": FLOATS, "--p": st.lists(FLOATS, max_size=5).map(",".join), "--dominant": FLOATS,
           "--full": None, "--reduced": None, "--device": st.sampled_from(["cpu", "cuda", "tpu"]),
           "--out": out_paths()}


@CASES
@given(argv=options(SOFTMAX))
def test_simulate_softmax(runner, argv):
    _case(runner, ["simulate", "softmax", *argv], {})


LANDSCAPE = {"--d": size(1, 5), "--k": size(1, 3), "--M": size(1, 6), "--steps": size(0, 12),
             "--log-every": size(0, 6), "--seed": SEEDS, "--seeds": size(0, 3), "--teacher-M": size(0, 4),
             "--teacher-seed": SEEDS, "--quad-order": size(0, 8),
             "--activation": st.sampled_from(["erf", "probit", "relu", "sigmoid", "tanh", "softplus"]),
             "--preset": st.sampled_from(["paper", "paper-probit", "nope"]),
             "--dynamics": st.sampled_from(["two-timescale", "joint", "x"]), "--w-init": st.sampled_from(["optimal",
                                                                                                          "zero", "y"]),
             "--lr": FLOATS, "--init-scale": FLOATS, "--a-scale": FLOATS, "--w-speed": FLOATS, "--birth-death": FLOATS,
             "--noise": FLOATS, "--noise-threshold": FLOATS, "--label-noise": FLOATS, "--delta": FLOATS,
             "--direction": st.sampled_from(["hessian", "random", "up"]), "--saddle": None,
             "--teacher": st.sampled_from(["orthonormal", "random", "{tmp}/teacher.npz", "{tmp}/missing.npz"]),
             "--student": st.sampled_from(["{tmp}/student.npz", "{tmp}/folder", "/dev/zero"]),
             "--device": st.sampled_from(["cpu", "cuda"]), "--out": out_paths()}


@CASES
@given(argv=options(LANDSCAPE), student=particle_files(), teacher=particle_files())
def test_simulate_landscape(runner, argv, student, teacher):
    if "--preset" in argv and "--M" not in argv and "--student" not in argv:
        argv += ["--M", "4"]  # the paper's preset is M = 500: keep the run small
    if "--steps" not in argv:
        argv += ["--steps", "5"]
    _case(runner, ["simulate", "landscape", *argv], {"student.npz": student, "teacher.npz": teacher})


@CASES
@given(student=particle_files(), teacher=st.one_of(st.none(), particle_files()),
       activation=st.sampled_from(["erf", "probit", "relu", "sigmoid", "tanh", "cosh"]), out=st.one_of(st.none(),
                                                                                                        out_paths()))
def test_evaluate_landscape(runner, student, teacher, activation, out):
    argv = ["evaluate", "landscape", "--student", "{tmp}/student.npz", "--activation", activation]
    files = {"student.npz": student}
    if teacher is not None:
        argv += ["--teacher", "{tmp}/teacher.npz"]
        files["teacher.npz"] = teacher
    _case(runner, argv + (["--out", out] if out else []), files)


@CASES
@given(base=mutated(REPORT), new=mutated(REPORT), flags=options({"--rtol": FLOATS, "--atol": FLOATS,
                                                                  "--whole-catalogue": None}),
       budget=st.sampled_from([None, "1K", "64K", "lots", "0", "100%"]),
       swap=st.sampled_from(["files", "folder", "missing", "dev-zero", "fifo"]))
def test_diff(runner, base, new, flags, budget, swap):
    paths = {"files": "{tmp}/new.json", "folder": "{tmp}/folder", "missing": "{tmp}/gone.json",
             "dev-zero": "/dev/zero", "fifo": "{tmp}/fifo"}
    result = _case(runner, ["diff", "{tmp}/base.json", paths[swap], *flags], {"base.json": base, "new.json": new},
                   env={"VERIFY_MEMORY_BUDGET": budget} if budget else None,
                   setup=(lambda tmp: __import__("os").mkfifo(tmp / "fifo")) if swap == "fifo" else None)
    if swap != "files":
        assert result.returncode == 2


@CASES
@given(report=mutated(REPORT), claim=st.sampled_from([CHEAP_CLAIM, "a", "nope", ""]))
def test_show_reads_the_last_report(runner, report, claim):
    _case(runner, ["show", claim, "--out", "{tmp}"], {"report.json": report})


RUN = {"--seed": SEEDS, "--budget": st.sampled_from(["quick", "full", "medium"]),  # full: refused runs only
       "--device": st.sampled_from(["cpu", "cuda", "gpu"]),
       "--workers": st.sampled_from(["0", "-1", "two", str(10 ** 6)]),
       "--scheduler": st.sampled_from(["localhost", "foo://x:1", ""]), "--out": out_paths(("",))}
SET_KEYS = ("K", "N", "batch", "c", "d", "eta", "kind", "model", "steps", "nope")
SET_VALUES = st.one_of(small(0, 6), HUGE, GARBAGE, st.sampled_from(["null", "true", "[1,2]", '"full"', '{"a":1}', "NaN",
                                                                    "1e15", "-1e999", '"reduced"', '"balanced"']))


@CASES
@given(argv=options(RUN), sets=st.lists(st.tuples(st.sampled_from(SET_KEYS), SET_VALUES), max_size=3),
       ids=st.lists(st.sampled_from([CHEAP_CLAIM, "softmax.invariant.*", "nope.*", "unknown", ""]), min_size=1,
                    max_size=2))
def test_run(runner, argv, sets, ids):
    if "--budget" in argv and argv[argv.index("--budget") + 1] == "full":
        sets = [*sets, ("steps", "1" + "0" * 15)]  # a full sweep is long work: keep it refused
    argv = ["run", *ids, *argv, *[f"--set={k}={v}" for k, v in sets]]
    if "--out" not in argv:
        argv += ["--out", "{tmp}/out"]
    _case(runner, argv, {})


@CASES
@given(result=st.data(), overrides=st.sampled_from([[], ["--set", "steps=1000000000000"], ["--seed", "1"]]))
def test_resume_reads_malformed_checkpoints(runner, finished_run, result, overrides):
    """A copy of a finished run whose checkpoint (or a chunk) is mutated; --resume must refuse or rerun."""
    files = {f"out/{p.relative_to(finished_run)}": p.read_bytes() for p in finished_run.rglob("*")
             if p.is_file() and not p.name.startswith(".fuzz.") and "figures" not in p.parts}
    checkpoint = next(k for k in files if k.endswith(f"{CHEAP_CLAIM}.json") and ".checkpoints" in k)
    saved = json.loads(files[checkpoint])
    if result.draw(st.booleans()):
        files[checkpoint] = result.draw(mutated(saved))
    else:  # a chunk left by a distributed run
        chunk = {"fingerprint": saved["fingerprint"], "start": 0, "configs": saved["result"]["configs"][:1],
                 "rows": [{"x": 1.0}], "seconds": 0.5}
        del files[checkpoint]
        files[checkpoint.replace(".json", ".chunks/0.json")] = result.draw(mutated(chunk))
    _case(runner, ["run", CHEAP_CLAIM, "--device", "cpu", "--out", "{tmp}/out", "--resume", *overrides], files)


@CASES
@given(argv=st.one_of(
    options({"--paper": st.sampled_from(["softmax", "landscape", "linear", "x", ""]), "--json": None}).map(
        lambda a: ["list", *a]),
    st.tuples(st.sampled_from(["bench", "baseline"]), st.sampled_from(["{tmp}/folder", "/proc/x.json", "/sys/b.json",
                                                                       "{tmp}/old.json/x.json"])).map(
        lambda t: [t[0], "--out", t[1]]),
    st.lists(st.sampled_from(["simulate", "evaluate", "diff", "--help", "-x", "landscape", "softmax", "ü"]),
             max_size=3)))  # not a bare "run": the whole catalogue is valid and long
def test_other_commands_and_bare_words(runner, argv):
    _case(runner, argv, {})


def test_a_refusal_for_size_under_the_address_space_limit_leaves_every_file(runner, finished_run, tmp_path):
    """The memory path in a process whose budget comes from RLIMIT_AS: a run refused for size leaves the
    report and checkpoints of the earlier run byte for byte (also as a fixed case, whatever hypothesis draws)."""
    out = tmp_path / "out"
    shutil.copytree(finished_run, out, ignore=shutil.ignore_patterns(".fuzz.*"))
    before = snapshot(tmp_path)
    for argv in (["--set", "steps=1000000000000"], ["--set", "K=100000", "--set", "d=100000"], ["--resume"]):
        result = runner(["run", CHEAP_CLAIM, "--device", "cpu", "--out", str(out), *argv], tmp_path,
                        {"VERIFY_MEMORY_BUDGET": "64K"} if argv == ["--resume"] else None)
        check(result, before, snapshot(tmp_path))
        assert result.returncode == 2 and "over the memory limit" in result.stderr, result.stderr
