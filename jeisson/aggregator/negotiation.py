"""The aggregator's decisions, as pure functions over the homes' reports.

A round turns every participating home's latest flexibility report into a
target budget (``plan``), then dispatches it in two phases so that the sum of
what homes may draw never passes a limit while they switch: first the homes
whose budget is below what they draw now (they shed; those kept at their
draw go with them), then, once those have committed, the others, each
granted at most the headroom actually left, in total and on its feeder
(``grant_increases``).

Each report's loads become numpy arrays once, when it arrives (``Offers``),
so planning a round concatenates a few arrays per home and never loops over
loads in Python.
"""

from collections.abc import Mapping

import attrs
import numpy as np
from numpy.typing import ArrayLike

from jeisson.allocation import FloatArray, allocate, whole_loads
from jeisson.wire.aggregator_home import Flex

_SLACK_W = 1e-6


@attrs.frozen(eq=False)
class Offers:
    """A flexibility report's loads as arrays, with the powers a round needs."""

    rated: FloatArray
    priority: FloatArray
    low: FloatArray  # 1 for a must load
    high: FloatArray  # 0 for an off load
    on_w: float  # what the home draws by its own report: every load on
    demand_w: float  # what it would draw without an event: loads wanted on, and must-run ones

    @classmethod
    def of(cls, flex: Flex) -> "Offers":
        """The arrays of ``flex``.  A home whose owner opted out offers no
        flexibility: every load it runs or will run as set is fixed."""
        # One pass over the loads (a home has a few): cheaper than numpy
        # operations on arrays this small.
        rated: list[float] = []
        priority: list[int] = []
        low: list[bool] = []
        high: list[bool] = []
        on_w = demand_w = 0.0
        opt_out = flex.opt_out
        for o in flex.loads:
            watts = o.rated_w
            # Opted out: until it switches them, a load on still draws; so
            # loads on, wanted or must-run are all fixed.
            must = o.mode == "must" or (opt_out and (o.wanted or o.on))
            rated.append(watts)
            priority.append(o.priority)
            low.append(must)
            high.append(must if opt_out else o.mode != "off")
            if o.on:
                on_w += watts
            if must or o.wanted:
                demand_w += watts
        return cls(
            rated=np.array(rated, dtype=float),
            priority=np.array(priority, dtype=float),
            low=np.array(low, dtype=float),
            high=np.array(high, dtype=float),
            on_w=on_w,
            demand_w=demand_w,
        )

    @property
    def must_w(self) -> float:
        return float(self.rated @ self.low)


@attrs.frozen
class Grid:
    """Feeders (or transformers) under the total limit.

    ``feeder_of`` maps a home to its feeder's index; homes on no feeder are
    bound by the total limit alone.  ``limit_w`` holds each feeder's limit.
    """

    names: tuple[str, ...] = ()
    limit_w: tuple[float, ...] = ()
    feeder_of: dict[str, int] = attrs.Factory(dict)

    def index(self, home: str) -> int:
        """The home's feeder, or ``len(names)`` for none (no limit of its own)."""
        return self.feeder_of.get(home, len(self.names))

    def rooms(self, used_w: FloatArray | None = None) -> FloatArray:
        """Each feeder's limit less ``used_w`` (an array), then an unlimited
        entry for homes on no feeder."""
        rooms = np.append(np.array(self.limit_w, dtype=float), np.inf)
        return rooms if used_w is None else rooms - used_w

    def sums(self, per_home: Mapping[str, float]) -> FloatArray:
        """Powers per home, summed per feeder (same layout as ``rooms``)."""
        sums = np.zeros(len(self.names) + 1)
        for home, watts in per_home.items():
            sums[self.index(home)] += watts
        return sums


NO_FEEDERS = Grid()


@attrs.frozen
class Plan:
    budgets: dict[str, float]
    feasible: bool  # False: must-run loads alone exceed the room, in total or on a feeder
    value: float = 0.0  # priority-weighted power of the whole-load plan
    bound: float = 0.0  # the same for the LP relaxation: no plan can do better
    # Each home's must-run power (homes with none left out): every budget
    # covers it, feasible or not.
    must: dict[str, float] = attrs.Factory(dict)

    @property
    def must_w(self) -> float:
        """The must-run power planned, in total."""
        return float(sum(self.must.values()))


