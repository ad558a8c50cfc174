"""The API's answers as an operator reads them: pure functions from the
JSON bodies of docs/api (``/status``, ``/homes``, ``/events``, ``/why``,
an event's verdict) to text, aligned for a terminal.  The ``jeisson``
command prints them, and the demo's console shows ``status_text`` and
``homes_table`` as the command would.

The verdict on the limit is honest (``limit_verdict``): OVER LIMIT, with
the figure, whenever what is measured or what is committed is above the
limit, whatever else says it is within.
"""

from collections.abc import Iterable, Sequence
from typing import Any

# Below a milliwatt is rounding, not power above the limit.
EPSILON_W = 1e-3


def kw(watts: float | None) -> str:
    """``12.49 kW``; ``-`` when not known."""
    return "-" if watts is None else f"{watts / 1000:.2f} kW"


def moment(text: str | None) -> str:
    """A UTC time of the API (``2026-12-03T18:00:00.000Z``) to the second."""
    if not text:
        return "-"
    return text[:19] + "Z" if len(text) >= 19 and text.endswith("Z") else text


def clock(text: str | None) -> str:
    """The time of day of a UTC time (``18:00:00Z``)."""
    shown = moment(text)
    return shown[11:] if len(shown) == 20 else shown


def span(seconds: float) -> str:
    """A duration read at a glance: ``45 s``, ``4 min 10 s``, ``2 h 05 min``,
    ``3 d 4 h``."""
    whole = int(round(abs(seconds)))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def table(header: Sequence[str] | None, rows: Iterable[Sequence[str]], right: Iterable[int] = ()) -> str:
    """Columns padded to their widest cell (``right``: the columns aligned
    right, numbers), two spaces apart, under ``header`` if given; no
    trailing spaces."""
    rows = ([list(header)] if header is not None else []) + [list(row) for row in rows]
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = set(right)
    lines = []
    for row in rows:
        cells = [cell.rjust(width) if i in right else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def limit_verdict(limit_w: float | None, committed_w: float | None, measured_w: float | None,
                  within_limit: bool | None = None, over_w: float | None = None) -> str:
    """``within limit`` only when neither what is measured nor what is
    committed is above ``limit_w`` and the aggregator (``within_limit``,
    ``over_w``) does not say otherwise; else ``OVER LIMIT`` with each figure
    above it."""
    if limit_w is None:
        return "no limit in force"
    above = []
    if measured_w is not None and measured_w > limit_w + EPSILON_W:
        above.append(f"measured {kw(measured_w)}, {kw(measured_w - limit_w)} above")
    if committed_w is not None and committed_w > limit_w + EPSILON_W:
        above.append(f"committed {kw(committed_w)}, {kw(committed_w - limit_w)} above")
    if above:
        return f"OVER LIMIT: {'; '.join(above)} the limit of {kw(limit_w)}"
    if over_w is not None and over_w > EPSILON_W:
        return f"OVER LIMIT by {kw(over_w)} (the limit is {kw(limit_w)})"
    if within_limit is False:
        return f"OVER LIMIT: committed + what homes it cannot hear may draw is above the limit of {kw(limit_w)}"
    return "within limit"


def event_line(event: dict[str, Any]) -> str:
    """One event with its countdown: ``peak-1 v2 (in force): limit 4.00 kW,
    18:00:00Z to 19:00:00Z, ends in 12 min 05 s``."""
    state = event.get("state", "")
    when = countdown(event)
    return (f"{event['id']} v{event.get('version', 1)} ({state}): limit {kw(event.get('limit_w'))},"
            f" {moment(event.get('start'))} to {moment(event.get('end'))}" + (f", {when}" if when else ""))


def countdown(event: dict[str, Any]) -> str:
    """``starts in ..., ends in ...`` for a scheduled event, ``ends in ...``
    for one in force, ``ended`` or ``cancelled``."""
    state = event.get("state")
    starts, ends = event.get("starts_in_s"), event.get("ends_in_s")
    if state == "cancelled":
        return "cancelled"
    if state == "ended" or (ends is not None and ends <= 0):
        return "ended"
    if state == "scheduled" and starts is not None and starts > 0:
        return f"starts in {span(starts)}" + (f", ends in {span(ends)}" if ends is not None else "")
    return f"ends in {span(ends)}" if ends is not None else ""


def status_text(status: dict[str, Any]) -> str:
    """``GET /status``: the limit in force against what is committed and
    measured, the verdict, the events with their countdowns, the homes, the
    negotiation and the last round."""
    limit = status.get("limit_w")
    verdict = limit_verdict(limit, status.get("committed_w"), status.get("measured_w"),
                            status.get("within_limit"), status.get("over_w"))
    rows = [
        ("at", moment(status.get("at"))),
        ("limit", kw(limit) if limit is not None else "none in force"),
        ("committed", kw(status.get("committed_w"))),
        ("measured", kw(status.get("measured_w"))),
        ("verdict", verdict),
        ("event", event_line(status["event"]) if status.get("event") else "none in force"),
        ("next event", event_line(status["next_event"]) if status.get("next_event") else "none scheduled"),
    ]
    homes = status.get("homes") or {}
    if homes:
        rows.append(("homes", f"{homes.get('connected', 0)} connected of {homes.get('total', 0)},"
                              f" {homes.get('silent', 0)} silent"))
    negotiation = status.get("negotiation") or {}
    if negotiation:
        rows.append(("negotiation", f"{negotiation.get('mode', '-')}, {negotiation.get('rounds', 0)} rounds,"
                                    f" {negotiation.get('converged_rounds', 0)} converged"))
    last = status.get("last_round")
    rows.append(("rounds run", str(status.get("rounds_run", 0))))
    if last:
        rows.append(("last round", round_line(last)))
    return table(None, rows)


def round_line(last: dict[str, Any]) -> str:
    """A round's totals and its honest verdict."""
    counted = (last.get("committed_w") or 0.0) + (last.get("unknown_w") or 0.0)
    verdict = limit_verdict(last.get("limit_w"), counted, last.get("measured_w"), last.get("within_limit"))
    return (f"{last.get('number')} at {clock(last.get('finished'))} (event {last.get('event')}):"
            f" committed {kw(last.get('committed_w'))} + unknown {kw(last.get('unknown_w'))},"
            f" measured {kw(last.get('measured_w'))}: {verdict}")


def _link(home: dict[str, Any]) -> str:
    if not home.get("connected"):
        return "DOWN"
    return "silent" if home.get("silent") else "up"


def homes_table(homes: list[dict[str, Any]]) -> str:
    """``GET /homes``: one row a home (link, demand, budget and its end,
    committed, measured, what the aggregator counts it at, its loads on and
    off), and the totals."""
    rows = []
    totals = dict.fromkeys(("demand_w", "budget_w", "committed_w", "measured_w", "counted_w"), 0.0)
    for home in homes:
        loads = home.get("loads") or []
        on = " ".join(load["id"] for load in loads if load.get("on"))
        off = " ".join(load["id"] for load in loads if not load.get("on"))
        for key in totals:
            totals[key] += home.get(key) or 0.0
        rows.append((home["id"], _link(home) + (" opted-out" if home.get("opted_out") else ""),
                     kw(home.get("demand_w")), kw(home.get("budget_w")),
                     clock(home.get("budget_end")) if home.get("budget_w") is not None else "-",
                     kw(home.get("committed_w")), kw(home.get("measured_w")), kw(home.get("counted_w")),
                     f"{on} | {off}" if loads else "-"))
    rows.append(("total", f"{sum(1 for h in homes if h.get('connected'))} up", kw(totals["demand_w"]),
                 kw(totals["budget_w"]), "", kw(totals["committed_w"]), kw(totals["measured_w"]),
                 kw(totals["counted_w"]), ""))
    return table(("home", "link", "demand", "budget", "until", "committed", "measured", "counted",
                  "loads on | off"), rows, right=(2, 3, 5, 6, 7))


def events_table(events: list[dict[str, Any]]) -> str:
    """``GET /events``: one row an event, with its countdown."""
    if not events:
        return "no events"
    rows = [(e["id"], str(e.get("version", "")), e.get("state", ""), kw(e.get("limit_w")), moment(e.get("start")),
             moment(e.get("end")), countdown(e), e.get("source") or "") for e in events]
    return table(("event", "v", "state", "limit", "start", "end", "when", "source"), rows, right=(1, 3))


def verdict_text(reply: dict[str, Any], event_id: str) -> str:
    """The reply to ``events add|modify|cancel`` about ``event_id``: the
    verdict, the event as it now stands (``cancelled peak-1`` when the reply
    has none), and the aggregator's detail."""
    line = f"{reply.get('verdict', 'done')}"
    event = reply.get("event")
    line += f": {event_line(event)}" if event else f" {event_id}"
    detail = reply.get("detail")
    return line + (f"\n{detail}" if detail else "")


def why_text(why: dict[str, Any]) -> str:
    """``GET /why``: the story the aggregator tells (its ``text``: the head
    line, then one line a link); without one, the head and the chain as a
    table."""
    text = (why.get("text") or "").strip()
    if text:
        return text
    on = why.get("on")
    state = "not known" if on is None else "on" if on else "off"
    lines = [f"home {why.get('home')}, load {why.get('load')} at {moment(why.get('at'))}: {state}"]
    chain = why.get("chain") or []
    if chain:
        rows = [(moment(link.get("at")), link.get("kind") or "",
                 "" if link.get("round") is None else str(link["round"]),
                 link.get("subject") or "", link.get("summary") or "") for link in chain]
        lines += [table(("at", "kind", "round", "subject", "summary"), rows, right=(2,))]
    else:
        lines.append("nothing in the journal explains it")
    return "\n".join(lines)
