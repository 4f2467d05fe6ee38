"""``verify bench`` at tiny sizes: the sections run and return their fields (shapes and types only;
timings are never asserted: performance is measured by
``verify bench``, never by timed unit tests)."""
import json
import math
from pathlib import Path

import pytest
import torch

from verify import bench
from verify.bench_limits import copy_bandwidth, matmul_rate, roofline
from verify.claims.landscape import bench as landscape_bench
from verify.claims.landscape.bench import meanfield_memory, meanfield_routes, meanfield_scaling, mirrored_fraction, pair_cost
from verify.claims.landscape.peers import meanfield_vs_monte_carlo
from verify.claims.softmax import bench as softmax_bench
from verify.claims.softmax.bench import full_model_flops, softmax_vs_plain_torch
from verify.cli import build_parser
from verify.timing import fit_exponent

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
    assert out["bound"] in ("compute", "memory") and out["fraction_of_limit"] > 0


def test_meanfield_routes_fields():
    out = meanfield_routes(CPU, M=16, repeats=1)
    assert out["M"] == 16 and out["fused_s"] > 0 and out["autograd_s"] > 0
    assert out["speedup"] == pytest.approx(out["autograd_s"] / out["fused_s"])
    assert out["cpu_speedup"] == pytest.approx(out["autograd_cpu_s"] / out["fused_cpu_s"])
    assert out["pairs_per_s"] == pytest.approx(16 * 21 / out["fused_s"])
    assert out["flops_per_unit"] == pytest.approx(pair_cost(20, 5, 10, mirrored_fraction(16, 5, 512))[0])


def test_pair_cost_counts():
    assert pair_cost(20, 5, 10) == (6 * 20 + 2 * 5 + 2 * 10 + 16, 272.0)
    assert pair_cost(20, 5, 10, 1.0) == (4 * 20 + 2 * 5 + 2 * 10 + 9.5, 176.0)
    assert mirrored_fraction(1000, 5, 512) == pytest.approx((1000 ** 2 - 512 ** 2 - 488 ** 2) / (1000 * 1005))
    assert mirrored_fraction(300, 5, 512) == 0.0  # one diagonal tile


def test_roofline_names_the_smaller_limit():
    # 100 FLOPs and 50 bytes per unit: 1e9 FLOP/s allows 1e7 units/s, 1e8 B/s allows 2e6 units/s
    out = roofline(1e6, 100.0, 50.0, 1e9, 1e8)
    assert out["bound"] == "memory" and out["memory_limit"] == pytest.approx(2e6)
    assert out["fraction_of_limit"] == pytest.approx(0.5) and out["fraction_of_compute"] == pytest.approx(0.1)
    assert roofline(1e6, 100.0, 50.0, 1e9, 1e12)["bound"] == "compute"


def test_limit_probes_are_positive_rates():
    assert copy_bandwidth(CPU, mib=4) > 0 and matmul_rate(CPU, 1, 8, 4, 8) > 0


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


def test_run_bench_runs_every_papers_sections(monkeypatch, tmp_path):
    """The framework names no paper: each installed paper's SECTIONS run, keyed by paper id."""
    fake = {name: (lambda device: {"x": 1.0}) for name in softmax_bench.SECTIONS}
    monkeypatch.setattr(softmax_bench, "SECTIONS", fake)
    memory = {"M": [16], "peak_mb": [1.0], "m_squared_mb": [0.002], "peak_over_m_squared": 500.0, "method": "m"}
    monkeypatch.setattr(landscape_bench, "SECTIONS", {  # the memory subprocess is tested above
        "meanfield_scaling": lambda device: meanfield_scaling(device, (8, 16), steps=1),
        "meanfield_memory": lambda device: memory})
    monkeypatch.setattr(bench, "quick_catalogue", lambda device: pytest.fail("catalogue must be skipped"))
    results = bench.run_bench(CPU, tmp_path / "bench.json", catalogue=False)
    written = json.loads((tmp_path / "bench.json").read_text())
    assert "quick_catalogue" not in written and written["softmax.full_model_flops"] == {"x": 1.0}
    assert written["landscape.meanfield_scaling"]["M"] == [8, 16]
    assert len(written["landscape.meanfield_memory"]["peak_mb"]) == 1
    table = bench.format_table(results)
    assert "landscape.meanfield_scaling" in table and "M=[8, 16]" in table


def test_bench_parser_no_catalogue_flag():
    parser = build_parser()
    assert parser.parse_args(["bench"]).catalogue is True
    assert parser.parse_args(["bench", "--no-catalogue"]).catalogue is False


def test_full_model_flops_reports_its_roofline():
    out = full_model_flops(CPU, C=1, batch=8, N=4, K=2, steps=2)
    assert out["bytes_per_unit"] == 192.0 and out["bound"] in ("compute", "memory")
    assert out["tokens_per_s"] == pytest.approx(8 * 4 / out["step_s"]) and out["fraction_of_limit"] > 0


