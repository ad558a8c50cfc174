"""Which loads a home wants on, and which of them may go on now: pure
functions of its loads, its budget and the time.

``targets`` is the choice: outside a budget every known load as its owner
set it; under a budget the most valuable whole set of known loads within it
(``allocation.choose``, a MILP), counting loads on unreachable boards at
their rated power, and always within each load's minimum on and off times
(its ``mode``).  ``ons_that_fit`` picks the switch-ons: every must-run
load whatever the budget (appliance protection comes first: a freezer past
its ``max_off_s`` goes back on even when the must-run loads alone exceed the
budget, and ``targets`` has shed every flexible load to make what room it
can), then, in the home's load order, the others that keep the draw within
what is left.  So a home draws more than its budget only by must-run loads.
A must-run load that nothing would hold on once switched (no minimum on
time, not critical) is the exception: over the budget it would be
flexible, and shed, the moment it went on, so it goes on only where it fits.
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
    must_w: float = 0.0  # what the loads that must run draw, those on unreachable boards at rated power


def targets(loads: Iterable[Load], budget_w: float | None, now: float) -> Targets:
    """What should be on now; ``budget_w`` None: no budget holds.

    Must-run loads are chosen first, whatever the budget, and the flexible
    ones only within what is left.  A must-run load off that nothing would
    hold on once switched (``Load.held_once_on``) is taken only as far as
    it fits, though before anything flexible."""
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
    room_w = budget_w - unknown_w
    must_w = float(rated @ low)
    result = choose(rated, value, low, high, room_w)
    soft = np.array([m == "must" and not load.on and not load.held_once_on() for load, m in zip(known, modes,
                                                                                                    strict=True)],
                    dtype=bool)
    if not result.feasible and soft.any():
        # Only the loads that stay must-run once on are served whatever the
        # budget; the others before anything flexible, as far as they fit:
        # each is worth more than every flexible load together.
        value = np.where(soft, float(value.sum()) + 1.0, value)
        result = choose(rated, value, np.where(soft, 0.0, low), high, room_w)
    return Targets({load.id: bool(share) for load, share in zip(known, result.share, strict=True)},
                   must_w <= room_w + 1e-6, must_w + unknown_w)


def ons_that_fit(loads: Iterable[Load], on: dict[str, bool], room_w: float | None, now: float) -> list[Load]:
    """The known loads that are off, should be on and may switch now, in
    order: every one that must run (``Load.mode``: critical and wanted, or
    past its ``max_off_s``) and stays must-run once on
    (``Load.held_once_on``) whatever ``room_w``, and of the others as many
    as fit in what is left of ``room_w`` (None: no budget) once those are
    counted."""
    candidates = [load for load in loads
                  if load.known and not load.on and on.get(load.id) and load.can_switch(True, now)]
    if room_w is None:
        return candidates
    must = {load.id for load in candidates if load.mode(now) == "must" and load.held_once_on()}
    # Must-run loads are counted first: what they take is not there for the others.
    room_w -= sum(load.config.rated_w for load in candidates if load.id in must)
    ons = []
    for load in candidates:
        if load.id not in must:
            if load.config.rated_w > room_w + 1e-6:
                continue
            room_w -= load.config.rated_w
        ons.append(load)
    return ons
