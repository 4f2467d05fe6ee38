"""Bad input, swept over every command: malformed files, resources that would exhaust memory, checkpoints,
the distributed flags.  Each row must give exactly one line on stderr ("verify: error: ...") naming the
problem, exit code 2, and leave every file as it was (nothing written, nothing overwritten).

tests/unit/test_cli.py holds the argument rows; these extend them (none is repeated).  Unreadable paths
are folders or missing files, not chmod 000: tests may run as root, which reads anything.
`verify evaluate` is left to its own tests.
"""
import importlib.util
import json
import os

import pytest
import torch

from verify.checkpoints import CHECKPOINT_DIR
from verify.cli import main
from verify.report import SCHEMA, SCHEMA_VERSION

CLAIM = "softmax.balanced.two-phases"
ROW = {"id": CLAIM, "verdict": "VERIFIED", "summary": "ok", "evidence": {}, "tracked": {"slope": 1.0}}
RESULT = {**ROW, "paper": "softmax", "location": "", "provenance": "derived", "statement": "", "latex": "", "formula": "",
          "tolerance": None, "margin": None, "counterexample": None, "figures": [], "configs": [], "reproduce": "",
          "wall_time_s": 1, "traceback": None}  # a checkpointed result: every field the report writers read
REPORT = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "run": {"budget": "quick", "seed": 0, "device": "cpu"},
          "summary": {"VERIFIED": 1}, "claims": [ROW]}


def _write(name: str, content):
    """Setup: write ``content`` (str, or JSON-dumped) to ``name`` under the test folder."""
    def setup(tmp):
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return setup


def _touch(path):
    path.touch()
    return path


def _folder(name: str):
    return lambda tmp: (tmp / name).mkdir(parents=True)


def _checkpoint(text: str):
    return _write(f"out/{CHECKPOINT_DIR}/{CLAIM}.json", text)


def _chunk(saved):
    return _write(f"out/{CHECKPOINT_DIR}/{CLAIM}.chunks/0.json", saved)


def _both(*setups):
    return lambda tmp: [setup(tmp) for setup in setups]


def _env(setup, **env):
    """``setup`` run with environment variables set for the row (the test applies ``setup.env``)."""
    def with_env(tmp):
        setup(tmp)
    with_env.env = env
    return with_env


GOOD = _write("good.json", REPORT)
RESUME = ["run", CLAIM, "--device", "cpu", "--out", "{tmp}/out", "--resume"]
NEEDS_DASK = pytest.mark.skipif(importlib.util.find_spec("distributed") is None,
                                reason='Dask is optional and not installed (pip install ".[distributed]")')

