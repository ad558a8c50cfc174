"""Where a round's plan should leave the reactor thread: ``python bench/solve_thread.py``.

``jeisson.aggregator.rounds`` solves a round's plan (``negotiation.plan``,
pure: numpy and HiGHS through ``scipy.optimize.linprog``) on the reactor
thread up to ``SOLVE_IN_THREAD_ABOVE`` homes and with
``threads.deferToThread`` above.  For each fleet size (8 random loads per
home, as ``bench/wire_and_allocation.py`` builds them; arrays built once per
``FLEX``, as the aggregator holds them; a limit at 60 % of the demand, so
about 40 % is shed), in one process under the real reactor, side by side:

- **inline**: ``plan()`` called on the reactor thread: its duration, which
  is how long every link waits (the reactor's stall);
- **thread**: ``threads.deferToThread(plan)``: from the call until its
  callback runs on the reactor thread, and the worst lateness of a timer
  ticking every millisecond on the reactor while the thread solves (the
  GIL may or may not be released by numpy and HiGHS: measured, not
  assumed);
- **idle**: the same ticking timer alone, for as long as the thread's solve
  took: the machine's own noise (it is shared), measured in the same run.

A timer's *lateness* is the gap between two ticks less the period.  Each
repeat runs the three in turn for every size (sizes interleaved, the three
in rotating order); each figure is the median over repeats, ``max`` the
worst repeat.  A fixed loop of pure Python, timed once per repeat, and the
load average tell how busy the (shared) machine was.  The last line gives the
figures at the recommended threshold and the threshold itself: the smallest
size from which, at every larger size measured too, the inline stall
exceeds 10 ms and the thread's worst stall is at most half of it.
``--sizes 3000 3500 4000 4500 5000`` narrows it down; ``--quick`` runs 7
repeats instead of 31.

NumPy's OpenBLAS hands a dot product of more than about 10,000 entries
(from 2,000 homes on: ``value @ share`` and the like) to its worker
threads; when the other core is busy, waking them costs milliseconds per
call, and ``plan`` takes several times as long.  The header says whether
``OPENBLAS_NUM_THREADS`` was set: run with ``OPENBLAS_NUM_THREADS=1`` to
see the solve without them.
"""

import argparse
import gc
import os
import pathlib
import random
import statistics
import sys
import time

from twisted.internet import defer, task, threads

# The checkout's plan, not a copy installed in the environment, which may be
# older (run as a script, only bench/ is on the path ahead of it).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from wire_and_allocation import random_flex  # noqa: E402

from jeisson.aggregator import negotiation  # noqa: E402

SIZES = (100, 300, 1000, 2000, 3000, 5000, 10000)
PERIOD_S = 0.001
SETTLE_S = 0.005  # the ticker runs this long before each measurement starts
STALL_LIMIT_MS = 10.0  # an inline stall above this is worth a thread ...
CLEARLY_LOWER = 0.5  # ... if the thread's worst stall is at most this share of it


class Ticker:
    """A chain of ``callLater(PERIOD_S)`` on the reactor, recording the worst
    lateness: the longest gap between two ticks, less the period."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.worst_s = 0.0
        self.ticks = 0
        self._last = 0.0
        self._call = None

    def start(self) -> None:
        self.worst_s, self.ticks = 0.0, 0
        self._last = time.perf_counter()
        self._call = self.reactor.callLater(PERIOD_S, self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.worst_s = max(self.worst_s, now - self._last - PERIOD_S)
        self._last = now
        self.ticks += 1
        self._call = self.reactor.callLater(PERIOD_S, self._tick)

    def stop(self) -> float:
        """The worst lateness so far, counting the gap since the last tick."""
        self.worst_s = max(self.worst_s, time.perf_counter() - self._last - PERIOD_S)
        if self._call is not None:
            self._call.cancel()
        return self.worst_s


def sleep(reactor, seconds: float) -> defer.Deferred:
    return task.deferLater(reactor, seconds, lambda: None)


async def inline(reactor, ticker: Ticker, solve) -> tuple[float, float]:
    """``solve()`` on the reactor thread, from a timer call: its duration and
    the ticker's worst lateness around it (the two should agree)."""
    ticker.start()
    await sleep(reactor, SETTLE_S)
    took = []

    def run():
        start = time.perf_counter()
        solve()
        took.append(time.perf_counter() - start)

    await task.deferLater(reactor, 0, run)
    await sleep(reactor, 2 * PERIOD_S)  # a tick after the solve, to see its gap
    return took[0], ticker.stop()


