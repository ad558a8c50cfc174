import os

from hypothesis import HealthCheck, settings

# No per-example deadline: CI machines stall now and then, and a slow example
# is not a wrong one.  CI runs a modest, reproducible number of examples.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "default")
