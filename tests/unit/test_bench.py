"""``verify bench`` at tiny sizes: the sections run and return their fields (shapes and types only;
timings are never asserted, architecture.md "Performance")."""
import json
import math
from pathlib import Path

import pytest
import torch

from verify import bench
from verify.bench_meanfield import fit_exponent, meanfield_memory, meanfield_scaling
from verify.cli import build_parser

CPU = torch.device("cpu")


def test_fit_exponent_recovers_a_power_law():
    Ms = [100, 200, 400, 800]
    assert fit_exponent(Ms, [3e-9 * M ** 2 for M in Ms]) == pytest.approx(2.0)
    assert math.isnan(fit_exponent([100], [1.0]))


def test_meanfield_scaling_fields():
    out = meanfield_scaling(CPU, (8, 16, 32), steps=1, large_from=16)
    assert out["M"] == [8, 16, 32] and len(out["seconds_per_step"]) == 3
    assert all(s > 0 for s in out["seconds_per_step"])
    assert math.isfinite(out["exponent"]) and math.isfinite(out["exponent_large_M"])
    assert out["pairs_per_s"] > 0 and out["dynamics"] == "two-timescale"


def test_meanfield_memory_fields():
    out = meanfield_memory(CPU, (32,))  # one fresh subprocess running one step
    assert out["M"] == [32] and len(out["peak_mb"]) == 1 and math.isfinite(out["peak_mb"][0])
    assert out["m_squared_mb"] == pytest.approx([8 * 32 ** 2 / 2 ** 20])
    assert out["peak_over_m_squared"] == pytest.approx(out["peak_mb"][0] / out["m_squared_mb"][0])
    assert out["method"] in ("VmHWM after /proc/self/clear_refs reset", "getrusage ru_maxrss",
                             "torch.cuda.max_memory_allocated")


def test_quick_catalogue_reads_the_report(monkeypatch):
    class Done:
        returncode, stdout, stderr = 3, "", ""

    def fake_run(cmd, **kwargs):
        out = Path(cmd[cmd.index("--out") + 1])
        assert cmd[cmd.index("--budget") + 1] == "quick" and cmd[cmd.index("--device") + 1] == "cpu"
        (out / "report.json").write_text(json.dumps({"run": {"wall_time_s": 12.5}}))
        return Done()

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    out = bench.quick_catalogue(CPU)
    assert out["wall_time_s"] == 12.5 and out["exit_code"] == 3 and isinstance(out["process_s"], float)


def test_run_bench_writes_the_meanfield_sections(monkeypatch, tmp_path):
    for name in ("softmax_sweep", "full_model_flops", "kernel_vs_monte_carlo"):
        monkeypatch.setattr(bench, name, lambda device: {"x": 1.0})
    monkeypatch.setattr(bench, "meanfield_scaling", lambda device: meanfield_scaling(device, (8, 16), steps=1))
    memory = {"M": [16], "peak_mb": [1.0], "m_squared_mb": [0.002], "peak_over_m_squared": 500.0, "method": "m"}
    monkeypatch.setattr(bench, "meanfield_memory", lambda device: memory)  # the subprocess is tested above
    monkeypatch.setattr(bench, "quick_catalogue", lambda device: pytest.fail("catalogue must be skipped"))
    results = bench.run_bench(CPU, tmp_path / "bench.json", catalogue=False)
    written = json.loads((tmp_path / "bench.json").read_text())
    assert "quick_catalogue" not in written
    assert written["meanfield_scaling"]["M"] == [8, 16] and len(written["meanfield_memory"]["peak_mb"]) == 1
    table = bench.format_table(results)
    assert "meanfield_scaling" in table and "meanfield_memory" in table and "M=[8, 16]" in table


def test_bench_parser_no_catalogue_flag():
    parser = build_parser()
    assert parser.parse_args(["bench"]).catalogue is True
    assert parser.parse_args(["bench", "--no-catalogue"]).catalogue is False
