"""What a home remembers, and how it answers "why was my heater off at 18:05?".

``HomeMemory`` is one of the home's listeners (``jeisson.home.listeners``):
it writes what happens to the home into its store (``jeisson.store.Store``),
reads back at start what a restart must resume (``resume``), and answers
from the journal (``why``).  Writes are queued; the store commits them in
batches (every ``batch_s``, 30 s by default on a home, to spare an SD card),
and at once when something is about to be acknowledged (``Home.durable``).

*State* (read at start, ``resume``):

``budget`` / ``active``
    The budget in force (``event``, ``budget_w``, ``end``, ``round``);
    deleted when it is released or its event is over.
``owner`` / ``load:<id>``
    ``{"desired", "configured"}``: the owner's setting of a load and the
    config's ``desired`` when it was made.  An installer's later edit of
    the config wins over an older owner's setting.
``owner`` / ``opt_out``
    ``{"all", "events", "configured"}``: the owner's opt-outs, and the
    config's ``opt_out`` when they were made (same rule).
``load`` / ``<id>``
    ``{"on", "last_switch", "actuator", "relay"}``: what the home last
    commanded the load's relay to be (or accepted: a failsafe that opened
    it) and when it last switched, so its minimum times survive a restart.
    A switch-on is written before its ``SET`` and committed before the
    ``SET`` goes (``switching_on``): ``on`` true, ``last_switch`` the
    instant it was decided; the ``ACK``'s own record (batched) puts the
    ``ACK``'s instant; one that did not happen puts back the row as it was
    (``switch_on_forgotten``).

*The journal* (kind, subject, detail):

- ``budget`` (the event; its round): ``budget_w``, ``end``, ``opted_out``;
- ``release`` (the event): ``why`` (``release``, ``event over``);
- ``switch`` (the load; the round of the budget in force): ``on``,
  ``cause`` (``budget``, ``owner``, ``max_off_s``, ``uncommanded``,
  ``failsafe``, ``board joined``), ``why`` (the triggers,
  ``listeners.load_switched``), ``commanded``, ``budget`` (in force),
  ``opted_out``, ``desired``;
- ``switch failed`` (the load): ``on``, ``why``, ``error``, ``code``;
- ``owner`` (the load, or the home): ``change`` and every setting after it;
- ``board`` (the actuator): ``joined`` with its peer and ``states``
  (``"101"``), or ``left`` with its loads;
- ``start`` (the home): the settings, the budget resumed, the loads' clocks.

*Measurements*: each board's readings as ``board:<id>`` (the sum of its
relays) and ``load:<id>`` for each load it drives, and the home's measured
power as ``home``; each at most once per ``measure_period_s`` (the boards
may read more often).
"""

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from jeisson.home import listeners
from jeisson.home.listeners import HomeListener
from jeisson.moments import parse_moment
from jeisson.store import BOARD, BUDGET, OWNER, RELEASE, SWITCH, JournalEntry, Store, StoreError

if TYPE_CHECKING:
    from jeisson.home.core import Home, Resumed

# State scopes and keys.
BUDGET_SCOPE = "budget"
ACTIVE = "active"
OWNER_SCOPE = "owner"
OPT_OUT = "opt_out"
LOAD_SCOPE = "load"

# The home's own journal kinds, besides the store's.
SWITCH_FAILED = "switch failed"
START = "start"

# Measurement subjects.
HOME = "home"


def board_subject(actuator: str) -> str:
    return f"board:{actuator}"


def load_subject(load_id: str) -> str:
    return f"load:{load_id}"


# Why a switch happened (``cause`` of a ``switch`` entry).
CAUSE_BUDGET = "budget"
CAUSE_OWNER = "owner"
CAUSE_MAX_OFF = "max_off_s"
CAUSE_UNCOMMANDED = "uncommanded"
CAUSE_FAILSAFE = "failsafe"
CAUSE_FOUND = "board joined"

# What made the home choose its relays again, in words.
TRIGGERS = {
    listeners.BUDGET: "a budget came from the aggregator",
    listeners.RELEASE: "the aggregator released the event",
    listeners.EVENT_OVER: "the event's end came",
    listeners.OWNER: "the owner changed a setting",
    listeners.BOARD_JOINED: "a board said HELLO",
    listeners.BOARD_LEFT: "a board was lost",
    listeners.MINIMUM_TIME: "a minimum on or off time ran out",
    listeners.RETRY: "a switch a busy board refused was tried again",
}


