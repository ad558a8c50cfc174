"""The store's cost to the aggregator, side by side: ``python bench/store_cost.py``.

In one run, four figures, each beside its baseline:

**cycle**
    The aggregator's round cycle at 1,000 and at 10,000 homes, with the
    store off (``[store] path = none``) and on (the default: a file beside
    the ini, in a temporary folder; ``threaded=True`` on the real reactor,
    ``synchronous = FULL``, ``batch_s`` 0.5), opened as ``twistd
    jeisson-aggregator`` opens it (``open_store``, ``StoreService``,
    ``Aggregator(..., store=...)``).  Each arm is a process of its own, both
    up side by side, and the bench gives them their events alternately
    (off, on, off, on, ...) so that the machine's noise falls on both.  A
    process is one real ``Aggregator`` with its real ``HomeSession`` per
    home, and N simulated homes in memory (``jeisson.simulation``'s links,
    each line delivered on the reactor's next turn, as over a socket): a
    home speaks protocol version 2, and on a ``BUDGET`` keeps its most
    valuable loads that fit, sends its new ``FLEX`` and its ``COMMIT`` (no
    board: it switches at once).  Each event (60 % of the demand) is added
    as the manhole adds one (``add_event``, answered once durable) 0.5 s
    ahead; the **cycle** is its first round as the aggregator logs it
    (``round took N ms``: from its start on the aggregator's timer to the
    last commitment counted; with the store, the round's number is durable
    before its budgets go out).  The event is then cancelled (every home
    released: ``RELEASE``, its new ``FLEX``, its ``COMMIT`` and one
    ``MEASURE``), and the next waits until the homes' records are written
    (``memory.FLUSH_S``) and the store is idle.  Each process takes what it
    built at start-up out of the garbage collector's way (``gc.freeze``),
    as the helpers of ``bench/round_latency.py`` do.
    The homes run on the aggregator's reactor thread here, where in the
    field each has its own computer: their time is measured and reported
    (``homes``, wall time in their code, so it includes any wait for the
    interpreter's lock while the store's writer thread holds it), and with
    no network between them the cycle is shorter than over sockets, so the
    store's share of it is, if anything, overstated.  Also per round: when
    it was planned (``planned after``: with the store, once its number is
    durable too), the reactor thread's CPU time from the plan to the last
    commitment, and the whole process's (every thread's).
**peak write rate**
    Rows the store committed (``StoreStats.rows_written``) from the round's
    start until ``durable()`` after its last commitment, over that time:
    the aggregator's busiest moment, as the store's own stats count it.
    The homes' steady ``MEASURE`` stream (one every ``measure_period_s``, 5 s
    by default: N / 5 rows per second) comes on top; ``bench/store_rate.py``
    measures what the writer can take.
**size**
    The store file (and its ``-wal``) after the run, and bytes per journal
    entry, per measurement and per home record, from SQLite's ``dbstat``
    (pages of each table and its indexes, slack included), extrapolated to
    a home's day under stated assumptions (printed with the figure), from
    the 1,000-home file (its process stopped cleanly).
**resume**
    The 10,000-home process with the store is killed with SIGKILL in the
    middle of a round after its last event.  Then, several times, each on a
    fresh copy of the files the kill left (database, ``-wal``, ``-shm``), a
    new process does what ``twistd jeisson-aggregator`` does before it
    serves: read the config (timed apart: the same without a store), open
    the store (``open_store``: the WAL replayed, the schema checked, the
    threads started), read the state and construct the resumed
    ``Aggregator``, ``start()`` it and listen; ``resume`` is from opening
    the store to listening, the state read timed within it.  The baseline:
    the same steps at 10,000 homes with the store off, alternately.

The last line holds the figures as ``key=value``.  ``--profile`` runs both
arms' reactor threads under cProfile from each round's plan to its last
commitment (no kill, no resume) and prints where their time goes, the
store's listener by moment.  ``--batch-s`` sets the store's ``batch_s``;
``JEISSON_TREE=/path`` measures the jeisson in another tree (a prototype).
"""

import argparse
import json
import os
import pathlib
import random
import select
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, cast

HERE = pathlib.Path(__file__).resolve()
# This tree's jeisson, not a copy installed in the environment; or, to
# measure a prototype, the tree JEISSON_TREE names (the arms inherit it).
ROOT = pathlib.Path(os.environ.get("JEISSON_TREE") or HERE.parent.parent).resolve()
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LEAD_S = 0.5  # an event starts this long after it is added
LOADS = 8

# The extrapolation to a day (say so with the figure).
MEASURE_PERIOD_S = 5.0  # the home's default measure_period_s
EVENT_HOURS = 8.0  # of events per day
ROUND_PERIOD_S = 30.0  # the aggregator's default round_period_s: one round per period in an event
EVENTS_PER_DAY = 1
RAW_HOURS = 48.0  # [store] raw_hours default
DOWNSAMPLE_S = 60.0  # [store] downsample_s default


