"""What the home's core calls on its links, and how a relay command fails.

The core (``jeisson.home.core.Home``) holds its links only as these
protocols; the links (``board_link.BoardSession``,
``aggregator_link.UplinkSession``) call the core's methods.  Neither module
imports the other.
"""

from typing import Protocol

from twisted.internet.defer import Deferred


class CommandFailed(Exception):
    """A relay command was refused (NAK), timed out, or its board is gone.

    ``code`` is the board's NAK code (``busy``, ``relay``) when it refused.
    """

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class BoardLink(Protocol):
    """What the home calls on a board's live link (``BoardSession``)."""

    @property
    def peer(self) -> str: ...

    def command(self, relay: int, on: bool) -> Deferred:
        """``SET`` a relay: fires when acknowledged, fails with ``CommandFailed``."""
        ...

    def supersede(self) -> None:
        """A newer link of the same board replaced this one: close it."""
        ...


class AggregatorLink(Protocol):
    """What the home calls on its welcomed aggregator link (``UplinkSession``)."""

    @property
    def peer(self) -> str: ...

    @property
    def version(self) -> int: ...

    def loads_changed(self) -> None:
        """The relays moved: send a new bid if the offers changed."""
        ...
