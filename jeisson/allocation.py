"""Optimal load allocation: the aggregator's LP and the home's integer choice.

Both work on numpy arrays, one entry per load:

- ``rated``: rated power in W;
- ``value``: what serving the load's full power is worth (priority x W);
- ``low``/``high``: bounds on the share served, 0 or 1 (a ``must`` load has
  ``low = 1``, an ``off`` load ``high = 0``);
- ``group`` (aggregator only): the feeder each load hangs on, an index into
  ``group_limit_w``; every feeder has its own limit beside the total one.

``allocate`` relaxes the shares to [0, 1] and solves the aggregator's linear
program with HiGHS (``scipy.optimize.linprog``) under the total limit and
every feeder's at once; ``whole_loads`` turns its answer into whole loads
and fills what that frees; ``choose`` picks whole loads for a home with
``scipy.optimize.milp``.  None ever exceeds a limit except by ``must`` loads,
which no limit can shed: that case is reported as ``feasible=False``, and the
limit that cannot hold gets only its ``must`` loads.
"""

import attrs
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

# Budgets and choices are compared in W; a micro-watt of slack absorbs the
# solver's rounding without ever admitting a real load.
_TOLERANCE_W = 1e-6

# Callers pass lists or arrays; inside, every array is one of these.
FloatArray = NDArray[np.float64]
IndexArray = NDArray[np.intp]


@attrs.frozen
class Allocation:
    share: FloatArray  # served share of each load, in [low, high]
    feasible: bool  # False when must-run loads alone exceed a limit

    def served_w(self, rated: FloatArray) -> float:
        return float(rated @ self.share)


@attrs.frozen
class _Problem:
    """The arrays of one allocation, checked, with the room each limit leaves."""

    rated: FloatArray
    value: FloatArray
    low: FloatArray
    high: FloatArray
    group: IndexArray  # feeder index of each load
    room: float  # the total limit less every must load, at least 0
    group_room: FloatArray  # the same per feeder
    feasible: bool


def _problem(rated: ArrayLike, value: ArrayLike, low: ArrayLike, high: ArrayLike, limit_w: float,
             group: ArrayLike | None, group_limit_w: ArrayLike | None) -> _Problem:
    rated, value, low, high = (np.asarray(a, dtype=float) for a in (rated, value, low, high))
    if group is None:
        group = np.zeros(rated.size, dtype=np.intp)
        group_limit_w = np.array([np.inf])
    group = np.asarray(group, dtype=np.intp)
    group_limit_w = np.asarray(group_limit_w, dtype=float)
    must_w = float(rated @ low)
    group_must_w = np.bincount(group, weights=rated * low, minlength=group_limit_w.size)
    over = group_must_w > group_limit_w + _TOLERANCE_W
    feasible = must_w <= limit_w + _TOLERANCE_W and not over.any()
    group_room = np.maximum(group_limit_w - group_must_w, 0.0)
    return _Problem(rated, value, low, high, group, max(limit_w - must_w, 0.0), group_room, bool(feasible))


