"""Reconnection backoff with full jitter, for ``ClientService``'s ``retryPolicy``.

After its ``n``-th failure in a row (``ClientService`` counts from 1: the
first retry after a lost link or a failed attempt), a client waits

    uniform(0, min(cap_s, base_s x 2^(n - 1))) seconds

("full jitter": the whole delay is random, not a random bit added to a fixed
one).  An additive jitter (a fixed delay plus 0 to 1 s) keeps clients that
lost their server at the same instant together: after an aggregator restart
the homes came back as a herd, 19.8 % of all attempts in one second.  With
full jitter each home's first retry falls anywhere in ``[0, base_s]``, so
the herd spreads over that window whatever its size.

How wide the window must be is arithmetic: for no one second to hold more
than 2 % of the attempts, they must spread over at least 50 s, and since
each home draws on its own (they share nothing to coordinate with), the
busiest second of N homes spread uniformly over W seconds holds about
N/W + 2.5 x sqrt(N/W) of them.  For 1,000 homes and 2 % that is W of about
120 s: the default ``base_s``.  A lone home that lost its link pays the same
wait (60 s on average); while it is away it keeps its budget and the
aggregator counts it cautiously (``docs/safety.rst``).  The ``random``
source is injectable, so tests draw from a seeded generator.
"""

import random as _random
from collections.abc import Callable

import attrs

from jeisson.config import IniFile

# [home] reconnect_base_s, reconnect_cap_s: see docs/configuration.rst.
BASE_S = 120.0
CAP_S = 300.0


@attrs.frozen
class FullJitter:
    """A ``retryPolicy``: ``policy(n)`` is the wait before the retry that
    follows the ``n``-th failure in a row (``n >= 1``)."""

    base_s: float = BASE_S
    cap_s: float = CAP_S
    random: Callable[[], float] = _random.random

    def __attrs_post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"backoff needs 0 < base_s <= cap_s, got base_s={self.base_s}, cap_s={self.cap_s}")

    def window(self, failures: int) -> float:
        """The largest wait after ``failures`` failures in a row."""
        # Past the cap the exponent no longer matters (and 2**n would overflow a float).
        exponent = max(0, failures - 1)
        if exponent >= 64:
            return self.cap_s
        return min(self.cap_s, self.base_s * 2.0 ** exponent)

    def __call__(self, failures: int) -> float:
        return self.random() * self.window(failures)


def read_backoff(ini: IniFile, section: str, random: Callable[[], float] = _random.random) -> FullJitter:
    """``reconnect_base_s`` and ``reconnect_cap_s`` of ``section`` (both
    optional: ``BASE_S``, ``CAP_S``); an error names file, section and key."""
    base = ini.number(section, "reconnect_base_s", BASE_S, low=0.1, high=86_400)
    cap = ini.number(section, "reconnect_cap_s", CAP_S, low=0.1, high=86_400)
    if cap < base:
        raise ini.error(section, "reconnect_cap_s", f"must be at least reconnect_base_s ({base}), got {cap}")
    return FullJitter(base, cap, random)