class HomeMemory(HomeListener):
    """The home's journal, state and measurements in ``store`` (opened)."""

    log = Logger()

    def __init__(self, home: "Home", store: Store):
        self.home = home
        self.store = store
        self._since: dict[str, float] = {}  # load -> its last switch, as last recorded
        self._due: dict[str, float] = {}  # measurement subject -> when its next reading is kept

    # ------------------------------------------------------------ start-up

    def resume(self) -> "Resumed":
        """What the store remembers that still holds (read before the
        reactor runs: it may block).  A budget whose event ended while the
        home was stopped is released here."""
        from jeisson.home.core import ActiveBudget, Resumed

        store, config = self.store, self.home.config
        now = self.home.clock.seconds()
        budget = None
        stored = store.state(BUDGET_SCOPE).get(ACTIVE)
        if stored is not None:
            active = ActiveBudget(str(stored["event"]), float(stored["budget_w"]), float(stored["end"]),
                                  int(stored["round"]))
            if active.end > now:
                budget = active
            else:
                self.log.info("the budget of round {n} event {event} ended at {end}, while the home was stopped",
                              n=active.round, event=active.event, end=_when(active.end))
                store.delete(BUDGET_SCOPE, ACTIVE)
                store.record(RELEASE, active.event, active.end, {"why": listeners.EVENT_OVER, "stopped": True},
                             round=active.round)
        owner = store.state(OWNER_SCOPE)
        desired = {}
        for load_id, load_config in config.loads.items():
            entry = owner.get(f"load:{load_id}")
            if entry is None:
                continue
            if entry.get("configured") != load_config.desired:
                self.log.info("load {load}: the config's desired changed since the owner set it {state}; "
                              "the config's holds", load=load_id, state=_on_off(entry.get("desired")))
                continue
            desired[load_id] = bool(entry["desired"])
        opt_out = None
        entry = owner.get(OPT_OUT)
        if entry is not None:
            if entry.get("configured") == _configured_opt_out(config):
                opt_out = (bool(entry["all"]), frozenset(entry["events"]))
            else:
                self.log.info("the config's opt_out changed since the owner's last opt-out or opt-in; the "
                              "config's holds")
        loads = {}
        for load_id, entry in store.state(LOAD_SCOPE).items():
            wired = config.loads.get(load_id)
            if wired is None or entry.get("last_switch") is None:
                continue
            if (entry.get("actuator"), entry.get("relay")) != (wired.actuator, wired.relay):
                self.log.info("load {load} is wired elsewhere since it was last switched; its clocks start anew",
                              load=load_id)
                continue
            on = entry.get("on")
            loads[load_id] = (None if on is None else bool(on), float(entry["last_switch"]))
            self._since[load_id] = float(entry["last_switch"])
        self.log.info("home {home} remembers from {path}: {budget}; the owner's settings of {n} loads{opt}; "
                      "the last switch of {clocks} loads", home=config.id, path=store.path, n=len(desired),
                      opt=" and opt-outs" if opt_out is not None else "", clocks=len(loads),
                      budget="no budget in force" if budget is None else
                      f"the budget of round {budget.round} event {budget.event}")
        return Resumed(budget, desired, opt_out, loads)

    def started(self) -> None:
        """The home applied what ``resume`` found: journal its start."""
        home = self.home
        budget = home.budget
        self.store.record(START, home.config.id, home.clock.seconds(), {
            "settings": self._settings(),
            "budget": None if budget is None else _budget(budget),
            "loads": {load_id: {"on": on, "last_switch": home.loads[load_id].last_switch}
                      for load_id, on in home.commanded.items() if load_id in self._since},
        })

    # ------------------------------------------------------------ budgets

    def budget_applied(self, event: str, budget_w: float, end: float, round_number: int) -> None:
        value = {"event": event, "budget_w": budget_w, "end": end, "round": round_number}
        self.store.put(BUDGET_SCOPE, ACTIVE, value)
        self.store.record(BUDGET, event, self._now(), {"budget_w": budget_w, "end": end,
                                                       "opted_out": self.home.opted_out()}, round=round_number)

    def budget_released(self, event: str, why: str) -> None:
        self.store.delete(BUDGET_SCOPE, ACTIVE)
        self.store.record(RELEASE, event, self._now(), {"why": why})

    # ------------------------------------------------------------ loads

    def load_switched(self, load: str, on: bool, why: tuple[str, ...]) -> None:
        home = self.home
        entry = home.loads[load]
        budget = home.budget
        opted_out = home.opted_out()
        if listeners.MAX_OFF in why:
            cause = CAUSE_MAX_OFF
        elif budget is not None and not opted_out and (on or entry.desired):
            cause = CAUSE_BUDGET
        else:
            cause = CAUSE_OWNER
        detail: dict[str, Any] = {
            "on": on, "cause": cause, "why": [r for r in why if r != listeners.MAX_OFF], "commanded": True,
            "actuator": entry.config.actuator, "relay": entry.config.relay, "desired": entry.desired,
            "budget": None if budget is None else _budget(budget), "opted_out": opted_out,
        }
        if cause == CAUSE_MAX_OFF:
            detail["off_since"] = self._since.get(load)
            detail["max_off_s"] = entry.config.max_off_s
        now = self._now()
        self.store.record(SWITCH, load, now, detail, round=None if budget is None else budget.round)
        self._put_load(load, on, now)

    def load_found(self, load: str, on: bool, commanded: bool | None) -> None:
        home = self.home
        entry = home.loads[load]
        budget = home.budget
        cause = CAUSE_UNCOMMANDED if on else CAUSE_FAILSAFE if commanded else CAUSE_FOUND
        now = self._now()
        self.store.record(SWITCH, load, now, {
            "on": on, "cause": cause, "why": [listeners.BOARD_JOINED], "commanded": False, "was": commanded,
            "actuator": entry.config.actuator, "relay": entry.config.relay, "desired": entry.desired,
            "budget": None if budget is None else _budget(budget), "opted_out": home.opted_out(),
        }, round=None if budget is None else budget.round)
        if not on:
            # The home takes it as its state from now (see Home.board_connected).
            self._put_load(load, False, now)

    def switch_failed(self, load: str, on: bool, why: tuple[str, ...], error: str, code: str | None) -> None:
        budget = self.home.budget
        self.store.record(SWITCH_FAILED, load, self._now(), {
            "on": on, "why": list(why), "error": error, "code": code,
            "budget": None if budget is None else _budget(budget),
        }, round=None if budget is None else budget.round)

    def _put_load(self, load: str, on: bool, now: float) -> None:
        self._put_row(load, on, now)
        self._since[load] = now

    def _put_row(self, load: str, on: bool | None, last_switch: float) -> None:
        config = self.home.loads[load].config
        self.store.put(LOAD_SCOPE, load, {"on": on, "last_switch": last_switch, "actuator": config.actuator,
                                          "relay": config.relay})

    def switching_on(self, load: str, at: float) -> None:
        """The home decided to switch ``load`` on at ``at``; its ``SET``
        waits until this is committed (``Home._intend_on``).  Not a
        listener's moment: the core calls it, as ``resume``, because the
        switch depends on it.  Nothing is journaled until the ``ACK``
        (``load_switched``) or the failure (``switch_failed``)."""
        self._put_row(load, True, at)

    def switch_on_forgotten(self, load: str, was: bool | None) -> None:
        """The switch-on of ``load`` did not happen (refused, given way,
        not stored): its row as it was before ``switching_on``."""
        if load in self._since:
            self._put_row(load, was, self._since[load])
        else:
            self.store.delete(LOAD_SCOPE, load)

    # ------------------------------------------------------------ the owner

    def owner_set(self, load: str, on: bool) -> None:
        self.store.put(OWNER_SCOPE, f"load:{load}", {"desired": on,
                                                     "configured": self.home.config.loads[load].desired})
        self.store.record(OWNER, load, self._now(), {"change": f"set {load} {_on_off(on)}",
                                                     "settings": self._settings()})

    def owner_opted_out(self, event: str | None) -> None:
        self._opt_out_changed("opted out of " + ("every event" if event is None else f"event {event}"))

    def owner_opted_in(self, event: str | None) -> None:
        self._opt_out_changed("opted back in to " + ("every event" if event is None else f"event {event}"))

    def _opt_out_changed(self, change: str) -> None:
        home = self.home
        self.store.put(OWNER_SCOPE, OPT_OUT, {"all": home.opt_out_all, "events": sorted(home.opt_out_events),
                                              "configured": _configured_opt_out(home.config)})
        self.store.record(OWNER, home.config.id, self._now(), {"change": change, "settings": self._settings()})

    def _settings(self) -> dict[str, Any]:
        home = self.home
        return {"desired": {load.id: load.desired for load in home.loads.values()},
                "opt_out_all": home.opt_out_all, "opt_out_events": sorted(home.opt_out_events)}

    # ------------------------------------------------------------ boards

    def board_joined(self, actuator: str, peer: str, states: tuple[bool, ...]) -> None:
        self.store.record(BOARD, actuator, self._now(), {"joined": True, "peer": peer,
                                                         "states": "".join("1" if s else "0" for s in states)})

    def board_left(self, actuator: str, loads: tuple[str, ...]) -> None:
        self.store.record(BOARD, actuator, self._now(), {"left": True, "loads": list(loads)})

    def measurement(self, actuator: str, watts: tuple[int, ...]) -> None:
        # Kept at most once per measure_period_s (the period of the home's
        # MEASURE to the aggregator), whatever the boards' own period: the
        # rows, and the pages each commit writes to an SD card, stay few.
        now = self._now()
        store = self.store
        board = board_subject(actuator)
        if self._keep(board, now):
            store.measure(board, now, float(sum(watts)))
            for load in self.home.loads_of(actuator):
                store.measure(load_subject(load.id), now, float(watts[load.config.relay - 1]))
        if self._keep(HOME, now):
            store.measure(HOME, now, self.home.measured_w())

    def _keep(self, subject: str, now: float) -> bool:
        period = self.home.config.measure_period_s
        # A tenth of a period early still counts: readings arrive with jitter.
        if now < self._due.get(subject, float("-inf")) - period / 10:
            return False
        self._due[subject] = now + period
        return True

    def _now(self) -> float:
        return self.home.clock.seconds()

    # ------------------------------------------------------------ questions

    def why(self, load_id: str, at: float | str | None = None) -> "Deferred[str]":
        """Why ``load_id`` was in its state at ``at`` (see ``Home.why``)."""
        return self.why_view(load_id, at).addCallback(lambda view: view["text"])

    def why_view(self, load_id: str, at: float | str | None = None) -> "Deferred[dict[str, Any]]":
        """``why`` as the HTTP API answers it: ``on`` (None when unknown or
        not on record), the ``chain`` of links (``kind``: ``state``,
        ``switch``, ``measured``, ``budget``, ``owner``; ``at`` epoch
        seconds or None; ``summary``; the journal's ``detail``) and the
        ``text``."""
        moment = parse_moment(at, self._now())
        return Deferred.fromCoroutine(self._why(load_id, moment))

    async def _why(self, load_id: str, at: float) -> dict[str, Any]:
        store = self.store
        try:
            await store.durable()  # the journal answers from what is committed
        except StoreError as e:
            self.log.warn("answering from what the store committed: {error}", error=str(e))
        load = self.home.loads[load_id]
        actuator = load.config.actuator
        switch = await _last(store, kinds=[SWITCH], subjects=[load_id], until=at)
        board = await _last(store, kinds=[BOARD], subjects=[actuator], until=at)
        start = await _last(store, kinds=[START], until=at)
        budget = await _last(store, kinds=[BUDGET, RELEASE], until=at)
        owner = await _last(store, kinds=[OWNER, START], until=at)
        measured = await store.measurements(subjects=[load_subject(load_id)], since=at - 300, until=at)
        state = _state_then(load_id, actuator, load.config.relay, load.config.rated_w, switch, board, start)
        newest = max((switch, board, start), key=_order)
        # (kind, the line's label, summary, entry)
        links: list[tuple[str, str, str, Any]] = [("state", f"{load_id} at {_when(at)}: ", state, newest)]
        if switch is not None:
            links.append(("switch", "  last switch: ", _switch_story(load_id, switch), switch))
        if measured:
            sample = measured[-1]
            links.append(("measured", "  measured then: ", f"{sample.watts:.0f} W at {_when(sample.at)}",
                          {"at": sample.at, "watts": sample.watts}))
        settings = None if owner is None else owner.detail.get("settings")
        links.append(("budget", "  budget in force then: ", _budget_then(budget, at, settings), budget))
        links.append(("owner", "  owner's settings then: ", _settings_then(load_id, settings, load.config.desired,
                                                                           self.home.config), owner))
        on = True if state.startswith("on") else False if state.startswith("off") else None
        return {"on": on, "text": "\n".join(label + summary for _, label, summary, _ in links),
                "chain": [_link(kind, summary, entry) for kind, _, summary, entry in links]}

    def export_csv(self, path: str, since: float | str | None = None,
                   until: float | str | None = None) -> "Deferred[int]":
        """The measurements kept, as CSV in ``path``; fires with the row count."""
        now = self._now()
        first = None if since is None else parse_moment(since, now)
        last = None if until is None else parse_moment(until, now)

        async def export() -> int:
            await self.store.durable()
            return int(await self.store.export_csv(path, since=first, until=last))

        return Deferred.fromCoroutine(export())


