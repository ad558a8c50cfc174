"""A JSON status file, rewritten atomically when the state changes.

Operators and the demo read it; a reader never sees a half-written file,
because each snapshot goes to a temporary file renamed over the old one.
"""

import json
import os
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


def write_atomically(path: str, data: dict) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)


class StatusFileService(Service):
    """Every ``period`` s, if something changed since the last write, writes
    ``snapshot()``: a listener calls ``changed()`` on every moment, and a
    burst of moments costs one write."""

    log = Logger()

    def __init__(self, snapshot: Callable[[], dict[str, Any]], path: str, clock: IReactorTime, period: float = 0.5):
        self.snapshot = snapshot
        self.path = path
        self.clock = clock
        self.period = period
        self._dirty = True
        self._loop: LoopingCall | None = None

    def changed(self) -> None:
        self._dirty = True

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._write)
        self._loop.clock = self.clock
        self._loop.start(self.period, now=True).addErrback(
            lambda failure: self.log.failure("the status file loop stopped", failure))

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._write()

    def _write(self) -> None:
        # Never let one failed write stop the loop for good.
        if not self._dirty:
            return
        try:
            write_atomically(self.path, self.snapshot())
            self._dirty = False
        except Exception:
            self.log.failure("could not write the status file {path}", path=self.path)
