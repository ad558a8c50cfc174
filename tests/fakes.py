"""Stand-ins shared by the sans-IO tests."""

from twisted.logger import formatEvent


def messages(events, level: str) -> list[str]:
    """The text of the logged events at ``level`` (``"info"``, ``"warn"``, ...)."""
    return [formatEvent(e) for e in events if e["log_level"].name == level]


class FakeWire:
    """The wire interface of jeisson.link, recording what the session does.

    ``heard``, if given, is told every line sent (without its terminator), so
    a test can play the peer as the lines go out.  ``connectionless`` and
    ``expected_id`` play a serial line or a radio (see ``jeisson.link.Wire``).
    """

    def __init__(self, peer: str = "192.0.2.10:40000", heard=None, connectionless: bool = False,
                 expected_id: str | None = None):
        self.peer = peer
        self.connectionless = connectionless
        self.expected_id = expected_id
        self.heard = heard
        self.sent: list[bytes] = []
        self.closed = False
        self.aborted = False

    def send_line(self, data: bytes) -> None:
        assert data.endswith(b"\n")
        self.sent.append(data[:-1])
        if self.heard is not None:
            self.heard(data[:-1])

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def take(self) -> list[bytes]:
        sent, self.sent = self.sent, []
        return sent