# ---------------------------------------------------------------- helpers


def _link(kind: str, summary: str, entry: Any) -> dict[str, Any]:
    """One link of ``why_view``'s chain, from its journal entry (or a
    measurement's figures, or nothing on record)."""
    if isinstance(entry, JournalEntry):
        return {"kind": kind, "at": entry.at, "round": entry.round, "subject": entry.subject, "summary": summary,
                "detail": dict(entry.detail)}
    figures = dict(entry) if isinstance(entry, Mapping) else {}
    return {"kind": kind, "at": figures.get("at"), "round": None, "subject": "", "summary": summary,
            "detail": figures}


async def _last(store: Store, **query: Any) -> JournalEntry | None:
    found = await store.journal(limit=1, newest_first=True, **query)
    return found[0] if found else None


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) + (f".{int(t * 10) % 10}" if t % 1 else "")


def _on_off(on: object) -> str:
    return "on" if on else "off"


def _order(entry: JournalEntry | None) -> tuple[float, int]:
    return (float("-inf"), -1) if entry is None else (entry.at, entry.id)


def _budget(budget: Any) -> dict[str, Any]:
    return {"event": budget.event, "budget_w": budget.budget_w, "end": budget.end, "round": budget.round}


def _configured_opt_out(config: Any) -> list[Any]:
    return [config.opt_out_all, sorted(config.opt_out_events)]


