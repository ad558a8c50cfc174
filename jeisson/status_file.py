"""A JSON status file, rewritten atomically when the state changes.

Operators and the demo read it; a reader never sees a half-written file,
because each snapshot goes to a temporary file renamed over the old one.
"""

import json
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jeisson.timers import GuardedTimerService


def write_atomically(path: str, data: dict) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)


class StatusFileService(GuardedTimerService):
    """Every ``period`` s, if something changed since the last write, writes
    ``snapshot()``: a listener calls ``changed()`` on every moment, and a
    burst of moments costs one write."""

    log = Logger()

    def __init__(self, snapshot: Callable[[], dict[str, Any]], path: str, clock: IReactorTime, period: float = 0.5):
        super().__init__(period, self._write, clock, self.log, "could not write the status file {path}", path=path)
        self.snapshot = snapshot
        self.path = path
        self._dirty = True

    def changed(self) -> None:
        self._dirty = True

    def stopService(self) -> Any:
        stopped = super().stopService()
        self.run_now()  # the last state, as the program stops
        return stopped

    def _write(self) -> None:
        if not self._dirty:
            return
        write_atomically(self.path, self.snapshot())
        self._dirty = False
