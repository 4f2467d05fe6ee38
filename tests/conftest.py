"""Shared pytest setup: float64 defaults and hypothesis profiles (CI=true selects the small one)."""
import os

import torch
from hypothesis import HealthCheck, settings

torch.set_float32_matmul_precision("highest")
torch.set_num_threads(1)  # many small ops: threads cost more than they gain (see verify.cli.resolve_device)

settings.register_profile(
    "ci", max_examples=8, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
