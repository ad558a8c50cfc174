"""The SQLite store: real files under tmp_path, a ``task.Clock`` for the
batch timer, ``threaded=False`` (jobs run at once) except in the tests run
in a subprocess under the real reactor (threads, kill -9)."""

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
from twisted.application.service import IService
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from jeisson.config import IniFile
from jeisson.store import JournalEntry, Sample, StoreError, schema
from jeisson.store import sqlite as sqlite_module
from jeisson.store.config import StoreConfig, read_store
from jeisson.store.service import StoreService, open_store
from jeisson.store.sqlite import SqliteStore
from tests.peers import HeldJobs

pytestmark = pytest.mark.usefixtures("logs")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fired(d):
    """The result of an already-fired Deferred (raising its failure)."""
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


def failure_of(d):
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    assert hasattr(results[0], "raiseException"), f"expected a failure, got {results[0]!r}"
    return results[0]


def rows(path, sql, params=()):
    """What another connection (another process, after a restart) sees."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "jeisson.sqlite")


@pytest.fixture
def store(db_path, clock):
    s = SqliteStore(db_path, clock, batch_s=0.5)
    s.open()
    yield s
    fired(s.close())


# ------------------------------------------------------------ opening, migrations


def test_a_new_file_gets_the_schema_wal_and_full_sync(db_path, clock):
    s = SqliteStore(db_path, clock)
    s.open()
    assert rows(db_path, "PRAGMA user_version") == [(schema.VERSION,)]
    assert rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    tables = {name for (name,) in rows(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == schema.TABLES
    indexes = {name for (name,) in rows(db_path, "SELECT name FROM sqlite_master WHERE type = 'index' "
                                                  "AND name NOT LIKE 'sqlite_%'")}
    assert indexes == {"journal_subject_at", "journal_kind_at", "journal_at", "measurements_subject_at",
                       "measurements_span_at"}
    assert s._writer.run(lambda db: db.execute("PRAGMA synchronous").fetchone()) == (2,)  # FULL
    fired(s.close())


def test_an_empty_v0_file_is_migrated(db_path, clock):
    open(db_path, "wb").close()
    s = SqliteStore(db_path, clock)
    s.open()
    assert rows(db_path, "PRAGMA user_version") == [(schema.VERSION,)]
    s.put("a", "b", 1)
    fired(s.durable())
    fired(s.close())
    # Opening again migrates nothing and keeps the data.
    again = SqliteStore(db_path, clock)
    again.open()
    assert again.state("a") == {"b": 1}
    fired(again.close())


def test_a_file_from_a_newer_jeisson_is_refused_naming_it(db_path, clock):
    db = sqlite3.connect(db_path)
    db.execute(f"PRAGMA user_version = {schema.VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match=f"{db_path}.*newer jeisson"):
        SqliteStore(db_path, clock).open()


def test_a_file_that_is_not_a_database_is_refused_naming_it(db_path, clock):
    with open(db_path, "w") as f:
        f.write("[aggregator]\nthis is an ini file, not a database\n" * 100)
    with pytest.raises(StoreError, match=f"{db_path}.*not a SQLite database"):
        SqliteStore(db_path, clock).open()


def test_another_programs_database_is_refused(db_path, clock):
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE customers (name TEXT)")
    db.close()
    with pytest.raises(StoreError, match="not a jeisson store.*customers"):
        SqliteStore(db_path, clock).open()


def test_a_missing_folder_is_refused_naming_it(tmp_path, clock):
    path = str(tmp_path / "nowhere" / "x.sqlite")
    with pytest.raises(StoreError, match="folder .*nowhere does not exist"):
        SqliteStore(path, clock).open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_an_unwritable_folder_is_refused_naming_the_file(tmp_path, clock):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="ro/x.sqlite: cannot open for writing"):
            SqliteStore(str(folder / "x.sqlite"), clock).open()
    finally:
        folder.chmod(0o755)


def test_a_folder_jeisson_cannot_write_is_refused_naming_the_file(clock):
    # /proc refuses new files even to root.
    with pytest.raises(StoreError, match="/proc/jeisson-test.sqlite: cannot open for writing"):
        SqliteStore("/proc/jeisson-test.sqlite", clock).open()


def test_memory_store_works(clock):
    s = SqliteStore(":memory:", clock)
    s.open()
    s.put("home", "budget", {"w": 1500})
    s.record("budget", "h1", 10.0, {"w": 1500}, round=3)
    s.measure("h1", 10.0, 1500.0)
    fired(s.durable())
    assert s.state("home") == {"budget": {"w": 1500}}
    assert [e.detail for e in fired(s.journal())] == [{"w": 1500}]
    assert fired(s.measurements()) == [Sample("h1", 10.0, 1500.0, 0.0)]
    assert s.stats.size_bytes() == 0
    fired(s.close())


# ------------------------------------------------------------ batching


def test_writes_wait_for_the_batch_then_commit_once(store, db_path, clock):
    store.put("s", "k", 1)
    clock.advance(0.2)
    store.record("round", "e1", 0.2, {"n": 1}, round=1)
    store.measure("h1", 0.3, 100.0)
    assert rows(db_path, "SELECT count(*) FROM journal") == [(0,)]
    assert store.stats.commits == 0
    clock.advance(0.299)
    assert store.stats.commits == 0
    clock.advance(0.001)  # 0.5 s after the first write, not the last
    assert store.stats.commits == 1
    assert store.stats.rows_written == 3
    assert rows(db_path, "SELECT scope, key, value FROM state") == [("s", "k", "1")]
    assert rows(db_path, "SELECT at, kind, subject, round, detail FROM journal") == [
        (0.2, "round", "e1", 1, '{"n":1}')]
    assert rows(db_path, "SELECT subject, at, watts, span_s FROM measurements") == [("h1", 0.3, 100.0, 0.0)]
    # Nothing queued: no more commits.
    clock.advance(10)
    assert store.stats.commits == 1
    assert not clock.getDelayedCalls()


def test_durable_commits_now_and_fires_after(store, db_path, clock):
    store.record("commit", "h1", 1.0, {"w": 900})
    d = store.durable()
    assert fired(d) is None
    assert store.stats.commits == 1
    assert rows(db_path, "SELECT subject FROM journal") == [("h1",)]
    assert not clock.getDelayedCalls()  # the batch timer went with the commit


def test_durable_with_nothing_queued_fires_at_once(store):
    assert fired(store.durable()) is None
    assert store.stats.commits == 0


def test_repeated_puts_in_a_batch_are_written_once_with_the_last_value(store, db_path, clock):
    for w in range(100):
        store.put("power", "h1", {"w": w})
    store.put("power", "h2", 7)
    store.delete("power", "h2")
    store.put("power", "h3", 1)
    clock.advance(0.5)
    assert store.stats.rows_written == 3
    assert sorted(rows(db_path, "SELECT key, value FROM state")) == [("h1", '{"w":99}'), ("h3", "1")]
    store.delete("power", "h3")
    fired(store.durable())
    assert store.state("power") == {"h1": {"w": 99}}


def test_a_put_value_is_handed_over_and_encoded_by_the_writer(store):
    value = {"loads": [1, 2]}
    store.put("home", "settings", value)
    assert store.state("home") == {"settings": {"loads": [1, 2]}}
    assert store.state("home")["settings"] is not value, "state() gives a copy, as it will be stored"
    fired(store.durable())
    assert store.state("home") == {"settings": {"loads": [1, 2]}}


def test_a_value_json_cannot_hold_is_logged_and_dropped_and_the_batch_goes_on(store, db_path):
    with capturedLogs() as events:
        store.put("home", "x", object())
        store.record("budget", "h1", 1.0, {"w": object()})
        store.put("home", "y", 1)
        store.record("budget", "h1", 2.0, {"w": 5})
        fired(store.durable())
    assert store.state("home") == {"y": 1}
    assert [(e.at, e.detail) for e in fired(store.journal())] == [(2.0, {"w": 5})]
    errors = [formatEvent(e) for e in events if e["log_level"].name == "error"]
    assert len(errors) == 2 and "home x" in errors[0] and "budget h1" in errors[1], errors
    assert store._pending.rows() == 0


def test_state_reads_back_queued_writes(store):
    store.put("s", "a", 1)
    fired(store.durable())
    store.put("s", "b", 2)
    store.delete("s", "a")
    assert store.state("s") == {"b": 2}
    assert store.state("other") == {}


def test_reopen_after_close_sees_everything(db_path, clock):
    s = SqliteStore(db_path, clock)
    s.open()
    s.put("events", "e1", {"start": 100.0, "end": 200.0, "limit_w": 9000})
    s.put("rounds", "next", 42)
    s.record("event", "e1", 5.0, {"source": "manhole"})
    s.measure("h1", 5.0, 1234.5)
    fired(s.close())  # commits what is queued, without waiting for the batch
    with pytest.raises(StoreError, match="closed"):
        s.put("x", "y", 1)
    again = SqliteStore(db_path, clock)
    again.open()
    assert again.state("events") == {"e1": {"start": 100.0, "end": 200.0, "limit_w": 9000}}
    assert again.state("rounds") == {"next": 42}
    assert [(e.kind, e.subject, e.detail) for e in fired(again.journal())] == [("event", "e1", {"source": "manhole"})]
    assert fired(again.measurements()) == [Sample("h1", 5.0, 1234.5, 0.0)]
    fired(again.close())


def test_writes_during_a_commit_go_to_the_next_one_and_one_commit_at_a_time(db_path, clock):
    held = HeldJobs()
    s = SqliteStore(db_path, clock, batch_s=0.5, executor=held)
    s.open()
    s.put("s", "a", 1)
    clock.advance(0.5)
    assert [role for role, _, _ in held.waiting] == ["writer"]  # the first batch in flight
    first = s.durable()  # waits for the batch in flight
    s.put("s", "a", 2)  # next batch
    s.record("round", "e1", 1.0)
    second = s.durable()  # wants the next batch now: after the one in flight
    clock.advance(5)
    assert len(held.waiting) == 1 and not first.called and not second.called
    assert s.state("s") == {"a": 2}
    assert held.run_one() == "writer"
    assert fired(first) is None and not second.called
    assert rows(db_path, "SELECT value FROM state") == [("1",)]
    assert len(held.waiting) == 1  # the second batch started at once, durable() asked for it
    held.run_one()
    assert fired(second) is None
    assert rows(db_path, "SELECT value FROM state") == [("2",)]
    assert s.stats.commits == 2 and s.stats.rows_written == 3
    d = s.close()
    while held.waiting:
        held.run_one()
    assert fired(d) is None


def test_a_batch_due_during_a_commit_follows_it(db_path, clock):
    held = HeldJobs()
    s = SqliteStore(db_path, clock, batch_s=0.5, executor=held)
    s.open()
    s.put("s", "a", 1)
    clock.advance(0.5)
    s.put("s", "b", 1)
    clock.advance(0.5)  # the second batch is due, the first still in flight
    assert len(held.waiting) == 1
    held.run_one()
    assert len(held.waiting) == 1  # the second, at once
    held.run_one()
    assert s.stats.commits == 2
    assert not clock.getDelayedCalls()
    d = s.close()
    while held.waiting:
        held.run_one()
    fired(d)


# ------------------------------------------------------------ a failing commit


def test_a_failing_commit_errbacks_durable_keeps_the_rows_and_retries(db_path, clock, logs):
    s = SqliteStore(db_path, clock, batch_s=0.5, busy_timeout_s=0.01)
    s.open()
    # Another process holds the write lock (a backup, the sqlite3 shell):
    # the commit fails as it would on a full disk, for real.
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    s.put("home", "budget", {"w": 1000})
    s.record("budget", "h1", 1.0, {"w": 1000})
    failure = failure_of(s.durable())
    assert failure.check(StoreError)
    assert db_path in str(failure.value)
    assert s.stats.failures == 1
    errors = [formatEvent(e) for e in logs if "log_failure" in e]
    assert len(errors) == 1 and db_path in errors[0]
    logs.clear()  # expected: the fixture fails a test on any logged failure
    # More writes meanwhile, a newer value of the same key among them.
    s.put("home", "budget", {"w": 800})
    s.record("budget", "h1", 2.0, {"w": 800})
    clock.advance(0.5)  # the retry fails too: logged once only
    assert s.stats.failures == 2
    assert not [e for e in logs if "log_failure" in e]
    other.execute("ROLLBACK")
    other.close()
    clock.advance(0.5)
    assert s.stats.commits == 1
    assert rows(db_path, "SELECT value FROM state") == [('{"w":800}',)]
    assert rows(db_path, "SELECT at, detail FROM journal ORDER BY id") == [(1.0, '{"w":1000}'), (2.0, '{"w":800}')]
    assert any("succeed again after 2 failed" in formatEvent(e) for e in logs)
    fired(s.close())


def test_durable_waiting_behind_a_failed_commit_waits_for_the_retry(db_path, clock, logs):
    s = SqliteStore(db_path, clock, batch_s=0.5, busy_timeout_s=0.01)
    s.open()
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    s.put("a", "b", 1)
    assert failure_of(s.durable()).check(StoreError)
    logs.clear()
    other.execute("ROLLBACK")
    other.close()
    d = s.durable()
    # The retry waits for the batch (no busy loop on a failing disk).
    assert not d.called
    clock.advance(0.5)
    assert fired(d) is None
    assert s.state("a") == {"b": 1}
    fired(s.close())


# ------------------------------------------------------------ queries


@pytest.fixture
def journal_store(store):
    store.record("event", "e1", 100.0, {"limit_w": 9000})
    store.record("round", "e1", 110.0, {"committed_w": 8500}, round=1)
    store.record("budget", "h1", 110.0, {"w": 1500}, round=1)
    store.record("budget", "h2", 110.0, {"w": 2500}, round=1)
    store.record("switch", "h1.heater", 112.0, {"on": False, "cause": "budget"}, round=1)
    store.record("commit", "h1", 111.0, {"w": 1400}, round=1)
    fired(store.durable())
    return store


def test_journal_all_in_time_order(journal_store):
    entries = fired(journal_store.journal())
    assert [(e.at, e.kind, e.subject) for e in entries] == [
        (100.0, "event", "e1"), (110.0, "round", "e1"), (110.0, "budget", "h1"), (110.0, "budget", "h2"),
        (111.0, "commit", "h1"), (112.0, "switch", "h1.heater")]
    assert entries[0] == JournalEntry(id=1, at=100.0, kind="event", subject="e1", round=None,
                                      detail={"limit_w": 9000})
    assert entries[-1].round == 1 and entries[-1].detail == {"on": False, "cause": "budget"}


def test_journal_filters(journal_store):
    j = journal_store.journal
    assert [e.subject for e in fired(j(subjects=["h1", "h1.heater"]))] == ["h1", "h1", "h1.heater"]
    assert [e.subject for e in fired(j(kinds=["budget"]))] == ["h1", "h2"]
    assert [e.kind for e in fired(j(subjects=["h1"], kinds=["commit"]))] == ["commit"]
    assert [e.at for e in fired(j(since=110.0, until=111.0))] == [110.0, 110.0, 110.0, 111.0]
    assert fired(j(subjects=[])) == []
    assert [e.kind for e in fired(j(limit=2))] == ["event", "round"]
    # "why was my heater off at 112?": the last entries up to then, newest first
    assert [(e.kind, e.subject) for e in fired(j(until=112.0, limit=3, newest_first=True))] == [
        ("switch", "h1.heater"), ("commit", "h1"), ("budget", "h2")]


def test_journal_with_many_subjects(journal_store):
    subjects = [f"h{i}" for i in range(40000)]  # beyond SQLite's parameter limit
    assert [e.subject for e in fired(journal_store.journal(subjects=subjects))] == ["h1", "h2", "h1"]


def test_measurements_and_csv_export(store, tmp_path):
    store.measure("h2", 1_800_000_000.0, 2000.0)
    store.measure("h1", 1_800_000_005.25, 1500.5)
    store.measure("h1", 1_800_000_000.0, 1400.0)
    fired(store.durable())
    assert fired(store.measurements()) == [Sample("h1", 1_800_000_000.0, 1400.0, 0.0),
                                           Sample("h1", 1_800_000_005.25, 1500.5, 0.0),
                                           Sample("h2", 1_800_000_000.0, 2000.0, 0.0)]
    assert fired(store.measurements(subjects=["h2"])) == [Sample("h2", 1_800_000_000.0, 2000.0, 0.0)]
    assert len(fired(store.measurements(since=1_800_000_001.0))) == 1
    out = str(tmp_path / "out.csv")
    assert fired(store.export_csv(out, subjects=["h1"])) == 2
    with open(out, newline="") as f:
        assert list(csv.reader(f)) == [
            ["subject", "at_utc", "at", "watts", "span_s"],
            ["h1", "2027-01-15T08:00:00.000Z", "1800000000.0", "1400.0", "0.0"],
            ["h1", "2027-01-15T08:00:05.250Z", "1800000005.25", "1500.5", "0.0"],
        ]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]  # the temporary was renamed


def test_measurements_limit_keeps_the_first_rows_in_order(store):
    for i in range(5):
        store.measure("h2", 100.0 + i, 20.0 + i)
        store.measure("h1", 100.0 + i, 10.0 + i)
    fired(store.durable())
    every = fired(store.measurements())
    assert len(every) == 10
    assert fired(store.measurements(limit=3)) == every[:3]
    assert [(s.subject, s.at) for s in fired(store.measurements(limit=6))] == [
        ("h1", 100.0), ("h1", 101.0), ("h1", 102.0), ("h1", 103.0), ("h1", 104.0), ("h2", 100.0)]
    assert fired(store.measurements(subjects=["h2"], since=102.0, limit=2)) == [
        Sample("h2", 102.0, 22.0, 0.0), Sample("h2", 103.0, 23.0, 0.0)]
    assert fired(store.measurements(limit=100)) == every
    assert fired(store.measurements(limit=0)) == []


def test_measurements_limit_stops_the_query_early(db_path, clock):
    """The store's capped query steps SQLite through a few rows, not the
    whole range: counted in virtual-machine steps, on a connection of the
    test's own."""
    s = SqliteStore(db_path, clock, threaded=False)
    s.open()
    for i in range(20000):
        s.measure(f"h{i % 2}", float(i), 1.0)
    fired(s.close())
    db = sqlite3.connect(db_path)
    steps = [0]

    def step():
        steps[0] += 1
        return 0

    db.set_progress_handler(step, 100)
    try:
        whole = len(db.execute(*sqlite_module._measurements_sql(["h0", "h1"], 0.0, None)).fetchall())
        whole_steps, steps[0] = steps[0], 0
        limited = len(db.execute(*sqlite_module._measurements_sql(["h0", "h1"], 0.0, None, 11)).fetchall())
    finally:
        db.close()
    assert (whole, limited) == (20000, 11)
    assert steps[0] * 100 < whole_steps  # the index gives rows in order: no sort of the whole range