ROWS = [
    # --- verify diff: files --------------------------------------------------------------------------
    ("diff: base is a folder", ["diff", "{tmp}/folder", "{tmp}/good.json"], _both(_folder("folder"), GOOD),
     "cannot read report"),
    ("diff: new is missing", ["diff", "{tmp}/good.json", "{tmp}/missing.json"], GOOD, "No such file"),
    ("diff: new from another schema version", ["diff", "{tmp}/good.json", "{tmp}/v2.json"],
     _both(GOOD, _write("v2.json", {**REPORT, "schema_version": SCHEMA_VERSION + 1})),
     f"schema version {SCHEMA_VERSION + 1}"),
    ("diff: truncated report", ["diff", "{tmp}/cut.json", "{tmp}/good.json"],
     _both(GOOD, _write("cut.json", json.dumps(REPORT)[:40])), "not valid JSON"),
    ("diff: a JSON list", ["diff", "{tmp}/list.json", "{tmp}/good.json"], _both(GOOD, _write("list.json", [])),
     "is not a verifier report"),
    ("diff: claims without verdicts", ["diff", "{tmp}/good.json", "{tmp}/bad.json"],
     _both(GOOD, _write("bad.json", {**REPORT, "claims": [{"id": CLAIM}]})),
     "does not match report.schema.json: 'verdict' is a required property (at claims/0)"),
    ("diff: claims not a list", ["diff", "{tmp}/good.json", "{tmp}/bad.json"],
     _both(GOOD, _write("bad.json", {**REPORT, "claims": {"id": CLAIM}})), "is not of type 'array' (at claims)"),
    ("diff: unknown verdict", ["diff", "{tmp}/good.json", "{tmp}/bad.json"],
     _both(GOOD, _write("bad.json", {**REPORT, "claims": [{**ROW, "verdict": "MAYBE"}]})),
     "'MAYBE' is not one of"),
    ("diff: binary file", ["diff", "{tmp}/good.json", "{tmp}/bin.json"],
     _both(GOOD, lambda tmp: (tmp / "bin.json").write_bytes(b"\xff\xfe\x00garbage")), "not valid JSON"),
    ("diff: NaN token in a report", ["diff", "{tmp}/good.json", "{tmp}/nan.json"],
     _both(GOOD, _write("nan.json", json.dumps(REPORT).replace("1.0", "NaN"))), "non-finite number NaN"),
    ("diff: overflowing tracked number", ["diff", "{tmp}/good.json", "{tmp}/inf.json"],
     _both(GOOD, _write("inf.json", json.dumps(REPORT).replace("1.0", "1e999"))), "number 1e999 overflows"),
    ("diff: NaN tracked number as a string", ["diff", "{tmp}/good.json", "{tmp}/nan.json"],
     _both(GOOD, _write("nan.json", {**REPORT, "claims": [{**ROW, "tracked": {"slope": "nan"}}]})),
     "'nan' is not of type 'number' (at claims/0/tracked/slope)"),
    ("diff: duplicate claim ids", ["diff", "{tmp}/good.json", "{tmp}/twice.json"],
     _both(GOOD, _write("twice.json", {**REPORT, "claims": [ROW, ROW]})), f"more than once: {CLAIM}"),
    ("diff: deeply nested JSON", ["diff", "{tmp}/good.json", "{tmp}/deep.json"],
     _both(GOOD, _write("deep.json", "[" * 100_000 + "]" * 100_000)), "not valid JSON"),
    ("diff: a report over the size limit", ["diff", "{tmp}/good.json", "{tmp}/big.json"],  # 1 MiB / 32
     _env(_both(GOOD, _write("big.json", {**REPORT, "pad": "x" * 40_000})), VERIFY_MEMORY_BUDGET="1M"),
     "over the limit of 32 KiB"),
    ("diff: a report past the default limit", ["diff", "{tmp}/good.json", "{tmp}/big.json"],
     _both(GOOD, lambda tmp: os.truncate(_touch(tmp / "big.json"), 1 << 36)), "over the limit of"),
    ("diff: /dev/zero", ["diff", "{tmp}/good.json", "/dev/zero"], GOOD, "/dev/zero: not a regular file"),
    ("diff: a named pipe nobody writes", ["diff", "{tmp}/good.json", "{tmp}/fifo"],
     _both(GOOD, lambda tmp: os.mkfifo(tmp / "fifo")), "fifo: not a regular file"),
    ("diff: another budget", ["diff", "{tmp}/good.json", "{tmp}/full.json"],
     _both(GOOD, _write("full.json", {**REPORT, "run": {**REPORT["run"], "budget": "full"}})),
     "not comparable: budget 'quick' vs 'full'"),
    ("diff: another seed and device", ["diff", "{tmp}/good.json", "{tmp}/other.json"],
     _both(GOOD, _write("other.json", {**REPORT, "run": {"budget": "quick", "seed": 1, "device": "cuda"}})),
     "not comparable: seed 0 vs 1; device class 'cpu' vs 'cuda'"),
    ("diff: other --set overrides", ["diff", "{tmp}/good.json", "{tmp}/set.json"],
     _both(GOOD, _write("set.json", {**REPORT, "run": {**REPORT["run"], "overrides": {"K": 7}}})),
     "not comparable: --set overrides {} vs {'K': 7}"),
    ("diff: malformed memory budget", ["diff", "{tmp}/good.json", "{tmp}/good.json"],
     _env(GOOD, VERIFY_MEMORY_BUDGET="lots"), "VERIFY_MEMORY_BUDGET='lots'"),
    ("diff: NaN tolerance", ["diff", "{tmp}/good.json", "{tmp}/good.json", "--rtol", "nan"], GOOD, "finite number"),
    ("diff: negative tolerance", ["diff", "{tmp}/good.json", "{tmp}/good.json", "--atol", "-1"], GOOD, ">= 0"),
    # --- verify show: the last report it reads ----------------------------------------------------------
    ("show: corrupt last report", ["show", CLAIM, "--out", "{tmp}"], _write("report.json", "{\"schema\": "),
     "not valid JSON"),
    ("show: last report of another schema", ["show", CLAIM, "--out", "{tmp}"],
     _write("report.json", {**REPORT, "schema_version": 0}), "schema version 0"),
    # --- verify run: values, shapes, resources ---------------------------------------------------------
    ("run: NaN eta", ["run", CLAIM, "--set", "eta=NaN"], None, "violates assumption 'eta > 0'"),
    ("run: infinite K", ["run", CLAIM, "--set", "K=1e999"], None, "cannot convert float infinity"),
    ("run: K a list", ["run", CLAIM, "--set", "K=[1,2]"], None, "cannot be checked against assumption 'K >= 2'"),
    ("run: a key the claim's configs lack", ["run", CLAIM, "--set", "p=[0.5,0.5]"], None, "unknown --set key(s) p"),
    ("run: malformed override", ["run", CLAIM, "--set", "K"], None, "expected KEY=VALUE"),
    ("run: K x K logs past memory", ["run", CLAIM, "--set", "K=100000", "--set", "d=100000"], None, "fits in memory"),
    ("run: log every step of 1e9", ["run", "softmax.finite-N.matches-infinite", "--set", "steps=1000000000",
                                    "--set", "log_every=1"], None, "fits in memory"),
    ("run: 1e12 steps of the plateau claim",
     ["run", "landscape.saddle.plateau-log-delta", "--set", "steps=1000000000000"], None,
     "would need 80 TiB, over the memory limit"),
    ("run: steps not an integer", ["run", "landscape.saddle.plateau-log-delta", "--set", "steps=1e15"], None,
     "violates assumption 'steps and log_every, where given, are integers >= 1'"),
    ("run: a seed past 2^63", ["run", CLAIM, "--seed", str(2 ** 63)], None, "seed must be an integer in [0, 2^63)"),
    ("run: full-model minibatch past memory", ["run", "softmax.closed-form.full-model", "--set", "batch=1000000000"],
     None, "fits in memory"),
    ("run: gradient matrices past memory", ["run", "softmax.gradient.symbolic-equals-autograd", "--set", "K=1000000"],
     None, "fits in memory"),
    ("run: --out is a file", ["run", CLAIM, "--out", "{tmp}/file"], _write("file", "x"), "is not a writable folder"),
    ("run: --out under a file", ["run", CLAIM, "--out", "{tmp}/file/sub"], _write("file", "x"),
     "is not a writable folder"),
    # --- verify run --resume: checkpoints --------------------------------------------------------------
    ("resume: truncated checkpoint", RESUME, _checkpoint('{"fingerprint": {"id": "softmax.bal'), "corrupt checkpoint"),
    ("resume: checkpoint is a list", RESUME, _checkpoint("[]"), "corrupt checkpoint"),
    ("resume: checkpoint with an unknown verdict", RESUME,
     _checkpoint(json.dumps({"fingerprint": {}, "result": {**RESULT, "verdict": "MAYBE"}})),
     "'MAYBE' is not one of"),
    ("resume: checkpoint with a NaN tracked number", RESUME,
     _checkpoint(json.dumps({"fingerprint": {}, "result": {**RESULT, "tracked": {"slope": float("nan")}}})),
     "non-finite number NaN"),
    ("resume: checkpoint over the size limit", RESUME,  # the budget leaves the claim's configs (10 MiB) theirs
     _env(_checkpoint(json.dumps({"fingerprint": {"pad": "x" * 600_000}, "result": {}})), VERIFY_MEMORY_BUDGET="16M"),
     "over the limit of 512 KiB"),
    ("resume: checkpoint without a field the report needs", RESUME,
     _checkpoint(json.dumps({"fingerprint": {}, "result": {k: v for k, v in RESULT.items() if k != "figures"}})),
     "'figures' is a required property (at result)"),
    ("resume: checkpoint of another claim", RESUME,
     _checkpoint(json.dumps({"fingerprint": {}, "result": {**RESULT, "id": "other"}})), "it holds claim 'other'"),
    ("resume: checkpoint is a folder", RESUME, _folder(f"out/{CHECKPOINT_DIR}/{CLAIM}.json"), "not a regular file"),
    ("resume: truncated chunk", RESUME, _chunk('{"fingerprint": {}, "start": 0, "rows": [{"t": 1.'),
     "corrupt checkpoint"),
    ("resume: chunk rows do not match configs", RESUME,
     _chunk({"fingerprint": {}, "start": 0, "configs": [{}, {}], "rows": [{}], "seconds": 0}),
     "1 rows for 2 configs (they must be of equal length)"),
    ("resume: chunk with a negative start", RESUME,
     _chunk({"fingerprint": {}, "start": -1, "configs": [{}], "rows": [{}], "seconds": 0}),
     "-1 is less than the minimum of 0 (at start)"),
    # --- verify simulate: values and resources ---------------------------------------------------------
    ("simulate: NaN in p", ["simulate", "softmax", "--K", "3", "--p", "nan,0.5,0.5"], None, "finite numbers"),
    ("simulate: NaN dominant", ["simulate", "softmax", "--dominant", "nan"], None, "finite number"),
    ("simulate: zero steps", ["simulate", "softmax", "--steps", "0"], None, "steps must be an integer >= 1"),
    ("simulate: zero log interval", ["simulate", "softmax", "--log-every", "0"], None, "log_every must be"),
    ("simulate: negative seed", ["simulate", "softmax", "--seed", "-1"], None, "seed must be an integer"),
    ("simulate: one feature", ["simulate", "softmax", "--K", "1"], None, "K must be an integer >= 2"),
    ("simulate: zero batch", ["simulate", "softmax", "--full", "--N", "8", "--batch", "0"], None, "batch must be"),
    ("simulate: huge K", ["simulate", "softmax", "--K", "100000"], None, "would need 75.8 TiB, over the memory limit"),
    ("simulate: a billion features", ["simulate", "softmax", "--K", "1000000000"], None, "over the memory limit"),
    ("simulate: 1e15 steps logged twice",
     ["simulate", "softmax", "--steps", str(10 ** 15), "--log-every", str(10 ** 15)], None, "over the memory limit"),
    ("simulate: Monte Carlo prompts past memory", ["simulate", "softmax", "--N", "10000000"], None,
     "over the memory limit"),
    ("simulate: minibatch past memory", ["simulate", "softmax", "--full", "--N", "100000", "--batch", "100000"],
     None, "over the memory limit"),
    ("simulate: Q past memory", ["simulate", "softmax", "--full", "--N", "8", "--d", "100000"], None,
     "over the memory limit"),
    ("simulate: a tiny memory budget", ["simulate", "softmax", "--steps", "2"],
     _env(lambda tmp: None, VERIFY_MEMORY_BUDGET="1K"), "over the memory limit of 1 KiB (VERIFY_MEMORY_BUDGET=1K)"),
    ("simulate landscape: 1e12 logged steps", ["simulate", "landscape", "--steps", str(10 ** 12)], None,
     "over the memory limit"),
    ("simulate: --out under /proc", ["simulate", "softmax", "--steps", "2", "--out", "/proc/verify-test.json"], None,
     "cannot write /proc/verify-test.json"),
    ("simulate: --out under /sys", ["simulate", "softmax", "--steps", "2", "--out", "/sys/verify-test.npz"], None,
     "cannot write /sys/verify-test.npz"),
    ("simulate: --out name too long", ["simulate", "softmax", "--steps", "2", "--out", "{tmp}/" + "x" * 300 + ".json"],
     None, "File name too long"),
    ("simulate: --out is a folder", ["simulate", "softmax", "--steps", "2", "--out", "{tmp}/dir.json"],
     _folder("dir.json"), "it is a folder"),
    ("simulate: --out under a file", ["simulate", "softmax", "--steps", "2", "--out", "{tmp}/file/t.json"],
     _write("file", "x"), "is not a writable folder"),
    # --- other commands ----------------------------------------------------------------------------------
    ("bench: --out is a folder", ["bench", "--device", "cpu", "--out", "{tmp}"], None, "it is a folder"),
    ("baseline: --out under a file", ["baseline", "--out", "{tmp}/file/b.json"], _write("file", "x"),
     "is not a writable folder"),
    ("list: unknown option", ["list", "--bogus"], None, "unrecognized arguments"),
    ("show: empty id", ["show", ""], None, "unknown claim id"),
    # --- the distributed flags ---------------------------------------------------------------------------
    ("workers: more processes than cores", ["run", CLAIM, "--workers", "1000000"], None, "--workers must be between"),
    ("workers: not a number", ["run", CLAIM, "--workers", "two"], None, "invalid int value"),
    ("workers and scheduler together", ["run", CLAIM, "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"],
     None, "not allowed with argument"),
]
DASK_ROWS = [  # rows that get past the flags' own checks to Dask
    ("workers with a corrupt checkpoint", [*RESUME, "--workers", "1"], _checkpoint("{"), "corrupt checkpoint"),
    ("scheduler: no port", ["run", CLAIM, "--scheduler", "localhost"], None, "missing port number"),
    ("scheduler: unknown scheme", ["run", CLAIM, "--scheduler", "foo://host:1"], None, "unknown address scheme"),
    ("scheduler: nobody listening", ["run", CLAIM, "--device", "cpu", "--scheduler", "tcp://127.0.0.1:9",
                                     "--out", "{tmp}/out"], None, "cannot connect to the Dask scheduler"),
]
PARAMS = [pytest.param(*row, id=row[0]) for row in ROWS] + \
         [pytest.param(*row, id=row[0], marks=NEEDS_DASK) for row in DASK_ROWS]


def _state(tmp):
    """Every path under ``tmp`` with its content (files; size and mtime of a sparse giant) or None (folders)."""
    def content(path):
        info = path.stat()
        return path.read_bytes() if info.st_size < 1 << 26 else (info.st_size, info.st_mtime_ns)
    return {p: (content(p) if p.is_file() else None) for p in sorted(tmp.rglob("*"))}


@pytest.mark.parametrize("what,argv,setup,message", PARAMS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(what, argv, setup, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("verify.distributed.CONNECT_TIMEOUT_S", 1)
    monkeypatch.chdir(tmp_path)  # a default --out (reports/latest) would land here, and be seen
    if setup:
        setup(tmp_path)
        for name, value in getattr(setup, "env", {}).items():
            monkeypatch.setenv(name, value)
    before = _state(tmp_path)
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("verify: error:"), err
    assert message in err, err
    assert _state(tmp_path) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("argv", [["bench", "--device", "cuda"], ["simulate", "softmax", "--device", "cuda"]])
def test_cuda_without_cuda_for_the_other_commands(argv, capsys):
    assert main(argv) == 2
    assert "no CUDA device" in capsys.readouterr().err
