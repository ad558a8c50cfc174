"""Fanning a moment out to listeners: the one loop behind every listener seam.

The aggregator (``jeisson.aggregator.listeners``) and the home
(``jeisson.home.listeners``) each declare their moments as the no-op
methods of a base class.  Their announcers hand each moment to
``Fanout.each`` with the calls ``Fanout.calls(name)`` gives: the bound
methods of the listeners that override that moment, in the order they were
added (worked out once, when a listener is added or removed: a round at
1,000 homes announces thousands of moments).  Then every listener that
overrides ``changed()`` is told so.  A listener that raises is logged and
skipped: the others, and the program, go on.
"""

import inspect
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from twisted.logger import Logger


class Listener(Protocol):
    def changed(self) -> None: ...


L = TypeVar("L", bound=Listener)

Calls = tuple[Callable[..., None], ...]


class Fanout(Generic[L]):
    log = Logger()

    def __init__(self, what: str, base: type[L]) -> None:
        """``what`` names the listeners in the log (``"aggregator listener"``);
        ``base`` declares the moments (its public methods)."""
        self.what = what
        self.base = base
        self.moments = tuple(name for name, _ in inspect.getmembers(base, inspect.isfunction)
                             if not name.startswith("_") and name != "changed")
        self.listeners: list[L] = []
        self._calls: dict[str, Calls] = {}
        self._changed: Calls = ()
        self._rebuild()

    def add(self, listener: L) -> None:
        self.listeners.append(listener)
        self._rebuild()

    def remove(self, listener: L) -> None:
        self.listeners.remove(listener)
        self._rebuild()

    def calls(self, moment: str) -> Calls:
        """The listeners' methods for ``moment``: only those that override it."""
        return self._calls[moment]

    def each(self, calls: Calls, *args: Any) -> None:
        for call in calls:
            try:
                call(*args)
            except Exception:
                self.log.failure("{what} {listener!r} failed", what=self.what, listener=call)
        for changed in self._changed:
            try:
                changed()
            except Exception:
                self.log.failure("{what} {listener!r} failed", what=self.what, listener=changed)

    def _rebuild(self) -> None:
        def overriding(name: str) -> Calls:
            declared = getattr(self.base, name)
            return tuple(getattr(listener, name) for listener in self.listeners
                         if getattr(type(listener), name) is not declared)

        self._calls = {name: overriding(name) for name in self.moments}
        self._changed = overriding("changed")
