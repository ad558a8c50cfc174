"""Small helpers for the reactor's timers."""

from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger


def cancel(call: IDelayedCall | None) -> None:
    """Cancel ``call`` if it is still pending; None and spent calls are fine."""
    if call is not None and call.active():
        call.cancel()


def guarded(job: Callable[[], None], log: Logger, failure: str, **fields: Any) -> Callable[[], None]:
    """``job``, catching what it raises: logged as ``failure`` (a format
    with ``fields``).  For periodic work: an exception would stop a
    ``LoopingCall`` (and a ``TimerService``) for good."""

    def run() -> None:
        try:
            job()
        except Exception:
            log.failure(failure, **fields)

    return run


class GuardedTimerService(TimerService):
    """A ``TimerService`` on ``clock`` whose job cannot stop it: runs ``job``
    at start, then every ``period`` s; an exception is logged as
    ``failure`` and the job runs again next time.  ``run_now()`` runs it
    once more, guarded the same way."""

    def __init__(self, period: float, job: Callable[[], None], clock: IReactorTime, log: Logger, failure: str,
                 **fields: Any) -> None:
        self.run_now = guarded(job, log, failure, **fields)
        # Twisted's TimerService.__init__ is not annotated.
        super().__init__(period, self.run_now)  # type: ignore[no-untyped-call]
        self.clock = clock