def config_text(homes: int, store: bool, batch_s: float | None = None) -> str:
    """An aggregator's ini: rounds only when an event starts (converge_s 0,
    a period of an hour), heartbeats out of the way (an hour).  With the
    store: the default (a file beside the ini, named after it), or
    ``batch_s`` if given."""
    lines = ["[aggregator]\nlisten = tcp:0:interface=127.0.0.1\nheartbeat_s = 3600\nround_period_s = 3600\n"
             "round_timeout_s = 60\nconverge_s = 0\nseed = 1\n"]
    if not store:
        lines.append("[store]\npath = none\n")
    elif batch_s is not None:
        lines.append(f"[store]\nbatch_s = {batch_s}\n")
    lines += [f"[home:{home_id(i)}]\nsecret = s-{home_id(i)}\n" for i in range(homes)]
    return "".join(lines)


def demand_w(homes: int) -> float:
    return float(sum(w for i in range(homes) for w, _ in loads_of(i, LOADS)))


# -------------------------------------------- as in bench/round_latency.py


def home_id(i: int) -> str:
    return f"h{i:05d}"


def loads_of(i: int, loads: int) -> list[tuple[int, int]]:
    """Home ``i``'s loads (rated W, priority): the fleet of ``bench/round_latency.py``."""
    rng = random.Random(i)
    return [(rng.randint(100, 5000), rng.randint(1, 10)) for _ in range(loads)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for {pid}")


def read_json_line(process: "subprocess.Popen[str]", seconds: float) -> dict[str, Any]:
    """The process's next JSON line, waiting at most ``seconds``."""
    assert process.stdout is not None
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        # readline() would block past the deadline: wait for data first.
        if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
            raise TimeoutError(f"{process.args!r} said nothing within {seconds} s")
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"{process.args!r} ended: {process.poll()}")
        line = line.strip()
        if line.startswith("{"):
            reply: dict[str, Any] = json.loads(line)
            return reply


def quiet_logging(reactor: Any) -> None:
    """Warnings and errors only, to stderr."""
    from twisted.logger import ILogObserver, LogLevel, globalLogBeginner, textFileLogObserver

    shown = {LogLevel.warn, LogLevel.error, LogLevel.critical}
    to_stderr = textFileLogObserver(sys.stderr)

    def observer(event: Any) -> None:
        # Each event's single round is, by design, not followed up.
        if event.get("log_level") in shown and "did not converge" not in event.get("log_format", ""):
            to_stderr(event)

    globalLogBeginner.beginLoggingTo([cast(ILogObserver, observer)], redirectStandardIO=False)


def pipes(reactor: Any) -> Any:
    """``jeisson.simulation``'s in-memory links, delivered by the reactor: a
    line waits for the reactor's next turn (not within the sender's call),
    as over a socket; one timer for all of them."""
    from jeisson.simulation import LinkEnd, Network

    class Pipes(Network):
        def send(self, end: LinkEnd, data: bytes) -> None:
            if not self.queue:
                reactor.callLater(0, self.deliver_queued)
            super().send(end, data)

        def deliver_queued(self) -> None:
            for _ in range(len(self.queue)):
                self.deliver()
            if self.queue:
                reactor.callLater(0, self.deliver_queued)

    return Pipes()


# ------------------------------------------------------------- one arm


class Tally:
    """What the simulated homes did, and the time they took on the reactor thread."""

    def __init__(self) -> None:
        self.welcomed = 0
        self.home_s = 0.0
        self.budgets = 0
        self.released = 0


