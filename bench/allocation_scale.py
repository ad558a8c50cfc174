"""How the aggregator's allocation scales: ``python bench/allocation_scale.py``.

Random loads (0.1 to 5 kW, priorities 1 to 100, 10 % must-run, 10 % off)
under one limit at 60 % of the flexible demand, then the same loads spread
over 100 feeders, each limited to 55 % of its own demand, beside the total.  ``allocate`` poses the LP
over value classes (one variable per priority); the reference poses it over
every load, as a plain ``linprog`` call would.  Both are checked against the
exact greedy optimum.  The last line sums it up.
"""

import argparse

import numpy as np
from scipy.optimize import linprog
from timing import median_seconds

from jeisson.allocation import allocate, whole_loads


def instance(n: int, rng: np.random.Generator):
    rated = rng.uniform(100, 5000, n)
    priority = rng.integers(1, 101, n).astype(float)
    kind = rng.random(n)
    low = (kind < 0.1).astype(float)
    high = (kind < 0.9).astype(float)
    limit = float(rated @ low + 0.6 * rated @ (high - low))
    return rated, priority * rated, low, high, limit


def greedy_value(rated, value, low, high, limit) -> float:
    """The single-constraint LP's exact optimum: by value per watt."""
    free = np.flatnonzero(high > low)
    order = free[np.argsort(-(value[free] / rated[free]), kind="stable")]
    room = limit - float(rated @ low)
    cumulative = np.cumsum(rated[order])
    whole = int(np.searchsorted(cumulative, room, side="right"))
    total = float(value @ low) + float(value[order[:whole]].sum())
    if whole < order.size:
        spent = cumulative[whole - 1] if whole else 0.0
        total += value[order[whole]] * (room - spent) / rated[order[whole]]
    return total


def laminar_greedy_value(rated, value, low, high, limit, group, group_limit) -> float:
    """The optimum under the total and per-feeder limits: by value per watt,
    each load as far as its feeder and the total allow (exact for nested limits)."""
    room = limit - float(rated @ low)
    group_room = group_limit - np.bincount(group, weights=rated * low, minlength=group_limit.size)
    free = np.flatnonzero(high > low)
    total = float(value @ low)
    for i in free[np.argsort(-(value[free] / rated[free]), kind="stable")]:
        take = min(rated[i], max(min(room, group_room[group[i]]), 0.0))
        total += value[i] * take / rated[i]
        room -= take
        group_room[group[i]] -= take
    return total


def per_load_lp(rated, value, low, high, limit):
    return linprog(-value, A_ub=rated[np.newaxis, :], b_ub=[limit], bounds=list(zip(low, high, strict=True)),
                   method="highs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    figures = {}
    for n in (1_000, 10_000, 80_000):
        rated, value, low, high, limit = instance(n, rng)
        result = allocate(rated, value, low, high, limit)
        served = float(rated @ result.share)
        ratio = float(value @ result.share) / greedy_value(rated, value, low, high, limit)
        seconds = median_seconds(lambda rated=rated, value=value, low=low, high=high, limit=limit:
                                 allocate(rated, value, low, high, limit))
        figures[n] = seconds
        line = (f"{n} loads: allocate {seconds * 1e3:.1f} ms, value / exact optimum {ratio:.9f}, "
                f"served {served / limit:.9f} of the limit")
        if n <= 10_000:
            reference = median_seconds(lambda rated=rated, value=value, low=low, high=high, limit=limit:
                                       per_load_lp(rated, value, low, high, limit), repeats=3)
            line += f"; per-load linprog {reference * 1e3:.0f} ms ({reference / seconds:.0f} x)"
        print(line)
    rated, value, low, high, limit = instance(80_000, rng)
    group = rng.integers(0, 100, rated.size)
    group_limit = 0.55 * np.bincount(group, weights=rated * high, minlength=100)
    result = allocate(rated, value, low, high, limit, group, group_limit)
    ratio = float(value @ result.share) / laminar_greedy_value(rated, value, low, high, limit, group, group_limit)
    per_feeder = np.bincount(group, weights=rated * result.share, minlength=100)
    feeders = median_seconds(lambda: allocate(rated, value, low, high, limit, group, group_limit), repeats=5)
    whole = median_seconds(lambda: whole_loads(rated, value, low, high, result.share, limit, group, group_limit),
                           repeats=5)
    print(f"80000 loads under 100 feeders and the total: allocate {feeders * 1e3:.1f} ms, whole_loads "
          f"{whole * 1e3:.1f} ms, value / exact optimum {ratio:.9f}, every feeder within its limit: "
          f"{bool(np.all(per_feeder <= group_limit + 1e-6))}")
    print(f"allocate_1000_ms={figures[1_000] * 1e3:.1f} allocate_10000_ms={figures[10_000] * 1e3:.1f} "
          f"allocate_80000_ms={figures[80_000] * 1e3:.1f} feeders_100_80000_ms={feeders * 1e3:.1f}")


if __name__ == "__main__":
    main()