def test_queries_see_committed_data_only(store):
    store.record("event", "e1", 1.0)
    assert fired(store.journal()) == []
    fired(store.durable())
    assert len(fired(store.journal())) == 1


# ------------------------------------------------------------ prune


def test_prune_downsamples_old_raw_readings_and_drops_what_is_past_retention(db_path, clock):
    s = SqliteStore(db_path, clock, raw_hours=1, downsample_s=60, retention_days=1)
    s.open()
    now = 10 * 86400.0
    old = now - 3600 - 600  # 70 minutes ago: past raw_hours
    for i in range(24):  # every 5 s for 2 minutes, two subjects
        s.measure("h1", old + 5 * i, 100.0 + i)
        s.measure("h2", old + 5 * i, 50.0)
    s.measure("h1", now - 60, 999.0)  # recent: stays raw
    s.measure("h1", now - 2 * 86400, 5.0)  # past retention
    s.record("round", "e1", now - 2 * 86400)  # past retention
    s.record("round", "e1", now - 3600 * 5)  # kept
    s.put("events", "e0", {"end": now - 30 * 86400})  # state is never pruned
    fired(s.durable())
    fired(s.prune(now))
    samples = fired(s.measurements())
    assert samples == [
        Sample("h1", old, sum(100.0 + i for i in range(12)) / 12, 60.0),
        Sample("h1", old + 60, sum(100.0 + i for i in range(12, 24)) / 12, 60.0),
        Sample("h1", now - 60, 999.0, 0.0),
        Sample("h2", old, 50.0, 60.0),
        Sample("h2", old + 60, 50.0, 60.0),
    ]
    assert [e.at for e in fired(s.journal())] == [now - 3600 * 5]
    assert s.state("events") == {"e0": {"end": now - 30 * 86400}}
    # Idempotent.
    fired(s.prune(now))
    assert fired(s.measurements()) == samples
    fired(s.close())


