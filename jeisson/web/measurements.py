"""Measurements over HTTP, for the aggregator's API and a home's alike:
the range a request asks for, and the reply (JSON or CSV, capped).

::

    GET /api/v1/measurements?since=-3600&until=&format=csv   (or Accept: text/csv)

Without ``since``: the hour before ``until`` (or now).  At most
``max_rows`` rows: then ``"truncated": true`` (CSV: ``X-Truncated:
true``), and a client asks again from the last row's time.
"""

from typing import Any

import attrs

from jeisson.store import Sample
from jeisson.web import errors
from jeisson.web.site import CSV, Call, Reply, encode_in_pieces
from jeisson.wire.utc import format_utc

SINCE_S = 3600.0  # without ?since=, the last hour
QUERY = ("since", "until", "format")


@attrs.frozen
class Range:
    since: float
    until: float | None
    as_csv: bool


def read_range(call: Call, now: float) -> Range:
    """``since``, ``until`` and the format a request asks for (``ApiError``
    naming the field that is wrong)."""
    since = errors.query_moment(call.args, "since", now)
    until = errors.query_moment(call.args, "until", now)
    if since is None:
        since = (until if until is not None else now) - SINCE_S
    if until is not None and until < since:
        raise errors.bad_field("until", "the end of the range is before its start")
    fmt = errors.query_one(call.args, "format")
    if fmt not in (None, "", "json", "csv"):
        raise errors.bad_field("format", f"expected json or csv, got {fmt!r}")
    return Range(since, until, fmt == "csv" or (fmt in (None, "") and "text/csv" in call.accept))


def samples_csv(samples: list[Sample], subject: str = "home") -> bytes:
    """``home,at,watts,span_s`` (or ``subject,...``), times in UTC text."""
    lines = [f"{subject},at,watts,span_s"]
    for s in samples:
        name = s.subject.replace('"', '""')
        name = f'"{name}"' if any(c in name for c in ',"\n') else name
        lines.append(f"{name},{format_utc(s.at)},{s.watts:g},{s.span_s:g}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def samples_reply(samples: list[Sample], as_csv: bool, max_rows: int, offload_above: int,
                  subject: str = "home") -> Reply:
    """The reply: at most ``max_rows`` rows, said when cut (the store is
    asked for ``max_rows + 1``: one more than fits says there are more).
    Over ``offload_above`` rows, the rows are made and encoded off the
    reactor (``Reply.build``, run in the Site's thread): pure work on a
    list nothing else holds."""
    if len(samples) > offload_above:
        return Reply(build=lambda: _encoded(make_reply(samples, as_csv, max_rows, subject)))
    return make_reply(samples, as_csv, max_rows, subject)


def _encoded(reply: Reply) -> Reply:
    if reply.raw is not None:
        return reply
    return attrs.evolve(reply, raw=encode_in_pieces(reply.body), body=None)


def make_reply(samples: list[Sample], as_csv: bool, max_rows: int, subject: str = "home") -> Reply:
    """``samples_reply``'s work, wherever it runs."""
    truncated = len(samples) > max_rows
    samples = samples[:max_rows]
    if as_csv:
        return Reply(raw=samples_csv(samples, subject), content_type=CSV,
                     headers={"X-Truncated": "true"} if truncated else {})
    body: dict[str, Any] = {"samples": [{subject: s.subject, "at": format_utc(s.at), "watts": s.watts,
                                         "span_s": s.span_s} for s in samples]}
    if truncated:
        body["truncated"] = True
    return Reply(body)
