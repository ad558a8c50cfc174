"""The limit through restarts, measured on real processes: ``python bench/restarts.py``.

Each scenario runs the shipped lab (``etc/jeisson``: the aggregator, three
homes, five software boards, the simulated radio) as real ``twistd``
processes in a work directory of its own (``bench/procs.py``: short
timings, each process's store beside its ini; on the default, secure path:
the homes reach the aggregator over mutual TLS, the boards are
authenticated, with credentials made in the work directory's ``pki/``;
the homes reconnect within a lab's window, ``reconnect_base_s = 1`` and
``reconnect_cap_s = 15``, not a fleet's 120 s), under one event whose
limit (``--limit-kw``, 9.5 kW) is far below the homes' demand (22.75 kW).
Once the event has settled (a round within the limit and the drawn power
under it for 3 s), the scenario disrupts the lab, waits until everything is
back (every home WELCOMEd and every board joined again, and a round after
that), watches 20 s more, and stops every process.

The power drawn is computed from the boards' own relay switches, never from
what the homes or the aggregator believe: each board logs every switch
(the home's ``SET``, its failsafe, its cold-load pickup, its power-down) in
a JSON log with the instant it happened, and a board killed has every relay
open from the kill (its power is gone).  Draw(t) is the sum of ``load_w``
of the relays closed at t; the time it spends above the limit, from the
disruption to the end, is the scenario's ``seconds_over_limit``.

Scenarios (``--only NAME`` runs one):

aggregator-restart
    kill -9 of the aggregator mid-event, down 5 s; one home (home-3) cannot
    reach it (a gate in front of the aggregator, shut) until 20 s after it
    is back, though the home runs and keeps drawing under its last budget.
home-restart-aggregator-down
    kill -9 of the aggregator, then 2 s later of home-1 (the largest),
    home-1 started again 3 s later without its aggregator: it must resume
    its budget from its store; the aggregator comes back 20 s later.
board-power-blip
    both boards of home-1 lose power (kill -9) for 3 s and start again:
    relays open at power-up, safe-on relays only after the cold-load delay,
    nothing the home did not command taken as its own.
all-at-once
    kill -9 of the aggregator, of home-3 and of board home-1-b at the same
    instant; the board back after 3 s, home-3 after 5 s (its aggregator
    still down), the aggregator after 15 s, and home-2 shut out by its gate
    until 15 s after that.

One line per scenario, ending ``seconds_over_limit=… max_draw_w=…
limit_w=…``; for a scenario over the limit, each span above it and the
timeline before it (which process, which relays, when, and what the homes
and the aggregator said) are printed and written to ``timeline.txt`` in
the scenario's folder.
"""

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from procs import (  # noqa: E402
    BenchError,
    Fleet,
    Layout,
    PhysicalDraw,
    clock_text,
    lay_out,
    timeline,
)

EVENT_START_S = 12.0  # after the processes start: the homes first switch on what their owners want
EVENT_LENGTH_S = 900.0
SETTLED_S = 3.0  # the draw under the limit this long before a scenario disrupts
OBSERVE_S = 20.0  # watched after everything is back
SETTLE_TIMEOUT_S = 120.0
BACK_TIMEOUT_S = 90.0


class Scenario:
    """One disruption of a running lab; ``disrupt`` returns the instant of
    the last restart (everything must be back after it)."""

    name = ""
    what = ""
    gated: tuple[str, ...] = ()

    def __init__(self, fleet: Fleet):
        self.fleet = fleet

    def disrupt(self) -> float:
        raise NotImplementedError

    # helpers for the scenarios

    def wait_homes(self, homes: tuple[str, ...], since: float) -> None:
        fleet = self.fleet
        fleet.wait(lambda: all(fleet.home_registered(h, max(since, fleet.life(h).started)) for h in homes),
                   BACK_TIMEOUT_S, f"{', '.join(homes)} WELCOMEd again")

    def wait_boards(self, boards: tuple[str, ...], since: float) -> None:
        fleet = self.fleet
        fleet.wait(lambda: all(fleet.board_joined(b, max(since, fleet.life(b).started,
                                                         fleet.life(fleet.layout.board_home[b]).started))
                               for b in boards),
                   BACK_TIMEOUT_S, f"boards {', '.join(boards)} joined again")


