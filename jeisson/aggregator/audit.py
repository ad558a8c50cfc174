"""The audit trail at the aggregator: why a home's load was on or off.

``why(store, home_id, load_id, at)`` reads the journal ``memory.Memory``
writes and tells the chain, one line per link::

    home h1, load heater at 2026-11-23T18:05:00Z: off
    - committed at 2026-11-23T18:04:41Z in round 12: 3000 W, on: oven
    - answering the BUDGET of round 12 sent at 2026-11-23T18:04:40Z: 3000 W in event peak, until 2026-11-23T20:00:00Z
    - round 12 in event peak: limit 5000 W, committed 5000 W + unknown 0 W: within limit
    - event peak version 2 (modified) from events file /etc/jeisson/events.ini: limit 5000 W from ... to ...

Each link it cannot find is said as such ("no record ..."): a home that
made no commitment by then, a commitment that answered no budget on record
(one after a release, or a home's own report), a round with no summary
(abandoned, or under way), an event whose offer is no longer in the
journal (pruned after ``retention_days``).
"""

from typing import Any

from twisted.internet.defer import Deferred

from jeisson import store as kinds
from jeisson.aggregator import events as event_rules
from jeisson.store import JournalEntry, Store
from jeisson.wire.utc import format_utc

# How many entries to look through for a round's budget and summary.
LOOK_BACK = 50
TAKEN = (event_rules.ADDED, event_rules.LATE, event_rules.MODIFIED)


def why(store: Store, home_id: str, load_id: str, at: float) -> "Deferred[str]":
    """The chain for ``load_id`` of ``home_id`` at ``at`` (epoch seconds)."""
    return Deferred.fromCoroutine(_why(store, home_id, load_id, at))


def _w(value: Any) -> str:
    return "?" if value is None else f"{float(value):.0f} W"


async def _why(store: Store, home_id: str, load_id: str, at: float) -> str:
    head = f"home {home_id}, load {load_id} at {format_utc(at)}"
    commits = await store.journal(subjects=[home_id], kinds=[kinds.COMMIT], until=at, limit=1, newest_first=True)
    if not commits:
        joined = await store.journal(subjects=[home_id], kinds=[kinds.REGISTERED], until=at, limit=1,
                                     newest_first=True)
        seen = (f"; it last registered or left at {format_utc(joined[0].at)}" if joined
                else "; nor did it ever register by then")
        return f"{head}: no record: home {home_id} made no commitment on record by then{seen}"
    commit = commits[0]
    on_ids = [str(o) for o in commit.detail.get("on", [])]
    state = "on" if load_id in on_ids else "off"
    lines = [f"{head}: {state}",
             f"- committed at {format_utc(commit.at)} in round {commit.round}: {_w(commit.detail.get('w'))}, "
             f"on: {', '.join(on_ids) or 'nothing'}"
             + ("" if state == "on" else f" ({load_id} is not among them)")]
    answered = await _answered(store, home_id, commit)
    if answered is None:
        lines.append(f"- no record of a BUDGET or RELEASE of round {commit.round} to {home_id}: a commitment of its"
                     " own (its loads as set, outside any event), or one whose budget was pruned")
        return "\n".join(lines)
    event_id = str(answered.detail.get("event", ""))
    if answered.kind == kinds.RELEASE:
        lines.append(f"- answering the RELEASE of round {answered.round} sent at {format_utc(answered.at)}: event "
                     f"{event_id} over, its loads as its owner set them")
    else:
        lines.append(f"- answering the BUDGET of round {answered.round} sent at {format_utc(answered.at)}: "
                     f"{_w(answered.detail.get('w'))} in event {event_id}, until "
                     f"{format_utc(float(answered.detail['end'])) if 'end' in answered.detail else '?'}")
        lines.append(await _round(store, event_id, answered))
    lines.append(await _event(store, event_id, answered.at))
    return "\n".join(lines)


async def _answered(store: Store, home_id: str, commit: JournalEntry) -> JournalEntry | None:
    """The BUDGET or RELEASE of the commitment's round, sent before it."""
    sent = await store.journal(subjects=[home_id], kinds=[kinds.BUDGET, kinds.RELEASE], until=commit.at,
                               limit=LOOK_BACK, newest_first=True)
    return next((entry for entry in sent if entry.round == commit.round), None)


async def _round(store: Store, event_id: str, budget: JournalEntry) -> str:
    entries = await store.journal(subjects=[event_id, ""], kinds=[kinds.ROUND], since=budget.at, limit=LOOK_BACK)
    entry = next((e for e in entries if e.round == budget.round), None)
    if entry is None:
        return f"- no record of round {budget.round}'s summary (under way, or pruned)"
    detail = entry.detail
    if "abandoned" in detail:
        return f"- round {budget.round} was abandoned ({detail['abandoned']}) after its budgets went out"
    verdict = "within limit" if detail.get("within_limit") else "OVER LIMIT"
    measured = f", measured {_w(detail['measured_w'])}" if detail.get("measured_w") is not None else ""
    return (f"- round {budget.round} in event {event_id}: limit {_w(detail.get('limit_w'))}, committed "
            f"{_w(detail.get('committed_w'))} + unknown {_w(detail.get('unknown_w'))}{measured}: {verdict}")


async def _event(store: Store, event_id: str, before: float) -> str:
    offers = await store.journal(subjects=[event_id], kinds=[kinds.EVENT], until=before, limit=LOOK_BACK,
                                 newest_first=True)
    entry = next((e for e in offers if e.detail.get("verdict") in TAKEN), None)
    if entry is None:
        return f"- no record of event {event_id} being offered (pruned, or offered before this journal began)"
    d = entry.detail
    return (f"- event {event_id} version {d.get('version')} ({d.get('verdict')}) from {d.get('source')}: limit "
            f"{_w(d.get('limit_w'))} from {format_utc(float(d['start']))} to {format_utc(float(d['end']))}")
