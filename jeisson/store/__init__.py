"""What jeisson remembers: one small interface, and its SQLite backend.

The aggregator and every home keep a *store*: embedded, on by default
(``[store]`` in their ini file), never blocking the reactor.  It holds

*state*
    The last known value of each thing a restart must resume, as JSON under
    ``(scope, key)``: events (with absolute times), the homes' last known
    power, a home's budget, its owner's settings, its loads' clocks, the
    round numbering.  ``state(scope)`` reads a scope back at start-up.
*the journal*
    What happened and why, append-only: rounds, budgets, commitments,
    relay switches with their cause, events offered, registrations.  It is
    the audit trail ("why was my heater off at 18:05?").
*measurements*
    Power over time per subject (a home, a board, a load), raw for
    ``raw_hours``, then downsampled to ``downsample_s`` averages, dropped
    after ``retention_days``; exported as CSV.

Writes are queued and committed in batches by one writer (a thread of its
own in service; at once in tests), at most every ``batch_s``.  What is about
to be acknowledged to someone (a ``WELCOME``, a ``COMMIT``, a manhole
"added") waits for ``durable()``: it fires once everything queued before it
is committed, and asks for the commit now rather than at the end of the
batch.

``Store`` is the interface the rest of jeisson uses; ``SqliteStore``
(``jeisson.store.sqlite``) implements it.  A PostgreSQL backend would
implement the same methods.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred

# Journal kinds used across jeisson (a backend stores any kind as text).
EVENT = "event"  # an event offered: subject the event id
REGISTERED = "registered"  # a home registered: subject the home id
ROUND = "round"  # a round's summary: subject the event id
BUDGET = "budget"  # a budget sent (aggregator) or applied (home)
COMMIT = "commit"  # a home's commitment
RELEASE = "release"  # a home released at an event's end
SWITCH = "switch"  # a relay switched, with its cause: subject the load id
OWNER = "owner"  # an owner's setting changed
BOARD = "board"  # a board joined or left, or reported uncommanded states
SAFETY = "safety"  # a safety rule decided something (max_off_s, failsafe)


class StoreError(Exception):
    """The store cannot be opened or used; the message names the file."""


@attrs.frozen
class JournalEntry:
    id: int
    at: float
    kind: str
    subject: str
    round: int | None
    detail: Mapping[str, Any]


@attrs.frozen
class Sample:
    subject: str
    at: float
    watts: float
    span_s: float  # 0 for a raw reading; else the width of the average


class Store(Protocol):
    """What jeisson asks of a store.  Times are UTC epoch seconds."""

    path: str

    # -- at start-up, before the reactor runs (may block)

    def open(self) -> None:
        """Create or migrate the schema; raises ``StoreError``."""

    def state(self, scope: str) -> dict[str, Any]:
        """Every ``key -> value`` of ``scope`` as last written."""

    # -- while running: queued, never blocking the caller

    def put(self, scope: str, key: str, value: Any) -> None:
        """Set ``(scope, key)`` to ``value`` (JSON-able)."""

    def delete(self, scope: str, key: str) -> None: ...

    def record(self, kind: str, subject: str, at: float, detail: Mapping[str, Any] | None = None,
               round: int | None = None) -> None:
        """Append to the journal."""

    def measure(self, subject: str, at: float, watts: float) -> None:
        """Append a raw reading."""

    def durable(self) -> "Deferred[None]":
        """Fires once everything queued so far is committed (or errbacks
        with ``StoreError``: then nothing may be acknowledged)."""

    def before_commit(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` on the calling thread right before each commit
        takes what is queued, and at each ``durable()``: a writer that
        coalesces its writes (a home's record changed three times in a
        round, written once) queues them there, and they are in the commit
        as if queued at once."""

    def soon(self) -> None:
        """A commit within the batch time even if nothing is queued yet: a
        ``before_commit`` hook has writes waiting."""

    # -- queries, off the reactor thread

    def journal(self, subjects: Iterable[str] | None = None, kinds: Iterable[str] | None = None,
                since: float | None = None, until: float | None = None, limit: int | None = None,
                newest_first: bool = False) -> "Deferred[list[JournalEntry]]": ...

    def measurements(self, subjects: Iterable[str] | None = None, since: float | None = None,
                     until: float | None = None, limit: int | None = None) -> "Deferred[list[Sample]]":
        """Samples with ``since <= at <= until``, by subject then time; at
        most ``limit`` of them (the first ones) when given."""

    def export_csv(self, path: str, subjects: Iterable[str] | None = None, since: float | None = None,
                   until: float | None = None) -> "Deferred[int]":
        """Write measurements to ``path`` as CSV; fires with the row count."""

    def prune(self, now: float) -> "Deferred[None]":
        """Downsample and drop old measurements and journal entries."""

    def close(self) -> "Deferred[None]":
        """Commit what is queued and close."""
