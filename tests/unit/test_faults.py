"""Faults: a run interrupted at any point resumes with --resume, loses nothing computed, and ends with the
report of an uninterrupted run; corrupt checkpoints are refused and left as they are.

Real interruptions: SIGKILL and SIGINT (Ctrl-C) of the main process of a two-worker run, SIGKILL of a
Dask worker in the middle of a task, a chunk that kills every worker it runs on.
"""
import dataclasses
import json
import math
import os
import signal

import torch

from verify.checkpoints import CHECKPOINT_DIR
from verify.cli import main
from verify.distributed import run_claims_distributed
from verify.registry import RunContext, get
from verify.runner import plan_run, run_claims


def _claim_id(path):
    """The claim id of a checkpoint file or chunk folder."""
    return path.name.removesuffix(".json").removesuffix(".chunks")


def _checkpoints(out):
    """(finished claims, claims with measured chunks) in ``out`` right now."""
    root = out / CHECKPOINT_DIR
    finished = {_claim_id(p) for p in root.glob("*.json")} if root.exists() else set()
    chunked = {_claim_id(p.parent) for p in root.glob("*.chunks/*.json")} if root.exists() else set()
    return finished, chunked - finished


def _report(out, comparable):
    return comparable(json.loads((out / "report.json").read_text()))


# ---------------------------------------------------------------------------------------------------
# checkpoints without a cluster
# ---------------------------------------------------------------------------------------------------
def test_chunk_rows_read_back_bit_for_bit(tmp_path):
    claim = get("softmax.balanced.two-phases")
    item, = plan_run([claim], RunContext(device=torch.device("cpu")), tmp_path)
    rows = [{"t": 0.1 + 0.2, "missing": math.nan, "far": -math.inf, "n": 3, "ok": True, "curve": [1e-300, 5e-324]}]
    item.checkpoints.save_chunk(2, rows, 0.5)
    partial = item.checkpoints.load_partial()
    back = partial.rows[2]
    assert list(partial.rows) == [2] and partial.seconds == 0.5
    assert math.isnan(back.pop("missing")) and back == {k: v for k, v in rows[0].items() if k != "missing"}
    assert type(back["n"]) is int and type(back["ok"]) is bool


def test_chunks_of_another_run_are_ignored(tmp_path):
    claim = get("softmax.balanced.two-phases")
    item, = plan_run([claim], RunContext(device=torch.device("cpu"), seed=1), tmp_path)
    item.checkpoints.save_chunk(0, [{"x": 1.0}], 0.1)
    other, = plan_run([claim], RunContext(device=torch.device("cpu"), seed=2), tmp_path, resume=True)
    assert other.checkpoints.fingerprint != item.checkpoints.fingerprint and other.partial.rows == {}


def test_resume_mid_claim_measures_only_the_missing_configs(tmp_path):
    """What a distributed run killed after its first chunk leaves: rows of configs 0-1, a temp file of a write
    cut short.  A single-process --resume measures config 2 alone and ends with the uninterrupted result."""
    claim = get("softmax.balanced.two-phases")
    ctx = RunContext(device=torch.device("cpu"))
    whole, = run_claims([claim], ctx, tmp_path / "whole")
    item, = plan_run([claim], ctx, tmp_path / "cut")
    item.checkpoints.save_chunk(0, claim.measure(item.configs[:2], ctx), 1.0)
    (item.checkpoints.chunk_dir / ".2.json.k1ll3d.tmp").write_text('{"start": 2, "ro')
    measured = []
    spy = dataclasses.replace(claim, measure=lambda configs, c: measured.append(configs) or claim.measure(configs, c))
    resumed, = run_claims([spy], ctx, tmp_path / "cut", resume=True)
    assert measured == [item.configs[2:]]
    assert {**resumed, "wall_time_s": 0} == {**whole, "wall_time_s": 0}
    assert not item.checkpoints.chunk_dir.exists()  # folded into the claim's checkpoint