async def in_thread(reactor, ticker: Ticker, solve) -> tuple[float, float, float]:
    """``deferToThread(solve)``: from the call to its callback on the reactor
    thread, the ticker's worst lateness meanwhile, and the share of the
    ticks due meanwhile that ran (how often the reactor got the GIL)."""
    ticker.start()
    await sleep(reactor, SETTLE_S)
    start, ticks = time.perf_counter(), ticker.ticks
    await threads.deferToThread(solve)
    took = time.perf_counter() - start
    return took, ticker.stop(), (ticker.ticks - ticks) / (took / PERIOD_S)


async def idle(reactor, ticker: Ticker, seconds: float) -> float:
    """The ticker alone for ``seconds``: its worst lateness."""
    ticker.start()
    await sleep(reactor, SETTLE_S)
    await sleep(reactor, seconds)
    return ticker.stop()


def fleet(rng: random.Random, homes: int):
    flexes = {f"home-{h}": random_flex(rng, h) for h in range(homes)}
    offers = {h: negotiation.Offers.of(f) for h, f in flexes.items()}
    demand_w = sum(o.rated_w for f in flexes.values() for o in f.loads if o.mode != "off")
    return offers, demand_w


def threshold(rows: list[dict]) -> dict | None:
    """The smallest size from which every size measured passes: the inline
    stall above ``STALL_LIMIT_MS``, the thread's worst stall at most
    ``CLEARLY_LOWER`` of it.  None if the largest size does not pass: then
    either the solve never stalls the reactor for long enough to matter at
    these sizes, or the thread does not spare the reactor (the solver holds
    the GIL), and the solve should stay inline."""
    found = None
    for row in reversed(rows):
        if row["inline_ms"] > STALL_LIMIT_MS and row["thread_stall_ms"] <= CLEARLY_LOWER * row["inline_ms"]:
            found = row
        else:
            break
    return found


def probe() -> float:
    """A fixed loop of pure Python, to tell the machine's slow minutes."""
    start = time.perf_counter()
    total = 0
    for i in range(100_000):
        total += i
    return time.perf_counter() - start


def load_average() -> str:
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


