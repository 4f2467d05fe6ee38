"""The two built-in papers. Each registers through the entry-point group ``icl_theory_verifier.papers``
(pyproject.toml), exactly as a third-party paper plugin does; its claim modules are imported when the
catalogue is first loaded."""
from verify.papers import Paper, Subcommand

__all__ = ["SOFTMAX", "LANDSCAPE"]

SOFTMAX = Paper(
    id="softmax", title="Huang, Cheng & Liang — In-Context Convergence of Transformers",
    reference="arXiv 2310.05249, ICML 2024",
    claim_modules=tuple(f"verify.claims.softmax_{name}" for name in
                        ("invariants", "closed_form", "scaling", "imbalanced", "finite_n")),
    simulate=Subcommand("softmax attention dynamics: reduced (exact expectations) or full model", "verify.simulate"))

LANDSCAPE = Paper(
    id="landscape", title="Kim & Suzuki — Transformers Learn Nonlinear Features In Context",
    reference="arXiv 2402.01258, ICML 2024",
    claim_modules=("verify.claims.landscape_theory", "verify.claims.landscape_dynamics"),
    simulate=Subcommand("mean-field dynamics on the attention landscape", "verify.simulate_landscape",
                        "Unset options come from --preset, else erf, d 10, k 3, M 64 (M k with --saddle), "
                        "two-timescale; M, k, d also from --student/--teacher files."),
    evaluate=Subcommand("L, L_TF at W*, W*, covariances, first variation, saddle indicator (JSON)",
                        "verify.evaluate"))