def test_a_corrupt_checkpoint_of_a_real_run_is_refused_and_left_alone(tmp_path, capsys):
    argv = ["run", "softmax.imbalanced.offtarget-rise-threshold", "softmax.invariant.balanced-symmetry",
            "--device", "cpu", "--out", str(tmp_path)]
    assert main(argv) == 0
    cut = tmp_path / CHECKPOINT_DIR / "softmax.invariant.balanced-symmetry.json"
    cut.write_bytes(cut.read_bytes()[:200])  # a disk that filled up, a copy cut short
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"corrupt checkpoint {cut}" in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written


def test_a_run_refused_for_size_leaves_every_report_and_checkpoint_byte_identical(tmp_path, capsys):
    """The memory path in a fresh process under an address-space limit (RLIMIT_AS, which the budget of
    verify/limits.py follows): configs past the budget, and a --resume whose chunk checkpoint is past the JSON
    size limit, are refused before anything is allocated or written; the earlier run's report, checkpoints
    and chunk stay byte for byte, and no temp file is left."""
    import resource
    import subprocess
    import sys

    claim = "softmax.invariant.row-sums-zero"
    assert main(["run", claim, "--device", "cpu", "--out", str(tmp_path)]) == 0
    chunk = tmp_path / CHECKPOINT_DIR / f"{claim}.chunks" / "0.json"  # a measured chunk of another --set, 3 MB
    chunk.parent.mkdir()
    chunk.write_text(json.dumps({"fingerprint": {}, "start": 0, "configs": [{}], "rows": [{"x": [1.0] * 600_000}],
                                 "seconds": 1}))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()

    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    for extra, env in ((["--set", "steps=1000000000000"], {}), (["--set", "K=100000", "--set", "d=100000"], {}),
                       (["--resume", "--set", "steps=200"], {"VERIFY_MEMORY_BUDGET": "2M"})):  # JSON limit 64 KiB
        proc = subprocess.run([sys.executable, "-m", "verify.cli", "run", claim, "--device", "cpu", "--out",
                               str(tmp_path), *extra], capture_output=True, text=True, timeout=300,
                              preexec_fn=limited, env={**os.environ, "CI": "true", "OMP_NUM_THREADS": "1", **env})
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.count("\n") == 1 and "over the" in proc.stderr and "limit" in proc.stderr, proc.stderr
        assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------------------------------------------
