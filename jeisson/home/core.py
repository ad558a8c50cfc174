"""The home's decisions and state, reached by its links through methods.

``Home`` owns its loads, the links of its boards and the budget of the
current DR event.  ``reconcile`` brings the relays to what they should be
(``jeisson.home.targets``): outside an event, or in one its owner opted out
of, every load as its owner set it; in an event, the most valuable whole
set of loads within the budget; always within each load's minimum on and
off times (a switch that must wait is scheduled for when it is allowed).
Loads are switched off first and on only after the offs are acknowledged,
so the home never draws more than its budget while switching.

The home reaches its links only through ``links.BoardLink`` and
``links.AggregatorLink``; the links reach it through its methods.  What
happens to it is announced to its listeners (``jeisson.home.listeners``).

With a store (``jeisson.store``), the home remembers (``memory.HomeMemory``,
one of its listeners): a restarted home resumes its budget until the event's
end, its owner's settings and its loads' minimum-time clocks, and
``why(load, at)`` tells what put a load in its state at an instant.  The home
never takes a state it did not command as its own switch (``board_connected``),
and a switch-on it commands is in the store before its ``SET`` goes out
(``_intend_on``): a home killed right after it still counts the load's
``min_on_s`` from it.
"""

import math
from typing import TYPE_CHECKING

import attrs
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.home import listeners
from jeisson.home.config import HomeConfig
from jeisson.home.links import AggregatorLink, BoardLink, CommandFailed
from jeisson.home.listeners import Announcer, HomeListener
from jeisson.home.loads import Load
from jeisson.home.memory import HomeMemory
from jeisson.home.targets import ons_that_fit, targets
from jeisson.text import Text
from jeisson.timers import cancel
from jeisson.wire import aggregator_home as wire

if TYPE_CHECKING:
    from jeisson.store import Store

# After a board refused a switch as too soon, try again this much later.
RETRY_BUSY_S = 2.0
# After the store could not keep a switch-on (so it was not made), try again
# this much later (a failing store retries its own commit every batch_s).
RETRY_STORE_S = 10.0


@attrs.frozen
class ActiveBudget:
    event: str
    budget_w: float
    end: float
    round: int


@attrs.frozen
class Intent:
    """A switch-on the home has decided and stored (``Home._intend_on``),
    its board's answer not yet in: ``at`` is the switch's instant as the
    store holds it (its ``last_switch``), ``was`` what the home had
    commanded before."""

    at: float
    was: bool | None


@attrs.frozen
class Resumed:
    """What a store remembered of the home before it stopped (read by
    ``memory.HomeMemory.resume``, applied by ``Home``)."""

    budget: ActiveBudget | None = None  # still in force (its end ahead)
    desired: dict[str, bool] = attrs.Factory(dict)  # the owner's settings per load, where remembered
    opt_out: tuple[bool, frozenset[str]] | None = None  # (every event, these events), if remembered
    loads: dict[str, tuple[bool | None, float]] = attrs.Factory(dict)  # load -> (last commanded, last switch)


