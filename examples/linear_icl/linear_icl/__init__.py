"""Paper plugin: Zhang, Frei & Bartlett, "Trained Transformers Learn Linear Models In-Context".

Theory (:mod:`linear_icl.theory`), simulations (:mod:`linear_icl.sims`) and claims
(:mod:`linear_icl.claims`); derivations in README.md. Registered through the entry-point group
``icl_theory_verifier.papers`` (pyproject.toml).
"""
from verify.plugin import Paper

__all__ = ["PAPER"]

PAPER = Paper(
    id="linear", title="Zhang, Frei & Bartlett — Trained Transformers Learn Linear Models In-Context",
    reference="arXiv 2306.09927, JMLR 2024",
    claim_modules=tuple(f"linear_icl.claims.{name}" for name in ("flow", "trained", "error", "shift")))