async def measure(reactor, args) -> None:
    rng = random.Random(args.seed)
    ticker = Ticker(reactor)
    sizes = SIZES if not args.sizes else tuple(args.sizes)
    print(f"{len(sizes)} sizes x 8 loads per home, {args.repeats} repeats, ticker every "
          f"{PERIOD_S * 1e3:.0f} ms, GIL switch interval {sys.getswitchinterval() * 1e3:.0f} ms, "
          f"reactor {type(reactor).__name__}, plan from {negotiation.__file__}, {os.cpu_count()} CPUs, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, load average {load_average()}")
    # Warm up: the thread pool starts on its first call, HiGHS loads.
    offers, demand_w = fleet(rng, 100)
    for _ in range(3):
        await threads.deferToThread(negotiation.plan, offers, demand_w * 0.6)
    solves, served, first = {}, {}, {}
    for homes in sizes:
        offers, demand_w = fleet(rng, homes)

        def solve(offers=offers, limit_w=demand_w * 0.6):
            return negotiation.plan(offers, limit_w)

        solves[homes] = solve
        started = time.perf_counter()
        served[homes] = sum(solve().budgets.values()) / demand_w
        first[homes] = time.perf_counter() - started
    gc.collect()
    keys = ("inline", "inline_stall", "thread", "thread_stall", "thread_ticks", "idle_stall")
    samples: dict[int, dict[str, list[float]]] = {homes: {key: [] for key in keys} for homes in sizes}
    probes = []
    # Sizes interleaved within each repeat, so that a slow minute of the
    # shared machine spreads over every size instead of spoiling one.
    for repeat in range(args.repeats):
        probes.append(probe())
        for index, homes in enumerate(sizes):
            solve, taken = solves[homes], samples[homes]
            steps = ("inline", "thread", "idle")
            turn = (repeat + index) % 3
            for step in steps[turn:] + steps[:turn]:
                if step == "inline":
                    took, stall = await inline(reactor, ticker, solve)
                    taken["inline"].append(took)
                    taken["inline_stall"].append(stall)
                elif step == "thread":
                    took, stall, ticked = await in_thread(reactor, ticker, solve)
                    taken["thread"].append(took)
                    taken["thread_stall"].append(stall)
                    taken["thread_ticks"].append(ticked)
                else:
                    # As long as the thread's last solve (before the first,
                    # the last inline one, or the first solve of all).
                    window = (taken["thread"] or taken["inline"] or [first[homes]])[-1]
                    taken["idle_stall"].append(await idle(reactor, ticker, window))
                await sleep(reactor, 0.002)
    print(f"{'homes':>6} {'inline ms':>10} {'(max)':>7} {'its stall':>10} {'thread ms':>10} "
          f"{'(max)':>7} {'thread stall':>13} {'(max)':>7} {'ticks':>6} {'idle stall':>11} {'(max)':>7} {'served':>7}")
    rows = []
    for homes in sizes:
        taken = samples[homes]
        row = {"homes": homes, "ticks": statistics.median(taken.pop("thread_ticks"))}
        for key, values in taken.items():
            row[f"{key}_ms"] = statistics.median(values) * 1e3
            row[f"{key}_max_ms"] = max(values) * 1e3
        rows.append(row)
        print(f"{homes:>6} {row['inline_ms']:>10.2f} {row['inline_max_ms']:>7.2f} {row['inline_stall_ms']:>10.2f} "
              f"{row['thread_ms']:>10.2f} {row['thread_max_ms']:>7.2f} {row['thread_stall_ms']:>13.2f} "
              f"{row['thread_stall_max_ms']:>7.2f} {row['ticks']:>6.0%} {row['idle_stall_ms']:>11.2f} "
              f"{row['idle_stall_max_ms']:>7.2f} {served[homes]:>6.1%}")
    print("inline ms: plan() on the reactor thread; its stall: the ticker's worst lateness around it; "
          "thread ms: deferToThread(plan) to its callback; thread stall: the ticker's worst lateness meanwhile; "
          "ticks: the share of the ticks due meanwhile that ran; "
          "idle stall: the ticker alone as long; served: the budgets' sum over the demand (limit 60 %). "
          "Medians over repeats, (max) the worst repeat.")
    print(f"pure-Python probe (100,000 additions) once per repeat: median {statistics.median(probes) * 1e3:.2f} ms, "
          f"min {min(probes) * 1e3:.2f}, max {max(probes) * 1e3:.2f}; load average at the end {load_average()}")
    found = threshold(rows)
    row = found or rows[-1]
    print(f"size={row['homes']} inline_ms={row['inline_ms']:.2f} thread_ms={row['thread_ms']:.2f} "
          f"thread_worst_stall_ms={row['thread_stall_ms']:.2f} idle_worst_stall_ms={row['idle_stall_ms']:.2f} "
          f"threshold_homes={found['homes'] if found else 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--quick", action="store_true", help="7 repeats instead of 31")
    parser.add_argument("--sizes", type=int, nargs="*", help=f"home counts (default {' '.join(map(str, SIZES))})")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 7
    task.react(lambda reactor: defer.Deferred.fromCoroutine(measure(reactor, args)))


if __name__ == "__main__":
    main()
