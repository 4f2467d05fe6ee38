"""Scale-out with Dask: ``verify run --workers N`` or ``--scheduler ADDRESS``.

Claims and sweep chunks are tasks.  The configs of each claim that are not measured yet are cut into
contiguous chunks (at most one per worker slot), ``measure`` runs on each chunk as a Dask task, the rows
are put back in sweep order, and the claim's ``judge`` runs once, here in the client, so that figures and
checkpoints are written where the report is.  The report equals a single-process run's in verdicts and
numbers: a config's row does not depend on which configs share its batch (``tests/claims/test_chunking.py``
checks this for the whole quick catalogue), and the judge sees the same rows in the same order.

Every measured chunk is checkpointed as it arrives, every finished claim too, so a run stopped at any
point resumes with ``--resume`` (see :mod:`verify.checkpoints`).  A worker that dies is replaced by Dask
and its task rerun, up to ``distributed.scheduler.allowed-failures`` times; a chunk that keeps killing
workers makes its claim ERROR without a checkpoint, so that ``--resume`` tries that claim again.

Dask is optional (``pip install ".[distributed]"``); it is imported only when a run asks for it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from theory.errors import InputError
from verify.registry import Claim, RunContext
from verify.runner import (Planned, claim_result, failure, judge_rows, measure_rows, plan_run, report_progress,
                           resume_note)

__all__ = ["INSTALL_HINT", "CONNECT_TIMEOUT_S", "LOCAL_WORKER_CONFIG", "check_options", "chunks",
           "run_claims_distributed"]

INSTALL_HINT = 'pip install ".[distributed]"'
CONNECT_TIMEOUT_S = 10  # seconds to reach a --scheduler before giving up
# Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also pins glibc's mmap threshold: every
# tensor over 128 KiB is then mmap-ed and zero-filled afresh.  An allocation-heavy measure ran 1.9x slower
# so (softmax.finite-N.matches-infinite with the sims of commit 832ae7e).  Local workers get glibc's
# default (a None value drops the variable).  Their statistical profiler (a thread sampling the task's stack
# every 10 ms, for a dashboard these clusters do not start) is off: measured with a task sleeping 10 s, each
# worker's own CPU falls from 4.8% to 2.8% of a core.
LOCAL_WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                       "distributed.worker.profile.enabled": False}


def _dask():
    """The ``distributed`` package, or InputError telling how to install it."""
    try:
        import distributed
    except ImportError:
        raise InputError(f"--workers/--scheduler need Dask, which is not installed; install it with: "
                         f"{INSTALL_HINT}") from None
    return distributed


def _usable_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_options(workers: int | None, scheduler: str | None) -> None:
    """Refuse a bad ``--workers`` count, or a missing Dask, before any work (InputError).

    ``--workers`` is at most the cores available: each worker is a process with one thread, and more
    processes than cores only add memory; beyond one machine, start a Dask cluster and pass ``--scheduler``.
    """
    cores = _usable_cores()
    if workers is not None and not 1 <= workers <= cores:
        raise InputError(f"--workers must be between 1 and {cores} (the CPU cores available here; for more, "
                         f"start a Dask cluster and pass --scheduler), got {workers}")
    _dask()


def chunks(indices: list[int], size: int) -> list[list[int]]:
    """Cut ascending sweep indices into runs of consecutive indices, each at most ``size`` long."""
    out: list[list[int]] = []
    for i in indices:
        if out and i == out[-1][-1] + 1 and len(out[-1]) < size:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _silent(message: str) -> None:
    """Progress sink of worker-side contexts (progress is reported by the client)."""


def _measure_task(measure: Callable, configs: list[dict], ctx: RunContext, threads: int) -> tuple[list[dict], float]:
    """Worker side: measure one chunk under the client's torch settings; returns (rows, seconds)."""
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision("highest")
    start = time.perf_counter()
    rows = measure_rows(measure, configs, ctx)
    return rows, time.perf_counter() - start


@contextlib.contextmanager
def _client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    """A Dask client of the cluster at ``scheduler``, or of a LocalCluster of ``workers`` processes."""
    distributed = _dask()
    import dask

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            with dask.config.set(LOCAL_WORKER_CONFIG):  # read when the workers' nannies are made
                scheduler = stack.enter_context(distributed.LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, silence_logs=logging.CRITICAL))
        else:
            try:  # before Client(): a client that fails on a malformed address stalls and prints at exit
                distributed.comm.get_address_host_port(scheduler)
            except ValueError as exc:
                raise InputError(f"--scheduler {scheduler!r} is not a Dask scheduler address "
                                 f"(tcp://host:port): {exc}") from None
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}") from None
        yield stack.enter_context(client)