class AggregatorRestart(Scenario):
    name = "aggregator-restart"
    what = "aggregator kill -9 mid-event, down 5 s; home-3 cut off until 20 s after it is back"
    gated = ("home-3",)

    def disrupt(self) -> float:
        fleet = self.fleet
        fleet.gates["home-3"].shut()
        fleet.kill9("aggregator")
        fleet.watch(5)
        back = fleet.start("aggregator")
        self.wait_homes(("home-1", "home-2"), back)
        fleet.watch(20)
        fleet.gates["home-3"].open()
        fleet.history.append((time.time(), "home-3", "gate open: it can reach the aggregator"))
        return back


class HomeRestartAggregatorDown(Scenario):
    name = "home-restart-aggregator-down"
    what = "aggregator kill -9; 2 s later home-1 kill -9, started 3 s later without it; aggregator back 20 s later"

    def disrupt(self) -> float:
        fleet = self.fleet
        fleet.kill9("aggregator")
        fleet.watch(2)
        fleet.kill9("home-1")
        fleet.watch(3)
        home_back = fleet.start("home-1")
        self.wait_boards(tuple(fleet.layout.boards_of("home-1")), home_back)
        fleet.watch(20)
        return fleet.start("aggregator")


class BoardPowerBlip(Scenario):
    name = "board-power-blip"
    what = "home-1's two boards kill -9 (power lost) for 3 s, then powered up"

    def disrupt(self) -> float:
        fleet = self.fleet
        boards = tuple(fleet.layout.boards_of("home-1"))
        for board in boards:
            fleet.kill9(board)
        fleet.watch(3)
        back = 0.0
        for board in boards:
            back = fleet.start(board)
        self.wait_boards(boards, back)
        # The cold-load window ([actuator] cold_load_max_s = 8 s) passes
        # within the observation that follows.
        return back


class AllAtOnce(Scenario):
    name = "all-at-once"
    what = ("aggregator, home-3 and board home-1-b kill -9 at once; board back after 3 s, home-3 after 5 s, "
            "aggregator after 15 s; home-2 cut off until 15 s after that")
    gated = ("home-2",)

    def disrupt(self) -> float:
        fleet = self.fleet
        fleet.gates["home-2"].shut()
        for name in ("aggregator", "home-3", "home-1-b"):
            fleet.kill9(name)
        fleet.watch(3)
        fleet.start("home-1-b")
        fleet.watch(2)
        home_back = fleet.start("home-3")
        self.wait_boards(tuple(fleet.layout.boards_of("home-3")), home_back)
        fleet.watch(10)
        back = fleet.start("aggregator")
        self.wait_homes(("home-1", "home-3"), back)
        fleet.watch(15)
        fleet.gates["home-2"].open()
        fleet.history.append((time.time(), "home-2", "gate open: it can reach the aggregator"))
        return back


SCENARIOS: dict[str, type[Scenario]] = {s.name: s for s in (AggregatorRestart, HomeRestartAggregatorDown,
                                                             BoardPowerBlip, AllAtOnce)}


def settled(layout: Layout, fleet: Fleet) -> Callable[[], bool]:
    """The event in force, a round within its limit, and the drawn power
    under it for ``SETTLED_S``."""

    def check() -> bool:
        now = time.time()
        if now < layout.event_start + SETTLED_S:
            return False
        if not any(e.get("verdict") == "within limit" for e in fleet.rounds(layout.event_start)):
            return False
        seconds, _, _ = PhysicalDraw(layout, fleet).over(now - SETTLED_S, now, layout.limit_w)
        return seconds == 0

    return check


def back_to_work(fleet: Fleet, since: float) -> Callable[[], bool]:
    """Every home WELCOMEd and every board joined (each in its current
    life, and still linked), and a round finished after all of it and after
    ``since``."""

    def check() -> bool:
        up = fleet.all_up()
        return up is not None and bool(fleet.rounds(max(up, since)))

    return check


