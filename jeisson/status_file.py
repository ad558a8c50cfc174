"""A JSON status file, rewritten atomically when the state changes.

Operators and the demo read it; a reader never sees a half-written file,
because each snapshot goes to a temporary file renamed over the old one.
"""

import json
import os

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


def write_atomically(path: str, data: dict) -> None:
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)


class StatusFileService(Service):
    """Every ``period`` s, if ``source.changed``, writes ``source.snapshot()``."""

    log = Logger()

    def __init__(self, source, path: str, clock, period: float = 0.5):
        self.source = source
        self.path = path
        self.clock = clock
        self.period = period
        self._loop = None

    def startService(self):
        super().startService()
        self._loop = LoopingCall(self._write)
        self._loop.clock = self.clock
        self._loop.start(self.period, now=True)

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._write()

    def _write(self) -> None:
        # Never let one failed write stop the loop for good.
        if not self.source.changed:
            return
        try:
            write_atomically(self.path, self.source.snapshot())
            self.source.changed = False
        except Exception:
            self.log.failure("could not write the status file {path}", path=self.path)