def test_prune_averages_whole_buckets_only(db_path, clock):
    s = SqliteStore(db_path, clock, raw_hours=1, downsample_s=60)
    s.open()
    now = 100 * 86400.0 + 30  # the cut-off falls in the middle of a bucket
    cut = now - 3600
    s.measure("h1", cut - 40, 10.0)  # bucket [cut-30-60, cut-30): averaged
    s.measure("h1", cut - 20, 20.0)  # bucket [cut-30, cut+30): straddles, stays raw
    s.measure("h1", cut + 10, 30.0)
    fired(s.durable())
    fired(s.prune(now))
    assert fired(s.measurements()) == [Sample("h1", cut - 90, 10.0, 60.0), Sample("h1", cut - 20, 20.0, 0.0),
                                       Sample("h1", cut + 10, 30.0, 0.0)]
    fired(s.prune(now + 60))
    assert fired(s.measurements()) == [Sample("h1", cut - 90, 10.0, 60.0), Sample("h1", cut - 30, 25.0, 60.0)]
    fired(s.close())


def test_prune_works_in_short_transactions(db_path, clock, monkeypatch):
    monkeypatch.setattr(sqlite_module, "PRUNE_ROWS", 10)
    held = HeldJobs()
    s = SqliteStore(db_path, clock, raw_hours=1, downsample_s=60, retention_days=1, executor=held)
    s.open()
    now = 10 * 86400.0
    for i in range(25):
        s.record("budget", f"h{i}", now - 3 * 86400 + i)
        s.measure("h1", now - 2 * 86400 + i, 1.0)  # past retention
    for i in range(180):
        s.measure("h1", now - 7200 + i, float(i))  # three buckets to average
    d = s.durable()
    held.run_one()
    fired(d)
    pruned = s.prune(now)
    s.put("s", "k", 1)
    committed = s.durable()  # a commit goes between the prune's transactions
    steps = 0
    while held.waiting:
        held.run_one()
        steps += 1
    # journal 10+10+5, measurements 10+10+5 (and a look past), 3 buckets and a look: the commit among them
    assert steps == 3 + 3 + 4 + 1
    assert fired(committed) is None
    assert fired(pruned) is None
    d = s.measurements()
    held.run_one()
    assert fired(d) == [Sample("h1", now - 7200 + 60 * b, 29.5 + 60 * b, 60.0) for b in range(3)]
    d = s.close()
    while held.waiting:
        held.run_one()
    fired(d)


