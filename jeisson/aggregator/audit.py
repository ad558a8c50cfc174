"""The audit trail at the aggregator: why a home's load was on or off.

``why(store, home_id, load_id, at)`` reads the journal ``memory.Memory``
writes and tells the chain, one line per link::

    home h1, load heater at 2026-11-23T18:05:00Z: off
    - committed at 2026-11-23T18:04:41Z in round 12: 3000 W, on: oven
    - answering the BUDGET of round 12 sent at 2026-11-23T18:04:40Z: 3000 W in event peak, until 2026-11-23T20:00:00Z
    - round 12 in event peak: limit 5000 W, committed 5000 W + unknown 0 W: within limit
    - event peak version 2 (modified) from events file /etc/jeisson/events.ini: limit 5000 W from ... to ...

``why_chain`` gives the same as a ``Chain`` of ``Link`` objects (kind,
time, round, subject, the line, the journal's figures): what the HTTP API
answers, its ``text`` the lines above.  Each link it cannot find is said as such ("no record ..."): a home that
made no commitment by then, a commitment that answered no budget on record
(one after a release, or a home's own report), a round with no summary
(abandoned, or under way), an event whose offer is no longer in the
journal (pruned after ``retention_days``).
"""

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from jeisson import store as kinds
from jeisson.aggregator import events as event_rules
from jeisson.store import JournalEntry, Store
from jeisson.wire.utc import format_utc

# How many entries to look through for a round's budget and summary.
LOOK_BACK = 50
TAKEN = (event_rules.ADDED, event_rules.LATE, event_rules.MODIFIED)


@attrs.frozen
class Link:
    """One link of the chain: what (``kind``: commit, budget, release,
    round, event, or ``missing`` for a link not on record), when, in which
    round, about whom (``subject``: a home, an event), as a line
    (``summary``) and as the journal's figures (``detail``)."""

    kind: str
    summary: str
    at: float | None = None
    round: int | None = None
    subject: str = ""
    detail: Mapping[str, Any] = attrs.field(factory=dict)

    def view(self) -> dict[str, Any]:
        return {"kind": self.kind, "at": None if self.at is None else format_utc(self.at), "round": self.round,
                "subject": self.subject, "summary": self.summary, "detail": dict(self.detail)}


@attrs.frozen
class Chain:
    """Why a load was on or off: the head line, ``on`` (None when there is
    no record), and the links; ``text`` is the story the manhole shows."""

    home: str
    load: str
    at: float
    on: bool | None
    head: str
    links: tuple[Link, ...] = ()

    @property
    def text(self) -> str:
        return "\n".join([self.head, *(f"- {link.summary}" for link in self.links)])

    def view(self) -> dict[str, Any]:
        """The JSON the HTTP API answers (``GET /api/v1/why``)."""
        return {"home": self.home, "load": self.load, "at": format_utc(self.at), "on": self.on,
                "chain": [link.view() for link in self.links], "text": self.text}


def why(store: Store, home_id: str, load_id: str, at: float) -> "Deferred[str]":
    """The chain for ``load_id`` of ``home_id`` at ``at`` (epoch seconds), as text."""
    return why_chain(store, home_id, load_id, at).addCallback(lambda chain: chain.text)


def why_chain(store: Store, home_id: str, load_id: str, at: float) -> "Deferred[Chain]":
    """The chain for ``load_id`` of ``home_id`` at ``at`` (epoch seconds)."""
    return Deferred.fromCoroutine(_why(store, home_id, load_id, at))


def _w(value: Any) -> str:
    return "?" if value is None else f"{float(value):.0f} W"


