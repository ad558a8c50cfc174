import os

import pytest
from hypothesis import HealthCheck, settings
from twisted.logger import capturedLogs, formatEvent

# No per-example deadline: CI machines stall now and then, and a slow example
# is not a wrong one.  CI runs a modest, reproducible number of examples.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def logs():
    """Every test's log; a failure logged anywhere (an exception in a Deferred chain) fails the test.

    Modules that want it for every test say ``pytestmark = pytest.mark.usefixtures("logs")``.
    """
    with capturedLogs() as events:
        yield events
    failures = [formatEvent(e) for e in events if "log_failure" in e]
    assert not failures, failures
