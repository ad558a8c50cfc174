"""What the store costs: ``python bench/store_rate.py``.

In one run, each figure side by side with its baseline:

- **peak**: rows committed per second when the aggregator writes a round's
  rows for 1,000 homes (per home a ``budget`` and a ``commit`` journal
  entry and a ``put`` of its last known power: 3,000 rows) and waits for
  ``durable()`` before writing the next, as fast as the disk allows,
  ``threaded=True`` under the real reactor; ``synchronous=FULL`` (what
  jeisson runs) beside ``NORMAL`` (a commit that survives a crash of the
  process but maybe not a power cut), runs interleaved.
- **cadence**: the same 3,000 rows every 0.5 s (the aggregator's peak),
  ``durable()`` after each: its latency (from the call to its callback on
  the reactor thread) p50 and p99, FULL and NORMAL on two files in the same
  run, a quarter period apart; and what the reactor thread spends queueing
  a row (``put``/``record``), which is all the store costs it.
- **size**: the store per home per day for the aggregator's pattern (per
  home a ``MEASURE`` every 5 s, raw for ``raw_hours`` then 60 s means; a
  ``budget`` and a ``commit`` per round every 30 s over an 8 h event day),
  raw and after downsampling, and the size at the end of ``retention_days``
  (90) that follows; on a ``Clock`` (``threaded=False``), ``synchronous=OFF``
  (size does not depend on it).
- **home**: a home with 4 boards, each read every 2 s, batched per 30 s
  (``batch_s = 30``): commits per hour and the bytes the process hands to
  the file system per hour (``wchar`` of ``/proc/self/io``: the WAL's
  pages and the checkpoints' copies of them into the file), the SD card's
  wear, FULL.

The last line holds the figures as ``key=value``.  ``--quick`` shortens
every part (a smoke run).
"""

import argparse
import os
import pathlib
import sqlite3
import statistics
import sys
import tempfile
import time

from twisted.internet import defer, task

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from jeisson.store.sqlite import SqliteStore  # noqa: E402

HOMES = 1000
PERIOD_S = 0.5


def home_ids(n: int) -> list[str]:
    return [f"home-{i:04d}" for i in range(n)]


def write_round(store: SqliteStore, homes: list[str], round_no: int, now: float) -> float:
    """A round's rows for every home; the seconds the caller spent queueing them."""
    started = time.perf_counter()
    for i, home in enumerate(homes):
        w = 1000 + (i * 37 + round_no * 11) % 3000
        store.record("budget", home, now, {"w": w, "event": "e1"}, round=round_no)
        store.record("commit", home, now, {"w": w - 50, "bid": [[0, 500], [1, 1000]]}, round=round_no)
        store.put("power", home, {"w": w - 50, "at": now})
    return time.perf_counter() - started


def open_store(folder: str, name: str, reactor, synchronous: str) -> SqliteStore:
    path = os.path.join(folder, name)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.unlink(path + suffix)
    store = SqliteStore(path, reactor, batch_s=PERIOD_S, threaded=True, reactor=reactor, synchronous=synchronous)
    store.open()
    return store


@defer.inlineCallbacks
def peak(reactor, folder: str, seconds: float, repeats: int):
    """Rows per second, FULL and NORMAL interleaved."""
    homes = home_ids(HOMES)
    rates: dict[str, list[float]] = {"FULL": [], "NORMAL": []}
    for repeat in range(repeats):
        for mode in (("FULL", "NORMAL") if repeat % 2 == 0 else ("NORMAL", "FULL")):
            store = open_store(folder, f"peak-{mode}.sqlite", reactor, mode)
            rows = 0
            started = time.perf_counter()
            round_no = 0
            while time.perf_counter() - started < seconds:
                write_round(store, homes, round_no, reactor.seconds())
                round_no += 1
                rows += 3 * len(homes)
                yield store.durable()
            rates[mode].append(rows / (time.perf_counter() - started))
            yield store.close()
    return {mode: statistics.median(r) for mode, r in rates.items()}