class SimulatedHome:
    """A home in memory, on ``end`` (a ``jeisson.simulation.LinkEnd``): it
    says ``HELLO`` and its ``FLEX``; on a ``BUDGET`` it keeps its most
    valuable loads that fit (by priority, first fit), sends its new
    ``FLEX`` and its ``COMMIT`` naming the bid the budget answered; on a
    ``RELEASE`` it takes every load back, and also reports a ``MEASURE``."""

    def __init__(self, i: int, end: Any, tally: Tally, clock: Any):
        from jeisson.wire import aggregator_home as wire

        self.wire = wire
        self.id = home_id(i)
        self.end = end
        self.tally = tally
        self.clock = clock
        self.version = 1
        self.bid = 0
        self.table = [(f"{self.id}-l{k + 1}", float(w), p) for k, (w, p) in enumerate(loads_of(i, LOADS))]
        self.by_value = sorted(range(len(self.table)), key=lambda k: -self.table[k][2])
        self.offers = [(wire.LoadOffer(load_id, w, p, "may", False, False, True),
                        wire.LoadOffer(load_id, w, p, "may", True, False, True)) for load_id, w, p in self.table]
        self.on = [True] * len(self.table)

    def send(self, message: Any) -> None:
        self.end.send_line(self.wire.serialize(message, self.version))

    def hello(self) -> None:
        self.send(self.wire.Hello(self.id, f"s-{self.id}", self.wire.PROTOCOL_VERSIONS))

    def offer(self) -> None:
        self.bid += 1
        self.send(self.wire.Flex(self.bid, tuple(offer[on] for offer, on in zip(self.offers, self.on, strict=True))))

    def answer(self, round_number: int, room: float) -> None:
        wanted = [False] * len(self.table)
        for k in self.by_value:
            w = self.table[k][1]
            if w <= room:
                wanted[k] = True
                room -= w
        self.on = wanted
        answered = self.bid
        self.offer()
        on = tuple(self.table[k][0] for k in range(len(wanted)) if wanted[k])
        self.send(self.wire.Commit(round_number, answered, self.drawn_w(), on))

    def drawn_w(self) -> float:
        return sum(w for (_, w, _), on in zip(self.table, self.on, strict=True) if on)

    def line_received(self, line: bytes) -> None:
        started = time.perf_counter()
        wire = self.wire
        message = wire.parse_line(line, self.version)
        if isinstance(message, wire.Budget):
            self.tally.budgets += 1
            self.answer(message.round, message.budget_w)
        elif isinstance(message, wire.Release):
            self.tally.released += 1
            self.answer(message.round, float("inf"))
            self.send(wire.Measure(self.clock.seconds(), self.drawn_w(),
                                   tuple((load_id, w) for (load_id, w, _), on in zip(self.table, self.on, strict=True)
                                         if on)))
        elif isinstance(message, wire.Welcome):
            self.version = message.version
            self.tally.welcomed += 1
            self.offer()
        elif isinstance(message, wire.Ping):
            self.send(wire.Pong(message.n))
        elif isinstance(message, wire.Error | wire.Refused):
            raise SystemExit(f"{self.id}: the aggregator said {message}")
        self.tally.home_s += time.perf_counter() - started

    def line_too_long(self, error: Any) -> None:
        raise SystemExit(f"{self.id}: a line from the aggregator is too long: {error}")

    def connection_lost(self, reason: Any) -> None:
        pass