def _state_then(load_id: str, actuator: str, relay: int, rated_w: float, switch: JournalEntry | None,
                board: JournalEntry | None, start: JournalEntry | None) -> str:
    newest = max((switch, board, start), key=_order)
    if newest is None:
        return (f"no record: the journal has nothing of {load_id} or its board {actuator} before then "
                "(it starts when the store was first opened, and old entries are pruned)")
    if newest is switch:
        assert switch is not None
        return f"{_on_off(switch.detail.get('on'))} since {_when(switch.at)}"
    if newest is board:
        assert board is not None
        if board.detail.get("left"):
            return (f"unknown since {_when(board.at)}: board {actuator} was lost (counted at its rated "
                    f"{rated_w:.0f} W)")
        last_on = bool(switch is not None and switch.detail.get("on"))
        states = str(board.detail.get("states", ""))
        if len(states) >= relay and (states[relay - 1] == "1") != last_on:
            # No ``load_found`` at the HELLO, so it was as the home had
            # commanded: a switch-on whose ACK was lost, or that the home
            # did not live to record (stored before its SET, and read back
            # at the start).
            resumed = _resumed_switch(start, switch, load_id)
            since = "" if resumed is None else f", switched {_on_off(not last_on)} at {_when(resumed)}"
            return (f"{_on_off(not last_on)}, as the home had left it{since}, when board {actuator} said HELLO "
                    f"again at {_when(board.at)}: the home had commanded it {_on_off(not last_on)} but recorded "
                    "no acknowledgement (the ACK was lost, or the home stopped first)")
        return (f"{_on_off(last_on)}, as the home had left it, when board "
                f"{actuator} said HELLO again at {_when(board.at)}")
    assert start is not None
    return (f"unknown since {_when(start.at)}: the home started and board {actuator} had not said HELLO yet "
            f"(counted at its rated {rated_w:.0f} W)")


