"""Fixtures of the scale-out and fault tests (test_distributed.py, test_faults.py, test_bad_input_sweep.py).

A few cheap claims, their single-process report to compare against, the CLI as a user runs it (a fresh
interpreter), and one two-worker Dask LocalCluster on loopback shared by the tests that need a cluster.
"""
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from batch_rounding import first_difference

CHEAP_CLAIMS = ("softmax.invariant.*", "softmax.balanced.two-phases", "softmax.imbalanced.offtarget-rise-threshold")
DASK_REASON = 'Dask is optional and not installed (pip install ".[distributed]"; .ci/run installs it)'


class _Comparable(dict):
    """A report without what depends on how the run was executed, equal to another within the rounding of a
    batch slice (chunked sweeps: tests/batch_rounding.py)."""

    def __eq__(self, other):
        return first_difference(dict(self), dict(other), "report") is None


def _comparable(report: dict) -> dict:
    return _Comparable(summary=report["summary"], claims=[
        {k: v for k, v in claim.items() if k not in ("wall_time_s", "summary")} for claim in report["claims"]])


def _cli_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # CI=true would silence the progress lines
    env["OMP_NUM_THREADS"] = "1"
    return env


def _wait_for(predicate, timeout: float = 180.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="session")
def cheap_claims() -> tuple[str, ...]:
    """Ids/globs of a few cheap claims (about 3 s of measurement in all)."""
    return CHEAP_CLAIMS


@pytest.fixture(scope="session")
def comparable():
    """``comparable(report)``: what must not depend on how a run was executed — the verdict counts and every
    claim row but its wall time and summary line (which prints numbers), equal to rounding."""
    return _comparable


@pytest.fixture(scope="session")
def wait_for():
    """``wait_for(predicate, timeout, what)``: poll every 50 ms until ``predicate()`` is truthy (returned)."""
    return _wait_for


@pytest.fixture(scope="session")
def verify_cli():
    """``verify_cli(*argv)``: ``python -m verify.cli`` run to completion; ``verify_cli.start(*argv)``: left running."""
    def command(argv):
        return [sys.executable, "-m", "verify.cli", *map(str, argv)]

    def run(*argv, timeout=300):
        return subprocess.run(command(argv), capture_output=True, text=True, timeout=timeout, env=_cli_env())

    def start(*argv):
        started.append(subprocess.Popen(command(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=_cli_env()))
        return started[-1]

    started = []
    run.start = start
    yield run
    for proc in started:  # a test that failed half-way leaves nothing running
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="session")
def reference(verify_cli, tmp_path_factory) -> dict:
    """The comparable report of an uninterrupted single-process run of the cheap claims (CPU, seed 0)."""
    out = tmp_path_factory.mktemp("reference")
    proc = verify_cli("run", *CHEAP_CLAIMS, "--device", "cpu", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _comparable(json.loads((Path(out) / "report.json").read_text()))


@pytest.fixture(scope="session")
def dask_available():
    """Skip the test when Dask is not installed."""
    pytest.importorskip("distributed", reason=DASK_REASON)


@pytest.fixture(scope="session")
def dask_cluster(dask_available):
    """A LocalCluster of two single-threaded worker processes on loopback, and a client of it.

    ``allowed-failures`` is 1: a task survives one killed worker and is declared lost at the second.
    """
    import dask
    import distributed

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None, silence_logs=logging.CRITICAL)
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield cluster, client