def run_arm(ini: str, profile_to: str | None) -> None:
    """One arm: an aggregator as ``twistd jeisson-aggregator`` builds it, and
    its homes in memory.  Commands on standard input (``round K``, ``quit``),
    one JSON line out for each."""
    import cProfile
    import gc

    from twisted.internet import reactor, stdio, task, threads
    from twisted.protocols.basic import LineReceiver

    from jeisson.aggregator.config import read_config
    from jeisson.aggregator.core import Aggregator
    from jeisson.aggregator.home_link import HomeSession
    from jeisson.aggregator.listeners import AggregatorListener
    from jeisson.aggregator.memory import FLUSH_S
    from jeisson.store.service import StoreService, open_store

    quiet_logging(reactor)
    config = read_config(ini)
    store = open_store(config.store, reactor, reactor=reactor) if config.store is not None else None
    if store is not None:
        StoreService(store, reactor).startService()
    aggregator = Aggregator(config, reactor, solve_in_thread=threads.deferToThread, store=store)
    homes = len(config.homes)
    limit_kw = 0.6 * demand_w(homes) / 1000
    tally = Tally()
    links = pipes(reactor)
    settle_s = FLUSH_S + 1.0 + homes / 4000
    # The reactor thread from each round's plan to its last commitment.
    profiler = cProfile.Profile() if profile_to else None

    def rows() -> int:
        return store.stats.rows_written if store is not None else 0

    def commits() -> int:
        return store.stats.commits if store is not None else 0

    class Bench(LineReceiver):
        delimiter = b"\n"

        def say(self, **fields: Any) -> None:
            self.sendLine(json.dumps(fields).encode())

        def lineReceived(self, line: bytes) -> None:  # noqa: N802 (Twisted)
            command, *rest = line.decode().split()
            if command == "round":
                watch.begin(int(rest[0]))
            elif command == "quit":
                quit_()

        def connectionLost(self, reason: Any = None) -> None:  # noqa: N802 (Twisted)
            if reactor.running:
                reactor.stop()

    class Watch(AggregatorListener):
        """One event at a time: its first round, then the quiet after it."""

        def __init__(self) -> None:
            self.event: str | None = None
            self.at: dict[str, float] = {}

        def begin(self, k: int) -> None:
            self.event = f"e{k}"
            self.at = {}
            start = reactor.seconds() + LEAD_S
            aggregator.add_event(self.event, limit_kw, start, start + 3600).addErrback(self.failed)

        def round_started(self, round_number: int, event: Any, homes: int) -> None:
            if event.id != self.event or "t" in self.at:
                return
            tally.home_s = 0.0
            self.at.update(t=time.perf_counter(), rows=rows(), commits=commits(), thread=time.thread_time(),
                           process=time.process_time(), planned=reactor.seconds())
            bench.say(started=round_number)
            if profiler is not None:
                profiler.enable()

        def round_finished(self, summary: Any) -> None:
            if summary.event != self.event or "cycle_ms" in self.at:
                return
            if profiler is not None:
                profiler.disable()
            late = sum(1 for figures in summary.homes.values() if figures.get("committed_w") is None)
            self.at.update(cycle_ms=(summary.finished - summary.started) * 1e3, homes_ms=tally.home_s * 1e3,
                           planned_ms=(self.at["planned"] - summary.started) * 1e3,
                           reactor_cpu_ms=(time.thread_time() - self.at["thread"]) * 1e3,
                           cpu_ms=(time.process_time() - self.at["process"]) * 1e3, late=late,
                           within=summary.within_limit)
            reactor.callLater(0, self.after)

        def after(self) -> None:
            event = self.event
            assert event is not None
            d = aggregator.durable()
            d.addCallback(self.written)
            d.addCallback(lambda _: aggregator.cancel_event(event))
            d.addCallback(lambda _: task.deferLater(reactor, settle_s, aggregator.durable))
            d.addCallback(self.report)
            d.addErrback(self.failed)

        def written(self, _: object) -> None:
            took = time.perf_counter() - self.at["t"]
            written = rows() - self.at["rows"]
            self.at.update(rows=written, commits=commits() - self.at["commits"], write_s=took,
                           rows_per_s=written / took)

        def report(self, _: object) -> None:
            at = self.at
            bench.say(round=self.event, cycle_ms=at["cycle_ms"], homes_ms=at["homes_ms"],
                      planned_ms=at["planned_ms"],
                      reactor_cpu_ms=at["reactor_cpu_ms"], cpu_ms=at["cpu_ms"], rows=at["rows"],
                      commits=at["commits"], rows_per_s=at["rows_per_s"], write_ms=at["write_s"] * 1e3,
                      late=at["late"], within=at["within"], budgets=tally.budgets, released=tally.released)

        def failed(self, failure: Any) -> None:
            bench.say(error=failure.getTraceback())

    def quit_() -> None:
        aggregator.stop()
        closing = store.close() if store is not None else task.deferLater(reactor, 0, lambda: None)

        def closed(_: object) -> None:
            if profiler is not None and profile_to:
                profiler.dump_stats(profile_to)
            bench.say(bye=True, rows_written=rows(), commits=commits())
            reactor.callLater(0.1, reactor.stop)

        closing.addBoth(closed)

    watch = Watch()
    aggregator.add_listener(watch)
    bench = Bench()
    stdio.StandardIO(bench)
    aggregator.start()
    started = time.perf_counter()

    def connect(first: int) -> None:
        for i in range(first, min(first + 500, homes)):
            ours, theirs = links.pair(f"127.0.0.1:{10000 + i}", "aggregator")
            ours.session = HomeSession(aggregator, ours)
            home = SimulatedHome(i, theirs, tally, reactor)
            theirs.session = home
            home.hello()
        if first + 500 < homes:
            reactor.callLater(0, connect, first + 500)
        else:
            waiting.start(0.1)

    def all_welcomed() -> None:
        if tally.welcomed < homes:
            return
        waiting.stop()
        # Every bid in, the homes' records written: then quiet.
        task.deferLater(reactor, FLUSH_S + 1.0, aggregator.durable).addCallbacks(ready, watch.failed)

    def ready(_: object) -> None:
        gc.collect()
        gc.freeze()
        bench.say(ready=homes, setup_s=time.perf_counter() - started, rows_written=rows())

    waiting = task.LoopingCall(all_welcomed)
    reactor.callWhenRunning(connect, 0)
    reactor.run()


# ---------------------------------------------------------- the resume


