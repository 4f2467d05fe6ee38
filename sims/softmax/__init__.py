"""Gradient descent of one softmax attention layer on structured prompts: the reduced (exact
expectation) dynamics, the full token-level model, count-vector sampling and phase events."""
