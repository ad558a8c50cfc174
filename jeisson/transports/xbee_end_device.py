"""A board's own XBee in API mode, as the software actuator drives it.

The board sends its lines as *Transmit Request* frames (0x10) to the
coordinator's address and reads the home's lines from *Receive Packet*
frames (0x90).  There is no connection: when the session ends (refused, the
home silent, a state it cannot continue from) a fresh one starts after
``restart_s`` and says ``HELLO`` again.

Frames are taken only from the coordinator's address (``coordinator``,
its home's radio; 0, the coordinator's alias, takes any sender, for tests):
a frame from any other radio is dropped, counted, and logged once per
``DROPPED_LOG_INTERVAL_S``.  An address can be forged; the board protocol's
MAC covers what it could vouch for, and this filter spares the session a
stranger's noise.

Each frame asks for a *Transmit Status* (frame ids 1 to 255 in turn,
wrapping), only so that a failed delivery is logged with its type.  Nothing
waits on a status and no line is resent: the board protocol notices a lost
line by itself (the home's command timeout, the heartbeat, the failsafe).
A status is not matched to its line, so an id coming round again while an
earlier status is still due does no harm.
"""

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.framing import LineFeeder
from jeisson.timers import cancel
from jeisson.wire import board_auth, home_actuator, xbee

DROPPED_LOG_INTERVAL_S = 60.0


class SessionEnded(Exception):
    """The board ended its session with the home (over a radio, no link closes)."""


class EndDeviceProtocol(Protocol):
    log = Logger()

    def __init__(self, make_session, coordinator: int, clock, escaped: bool, device: str = "serial",
                 restart_s: float = 1.0):
        self.make_session = make_session
        self.coordinator = coordinator
        self.clock = clock
        self.escaped = escaped
        self.peer = f"xbee:{coordinator:016X} via {device}"
        self.connectionless = True
        self.expected_id: str | None = None
        self.restart_s = restart_s
        self.decoder = xbee.FrameDecoder(escaped=escaped)
        self.session = None
        self._feeder: LineFeeder | None = None
        self._frame_id = 0
        self._restart = None
        self.dropped = 0  # frames from radios other than the coordinator
        self._dropped_tally = board_auth.Tally(DROPPED_LOG_INTERVAL_S)

    # The wire interface of the current session.

    def send_line(self, data: bytes) -> None:
        # No session check: a new session says HELLO while being made.
        if self.transport is None:
            return
        self._frame_id = self._frame_id % 255 + 1
        request = xbee.TransmitRequest(frame_id=self._frame_id, dest64=self.coordinator, data=data)
        self.transport.write(xbee.encode_frame(request, escaped=self.escaped))

    def close(self) -> None:
        self._end("the session was closed")

    def abort(self) -> None:
        self._end("the session was aborted")

    # Protocol

    def connectionMade(self) -> None:
        self._begin()

    def dataReceived(self, data: bytes) -> None:
        for frame in self.decoder.feed(data):
            if isinstance(frame, xbee.ReceivePacket):
                if self.coordinator and frame.src64 != self.coordinator:
                    self._stranger(frame.src64)
                    continue
                self._received(frame.data)
            elif isinstance(frame, xbee.TransmitStatus) and not frame.ok:
                self.log.warn("{peer}: delivery failed: {name} (0x{code:02X})", peer=self.peer,
                              name=frame.delivery_name, code=frame.delivery)

    def connectionLost(self, reason=None) -> None:
        cancel(self._restart)
        self._restart = None
        session, self.session = self.session, None
        if self._feeder is not None:
            self._feeder.session = None
        if session is not None:
            session.connection_lost(reason or Failure(SessionEnded("serial device closed")))

    def _stranger(self, address: int) -> None:
        self.dropped += 1
        count = self._dropped_tally.failed(self.clock.seconds())
        if count is not None:
            self.log.warn("{peer}: dropped {count} frame(s) from radio {address:016X}, not this board's home "
                          "(further ones counted, logged once per {interval:g} s; {total} in all)", peer=self.peer,
                          count=count, address=address, interval=DROPPED_LOG_INTERVAL_S, total=self.dropped)

    # Sessions

    def _begin(self) -> None:
        self._restart = None
        self._feeder = LineFeeder(home_actuator.MAX_LINE, self.peer, self._end)
        self.session = self.make_session(self)
        self._feeder.session = self.session

    def _received(self, data: bytes) -> None:
        # Over a radio a session that ends for a line too long is followed
        # by a new one that says HELLO after restart_s.
        if self.session is not None and self._feeder is not None:
            self._feeder.feed(data)

    def _end(self, why: str) -> None:
        session, self.session = self.session, None
        if self._feeder is not None:
            self._feeder.session = None
        if session is None:
            return
        session.connection_lost(Failure(SessionEnded(why)))
        if self._restart is None:
            self._restart = self.clock.callLater(self.restart_s, self._begin)