def allocate(rated: ArrayLike, value: ArrayLike, low: ArrayLike, high: ArrayLike, limit_w: float,
             group: ArrayLike | None = None, group_limit_w: ArrayLike | None = None) -> Allocation:
    """Shares of each load's power that maximise value within every limit.

    The LP is posed over *value classes*, not loads: loads on one feeder
    worth the same per watt (at the aggregator, the same priority) are
    interchangeable, so one variable per (feeder, priority), bounded by that
    class's flexible power, carries the whole problem, under one constraint
    per feeder and one for the total.  Each class's power is handed back to
    its loads in a fixed order (whole loads first, one load served
    fractionally).  When the must loads alone exceed the total limit, only
    they are served; when they exceed one feeder's, that feeder's other
    loads get nothing and the rest is still allocated.
    """
    p = _problem(rated, value, low, high, limit_w, group, group_limit_w)
    rated, low, high = p.rated, p.low, p.high
    if rated.size == 0:
        return Allocation(np.zeros(0), limit_w >= 0)
    if float(rated @ low) > limit_w + _TOLERANCE_W:
        return Allocation(low.copy(), False)
    share = low.copy()
    flexible = np.flatnonzero(high > low)
    # A flexible load of 0 W costs nothing: serve it whole.
    free = flexible[rated[flexible] <= 0]
    share[free] = high[free]
    flexible = flexible[rated[flexible] > 0]
    if flexible.size == 0:
        return Allocation(share, p.feasible)
    per_watt = p.value[flexible] / rated[flexible]
    levels, level_of = np.unique(per_watt, return_inverse=True)
    classes, class_of = np.unique(p.group[flexible] * levels.size + level_of, return_inverse=True)
    class_group = classes // levels.size
    class_worth = levels[classes % levels.size]
    # numpy's stub types every bincount as intp; with weights it is float64.
    capacity: FloatArray = np.bincount(  # type: ignore[assignment]
        class_of, weights=rated[flexible], minlength=classes.size)
    # Handing class power back to loads sums thousands of powers in floating
    # point (a cumulative sum errs by at most n x eps x its total); solving
    # for that much less than each room keeps the loads' sums within it
    # (2.5 mW at 80,000 loads and 140 MW, nothing at a few loads).
    margin = flexible.size * np.finfo(float).eps * float(capacity.sum())
    served = _solve(class_worth, capacity, class_group, max(p.room - margin, 0.0),
                    np.maximum(p.group_room - margin, 0.0))
    if served is None:
        return Allocation(low.copy(), False)
    # Within a class, loads in index order: a prefix whole, the next in part.
    by_class = np.lexsort((flexible, class_of))
    order, ordered_class = flexible[by_class], class_of[by_class]
    before = np.cumsum(rated[order]) - rated[order]
    class_start = np.concatenate(([0.0], np.cumsum(capacity)[:-1]))
    left = served[ordered_class] - (before - class_start[ordered_class])
    share[order] = np.clip(left / rated[order], 0.0, 1.0) * (high[order] - low[order]) + low[order]
    return Allocation(share, p.feasible)


