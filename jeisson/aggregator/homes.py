"""The homes the aggregator knows, and what is known of their power.

``Homes`` admits each home's link (``register``), follows it until it
closes, and keeps per home its latest bid, commitment and measurement.  A
home that cannot answer now (away, not heard from since the aggregator
started, or silent in a round until heard from again) is counted
cautiously, at its last record (``HomeRecord.cautious_w``): the most of its
last commitment or report, its last measurement, the last budget sent to
it and the last budget it acknowledged (committed to), each while in
force; unless both of those hold (it may hold none: it never got the one
sent, or was released, or the budget ended and it restores its loads as
set), at least its last demand; with no record at all, at the sum of its
loads' rated power if it ever reported them, else at its ``max_kw``.
Never zero unless it is known to be zero.  A store gives the records back
after a restart (``restore``).
"""

import hmac
from typing import Any, Protocol

import attrs
from twisted.logger import Logger

from jeisson.aggregator.config import AggregatorConfig
from jeisson.aggregator.listeners import AggregatorListener
from jeisson.aggregator.negotiation import Offers
from jeisson.wire import aggregator_home as wire


def _cautious(level_w: float | None, measured_w: float | None, granted_w: float | None, held_w: float | None,
              demand_w: float | None, safe_w: float | None, max_w: float | None, registered_max_w: float) -> float:
    """``HomeRecord.cautious_w`` from its figures (``granted_w`` and
    ``held_w`` None where that budget does not hold).  Asked of every home
    on every change it reports (``memory.Memory``): plain comparisons."""
    most = _NOTHING
    if level_w is not None and level_w > most:
        most = level_w
    if measured_w is not None and measured_w > most:
        most = measured_w
    if granted_w is not None and granted_w > most:
        most = granted_w
    if held_w is not None and held_w > most:
        most = held_w
    if (granted_w is None or held_w is None) and demand_w is not None and demand_w > most:
        most = demand_w
    if safe_w and safe_w > most:
        most = safe_w
    if most > _NOTHING:
        return most
    return max_w if max_w is not None else registered_max_w


_NOTHING = float("-inf")


class HomeLink(Protocol):
    """What the aggregator calls on a home's live link (``HomeSession``)."""

    @property
    def peer(self) -> str: ...

    def send(self, message: object) -> None: ...

    def supersede(self) -> None: ...


# What a store keeps of each home (``HomeRecord.remembered``, ``restore``).
REMEMBERED = ("level_w", "measured_w", "measured_at", "budget_w", "budget_end", "in_event", "on", "demand_w",
              "max_w", "budget_round", "held_w", "held_end", "held_event", "safe_w")


