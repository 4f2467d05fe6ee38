"""Kim & Suzuki — Transformers Learn Nonlinear Features In Context: the paper's claims, its
``verify simulate landscape`` and ``verify evaluate landscape`` commands and its ``verify bench`` sections.

Registered through the entry-point group ``icl_theory_verifier.papers`` (pyproject.toml), exactly as a
third-party paper plugin is; the claim modules are imported when the catalogue is first loaded.
"""
from verify.papers import Paper, Subcommand

__all__ = ["PAPER"]

PAPER = Paper(
    id="landscape", title="Kim & Suzuki — Transformers Learn Nonlinear Features In Context",
    reference="arXiv 2402.01258, ICML 2024",
    claim_modules=(f"{__name__}.critical_points", f"{__name__}.dynamics"),
    simulate=Subcommand("mean-field dynamics on the attention landscape", f"{__name__}.simulate",
                        "Unset options come from --preset, else erf, d 10, k 3, M 64 (M k with --saddle), "
                        "two-timescale; M, k, d also from --student/--teacher files."),
    evaluate=Subcommand("L, L_TF at W*, W*, covariances, first variation, saddle indicator (JSON)",
                        f"{__name__}.evaluate"),
    bench=f"{__name__}.bench")
