"""Huang, Cheng & Liang, "In-Context Convergence of Transformers": closed forms of the softmax attention
layer's expected dynamics (``closed_form``)."""