def _solve(worth: FloatArray, capacity: FloatArray, group: IndexArray, room: float,
           group_room: FloatArray) -> FloatArray | None:
    """Power served per class: max worth . x, 0 <= x <= capacity, total and
    per-feeder sums within their rooms.  ``None`` if HiGHS fails."""
    n = worth.size
    used = np.unique(group)
    # Only feeders that can bind need a row: one whose room holds all its
    # classes' power cannot.
    group_capacity = np.bincount(group, weights=capacity, minlength=group_room.size)
    binding = used[group_room[used] < group_capacity[used]]
    row_of = np.full(group_room.size, -1)
    row_of[binding] = np.arange(1, binding.size + 1)
    rows = row_of[group]
    in_row = rows >= 0
    a_ub = sparse.csr_array(
        (np.ones(n + int(in_row.sum())),
         (np.concatenate([np.zeros(n, dtype=np.intp), rows[in_row]]),
          np.concatenate([np.arange(n), np.flatnonzero(in_row)]))),
        shape=(1 + binding.size, n))
    b_ub = np.concatenate([[room], group_room[binding]])
    # scipy-stubs accept neither a sparse A_ub nor bounds as an (n, 2) array;
    # linprog's HiGHS methods take both.
    result = linprog(-worth, A_ub=a_ub, b_ub=b_ub,  # type: ignore[call-overload]
                     bounds=np.column_stack([np.zeros(n), capacity]), method="highs")
    if result.status != 0:
        return None
    served: FloatArray = np.clip(result.x, 0.0, capacity)
    # HiGHS may overshoot a row by its tolerance: scale each feeder, then
    # the total, back within its room (a loss of parts per billion).
    group_served = np.bincount(group, weights=served, minlength=group_room.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(group_served > group_room, group_room / group_served, 1.0)
    served = served * scale[group]
    total = float(served.sum())
    if total > room:
        served = served * (room / total)
    return served


def whole_loads(rated: ArrayLike, value: ArrayLike, low: ArrayLike, high: ArrayLike, share: ArrayLike, limit_w: float,
                group: ArrayLike | None = None, group_limit_w: ArrayLike | None = None) -> Allocation:
    """``share`` (from ``allocate``) in whole loads, with what that frees filled.

    Every load served in part is dropped; then the loads not served are
    taken by value per watt, each one that still fits under the total limit
    and its feeder's.  Homes choose whole loads, so budgets built from whole
    loads can be met exactly, and the fill recovers most of what the
    fractional loads held: at a thousand homes the result is within a few
    parts per ten thousand of the whole-load optimum.
    """
    p = _problem(rated, value, low, high, limit_w, group, group_limit_w)
    rated, low, high = p.rated, p.low, p.high
    share = np.asarray(share, dtype=float)
    whole = np.where(share >= high - 1e-9, high, low)
    if float(rated @ low) > limit_w + _TOLERANCE_W:
        return Allocation(low.copy(), False)
    extra = rated * (whole - low)
    room = p.room - float(extra.sum())
    group_room = p.group_room - np.bincount(p.group, weights=extra, minlength=p.group_room.size)
    candidates = np.flatnonzero((whole < high) & (rated <= room + _TOLERANCE_W))
    if candidates.size:
        density = p.value[candidates] / np.where(rated[candidates] > 0, rated[candidates], 1.0)
        candidates = candidates[np.lexsort((candidates, -density))]
        c_rated, c_group = rated[candidates], p.group[candidates]
        start = 0
        # Each pass takes the first candidate that fits, so the loop runs once
        # per load taken, not per load: few, since the room left is small.
        while start < candidates.size:
            fits = (c_rated[start:] <= room + _TOLERANCE_W) & (
                c_rated[start:] <= group_room[c_group[start:]] + _TOLERANCE_W)
            if not fits.any():
                break
            k = start + int(np.argmax(fits))
            i = candidates[k]
            whole[i] = high[i]
            room -= c_rated[k]
            group_room[c_group[k]] -= c_rated[k]
            start = k + 1
    return Allocation(whole, p.feasible)


# Up to this many free loads, every subset is tried (2^12 = 4,096 rows of a
# small matrix take about 0.2 ms); above, HiGHS's branch and bound.
_ENUMERATE_UP_TO = 12


def choose(rated: ArrayLike, value: ArrayLike, low: ArrayLike, high: ArrayLike, budget_w: float) -> Allocation:
    """Whole loads (shares 0 or 1) that maximise value within ``budget_w``."""
    rated, value, low, high = (np.asarray(a, dtype=float) for a in (rated, value, low, high))
    if rated.size == 0:
        return Allocation(np.zeros(0), budget_w >= 0)
    if float(rated @ low) > budget_w + _TOLERANCE_W:
        return Allocation(low.copy(), False)
    if float(rated @ high) <= budget_w + _TOLERANCE_W:
        return Allocation(high.copy(), True)
    free = np.flatnonzero(high > low)
    if free.size <= _ENUMERATE_UP_TO:
        return Allocation(_enumerate(rated, value, low, free, budget_w), True)
    result = milp(
        -value,
        constraints=LinearConstraint(rated[np.newaxis, :], -np.inf, budget_w + _TOLERANCE_W),
        integrality=np.ones(rated.size, dtype=np.intp),  # milp casts it to uint8
        bounds=Bounds(low, high),
        # HiGHS stops within 0.01 % of the optimum by default; a home has few
        # loads, so ask for the optimum itself.
        options={"mip_rel_gap": 0},
    )
    if result.status != 0 or result.x is None:
        return Allocation(low.copy(), False)
    return Allocation(np.round(result.x), True)


def _enumerate(rated: FloatArray, value: FloatArray, low: FloatArray, free: IndexArray, budget_w: float) -> FloatArray:
    """The best subset of the ``free`` loads beside the must loads, by trying
    all of them: exact, and much faster than a MILP for a home's few loads.
    Among subsets of equal value the first (fewest loads switched on by
    index) wins, as the value ties are broken by the caller's bonuses."""
    subsets = (np.arange(1 << free.size)[:, np.newaxis] >> np.arange(free.size)) & 1
    power = subsets @ rated[free]
    worth = subsets @ value[free]
    room = budget_w + _TOLERANCE_W - float(rated @ low)
    worth = np.where(power <= room, worth, -np.inf)
    share = low.copy()
    share[free] = subsets[int(np.argmax(worth))]
    return share