def run_resume(ini: str) -> None:
    """What ``twistd jeisson-aggregator`` does before it serves, timed; one
    JSON line, then exit (the copy it ran on is thrown away)."""
    from twisted.internet import reactor, threads

    from jeisson.aggregator import memory
    from jeisson.aggregator.config import read_config
    from jeisson.aggregator.core import Aggregator
    from jeisson.aggregator.tap import home_factory
    from jeisson.store.service import open_store

    kept: dict[str, Any] = {}
    resume = memory.resume

    def timed_resume(store: Any) -> Any:
        started = time.perf_counter()
        result = resume(store)
        kept.update(state_s=time.perf_counter() - started, homes=len(result.homes), events=len(result.events),
                    last_number=result.last_number)
        return result

    memory.resume = timed_resume  # timed, then the real one
    t0 = time.perf_counter()
    config = read_config(ini)
    t1 = time.perf_counter()
    store = open_store(config.store, reactor, reactor=reactor) if config.store is not None else None
    t2 = time.perf_counter()
    aggregator = Aggregator(config, reactor, solve_in_thread=threads.deferToThread, store=store)
    t3 = time.perf_counter()
    aggregator.start()
    t4 = time.perf_counter()
    port = reactor.listenTCP(0, cast(Any, home_factory(aggregator)), backlog=4096, interface="127.0.0.1")
    t5 = time.perf_counter()
    state_s = kept.get("state_s", 0.0)
    print(json.dumps({"config_ms": (t1 - t0) * 1e3, "open_ms": (t2 - t1) * 1e3, "state_ms": state_s * 1e3,
                      "construct_ms": (t3 - t2 - state_s) * 1e3, "start_ms": (t4 - t3) * 1e3,
                      "listen_ms": (t5 - t4) * 1e3, "resume_ms": (t5 - t1) * 1e3, "homes": kept.get("homes", 0),
                      "events": kept.get("events", 0), "last_number": kept.get("last_number", 0),
                      "port": getattr(port.getHost(), "port", None)}), flush=True)
    os._exit(0)  # the threads, the port: nothing to keep


# ------------------------------------------------------------ the bench


class Arm:
    """One arm's process."""

    def __init__(self, work: pathlib.Path, homes: int, store: bool, profile: bool, batch_s: float | None = None):
        self.name = "on" if store else "off"
        self.homes = homes
        self.ini = work / f"aggregator-{homes}-{self.name}.ini"
        self.ini.write_text(config_text(homes, store, batch_s))
        self.store_path = self.ini.with_suffix(".sqlite")
        self.profile = str(self.ini.with_suffix(".prof")) if profile else None
        command = [sys.executable, str(HERE), "--arm", str(self.ini)]
        if self.profile:
            command += ["--profile-to", self.profile]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.rounds: list[dict[str, Any]] = []

    def ready(self) -> dict[str, Any]:
        reply = self.read(900)
        if "ready" not in reply:
            raise SystemExit(f"{self.name} at {self.homes} homes failed: {reply}")
        reply["rss_kib"] = rss_kib(self.process.pid)
        return reply

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def read(self, seconds: float) -> dict[str, Any]:
        reply = read_json_line(self.process, seconds)
        if "error" in reply:
            raise SystemExit(f"{self.name} at {self.homes} homes: {reply['error']}")
        return reply

    def round(self, k: int) -> dict[str, Any]:
        self.send(f"round {k}")
        while "round" not in (reply := self.read(300)):
            pass
        if reply["late"]:
            raise SystemExit(f"{self.name} at {self.homes} homes: {reply['late']} homes late in round {k}: {reply}")
        self.rounds.append(reply)
        return reply

    def quit(self) -> dict[str, Any]:
        self.send("quit")
        reply = self.read(120)
        self.process.wait(60)
        return reply

    def kill_mid_round(self, k: int, after_s: float) -> None:
        """SIGKILL ``after_s`` into the round of event ``k``."""
        self.send(f"round {k}")
        while "started" not in self.read(300):
            pass
        time.sleep(after_s)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def store_files(path: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in (path, pathlib.Path(f"{path}-wal"), pathlib.Path(f"{path}-shm")) if p.exists()]


def file_bytes(path: pathlib.Path) -> int:
    """The database and its write-ahead log, as ``StoreStats.size_bytes``."""
    return sum(p.stat().st_size for p in store_files(path) if not p.name.endswith("-shm"))


def copy_store(ini: pathlib.Path, into: pathlib.Path) -> pathlib.Path:
    """The ini and its store's files, as they are, into a fresh folder."""
    if into.exists():
        shutil.rmtree(into)
    into.mkdir()
    shutil.copy2(ini, into / ini.name)
    for p in store_files(ini.with_suffix(".sqlite")):
        shutil.copy2(p, into / p.name)
    return into / ini.name


def table_sizes(path: pathlib.Path) -> dict[str, Any]:
    """Bytes per table with its indexes (``dbstat``: whole pages, slack
    included) and rows, read from a copy (opening replays the WAL)."""
    db = sqlite3.connect(str(path))
    try:
        pages = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        owner: dict[str, str] = dict(db.execute("SELECT name, tbl_name FROM sqlite_schema "
                                                "WHERE type IN ('table', 'index')"))
        by_table: dict[str, int] = {}
        for name, size in pages.items():
            table = owner.get(str(name), str(name))
            by_table[table] = by_table.get(table, 0) + size
        kinds = dict(db.execute("SELECT kind, COUNT(*) FROM journal GROUP BY kind").fetchall())
        scopes = dict(db.execute("SELECT scope, COUNT(*) FROM state GROUP BY scope").fetchall())
        (measurements,) = db.execute("SELECT COUNT(*) FROM measurements").fetchone()
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
        (page_count,) = db.execute("PRAGMA page_count").fetchone()
    finally:
        db.close()
    return {"bytes": by_table, "kinds": kinds, "scopes": scopes, "measurements": measurements,
            "file": page_size * page_count}


