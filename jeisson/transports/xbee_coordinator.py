"""The home's coordinator XBee in API mode: one board link per remote radio.

Frames from the serial port are decoded (``jeisson.wire.xbee``); each
*Receive Packet* (0x90) carries board-protocol bytes from one radio, known by
its 64-bit address.  Every configured address gets a ``RadioLink``: the
wire of a ``BoardSession`` exactly like a TCP connection's, with its own line
framer.  Lines to a board go out as *Transmit Request* frames (0x10), each
with a frame id matched to its *Transmit Status* (0x8B): a delivery failure
is logged with its type, retried ``transmit_retries`` times, and then the
link is dropped, so the board's loads count as unknown (at rated power)
until it says ``HELLO`` again.

Frame ids: 1 to 255 (0 asks for no status), shared by every board behind the
coordinator.  An id is in use from its frame's writing until its status
comes or ``STATUS_TIMEOUT_S`` passes, and an id in use is never given to
another frame: a status always answers the frame it names.  Ids are handed
out in turn (the next free one after the last given), so a freed id is the
last to come round again.  While all 255 are in use, lines wait in one queue,
first in first out, and go out as statuses or their timeouts free ids;
retries have a queue of their own that goes first (their lines are the
oldest).  A dropped link's waiting lines go with it; its frames already
out keep their ids until answered, so a late status cannot be taken for
another board's.

Data from a radio no board is configured for is dropped, counted
(``dropped``), and logged once per ``DROPPED_LOG_INTERVAL_S`` with the
count and the last stranger's address, however many strangers there are.

A status for an id nobody awaits (a status later than its timeout, or
another program on the radio) is a warning.  Delivery status 0x74 (payload
too large) is never retried: the same line can never fit, and a link that
loses lines is worse than none, so the link is dropped at once with an
error that says so (the radio's NP or its encryption settings are the usual
cause; a board line is at most 64 bytes).
"""

from collections import deque

import attrs
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.framing import LineFeeder
from jeisson.link import Session
from jeisson.timers import cancel
from jeisson.wire import board_auth, home_actuator, xbee

# A transmit status normally follows within a second; without one the frame
# counts as failed (the radio may have reset and lost it).
STATUS_TIMEOUT_S = 5.0

# Frame ids 1..255; 0 asks the radio for no status at all.
FRAME_IDS = 255
PAYLOAD_TOO_LARGE = 0x74
DROPPED_LOG_INTERVAL_S = 60.0


class LinkDropped(Exception):
    """A radio link ended: delivery kept failing, or the home dropped it."""


def address_text(address: int) -> str:
    return f"{address:016X}"


@attrs.define(eq=False)
class _Pending:
    link: "RadioLink"
    data: bytes
    attempt: int
    timer: IDelayedCall | None = None


class RadioLink:
    """One remote board: the wire its ``BoardSession`` talks through."""

    def __init__(self, coordinator: "CoordinatorProtocol", address: int, actuator: str):
        self.coordinator = coordinator
        self.address = address
        self.actuator = actuator
        self.peer = f"xbee:{address_text(address)}"
        self.connectionless = True
        self.expected_id: str | None = actuator
        self.session: Session | None = None
        self.closed = False
        self.feeder = LineFeeder(home_actuator.MAX_LINE, self.peer, lambda why: coordinator.drop(self, why))

    def send_line(self, data: bytes) -> None:
        if not self.closed:
            self.coordinator.transmit(self, data)

    def close(self) -> None:
        self.coordinator.drop(self, "closed by the home")

    def abort(self) -> None:
        self.coordinator.drop(self, "aborted by the home")


