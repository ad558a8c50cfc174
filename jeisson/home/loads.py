"""A load's switching rules, as pure functions of its state and the time.

A load is *on*, *off*, or *unknown* (its board is unreachable: the home must
assume it draws its rated power).  Minimum on and off times bind every
switch the home makes, whatever the budget; critical loads the owner wants
on are never shed; a load its owner wants on that has been off for its
maximum off time must come back on (a freezer, a heat pump in winter), and
its minimum on time then holds it there.  A must-run load goes on whatever
the budget only if it stays must-run once on (``held_once_on``): one with no
minimum on time would be free to shed the moment it went on, so it goes on
when it fits (the aggregator's budgets cover every must-run load).
"""

import attrs

from jeisson.home.config import LoadConfig


@attrs.define
class Load:
    config: LoadConfig
    on: bool | None = None  # None: unknown (board unreachable)
    last_switch: float = float("-inf")
    desired: bool = attrs.field(default=None)
    measured_w: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.desired is None:
            self.desired = self.config.desired

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def known(self) -> bool:
        return self.on is not None

    def cautious_w(self) -> float:
        """Power to count: rated when on or unknown."""
        return self.config.rated_w if self.on is not False else 0.0

    def allowed_at(self, to_on: bool) -> float:
        """The earliest time a switch to ``to_on`` respects the minimum times."""
        held = self.config.min_off_s if to_on else self.config.min_on_s
        return self.last_switch + held

    def can_switch(self, to_on: bool, now: float) -> bool:
        return self.on is not None and self.on != to_on and now >= self.allowed_at(to_on)

    def due_on_at(self) -> float:
        """When a shed load has been off its maximum time (inf: never)."""
        limit = self.config.max_off_s
        return self.last_switch + limit if limit is not None else float("inf")

    def mode(self, now: float) -> str:
        """What the aggregator may do with this load: must, may or off."""
        if self.on is None:
            return "must"
        if self.on:
            if (self.desired and self.config.critical) or not self.can_switch(False, now):
                return "must"
            return "may" if self.desired else "off"
        if not self.desired or not self.can_switch(True, now):
            return "off"
        return "must" if self.config.critical or now >= self.due_on_at() else "may"

    def held_once_on(self) -> bool:
        """Whether, switched on now, it would stay must-run for a while:
        critical and wanted, or held by its minimum on time."""
        return bool(self.desired and self.config.critical) or self.config.min_on_s > 0

    def next_change(self, now: float) -> float | None:
        """When this load's mode changes by time alone, if it will."""
        if self.on is None:
            return None
        moments = [self.allowed_at(not self.on)]
        if not self.on and self.desired:
            moments.append(self.due_on_at())
        future = [m for m in moments if now < m < float("inf")]
        return min(future) if future else None
