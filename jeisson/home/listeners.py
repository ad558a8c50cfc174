"""The home's listener seam: the moments others care about.

The home announces what happens to it; whoever observes (next: a store, a
web API, metrics, a display on the wall) subscribes with
``Home.add_listener`` and overrides the moments it cares about.  The home
never knows who listens.

Every moment is called synchronously, in the order the listeners were added,
after the home's own state reflects it (a listener reading
``Home.snapshot()`` from a moment sees it).  After each moment a listener is
also told ``changed()``.  A listener that raises is logged and skipped; the
others and the home go on.  Listeners must not block: slow work goes to a
thread or a queue of their own.

Why a load switched (``why`` of ``load_switched`` and ``switch_failed``):
the reasons the home chose its relays again, in the order they arose, each
one of the names below; a load switched on under a budget because it was off
its ``max_off_s`` also has ``MAX_OFF`` (the safety rule, not the budget,
brought it back).

A state the home did not command (a board's HELLO reporting a relay closed
that the home last commanded open, or never commanded; or open though the
home had it closed) is ``load_found``, not ``load_switched``.
"""

from jeisson.fanout import Fanout

# Why the home chose its relays again.
BUDGET = "budget"  # a BUDGET from the aggregator
RELEASE = "release"  # the aggregator released the event
EVENT_OVER = "event over"  # the event's end came, with or without the aggregator
OWNER = "owner"  # the owner set a load, or opted out or in
BOARD_JOINED = "board joined"  # a board said HELLO: its relays are known again
BOARD_LEFT = "board left"  # a board was lost: its loads count at rated power
MINIMUM_TIME = "minimum time"  # a load's minimum on or off time ran out
RETRY = "retry"  # a switch a board refused as busy is tried again
MAX_OFF = "max_off_s"  # (for one load) it was off its max_off_s: back on whatever the budget


class HomeListener:
    """Every moment, as a no-op: subclass and override what you observe."""

    def changed(self) -> None:
        """After every moment: what a snapshot shows may have changed."""

    # -- the aggregator

    def aggregator_linked(self, peer: str, version: int) -> None:
        """The aggregator welcomed the home, in protocol ``version``."""

    def aggregator_unlinked(self, peer: str) -> None:
        """The welcomed link to the aggregator closed (the home keeps its
        last budget until its event ends)."""

    def aggregator_refused(self, reason: str) -> None:
        """The aggregator refused the home, or the home its WELCOME
        (``"code: detail"``)."""

    # -- budgets

    def budget_applied(self, event: str, budget_w: float, end: float, round_number: int) -> None:
        """A budget is in force until ``end`` (also when the owner opted
        out of the event: the loads then run as set)."""

    def budget_released(self, event: str, why: str) -> None:
        """The budget of ``event`` no longer holds: ``RELEASE`` or
        ``EVENT_OVER``."""

    # -- loads

    def load_switched(self, load: str, on: bool, why: tuple[str, ...]) -> None:
        """A board acknowledged switching ``load``."""

    def switch_failed(self, load: str, on: bool, why: tuple[str, ...], error: str, code: str | None) -> None:
        """Switching ``load`` failed: ``code`` is the board's NAK code
        (``busy``, ``relay``), None for a timeout or a board gone."""

    def load_found(self, load: str, on: bool, commanded: bool | None) -> None:
        """A board's HELLO reported ``load`` in a state the home did not
        command; ``commanded`` is what the home last commanded (None:
        nothing on record).  Found on: it is on, but not by the home's
        switch, so its ``min_on_s`` does not hold and it may be switched off
        at once (a board powered up into its ``initial`` states, a relay
        closed by hand).  Found off though the home had it on (a failsafe
        or a power blip opened it), or off with nothing on record: it
        counts as just switched off, so its ``min_off_s`` holds from now."""

    # -- the owner

    def owner_set(self, load: str, on: bool) -> None:
        """The owner wants ``load`` on or off (outside events it runs so)."""

    def owner_opted_out(self, event: str | None) -> None:
        """The owner opted out of ``event``, or of every event (None)."""

    def owner_opted_in(self, event: str | None) -> None:
        """The owner opted back in to ``event``, or to every event (None)."""

    # -- boards

    def board_joined(self, actuator: str, peer: str, states: tuple[bool, ...]) -> None:
        """A board said HELLO with its relays' ``states``."""

    def board_left(self, actuator: str, loads: tuple[str, ...]) -> None:
        """A board was lost: its ``loads`` count at their rated power."""

    def measurement(self, actuator: str, watts: tuple[int, ...]) -> None:
        """A board's meter readings, one per relay."""


class Announcer(HomeListener):
    """Fans every moment out to the listeners added."""

    def __init__(self) -> None:
        self._fanout: Fanout[HomeListener] = Fanout("home listener", HomeListener)

    @property
    def listeners(self) -> list[HomeListener]:
        return self._fanout.listeners

    def add(self, listener: HomeListener) -> None:
        self._fanout.add(listener)

    def remove(self, listener: HomeListener) -> None:
        self._fanout.remove(listener)

    def changed(self) -> None:
        self._fanout.each(())

    def aggregator_linked(self, peer: str, version: int) -> None:
        self._fanout.each(self._fanout.calls("aggregator_linked"), peer, version)

    def aggregator_unlinked(self, peer: str) -> None:
        self._fanout.each(self._fanout.calls("aggregator_unlinked"), peer)

    def aggregator_refused(self, reason: str) -> None:
        self._fanout.each(self._fanout.calls("aggregator_refused"), reason)

    def budget_applied(self, event: str, budget_w: float, end: float, round_number: int) -> None:
        self._fanout.each(self._fanout.calls("budget_applied"), event, budget_w, end, round_number)

    def budget_released(self, event: str, why: str) -> None:
        self._fanout.each(self._fanout.calls("budget_released"), event, why)

    def load_switched(self, load: str, on: bool, why: tuple[str, ...]) -> None:
        self._fanout.each(self._fanout.calls("load_switched"), load, on, why)

    def switch_failed(self, load: str, on: bool, why: tuple[str, ...], error: str, code: str | None) -> None:
        self._fanout.each(self._fanout.calls("switch_failed"), load, on, why, error, code)

    def load_found(self, load: str, on: bool, commanded: bool | None) -> None:
        self._fanout.each(self._fanout.calls("load_found"), load, on, commanded)

    def owner_set(self, load: str, on: bool) -> None:
        self._fanout.each(self._fanout.calls("owner_set"), load, on)

    def owner_opted_out(self, event: str | None) -> None:
        self._fanout.each(self._fanout.calls("owner_opted_out"), event)

    def owner_opted_in(self, event: str | None) -> None:
        self._fanout.each(self._fanout.calls("owner_opted_in"), event)

    def board_joined(self, actuator: str, peer: str, states: tuple[bool, ...]) -> None:
        self._fanout.each(self._fanout.calls("board_joined"), actuator, peer, states)

    def board_left(self, actuator: str, loads: tuple[str, ...]) -> None:
        self._fanout.each(self._fanout.calls("board_left"), actuator, loads)

    def measurement(self, actuator: str, watts: tuple[int, ...]) -> None:
        self._fanout.each(self._fanout.calls("measurement"), actuator, watts)