@defer.inlineCallbacks
def cadence(reactor, folder: str, batches: int):
    """durable() latency at the aggregator's peak, FULL and NORMAL side by side."""
    homes = home_ids(HOMES)
    stores = {mode: open_store(folder, f"cadence-{mode}.sqlite", reactor, mode) for mode in ("FULL", "NORMAL")}
    latencies: dict[str, list[float]] = {mode: [] for mode in stores}
    queueing: list[float] = []
    pending: list[defer.Deferred] = []

    def one(mode: str, round_no: int) -> None:
        store = stores[mode]
        queueing.append(write_round(store, homes, round_no, reactor.seconds()) / (3 * len(homes)))
        called = time.perf_counter()
        d = store.durable()
        d.addCallback(lambda _: latencies[mode].append(time.perf_counter() - called))
        pending.append(d)

    for n in range(batches):
        # FULL first on even rounds, NORMAL first on odd: neither always follows the other.
        first, second = ("FULL", "NORMAL") if n % 2 == 0 else ("NORMAL", "FULL")
        one(first, n)
        yield task.deferLater(reactor, PERIOD_S / 2, lambda: None)
        one(second, n)
        yield task.deferLater(reactor, PERIOD_S / 2, lambda: None)
    yield defer.gatherResults(pending)
    for store in stores.values():
        yield store.close()

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return ({mode: (pct(v, 0.5), pct(v, 0.99)) for mode, v in latencies.items()},
            statistics.median(queueing))


def on_writer(store: SqliteStore, work):
    """``work(db)`` on the open store's writer connection, its answer."""
    writer = store._writer
    if writer is None:
        raise SystemExit(f"store {store.path} is not open")
    return writer.run(work)


def used_bytes(store: SqliteStore) -> int:
    """Pages in use (not the free ones a prune leaves for reuse), after a checkpoint."""
    def measure(db):
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * page_size

    return on_writer(store, measure)


def size(folder: str, homes_n: int) -> dict[str, float]:
    """The aggregator's pattern for one day, on a Clock: bytes per home per day."""
    clock = task.Clock()
    path = os.path.join(folder, "size.sqlite")
    store = SqliteStore(path, clock, batch_s=60, raw_hours=48, downsample_s=60, synchronous="OFF")
    store.open()
    empty = used_bytes(store)
    homes = home_ids(homes_n)
    day = 86400
    event = (10 * 3600, 18 * 3600)
    round_no = 0
    for t in range(0, day, 5):
        clock.advance(5)
        for i, home in enumerate(homes):
            store.measure(home, float(t), 500.0 + (i * 97 + t) % 2500)
        if event[0] <= t < event[1] and t % 30 == 0:
            round_no += 1
            for i, home in enumerate(homes):
                w = 1000 + (i * 37 + round_no * 11) % 3000
                store.record("budget", home, float(t), {"w": w, "event": "e1"}, round=round_no)
                store.record("commit", home, float(t), {"w": w - 50, "bid": [[0, 500], [1, 1000]]}, round=round_no)
                store.put("power", home, {"w": w - 50, "at": float(t)})
    store.durable()
    raw = used_bytes(store) - empty

    journal_rows = on_writer(store, lambda db: db.execute("SELECT count(*) FROM journal").fetchone()[0])
    # Everything past raw_hours: the day's readings become 60 s means.
    store.prune(day + 48 * 3600 + 60)
    downsampled = used_bytes(store) - empty
    store.close()
    # The journal alone: drop the measurements and look again.
    db = sqlite3.connect(path)
    db.execute("DELETE FROM measurements")
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages, free, page_size = (db.execute(f"PRAGMA {p}").fetchone()[0]
                              for p in ("page_count", "freelist_count", "page_size"))
    db.close()
    journal = (pages - free) * page_size - empty
    per_home = 1 / homes_n
    return {
        "raw_day": raw * per_home,  # a day raw: measurements, journal and state
        "downsampled_day": downsampled * per_home,  # the same day once downsampled
        "journal_day": journal * per_home,
        "journal_rows_day": journal_rows * per_home,
    }


