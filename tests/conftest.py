"""Shared pytest setup: float64 defaults and hypothesis profiles (CI=true selects the small one,
HYPOTHESIS_PROFILE=nightly the long one)."""
import os

import torch
from hypothesis import HealthCheck, settings

# One memory budget on every machine (the default is half of the machine's memory): a "too large" input
# of a test is refused the same way on a 16 GB laptop and a 1 TB server, and never runs for real.
os.environ["VERIFY_MEMORY_BUDGET"] = "4G"

torch.set_float32_matmul_precision("highest")
torch.set_num_threads(1)  # many small ops: threads cost more than they gain (see sims.devices.resolve_device)

settings.register_profile(
    "ci", max_examples=8, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev", max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(  # HYPOTHESIS_PROFILE=nightly: a long run of every property and of the fuzz tier
    "nightly", max_examples=400, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
