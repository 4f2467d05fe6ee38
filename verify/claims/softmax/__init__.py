"""Huang, Cheng & Liang — In-Context Convergence of Transformers: the paper's claims, its
``verify simulate softmax`` command and its ``verify bench`` sections.

Registered through the entry-point group ``icl_theory_verifier.papers`` (pyproject.toml), exactly as a
third-party paper plugin is; the claim modules are imported when the catalogue is first loaded.
"""
from verify.papers import Paper, Subcommand

__all__ = ["PAPER"]

PAPER = Paper(
    id="softmax", title="Huang, Cheng & Liang — In-Context Convergence of Transformers",
    reference="arXiv 2310.05249, ICML 2024",
    claim_modules=tuple(f"{__name__}.{name}" for name in
                        ("invariants", "closed_form", "scaling", "imbalanced", "finite_n")),
    simulate=Subcommand("softmax attention dynamics: reduced (exact expectations) or full model", f"{__name__}.simulate"),
    bench=f"{__name__}.bench")
