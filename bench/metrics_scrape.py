"""What a ``/metrics`` scrape costs the aggregator: ``python bench/metrics_scrape.py``.

A scrape runs on the reactor thread (``jeisson.web.metrics``: the live
gauges read the aggregator's state, which is the reactor's), so its time is
time the reactor serves nothing else.  In one run, at 1,000 and at 10,000
homes:

**scrape**
    ``MetricsResource.render`` of the aggregator's resource, as twisted.web
    calls it for ``GET /metrics``: the custom collector walking every home,
    the counters and histograms turned into families, prometheus_client's
    process collector (``/proc``) and the text encoding.  The aggregator is
    a real ``Aggregator`` on a ``task.Clock`` with N homes registered on
    real ``HomeSession`` s (``tests/peers.py``'s ``Net``), each with a bid
    of two loads, a measurement, an event in force and its first round
    finished (every home committed), and protocol errors counted on a few
    codes: what a busy aggregator's scrape holds.
**baseline**
    prometheus_client's ``generate_latest`` of an empty ``CollectorRegistry``,
    alternated with the scrapes, so that the machine's noise falls on both:
    the floor of any scrape at all.
**listener**
    What counting costs a round: one ``budget_sent`` through the
    aggregator's listener fan-out, to a listener that does nothing (as
    ``MeasuredWatch`` and the store's ``Memory`` hear every budget anyway)
    and ``AggregatorCounts``, beside the same fan-out without the counts:
    the difference is what the counts add per budget (per home and round).

Each figure is the median (and p99) of repeated scrapes.  Last line:
``scrape_1000_ms=... scrape_10000_ms=... scrape_10000_p99_ms=...
baseline_ms=... bytes_10000=... listener_ns_per_budget=... fanout_ns_per_budget=...``
(``listener_ns_per_budget``: what the counts add to the fan-out).
"""

import argparse
import bisect
import gc
import pathlib
import statistics
import sys
import time

HERE = pathlib.Path(__file__).resolve()
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from twisted.internet.base import DelayedCall  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.web.test.requesthelper import DummyRequest  # noqa: E402

from bench.timing import per_call_seconds  # noqa: E402

START_S = 10.0


def config_text(homes: int) -> str:
    lines = ["[aggregator]\nlisten = tcp:0:interface=127.0.0.1\nheartbeat_s = 3600\nround_period_s = 3600\n"
             "round_timeout_s = 60\nconverge_s = 0\nseed = 1\n",
             f"[event:peak]\nlimit_kw = {homes * 1.5:g}\nstart = +{START_S:g}\nend = +3600\n",
             "[feeder:north]\nlimit_kw = 1000000\nhomes = " + ", ".join(f"h{i}" for i in range(0, homes, 2)) + "\n",
             "[feeder:south]\nlimit_kw = 1000000\nhomes = " + ", ".join(f"h{i}" for i in range(1, homes, 2)) + "\n"]
    lines += [f"[home:h{i}]\nsecret = s{i}\nmax_kw = 3\n" for i in range(homes)]
    return "".join(lines)


def _due(call: DelayedCall) -> float:
    return call.getTime()


class SortedClock(Clock):
    """A ``task.Clock`` that keeps its calls sorted as they come (one
    insertion each) instead of sorting all of them on every ``callLater``
    and every call run: with ten thousand homes' heartbeats pending,
    ``Clock`` spends minutes sorting."""

    def callLater(self, delay, callable, *args, **kw):  # noqa: A002 (IReactorTime's own name)
        call = DelayedCall(self.seconds() + delay, callable, args, kw, self.calls.remove, self._moved, self.seconds)
        bisect.insort(self.calls, call, key=_due)
        return call

    def _moved(self, call: DelayedCall) -> None:
        self.calls.remove(call)
        bisect.insort(self.calls, call, key=_due)

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        while self.calls and self.calls[0].getTime() <= self.rightNow:
            call = self.calls.pop(0)
            call.called = 1
            call.func(*call.args, **call.kw)