async def _why(store: Store, home_id: str, load_id: str, at: float) -> Chain:
    head = f"home {home_id}, load {load_id} at {format_utc(at)}"
    commits = await store.journal(subjects=[home_id], kinds=[kinds.COMMIT], until=at, limit=1, newest_first=True)
    if not commits:
        joined = await store.journal(subjects=[home_id], kinds=[kinds.REGISTERED], until=at, limit=1,
                                     newest_first=True)
        seen = (f"; it last registered or left at {format_utc(joined[0].at)}" if joined
                else "; nor did it ever register by then")
        return Chain(home_id, load_id, at, None,
                     f"{head}: no record: home {home_id} made no commitment on record by then{seen}")
    commit = commits[0]
    on_ids = [str(o) for o in commit.detail.get("on", [])]
    state = "on" if load_id in on_ids else "off"
    links = [Link("commit", f"committed at {format_utc(commit.at)} in round {commit.round}: "
                            f"{_w(commit.detail.get('w'))}, on: {', '.join(on_ids) or 'nothing'}"
                  + ("" if state == "on" else f" ({load_id} is not among them)"),
                  commit.at, commit.round, home_id, commit.detail)]

    def chain() -> Chain:
        return Chain(home_id, load_id, at, state == "on", f"{head}: {state}", tuple(links))

    answered = await _answered(store, home_id, commit)
    if answered is None:
        links.append(Link("missing", f"no record of a BUDGET or RELEASE of round {commit.round} to {home_id}: a "
                                     "commitment of its own (its loads as set, outside any event), or one whose "
                                     "budget was pruned", None, commit.round, home_id))
        return chain()
    event_id = str(answered.detail.get("event", ""))
    if answered.kind == kinds.RELEASE:
        links.append(Link("release", f"answering the RELEASE of round {answered.round} sent at "
                                     f"{format_utc(answered.at)}: event {event_id} over, its loads as its owner set "
                                     "them", answered.at, answered.round, home_id, answered.detail))
    else:
        links.append(Link("budget", f"answering the BUDGET of round {answered.round} sent at "
                                    f"{format_utc(answered.at)}: {_w(answered.detail.get('w'))} in event {event_id}, "
                                    "until " + (format_utc(float(answered.detail['end']))
                                                if 'end' in answered.detail else '?'),
                          answered.at, answered.round, home_id, answered.detail))
        links.append(await _round(store, event_id, answered))
    links.append(await _event(store, event_id, answered.at))
    return chain()


async def _answered(store: Store, home_id: str, commit: JournalEntry) -> JournalEntry | None:
    """The BUDGET or RELEASE of the commitment's round, sent before it."""
    sent = await store.journal(subjects=[home_id], kinds=[kinds.BUDGET, kinds.RELEASE], until=commit.at,
                               limit=LOOK_BACK, newest_first=True)
    return next((entry for entry in sent if entry.round == commit.round), None)


async def _round(store: Store, event_id: str, budget: JournalEntry) -> Link:
    entries = await store.journal(subjects=[event_id, ""], kinds=[kinds.ROUND], since=budget.at, limit=LOOK_BACK)
    entry = next((e for e in entries if e.round == budget.round), None)
    if entry is None:
        return Link("missing", f"no record of round {budget.round}'s summary (under way, or pruned)", None,
                    budget.round, event_id)
    detail = entry.detail
    if "abandoned" in detail:
        return Link("round", f"round {budget.round} was abandoned ({detail['abandoned']}) after its budgets went "
                             "out", entry.at, entry.round, entry.subject, detail)
    verdict = "within limit" if detail.get("within_limit") else "OVER LIMIT"
    measured = f", measured {_w(detail['measured_w'])}" if detail.get("measured_w") is not None else ""
    return Link("round", f"round {budget.round} in event {event_id}: limit {_w(detail.get('limit_w'))}, committed "
                         f"{_w(detail.get('committed_w'))} + unknown {_w(detail.get('unknown_w'))}{measured}: "
                         f"{verdict}", entry.at, entry.round, entry.subject, detail)


async def _event(store: Store, event_id: str, before: float) -> Link:
    offers = await store.journal(subjects=[event_id], kinds=[kinds.EVENT], until=before, limit=LOOK_BACK,
                                 newest_first=True)
    entry = next((e for e in offers if e.detail.get("verdict") in TAKEN), None)
    if entry is None:
        return Link("missing", f"no record of event {event_id} being offered (pruned, or offered before this "
                               "journal began)", None, None, event_id)
    d = entry.detail
    return Link("event", f"event {event_id} version {d.get('version')} ({d.get('verdict')}) from {d.get('source')}: "
                         f"limit {_w(d.get('limit_w'))} from {format_utc(float(d['start']))} to "
                         f"{format_utc(float(d['end']))}", entry.at, None, event_id, d)
