"""The store in one SQLite file: WAL, ``synchronous=FULL``, one writer, batched.

Writes (``put``, ``delete``, ``record``, ``measure``) only append to the
*pending batch* in memory and return.  A timer on ``clock`` commits the
batch at most ``batch_s`` after its first write, in one transaction;
``durable()`` commits it now and fires once it is on disk.  Repeated
``put``\\ s of one ``(scope, key)`` within a batch are written once, with
the last value.  At most one commit is in flight: writes made meanwhile go
to the next batch.

With ``threaded=True`` (in service) commits and ``prune`` run on a writer
thread of their own (``ThreadPool(1, 1)``) and queries on a reader thread
with its own connection, which WAL lets read while the writer writes; the
reactor thread never waits for the disk.  With ``threaded=False`` (tests,
baselines in ``bench/``) the same jobs run at once on the calling thread
and their Deferreds are already fired; the batch timer still runs on
``clock``.  The pools start at the first job (after ``twistd`` forked into
the background) and stop in ``close()``.

A commit that fails (disk full, I/O error, the file locked by someone else
beyond ``busy_timeout_s``) is logged with the path, every ``durable()``
waiting for it errbacks with ``StoreError`` (nothing may be acknowledged),
and its rows go back in front of the pending batch, to be retried at the
next batch: nothing is dropped, and the process goes on.  The first
failure of a run of failures is logged as an error, the return to success
with the count.
"""

import csv
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any, TypeVar

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from jeisson import observe
from jeisson.store import JournalEntry, Sample, StoreError, schema
from jeisson.timers import cancel
from jeisson.wire.utc import format_utc

_T = TypeVar("_T")

MEMORY = ":memory:"
CSV_HEADER = ("subject", "at_utc", "at", "watts", "span_s")
PRUNE_ROWS = 20_000  # rows dropped per transaction of a prune
WRITER = "writer"
READER = "reader"

Executor = Callable[[str, Callable[[], Any]], "Deferred[Any]"]
"""Runs a job (``WRITER`` or ``READER``) somewhere and fires with its
result; each role's jobs one at a time, in order.  The default is the
pools (``threaded``) or at once; tests pass their own to hold a commit in
flight."""


# One encoder for every row: json.dumps with arguments builds a new one per
# call, half the reactor thread's cost of a journal entry.
_json: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@attrs.define
class StoreStats:
    """What the store has done, for benchmarks and status."""

    path: str
    commits: int = 0
    rows_written: int = 0
    last_commit_s: float = 0.0  # the last commit's duration
    failures: int = 0  # failed commits
    hangs: int = 0  # commits that had not returned after hang_s
    rows_dropped: int = 0  # queued while failing, past max_pending_rows

    def size_bytes(self) -> int:
        """The database file and its write-ahead log, in bytes (0 in memory)."""
        if self.path == MEMORY:
            return 0
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))


@attrs.define
class _Batch:
    """Writes committed together.  ``state`` maps ``(scope, key)`` to
    ``(json, updated)``, or to None for a delete."""

    # Values and details as handed over: the writer encodes them.
    state: dict[tuple[str, str], tuple[Any, float] | None] = attrs.Factory(dict)
    journal: list[tuple[float, str, str, int | None, Mapping[str, Any] | None]] = attrs.Factory(list)
    measurements: list[tuple[str, float, float, float]] = attrs.Factory(list)
    waiters: list["Deferred[None]"] = attrs.Factory(list)
    # Set by the writer once its transaction is committed: ``close_now``
    # tells a commit in flight that succeeded from one that failed, when
    # the reactor will not run their callbacks any more.
    committed: bool = False

    def rows(self) -> int:
        return len(self.state) + len(self.journal) + len(self.measurements)

    def shed(self, limit: int) -> tuple[int, int]:
        """Drop the oldest measurements, then the oldest journal entries, to
        keep at most ``limit`` rows (state, keyed, stays whole); how many of
        each were dropped."""
        over = self.rows() - limit
        if over <= 0:
            return 0, 0
        samples = min(over, len(self.measurements))
        del self.measurements[:samples]
        entries = min(over - samples, len(self.journal))
        del self.journal[:entries]
        return samples, entries

    def then(self, newer: "_Batch") -> "_Batch":
        """This batch followed by ``newer``: its rows after these, its
        values over these, its waiters (these have been answered)."""
        state = dict(self.state)
        state.update(newer.state)
        return _Batch(state, self.journal + newer.journal, self.measurements + newer.measurements,
                      newer.waiters)


