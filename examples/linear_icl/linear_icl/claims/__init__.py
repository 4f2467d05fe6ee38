"""The claims of the linear-ICL paper, one module per topic: the population flow (flow), the full layer
trained on sampled prompts (trained), prediction error (error), distribution shift (shift). Each module
registers its claims when imported (the paper's ``claim_modules``)."""
