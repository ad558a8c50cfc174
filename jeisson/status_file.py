"""A JSON status file, rewritten atomically when the state changes.

Operators and the demo read it; a reader never sees a half-written file,
because each snapshot goes to a temporary file renamed over the old one.

The snapshot is taken on the reactor's thread (it reads the live state);
with an ``offload`` (``threads.deferToThread`` in the daemon) it is encoded
and written in a thread, piece by piece (``pieces``: a large dict an entry
a line), so that the reactor's thread gets the interpreter between pieces:
at 10,000 homes the file is 5 MB, and encoding it whole kept the reactor
from everything else for half a second.
"""

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jeisson.timers import GuardedTimerService

# A dict with more entries than this (the homes, a round's table of homes)
# is written an entry a line, each its own short encoding.
SPLIT_ABOVE = 64

Offload = Callable[..., "Deferred[Any]"]


def _large(value: Any) -> bool:
    return isinstance(value, dict) and len(value) > SPLIT_ABOVE


def pieces(data: Any, depth: int = 0) -> Iterator[str]:
    """``data`` as JSON text (keys sorted), in short pieces: the top dict,
    and any dict that is large or holds a large one, an entry a line; the
    rest in one C-speed ``json.dumps`` a piece."""
    split = isinstance(data, dict) and (depth == 0 or _large(data) or any(_large(v) for v in data.values()))
    if not split:
        yield json.dumps(data, sort_keys=True)
        return
    indent = "\n" + " " * (depth + 1)
    yield "{"
    for i, key in enumerate(sorted(data)):
        yield ("," if i else "") + indent + json.dumps(key) + ": "
        yield from pieces(data[key], depth + 1)
    yield "\n" + " " * depth + "}"


def write_atomically(path: str, data: dict) -> None:
    """``data`` as JSON into ``path``, through a temporary file beside it
    renamed over it when whole."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        for piece in pieces(data):
            f.write(piece)
        f.write("\n")
    os.replace(temporary, path)


class StatusFileService(GuardedTimerService):
    """Every ``period`` s, if something changed since the last write, writes
    ``snapshot()``: a listener calls ``changed()`` on every moment, and a
    burst of moments costs one write.  With ``offload`` the encoding and
    writing run there (one at a time; a change meanwhile is written by the
    next turn after it); without, at once on the caller's thread."""

    log = Logger()

    def __init__(self, snapshot: Callable[[], dict[str, Any]], path: str, clock: IReactorTime, period: float = 0.5,
                 offload: Offload | None = None):
        super().__init__(period, self._write, clock, self.log, "could not write the status file {path}", path=path)
        self.snapshot = snapshot
        self.path = path
        self.offload = offload
        self._dirty = True
        self._writing: Deferred[Any] | None = None

    def changed(self) -> None:
        self._dirty = True

    def stopService(self) -> Any:
        stopped = super().stopService()
        # The last state, as the program stops, once a write in flight is done
        # (both would use the same temporary file).
        writing = self._writing if self._writing is not None else succeed(None)
        return writing.addCallback(lambda _: self._write_now()).addCallback(lambda _: stopped)

    def _write_now(self) -> None:
        self.offload, offload = None, self.offload
        try:
            self.run_now()
        finally:
            self.offload = offload

    def _write(self) -> None:
        if not self._dirty or self._writing is not None:
            return
        snapshot = self.snapshot()
        if self.offload is None:
            write_atomically(self.path, snapshot)
            self._dirty = False
            return
        self._dirty = False  # a change from now on is in the next write
        self._writing = writing = self.offload(write_atomically, self.path, snapshot)
        writing.addErrback(self._failed)
        writing.addBoth(self._written)

    def _failed(self, failure: Any) -> None:
        self._dirty = True  # written again at the next turn
        self.log.failure("could not write the status file {path}", failure, path=self.path)

    def _written(self, _: Any) -> None:
        self._writing = None