def test_meanfield_vs_monte_carlo_fields():
    out = meanfield_vs_monte_carlo(CPU, Ms=(8, 16), d=4, k=2, targets=(0.2, 0.02), accuracy_M=8, chunk=256)
    assert out["measured_error"] <= 0.2 or out["measured_samples"] == 256 * 256
    n1, n2 = out["samples"]["0.2"], out["samples"]["0.02"]
    assert n2 == pytest.approx(100 * n1)  # error ~ n^-1/2
    assert len(out["ratio"]["0.02"]) == 2 and out["crossing_M"]["0.02"] == pytest.approx(16 * out["ratio"]["0.02"][-1])


def test_softmax_vs_plain_torch_fields():
    out = softmax_vs_plain_torch(CPU, C=2, batch=8, N=4, K=3, steps=2)
    assert out["ours_s"] > 0 and out["speedup"] == pytest.approx(out["peer_s"] / out["ours_s"])


def _small_measure(M=6, d=3, k=2):
    from sims.landscape.flow import MeanFieldConfig, make_student, make_teacher, teacher_covariance
    cfg = MeanFieldConfig(d=d, k=k, M=M, activation="erf", steps=1, log_every=1, seed=0)
    a, w = make_student([cfg])
    ta, tw = make_teacher([cfg])
    return a, w, ta, tw, teacher_covariance("erf", ta, tw)


def test_mc_velocity_two_passes_equal_one_graph():
    """The peer's chunked two-pass gradient == autograd through one graph over the same samples."""
    from verify.claims.landscape.peers import _chunk_x, mc_velocity
    a, w, ta, tw, S_oo = (t[0] for t in _small_measure())
    M, chunk = a.shape[0], 64
    aa, ww = a.clone().requires_grad_(), w.clone().requires_grad_()
    x = torch.cat([_chunk_x(0, i, chunk, w.shape[1], w) for i in range(3)])  # (192, d)
    h = torch.erf(x @ ww.T) @ aa / M
    fo = torch.erf(x @ tw.T) @ ta / ta.shape[0]
    S_mm, S_om = h.T @ h / len(x), fo.T @ h / len(x)
    L = 0.5 * torch.trace(S_oo - S_om @ torch.linalg.solve(S_mm, S_om.T))
    ga, gw = torch.autograd.grad(L, (aa, ww))
    va, vw = mc_velocity("erf", a, w, ta, tw, S_oo, 3, chunk)
    torch.testing.assert_close(va, M * ga, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(vw, M * gw, rtol=1e-12, atol=1e-14)


def test_mc_velocity_converges_to_the_exact_field():
    """16 times the samples: the Monte Carlo error should shrink about 4x (fixed seeds: deterministic)."""
    from sims.landscape.flow import particle_field
    from verify.claims.landscape.peers import _field_error, mc_velocity
    a, w, ta, tw, S_oo = _small_measure()
    field = particle_field("erf", a, w, ta, tw, S_oo=S_oo)
    exact = (field.grad_a[0], field.grad_w[0])
    errs = [_field_error(exact, mc_velocity("erf", a[0], w[0], ta[0], tw[0], S_oo[0], n, 1024)) for n in (1, 16)]
    assert errs[1] < errs[0] / 2 and errs[1] < 0.05


def test_plain_softmax_step_is_the_models_gradient():
    """The peer's step == Q - eta * sims' autograd gradient on the same prompts (its own draws)."""
    from sims.softmax.full import Prompts, autograd_gradient
    from verify.claims.softmax.bench import plain_softmax_step
    C, d, K, B, N = 2, 3, 3, 5, 4
    g = torch.Generator().manual_seed(1)
    V = torch.linalg.qr(torch.randn(C, d, K, generator=g, dtype=torch.float64))[0]  # (C, d, K)
    Q = torch.randn(C, d, d, generator=g, dtype=torch.float64)
    p = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]], dtype=torch.float64)
    eta = torch.tensor([0.7, 1.3], dtype=torch.float64)
    new = plain_softmax_step(Q, V, p, eta, B, N, torch.Generator().manual_seed(5))
    g2 = torch.Generator().manual_seed(5)  # replay the peer's draws
    idx = torch.multinomial(p, B * (N + 1), replacement=True, generator=g2).view(C, B, N + 1)
    w = torch.randn(C, B, d, generator=g2, dtype=torch.float64)
    prompts = Prompts(query=idx[..., 0], tokens=idx[..., 1:], values=w @ V, real=torch.ones(C, N, dtype=torch.float64),
                      log_mask=None)
    torch.testing.assert_close(new, Q - eta[:, None, None] * autograd_gradient(Q, V, prompts), rtol=1e-12, atol=1e-13)