class _Connection:
    """A sqlite3 connection and the lock that makes each use of it whole
    (the reactor thread reads ``state`` at start-up; the pool's thread does
    the rest)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.lock = threading.Lock()

    def run(self, job: Callable[[sqlite3.Connection], _T]) -> _T:
        with self.lock:
            return job(self.db)

    def close(self) -> None:
        with self.lock:
            self.db.close()


class SqliteStore:
    """``jeisson.store.Store`` in one SQLite file (or ``":memory:"``).

    ``busy_timeout_s``: how long a commit waits for a lock held by another
    process (a backup, the ``sqlite3`` shell) before it fails and is retried
    at the next batch.  ``executor``: where jobs run instead of the pools or
    at once (see ``Executor``).  ``synchronous``: ``FULL`` (what jeisson
    runs: a commit is on disk before ``durable()`` fires, through a power
    cut); ``NORMAL`` and ``OFF`` are for ``bench/`` baselines only.
    """

    log = Logger()

    def __init__(self, path: str, clock: IReactorTime, batch_s: float = 0.5, retention_days: float = 90,
                 raw_hours: float = 48, downsample_s: float = 60, threaded: bool = False,
                 reactor: Any = None, busy_timeout_s: float = 5.0, executor: Executor | None = None,
                 synchronous: str = "FULL", hang_s: float = 30.0, max_pending_rows: int = 1_000_000):
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError(f"synchronous must be FULL, NORMAL or OFF, got {synchronous!r}")
        self.synchronous = synchronous
        self.path = path
        self.clock = clock
        self.batch_s = batch_s
        self.retention_days = retention_days
        self.raw_hours = raw_hours
        self.downsample_s = downsample_s
        self.threaded = threaded
        self.busy_timeout_s = busy_timeout_s
        self.hang_s = hang_s
        self.max_pending_rows = max_pending_rows
        self._hang_timer: IDelayedCall | None = None
        self._hung_since: float | None = None  # a commit in flight past hang_s, since
        self._shed: list[int] = [0, 0]  # measurements and journal entries dropped in this failing spell
        self._executor = executor
        self._hooks: list[Callable[[], None]] = []  # before_commit
        self._reactor = reactor
        self.stats = StoreStats(path)
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None  # the writer's in memory
        self._writer_pool: ThreadPool | None = None
        self._reader_pool: ThreadPool | None = None
        self._shutdown_trigger: Any = None
        self._pending = _Batch()
        self._in_flight: _Batch | None = None
        self._timer: IDelayedCall | None = None
        self._due = False  # commit as soon as the one in flight is done
        self._failing = 0  # failed commits in a row
        self._closed = False
        self._close_waiters: list[Deferred[None]] | None = None
        self._close_result: None | Failure = _OPEN
        self._pid = os.getpid()
        self._inherited: list[tuple[_Connection | None, _Connection | None]] = []  # see _ready

    # ------------------------------------------------------------ start-up

    def open(self) -> None:
        """Create or migrate the schema, open the reader, start the pools
        (``threaded``) at the first job (see ``_ready``).  Raises ``StoreError``
        naming the file and what to do."""
        if self._writer is not None:
            return
        writer = self._connect()
        try:
            self._migrate(writer)
        except BaseException:
            writer.close()
            raise
        self._writer = _Connection(writer)
        if self.path != MEMORY:
            self._reader = self._reader_connection()
        else:
            self._reader = self._writer
        self._pid = os.getpid()

    def _reader_connection(self) -> _Connection:
        reader = self._connect()
        reader.execute("PRAGMA query_only = ON")
        return _Connection(reader)

    def _ready(self) -> None:
        """Before a job runs: connections of this process, and the pools.

        ``twistd`` opens the store while it builds its services, then forks
        into the background (without ``-n``).  SQLite's locks belong to the
        process that took them, and a connection must not be used across a
        fork, nor threads started before it: the child opens its own
        connections (the schema is already migrated) and starts its pools
        at its first job.  The parent's connections are kept, unused and
        never closed, as SQLite advises for a connection carried across a
        fork."""
        if self._writer is not None and self._pid != os.getpid() and self.path != MEMORY:
            self._inherited.append((self._writer, self._reader))
            self._writer = _Connection(self._connect())
            self._reader = self._reader_connection()
            self._writer_pool = self._reader_pool = None
            self._shutdown_trigger = None
            self._pid = os.getpid()
        if self.threaded and self._executor is None and self._writer_pool is None:
            self._start_pools()

    def _connect(self) -> sqlite3.Connection:
        if self.path != MEMORY:
            folder = os.path.dirname(os.path.abspath(self.path))
            if not os.path.isdir(folder):
                raise StoreError(f"store {self.path}: the folder {folder} does not exist; create it (writable by "
                                 f"jeisson) or set [store] path")
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise self._open_error(e) from None
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() not in ("wal", "memory"):
                raise StoreError(f"store {self.path}: cannot use write-ahead logging (journal mode {mode}); "
                                 f"put the store on a local file system")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            db.execute("PRAGMA foreign_keys = OFF")
        except sqlite3.Error as e:
            db.close()
            raise self._open_error(e) from None
        except BaseException:
            db.close()
            raise
        return db

    def _open_error(self, e: sqlite3.Error) -> StoreError:
        text = str(e)
        if isinstance(e, sqlite3.DatabaseError) and "not a database" in text:
            return StoreError(f"store {self.path}: not a SQLite database ({text}); move it away or set [store] "
                              f"path to another file")
        if "unable to open" in text or "readonly" in text or "read-only" in text:
            return StoreError(f"store {self.path}: cannot open for writing ({text}); jeisson needs to write the "
                              f"file and its folder (for the -wal and -shm files beside it), or set [store] path")
        return StoreError(f"store {self.path}: {text}")

    def _migrate(self, db: sqlite3.Connection) -> None:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > schema.VERSION:
                raise StoreError(f"store {self.path}: written by a newer jeisson (schema version {version}, this "
                                 f"one knows up to {schema.VERSION}); run the newer jeisson, or move the file away "
                                 f"to start a new store")
            if version == 0:
                tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                if tables:
                    raise StoreError(f"store {self.path}: a SQLite database that is not a jeisson store (tables "
                                     f"{', '.join(sorted(tables))}); set [store] path to another file")
            for step in range(version, schema.VERSION):
                db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in schema.MIGRATIONS[step]:
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {step + 1}")
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            if version == 0:
                self.log.info("store {path}: created (schema version {version})", path=self.path,
                              version=schema.VERSION)
            elif version < schema.VERSION:
                self.log.info("store {path}: migrated from schema version {old} to {version}", path=self.path,
                              old=version, version=schema.VERSION)
        except sqlite3.Error as e:
            raise self._open_error(e) from None

    def _start_pools(self) -> None:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        self._writer_pool = ThreadPool(1, 1, name=f"store writer {self.path}")
        self._writer_pool.start()
        if self._reader is not self._writer:
            self._reader_pool = ThreadPool(1, 1, name=f"store reader {self.path}")
            self._reader_pool.start()
        # Threads left running would keep the process alive after the reactor stops.
        self._shutdown_trigger = self._reactor.addSystemEventTrigger("after", "shutdown", self._stop_pools)

    def _stop_pools(self) -> None:
        for pool in (self._writer_pool, self._reader_pool):
            if pool is not None and pool.started:
                pool.stop()
        self._writer_pool = self._reader_pool = None

    def state(self, scope: str) -> dict[str, Any]:
        """Every ``key -> value`` of ``scope``: what is committed, then what
        is queued (a store's own writes are read back)."""
        writer = self._open_writer()
        rows = writer.run(lambda db: db.execute("SELECT key, value FROM state WHERE scope = ?", (scope,)).fetchall())
        found = {key: json.loads(value) for key, value in rows}
        for batch in (self._in_flight, self._pending):
            if batch is None:
                continue
            for (s, key), entry in batch.state.items():
                if s != scope:
                    continue
                if entry is None:
                    found.pop(key, None)
                else:
                    found[key] = json.loads(_json(entry[0]))  # a copy, as it will be stored
        return found

    def _open_writer(self) -> _Connection:
        if self._writer is None or self._close_result is not _OPEN:
            raise StoreError(f"store {self.path}: {'not open' if self._writer is None else 'closed'}")
        return self._writer

    # ------------------------------------------------------------ writes

    def put(self, scope: str, key: str, value: Any) -> None:
        """Set ``(scope, key)`` to ``value`` (anything ``json.dumps`` takes).
        ``value`` is encoded by the writer, off the reactor thread: the caller
        hands it over and must not change it afterwards.  A value JSON cannot
        hold is logged and dropped at the commit.  Raises ``StoreError`` once
        closed."""
        self._queue()
        self._pending.state[(str(scope), str(key))] = (value, self.clock.seconds())
        self._queued()

    def delete(self, scope: str, key: str) -> None:
        self._queue()
        self._pending.state[(str(scope), str(key))] = None
        self._queued()

    def record(self, kind: str, subject: str, at: float, detail: Mapping[str, Any] | None = None,
               round: int | None = None) -> None:
        # The numbers converted now, so that a value SQLite cannot bind (a
        # numpy integer) fails here, at the caller, and not in a batch retried
        # forever; ``detail`` is encoded by the writer (see ``put``).
        row = (float(at), str(kind), str(subject), None if round is None else int(round), detail or None)
        self._queue()
        self._pending.journal.append(row)
        self._queued()

    def measure(self, subject: str, at: float, watts: float) -> None:
        row = (str(subject), float(at), float(watts), 0.0)
        self._queue()
        self._pending.measurements.append(row)
        self._queued()

    def _queue(self) -> None:
        if self._closed:
            raise StoreError(f"store {self.path}: closed; nothing more can be stored")

    def _queued(self) -> None:
        if (self._failing or self._hung_since is not None) and self._pending.rows() > self.max_pending_rows:
            self._bound_pending()
        if self._timer is None and not self._due:
            self._timer = self.clock.callLater(self.batch_s, self._batch_due)

    def durable(self) -> "Deferred[None]":
        if self._closed:
            return defer.fail(StoreError(f"store {self.path}: closed"))
        return self._durable()

    def before_commit(self, hook: Callable[[], None]) -> None:
        self._hooks.append(hook)

    def soon(self) -> None:
        if not self._closed:
            self._queued()

    def _before_commit(self) -> None:
        if self._closed:
            return  # queued before closing, at close() or close_now()
        for hook in self._hooks:
            try:
                hook()
            except Exception:
                self.log.failure("store {path}: a writer failed to queue its writes before a commit", path=self.path)

    def _durable(self) -> "Deferred[None]":
        self._before_commit()
        if self._hung_since is not None:
            return defer.fail(self._hung_error())
        if self._pending.rows() == 0:
            if self._in_flight is None:
                return defer.succeed(None)
            d: Deferred[None] = Deferred()
            self._in_flight.waiters.append(d)
            return d
        d = Deferred()
        self._pending.waiters.append(d)
        self._commit_soon(hooked=True)
        return d

    def _batch_due(self) -> None:
        self._timer = None
        self._commit_soon()

    def _commit_soon(self, hooked: bool = False) -> None:
        """``hooked``: the ``before_commit`` hooks ran just now."""
        if self._in_flight is not None:
            self._due = True
        elif self._failing and self._timer is not None:
            pass  # failing: retried when the batch is due, not at every durable()
        else:
            self._start_commit(hooked)

    def _start_commit(self, hooked: bool = False) -> None:
        self._due = False
        if not hooked:
            self._before_commit()
        cancel(self._timer)  # what the hooks queued goes now
        self._timer = None
        if self._pending.rows() == 0:
            return
        batch, self._pending = self._pending, _Batch()
        self._in_flight = batch
        writer = self._open_writer()
        self._hang_timer = self.clock.callLater(self.hang_s, self._hung, batch)
        self._write(lambda: writer.run(lambda db: self._commit(db, batch))).addBoth(self._committed, batch)

    def _hung(self, batch: _Batch) -> None:
        """The commit in flight has not returned for ``hang_s``."""
        self._hang_timer = None
        if self._in_flight is not batch:
            return
        self._hung_since = self.clock.seconds() - self.hang_s
        self.stats.hangs += 1
        self.log.error("store {path}: a commit of {rows} rows has not returned for {hang_s:g} s (a disk that stopped "
                       "answering?); what waits for it fails, and nothing is acknowledged until it returns",
                       path=self.path, rows=batch.rows(), hang_s=self.hang_s)
        waiters, batch.waiters = batch.waiters, []
        waiters += self._pending.waiters
        self._pending.waiters = []
        for waiter in waiters:
            waiter.errback(self._hung_error())

    def _hung_error(self) -> StoreError:
        since = 0.0 if self._hung_since is None else self.clock.seconds() - self._hung_since
        return StoreError(f"store {self.path}: a commit has not returned for {since:.0f} s")

    def _commit(self, db: sqlite3.Connection, batch: _Batch) -> float:
        """On the writer: ``batch`` in one transaction; its duration.
        Marks ``batch.committed`` once it is."""
        started = time.perf_counter()
        # JSON is encoded here, on the writer, not on the reactor thread (at
        # 1,000 homes it was half of what the store cost a round there).
        puts = []
        for (scope, key), entry in batch.state.items():
            if entry is not None:
                text = self._encoded(entry[0], scope, key)
                if text is not None:
                    puts.append((scope, key, text, entry[1]))
        journal = []
        for at, kind, subject, round_number, detail in batch.journal:
            text = "{}" if not detail else self._encoded(detail, kind, subject)
            if text is not None:
                journal.append((at, kind, subject, round_number, text))
        deletes = [scope_key for scope_key, entry in batch.state.items() if entry is None]

        def write(db: sqlite3.Connection) -> None:
            if puts:
                db.executemany("INSERT INTO state (scope, key, value, updated) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, "
                               "updated = excluded.updated", puts)
            if deletes:
                db.executemany("DELETE FROM state WHERE scope = ? AND key = ?", deletes)
            if batch.journal:
                db.executemany("INSERT INTO journal (at, kind, subject, round, detail) VALUES (?, ?, ?, ?, ?)",
                               journal)
            if batch.measurements:
                db.executemany("INSERT INTO measurements (subject, at, watts, span_s) VALUES (?, ?, ?, ?)",
                               batch.measurements)

        _transaction(db, write)
        batch.committed = True
        return time.perf_counter() - started

    def _encoded(self, value: Any, what: str, which: str) -> str | None:
        """``value`` as JSON, or None (logged: the row is dropped, the batch
        goes on) for one JSON cannot hold."""
        try:
            return _json(value if not isinstance(value, Mapping) or isinstance(value, dict) else dict(value))
        except (TypeError, ValueError) as e:
            self.log.error("store {path}: {what} {which}: a value JSON cannot hold ({error}); not stored",
                           path=self.path, what=what, which=which, error=e)
            return None

    def _committed(self, result: float | Failure, batch: _Batch) -> None:
        self._in_flight = None
        cancel(self._hang_timer)
        self._hang_timer = None
        if self._hung_since is not None:
            self.log.info("store {path}: the hung commit returned after {t:.0f} s ({outcome})", path=self.path,
                          t=self.clock.seconds() - self._hung_since,
                          outcome="failed" if isinstance(result, Failure) else "committed")
            self._hung_since = None
        waiters, batch.waiters = batch.waiters, []
        if isinstance(result, Failure):
            self.stats.failures += 1
            self._failing += 1
            if self._failing == 1:
                self.log.failure("store {path}: commit of {rows} rows failed; they are kept and retried every "
                                 "{batch_s} s, and nothing waiting for them is acknowledged", result,
                                 path=self.path, rows=batch.rows(), batch_s=self.batch_s)
            self._pending = batch.then(self._pending)
            self._bound_pending()
            self._due = False
            cancel(self._timer)
            self._timer = self.clock.callLater(self.batch_s, self._batch_due)
            error = StoreError(f"store {self.path}: commit failed: {result.getErrorMessage()}")
            for waiter in waiters:
                waiter.errback(error)
            return
        if self._failing:
            self.log.info("store {path}: commits succeed again after {failures} failed", path=self.path,
                          failures=self._failing)
            self._failing = 0
            self._shed = [0, 0]
        self.stats.commits += 1
        self.stats.rows_written += batch.rows()
        self.stats.last_commit_s = result
        observe.store_committed(self.path, result, batch.rows())
        if self._due:
            self._start_commit()
        for waiter in waiters:
            waiter.callback(None)

    def _bound_pending(self) -> None:
        """Failing or hung: keep at most ``max_pending_rows`` queued."""
        samples, entries = self._pending.shed(self.max_pending_rows)
        if not samples and not entries:
            return
        first = self._shed == [0, 0]
        self._shed[0] += samples
        self._shed[1] += entries
        self.stats.rows_dropped += samples + entries
        if entries:
            # Journal entries lost: what waits for the queue may not be told
            # it is stored (a switch's record among them).
            waiters, self._pending.waiters = self._pending.waiters, []
            error = StoreError(f"store {self.path}: journal entries queued while commits fail were dropped")
            for waiter in waiters:
                waiter.errback(error)
        if first:
            self.log.error("store {path}: commits fail and {limit} rows are queued: the oldest measurements, then "
                           "journal entries, are dropped until a commit succeeds (counted in stats.rows_dropped)",
                           path=self.path, limit=self.max_pending_rows)

    def _write(self, job: Callable[[], _T]) -> "Deferred[_T]":
        self._ready()
        if self._executor is not None:
            return self._executor(WRITER, job)
        return self._run(self._writer_pool, job)

    def _read(self, job: Callable[[sqlite3.Connection], _T]) -> "Deferred[_T]":
        if self._closed or self._reader is None:
            return defer.fail(StoreError(f"store {self.path}: {'closed' if self._closed else 'not open'}"))
        self._ready()
        reader = self._reader
        if reader is self._writer:
            return self._write(lambda: reader.run(job))
        if self._executor is not None:
            return self._executor(READER, lambda: reader.run(job))
        return self._run(self._reader_pool, lambda: reader.run(job))

    def _run(self, pool: ThreadPool | None, job: Callable[[], _T]) -> "Deferred[_T]":
        if not self.threaded:
            return defer.maybeDeferred(job)
        from twisted.internet import threads

        if pool is None:
            return defer.fail(StoreError(f"store {self.path}: not open"))
        return threads.deferToThreadPool(self._reactor, pool, job)

    # ------------------------------------------------------------ queries

    def journal(self, subjects: Iterable[str] | None = None, kinds: Iterable[str] | None = None,
                since: float | None = None, until: float | None = None, limit: int | None = None,
                newest_first: bool = False) -> "Deferred[list[JournalEntry]]":
        """Committed journal entries with ``since <= at <= until``, oldest
        first (or newest), at most ``limit``; any of ``subjects`` and
        ``kinds`` when given."""
        where, params = _where(subjects, since, until)
        if kinds is not None:
            where.append("kind IN (SELECT value FROM json_each(?))")
            params.append(_json(list(kinds)))
        order = "DESC" if newest_first else "ASC"
        sql = ("SELECT id, at, kind, subject, round, detail FROM journal" + _clause(where)
               + f" ORDER BY at {order}, id {order}")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))

        def query(db: sqlite3.Connection) -> list[JournalEntry]:
            return [JournalEntry(id=row[0], at=row[1], kind=row[2], subject=row[3], round=row[4],
                                 detail=json.loads(row[5])) for row in db.execute(sql, params)]

        return self._read(query)

    def measurements(self, subjects: Iterable[str] | None = None, since: float | None = None,
                     until: float | None = None, limit: int | None = None) -> "Deferred[list[Sample]]":
        """Committed samples with ``since <= at <= until``, by subject then
        time, the first ``limit`` of them when given (the query stops there,
        so a capped reply never reads the rest of a long range)."""
        sql, params = _measurements_sql(subjects, since, until, limit)

        def query(db: sqlite3.Connection) -> list[Sample]:
            return [Sample(*row) for row in db.execute(sql, params)]

        return self._read(query)

    def export_csv(self, path: str, subjects: Iterable[str] | None = None, since: float | None = None,
                   until: float | None = None) -> "Deferred[int]":
        """Samples as CSV (``subject,at_utc,at,watts,span_s``, by subject
        then time) written to ``path`` through a temporary file beside it,
        renamed when complete; fires with the number of rows."""
        sql, params = _measurements_sql(subjects, since, until)

        def export(db: sqlite3.Connection) -> int:
            count = 0
            temporary = f"{path}.{os.getpid()}.tmp"
            try:
                with open(temporary, "w", newline="", encoding="utf-8") as f:
                    out = csv.writer(f, lineterminator="\n")
                    out.writerow(CSV_HEADER)
                    for subject, at, watts, span_s in db.execute(sql, params):
                        out.writerow((subject, format_utc(at), repr(at), repr(watts), repr(span_s)))
                        count += 1
                os.replace(temporary, path)
            except BaseException:
                if os.path.exists(temporary):
                    os.unlink(temporary)
                raise
            return count

        return self._read(export)

    # ------------------------------------------------------------ upkeep

    def prune(self, now: float) -> "Deferred[None]":
        """Raw readings older than ``raw_hours`` (whole ``downsample_s``
        buckets only) become one mean per subject and bucket, at the
        bucket's start; measurements and journal entries older than
        ``retention_days`` are dropped.  ``state`` is never pruned.
        Idempotent.

        Runs on the writer as a chain of short transactions (at most
        ``PRUNE_ROWS`` rows dropped, or one bucket averaged, each) so that
        the batches' commits go between them: a first prune over weeks of
        readings does not hold the acknowledgements back."""
        if self._closed:
            return defer.fail(StoreError(f"store {self.path}: closed"))
        writer = self._open_writer()
        step = self.downsample_s
        raw_before = math.floor((now - self.raw_hours * 3600) / step) * step
        keep_after = now - self.retention_days * 86400
        counts = {"raw": 0, "averaged": 0, "measurements": 0, "entries": 0}
        jobs: list[Callable[[sqlite3.Connection], bool]] = [
            lambda db: self._drop_old_journal(db, keep_after, counts),
            lambda db: self._drop_old_measurements(db, keep_after, counts),
            lambda db: self._downsample(db, raw_before, step, counts),
        ]
        done: Deferred[None] = Deferred()

        def run_next() -> None:
            # A loop, not recursion: with threaded=False each step has fired
            # by the time it returns.
            while jobs and not self._closed:
                d = self._write(partial(writer.run, partial(_transaction, job=jobs[0])))
                if not d.called:
                    d.addCallbacks(step_done, done.errback)
                    return
                outcome: list[object] = []
                d.addBoth(outcome.append)
                if isinstance(outcome[0], Failure):
                    done.errback(outcome[0])
                    return
                if not outcome[0]:
                    del jobs[0]
            finished()

        def step_done(more: bool) -> None:
            if not more:
                del jobs[0]
            run_next()

        def finished() -> None:
            if any(counts.values()):
                self.log.info("store {path}: {raw} raw readings averaged into {averaged} of {downsample_s:g} s; "
                              "{measurements} measurements and {entries} journal entries older than "
                              "{retention_days:g} days dropped", path=self.path, downsample_s=step,
                              retention_days=self.retention_days, **counts)
            done.callback(None)

        run_next()
        return done

    @staticmethod
    def _drop_old_journal(db: sqlite3.Connection, keep_after: float, counts: dict[str, int]) -> bool:
        dropped = db.execute("DELETE FROM journal WHERE id IN (SELECT id FROM journal WHERE at < ? LIMIT ?)",
                             (keep_after, PRUNE_ROWS)).rowcount
        counts["entries"] += dropped
        return dropped == PRUNE_ROWS

    @staticmethod
    def _drop_old_measurements(db: sqlite3.Connection, keep_after: float, counts: dict[str, int]) -> bool:
        # One range of the (span_s, at) index per width of sample there is.
        span = -1.0
        while True:
            (span,) = db.execute("SELECT MIN(span_s) FROM measurements WHERE span_s > ?", (span,)).fetchone()
            if span is None:
                return False
            dropped = db.execute(
                "DELETE FROM measurements WHERE rowid IN "
                "(SELECT rowid FROM measurements WHERE span_s = ? AND at < ? LIMIT ?)",
                (span, keep_after, PRUNE_ROWS)).rowcount
            counts["measurements"] += dropped
            if dropped == PRUNE_ROWS:
                return True

    @staticmethod
    def _downsample(db: sqlite3.Connection, raw_before: float, step: float, counts: dict[str, int]) -> bool:
        """The oldest bucket of raw readings before ``raw_before``, averaged."""
        (oldest,) = db.execute("SELECT MIN(at) FROM measurements WHERE span_s = 0").fetchone()
        if oldest is None or oldest >= raw_before:
            return False
        start = math.floor(oldest / step) * step
        end = min(start + step, raw_before)
        counts["averaged"] += db.execute(
            "INSERT INTO measurements (subject, at, watts, span_s) SELECT subject, ?, AVG(watts), ? "
            "FROM measurements WHERE span_s = 0 AND at >= ? AND at < ? GROUP BY subject",
            (start, step, start, end)).rowcount
        counts["raw"] += db.execute("DELETE FROM measurements WHERE span_s = 0 AND at >= ? AND at < ?",
                                    (start, end)).rowcount
        return True

    def close(self) -> "Deferred[None]":
        """Commit what is queued, close the connections, stop the pools.
        Errbacks with ``StoreError`` if the last commit failed (its rows are
        lost, and logged).  Later writes raise ``StoreError``."""
        d: Deferred[None] = Deferred()
        if self._close_waiters is not None:
            if self._close_result is _OPEN:
                self._close_waiters.append(d)
            else:
                _fire(d, self._close_result)
            return d
        self._before_commit()
        self._closed = True
        self._close_waiters = [d]
        self._durable().addBoth(self._shut)
        return d

    def close_now(self) -> None:
        """Close at the reactor's very end, on the calling thread: wait for
        the commit in flight (the writer's lock orders them), commit what
        is queued, close.  For the last moment of a program (a system event
        trigger "after" "shutdown"): by then the links have been dropped,
        and what their ending wrote (a home left, a board lost, a switch as
        the program stopped) is in the queue.  A failure is logged."""
        if self._closed or self._writer is None:
            return
        self._before_commit()
        self._closed = True
        cancel(self._timer)
        self._timer = None
        self._stop_pools()  # the commit in flight, if any, finishes first
        batch, self._pending = self._pending, _Batch()
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None and not in_flight.committed:
            # It failed (or never ran), and the reactor will not run its
            # callback now: its rows go with the last commit.
            batch = in_flight.then(batch)
            batch.waiters = in_flight.waiters + batch.waiters
            in_flight.waiters = []
        writer, reader = self._writer, self._reader
        if self._pid == os.getpid() or self.path == MEMORY:
            if batch.rows():
                try:
                    writer.run(lambda db: self._commit(db, batch))
                    self.stats.commits += 1
                    self.stats.rows_written += batch.rows()
                except Exception:
                    self.log.failure("store {path}: closing, {rows} rows could not be stored", path=self.path,
                                     rows=batch.rows())
            writer.close()
            if reader is not None and reader is not writer:
                reader.close()
        self._close_result = None
        for waiter in batch.waiters:
            waiter.callback(None)

    def _shut(self, result: None | Failure) -> None:
        cancel(self._timer)
        self._timer = None
        if isinstance(result, Failure):
            self.log.error("store {path}: closed with {rows} rows not stored: {error}", path=self.path,
                           rows=self._pending.rows(), error=result.getErrorMessage())
        self._pending = _Batch()
        self._ready()
        closing = [self._write(self._writer.close)] if self._writer is not None else []
        if self._reader is not None and self._reader is not self._writer:
            reader = self._reader
            closing.append(self._executor(READER, reader.close) if self._executor is not None
                           else self._run(self._reader_pool, reader.close))

        def stopped(_: object) -> None:
            if self._shutdown_trigger is not None:
                self._reactor.removeSystemEventTrigger(self._shutdown_trigger)
                self._shutdown_trigger = None
            self._stop_pools()
            self._close_result = result
            waiters, self._close_waiters = self._close_waiters or [], []
            for waiter in waiters:
                _fire(waiter, result)

        defer.gatherResults(closing, consumeErrors=True).addBoth(stopped)


_OPEN: Any = object()  # close() not done yet


def _fire(d: "Deferred[None]", result: None | Failure) -> None:
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(None)


def _transaction(db: sqlite3.Connection, job: Callable[[sqlite3.Connection], _T]) -> _T:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = job(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the job's own error is the one to report
        raise
    return result


def _where(subjects: Iterable[str] | None, since: float | None, until: float | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if subjects is not None:
        # One parameter however many subjects (SQLite limits the parameters).
        where.append("subject IN (SELECT value FROM json_each(?))")
        params.append(_json(list(subjects)))
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if until is not None:
        where.append("at <= ?")
        params.append(until)
    return where, params


def _clause(where: list[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


def _measurements_sql(subjects: Iterable[str] | None, since: float | None,
                      until: float | None, limit: int | None = None) -> tuple[str, list[Any]]:
    # The (subject, at) index gives the rows in this order, so a LIMIT stops
    # the scan after ``limit`` rows instead of sorting the whole range.
    where, params = _where(subjects, since, until)
    sql = "SELECT subject, at, watts, span_s FROM measurements" + _clause(where) + " ORDER BY subject, at"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(max(0, int(limit)))
    return sql, params
