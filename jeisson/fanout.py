"""Fanning a moment out to listeners: the one loop behind every listener seam.

The aggregator (``jeisson.aggregator.listeners``) and the home
(``jeisson.home.listeners``) each declare their moments; their announcers
call ``Fanout.each`` with the moment, which reaches every listener in the
order they were added, then tells it ``changed()``.  A listener that raises
is logged and skipped: the others, and the program, go on.
"""

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from twisted.logger import Logger


class Listener(Protocol):
    def changed(self) -> None: ...


L = TypeVar("L", bound=Listener)


class Fanout(Generic[L]):
    log = Logger()

    def __init__(self, what: str) -> None:
        """``what`` names the listeners in the log (``"aggregator listener"``)."""
        self.what = what
        self.listeners: list[L] = []

    def add(self, listener: L) -> None:
        self.listeners.append(listener)

    def remove(self, listener: L) -> None:
        self.listeners.remove(listener)

    def each(self, moment: Callable[[L], None]) -> None:
        for listener in tuple(self.listeners):  # one may add or remove listeners
            try:
                moment(listener)
                listener.changed()
            except Exception:
                self.log.failure("{what} {listener!r} failed", what=self.what, listener=listener)
