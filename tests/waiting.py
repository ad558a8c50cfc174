"""Waiting for what a user would see, in tests that run real processes or a
real reactor: poll a condition until it holds, or fail saying what."""

import time

from twisted.internet import defer, reactor, task


def wait_for(predicate, timeout: float, what: str, step: float = 0.2):
    """Block (outside any reactor) until ``predicate()`` is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def _eventually(check, timeout: float, step: float) -> None:
    waited = 0.0
    while not check():
        if waited >= timeout:
            raise AssertionError("condition not met in time")
        await task.deferLater(reactor, step, lambda: None)
        waited += step


def eventually(check, timeout: float = 10.0, step: float = 0.05) -> defer.Deferred:
    """A Deferred that fires once ``check()`` is true, the reactor running."""
    return defer.Deferred.fromCoroutine(_eventually(check, timeout, step))


def scratch_directory(test_case) -> str:
    """A new directory under the system's temporary one, removed after the
    trial test (trial's own mktemp() is relative to the working directory,
    which under pytest is the checkout)."""
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="jeisson-test-")
    test_case.addCleanup(shutil.rmtree, path, True)
    return path
