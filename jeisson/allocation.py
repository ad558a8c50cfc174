"""Optimal load allocation: the aggregator's LP and the home's integer choice.

Both work on numpy arrays, one entry per load:

- ``rated``: rated power in W;
- ``value``: what serving the load's full power is worth (priority x W);
- ``low``/``high``: bounds on the share served, 0 or 1 (a ``must`` load has
  ``low = 1``, an ``off`` load ``high = 0``).

``allocate`` relaxes the shares to [0, 1] and solves the aggregator's linear
program with HiGHS (``scipy.optimize.linprog``); ``choose`` picks whole loads
for a home with ``scipy.optimize.milp``.  Neither ever exceeds its limit
except by the ``must`` loads, which no limit can shed: that case is reported
as ``feasible=False`` and only the ``must`` loads are served.
"""

import attrs
import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

# Budgets and choices are compared in W; a micro-watt of slack absorbs the
# solver's rounding without ever admitting a real load.
_TOLERANCE_W = 1e-6


@attrs.frozen
class Allocation:
    share: np.ndarray  # served share of each load, in [low, high]
    feasible: bool  # False when the must-run loads alone exceed the limit

    def served_w(self, rated: np.ndarray) -> float:
        return float(rated @ self.share)


def allocate(rated, value, low, high, limit_w: float) -> Allocation:
    """Shares of each load's power that maximise value within ``limit_w``.

    The LP is posed over *value classes*, not loads: loads worth the same
    per watt (at the aggregator, the same priority) are interchangeable, so
    one variable per class, bounded by the class's flexible power, carries
    the whole problem; ``linprog`` then solves at most one variable per
    priority level, however many thousand loads there are.  Each class's
    power is handed back to its loads in a fixed order (whole loads first,
    one load served fractionally), so homes receive budgets they can fill
    with whole loads.
    """
    rated, value, low, high = (np.asarray(a, dtype=float) for a in (rated, value, low, high))
    if rated.size == 0:
        return Allocation(np.zeros(0), limit_w >= 0)
    must_w = float(rated @ low)
    if must_w > limit_w + _TOLERANCE_W:
        return Allocation(low.copy(), False)
    if float(rated @ high) <= limit_w:
        return Allocation(high.copy(), True)
    share = low.copy()
    flexible = np.flatnonzero(high > low)
    # A flexible load of 0 W costs nothing: serve it whole.
    free = flexible[rated[flexible] <= 0]
    share[free] = high[free]
    flexible = flexible[rated[flexible] > 0]
    if flexible.size == 0:
        return Allocation(share, True)
    per_watt = value[flexible] / rated[flexible]
    classes, class_of = np.unique(per_watt, return_inverse=True)
    capacity = np.bincount(class_of, weights=rated[flexible], minlength=classes.size)
    room = max(limit_w - must_w, 0.0)
    result = linprog(
        -classes,
        A_ub=np.ones((1, classes.size)),
        b_ub=[room],
        bounds=np.column_stack([np.zeros(classes.size), capacity]),
        method="highs",
    )
    if result.status != 0:
        return Allocation(low.copy(), False)
    served = np.clip(result.x, 0.0, capacity)
    # Trim any rounding overshoot from the least valuable classes.
    overshoot = float(served.sum()) - room
    for c in range(classes.size):
        if overshoot <= 0:
            break
        cut = min(served[c], overshoot)
        served[c] -= cut
        overshoot -= cut
    # Within a class, loads in index order: a prefix whole, the next in part.
    order = flexible[np.lexsort((flexible, class_of))]
    ordered_class = class_of[np.lexsort((flexible, class_of))]
    before = np.cumsum(rated[order]) - rated[order]
    class_start = np.concatenate(([0.0], np.cumsum(capacity)[:-1]))
    before_in_class = before - class_start[ordered_class]
    left = served[ordered_class] - before_in_class
    share[order] = np.clip(left / rated[order], 0.0, 1.0) * (high[order] - low[order]) + low[order]
    return Allocation(share, True)


def choose(rated, value, low, high, budget_w: float) -> Allocation:
    """Whole loads (shares 0 or 1) that maximise value within ``budget_w``."""
    rated, value, low, high = (np.asarray(a, dtype=float) for a in (rated, value, low, high))
    if rated.size == 0:
        return Allocation(np.zeros(0), budget_w >= 0)
    if float(rated @ low) > budget_w + _TOLERANCE_W:
        return Allocation(low.copy(), False)
    if float(rated @ high) <= budget_w + _TOLERANCE_W:
        return Allocation(high.copy(), True)
    result = milp(
        -value,
        constraints=LinearConstraint(rated[np.newaxis, :], -np.inf, budget_w + _TOLERANCE_W),
        integrality=np.ones(rated.size),
        bounds=Bounds(low, high),
        # HiGHS stops within 0.01 % of the optimum by default; a home has few
        # loads, so ask for the optimum itself.
        options={"mip_rel_gap": 0},
    )
    if result.status != 0 or result.x is None:
        return Allocation(low.copy(), False)
    return Allocation(np.round(result.x), True)
