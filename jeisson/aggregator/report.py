"""What the aggregator tells operators: the round log lines and the snapshot.

``RoundLog`` is a listener: each finished round's lines (per home when
there are few, per feeder, and the totals against the limit: committed,
unknown and measured, "within limit" only when both what is committed and
what is measured are, and when not, by how much and whether the must-run
loads alone are above it) and how the negotiation settled.  ``snapshot`` is the JSON-ready view the status file,
the demo and the manhole show.
"""

from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jeisson.aggregator.homes import Homes
from jeisson.aggregator.listeners import AggregatorListener
from jeisson.aggregator.negotiation import Grid
from jeisson.aggregator.round import RoundSummary, overs
from jeisson.aggregator.rounds import Rounds
from jeisson.aggregator.schedule import Schedule
from jeisson.wire import aggregator_home as wire

# Above this many homes in a round, one line sums the round up instead of a
# line per home (formatting them took most of a round's time at 1,000 homes).
PER_HOME_LOG_LIMIT = 20


class RoundLog(AggregatorListener):
    """The round's lines in the log."""

    log = Logger()

    def __init__(self, converge_s: float, round_period_s: float):
        self.converge_s = converge_s
        self.round_period_s = round_period_s

    def round_finished(self, summary: RoundSummary) -> None:
        n, event = summary.number, summary.event
        if len(summary.homes) <= PER_HOME_LOG_LIMIT:
            for home_id, home in summary.homes.items():
                self.log.info(
                    "round {n} event {event}: home {home}: demand {demand} W, budget {budget} W, committed"
                    " {committed} W, on [{on}], off [{off}]",
                    n=n, event=event, home=home_id, demand=_watts(home["demand_w"]),
                    budget=_watts(home["budget_w"]), committed=_watts(home["committed_w"]),
                    on=", ".join(home["on"]), off=", ".join(home["off"]))
        else:
            late = sum(1 for home in summary.homes.values() if home["committed_w"] is None)
            self.log.info(
                "round {n} event {event}: {count} homes, {late} of them late; per-home figures in the status file",
                n=n, event=event, count=len(summary.homes), late=late)
        for name, f in summary.feeders.items():
            verdict = "within limit" if summary.feeder_within_limit(name) else "OVER LIMIT"
            counted = f["committed_w"] + f["unknown_w"]
            self.log.info(
                "round {n} event {event}: feeder {feeder}: committed {committed:.0f} W + unknown {unknown:.0f} W,"
                " measured {measured:.0f} W of limit {limit:.0f} W: {verdict}{detail}",
                n=n, event=event, feeder=name, committed=f["committed_w"], unknown=f["unknown_w"],
                measured=f.get("measured_w", counted), limit=f["limit_w"], verdict=verdict,
                detail=verdict_detail(f["limit_w"], counted, f.get("measured_w"), f.get("must_w", 0.0),
                                      f.get("away_w", 0.0)))
        measured = summary.measured_w if summary.measured_w is not None else summary.committed_w + summary.unknown_w
        self.log.info(
            "round {n} event {event}: committed {committed:.0f} W + unknown {unknown:.0f} W, measured {measured:.0f} W"
            " of limit {limit:.0f} W: {verdict}{detail} (round took {ms:.1f} ms)",
            n=n, event=event, committed=summary.committed_w, unknown=summary.unknown_w, measured=measured,
            limit=summary.limit_w, verdict="within limit" if summary.within_limit else "OVER LIMIT",
            detail=verdict_detail(summary.limit_w, summary.committed_w + summary.unknown_w, summary.measured_w,
                                  summary.must_w, summary.away_w),
            ms=(summary.finished - summary.started) * 1e3)

    def negotiation_settled(self, converged: bool, rounds: int, elapsed_s: float) -> None:
        if converged:
            self.log.info("negotiation converged after {rounds} round(s) in {t:.1f} s", rounds=rounds, t=elapsed_s)
        else:
            self.log.warn("negotiation did not converge within {limit} s ({rounds} rounds); next round in"
                          " {period} s", limit=self.converge_s, rounds=rounds, period=self.round_period_s)


class StatusFileListener(AggregatorListener):
    """Tells the status file that what it shows may have changed."""

    def __init__(self, status_file: "ChangeSink"):
        self.status_file = status_file

    def changed(self) -> None:
        self.status_file.changed()


class ChangeSink(Protocol):
    def changed(self) -> None: ...


def verdict_detail(limit_w: float, committed_w: float, measured_w: float | None, must_w: float,
                   away_w: float) -> str:
    """What follows ``OVER LIMIT`` in a round's line: when the must-run
    loads with the homes away exceed the limit, by how much
    (``: must-run M W + away A W, X W above the limit``), then which figures
    are above it (`` (committed + unknown X W above, measured Y W above)``);
    nothing when within the limit."""
    found = overs(limit_w, committed_w, measured_w)
    if not found:
        return ""
    must_over = must_w + away_w - limit_w
    head = (f": must-run {must_w:.0f} W + away {away_w:.0f} W, {must_over:.0f} W above the limit"
            if must_over > 1e-6 else "")
    names = {"committed": "committed + unknown", "measured": "measured"}
    return head + " (" + ", ".join(f"{names[k]} {w:.0f} W above" for k, w in found.items()) + ")"


def _watts(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def snapshot(clock: IReactorTime, homes: Homes, grid: Grid, schedule: Schedule, rounds: Rounds) -> dict[str, Any]:
    """A JSON-ready view for operators, the demo and the manhole."""
    event = schedule.current
    home_views = {}
    for record in homes:
        flex = record.flex
        home_views[record.id] = {
            "connected": record.connected,
            "peer": record.session.peer if record.session is not None else None,
            "feeder": grid.names[grid.feeder_of[record.id]] if record.id in grid.feeder_of else None,
            "demand_w": record.offers.demand_w if record.offers is not None else None,
            "opted_out": flex is not None and flex.opt_out,
            "level_w": record.level_w,
            "measured_w": record.measured_w,
            "budget_w": record.budget_w,
            "loads": [
                {"id": o.id, "rated_w": o.rated_w, "priority": o.priority, "mode": o.mode, "on": o.on,
                 "critical": o.critical, "wanted": o.wanted}
                for o in (flex.loads if flex is not None else ())
            ],
        }
    last = rounds.last
    negotiation = rounds.negotiation
    return {
        "at": wire.format_utc(clock.seconds()),
        "event": None if event is None else {
            "id": event.id, "limit_w": event.limit_w, "start": wire.format_utc(event.start),
            "end": wire.format_utc(event.end)},
        "rounds_run": rounds.rounds_run,
        "negotiation": {
            "mode": "idle" if event is None else negotiation.mode,
            "rounds": negotiation.rounds, "converged_rounds": negotiation.converged_rounds},
        "last_round": None if last is None else {
            "number": last.number, "event": last.event, "limit_w": last.limit_w,
            "committed_w": last.committed_w, "unknown_w": last.unknown_w, "measured_w": last.measured_w,
            "must_w": last.must_w, "away_w": last.away_w, "within_limit": last.within_limit,
            "feasible": last.feasible, "homes": last.homes, "feeders": last.feeders,
            "started": wire.format_utc(last.started), "finished": wire.format_utc(last.finished)},
        "homes": home_views,
    }