@attrs.define(eq=False)
class HomeRecord:
    """What the aggregator knows of one configured home."""

    id: str
    secret: str
    registered_max_w: float = 10_000.0  # ``[home:ID] max_kw``: counted at this with no record at all
    session: HomeLink | None = None
    flex: wire.Flex | None = None
    offers: Offers | None = None
    level_w: float | None = None  # last known draw: latest COMMIT or FLEX
    measured_w: float | None = None
    measured_at: float | None = None
    # The last BUDGET sent (set as it goes out, whether or not the home got it).
    budget_w: float | None = None
    budget_end: float | None = None  # the BUDGET's end: when the home restores its loads as set
    on: tuple[str, ...] = ()
    in_event: str | None = None
    budget_round: int | None = None  # the round that sent it
    # The last budget the home acknowledged (committed to the round that
    # sent it): what it holds unless a later BUDGET or RELEASE reached it.
    # ``held_event`` None: it acknowledged none (or its RELEASE).
    held_w: float | None = None
    held_end: float | None = None
    held_event: str | None = None
    demand_w: float | None = None  # what its last FLEX would draw without an event (kept while away)
    max_w: float | None = None  # the sum of its loads' rated power, from its last FLEX
    # The sum of its critical loads' rated power, from its last FLEX: their
    # relays' safe state is on, so its boards close them by themselves (at
    # power-up after the cold-load delay, or when their failsafe fires)
    # whatever the home was told.  Never counted below this while it cannot
    # answer.
    safe_w: float | None = None
    # Did not commit in time in a round: planned as fixed demand (at its
    # cautious power) until it is heard from again with a FLEX or COMMIT.
    unresponsive: bool = False

    @property
    def connected(self) -> bool:
        return self.session is not None

    @property
    def level(self) -> float:
        """Its last known draw, 0 if nothing is known."""
        return self.level_w if self.level_w is not None else 0.0

    def cautious_w(self, granted_w: float | None = None, now: float | None = None) -> float:
        """The power to assume for a home that cannot answer now: the most
        of its last commitment or report, its last measurement, the budget
        sent to it (``granted_w``, what a round granted it; else the last
        BUDGET sent, unless its end is past ``now``) and the budget it last
        acknowledged (unless its end is past ``now``).  Unless both budgets
        hold, at least its last demand: a home that did not get the budget
        sent and acknowledged none (or was released, or its budget ended)
        runs its loads as its owner set them.  At least its critical loads'
        rated power (``safe_w``): its boards close those by themselves.
        With no record at all, the
        sum of its loads' rated power if it ever reported them, else its
        registered maximum."""
        if granted_w is None and self.in_event is not None and not self.budget_over(now):
            granted_w = self.budget_w
        held_w = self.held_w if self.held_event is not None and not self.held_over(now) else None
        return _cautious(self.level_w, self.measured_w, granted_w, held_w, self.demand_w, self.safe_w, self.max_w,
                         self.registered_max_w)

    @staticmethod
    def cautious_of(kept: dict[str, Any], registered_max_w: float, now: float) -> float:
        """``cautious_w(now=now)`` of the record ``restore(kept, now)`` would
        make, without making it (``memory.Memory`` asks this of every
        record it wrote, on every change)."""
        get = kept.get
        end = get("budget_end")
        granted_w = get("budget_w") if get("in_event") is not None and (end is None or end > now) else None
        end = get("held_end")
        held_w = get("held_w") if get("held_event") is not None and (end is None or end > now) else None
        return _cautious(get("level_w"), get("measured_w"), granted_w, held_w, get("demand_w"), get("safe_w"),
                         get("max_w"), registered_max_w)

    def budget_over(self, now: float | None) -> bool:
        """Whether its budget's end has passed (unknown without ``now``: not)."""
        return now is not None and self.budget_end is not None and self.budget_end <= now

    def held_over(self, now: float | None) -> bool:
        """Whether the end of the budget it acknowledged has passed (unknown without ``now``: not)."""
        return now is not None and self.held_end is not None and self.held_end <= now

    def remembered(self) -> dict[str, Any]:
        """Its record, as a store keeps it (``REMEMBERED``)."""
        return {"level_w": self.level_w, "measured_w": self.measured_w, "measured_at": self.measured_at,
                "budget_w": self.budget_w, "budget_end": self.budget_end, "in_event": self.in_event,
                "on": list(self.on), "demand_w": self.demand_w, "max_w": self.max_w,
                "budget_round": self.budget_round, "held_w": self.held_w, "held_end": self.held_end,
                "held_event": self.held_event, "safe_w": self.safe_w}

    def restore(self, kept: dict[str, Any], now: float) -> None:
        """Its record as a store kept it; a budget whose end has passed is
        over (the home restored its loads: ``budget_end`` and ``held_end``
        say so).  A record kept before acknowledged budgets were kept has
        none: the home is counted at least at its demand."""
        for name in REMEMBERED:
            if name in kept:
                value = kept[name]
                setattr(self, name, tuple(value) if name == "on" else value)
        if self.budget_over(now):
            self.in_event = None
            self.budget_w = None
        if self.held_over(now):
            self.held_event = None
            self.held_w = None

    def committed(self, commit: wire.Commit) -> None:
        """A commitment taken (``Rounds.commit``): its draw, and what it
        acknowledges: the BUDGET of its round, or else (the answer to a
        RELEASE, the only other thing numbered) no budget at all."""
        self.level_w = commit.committed_w
        self.on = commit.on
        if commit.round == self.budget_round and self.in_event is not None:
            self.held_w, self.held_end, self.held_event = self.budget_w, self.budget_end, self.in_event
        else:
            self.held_w = self.held_end = self.held_event = None


