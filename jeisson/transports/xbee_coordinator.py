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
"""

import attrs
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.framing import LineFeeder
from jeisson.wire import home_actuator, xbee

# A transmit status normally follows within a second; without one the frame
# counts as failed (the radio may have reset and lost it).
STATUS_TIMEOUT_S = 5.0


class LinkDropped(Exception):
    """A radio link ended: delivery kept failing, or the home dropped it."""


def address_text(address: int) -> str:
    return f"{address:016X}"


@attrs.define(eq=False)
class _Pending:
    link: "RadioLink"
    data: bytes
    attempt: int
    timer: object = None


class RadioLink:
    """One remote board: the wire its ``BoardSession`` talks through."""

    def __init__(self, coordinator: "CoordinatorProtocol", address: int, actuator: str):
        self.coordinator = coordinator
        self.address = address
        self.actuator = actuator
        self.peer = f"xbee:{address_text(address)}"
        self.connectionless = True
        self.expected_id: str | None = actuator
        self.session = None
        self.closed = False
        self.feeder = LineFeeder(home_actuator.MAX_LINE, self.peer, self._receiving,
                                 lambda why: coordinator.drop(self, why))

    def _receiving(self):
        return None if self.closed else self.session

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
        self._pending: dict[int, _Pending] = {}
        self._frame_id = 0
        self._warned_unknown: set[int] = set()

    # ------------------------------------------------------------ protocol

    def connectionMade(self) -> None:
        # The port was just opened (and its input flushed): ask every
        # configured board to say HELLO, in case it already did.  Frame id 0:
        # no status wanted, a board that is not there is no news.
        prompt = home_actuator.serialize(home_actuator.Err(home_actuator.HELLO_FIRST))
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
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
        self._pending.clear()
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
                if address not in self._warned_unknown:
                    self._warned_unknown.add(address)
                    self.log.warn("{device}: data from radio {address}, which no actuator is configured for; "
                                  "ignored", device=self.device, address=address_text(address))
                return
            link = self.links[address] = RadioLink(self, address, actuator)
            link.session = self.make_session(link, actuator)
        link.feeder.feed(packet.data)

    def _status(self, status) -> None:
        pending = self._pending.pop(status.frame_id, None)
        if pending is None:
            self.log.debug("{device}: transmit status for unknown frame {id}", device=self.device,
                           id=status.frame_id)
            return
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        if status.ok:
            return
        self._failed(pending, f"delivery failed: {status.delivery_name} (0x{status.delivery:02X})")

    def _status_timeout(self, frame_id: int) -> None:
        pending = self._pending.pop(frame_id, None)
        if pending is not None:
            self._failed(pending, f"no transmit status within {STATUS_TIMEOUT_S} s")

    def _failed(self, pending: _Pending, why: str) -> None:
        link = pending.link
        if link.closed:
            return
        if pending.attempt <= self.transmit_retries:
            self.log.warn("{peer}: {why}; retrying ({n} of {max})", peer=link.peer, why=why, n=pending.attempt,
                          max=self.transmit_retries)
            self._send(link, pending.data, pending.attempt + 1)
            return
        self.log.error("{peer}: {why} after {n} attempt(s); dropping actuator {actuator}", peer=link.peer,
                       why=why, n=pending.attempt, actuator=link.actuator)
        self.drop(link, why)

    # ----------------------------------------------------------- outgoing

    def transmit(self, link: RadioLink, data: bytes) -> None:
        self._send(link, data, 1)

    def _send(self, link: RadioLink, data: bytes, attempt: int) -> None:
        if self.transport is None:
            return
        frame_id = self._next_frame_id()
        pending = _Pending(link, data, attempt)
        pending.timer = self.clock.callLater(STATUS_TIMEOUT_S, self._status_timeout, frame_id)
        old = self._pending.pop(frame_id, None)
        if old is not None and old.timer is not None and old.timer.active():
            old.timer.cancel()
        self._pending[frame_id] = pending
        request = xbee.TransmitRequest(frame_id=frame_id, dest64=link.address, data=data)
        self.transport.write(xbee.encode_frame(request, escaped=self.escaped))

    def _next_frame_id(self) -> int:
        # 1..255: frame id 0 would ask the radio for no status at all.
        self._frame_id = self._frame_id % 255 + 1
        return self._frame_id

    def drop(self, link: RadioLink, why: str) -> None:
        if link.closed:
            return
        link.closed = True
        if self.links.get(link.address) is link:
            del self.links[link.address]
        for frame_id, pending in list(self._pending.items()):
            if pending.link is link:
                del self._pending[frame_id]
                if pending.timer is not None and pending.timer.active():
                    pending.timer.cancel()
        link.session.connection_lost(Failure(LinkDropped(why)))

    def _counters(self) -> dict[str, int]:
        d = self.decoder
        return {name: getattr(d, name, 0) for name in ("junk_bytes", "bad_checksums", "truncated", "undecodable")}
