"""Small helpers for the reactor's delayed calls."""

from twisted.internet.interfaces import IDelayedCall


def cancel(call: IDelayedCall | None) -> None:
    """Cancel ``call`` if it is still pending; None and spent calls are fine.

    Returns None, so ``self._timer = cancel(self._timer)`` also forgets it.
    """
    if call is not None and call.active():
        call.cancel()
    return None
