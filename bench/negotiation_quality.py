"""How close the negotiation comes to the best allocation:
``python bench/negotiation_quality.py --homes N --seed S [--feeders F]``.

A random, realistic fleet (``jeisson.simulation.random_fleet``: 8 loads of
0.1 to 5 kW per home, priorities 1 to 10, about 10 % critical, 20 % held on
by their minimum on time when the event starts, 10 % off by their owner's
wish) runs in one process with its real sessions over in-memory links.  At
the event's start the bench takes every load's state (must, may or off) and
solves the whole fleet's whole-load problem with ``scipy.optimize.milp``:
the global optimum of priority-weighted power served within the limit (and
the feeders').  Then it lets the negotiation run to convergence and reads
the relays the boards really closed.

The last line: ``ratio_to_optimum=<served / optimum> rounds=<rounds of the
negotiation> limit_ok=<every round's commitments and the closed relays
within every limit>``.
"""

import argparse
import contextlib
import os
import sys
import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from jeisson.simulation import Simulation, random_fleet

EVENT_START_S = 90.0  # after the homes switched on what their owners want (min_off_s from power-up)


def event_limit_w(sim: Simulation) -> float:
    event = sim.aggregator.current_event
    if event is None:
        raise SystemExit(f"no event at {sim.clock.seconds():g} s: the fleet's event starts at {EVENT_START_S:g} s")
    return event.limit_w


def optimum(sim: Simulation) -> tuple[float, float]:
    """The milp optimum over every load, in the modes they have now: (value, bound)."""
    rated_w: list[float] = []
    values: list[float] = []
    low: list[bool] = []
    high: list[bool] = []
    feeders: list[int] = []
    grid = sim.aggregator.grid
    now = sim.clock.seconds()
    for home_id, home in sim.homes.items():
        if home.core is None:
            raise SystemExit(f"home {home_id} is down at the event's start")
        for load in home.core.loads.values():
            mode = load.mode(now)
            rated_w.append(load.config.rated_w)
            values.append(load.config.priority * load.config.rated_w)
            low.append(mode == "must")
            high.append(mode != "off")
            feeders.append(grid.index(home_id))
    rated, value = np.array(rated_w), np.array(values)
    rows = [rated]
    upper = [event_limit_w(sim)]
    feeder = np.array(feeders)
    for i, limit in enumerate(grid.limit_w):
        rows.append(np.where(feeder == i, rated, 0.0))
        upper.append(limit)
    with _quiet_stdout():
        result = milp(-value, constraints=LinearConstraint(np.array(rows), -np.inf, np.array(upper)),
                      integrality=np.ones(rated.size, dtype=int),
                      bounds=Bounds(np.array(low, float), np.array(high, float)),
                      options={"mip_rel_gap": 1e-6, "time_limit": 120})
    if result.x is None:
        raise SystemExit(f"the instance has no feasible allocation: {result.message}")
    return float(value @ np.round(result.x)), -float(result.mip_dual_bound)


@contextlib.contextmanager
def _quiet_stdout():
    """HiGHS (scipy 1.17) prints debugging lines on feeder instances: send them nowhere."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--feeders", type=int, default=0, help="spread the homes over this many feeders")
    parser.add_argument("--limit", type=float, default=0.6, help="the event's limit, as a fraction of demand")
    args = parser.parse_args()

    summaries = []
    started = time.perf_counter()
    aggregator_ini, fleet = random_fleet(args.homes, args.seed, limit_fraction=args.limit, feeders=args.feeders,
                                         event_start_s=EVENT_START_S)
    sim = Simulation(aggregator_ini, fleet)
    sim.run_until(EVENT_START_S - 0.01)
    set_up = time.perf_counter() - started
    sim.run_until(EVENT_START_S)
    best, bound = optimum(sim)
    aggregator = sim.aggregator
    # The negotiation's own record (the aggregator's property only reads it):
    # cleared, so that only this event's convergence counts.
    negotiation = aggregator.rounds.negotiation
    negotiation.converged_rounds = None
    negotiating = time.perf_counter()
    deadline = EVENT_START_S + aggregator.config.converge_s + 60
    last = None
    while aggregator.converged_rounds is None and sim.clock.seconds() < deadline:
        sim.run_until(sim.clock.seconds() + 0.1)
        if aggregator.last_round is not None and aggregator.last_round is not last:
            last = aggregator.last_round
            summaries.append(last)
    negotiated = time.perf_counter() - negotiating
    rounds = negotiation.converged_rounds if negotiation.converged_rounds is not None else negotiation.rounds
    served = sim.value_served()
    drawn = {h: sim.relays_w(h) for h in sim.homes}
    limit = event_limit_w(sim)
    feeders_ok = all(
        sum(drawn[h] for h in sim.homes if aggregator.grid.index(h) == i) <= aggregator.grid.limit_w[i] + 1e-6
        for i in range(len(aggregator.grid.names)))
    limit_ok = all(s.within_limit for s in summaries) and sum(drawn.values()) <= limit + 1e-6 and feeders_ok
    print(f"{args.homes} homes x 8 loads, seed {args.seed}, {args.feeders} feeders: limit {limit / 1000:.1f} kW")
    print(f"set-up {set_up:.1f} s; negotiation {negotiated:.1f} s of computing for {rounds} round(s), "
          f"{sim.clock.seconds() - EVENT_START_S:.1f} s simulated; {sim.network.delivered} lines delivered")
    print(f"served {served:.0f}, milp optimum {best:.0f} (bound {bound:.0f}, ratio to the bound "
          f"{served / bound:.5f}); "
          f"drawn {sum(drawn.values()) / 1000:.1f} kW of {limit / 1000:.1f} kW")
    print(f"ratio_to_optimum={served / best:.5f} rounds={rounds} limit_ok={'true' if limit_ok else 'false'}")


if __name__ == "__main__":
    main()