def per_day(sizes: dict[str, Any], homes: int, rounds: int) -> dict[str, float]:
    """A home's day from the bytes per row measured, under the assumptions
    of the module's constants."""
    kinds = sizes["kinds"]
    entries = sum(kinds.values())
    journal_b = sizes["bytes"].get("journal", 0) / entries
    measure_b = sizes["bytes"].get("measurements", 0) / max(sizes["measurements"], 1)
    record_b = sizes["bytes"].get("state", 0) / max(sizes["scopes"].get("home", 1), 1)
    # Per home and round in the run: a budget and a commitment; per event a
    # release and the commitment that answers it; per round one summary.
    per_round = (kinds.get("budget", 0) + kinds.get("commit", 0) - kinds.get("release", 0)) / (homes * rounds)
    per_event = 2 * kinds.get("release", 0) / (homes * rounds)
    rounds_day = EVENT_HOURS * 3600 / ROUND_PERIOD_S
    journal_day = (rounds_day * (per_round + 1 / homes) + EVENTS_PER_DAY * per_event) * journal_b
    raw_day = 86400 / MEASURE_PERIOD_S * measure_b
    averaged_day = 86400 / DOWNSAMPLE_S * measure_b
    return {"journal_b": journal_b, "measure_b": measure_b, "record_b": record_b, "per_round": per_round,
            "rounds_day": rounds_day, "journal_day": journal_day, "raw_day": journal_day + raw_day,
            "day": journal_day + averaged_day}


