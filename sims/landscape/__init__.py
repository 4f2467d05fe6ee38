"""Mean-field (Wasserstein) gradient flow of the attention landscape: configuration, particle
initialisation, kernels, the flow and its W optimisers, finite-N prompts and noise."""
