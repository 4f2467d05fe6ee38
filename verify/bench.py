"""``verify bench``: performance figures measured side by side in one run, on the device it runs on.

The framework times the quick catalogue (a ``verify run --budget quick`` subprocess); every installed
paper adds its own sections through ``Paper.bench``, a module whose ``SECTIONS`` maps a name to a
function of the device returning a dict of figures (for the built-in papers: batched sweeps, FLOP
rates beside the machine's limits of :mod:`verify.bench_limits`, kernel routes, scaling in M, peak
memory and plain-torch peers).  Every figure is a ratio or a rate measured in this run; absolute times
hold only for the named device.
"""
from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from verify import atomic
from verify.papers import discover
from verify.report import device_name

__all__ = ["run_bench", "paper_sections", "quick_catalogue", "format_table"]


def quick_catalogue(device: torch.device, timeout: float = 1800.0) -> dict:
    """Wall time of ``verify run --budget quick --device <device>`` (the whole catalogue, seed 0).

    Runs in a fresh subprocess (same interpreter and environment, so the same thread count) into a
    temporary folder; ``wall_time_s`` is the report's own ``run.wall_time_s``, ``process_s`` the
    subprocess's wall time including interpreter start and imports, ``exit_code`` the run's exit
    code (0 all verified, 1 refuted/error, 3 only inconclusive).
    """
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["run", "--budget", "quick", "--device", device.type, "--seed", "0", "--out", tmp]
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "verify.cli", *argv], capture_output=True, text=True,
                              timeout=timeout, check=False)
        process_s = time.perf_counter() - start
        report = Path(tmp) / "report.json"
        if not report.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            return {"wall_time_s": None, "exit_code": proc.returncode, "error": " ".join(tail)}
        run = json.loads(report.read_text())["run"]
    return {"budget": "quick", "wall_time_s": run["wall_time_s"], "process_s": process_s,
            "exit_code": proc.returncode}


def paper_sections() -> dict[str, Callable[[torch.device], dict]]:
    """Every installed paper's bench sections, keyed ``<paper id>.<section>`` (papers in id order)."""
    papers, _ = discover()
    return {f"{paper.id}.{name}": fn for paper in sorted(papers, key=lambda p: p.id) if paper.bench
            for name, fn in importlib.import_module(paper.bench).SECTIONS.items()}


def run_bench(device: torch.device, out: Path, extra: dict[str, Callable[[torch.device], dict]] | None = None,
              catalogue: bool = True) -> dict:
    """Run every paper's bench sections (and ``extra``) on ``device``; write the JSON atomically to ``out``.

    ``catalogue=False`` skips the quick catalogue's wall time (``verify bench --no-catalogue``).
    """
    torch.set_float32_matmul_precision("highest")
    sections = {**paper_sections(), **(extra or {})}
    if catalogue:
        sections["quick_catalogue"] = quick_catalogue
    results = {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    for name, bench in sections.items():
        results[name] = bench(device)
    atomic.write_json(out, _plain(results))
    return results


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def format_table(results: dict) -> str:
    """The printed table: one line per figure."""
    lines = [f"device: {results['device']} (torch {results['torch']}, {results['threads']} threads)"]
    for section, values in results.items():
        if isinstance(values, dict):
            body = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
            lines.append(f"{section:<24} {body}")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)

