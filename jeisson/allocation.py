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
    """Shares of each load's power that maximise value within ``limit_w``."""
    rated, value, low, high = (np.asarray(a, dtype=float) for a in (rated, value, low, high))
    if rated.size == 0:
        return Allocation(np.zeros(0), limit_w >= 0)
    must_w = float(rated @ low)
    if must_w > limit_w + _TOLERANCE_W:
        return Allocation(low.copy(), False)
    if float(rated @ high) <= limit_w:
        return Allocation(high.copy(), True)
    result = linprog(
        -value,
        A_ub=rated[np.newaxis, :],
        # Must loads within the slack above the limit are feasible, as checked
        # above; do not leave that verdict to the solver's own tolerance.
        b_ub=[max(limit_w, must_w)],
        bounds=np.column_stack([low, high]),
        method="highs",
    )
    if result.status != 0:
        return Allocation(low.copy(), False)
    share = np.clip(result.x, low, high)
    # Trim any rounding overshoot from the least valuable served load.
    overshoot = float(rated @ share) - limit_w
    if overshoot > 0:
        for i in np.argsort(value / np.maximum(rated, 1e-9)):
            if overshoot <= 0:
                break
            if rated[i] > 0 and share[i] > low[i]:
                cut = min(share[i] - low[i], overshoot / rated[i])
                share[i] -= cut
                overshoot -= cut * rated[i]
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
