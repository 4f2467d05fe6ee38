"""Scale-out (verify/distributed.py): a Dask run gives the single-process report, verdicts and numbers alike.

The cluster tests use a real two-worker LocalCluster on loopback (tests/unit/conftest.py) and skip with a
reason when Dask is not installed; .ci/run installs it.  That a config's row does not depend on its batch,
which makes chunking safe, is checked for the whole quick catalogue in tests/claims/test_chunking.py.
"""
import dataclasses
import json
import sys

import pytest
import torch

from verify.cli import main
from verify.distributed import INSTALL_HINT, chunks, run_claims_distributed
from verify.registry import RunContext, get
from verify.runner import run_claim


@pytest.mark.parametrize("indices,size,expected", [
    ([0, 1, 2, 3, 4], 2, [[0, 1], [2, 3], [4]]),
    ([0, 1, 2], 5, [[0, 1, 2]]),
    ([0, 2, 3, 4, 7], 2, [[0], [2, 3], [4], [7]]),  # resumed: only missing configs, never across a gap
    ([], 3, []),
])
def test_chunks_are_consecutive_runs_in_sweep_order(indices, size, expected):
    assert chunks(indices, size) == expected


def test_without_dask_the_flags_say_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    for flags in (["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:8786"]):
        assert main(["run", "softmax.balanced.two-phases", "--out", str(tmp_path), *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and INSTALL_HINT in err, err
    assert not any(tmp_path.iterdir())


def test_run_on_a_two_worker_cluster_equals_single_process(dask_cluster, reference, cheap_claims, comparable,
                                                           tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CI", raising=False)  # the scheduling line is a progress message, quiet under CI
    cluster, _ = dask_cluster
    code = main(["run", *cheap_claims, "--device", "cpu", "--scheduler", cluster.scheduler_address,
                 "--out", str(tmp_path)])
    assert code == 0
    assert "chunk task(s) of 5 unfinished claim(s) on 2 Dask worker slot(s)" in capsys.readouterr().err
    assert comparable(json.loads((tmp_path / "report.json").read_text())) == reference
    assert sorted(p.name for p in (tmp_path / ".checkpoints").iterdir()) == \
        sorted(f"{c['id']}.json" for c in reference["claims"])  # chunk files folded into claim checkpoints


def _fails_on_every_config(configs, ctx):
    raise ValueError(f"no measurement for K={configs[0]['K']}")


def test_a_failing_measurement_is_the_same_error_as_single_process(dask_cluster, tmp_path):
    """Both chunks fail with different messages; the report names the first config's, as one batch would."""
    claim = dataclasses.replace(get("softmax.balanced.two-phases"), measure=_fails_on_every_config)
    ctx = RunContext(device=torch.device("cpu"))
    cluster, _ = dask_cluster
    single = run_claim(claim, ctx)
    spread, = run_claims_distributed([claim], ctx, tmp_path, scheduler=cluster.scheduler_address)
    assert single["verdict"] == spread["verdict"] == "ERROR"
    assert single["summary"] == spread["summary"] == "ValueError: no measurement for K=5"
    assert "_fails_on_every_config" in spread["traceback"]  # the worker's traceback is kept