# ------------------------------------------------------------ config


def ini(text, source="/etc/jeisson/aggregator.ini"):
    return IniFile(textwrap.dedent(text), source)


def test_config_defaults_to_a_file_beside_the_ini():
    f = ini("[aggregator]\n")
    assert read_store(f, 0.5) == StoreConfig(path="/etc/jeisson/aggregator.sqlite", batch_s=0.5)


def test_config_relative_path_is_from_the_ini_folder():
    f = ini("""\
        [store]
        path = state/home1.db
        batch_s = 30
        retention_days = 30
        raw_hours = 24
        downsample_s = 300
    """, source="etc/home1.ini")
    folder = os.path.dirname(os.path.abspath("etc/home1.ini"))
    assert read_store(f, 0.5) == StoreConfig(path=os.path.join(folder, "state/home1.db"), batch_s=30,
                                             retention_days=30, raw_hours=24, downsample_s=300)
    f.check_unknown()


def test_config_absolute_path_none_and_memory():
    assert read_store(ini("[store]\npath = /var/lib/j/a.sqlite\n"), 0.5).path == "/var/lib/j/a.sqlite"
    assert read_store(ini("[store]\npath = none\n"), 0.5) is None
    assert read_store(ini("[store]\npath = :memory:\n"), 0.5).path == ":memory:"