class Home:
    """The home's state and decisions.

    ``store`` (optional, ``jeisson.store.Store``, opened): what the home
    remembers.  Its state is read here, before any link exists: a budget
    whose event has not ended, the owner's settings, each load's last
    commanded state and last switch (the loads stay unknown, counted at
    their rated power, until their board says HELLO).
    """

    log = Logger()

    def __init__(self, config: HomeConfig, clock: IReactorTime, store: "Store | None" = None):
        self.config = config
        self.clock = clock
        self.store = store
        self.loads = {load_id: Load(c) for load_id, c in config.loads.items()}
        # What the home last commanded each relay to be (None: nothing on
        # record), or accepted as its state (a failsafe that opened it).  A
        # switch-on is commanded from the moment it is decided (``intents``).
        self.commanded: dict[str, bool | None] = {load_id: None for load_id in config.loads}
        # Switch-ons decided, stored or being stored, their ACK not yet in.
        self.intents: dict[str, Intent] = {}
        self.boards: dict[str, BoardLink] = {}  # actuator id -> live link
        self.budget: ActiveBudget | None = None
        self.max_budget_s = config.max_budget_s
        self.bid = 0
        self.last_offers: tuple | None = None
        self.uplink: AggregatorLink | None = None  # the welcomed aggregator link, if any
        self.refused: str | None = None  # why the aggregator last refused us (until a WELCOME)
        self.opt_out_all = config.opt_out_all
        self.opt_out_events = set(config.opt_out_events)
        self._refusal_unanswered = False  # a refusal the next reconnection has not waited for yet
        self._announce = Announcer()
        self._busy = False
        self._again = False
        self._waiters: list[Deferred] = []
        self._reasons: list[str] = []  # why the next reconcile runs
        self._why: tuple[str, ...] = ()  # why the running one does
        self._retry_due = False
        self._interrupt: Deferred[bool] | None = None  # fires False when a reconcile is asked for (_intend_on)
        self._wakeup: IDelayedCall | None = None
        self._budget_end: IDelayedCall | None = None
        self.memory: HomeMemory | None = None
        if store is not None:
            self.memory = HomeMemory(self, store)
            self._resume(self.memory.resume())
            self.memory.started()
            self.add_listener(self.memory)

    def _resume(self, resumed: Resumed) -> None:
        now = self.clock.seconds()
        for load_id, on in resumed.desired.items():
            self.loads[load_id].desired = on
        if resumed.opt_out is not None:
            self.opt_out_all, events = resumed.opt_out
            self.opt_out_events = set(events)
        for load_id, (commanded, last_switch) in resumed.loads.items():
            self.commanded[load_id] = commanded
            self.loads[load_id].last_switch = last_switch
        budget = resumed.budget
        if budget is not None and budget.end > now:
            self.budget = budget
            self._schedule_budget_end(budget.end - now)
            self.log.info("resumed the budget of round {n} event {event}: {w:.0f} W until {end}, obeyed with or "
                          "without the aggregator", n=budget.round, event=budget.event, w=budget.budget_w,
                          end=wire.format_utc(budget.end))

    def durable(self) -> Deferred:
        """Fires once everything the home has told its store so far is
        committed (at once without a store); fails with ``StoreError`` if
        it cannot be: then nothing that depends on it may be acknowledged."""
        if self.store is None:
            return succeed(None)
        return self.store.durable()

    def add_listener(self, listener: HomeListener) -> None:
        self._announce.add(listener)

    def remove_listener(self, listener: HomeListener) -> None:
        self._announce.remove(listener)

    # ---------------------------------------------------------------- views

    def loads_of(self, actuator: str) -> list[Load]:
        return [load for load in self.loads.values() if load.config.actuator == actuator]

    def drawn_w(self) -> float:
        """Power counted for the aggregator: loads on, and unknown ones at rated."""
        return float(sum(load.cautious_w() for load in self.loads.values()))

    def on_ids(self) -> tuple[str, ...]:
        return tuple(load.id for load in self.loads.values() if load.on is not False)

    def offers(self) -> tuple[wire.LoadOffer, ...]:
        now = self.clock.seconds()
        return tuple(
            wire.LoadOffer(load.id, load.config.rated_w, load.config.priority, load.mode(now),
                           load.on is not False, load.config.critical, load.desired)
            for load in self.loads.values()
        )

    def bid_if_changed(self, always: bool = False) -> wire.Flex | None:
        """A new bid when the offers changed since the last one sent (or
        ``always``: a new link must hear it)."""
        offers = (self.offers(), self.opted_out())
        if offers == self.last_offers and not always:
            return None
        self.last_offers = offers
        self.bid += 1
        return wire.Flex(self.bid, *offers)

    def opted_out(self) -> bool:
        """Whether the owner opted out of the event in progress (or of all)."""
        return self.opt_out_all or (self.budget is not None and self.budget.event in self.opt_out_events)

    def commitment(self, round_number: int) -> wire.Commit:
        return wire.Commit(round_number, self.bid, self.drawn_w(), self.on_ids())

    def measurement(self) -> wire.Measure:
        """What the boards measured, for the aggregator: the home's power and
        each load with a reading."""
        loads = tuple((load.id, load.measured_w) for load in self.loads.values() if load.measured_w is not None)
        return wire.Measure(self.clock.seconds(), self.measured_w(), loads)

    def measured_w(self) -> float:
        """Measured power; a load without a reading is counted cautiously."""
        total = 0.0
        for load in self.loads.values():
            if load.on is None or load.measured_w is None:
                total += load.cautious_w()
            else:
                total += load.measured_w
        return total

    # ------------------------------------------------------------- budgets

    def budget_received(self, budget: wire.Budget) -> Deferred:
        """Act on a budget; fires with the ``Commit`` to send back."""
        if budget.bid != self.bid:
            # Meant for an older report: our newer bid will bring a new round,
            # so it is not acted on; except, safety first, as a cap when it
            # is below what we may draw once the switching under way is done
            # (the aggregator counts on the commitment that answers it).
            return self.reconcile(listeners.BUDGET).addCallback(lambda _: self._stale_budget(budget))
        return self._apply_budget(budget)

    def _stale_budget(self, budget: wire.Budget):
        """A budget for an older bid.  The aggregator takes the commitment
        that answers it as what the home draws until its next round, so
        the home must not draw more meanwhile: a budget below what the home
        may draw now (the budget in force, or, with none, whatever its
        owner set) is applied as a cap; one at or above it changes nothing
        (committing as we are)."""
        allowed = self.budget.budget_w if self.budget is not None else math.inf
        if budget.budget_w >= allowed - 1e-6 or budget.end <= self.clock.seconds() or self.opted_out():
            self.log.info("budget of round {n} answers bid {old}, ours is {bid}; committing as we are",
                          n=budget.round, old=budget.bid, bid=self.bid)
            return self.commitment(budget.round)
        self.log.info("budget of round {n} answers bid {old}, ours is {bid}, but it is below what we may draw: "
                      "capped by it", n=budget.round, old=budget.bid, bid=self.bid)
        return self._apply_budget(budget)

    def _apply_budget(self, budget: wire.Budget) -> Deferred:
        now = self.clock.seconds()
        if budget.end <= now:
            self.log.warn("budget of round {n} for event {event} ended already; ignored", n=budget.round,
                          event=budget.event)
            return self._after_current(budget.round, listeners.BUDGET)
        if budget.end > now + self.max_budget_s:
            self.log.warn("budget of round {n} for event {event} ends at {end}, more than {max:.0f} s ahead "
                          "([home] max_budget_s): held until {until} only", n=budget.round, event=budget.event,
                          end=wire.format_utc(budget.end), max=self.max_budget_s,
                          until=wire.format_utc(now + self.max_budget_s))
            budget = attrs.evolve(budget, end=now + self.max_budget_s)
        self.budget = ActiveBudget(budget.event, budget.budget_w, budget.end, budget.round)
        self._schedule_budget_end(budget.end - now)
        self._announce.budget_applied(budget.event, budget.budget_w, budget.end, budget.round)
        if self.opted_out():
            self.log.info("round {n} event {event}: budget {w:.0f} W, but the owner opted out of this event: loads"
                          " run as set, and the aggregator counts them as fixed demand", n=budget.round,
                          event=budget.event, w=budget.budget_w)
            return self._after_current(budget.round, listeners.BUDGET)
        self.log.info("round {n} event {event}: budget {w:.0f} W until {end}", n=budget.round, event=budget.event,
                      w=budget.budget_w, end=wire.format_utc(budget.end))
        return self._after_current(budget.round, listeners.BUDGET)

    def release(self, release: wire.Release) -> Deferred:
        if self.budget is not None and self.budget.event == release.event:
            self.log.info("event {event} released: restoring loads as their owner set them", event=release.event)
            self._clear_budget()
            self._announce.budget_released(release.event, listeners.RELEASE)
        return self._after_current(release.round, listeners.RELEASE)

    def _after_current(self, round_number: int, why: str) -> Deferred:
        """Reconcile, then the commitment for ``round_number``."""
        return self.reconcile(why).addCallback(lambda _: self.commitment(round_number))

    def _schedule_budget_end(self, delay: float) -> None:
        if self._budget_end is not None and self._budget_end.active():
            self._budget_end.reset(delay)
        else:
            self._budget_end = self.clock.callLater(delay, self._event_over)

    def _event_over(self) -> None:
        # Reached with or without the aggregator: a home that lost its link
        # keeps its last budget until the event ends, then restores.
        self._budget_end = None
        if self.budget is not None:
            event = self.budget.event
            self.log.info("event {event} is over: restoring loads as their owner set them", event=event)
            self.budget = None
            self._announce.budget_released(event, listeners.EVENT_OVER)
            self.changed(listeners.EVENT_OVER)

    def _clear_budget(self) -> None:
        self.budget = None
        cancel(self._budget_end)
        self._budget_end = None

    # ------------------------------------------------------------- owner

    def opt_out(self, event: str | None = None) -> Deferred:
        """The owner opts out of ``event``, or of every event (manhole:
        ``home.opt_out()``).  Loads go back to the owner's settings and the
        next bid tells the aggregator.  The setting holds at once; the
        Deferred returned fires once the store has it (``durable``)."""
        if event is None:
            self.opt_out_all = True
        else:
            self.opt_out_events.add(event)
        self.log.info("owner opted out of {which}: loads run as set during it", which=_events_named(event))
        self._announce.owner_opted_out(event)
        self.changed(listeners.OWNER)
        return self._owner_durable()

    def opt_in(self, event: str | None = None) -> Deferred:
        """Undo ``opt_out`` for ``event``, or for every event; fires once
        durable, as ``opt_out``."""
        if event is None:
            self.opt_out_all = False
            self.opt_out_events.clear()
        else:
            self.opt_out_events.discard(event)
        self.log.info("owner opted back in to {which}", which=_events_named(event))
        self._announce.owner_opted_in(event)
        self.changed(listeners.OWNER)
        return self._owner_durable()

    def set_desired(self, load_id: str, on: bool) -> Deferred:
        """The owner switches a load (outside events it runs as set).  The
        setting holds at once; the Deferred returned fires once the store
        has it (``durable``)."""
        self.loads[load_id].desired = on
        self.log.info("owner set load {load} {state}", load=load_id, state="on" if on else "off")
        self._announce.owner_set(load_id, on)
        self.changed(listeners.OWNER)
        return self._owner_durable()

    def _owner_durable(self) -> Deferred:
        # A store that cannot commit fails it (StoreError): the manhole
        # shows it, and a caller that drops it still has it logged.
        return self.durable()

    # ------------------------------------------------------------- memory

    def why(self, load_id: str, at: float | str | None = None) -> Deferred:
        """Why ``load_id`` was in its state at ``at`` (now if None): epoch
        seconds, UTC text (``2024-05-01T18:05:00Z``) or ``HH:MM`` (today,
        UTC).  Fires with the story as text (manhole: ``home.why("heater",
        "18:05")``): its state then, the switch that put it there and what
        commanded it, the budget in force and the owner's settings."""
        if load_id not in self.loads:
            raise KeyError(f"home {self.config.id} has no load {load_id!r}; its loads: {', '.join(self.loads)}")
        if self.memory is None:
            return succeed(Text(f"{load_id}: no record: this home keeps no store ([store] path = none)"))
        return self.memory.why(load_id, at).addCallback(Text)

    def export_csv(self, path: str, since: float | str | None = None, until: float | str | None = None) -> Deferred:
        """Write the measurements kept (the home, each board, each load) to
        ``path`` as CSV; fires with the number of rows."""
        if self.memory is None:
            from jeisson.store import StoreError

            return fail(StoreError(f"home {self.config.id} keeps no store ([store] path = none): nothing to export"))
        return self.memory.export_csv(path, since, until)

    # ------------------------------------------------------------- boards

    def board_connected(self, actuator: str, session: BoardLink, states: tuple[bool, ...]) -> None:
        """Board ``actuator`` said HELLO on ``session`` with its relays'
        true ``states``.  Each is compared with what the home last
        commanded (``commanded``, kept across restarts by the store): the
        same, the load keeps its last switch and its minimum times run on;
        on though not commanded on, it is on but not by the home's switch,
        so it may be switched off at once; off though the home had it on
        (or with nothing on record), it counts as just switched off.  A
        switch-on the home had decided, its ACK not yet in (``intents``),
        is the home's switch if the relay is on (from the instant stored),
        and forgotten if it is off (the relay is compared with what was
        commanded before it).  Then the relays are reconciled at once."""
        old = self.boards.get(actuator)
        # Take the new link first: the old one closing is then no lost board
        # (its loads unknown for a moment would shed others in an event).
        self.boards[actuator] = session
        if old is not None and old is not session:
            old.supersede()
        now = self.clock.seconds()
        found: list[tuple[Load, bool, bool | None]] = []
        for load in self.loads_of(actuator):
            state = states[load.config.relay - 1]
            load.on = state
            intent = self.intents.pop(load.id, None)
            if intent is not None:
                if state:
                    # Our SET closed it, its ACK lost with the old link (or
                    # still to come, never to be matched now): the switch
                    # the store holds, so min_on_s runs from it.
                    load.last_switch = intent.at
                    continue
                self._forget(load.id, intent)  # it did not happen: as before it
            commanded = self.commanded[load.id]
            if state == commanded:
                continue  # as the home left it: its last switch stands
            found.append((load, state, commanded))
            if state:
                # Closed, but not by the home (a board powered up into its
                # initial states, a relay closed by hand): its min_on_s does
                # not hold, it may be switched off at once (the board's own
                # min_interval_s still applies).
                load.last_switch = float("-inf")
            else:
                # Opened though the home had it on (a failsafe, a power
                # blip), or nothing on record: count it as just switched
                # off, so min_off_s holds from now (protects a compressor).
                load.last_switch = now
                self.commanded[load.id] = False
        self.log.info("actuator {actuator} connected from {peer}; relays {states}", actuator=actuator,
                      peer=session.peer, states="".join("1" if s else "0" for s in states))
        self._announce.board_joined(actuator, session.peer, states)
        for load, state, commanded in found:
            if state:
                self.log.warn("load {load} found on, which the home did not command ({was}): it may be switched "
                              "off at once", load=load.id, was=_commanded_text(commanded))
            elif commanded:
                self.log.warn("load {load} found off though the home had it on (a failsafe or a power blip): "
                              "counted as just switched off", load=load.id)
            self._announce.load_found(load.id, state, commanded)
        self.changed(listeners.BOARD_JOINED)

    def board_lost(self, actuator: str, session: BoardLink) -> None:
        if self.boards.get(actuator) is not session:
            return
        del self.boards[actuator]
        lost = self.loads_of(actuator)
        for load in lost:
            load.on = None
            load.measured_w = None
        self.log.warn("actuator {actuator} unreachable: loads {loads} counted at their rated power ({w:.0f} W)",
                      actuator=actuator, loads=", ".join(load.id for load in lost),
                      w=sum(load.config.rated_w for load in lost))
        self._announce.board_left(actuator, tuple(load.id for load in lost))
        self.changed(listeners.BOARD_LEFT)

    def board_measured(self, actuator: str, watts: tuple[int, ...]) -> None:
        """A board's readings, one per relay (its link checked the count)."""
        for load in self.loads_of(actuator):
            load.measured_w = float(watts[load.config.relay - 1])
        self._announce.measurement(actuator, watts)

    # ------------------------------------------------------------- aggregator

    def aggregator_linked(self, link: AggregatorLink) -> None:
        """The aggregator welcomed us on ``link``."""
        self.uplink = link
        self.refused = None
        self._refusal_unanswered = False
        self._announce.aggregator_linked(link.peer, link.version)

    def aggregator_unlinked(self, link: AggregatorLink) -> None:
        if self.uplink is link:
            self.uplink = None
            self._announce.aggregator_unlinked(link.peer)

    def refused_by_aggregator(self, reason: str) -> None:
        """The aggregator refused us, or we its WELCOME: it will happen again
        until an operator fixes a config, so the next attempt waits longer."""
        self.refused = reason
        self._refusal_unanswered = True
        self._announce.aggregator_refused(reason)

    def take_refusal(self) -> bool:
        """Whether a refusal came since the last attempt to connect; True
        once per refusal, so only the attempt right after it waits longer."""
        unanswered, self._refusal_unanswered = self._refusal_unanswered, False
        return unanswered

    # ------------------------------------------------------------- control

    def changed(self, why: str) -> None:
        """Something moved (a board, a budget, the owner, the time): act.
        ``why``: one of the reasons named in ``jeisson.home.listeners``."""
        self.reconcile(why).addErrback(lambda f: self.log.failure("reconciling loads failed", f))

    def reconcile(self, why: str) -> Deferred:
        """Bring the relays to their targets; fires when done."""
        if why not in self._reasons:
            self._reasons.append(why)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        if self._busy:
            self._again = True
            # Switch-ons waiting for the store were chosen before this:
            # they give way (``_intend_on``), so that the offs it calls
            # for never wait on a slow or failing store.
            interrupt, self._interrupt = self._interrupt, None
            if interrupt is not None and not interrupt.called:
                interrupt.callback(False)
        else:
            self._start()
        return waiter

    def _start(self) -> None:
        self._busy = True
        self._again = False
        self._why, self._reasons = tuple(self._reasons), []
        d = Deferred.fromCoroutine(self._reconcile_once())
        d.addErrback(lambda f: self.log.failure("reconciling loads failed", f))
        d.addBoth(self._done)

    def _done(self, _) -> None:
        if self._again:
            self._start()
            return
        self._busy = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._after_reconcile()

    def _after_reconcile(self) -> None:
        uplink = self.uplink
        if uplink is not None:
            uplink.loads_changed()

    def targets(self) -> dict[str, bool]:
        """Which known loads should be on now."""
        budget_w = None if self.budget is None or self.opted_out() else self.budget.budget_w
        chosen = targets(self.loads.values(), budget_w, self.clock.seconds())
        if not chosen.feasible and self.budget is not None:
            self.log.warn("event {event}: loads that must run exceed the budget of {w:.0f} W; only they run",
                          event=self.budget.event, w=self.budget.budget_w)
        return chosen.on

    async def _reconcile_once(self) -> None:
        now = self.clock.seconds()
        wanted = self.targets()
        offs = [load for load in self.loads.values()
                if load.known and load.on and not wanted[load.id] and load.can_switch(False, now)]
        if not await self._switch_all(offs, False) or self._again:
            # An off failed and keeps drawing, a board came or went, or the
            # budget, the owner or the time changed meanwhile: choose again
            # with what is true now before switching anything on.
            wanted = self.targets()
        # Switch on only what still fits.
        room = None if self.budget is None or self.opted_out() else self.budget.budget_w - self.drawn_w()
        await self._switch_all(ons_that_fit(self.loads.values(), wanted, room, self.clock.seconds()), True)
        self._schedule_wakeup()

    async def _switch_all(self, loads: list[Load], on: bool) -> bool:
        """Switch ``loads`` at once; whether every one of them switched
        (switch-ons that gave way before their SET count as not)."""
        if not loads:
            return True
        # What changed while the offs were outstanding is also why the ons go.
        why = self._why + tuple(reason for reason in self._reasons if reason not in self._why)
        chosen = len(loads)
        if on:
            loads = await self._intend_on(loads)
            if not loads:
                return False
        results = await DeferredList([self._switch(load, on, why) for load in loads], consumeErrors=True)
        done = []
        for load, (ok, outcome) in zip(loads, results, strict=True):
            if ok:
                done.append(load.id)
            else:
                self.log.warn("load {load}: switching {state} failed: {why}", load=load.id,
                              state="on" if on else "off", why=outcome.getErrorMessage())
                code = outcome.value.code if outcome.check(CommandFailed) else None
                self._announce.switch_failed(load.id, on, why, outcome.getErrorMessage(), code)
        if done:
            self.log.info("switched {state}: {loads}", state="on" if on else "off", loads=", ".join(done))
        return len(done) == chosen

    async def _intend_on(self, loads: list[Load]) -> list[Load]:
        """Store the switch-on of ``loads`` before their SETs: the loads
        whose SET may go now.

        Each is commanded on from now, and the store is told the switch is
        now (``HomeMemory.switching_on``); its SET goes once ``durable``
        fires, so that a home killed after the board switched resumes the
        load as its own switch, its ``min_on_s`` held (without it, the
        board's HELLO would show a relay on that the store says is off: an
        uncommanded state, free to switch off at once).  The ACK's own
        record (batched) replaces the instant with the ACK's.

        Offs never wait like this: a stale "on" in the store for a load
        found off counts it as just switched off, the cautious direction.

        The same intent covers an ACK lost or timed out after the board
        really switched (``_switch``): the home keeps the load commanded on
        from the instant stored, so the board's next HELLO showing it on
        is the home's switch, and showing it off counts as just switched
        off.

        Without a store, or with one that commits at once, this is
        synchronous.  If a reconcile is asked for while the store commits
        (a budget, a board, the owner), the switch-ons give way and the
        next pass chooses again: offs never wait on the store.  If the
        store fails, only loads that must run (critical and wanted, or off
        their ``max_off_s``) are switched on anyway: appliance protection
        comes before a restart's ``min_on_s``, and with a failing store a
        restart loses far more than that; the others stay off and are
        tried again in ``RETRY_STORE_S``."""
        now = self.clock.seconds()
        for load in loads:
            self.intents[load.id] = Intent(now, self.commanded[load.id])
            self.commanded[load.id] = True
        try:
            if self.memory is not None:
                for load in loads:
                    self.memory.switching_on(load.id, now)
        except Exception:
            kept: Deferred[None] = fail()  # a store closed, a row it cannot take: as a failed commit
        else:
            kept = self.durable()
        waiting: Deferred[bool] = Deferred()

        def stored(outcome: object) -> None:
            if not waiting.called:
                if isinstance(outcome, Failure):
                    waiting.errback(outcome)
                else:
                    waiting.callback(True)
            # Else it gave way already; a failure here the store has logged.

        self._interrupt = waiting
        kept.addBoth(stored)
        try:
            durable = await waiting
        except Exception as e:
            now = self.clock.seconds()
            must = [load for load in loads if load.known and load.mode(now) == "must"]
            others = [load for load in loads if load not in must]
            if must:
                self.log.error("could not store the switch-on of {loads} ({error}); switching them on anyway: "
                               "they must run (critical, or off their max_off_s), though a restart before the "
                               "store recovers may not hold their min_on_s", loads=_ids(must), error=str(e))
            if others:
                self.log.error("could not store the switch-on of {loads} ({error}); not switching them on, "
                               "trying again in {t:.0f} s", loads=_ids(others), error=str(e), t=RETRY_STORE_S)
                self._retry_due = True
                self._schedule_wakeup(RETRY_STORE_S)
            self._forget_all(others)
            return must
        finally:
            if self._interrupt is waiting:
                self._interrupt = None
        if not durable:
            self.log.info("switch-on of {loads} not sent: the home chooses again first", loads=_ids(loads))
            self._forget_all(loads)
            return []
        # Intents a board's HELLO settled meanwhile are done with.
        return [load for load in loads if load.id in self.intents]

    def _forget_all(self, loads: list[Load]) -> None:
        for load in loads:
            intent = self.intents.pop(load.id, None)
            if intent is not None:
                self._forget(load.id, intent)

    def _forget(self, load_id: str, intent: Intent) -> None:
        """A switch-on that did not happen: as commanded before it, and the
        store told so (not waited for: until it is committed, a restart
        finds the load off though commanded on, and counts it as just
        switched off, the cautious direction)."""
        self.commanded[load_id] = intent.was
        if self.memory is not None:
            self.memory.switch_on_forgotten(load_id, intent.was)

    def _switch(self, load: Load, on: bool, why: tuple[str, ...]) -> Deferred:
        session = self.boards.get(load.config.actuator)
        if session is None:
            if on:
                self._forget_all([load])  # no SET went out
            return fail(CommandFailed(f"actuator {load.config.actuator} is unreachable"))
        if on and self._past_max_off(load):
            why = why + (listeners.MAX_OFF,)
        d = session.command(load.config.relay, on)

        def switched(_):
            if on:
                self.intents.pop(load.id, None)
            load.on = on
            load.last_switch = self.clock.seconds()
            self.commanded[load.id] = on
            # Open draws nothing; closed draws what the next reading says,
            # and until it comes, its rated power (``measured_w``).
            load.measured_w = None if on else 0.0
            self._announce.load_switched(load.id, on, why)

        def refused(failure):
            code = failure.value.code if failure.check(CommandFailed) else None
            if code == "busy":
                self._retry_due = True
                self._schedule_wakeup(RETRY_BUSY_S)
            intent = self.intents.pop(load.id, None) if on else None
            if intent is not None:
                if code is not None:
                    self._forget(load.id, intent)  # refused (NAK): the relay did not move
                elif self.commanded[load.id]:
                    # Timed out or the link closed (the board was dropped,
                    # its loads unknown): it may have switched, the ACK
                    # lost.  Commanded on from the instant stored, as a
                    # restart would resume it: its next HELLO decides.
                    load.last_switch = intent.at
            return failure

        return d.addCallbacks(switched, refused)

    def _past_max_off(self, load: Load) -> bool:
        """Whether switching ``load`` on now is the ``max_off_s`` rule's
        doing rather than the budget's: a budget holds, and it was off its
        longest."""
        if self.budget is None or self.opted_out() or load.config.critical:
            return False
        return bool(self.clock.seconds() >= load.due_on_at())

    def _schedule_wakeup(self, delay: float | None = None) -> None:
        """Wake when the next load's minimum time runs out (its mode changes)."""
        now = self.clock.seconds()
        moments = [m for m in (load.next_change(now) for load in self.loads.values()) if m is not None]
        if delay is not None:
            moments.append(now + delay)
        if not moments:
            return
        wait = max(min(moments) - now, 0.0)
        if self._wakeup is not None and self._wakeup.active():
            if self._wakeup.getTime() <= now + wait:
                return
            self._wakeup.cancel()
        self._wakeup = self.clock.callLater(wait, self._woken)

    def _woken(self) -> None:
        self._wakeup = None
        why = listeners.RETRY if self._retry_due else listeners.MINIMUM_TIME
        self._retry_due = False
        self.changed(why)

    def stop(self) -> None:
        cancel(self._wakeup)
        cancel(self._budget_end)
        self._wakeup = self._budget_end = None

    # ------------------------------------------------------------- status

    def snapshot(self) -> dict:
        now = self.clock.seconds()
        return {
            "id": self.config.id,
            "aggregator_connected": self.uplink is not None,
            "budget": None if self.budget is None else attrs.asdict(self.budget),
            "opted_out": self.opted_out(),
            "bid": self.bid,
            "drawn_w": self.drawn_w(),
            "measured_w": self.measured_w(),
            "boards": sorted(self.boards),
            "loads": {
                load.id: {"on": load.on, "desired": load.desired, "mode": load.mode(now),
                          "rated_w": load.config.rated_w, "measured_w": load.measured_w}
                for load in self.loads.values()
            },
        }


def _ids(loads: list[Load]) -> str:
    return ", ".join(load.id for load in loads)


def _events_named(event: str | None) -> str:
    return "every event" if event is None else f"event {event}"


def _commanded_text(commanded: bool | None) -> str:
    return "nothing on record" if commanded is None else "last commanded off"
