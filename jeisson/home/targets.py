"""Which loads a home wants on, and which of them may go on now: pure
functions of its loads, its budget and the time.

``targets`` is the choice: outside a budget every known load as its owner
set it; under a budget the most valuable whole set of known loads within it
(``allocation.choose``, a MILP), counting loads on unreachable boards at
their rated power, and always within each load's minimum on and off times
(its ``mode``).  ``ons_that_fit`` picks, in the home's load order, the
switch-ons that keep the draw within the budget.
"""

from collections.abc import Iterable

import attrs
import numpy as np

from jeisson.allocation import choose
from jeisson.home.loads import Load


@attrs.frozen
class Targets:
    on: dict[str, bool]  # known load id -> whether it should be on
    feasible: bool  # False: the loads that must run exceed the budget (only they run)


def targets(loads: Iterable[Load], budget_w: float | None, now: float) -> Targets:
    """What should be on now; ``budget_w`` None: no budget holds."""
    loads = list(loads)
    known = [load for load in loads if load.known]
    if budget_w is None:
        return Targets({load.id: load.desired for load in known}, True)
    unknown_w = sum(load.config.rated_w for load in loads if not load.known)
    modes = [load.mode(now) for load in known]
    rated = np.array([load.config.rated_w for load in known])
    # A tiny bonus for loads already on: among equal choices, switch less.
    value = rated * np.array([load.config.priority + (1e-6 if load.on else 0.0) for load in known])
    low = np.array([m == "must" for m in modes], dtype=float)
    high = np.array([m != "off" for m in modes], dtype=float)
    result = choose(rated, value, low, high, budget_w - unknown_w)
    return Targets({load.id: bool(share) for load, share in zip(known, result.share, strict=True)},
                   bool(result.feasible))


def ons_that_fit(loads: Iterable[Load], on: dict[str, bool], room_w: float | None, now: float) -> list[Load]:
    """The known loads that are off, should be on and may switch now, as
    many as fit in ``room_w`` (None: no budget), in order."""
    ons = []
    for load in loads:
        if load.known and not load.on and on.get(load.id) and load.can_switch(True, now):
            if room_w is not None:
                if load.config.rated_w > room_w + 1e-6:
                    continue
                room_w -= load.config.rated_w
            ons.append(load)
    return ons
