"""``jeisson export``: the homes' measurements whole, however many replies
the API's cap on rows (``[api] max_rows``) cuts them into.

The API answers samples by home, then time, at most ``max_rows`` of them,
and says when it left some out (``X-Truncated: true`` on CSV,
``"truncated": true`` in JSON).  What is left after a capped reply is the
last home's samples from the last row's moment on, then every later home's
whole range; ``pages`` asks for exactly that, one home at a time, and
drops from each capped reply the rows at its last moment (asked again with
the next ``since``, which is inclusive), so that no row is lost or written
twice (``_resume``).  It is pure over a ``fetch`` function, and tested without a socket.
"""

import csv
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from jeisson.client.exchange import ServerFailed
from jeisson.wire.utc import parse_utc


@attrs.frozen
class Row:
    """A sample: its home and moment (UTC text, as the API wrote it), and
    itself: the CSV line or the JSON object."""

    home: str
    at: str
    item: Any


@attrs.frozen
class Page:
    header: str | None  # the CSV's first line
    rows: list[Row]
    truncated: bool


Fetch = Callable[[str, str, Sequence[str]], Page]


def csv_page(text: str, truncated: bool) -> Page:
    """A CSV reply (``home,at,watts,span_s``) as a page."""
    lines = text.splitlines()
    if not lines:
        return Page(None, [], truncated)
    rows = []
    for line in lines[1:]:
        if not line:
            continue
        fields = next(csv.reader([line]))
        if len(fields) < 2:
            raise ServerFailed(f"the API's CSV has a row without home and time: {line[:80]!r}")
        rows.append(Row(fields[0], fields[1], line))
    return Page(lines[0], rows, truncated)


def json_page(body: dict[str, Any]) -> Page:
    """A JSON reply (``{"samples": [...], "truncated"?}``) as a page."""
    samples = body.get("samples")
    if not isinstance(samples, list):
        raise ServerFailed("the API's answer has no 'samples' list")
    return Page(None, [Row(str(s.get("home")), str(s.get("at")), s) for s in samples],
                bool(body.get("truncated")))


# Half the wire's resolution: a time written to the millisecond stands for
# any moment from half a millisecond before it to half a millisecond after.
HALF_MS = 0.0005


@attrs.frozen
class Resume:
    """Where a home's samples go on after a capped reply: asked from
    ``since`` (epoch seconds, as text, finer than the replies' times), the
    rows after ``after`` kept (and those at it, when ``inclusive``)."""

    since: str
    after: str
    inclusive: bool

    def keeps(self, row: Row) -> bool:
        return row.at > self.after or (self.inclusive and row.at == self.after)


def _seconds(text: str) -> float:
    try:
        return parse_utc(text)
    except ValueError:
        raise ServerFailed(f"the API's sample has a time that is not UTC text: {text!r}") from None


def _resume(page: Page, rows: list[Row]) -> tuple[list[Row], Resume | None]:
    """Of ``rows`` (the page's new ones), those surely whole, and where to
    go on (None: nothing left).

    The rows at the capped page's last moment may be cut: they are left to
    the next page, asked from half a millisecond before that moment (its
    text stands for any moment that rounds to it).  A page made only of
    them (a tiny cap) is kept whole, and the next asked from half a
    millisecond after it: what could be lost then is another sample of that
    home in the same millisecond, beyond the cap."""
    if not page.truncated:
        return rows, None
    if not rows:
        raise ServerFailed("the API capped a reply that brought no new sample: raise [api] max_rows")
    last = rows[-1]
    moment = _seconds(last.at)
    kept = [row for row in rows if not (row.home == last.home and row.at == last.at)]
    if kept:
        return kept, Resume(repr(moment - HALF_MS), last.at, inclusive=True)
    return rows, Resume(repr(moment + HALF_MS), last.at, inclusive=False)


def pages(fetch: Fetch, since: str, until: str, homes: Sequence[str],
          all_homes: Callable[[], list[str]]) -> Iterator[Page]:
    """Every sample of ``homes`` (all, when empty) from ``since`` to
    ``until`` (absolute times: each page asks the same range), page by page."""
    first = fetch(since, until, homes)
    rows, resume = _resume(first, first.rows)
    yield Page(first.header, rows, False)
    if resume is None:
        return
    home = first.rows[-1].home
    later = sorted(h for h in (homes or all_homes()) if h > home)
    streams: list[tuple[str, Resume | None]] = [(home, resume)] + [(h, None) for h in later]
    for name, going_on in streams:
        start = since if going_on is None else going_on.since
        while True:
            page = fetch(start, until, [name])
            new = [row for row in page.rows if going_on is None or going_on.keeps(row)]
            rows, going_on = _resume(page, new)
            yield Page(page.header, rows, False)
            if going_on is None:
                break
            start = going_on.since