def _resumed_switch(start: JournalEntry | None, switch: JournalEntry | None, load_id: str) -> float | None:
    """The last switch of ``load_id`` the home resumed at ``start``, if it
    started after the last ``switch`` on record."""
    if start is None or _order(start) < _order(switch):
        return None
    loads = start.detail.get("loads") or {}
    at = (loads.get(load_id) or {}).get("last_switch")
    return None if at is None else float(at)


def _switch_story(load_id: str, entry: JournalEntry) -> str:
    d = entry.detail
    state = _on_off(d.get("on"))
    cause = d.get("cause")
    budget = d.get("budget")
    actuator = d.get("actuator", "?")
    if cause == CAUSE_UNCOMMANDED:
        return (f"found {state} at {_when(entry.at)}, not commanded by the home: board {actuator} reported it on "
                f"when it said HELLO ({_was(d.get('was'))}; it powered up so, or was switched by hand), so its "
                "min_on_s did not hold")
    if cause == CAUSE_FAILSAFE:
        return (f"found {state} at {_when(entry.at)}, not commanded by the home: board {actuator} reported it off "
                "when it said HELLO though the home had it on (its failsafe or a power blip opened it); counted as "
                "switched off then")
    if cause == CAUSE_FOUND:
        return (f"found {state} at {_when(entry.at)}: board {actuator} reported it so when it said HELLO, with no "
                "command of the home's on record")
    if cause == CAUSE_BUDGET and budget:
        by = (f"the budget of round {budget['round']} of event {budget['event']} at {budget['budget_w']:.0f} W "
              f"(until {_when(budget['end'])})")
    elif cause == CAUSE_MAX_OFF:
        since = d.get("off_since")
        by = ("the max_off_s safety rule: "
              + (f"off since {_when(since)}, " if since is not None else "")
              + f"longer than its max_off_s of {d.get('max_off_s') or 0:.0f} s, it comes back on whatever the budget")
    else:
        by = f"the owner's setting ({load_id} wanted {_on_off(d.get('desired'))})"
        if budget and d.get("opted_out"):
            by += f", the owner having opted out of event {budget['event']}"
    triggers = [TRIGGERS.get(reason, reason) for reason in d.get("why", ())]
    story = f"switched {state} at {_when(entry.at)} by {by}"
    if triggers:
        story += "; the home chose again because " + ", then ".join(triggers)
    return story


