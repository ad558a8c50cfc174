"""``jeisson export``: the homes' measurements whole, however many replies
the API's cap on rows (``[api] max_rows``) cuts them into.

The API answers samples by home, then time, at most ``max_rows`` of them,
and says when it left some out (``X-Truncated: true`` on CSV,
``"truncated": true`` in JSON).  What is left after a capped reply is the
last home's samples from the last row's moment on, then every later home's
whole range; ``pages`` asks for exactly that, one home at a time, and
drops from each capped reply the rows at its last moment (asked again with
the next ``since``, which is inclusive), so that no row is lost or written
twice (``_complete``).  It is pure over a ``fetch`` function, and tested without a socket.
"""

import csv
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from jeisson.client.exchange import ServerFailed
from jeisson.wire.utc import format_utc, parse_utc


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


def _complete(page: Page) -> tuple[list[Row], str | None]:
    """A page's rows that are surely whole, and where to ask again (None:
    nothing left).  A capped page made only of the last home's samples at
    one moment (a tiny cap) is kept whole, and the next page asked from a
    millisecond later: the wire's resolution, below which one home has no
    two samples."""
    if not page.truncated or not page.rows:
        return page.rows, None
    last = page.rows[-1]
    kept = [row for row in page.rows if not (row.home == last.home and row.at == last.at)]
    if not kept:
        try:
            return page.rows, format_utc(parse_utc(last.at) + 0.001)
        except ValueError:
            raise ServerFailed(f"the API's sample has a time that is not UTC text: {last.at!r}") from None
    return kept, last.at


def pages(fetch: Fetch, since: str, until: str, homes: Sequence[str],
          all_homes: Callable[[], list[str]]) -> Iterator[Page]:
    """Every sample of ``homes`` (all, when empty) from ``since`` to
    ``until`` (absolute times: each page asks the same range), page by page."""
    first = fetch(since, until, homes)
    rows, again = _complete(first)
    yield Page(first.header, rows, False)
    if again is None:
        return
    home = first.rows[-1].home
    later = sorted(h for h in (homes or all_homes()) if h > home)
    for name, first_since in [(home, again)] + [(h, since) for h in later]:
        start: str | None = first_since
        while start is not None:
            page = fetch(start, until, [name])
            rows, start = _complete(page)
            yield Page(page.header, rows, False)