class _Run:
    """The bookkeeping of one distributed run: chunks out, rows back, claims judged as they complete."""

    def __init__(self, planned: list[Planned], ctx: RunContext, overrides: Mapping[str, Any] | None):
        self.planned, self.ctx, self.overrides = planned, ctx, overrides
        self.outstanding: dict[int, int] = {}  # planned index -> chunks not back yet
        self.failed: dict[int, tuple[int, BaseException]] = {}  # planned index -> first failed chunk, its error
        self.done = 0

    def submit(self, client, slots: int) -> dict:
        """Submit every missing chunk; returns future -> (planned index, sweep indices of the chunk)."""
        worker_ctx = dataclasses.replace(self.ctx, figure_dir=None, progress=_silent)
        threads = torch.get_num_threads()
        futures = {}
        for index, item in enumerate(self.planned):
            if item.result is not None:  # finished in an earlier run
                self._report(item.result)
                continue
            if item.partial.rows:
                self.ctx.progress(f"{item.claim.id} ...{resume_note(item)}")
            missing = [i for i in range(len(item.configs)) if i not in item.partial.rows]
            todo = chunks(missing, math.ceil(len(item.configs) / slots))
            for chunk in todo:
                key = f"{item.claim.id}[{chunk[0]}:{chunk[-1] + 1}]-{uuid.uuid4().hex[:12]}"
                future = client.submit(_measure_task, item.claim.measure, [item.configs[i] for i in chunk],
                                       worker_ctx, threads, key=key, pure=False)
                futures[future] = (index, chunk)
            self.outstanding[index] = len(todo)
            if not todo:
                self._finish(index)
        return futures

    def collect(self, future, index: int, chunk: list[int]) -> None:
        """Take one finished chunk: checkpoint its rows (or note its error); judge its claim when complete."""
        item = self.planned[index]
        try:
            rows, seconds = future.result()
        except InputError:
            raise
        except Exception as exc:  # the measurement failed, or kept killing workers
            if index not in self.failed or chunk[0] < self.failed[index][0]:
                self.failed[index] = (chunk[0], exc)  # the first chunk's error, whatever the arrival order
        else:
            item.checkpoints.save_chunk(chunk[0], rows, seconds)
            item.partial.rows.update(zip(chunk, rows))
            item.partial.seconds += seconds
        self.outstanding[index] -= 1
        if self.outstanding[index] == 0:
            self._finish(index)

    def _finish(self, index: int) -> None:
        item = self.planned[index]
        start = time.perf_counter()
        _, exc = self.failed.get(index, (None, None))
        if exc is None:
            rows = [item.partial.rows[i] for i in range(len(item.configs))]
            outcome, tb = judge_rows(item.claim, item.configs, rows, self.ctx)
        else:
            outcome, tb = failure(exc)
        item.result = claim_result(item.claim, self.ctx, self.overrides, item.configs, outcome, tb,
                                   item.partial.seconds + time.perf_counter() - start)
        if isinstance(exc, _dask().KilledWorker):  # workers died, not the check: let --resume retry
            item.result["summary"] += " (not checkpointed: rerun with --resume to retry this claim)"
        else:
            item.checkpoints.save_result(item.result)
        self._report(item.result)

    def _report(self, result: dict) -> None:
        self.done += 1
        report_progress(self.ctx, self.done, len(self.planned), result)


def run_claims_distributed(claims: list[Claim], ctx: RunContext, out_dir: Path, *,
                           overrides: Mapping[str, Any] | None = None, resume: bool = False,
                           workers: int | None = None, scheduler: str | None = None) -> list[dict]:
    """:func:`verify.runner.run_claims` with the measurements spread over a Dask cluster.

    Parameters
    ----------
    claims, ctx, out_dir, overrides, resume : as for :func:`verify.runner.run_claims`.
    workers : start a LocalCluster of this many single-threaded worker processes on loopback.
    scheduler : address of a running Dask scheduler (``tcp://host:port``); its workers must have this
        package installed and the device ``ctx`` names.

    Returns
    -------
    The report rows in the order of ``claims``, equal to a single-process run's but for wall times.
    """
    distributed = _dask()
    planned = plan_run(claims, ctx, out_dir, overrides, resume)  # bad configs/checkpoints: before any cluster
    run = _Run(planned, ctx, overrides)
    with _client(workers, scheduler) as client:
        slots = workers or sum(w["nthreads"] for w in client.scheduler_info()["workers"].values()) or 1
        unfinished = sum(item.result is None for item in planned)
        futures = run.submit(client, slots)
        ctx.progress(f"{len(futures)} chunk task(s) of {unfinished} unfinished claim(s) on {slots} Dask worker "
                     f"slot(s) at {client.scheduler_info()['address']}")
        for future in distributed.as_completed(list(futures), loop=client.loop):
            run.collect(future, *futures.pop(future))
    return [item.result for item in planned]
