"""What every jeisson link is made of, whatever carries it.

A link is a *session* (the conversation's state machine) talking to a
*wire* (a transport in ``jeisson.transports``).  Sessions never see a
transport, so the same session serves TCP, TLS, a serial line or a radio.
"""

from typing import Protocol as TypingProtocol

from jeisson.framing import LineTooLong


class Session(TypingProtocol):
    """What a wire calls on its session."""

    def line_received(self, line: bytes) -> None: ...
    def line_too_long(self, error: LineTooLong) -> None: ...
    def connection_lost(self, reason) -> None: ...


class Wire(TypingProtocol):
    """What a session calls on its wire.

    ``peer``: how logs name the other end.  ``connectionless``: True where
    no connection can be seen to open or close (a serial line, a radio): a
    silent peer there is simply not there yet, so no hello timeout closes
    anything.  ``expected_id``: the one peer id this wire may carry (the
    actuator configured for a radio address or a serial line), or None.
    """

    peer: str
    connectionless: bool
    expected_id: str | None

    def send_line(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