def busy_aggregator(homes: int):
    """A ``Net`` with ``homes`` homes, an event in force and its first round
    done, and its ``/metrics`` resource (made first: it counts it all)."""
    from jeisson.web.metrics import aggregator_metrics
    from jeisson.wire import aggregator_home as wire
    from tests.peers import Net, load

    net = Net.__new__(Net)  # Net's own construction, on a SortedClock
    from jeisson.aggregator.config import config_from_string
    from jeisson.aggregator.core import Aggregator

    net.clock = SortedClock()
    net.config = config_from_string(config_text(homes), now=0)
    net.aggregator = Aggregator(net.config, net.clock)
    net._port = 4000
    resource = aggregator_metrics(net.aggregator, net.clock)
    fakes = []
    for i in range(homes):
        fake = net.home(f"h{i}", load("heater", 2000, priority=5, on=True), load("fridge", 150, mode="must", on=True),
                        comply=0.05)
        fake.say(wire.Measure(0.0, 2150.0, ()))
        fakes.append(fake)
    net.aggregator.start()
    for fake in fakes[:50]:
        fake.say(b"BOGUS 1")
        fake.say(b"COMMIT x")
    # Step the clock (Net.run_until looks at every timer per step: the
    # homes' ten thousand answers would make it quadratic).
    while net.clock.seconds() < START_S + 5:
        net.clock.advance(0.05)
    assert net.summary is not None and len(net.summary.homes) == homes, "the first round did not finish"
    return net, resource


def timed(function, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return samples


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def listener_cost(net) -> tuple[float, float]:
    """One ``budget_sent`` through the fan-out: to a listener that does
    nothing and the counts, and to that listener alone (seconds each)."""
    from jeisson.aggregator.listeners import AggregatorListener, Announcer
    from jeisson.web.metrics import AggregatorCounts
    from jeisson.wire import aggregator_home as wire

    class Nothing(AggregatorListener):
        def budget_sent(self, home_id, budget):
            pass

    budget = wire.Budget(1, 1, "peak", 1000.0, 3600.0)
    counted, bare = Announcer(), Announcer()
    counted.add(Nothing())
    counted.add(AggregatorCounts())
    bare.add(Nothing())
    calls = 100_000
    counted_s = per_call_seconds(lambda: counted.budget_sent("h1", budget), calls)
    bare_s = per_call_seconds(lambda: bare.budget_sent("h1", budget), calls)
    return counted_s, bare_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    empty = CollectorRegistry()
    figures: dict[str, str] = {}
    net = None
    for homes in args.homes:
        built = time.perf_counter()
        net, resource = busy_aggregator(homes)
        gc.collect()
        gc.freeze()
        print(f"{homes} homes: built in {time.perf_counter() - built:.1f} s", flush=True)

        def scrape(resource=resource) -> bytes:
            return resource.render(DummyRequest([b""]))

        body = scrape()
        scrapes, baselines = [], []
        for _ in range(args.repeats):
            scrapes += timed(scrape, 1)
            baselines += timed(lambda: generate_latest(empty), 1)
        median, worst = statistics.median(scrapes), p99(scrapes)
        floor = statistics.median(baselines)
        lines = body.count(b"\n")
        print(f"  scrape   median {median * 1e3:7.2f} ms  p99 {worst * 1e3:7.2f} ms  ({len(body):,} bytes, "
              f"{lines} lines)")
        print(f"  baseline median {floor * 1e3:7.3f} ms  (an empty registry)")
        figures[f"scrape_{homes}_ms"] = f"{median * 1e3:.2f}"
        figures[f"scrape_{homes}_p99_ms"] = f"{worst * 1e3:.2f}"
        figures[f"bytes_{homes}"] = str(len(body))
        figures["baseline_ms"] = f"{floor * 1e3:.3f}"
        resource.stop()
        net.aggregator.stop()
        gc.unfreeze()
    assert net is not None
    counted_s, bare_s = listener_cost(net)
    print(f"listener: budget_sent through the fan-out {counted_s * 1e9:.0f} ns with the counts, {bare_s * 1e9:.0f} "
          f"ns without: the counts add {(counted_s - bare_s) * 1e9:.0f} ns a budget")
    figures["listener_ns_per_budget"] = f"{(counted_s - bare_s) * 1e9:.0f}"
    figures["fanout_ns_per_budget"] = f"{bare_s * 1e9:.0f}"
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
