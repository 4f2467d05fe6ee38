"""The claims catalogue: importing this package registers every paper's claims, in catalogue order."""
from verify.claims import (softmax_invariants, softmax_closed_form, softmax_scaling,  # noqa: F401
                           softmax_imbalanced, softmax_finite_n, landscape_theory,
                           landscape_dynamics)