def test_config_from_text_defaults_to_memory_and_cwd():
    assert read_store(ini("", source="<string>"), 2).path == ":memory:"
    assert read_store(ini("[store]\npath = x.sqlite\n", source="<string>"), 2).path == os.path.join(
        os.getcwd(), "x.sqlite")


@pytest.mark.parametrize("text, match", [
    ("batch_s = 0", r"\[store\] batch_s: expected a number from 0.01 to 3600"),
    ("retention_days = 0.5", r"\[store\] retention_days"),
    ("raw_hours = 9000", r"\[store\] raw_hours"),
    ("downsample_s = 0", r"\[store\] downsample_s"),
    ("path =", r"\[store\] path: must not be empty"),
    ("retention_days = 1\nraw_hours = 48", r"\[store\] raw_hours: must be less than retention_days"),
])
def test_config_errors_name_the_file_section_and_key(text, match):
    from jeisson.config import ConfigError

    with pytest.raises(ConfigError, match="/etc/jeisson/aggregator.ini: " + match):
        read_store(ini("[store]\n" + text + "\n"), 0.5)


# ------------------------------------------------------------ service


def test_service_prunes_at_start_and_hourly_and_closes_at_stop(db_path, clock):
    config = StoreConfig(path=db_path, batch_s=0.5, raw_hours=1, retention_days=1)
    store = open_store(config, clock, threaded=False)
    service = StoreService(store, clock)
    assert IService.providedBy(service)
    clock.advance(10 * 86400)
    store.record("round", "e1", 0.0)  # past retention
    fired(store.durable())
    service.startService()
    assert fired(store.journal()) == []
    store.record("round", "e1", clock.seconds())
    fired(store.durable())
    clock.advance(86400 + 3600)
    assert fired(store.journal()) == []  # pruned by the hourly run
    store.put("s", "k", 1)  # queued, not yet committed
    fired(service.stopService())
    assert rows(db_path, "SELECT value FROM state") == [("1",)]
    with pytest.raises(StoreError):
        store.put("s", "k", 2)


