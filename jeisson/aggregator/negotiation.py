"""The aggregator's decisions, as pure functions over the homes' reports.

A round turns every participating home's latest flexibility report into a
target budget (``plan``), then dispatches it in two phases so that the sum of
what homes may draw never passes the limit while they switch: first the homes
whose budget is below what they draw now (they shed), then, once those have
committed, the others, each granted at most the headroom actually left
(``grant_increases``).
"""

import attrs
import numpy as np

from jeisson.allocation import allocate
from jeisson.wire.aggregator_home import Flex


def on_w(flex: Flex) -> float:
    """What a home draws by its own report: every load that is on."""
    return float(sum(o.rated_w for o in flex.loads if o.on))


def demand_w(flex: Flex) -> float:
    """What a home would draw without an event: the loads its owner wants on,
    and those that must run."""
    return float(sum(o.rated_w for o in flex.loads if o.wanted or o.mode == "must"))


@attrs.frozen
class Plan:
    budgets: dict[str, float]
    feasible: bool  # False: the homes' must-run loads alone exceed the room


def plan(flexes: dict[str, Flex], room_w: float) -> Plan:
    """Budgets for ``flexes`` (home id -> report) summing to at most ``room_w``.

    Loads are weighted by priority x rated power; ``must`` loads are always
    served, ``off`` loads never.
    """
    homes = list(flexes)
    offers = [(i, o) for i, h in enumerate(homes) for o in flexes[h].loads]
    if not offers:
        return Plan({h: 0.0 for h in homes}, room_w >= 0)
    owner = np.fromiter((i for i, _ in offers), dtype=np.intp, count=len(offers))
    rated = np.fromiter((o.rated_w for _, o in offers), dtype=float, count=len(offers))
    priority = np.fromiter((o.priority for _, o in offers), dtype=float, count=len(offers))
    low = np.fromiter((o.mode == "must" for _, o in offers), dtype=float, count=len(offers))
    high = np.fromiter((o.mode != "off" for _, o in offers), dtype=float, count=len(offers))
    result = allocate(rated, priority * rated, low, high, max(room_w, 0.0))
    per_home = np.bincount(owner, weights=rated * result.share, minlength=len(homes))
    # A negative room (homes away already draw more than the limit) fits no
    # must-run load, not even none: infeasible, as with no offers above.
    return Plan({h: float(per_home[i]) for i, h in enumerate(homes)}, result.feasible and room_w >= 0)


def grant_increases(
    wanted: dict[str, float], levels: dict[str, float], headroom_w: float
) -> dict[str, float]:
    """Budgets for homes whose target is at or above their level.

    Each keeps its level and gets what it wants above it while the headroom
    lasts, in the order given (the caller orders by value).  Never more than
    ``levels + max(headroom, 0)`` in total.
    """
    granted = {}
    left = max(headroom_w, 0.0)
    for home, target in wanted.items():
        extra = min(max(target - levels[home], 0.0), left)
        left -= extra
        granted[home] = levels[home] + extra
    return granted
