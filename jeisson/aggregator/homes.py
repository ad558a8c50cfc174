"""The homes the aggregator knows, and what is known of their power.

``Homes`` admits each home's link (``register``), follows it until it
closes, and keeps per home its latest bid, commitment and measurement.  A
home that cannot answer now (away, or silent in a round until heard from
again) is counted cautiously: the most of its last commitment or report,
its last measurement and what it was last granted, never zero when anything
is known.
"""

import hmac
from typing import Protocol

import attrs
from twisted.logger import Logger

from jeisson.aggregator.config import AggregatorConfig
from jeisson.aggregator.listeners import AggregatorListener
from jeisson.aggregator.negotiation import Offers
from jeisson.wire import aggregator_home as wire


class HomeLink(Protocol):
    """What the aggregator calls on a home's live link (``HomeSession``)."""

    @property
    def peer(self) -> str: ...

    def send(self, message: object) -> None: ...

    def supersede(self) -> None: ...


@attrs.define(eq=False)
class HomeRecord:
    """What the aggregator knows of one configured home."""

    id: str
    secret: str
    session: HomeLink | None = None
    flex: wire.Flex | None = None
    offers: Offers | None = None
    level_w: float | None = None  # last known draw: latest COMMIT or FLEX
    measured_w: float | None = None
    measured_at: float | None = None
    budget_w: float | None = None
    on: tuple[str, ...] = ()
    in_event: str | None = None
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

    def cautious_w(self, granted_w: float | None = None) -> float:
        """The power to assume for a home that cannot answer now: the most
        of its last commitment or report, its last measurement, and what it
        was last granted."""
        known = [w for w in (self.level_w, self.measured_w, granted_w) if w is not None]
        return max(known) if known else 0.0

    def committed(self, commit: wire.Commit) -> None:
        self.level_w = commit.committed_w
        self.on = commit.on


class Homes:
    """The configured homes, their links and their reports."""

    log = Logger()

    def __init__(self, config: AggregatorConfig, announce: AggregatorListener):
        self.records = {h.id: HomeRecord(h.id, h.secret) for h in config.homes.values()}
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

    def session_closed(self, home_id: str, session: HomeLink) -> bool:
        """Whether ``session`` was the home's live link (and the home left)."""
        record = self.records[home_id]
        if record.session is not session:
            return False
        record.session = None
        record.flex = None
        record.offers = None
        self.log.info("home {home} left; counted at {w:.0f} W while it is away", home=home_id,
                      w=record.cautious_w())
        self._announce.home_left(home_id, record.cautious_w())
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