# real interruptions
# ---------------------------------------------------------------------------------------------------
def test_killed_main_process_resumes_to_the_same_report(dask_available, verify_cli, cheap_claims, reference,
                                                        comparable, wait_for, tmp_path):
    """SIGKILL of a two-worker run as soon as a first chunk is checkpointed (that claim is usually still
    unfinished, and its chunks must then be reused); its workers must not outlive it."""
    import psutil

    run = verify_cli.start("run", *cheap_claims, "--device", "cpu", "--workers", "2", "--out", tmp_path)
    wait_for(lambda: _checkpoints(tmp_path)[1] or run.poll() is not None, what="a chunk checkpoint")
    workers = psutil.Process(run.pid).children(recursive=True)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    finished, chunked = _checkpoints(tmp_path)
    assert run.returncode == -signal.SIGKILL and finished | chunked, "the run ended before it could be killed"
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"worker processes outlived the killed run: {alive}"

    resumed = verify_cli("run", *cheap_claims, "--device", "cpu", "--out", tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _report(tmp_path, comparable) == reference
    for claim in chunked:
        assert f"{claim} ... (" in resumed.stderr and "configs from chunk checkpoints)" in resumed.stderr
    assert not any(f"{claim} ..." in resumed.stderr for claim in finished)  # taken whole from checkpoints


def test_ctrl_c_stops_cleanly_and_resumes_to_the_same_report(dask_cluster, verify_cli, cheap_claims, reference,
                                                             comparable, wait_for, tmp_path):
    """SIGINT of a two-worker run: exit 130 with one line and no traceback, workers gone; resumed on another
    cluster."""
    import psutil

    run = verify_cli.start("run", *cheap_claims, "--device", "cpu", "--workers", "2", "--out", tmp_path)
    wait_for(lambda: any(_checkpoints(tmp_path)) or run.poll() is not None, what="a checkpoint")
    workers = psutil.Process(run.pid).children(recursive=True)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err[-3000:]
    assert "Traceback" not in err and err.splitlines()[-1].startswith("verify: interrupted;"), err[-3000:]
    assert not psutil.wait_procs(workers, timeout=30)[1]
    finished, chunked = _checkpoints(tmp_path)
    assert finished | chunked

    cluster, _ = dask_cluster
    resumed = verify_cli("run", *cheap_claims, "--device", "cpu", "--scheduler", cluster.scheduler_address,
                         "--out", tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _report(tmp_path, comparable) == reference
    assert f"of {len(reference['claims']) - len(finished)} unfinished claim(s)" in resumed.stderr


def test_a_worker_killed_mid_task_is_replaced_and_the_task_rerun(dask_cluster, cheap_claims, reference, comparable,
                                                                 wait_for, tmp_path, capsys):
    import threading

    cluster, client = dask_cluster
    client.wait_for_workers(2)
    pids = client.run(os.getpid)  # worker address -> pid
    codes = []
    run = threading.Thread(target=lambda: codes.append(main([
        "run", *cheap_claims, "--device", "cpu", "--scheduler", cluster.scheduler_address, "--out", str(tmp_path)])))
    run.start()
    busy = wait_for(lambda: [w for w, keys in client.processing().items() if keys], what="a task on a worker")
    os.kill(pids[busy[0]], signal.SIGKILL)
    killed_while_running = run.is_alive()
    run.join(timeout=300)
    assert killed_while_running and codes == [0]
    assert _report(tmp_path, comparable) == reference
    client.wait_for_workers(2)
    assert pids[busy[0]] not in client.run(os.getpid).values()  # the nanny started a new worker process


def test_a_chunk_that_keeps_killing_workers_is_an_error_that_resume_retries(dask_cluster, tmp_path):
    """After allowed-failures + 1 dead workers Dask gives up on the chunk: the claim is ERROR and not
    checkpointed; --resume runs it again."""
    cluster, client = dask_cluster
    client.wait_for_workers(2)
    deadly = tmp_path / "deadly"
    deadly.touch()
    real = get("softmax.invariant.balanced-symmetry")
    fragile = dataclasses.replace(real, id="test.kills-its-workers", measure=_DieWhileExists(str(deadly), real.measure),
                                  sweep=lambda budget: real.sweep(budget)[:1])  # one chunk: no other task is hit
    ctx = RunContext(device=torch.device("cpu"))
    first, = run_claims_distributed([fragile], ctx, tmp_path / "out", scheduler=cluster.scheduler_address)
    assert first["verdict"] == "ERROR", first["summary"]
    assert first["summary"].startswith("KilledWorker") and "rerun with --resume" in first["summary"]
    assert _checkpoints(tmp_path / "out") == (set(), set())

    deadly.unlink()
    client.wait_for_workers(2)
    again, = run_claims_distributed([fragile], ctx, tmp_path / "out", scheduler=cluster.scheduler_address,
                                    resume=True)
    assert again["verdict"] == "VERIFIED", again["summary"]
    assert _checkpoints(tmp_path / "out") == ({fragile.id}, set())


@dataclasses.dataclass(frozen=True)
class _DieWhileExists:
    """A measure that kills the worker process running it while the file ``path`` exists."""

    path: str
    measure: object

    def __call__(self, configs, ctx):
        if os.path.exists(self.path):
            os.kill(os.getpid(), signal.SIGKILL)
        return self.measure(configs, ctx)