def _was(commanded: object) -> str:
    return "no command on record" if commanded is None else "last commanded off"


def _budget_then(entry: JournalEntry | None, at: float, settings: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "none on record"
    d = entry.detail
    if entry.kind == RELEASE:
        how = "released by the aggregator" if d.get("why") == listeners.RELEASE else "over"
        return f"none (event {entry.subject} {how} at {_when(entry.at)})"
    end = float(d["end"])
    if end <= at:
        return f"none (event {entry.subject} ended at {_when(end)})"
    text = (f"round {entry.round} of event {entry.subject}: {float(d['budget_w']):.0f} W until {_when(end)}, "
            f"applied at {_when(entry.at)}")
    if settings is not None and (settings.get("opt_out_all") or entry.subject in settings.get("opt_out_events", ())):
        text += " (the owner had opted out of it: loads ran as set)"
    return text


def _settings_then(load_id: str, settings: Mapping[str, Any] | None, configured: bool, config: Any) -> str:
    if settings is None:
        opted = _opt_outs(config.opt_out_all, sorted(config.opt_out_events))
        return f"as configured ({load_id} wanted {_on_off(configured)}; {opted}; no change on record)"
    desired = settings.get("desired", {}).get(load_id, configured)
    return (f"{load_id} wanted {_on_off(desired)}; "
            f"{_opt_outs(settings.get('opt_out_all'), settings.get('opt_out_events', []))}")


def _opt_outs(every: object, events: list[str]) -> str:
    if every:
        return "opted out of every event"
    return "opted out of " + (", ".join(f"event {e}" for e in events) if events else "no event")