def test_open_store_refuses_what_cannot_be_opened(db_path, clock):
    with open(db_path, "w") as f:
        f.write("x" * 4096)
    with pytest.raises(StoreError, match=db_path):
        open_store(StoreConfig(path=db_path, batch_s=0.5), clock, threaded=False)


# ------------------------------------------------------------ threads, real reactor, kill -9

THREADED = """
import sys
from twisted.internet import reactor, defer
from jeisson.store import sqlite as sqlite_module
from jeisson.store.sqlite import SqliteStore

path, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
store = SqliteStore(path, reactor, batch_s=0.2, threaded=True, reactor=reactor)
store.open()

@defer.inlineCallbacks
def main():
    main_thread = __import__("threading").current_thread()
    for i in range(n):
        store.record("commit", f"h{i % 7}", float(i), {"i": i}, round=i)
        store.put("power", f"h{i % 7}", i)
        store.measure(f"h{i % 7}", float(i), float(i))
        if i % 100 == 99:
            yield defer.succeed(None)
    yield store.durable()
    assert __import__("threading").current_thread() is main_thread
    print("DURABLE", flush=True)
    if mode == "kill":
        yield defer.Deferred()  # wait for the kill
    entries = yield store.journal(subjects=["h3"], limit=2, newest_first=True)
    print("JOURNAL", [e.detail["i"] for e in entries], flush=True)
    count = yield store.export_csv(path + ".csv")
    print("CSV", count, flush=True)
    yield store.prune(0.0)
    store.put("power", "late", 1)  # queued: close() commits it
    yield store.close()
    print("CLOSED", store.stats.commits > 0, flush=True)

def stop(result):
    if hasattr(result, "printTraceback"):
        result.printTraceback()
    reactor.stop()

reactor.callWhenRunning(lambda: main().addBoth(stop))
reactor.run()
"""


