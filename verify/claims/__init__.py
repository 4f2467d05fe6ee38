"""The built-in papers, one package each (``softmax``, ``landscape``). Nothing here is imported by the
framework: each paper registers through the entry-point group ``icl_theory_verifier.papers``."""
