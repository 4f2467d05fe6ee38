"""The fuzz tier's runner: every case is a ``verify`` command in its own process (a child of
tests/fuzz/forkserver.py) under an address-space limit and a wall-clock limit.

Sizes: children may map ADDRESS_SPACE above what the warm server maps, and their memory budget is half of
that (VERIFY_MEMORY_BUDGET=50% of the usable memory, which verify/limits.py caps by RLIMIT_AS; the suite's
fixed 4G would not fit the limit); TIMEOUT_S bounds one case. Generated inputs are
either small (a real run of a few steps) or far past any budget (refused before allocating): nothing in
between, so that no valid case runs for long.

Hypothesis profiles (tests/conftest.py): ``ci`` (CI=true) keeps the tier within ~3 minutes on 2 cores,
``nightly`` (HYPOTHESIS_PROFILE=nightly) runs many more cases.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SERVER = Path(__file__).with_name("forkserver.py")
ADDRESS_SPACE = 3 << 30
TIMEOUT_S = 60.0


@dataclasses.dataclass
class Result:
    argv: list
    returncode: int | None
    signal: int | None
    timed_out: bool
    seconds: float
    stdout: str
    stderr: str


class Runner:
    """``runner(argv, cwd, env)`` -> :class:`Result` of one command in a fresh forked child."""

    def __init__(self):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen([sys.executable, str(SERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, cwd=Path(__file__).resolve().parents[2])
        ready = self.proc.stdout.readline()
        assert json.loads(ready) == {"ready": True}, ready
        self.codes: dict = {}

    def __call__(self, argv, cwd: Path, env: dict | None = None) -> Result:
        out, err = cwd / ".fuzz.stdout", cwd / ".fuzz.stderr"
        request = {"argv": [str(a) for a in argv], "cwd": str(cwd), "address_space": ADDRESS_SPACE,
                   "timeout": TIMEOUT_S, "stdout": str(out), "stderr": str(err),
                   # CI=true: no progress lines, stderr is the error only; the budget follows RLIMIT_AS
                   "env": {"CI": "true", "VERIFY_MEMORY_BUDGET": "50%", **(env or {})}}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        key = reply["returncode"] if reply["returncode"] is not None else f"signal {reply['signal']}"
        self.codes[key] = self.codes.get(key, 0) + 1
        texts = [path.read_text(errors="replace") for path in (out, err)]
        out.unlink()
        err.unlink()
        return Result(request["argv"], reply["returncode"], reply["signal"], reply["timed_out"], reply["seconds"],
                      *texts)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def runner():
    run = Runner()
    yield run
    run.close()
    print(f"\nfuzz tier: {sum(run.codes.values())} commands, by exit code {dict(sorted(run.codes.items(), key=str))}")
