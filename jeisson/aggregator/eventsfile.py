"""The events file the aggregator watches (``[aggregator] events_file``).

Every ``events_poll_s`` the file's modification time and size are compared
with the last read; when they change, its ``[event:ID]`` sections are read
(``events.events_from_text``) and each is offered to the aggregator, whose
``EventBook`` adds, modifies, cancels or refuses it (unchanged sections are
duplicates and change nothing).  A ``+SECONDS`` time counts from the
event id's anchor: the file's modification time when the aggregator first
read that id, kept in its store, so that neither a restart nor an edit of
the event (a new limit, a higher version) moves it; only an edit of the
time text itself does.  A file that cannot be read or has an error is logged
with the file, section and key, and the events already known stay as they
are (none of the file is taken).  Removing a section does not cancel its
event: say ``cancelled = yes`` with a higher ``version``, so that a
truncated or half-written file can never end an event by accident.
"""

import os
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jeisson.aggregator.events import EventSpec, Outcome, events_from_text
from jeisson.config import ConfigError
from jeisson.timers import GuardedTimerService


class EventTaker(Protocol):
    """What the watcher offers each event to: the aggregator."""

    def offer_spec(self, spec: EventSpec, source: str, read_at: float) -> "Deferred[Outcome]": ...


class EventsFileWatcher(GuardedTimerService):
    log = Logger()

    def __init__(self, aggregator: EventTaker, path: str, period_s: float, clock: IReactorTime):
        super().__init__(period_s, self._check, clock, self.log, "reading the events file {path} failed", path=path)
        self.aggregator = aggregator
        self.path = path
        self.period_s = period_s
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the last read, good or bad
        self._missing_logged = False

    def _check(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if not self._missing_logged:
                self.log.warn("events file {path} does not exist (yet); watching for it", path=self.path)
                self._missing_logged = True
            self._seen = None
            return
        self._missing_logged = False
        signature = (stat.st_mtime_ns, stat.st_size)
        if signature == self._seen:
            return
        self._seen = signature
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
            specs = events_from_text(text, self.path)
        except (OSError, UnicodeDecodeError) as e:
            self.log.error("cannot read the events file {path}: {why}; the events stay as they were",
                           path=self.path, why=e)
            return
        except ConfigError as e:
            self.log.error("{error}; the events stay as they were", error=str(e))
            return
        self.log.info("events file {path} read: {n} event(s)", path=self.path, n=len(specs))
        for spec in specs:
            # A store failure is logged by the aggregator; the event holds.
            self.aggregator.offer_spec(spec, f"events file {self.path}", stat.st_mtime).addErrback(lambda _: None)