def run(scenario_type: type[Scenario], base: str, limit_kw: float, stores: bool = True) -> tuple[str, bool]:
    label = scenario_type.name if stores else f"{scenario_type.name} (no stores)"
    workdir = os.path.join(base, scenario_type.name if stores else f"{scenario_type.name}-no-stores")
    layout = lay_out(workdir, limit_kw=limit_kw, event_start=time.time() + EVENT_START_S,
                     event_length=EVENT_LENGTH_S, gated=scenario_type.gated, stores=stores)
    with Fleet(layout) as fleet:
        scenario = scenario_type(fleet)
        for name in layout.specs:
            fleet.start(name)
        fleet.wait(fleet.all_up, 60, "every home WELCOMEd and every board joined")
        fleet.wait(settled(layout, fleet), SETTLE_TIMEOUT_S, "the event to settle under its limit")
        disrupted = time.time()
        fleet.history.append((disrupted, "bench", f"disruption begins: {scenario.what}"))
        last_restart = scenario.disrupt()
        fleet.wait(back_to_work(fleet, last_restart), BACK_TIMEOUT_S,
                   "every home and board back, and a round after")
        back = time.time()
        fleet.history.append((back, "bench", "everything back; watching"))
        fleet.watch(OBSERVE_S)
        ended = time.time()
    draw = PhysicalDraw(layout, fleet)
    window = (max(disrupted, layout.event_start), min(ended, layout.event_end))
    seconds, highest, spans = draw.over(*window, layout.limit_w)
    rounds = [e for e in fleet.rounds(disrupted) if e["log_time"] <= ended]
    over_rounds = sum(1 for e in rounds if e.get("verdict") == "OVER LIMIT")
    lines = timeline(layout, fleet, draw, disrupted - 5, ended)
    with open(os.path.join(workdir, "timeline.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if spans:
        print(f"{label}: OVER THE LIMIT of {layout.limit_w:.0f} W:")
        for span in spans:
            print(f"  {clock_text(span.start)} to {clock_text(span.end)} ({span.end - span.start:.1f} s), up to "
                  f"{span.max_w:.0f} W; relays closed then: {', '.join(draw.closed_at(span.start))}")
        first = spans[0].start
        print(f"  timeline ({os.path.join(workdir, 'timeline.txt')}):")
        for line in timeline(layout, fleet, draw, first - 20, spans[-1].end + 2):
            print("    " + line)
    line = (f"{label}: {scenario_type.what}; back after {back - disrupted:.1f} s, watched "
            f"{ended - back:.0f} s more; {len(rounds)} rounds, {over_rounds} logged OVER LIMIT; "
            f"seconds_over_limit={seconds:.1f} max_draw_w={highest:.0f} limit_w={layout.limit_w:.0f}")
    return line, seconds == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SCENARIOS), action="append", help="run this scenario (repeatable)")
    parser.add_argument("--limit-kw", type=float, default=9.5, help="the event's limit (default 9.5 kW)")
    parser.add_argument("--no-stores", action="store_true",
                        help="turn every store off ([store] path = none): what jeisson did before it remembered")
    parser.add_argument("--workdir", default=None, help="configs, logs, stores and timelines (default: a temp dir)")
    args = parser.parse_args(argv)
    base = args.workdir or tempfile.mkdtemp(prefix="jeisson-restarts-")
    os.makedirs(base, exist_ok=True)
    print(f"restarts: configs, logs, stores and timelines in {base}", flush=True)
    results = []
    for name in args.only or list(SCENARIOS):
        started = time.monotonic()
        try:
            line, ok = run(SCENARIOS[name], base, args.limit_kw, stores=not args.no_stores)
        except BenchError as e:
            line, ok = f"{name}: could not run: {e}", False
        print(f"({name} took {time.monotonic() - started:.0f} s)", flush=True)
        results.append((line, ok))
    for line, _ in results:
        print(line)
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
