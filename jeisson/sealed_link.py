"""What both ends of an authenticated board link share (board protocol
version 2, ``jeisson.wire.board_auth``): taking a line sealed in the session
in force, and sealing one to send.  The home's ``BoardSession`` and the
board's ``ActuatorSession`` build on it; each proves its side of the
handshake and reports a line that proves nothing its own way
(``_auth_failed``)."""

from jeisson.link import LinkSession
from jeisson.wire import board_auth


class SealedLinkSession(LinkSession):
    """A link session whose lines, once a session is proven, are sealed.

    ``_channel``: the proven session (None: none, or version 1);
    ``_authentic``: whether the last line taken proved itself (only those
    are signs of life)."""

    _channel: board_auth.Channel | None
    _authentic: bool

    def _auth_failed(self, reason: str) -> None:
        """A line that proves nothing: answered and counted by the subclass."""
        raise NotImplementedError

    def open_sealed(self, line: bytes) -> bool:
        """If ``line`` is sealed and a session is in force: take it (or, when
        its MAC or counter does not hold, ``_auth_failed``) and say True;
        False for any other line, left to the caller."""
        channel = self._channel
        if channel is None or board_auth.is_plain(line):
            return False
        try:
            body = channel.open(line)
        except board_auth.AuthError as e:
            self._auth_failed(e.reason)
            return True
        self._authentic = True
        LinkSession.line_received(self, body)
        return True

    def seal(self, line: bytes) -> bytes | None:
        """``line`` (with its terminator) sealed in the session in force; None
        once the session's counter is spent (2^32 lines): the link is then
        dropped, and a new session follows."""
        assert self._channel is not None
        try:
            return self._channel.seal(line[:-1])
        except board_auth.AuthError as e:
            self.log.warn("{peer}: {why}; dropping the link", peer=self.peer, why=e.reason)
            self.abort()
            return None