def summary(rounds: list[dict[str, Any]], key: str) -> tuple[float, float]:
    values = [r[key] for r in rounds]
    return statistics.median(values), percentile(values, 0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="events per arm at 1,000 homes (and below)")
    parser.add_argument("--rounds-10000", type=int, default=8, help="events per arm above 1,000 homes")
    parser.add_argument("--resumes", type=int, default=5, help="resumes after the kill, each arm")
    parser.add_argument("--sizes", default="1000,10000", help="fleet sizes, comma-separated")
    parser.add_argument("--profile", action="store_true", help="both arms' reactor threads under cProfile; "
                        "where the time goes (no kill, no resume)")
    parser.add_argument("--batch-s", type=float, help="[store] batch_s for the arm with the store (default: the "
                        "aggregator's default)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    work = pathlib.Path(tempfile.mkdtemp(prefix="jeisson-store-cost-"))
    print(f"# folder {work}; jeisson from {ROOT}; cpus {os.cpu_count()}; load {os.getloadavg()[0]:.2f}",
          flush=True)
    figures: dict[int, Any] = {}
    killed: pathlib.Path | None = None
    arms: list[Arm] = []
    try:
        for homes in sizes:
            rounds = args.rounds if homes <= 1000 else args.rounds_10000
            off = Arm(work, homes, False, args.profile)
            arms.append(off)
            ready_off = off.ready()
            on = Arm(work, homes, True, args.profile, args.batch_s)
            arms.append(on)
            ready_on = on.ready()
            print(f"{homes} homes: off ready in {ready_off['setup_s']:.1f} s (RSS {ready_off['rss_kib'] / 1024:.0f} "
                  f"MiB), on ready in {ready_on['setup_s']:.1f} s (RSS {ready_on['rss_kib'] / 1024:.0f} MiB, "
                  f"{ready_on['rows_written']} rows written at registration)", flush=True)
            for k in range(rounds):
                a, b = off.round(k), on.round(k)
                print(f"{homes} homes event {k + 1}: off {a['cycle_ms']:.1f} ms (planned after {a['planned_ms']:.1f}, "
                      f"homes {a['homes_ms']:.1f} ms), on {b['cycle_ms']:.1f} ms (planned after "
                      f"{b['planned_ms']:.1f}, homes {b['homes_ms']:.1f} ms; {b['rows']} rows in "
                      f"{b['commits']} commits, {b['rows_per_s']:,.0f} rows/s to durable after "
                      f"{b['write_ms']:.0f} ms)", flush=True)
            kill = homes == max(sizes) and not args.profile
            off.quit()
            if kill:
                on.kill_mid_round(rounds, statistics.median(r["cycle_ms"] for r in on.rounds) / 2e3)
                killed = copy_store(on.ini, work / "killed")
            else:
                on.quit()
            size_copy = copy_store(on.ini, work / f"sizes-{homes}")
            figures[homes] = {"off": off.rounds, "on": on.rounds, "file": file_bytes(on.store_path),
                              "tables": table_sizes(size_copy.with_suffix(".sqlite")), "rounds": rounds + kill,
                              "rss": (ready_off["rss_kib"], ready_on["rss_kib"])}
            if args.profile:
                show_profiles(off.profile, on.profile, homes)

        resumes: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        if killed is not None:
            homes = max(sizes)
            off_ini = work / f"aggregator-{homes}-off.ini"
            for r in range(args.resumes):
                for name, ini in (("off", off_ini), ("on", killed)):
                    run_ini = copy_store(ini, work / f"resume-{name}-{r}")
                    started = time.perf_counter()
                    out = subprocess.run([sys.executable, str(HERE), "--resume", str(run_ini)], capture_output=True,
                                         text=True, timeout=600)
                    process_ms = (time.perf_counter() - started) * 1e3
                    if out.returncode != 0 or not out.stdout.strip():
                        raise SystemExit(f"resume {name} failed: {out.stderr}")
                    reply = json.loads(out.stdout.strip().splitlines()[-1])
                    reply["process_ms"] = process_ms
                    resumes[name].append(reply)
                    print(f"resume {r + 1} store {name}: config {reply['config_ms']:.0f} ms, then open "
                          f"{reply['open_ms']:.0f} ms, state {reply['state_ms']:.0f} ms ({reply['homes']} home "
                          f"records, {reply['events']} events, rounds after {reply['last_number']}), construct "
                          f"{reply['construct_ms']:.0f} ms, start {reply['start_ms']:.1f} ms, listen "
                          f"{reply['listen_ms']:.1f} ms: ready {reply['resume_ms']:.0f} ms after the config "
                          f"(process {process_ms:.0f} ms)", flush=True)
            if any(r["homes"] != homes for r in resumes["on"]):
                raise SystemExit("a resume did not read every home's record back")
        report(figures, resumes, sizes)
    finally:
        for arm in arms:
            arm.stop()
        if args.keep or args.profile:
            print(f"# work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def report(figures: dict[Any, Any], resumes: dict[str, list[dict[str, Any]]], sizes: list[int]) -> None:
    keys: list[str] = []
    peak = 0.0
    for homes in sizes:
        f = figures[homes]
        off_p50, off_p90 = summary(f["off"], "cycle_ms")
        on_p50, on_p90 = summary(f["on"], "cycle_ms")
        homes_off, _ = summary(f["off"], "homes_ms")
        homes_on, _ = summary(f["on"], "homes_ms")
        cpu_off, _ = summary(f["off"], "reactor_cpu_ms")
        cpu_on, _ = summary(f["on"], "reactor_cpu_ms")
        pcpu_off, _ = summary(f["off"], "cpu_ms")
        pcpu_on, _ = summary(f["on"], "cpu_ms")
        planned_off, _ = summary(f["off"], "planned_ms")
        planned_on, _ = summary(f["on"], "planned_ms")
        ratio = on_p50 / off_p50
        # The pairs, event by event (each on after its off): the spread of the ratio.
        pairs = sorted(b["cycle_ms"] / a["cycle_ms"] for a, b in zip(f["off"], f["on"], strict=True))
        rates = [r["rows_per_s"] for r in f["on"]]
        rows = statistics.median(r["rows"] for r in f["on"])
        peak = max(peak, max(rates))
        print(f"{homes} homes, {len(f['off'])} events each, alternating: cycle p50 / p90 off {off_p50:.1f} / "
              f"{off_p90:.1f} ms, on {on_p50:.1f} / {on_p90:.1f} ms: ratio {ratio:.2f} (event by event "
              f"{pairs[0]:.2f} to {pairs[-1]:.2f}); planned (with the store: and its number durable) after off "
              f"{planned_off:.1f}, on {planned_on:.1f} ms; of which the simulated homes off {homes_off:.1f}, on "
              f"{homes_on:.1f} ms; aggregator alone (cycle less homes) ratio "
              f"{(on_p50 - homes_on) / (off_p50 - homes_off):.2f}; reactor thread CPU off {cpu_off:.1f}, on "
              f"{cpu_on:.1f} ms; process CPU (all threads) off {pcpu_off:.1f}, on {pcpu_on:.1f} ms; RSS after "
              f"set-up off {f['rss'][0] / 1024:.0f}, on {f['rss'][1] / 1024:.0f} MiB")
        print(f"{homes} homes, store: {rows:.0f} rows per event's first round ({rows / homes:.2f} per home), "
              f"{statistics.median(rates):,.0f} rows/s (max {max(rates):,.0f}) from the round's start to durable")
        t = f["tables"]
        d = per_day(t, homes, f["rounds"])
        print(f"{homes} homes, size: file {f['file'] / 2**20:.1f} MiB after the run (with -wal; "
              f"{t['file'] / 2**20:.1f} MiB once the log is replayed); journal {sum(t['kinds'].values())} entries "
              f"({t['kinds']}), "
              f"{d['journal_b']:.0f} B each; measurements {t['measurements']}, {d['measure_b']:.0f} B each; home "
              f"records {t['scopes'].get('home', 0)}, {d['record_b']:.0f} B each (state, not per day)")
        keys += [f"homes_{homes}_off_ms={off_p50:.1f}", f"homes_{homes}_on_ms={on_p50:.1f}",
                 f"ratio_{homes}={ratio:.2f}", f"reactor_cpu_ratio_{homes}={cpu_on / cpu_off:.2f}"]
        figures[homes]["day"] = d
    # From the run that was stopped cleanly (the largest is killed mid-round).
    d = figures[min(sizes)]["day"]
    print(f"size per home and day, assuming a MEASURE every {MEASURE_PERIOD_S:g} s, {EVENT_HOURS:g} h of events a day "
          f"with a round every {ROUND_PERIOD_S:g} s ({d['rounds_day']:.0f} rounds, {d['per_round']:.2f} entries per "
          f"home and round, one summary per round) and {EVENTS_PER_DAY} release a day, raw readings averaged to "
          f"{DOWNSAMPLE_S:g} s after {RAW_HOURS:g} h: journal {d['journal_day'] / 1024:.0f} KiB, raw day "
          f"{d['raw_day'] / 1024:.0f} KiB, once downsampled {d['day'] / 1024:.0f} KiB")
    keys += [f"peak_rows_per_s={peak:.0f}", f"bytes_per_home_day={d['day']:.0f}",
             f"raw_bytes_per_home_day={d['raw_day']:.0f}"]
    if resumes["on"]:
        on = statistics.median(r["resume_ms"] for r in resumes["on"])
        off = statistics.median(r["resume_ms"] for r in resumes["off"])
        state = statistics.median(r["state_ms"] for r in resumes["on"])
        opened = statistics.median(r["open_ms"] for r in resumes["on"])
        config = statistics.median(r["config_ms"] for r in resumes["on"])
        print(f"resume after kill -9 at {max(sizes)} homes, median of {len(resumes['on'])}: {on:.0f} ms from "
              f"opening the store to listening (open {opened:.0f} ms, state {state:.0f} ms), against {off:.0f} ms "
              f"without a store; the config takes {config:.0f} ms before either")
        keys += [f"resume_{max(sizes)}_ms={on:.0f}", f"resume_{max(sizes)}_off_ms={off:.0f}"]
    print(" ".join(keys))


def show_profiles(off: str | None, on: str | None, homes: int) -> None:
    """Where each arm's reactor thread spent the rounds (from each plan to
    its last commitment), and the store's part of it."""
    import pstats

    listener = ("event_offered", "binding_event_changed", "home_joined", "home_left", "home_silent", "bid_received",
                "commitment_received", "measurement", "budget_sent", "home_released", "round_finished",
                "round_abandoned")
    for name, path in (("off", off), ("on", on)):
        if path is None or not os.path.exists(path):
            continue
        stats = pstats.Stats(path)
        raw = stats.stats  # type: ignore[attr-defined]
        total = sum(entry[2] for entry in raw.values())
        print(f"--- profile, {homes} homes, store {name}: the reactor thread in the rounds, {total * 1e3:.0f} ms "
              f"(under cProfile)")
        stats.sort_stats("tottime").print_stats(25)
        by_file: dict[str, float] = {}
        calls: dict[str, tuple[int, float]] = {}
        for (filename, _, function), (_, ncalls, tottime, cumtime, _) in raw.items():
            short = "/".join(pathlib.Path(filename).parts[-2:])
            by_file[short] = by_file.get(short, 0.0) + tottime
            if filename.endswith("aggregator/memory.py") and function in listener:
                calls[function] = (ncalls, cumtime)
        print("  own time by file: " + ", ".join(f"{f} {t * 1e3:.0f} ms" for f, t in
                                                 sorted(by_file.items(), key=lambda item: -item[1])[:12]))
        if calls:
            store_s = sum(cumtime for _, cumtime in calls.values())
            print(f"  the store's listener (memory.Memory), inclusive: {store_s * 1e3:.0f} ms of {total * 1e3:.0f} "
                  f"({100 * store_s / total:.0f} %): " + ", ".join(
                      f"{function} {n} calls {cumtime * 1e3:.0f} ms" for function, (n, cumtime) in
                      sorted(calls.items(), key=lambda item: -item[1][1])))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--arm":
        profile_to = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--profile-to" else None
        run_arm(sys.argv[2], profile_to)
    elif len(sys.argv) > 2 and sys.argv[1] == "--resume":
        run_resume(sys.argv[2])
    else:
        main()
