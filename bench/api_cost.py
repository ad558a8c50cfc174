"""What the JSON API's answers cost the aggregator: ``python bench/api_cost.py``.

Every answer is made on the reactor thread (the views read the
aggregator's state, which is the reactor's), so its time is time the
reactor serves nothing else.  In one run, at 1,000 and at 10,000 homes (a
busy aggregator: bench/metrics_scrape.py's, every home with a bid, a
measurement, its budget in an event and its first round committed), each
request goes through the whole ``Site`` in memory (tests/http_memory.py:
the guard, the routes, the JSON encoding, HTTP/1.1 framing):

**status**, **homes**, **home**, **events**, **rounds**
    ``GET /api/v1/status`` (every home counted twice: committed and
    measured), ``/homes`` (every home's view: above 500 homes, 500 per
    reactor turn, then encoded in a thread), ``/homes/h1``, ``/events``,
    ``/rounds?limit=50``: the time on the reactor's thread in all, its
    longest turn (what the reactor cannot serve anything else for), and the
    encoding's time in the thread.
**baseline**
    ``Aggregator.snapshot()`` written as JSON, what the status file writes
    on a change (at most every 0.5 s): alternated with the requests, so
    that the machine's noise falls on both.

Each figure is the median (and p99) of repeated requests.  Last line:
``status_10000_ms=... homes_10000_ms=... homes_10000_turn_ms=... homes_10000_thread_ms=...
baseline_10000_ms=... homes_10000_bytes=...`` and the same at 1,000.
"""

import argparse
import gc
import json
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve()
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.metrics_scrape import busy_aggregator, p99, timed  # noqa: E402

PATHS = {"status": "/api/v1/status", "homes": "/api/v1/homes", "home": "/api/v1/homes/h1",
         "events": "/api/v1/events", "rounds": "/api/v1/rounds?limit=50"}


class Offloaded:
    """An ``offload`` that runs the encoding at once, timing it apart: in the
    daemons it runs in a thread, off the reactor's turns."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self, function, *args):
        from twisted.internet.defer import succeed

        started = time.perf_counter()
        result = function(*args)
        self.seconds = time.perf_counter() - started
        return succeed(result)


def reactor_turn(clock) -> None:
    """Run the calls due now, as one turn of a reactor does: a call they
    schedule for now runs at the next turn (``Clock.advance`` would run it
    in this one)."""
    now = clock.seconds()
    due = [call for call in clock.calls if call.getTime() <= now]
    for call in due:
        clock.calls.remove(call)
        call.called = 1
        call.func(*call.args, **call.kw)


def answer(site, net, path: str, offloaded: Offloaded) -> tuple[float, float, float, int]:
    """One GET through the Site: ``(on the reactor in all, its longest turn,
    encoding in the thread, bytes)``; the clock turned until it answers."""
    from tests.http_memory import request

    offloaded.seconds = 0.0
    turns = []
    started = time.perf_counter()
    response = request(site, "GET", path)
    turns.append(time.perf_counter() - started)
    while not response.read().done:
        started = time.perf_counter()
        reactor_turn(net.clock)
        turns.append(time.perf_counter() - started)
    assert response.status == 200, response
    if offloaded.seconds:
        turns[-1] -= offloaded.seconds
    return sum(turns), max(turns), offloaded.seconds, len(response.body)


def main() -> None:
    from jeisson.web.aggregator_api import AggregatorApi
    from jeisson.web.site import build_site

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    figures: dict[str, str] = {}
    for homes in args.homes:
        net, metrics = busy_aggregator(homes)
        api = AggregatorApi(net.aggregator)
        offloaded = Offloaded()
        site = build_site(api.routes(), offload=offloaded)
        # A round the API's history keeps, now that it listens.
        net.aggregator.rounds.run()
        while net.aggregator.round is not None:
            net.clock.advance(0.05)
        gc.collect()
        gc.freeze()
        print(f"{homes} homes", flush=True)

        def baseline(net=net) -> bytes:
            return json.dumps(net.aggregator.snapshot()).encode()

        names = (*PATHS, "baseline")
        total: dict[str, list[float]] = {name: [] for name in names}
        longest: dict[str, list[float]] = {name: [] for name in names}
        threaded: dict[str, list[float]] = {name: [] for name in names}
        sizes: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, path in PATHS.items():
                all_s, turn_s, thread_s, sizes[name] = answer(site, net, path, offloaded)
                total[name].append(all_s)
                longest[name].append(turn_s)
                threaded[name].append(thread_s)
            [once] = timed(baseline, 1)
            total["baseline"].append(once)
            longest["baseline"].append(once)
            threaded["baseline"].append(0.0)
        sizes["baseline"] = len(baseline())
        for name in names:
            median, turn, worst = (statistics.median(total[name]), statistics.median(longest[name]),
                                   p99(longest[name]))
            thread = statistics.median(threaded[name])
            print(f"  {name:<9} on the reactor {median * 1e3:8.2f} ms, longest turn {turn * 1e3:7.2f} ms "
                  f"(p99 {worst * 1e3:7.2f}), in a thread {thread * 1e3:7.2f} ms  ({sizes[name]:,} bytes)")
            figures[f"{name}_{homes}_ms"] = f"{median * 1e3:.2f}"
            if name in ("status", "homes", "baseline"):
                figures[f"{name}_{homes}_turn_ms"] = f"{turn * 1e3:.2f}"
                figures[f"{name}_{homes}_turn_p99_ms"] = f"{worst * 1e3:.2f}"
                figures[f"{name}_{homes}_bytes"] = str(sizes[name])
            if name == "homes":
                figures[f"homes_{homes}_thread_ms"] = f"{thread * 1e3:.2f}"
        metrics.stop()
        net.aggregator.stop()
        gc.unfreeze()
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