def home(folder: str, hours: float, boards: int) -> dict[str, float]:
    """A home's pattern, FULL, on a Clock: commits and bytes handed to the file system per hour."""
    clock = task.Clock()
    path = os.path.join(folder, "home.sqlite")
    store = SqliteStore(path, clock, batch_s=30, synchronous="FULL")
    store.open()
    before = wchar()
    commits = store.stats.commits
    seconds = int(hours * 3600)
    for t in range(0, seconds, 2):
        for b in range(boards):
            store.measure(f"board-{b}", clock.seconds(), 400.0 + (t * 13 + b * 101) % 1800)
        clock.advance(2)
    store.durable()
    written = wchar() - before
    commits = store.stats.commits - commits
    store.close()
    return {"commits_per_hour": commits / hours, "bytes_per_hour": written / hours}


def wchar() -> int:
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


@defer.inlineCallbacks
def main(reactor, args):
    folder = args.folder or tempfile.mkdtemp(prefix="jeisson-store-bench-")
    quick = args.quick
    print(f"# folder {folder} (the disk measured); cpus {os.cpu_count()}; load {os.getloadavg()[0]:.2f}", flush=True)

    rates = yield peak(reactor, folder, seconds=1.0 if quick else 3.0, repeats=2 if quick else 4)
    print(f"peak   rows/s committed (3,000-row rounds back to back): FULL {rates['FULL']:,.0f}   "
          f"NORMAL {rates['NORMAL']:,.0f}", flush=True)

    (lat, queue_s) = yield cadence(reactor, folder, batches=10 if quick else 60)
    print(f"cadence 3,000 rows every {PERIOD_S} s, durable() latency ms: FULL p50 {lat['FULL'][0] * 1e3:.1f} "
          f"p99 {lat['FULL'][1] * 1e3:.1f}   NORMAL p50 {lat['NORMAL'][0] * 1e3:.1f} p99 "
          f"{lat['NORMAL'][1] * 1e3:.1f}; reactor thread per row queued {queue_s * 1e6:.2f} us", flush=True)

    sizes = size(folder, homes_n=5 if quick else 20)
    retained = 2 * sizes["raw_day"] + (90 - 2) * sizes["downsampled_day"]
    print(f"size   aggregator per home and day: raw {sizes['raw_day'] / 1024:,.0f} KiB, downsampled "
          f"{sizes['downsampled_day'] / 1024:,.0f} KiB (journal {sizes['journal_day'] / 1024:,.0f} KiB, "
          f"{sizes['journal_rows_day']:.0f} entries); per home kept over 90 days (2 raw + 88 downsampled) "
          f"{retained / 2**20:.1f} MiB", flush=True)

    boards = 4
    h = home(folder, hours=0.1 if quick else 1.0, boards=boards)
    print(f"home   {boards} boards read every 2 s, batch_s 30: {h['commits_per_hour']:.0f} commits/h, "
          f"{h['bytes_per_hour'] / 1024:,.0f} KiB/h handed to the file system "
          f"({h['bytes_per_hour'] * 24 / 2**20:.1f} MiB/day)", flush=True)

    print(f"peak_rows_s_full={rates['FULL']:.0f} peak_rows_s_normal={rates['NORMAL']:.0f} "
          f"durable_p50_ms_full={lat['FULL'][0] * 1e3:.1f} durable_p99_ms_full={lat['FULL'][1] * 1e3:.1f} "
          f"durable_p50_ms_normal={lat['NORMAL'][0] * 1e3:.1f} durable_p99_ms_normal={lat['NORMAL'][1] * 1e3:.1f} "
          f"queue_us_per_row={queue_s * 1e6:.2f} "
          f"aggregator_raw_kib_per_home_day={sizes['raw_day'] / 1024:.0f} "
          f"aggregator_downsampled_kib_per_home_day={sizes['downsampled_day'] / 1024:.0f} "
          f"aggregator_mib_per_home_90d={retained / 2**20:.1f} "
          f"home_commits_per_hour={h['commits_per_hour']:.0f} "
          f"home_kib_written_per_hour={h['bytes_per_hour'] / 1024:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--folder", help="where the files go (the disk measured); default a new temporary folder")
    args = parser.parse_args()
    task.react(main, (args,))