def plan(flexes: Mapping[str, Offers | Flex], room_w: float, grid: Grid = NO_FEEDERS,
         feeder_room_w: ArrayLike | None = None) -> Plan:
    """Budgets for ``flexes`` (home id -> ``Offers`` or ``Flex``) within ``room_w``
    in total and ``feeder_room_w[i]`` on each feeder of ``grid``.

    Loads are weighted by priority x rated power; ``must`` loads are always
    served, ``off`` loads never: when the must-run loads exceed a limit
    (``feasible`` False), their homes' budgets still cover them, and the
    loads under that limit get nothing more.  The LP relaxation is solved over every
    limit at once, then turned into whole loads (``whole_loads``), so each
    budget is the power of a set of whole loads its home can switch.
    """
    homes = list(flexes)
    offers = [f if isinstance(f, Offers) else Offers.of(f) for f in flexes.values()]
    counts = np.fromiter((o.rated.size for o in offers), dtype=np.intp, count=len(offers))
    rooms = grid.rooms() if feeder_room_w is None else np.asarray(feeder_room_w, dtype=float)
    if not homes or counts.sum() == 0:
        # No load at all: only a limit already passed makes this infeasible.
        return Plan({h: 0.0 for h in homes}, bool(room_w >= -_SLACK_W and np.all(rooms >= -_SLACK_W)))
    rated = np.concatenate([o.rated for o in offers])
    value = np.concatenate([o.priority for o in offers]) * rated
    low = np.concatenate([o.low for o in offers])
    high = np.concatenate([o.high for o in offers])
    owner = np.repeat(np.arange(len(homes)), counts)
    group = np.repeat(np.fromiter((grid.index(h) for h in homes), dtype=np.intp, count=len(homes)), counts)
    relaxed = allocate(rated, value, low, high, room_w, group, rooms)
    result = whole_loads(rated, value, low, high, relaxed.share, room_w, group, rooms)
    per_home = np.bincount(owner, weights=rated * result.share, minlength=len(homes))
    must_per_home = np.bincount(owner, weights=rated * low, minlength=len(homes))
    return Plan({h: float(per_home[i]) for i, h in enumerate(homes)}, result.feasible,
                float(value @ result.share), float(value @ relaxed.share),
                {homes[i]: float(must_per_home[i]) for i in np.flatnonzero(must_per_home > 0)})


def grant_increases(wanted: dict[str, float], levels: dict[str, float], headroom_w: float,
                    grid: Grid = NO_FEEDERS, feeder_headroom_w: ArrayLike | None = None,
                    must: Mapping[str, float] | None = None) -> dict[str, float]:
    """Budgets for homes whose target is at or above their level.

    Each keeps its level and gets what it wants above it while the headroom
    lasts, in total and on its feeder, in the order given (the caller orders
    by value).  Never more than ``levels + max(headroom, 0)`` in total, nor
    on any feeder, except by must-run power: a home whose ``must`` (its
    must-run power, from ``Plan.must``) is above its level is granted it
    whatever the headroom, and that is counted first, before anything
    flexible is granted (a freezer past its ``max_off_s`` comes back on even
    when the must-run loads exceed the limit).
    """
    granted: dict[str, float] = {}
    left = headroom_w
    feeder_left = np.array(grid.rooms() if feeder_headroom_w is None else feeder_headroom_w, dtype=float)
    floors = dict(levels)
    if must:
        for home in wanted:
            raise_w = max(min(must.get(home, 0.0), wanted[home]) - levels[home], 0.0)
            if raise_w > 0:
                floors[home] = levels[home] + raise_w
                left -= raise_w
                feeder_left[grid.index(home)] -= raise_w
    left = max(left, 0.0)
    feeder_left = np.maximum(feeder_left, 0.0)
    for home, target in wanted.items():
        feeder = grid.index(home)
        extra = min(max(target - floors[home], 0.0), left, feeder_left[feeder])
        left -= extra
        feeder_left[feeder] -= extra
        granted[home] = floors[home] + extra
    return granted
