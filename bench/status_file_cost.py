"""What the status file costs the aggregator's reactor:
``python bench/status_file_cost.py [--homes 1000 10000] [--repeats 9]``.

The aggregator is bench/metrics_scrape.py's busy one (every home with a
bid, a measurement, its budget in an event and its first round
committed).  Side by side in one run, alternated so that the machine's
noise falls on both:

**baseline**
    the status file as it was written before: ``snapshot()`` and
    ``json.dump(indent=1, sort_keys=True)`` into the file, all on the
    reactor's thread (the whole time is a stall).
**now**
    ``snapshot()`` on the reactor's thread (``snapshot_ms``), then
    ``write_atomically`` (the JSON in pieces) in a real thread, as
    ``deferToThread`` runs it (``thread_ms``), while the main thread ticks
    as a reactor would: ``stall_ms`` is the longest it waited between two
    ticks for the interpreter; ``idle_stall_ms``, the same loop ticking
    alone as long, is what the machine's other processes make of it.

Both files must hold the same JSON.  Each figure is the median of the
repeats.  Last line: ``baseline_10000_ms=... snapshot_10000_ms=...
stall_10000_ms=... thread_10000_ms=... idle_stall_10000_ms=... bytes_10000=...`` and the same at
1,000.
"""

import argparse
import gc
import json
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time

HERE = pathlib.Path(__file__).resolve()
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.metrics_scrape import busy_aggregator  # noqa: E402
from jeisson.status_file import write_atomically  # noqa: E402


def baseline(snapshot, path: str) -> float:
    """The former writer, on the reactor: seconds."""
    started = time.perf_counter()
    data = snapshot()
    temporary = f"{path}.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(temporary, path)
    return time.perf_counter() - started


def now(snapshot, path: str) -> tuple[float, float, float]:
    """The snapshot on this thread, the writing in another while this one
    ticks: ``(snapshot s, longest tick s, thread s)``."""
    started = time.perf_counter()
    data = snapshot()
    taken = time.perf_counter() - started
    spent = [0.0]

    def write() -> None:
        began = time.perf_counter()
        write_atomically(path, data)
        spent[0] = time.perf_counter() - began

    worker = threading.Thread(target=write)
    worker.start()
    longest, last = 0.0, time.perf_counter()
    while worker.is_alive():
        tick = time.perf_counter()
        longest = max(longest, tick - last)
        last = tick
        time.sleep(0)  # a reactor's turn gives the interpreter up the same way (select)
    worker.join()
    return taken, longest, spent[0]


def idle(seconds: float) -> float:
    """The longest tick of the same loop with no thread at work, for as
    long: what the machine's own noise (other processes) stalls it."""
    longest, last = 0.0, time.perf_counter()
    end = last + seconds
    while last < end:
        tick = time.perf_counter()
        longest = max(longest, tick - last)
        last = tick
        time.sleep(0)
    return longest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    figures: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as work:
        for homes in args.homes:
            net, metrics = busy_aggregator(homes)
            net.aggregator.rounds.run()
            while net.aggregator.round is not None:
                net.clock.advance(0.05)
            gc.collect()
            gc.freeze()
            old_path, new_path = os.path.join(work, "old.json"), os.path.join(work, "new.json")
            samples: dict[str, list[float]] = {name: [] for name in ("baseline", "snapshot", "stall", "thread",
                                                                      "idle_stall")}
            for _ in range(args.repeats):
                samples["baseline"].append(baseline(net.aggregator.snapshot, old_path))
                taken, stall, thread = now(net.aggregator.snapshot, new_path)
                samples["snapshot"].append(taken)
                samples["stall"].append(stall)
                samples["thread"].append(thread)
                samples["idle_stall"].append(idle(thread))
            with open(old_path, encoding="utf-8") as old, open(new_path, encoding="utf-8") as new:
                assert json.load(old) == json.load(new), "the two writers disagree"
            size = os.path.getsize(new_path)
            gc.unfreeze()
            line = {name: statistics.median(values) * 1e3 for name, values in samples.items()}
            print(f"{homes} homes: baseline {line['baseline']:.1f} ms on the reactor; now snapshot "
                  f"{line['snapshot']:.1f} ms on the reactor, longest stall {line['stall']:.1f} ms while "
                  f"{line['thread']:.1f} ms in the thread (ticking alone as long: {line['idle_stall']:.1f} ms); "
                  f"{size} bytes (was {os.path.getsize(old_path)})", flush=True)
            for name, value in line.items():
                figures[f"{name}_{homes}_ms"] = f"{value:.2f}"
            figures[f"bytes_{homes}"] = str(size)
            metrics.stop()
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