class CoordinatorProtocol(Protocol):
    log = Logger()

    def __init__(self, boards: dict[int, str], make_session, clock, escaped: bool, transmit_retries: int = 2,
                 device: str = "serial"):
        """``boards``: 64-bit address -> actuator id; ``make_session(link, actuator)``."""
        self.boards = boards
        self.make_session = make_session
        self.clock = clock
        self.escaped = escaped
        self.transmit_retries = transmit_retries
        self.device = device
        self.decoder = xbee.FrameDecoder(escaped=escaped)
        self.links: dict[int, RadioLink] = {}
        self._pending: dict[int, _Pending] = {}  # frame id in use -> its line
        self._retrying: deque[_Pending] = deque()  # retries waiting for an id: they go first
        self._waiting: deque[_Pending] = deque()  # lines waiting for an id
        self._frame_id = 0  # the last id given
        self.dropped = 0  # frames from radios no board is configured for
        self._dropped_tally = board_auth.Tally(DROPPED_LOG_INTERVAL_S)

    # ------------------------------------------------------------ protocol

    def connectionMade(self) -> None:
        # The port was just opened (and its input flushed): ask every
        # configured board to say HELLO, in case it already did.  Frame id 0:
        # no status wanted, a board that is not there is no news.
        assert self.transport is not None
        prompt = home_actuator.HELLO_PROMPT
        for address in self.boards:
            request = xbee.TransmitRequest(frame_id=0, dest64=address, data=prompt)
            self.transport.write(xbee.encode_frame(request, escaped=self.escaped))

    def dataReceived(self, data: bytes) -> None:
        before = self._counters()
        for frame in self.decoder.feed(data):
            self._frame(frame)
        after = self._counters()
        if after != before:
            self.log.warn("{device}: dropped bad input from the coordinator radio: {counts}", device=self.device,
                          counts=", ".join(f"{k} {after[k] - before[k]}" for k in after if after[k] != before[k]))

    def connectionLost(self, reason=None) -> None:
        for pending in self._pending.values():
            cancel(pending.timer)
        self._pending.clear()
        self._retrying.clear()
        self._waiting.clear()
        for link in list(self.links.values()):
            self.drop(link, "the coordinator's serial device was lost")

    # ------------------------------------------------------------- frames

    def _frame(self, frame) -> None:
        if isinstance(frame, xbee.ReceivePacket):
            self._received(frame)
        elif isinstance(frame, xbee.TransmitStatus):
            self._status(frame)
        elif isinstance(frame, xbee.ModemStatus):
            self.log.info("{device}: coordinator modem status 0x{status:02X}", device=self.device,
                          status=frame.status)
        else:
            self.log.debug("{device}: ignoring frame {frame!r}", device=self.device, frame=frame)

    def _received(self, packet) -> None:
        address = packet.src64
        link = self.links.get(address)
        if link is None:
            actuator = self.boards.get(address)
            if actuator is None:
                self.dropped += 1
                count = self._dropped_tally.failed(self.clock.seconds())
                if count is not None:
                    self.log.warn("{device}: dropped {count} frame(s) from radios no actuator is configured for "
                                  "(the last from {address}; further ones counted, logged once per {interval:g} s; "
                                  "{total} in all)", device=self.device, count=count,
                                  address=address_text(address), interval=DROPPED_LOG_INTERVAL_S,
                                  total=self.dropped)
                return
            link = self.links[address] = RadioLink(self, address, actuator)
            link.session = self.make_session(link, actuator)
            if not link.closed:
                link.feeder.session = link.session
        link.feeder.feed(packet.data)

    def _status(self, status) -> None:
        pending = self._pending.pop(status.frame_id, None)
        if pending is None:
            self.log.warn("{device}: transmit status ({name}) for frame {id}, which no line awaits; ignored",
                          device=self.device, name=status.delivery_name, id=status.frame_id)
            return
        cancel(pending.timer)
        if not status.ok:
            why = f"delivery failed: {status.delivery_name} (0x{status.delivery:02X})"
            if status.delivery == PAYLOAD_TOO_LARGE:
                self._undeliverable(pending, why)
            else:
                self._failed(pending, why)
        self._send_waiting()

    def _status_timeout(self, frame_id: int) -> None:
        pending = self._pending.pop(frame_id, None)
        if pending is not None:
            self._failed(pending, f"no transmit status within {STATUS_TIMEOUT_S} s")
            self._send_waiting()

    def _failed(self, pending: _Pending, why: str) -> None:
        link = pending.link
        if link.closed:
            return
        if pending.attempt <= self.transmit_retries:
            self.log.warn("{peer}: {why}; retrying ({n} of {max})", peer=link.peer, why=why, n=pending.attempt,
                          max=self.transmit_retries)
            self._retrying.append(_Pending(link, pending.data, pending.attempt + 1))
            return
        self.log.error("{peer}: {why} after {n} attempt(s); dropping actuator {actuator}", peer=link.peer,
                       why=why, n=pending.attempt, actuator=link.actuator)
        self.drop(link, why)

    def _undeliverable(self, pending: _Pending, why: str) -> None:
        link = pending.link
        if link.closed:
            return
        self.log.error("{peer}: {why}: the radio cannot carry this {size}-byte line (check its NP and encryption "
                       "settings); not retried; dropping actuator {actuator}", peer=link.peer, why=why,
                       size=len(pending.data), actuator=link.actuator)
        self.drop(link, why)

    # ----------------------------------------------------------- outgoing

    def transmit(self, link: RadioLink, data: bytes) -> None:
        self._waiting.append(_Pending(link, data, 1))
        self._send_waiting()

    def _send_waiting(self) -> None:
        """Send waiting lines, in order, while frame ids are free."""
        while (self._retrying or self._waiting) and self.transport is not None:
            frame_id = self._free_frame_id()
            if frame_id is None:
                return
            pending = (self._retrying or self._waiting).popleft()
            pending.timer = self.clock.callLater(STATUS_TIMEOUT_S, self._status_timeout, frame_id)
            self._pending[frame_id] = pending
            request = xbee.TransmitRequest(frame_id=frame_id, dest64=pending.link.address, data=pending.data)
            self.transport.write(xbee.encode_frame(request, escaped=self.escaped))

    def _free_frame_id(self) -> int | None:
        """The next id after the last given that no frame holds, or None."""
        if len(self._pending) >= FRAME_IDS:
            return None
        frame_id = self._frame_id
        while True:
            frame_id = frame_id % FRAME_IDS + 1
            if frame_id not in self._pending:
                self._frame_id = frame_id
                return frame_id

    def drop(self, link: RadioLink, why: str) -> None:
        if link.closed:
            return
        link.closed = True
        link.feeder.session = None
        if self.links.get(link.address) is link:
            del self.links[link.address]
        # Its frames still out keep their ids until their statuses (or
        # timeouts) come, which then find the link closed and do nothing.
        self._retrying = deque(p for p in self._retrying if p.link is not link)
        self._waiting = deque(p for p in self._waiting if p.link is not link)
        if link.session is not None:
            link.session.connection_lost(Failure(LinkDropped(why)))

    def _counters(self) -> dict[str, int]:
        d = self.decoder
        return {name: getattr(d, name, 0) for name in ("junk_bytes", "bad_checksums", "truncated", "undecodable")}