class Homes:
    """The configured homes, their links and their reports."""

    log = Logger()

    def __init__(self, config: AggregatorConfig, announce: AggregatorListener):
        self.records = {h.id: HomeRecord(h.id, h.secret, h.max_w) for h in config.homes.values()}
        self._announce = announce

    def __getitem__(self, home_id: str) -> HomeRecord:
        return self.records[home_id]

    def __iter__(self):
        return iter(self.records.values())

    def register(self, session: HomeLink, hello: wire.Hello) -> tuple[str, str] | None:
        """Admit a home's session, or say why not as ``(code, detail)``."""
        record = self.records.get(hello.home)
        if record is None:
            return wire.UNKNOWN_HOME, f"home {hello.home!r} is not configured on this aggregator"
        if not hmac.compare_digest(record.secret.encode(), hello.secret.encode()):
            return wire.BAD_CREDENTIAL, f"wrong secret for home {hello.home!r}"
        if record.session is not None:
            # The home reconnected before its old link was found dead.
            self.log.info("home {home} reconnected from {peer}; closing its old link", home=record.id,
                          peer=session.peer)
            # Detach first: the home has not left, only its old link has.
            old, record.session = record.session, None
            old.supersede()
        record.session = session
        self.log.info("home {home} registered from {peer}", home=record.id, peer=session.peer)
        self._announce.home_joined(record.id, session.peer)
        return None

    def restore(self, kept: dict[str, Any], now: float) -> list[str]:
        """The homes' records as a store kept them (``home id -> record``);
        the ids restored (homes no longer configured are left out)."""
        restored = []
        for home_id, record in self.records.items():
            if isinstance(kept.get(home_id), dict):
                record.restore(kept[home_id], now)
                restored.append(home_id)
        return restored

    def session_closed(self, home_id: str, session: HomeLink, now: float | None = None) -> bool:
        """Whether ``session`` was the home's live link (and the home left)."""
        record = self.records[home_id]
        if record.session is not session:
            return False
        record.session = None
        record.flex = None
        record.offers = None
        counted_w = record.cautious_w(now=now)
        self.log.info("home {home} left; counted at {w:.0f} W while it is away", home=home_id, w=counted_w)
        self._announce.home_left(home_id, counted_w)
        return True

    def bid_received(self, home_id: str, flex: wire.Flex) -> bool:
        """Take a home's new bid; whether it was silent until now."""
        record = self.records[home_id]
        offers = Offers.of(flex)
        if flex.opt_out != (record.flex is not None and record.flex.opt_out):
            if flex.opt_out:
                self.log.info("home {home} opted out: its {w:.0f} W are counted as fixed demand", home=home_id,
                              w=offers.must_w)
            elif record.flex is not None:
                self.log.info("home {home} opted back in", home=home_id)
        record.flex = flex
        record.offers = offers
        record.level_w = offers.on_w
        record.demand_w = offers.demand_w
        record.max_w = sum(o.rated_w for o in flex.loads)
        record.safe_w = sum(o.rated_w for o in flex.loads if o.critical)
        again = self.heard_again(record)
        self._announce.bid_received(home_id, flex)
        return again

    def measure_received(self, home_id: str, measure: wire.Measure) -> None:
        record = self.records[home_id]
        record.measured_w = measure.power_w
        record.measured_at = measure.at
        self._announce.measurement(home_id, measure)

    def heard_again(self, record: HomeRecord) -> bool:
        """A line from a home silent in a round: it takes part again."""
        if not record.unresponsive:
            return False
        record.unresponsive = False
        self.log.info("home {home} answers again; it takes part from the next round", home=record.id)
        self._announce.home_answers_again(record.id)
        return True

    def went_silent(self, record: HomeRecord, round_number: int, counted_w: float) -> None:
        record.unresponsive = True
        self._announce.home_silent(record.id, round_number, counted_w)

    def participants(self) -> dict[str, HomeRecord]:
        """The homes a round plans: connected, with a bid, not silent."""
        return {h: r for h, r in self.records.items() if r.connected and r.offers is not None and not r.unresponsive}
