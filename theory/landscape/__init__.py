"""Kim & Suzuki, "Transformers Learn Nonlinear Features In Context": the mean-field attention landscape.

``objective`` (L, L_TF, W*, first variation, critical-point conditions), ``gaussian`` (Gaussian kernels of
the activations and their gradients), ``symbolic`` (the same quantities in sympy).
"""
