"""Bad input, swept over every command: malformed files, resources that would exhaust memory, checkpoints,
the distributed flags.  Each row must give exactly one line on stderr ("verify: error: ...") naming the
problem, exit code 2, and leave every file as it was (nothing written, nothing overwritten).

tests/unit/test_cli.py holds the argument rows; these extend them (none is repeated).  Unreadable paths
are folders or missing files, not chmod 000: tests may run as root, which reads anything.
`verify evaluate` is left to its own tests.
"""
import importlib.util
import json

import pytest
import torch

from verify.checkpoints import CHECKPOINT_DIR
from verify.cli import main
from verify.report import SCHEMA, SCHEMA_VERSION

CLAIM = "softmax.balanced.two-phases"
REPORT = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "claims": [
    {"id": CLAIM, "verdict": "VERIFIED", "summary": "ok", "evidence": {}, "tracked": {"slope": 1.0}}]}


def _write(name: str, content):
    """Setup: write ``content`` (str, or JSON-dumped) to ``name`` under the test folder."""
    def setup(tmp):
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return setup


def _folder(name: str):
    return lambda tmp: (tmp / name).mkdir(parents=True)


def _checkpoint(text: str):
    return _write(f"out/{CHECKPOINT_DIR}/{CLAIM}.json", text)


def _chunk(saved):
    return _write(f"out/{CHECKPOINT_DIR}/{CLAIM}.chunks/0.json", saved)


def _both(*setups):
    return lambda tmp: [setup(tmp) for setup in setups]


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
     _both(GOOD, _write("bad.json", {**REPORT, "claims": [{"id": CLAIM}]})), "malformed report"),
    ("diff: claims not a list", ["diff", "{tmp}/good.json", "{tmp}/bad.json"],
     _both(GOOD, _write("bad.json", {**REPORT, "claims": {"id": CLAIM}})), "'claims' is not a list"),
    ("diff: unknown verdict", ["diff", "{tmp}/good.json", "{tmp}/bad.json"],
     _both(GOOD, _write("bad.json", {**REPORT, "claims": [{**REPORT["claims"][0], "verdict": "MAYBE"}]})),
     "malformed report"),
    ("diff: binary file", ["diff", "{tmp}/good.json", "{tmp}/bin.json"],
     _both(GOOD, lambda tmp: (tmp / "bin.json").write_bytes(b"\xff\xfe\x00garbage")), "not valid JSON"),
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
    ("run: p of the wrong length", ["run", CLAIM, "--set", "p=[0.5,0.5]"], None, "K entries"),
    ("run: p not numbers", ["run", CLAIM, "--set", "p=\"abc\""], None, "probability vector"),
    ("run: malformed override", ["run", CLAIM, "--set", "K"], None, "expected KEY=VALUE"),
    ("run: K x K logs past memory", ["run", CLAIM, "--set", "K=100000", "--set", "d=100000"], None, "fits in memory"),
    ("run: log every step of 1e9", ["run", CLAIM, "--set", "steps=1000000000", "--set", "log_every=1"], None,
     "fits in memory"),
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
     _checkpoint(json.dumps({"fingerprint": {}, "result": {"id": CLAIM, "verdict": "MAYBE", "summary": "",
                                                           "evidence": {}, "configs": [], "wall_time_s": 1}})),
     "is not a valid Verdict"),
    ("resume: checkpoint is a folder", RESUME, _folder(f"out/{CHECKPOINT_DIR}/{CLAIM}.json"), "Is a directory"),
    ("resume: truncated chunk", RESUME, _chunk('{"fingerprint": {}, "start": 0, "rows": [{"t": 1.'),
     "corrupt checkpoint"),
    ("resume: chunk rows do not match configs", RESUME,
     _chunk({"fingerprint": {}, "start": 0, "configs": [{}, {}], "rows": [{}], "seconds": 0}), "equal, nonzero length"),
    ("resume: chunk with a negative start", RESUME,
     _chunk({"fingerprint": {}, "start": -1, "configs": [{}], "rows": [{}], "seconds": 0}), "is not an index"),
    # --- verify simulate: values and resources ---------------------------------------------------------
    ("simulate: NaN in p", ["simulate", "softmax", "--K", "3", "--p", "nan,0.5,0.5"], None, "finite numbers"),
    ("simulate: NaN dominant", ["simulate", "softmax", "--dominant", "nan"], None, "finite number"),
    ("simulate: zero steps", ["simulate", "softmax", "--steps", "0"], None, "steps must be an integer >= 1"),
    ("simulate: zero log interval", ["simulate", "softmax", "--log-every", "0"], None, "log_every must be"),
    ("simulate: negative seed", ["simulate", "softmax", "--seed", "-1"], None, "seed must be an integer"),
    ("simulate: one feature", ["simulate", "softmax", "--K", "1"], None, "K must be an integer >= 2"),
    ("simulate: zero batch", ["simulate", "softmax", "--full", "--N", "8", "--batch", "0"], None, "batch must be"),
    ("simulate: huge K", ["simulate", "softmax", "--K", "100000"], None, "the log would hold"),
    ("simulate: minibatch past memory", ["simulate", "softmax", "--full", "--N", "100000", "--batch", "100000"],
     None, "the full model would hold"),
    ("simulate: Q past memory", ["simulate", "softmax", "--full", "--N", "8", "--d", "100000"], None,
     "the full model would hold"),
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
    """Every path under ``tmp`` with its content (files) or None (folders)."""
    return {p: (p.read_bytes() if p.is_file() else None) for p in sorted(tmp.rglob("*"))}


@pytest.mark.parametrize("what,argv,setup,message", PARAMS)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(what, argv, setup, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("verify.distributed.CONNECT_TIMEOUT_S", 1)
    monkeypatch.chdir(tmp_path)  # a default --out (reports/latest) would land here, and be seen
    if setup:
        setup(tmp_path)
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