def run_threaded(db_path, n, mode):
    return subprocess.Popen([sys.executable, "-c", THREADED, db_path, str(n), mode], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": REPO})


def test_threaded_store_under_the_real_reactor(db_path):
    proc = run_threaded(db_path, 700, "run")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["DURABLE", "JOURNAL [696, 689]", "CSV 700", "CLOSED True"]
    assert rows(db_path, "SELECT count(*) FROM journal") == [(700,)]
    assert rows(db_path, "SELECT value FROM state WHERE key = 'late'") == [("1",)]


def test_kill_9_right_after_durable_loses_nothing(db_path):
    n = 5000
    proc = run_threaded(db_path, n, "kill")
    try:
        line = proc.stdout.readline()
        assert line == "DURABLE\n", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # Reopened as a restarted jeisson would (the WAL recovered).
    s = SqliteStore(db_path, Clock())
    s.open()
    assert s.state("power") == {f"h{k}": max(i for i in range(n) if i % 7 == k) for k in range(7)}
    entries = fired(s.journal())
    assert [e.detail["i"] for e in entries] == list(range(n))
    assert len(fired(s.measurements())) == n
    fired(s.close())


# ------------------------------------------------------------ a hung commit, a long failure, the last moment


def test_a_hung_commit_fails_what_waits_for_it_and_every_durable_until_it_returns(db_path, clock, logs):
    jobs = HeldJobs()
    s = SqliteStore(db_path, clock, batch_s=0.5, executor=jobs, hang_s=30)
    s.open()
    jobs.run_all()
    s.put("home", "h1", {"w": 1000})
    waiting = s.durable()
    assert len(jobs.waiting) == 1, "the commit is in flight, and does not return"
    clock.advance(29)
    assert not waiting.called
    clock.advance(1)
    assert failure_of(waiting).check(StoreError)
    assert "has not returned for 30 s" in str(failure_of(s.durable()).value)
    assert s.stats.hangs == 1
    errors = [formatEvent(e) for e in logs if e["log_level"].name == "error"]
    assert len(errors) == 1 and "has not returned for 30 s" in errors[0] and db_path in errors[0]
    s.put("home", "h2", {"w": 500})
    clock.advance(10)
    jobs.run_all()  # the disk answers again: the hung commit returns, committed
    assert any("returned after 40 s (committed)" in formatEvent(e) for e in logs)
    later = s.durable()
    jobs.run_all()
    assert fired(later) is None
    assert rows(db_path, "SELECT key FROM state ORDER BY key") == [("h1",), ("h2",)]
    closing = s.close()
    jobs.run_all()
    fired(closing)


def test_rows_queued_while_commits_fail_are_bounded_oldest_measurements_first(db_path, clock, logs):
    s = SqliteStore(db_path, clock, batch_s=0.5, busy_timeout_s=0.01, max_pending_rows=10)
    s.open()
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    s.put("home", "h1", {"w": 1})
    s.record("budget", "h1", 1.0, {"w": 1})
    failure_of(s.durable())
    logs.clear()  # the failure, logged once: expected
    for i in range(20):
        s.measure("h1", 10.0 + i, 100.0 + i)
    s.record("budget", "h1", 2.0, {"w": 2})
    clock.advance(0.5)  # fails again
    assert s.stats.rows_dropped == 13, "23 rows queued, 10 kept"
    dropped = [formatEvent(e) for e in logs if "are dropped" in formatEvent(e)]
    assert len(dropped) == 1
    logs.clear()
    other.execute("ROLLBACK")
    other.close()
    clock.advance(0.5)
    assert rows(db_path, "SELECT COUNT(*) FROM state") == [(1,)]
    assert rows(db_path, "SELECT at FROM journal ORDER BY id") == [(1.0,), (2.0,)], "the journal kept"
    assert rows(db_path, "SELECT at FROM measurements ORDER BY at") == [(float(t),) for t in range(23, 30)], \
        "the newest measurements kept"
    fired(s.close())


def test_close_now_commits_what_a_failed_commit_in_flight_held(db_path, clock, logs):
    """At the reactor's end, a commit in flight that failed has no callback
    left to put its rows back: close_now commits them with the rest."""
    jobs = HeldJobs()
    s = SqliteStore(db_path, clock, batch_s=0.5, executor=jobs)
    s.open()
    jobs.run_all()
    s.record("switch", "h1.heater", 1.0, {"on": False})
    s.durable()
    assert len(jobs.waiting) == 1
    jobs.waiting.pop(0)  # the commit in flight never ran (its thread failed); no callback comes
    s.record("switch", "h1.heater", 2.0, {"on": True})
    s.close_now()
    assert rows(db_path, "SELECT at FROM journal ORDER BY id") == [(1.0,), (2.0,)]


def test_close_now_does_not_repeat_a_commit_in_flight_that_succeeded(db_path, clock, logs):
    jobs = HeldJobs()
    s = SqliteStore(db_path, clock, batch_s=0.5, executor=jobs)
    s.open()
    jobs.run_all()
    s.record("switch", "h1.heater", 1.0, {"on": False})
    s.durable()
    role, job, d = jobs.waiting.pop(0)
    job()  # committed on the writer; its callback never reaches the reactor
    s.record("switch", "h1.heater", 2.0, {"on": True})
    s.close_now()
    assert rows(db_path, "SELECT at FROM journal ORDER BY id") == [(1.0,), (2.0,)]


def test_before_commit_hooks_queue_their_writes_into_the_commit_they_precede(db_path, clock, logs):
    s = SqliteStore(db_path, clock, batch_s=0.5)
    s.open()
    waiting = {"a": 1}
    calls = []

    def hook():
        calls.append(clock.seconds())
        while waiting:
            key, value = waiting.popitem()
            s.put("coalesced", key, value)

    s.before_commit(hook)
    s.soon()  # nothing queued yet, but a commit within the batch time
    clock.advance(0.5)
    assert calls == [0.5] and s.state("coalesced") == {"a": 1}
    waiting["b"] = 2
    assert fired(s.durable()) is None, "durable() asks the hooks first"
    assert s.state("coalesced") == {"a": 1, "b": 2}

    def broken():
        raise RuntimeError("boom")

    s.before_commit(broken)
    s.put("x", "y", 1)
    fired(s.durable())
    assert [formatEvent(e) for e in logs if "log_failure" in e] == [
        f"store {db_path}: a writer failed to queue its writes before a commit"]
    logs.clear()
    waiting["c"] = 3
    fired(s.close())
    logs.clear()  # the broken hook, once more as the store closed
    assert rows(db_path, "SELECT key FROM state WHERE scope = 'coalesced' ORDER BY key") == [("a",), ("b",), ("c",)]


def test_a_durable_waiting_while_journal_entries_are_dropped_is_not_told_they_are_stored(db_path, clock, logs):
    s = SqliteStore(db_path, clock, batch_s=0.5, busy_timeout_s=0.01, max_pending_rows=5)
    s.open()
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    s.record("switch", "h1.heater", 1.0, {"on": True})
    failure_of(s.durable())
    logs.clear()
    waiting = s.durable()  # waits for the retry
    assert not waiting.called
    for i in range(10):
        s.record("switch", "h1.heater", 2.0 + i, {"on": bool(i % 2)})
    assert "were dropped" in str(failure_of(waiting).value)
    logs.clear()
    other.execute("ROLLBACK")
    other.close()
    closing = s.close()
    clock.advance(0.5)  # the retry, on the batch's timer
    fired(closing)
