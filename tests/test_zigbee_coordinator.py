"""The coordinator and a board's own XBee, without a serial device:
frames in and out through StringTransport, time on a task.Clock."""

from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent

from jeisson.transports.serial import SerialPortService
from jeisson.transports.xbee_coordinator import STATUS_TIMEOUT_S, CoordinatorProtocol
from jeisson.transports.xbee_end_device import EndDeviceProtocol
from jeisson.wire import xbee

A = 0x0013A20040A1B2C3
STRANGER = 0x0013A200DEADBEEF


class Session:
    """Records what the coordinator hands a board session."""

    def __init__(self, link, actuator):
        self.link = link
        self.actuator = actuator
        self.lines = []
        self.lost = None

    def line_received(self, line):
        self.lines.append(line)

    def line_too_long(self, error):
        self.lines.append("too long")

    def connection_lost(self, reason):
        self.lost = reason.getErrorMessage()


class Rig:
    def __init__(self, escaped=True, retries=2):
        self.clock = Clock()
        self.sessions = []
        self.coordinator = CoordinatorProtocol({A: "board-a"}, self._session, self.clock, escaped=escaped,
                                               transmit_retries=retries, device="/dev/ttyTEST")
        self.transport = StringTransport()
        self.coordinator.makeConnection(self.transport)
        self.escaped = escaped

    def _session(self, link, actuator):
        self.sessions.append(Session(link, actuator))
        return self.sessions[-1]

    def radio_says(self, frame) -> None:
        self.coordinator.dataReceived(xbee.encode_frame(frame, escaped=self.escaped))

    def sent(self) -> list:
        decoder = xbee.FrameDecoder(escaped=self.escaped)
        frames = decoder.feed(self.transport.value())
        self.transport.clear()
        return frames


def test_on_open_every_configured_board_is_asked_to_say_hello():
    rig = Rig()
    (prompt,) = rig.sent()
    assert prompt == xbee.TransmitRequest(frame_id=0, dest64=A, data=b"ERR hello\n")


def test_lines_from_a_board_reach_its_session_in_any_chunking():
    rig = Rig()
    rig.sent()
    rig.radio_says(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"HELLO board-a 2 1 "))
    rig.radio_says(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"00\nPING 3\n"))
    (session,) = rig.sessions
    assert session.actuator == "board-a" and session.link.peer == "xbee:0013A20040A1B2C3"
    assert session.lines == [b"HELLO board-a 2 1 00", b"PING 3"]


def test_a_line_to_a_board_goes_out_as_a_transmit_request_with_a_frame_id():
    rig = Rig()
    rig.sent()
    rig.radio_says(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"PING 1\n"))
    rig.sessions[0].link.send_line(b"PONG 1\n")
    (request,) = rig.sent()
    assert request.dest64 == A and request.data == b"PONG 1\n" and request.frame_id != 0


def test_a_delivery_failure_is_named_retried_then_the_board_is_dropped():
    rig = Rig(retries=2)
    rig.sent()
    rig.radio_says(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"PING 1\n"))
    session = rig.sessions[0]
    with capturedLogs() as events:
        session.link.send_line(b"PONG 1\n")
        for _attempt in range(3):
            (request,) = rig.sent()
            assert request.data == b"PONG 1\n"
            rig.radio_says(xbee.TransmitStatus(frame_id=request.frame_id, dest16=0xFFFD, retries=3,
                                               delivery=0x21, discovery=0))
    text = [formatEvent(e) for e in events]
    assert sum("network ACK failure" in t and "retrying" in t for t in text) == 2
    assert any("after 3 attempt(s); dropping actuator board-a" in t for t in text)
    assert session.lost == "delivery failed: network ACK failure (0x21)"
    assert rig.sent() == []
    # The next frame from that radio starts a new session (a new HELLO).
    rig.radio_says(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"HELLO board-a 2 1 00\n"))
    assert len(rig.sessions) == 2


def test_a_status_that_never_comes_counts_as_a_failure():
    rig = Rig(retries=0)
    rig.sent()
    rig.radio_says(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"PING 1\n"))
    rig.sessions[0].link.send_line(b"PONG 1\n")
    with capturedLogs():
        rig.clock.advance(STATUS_TIMEOUT_S)
    assert rig.sessions[0].lost == f"no transmit status within {STATUS_TIMEOUT_S} s"


def test_a_successful_status_keeps_the_board():
    rig = Rig()
    rig.sent()
    rig.radio_says(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"PING 1\n"))
    rig.sessions[0].link.send_line(b"PONG 1\n")
    (request,) = rig.sent()
    rig.radio_says(xbee.TransmitStatus(frame_id=request.frame_id, dest16=1, retries=0, delivery=0, discovery=0))
    rig.clock.advance(STATUS_TIMEOUT_S * 2)
    assert rig.sessions[0].lost is None and rig.sent() == []


def test_an_unconfigured_radio_is_logged_once_and_ignored():
    rig = Rig()
    with capturedLogs() as events:
        for _ in range(3):
            rig.radio_says(xbee.ReceivePacket(src64=STRANGER, src16=2, options=1, data=b"HELLO x 1 1 0\n"))
    assert rig.sessions == []
    assert sum("0013A200DEADBEEF" in formatEvent(e) for e in events) == 1


def test_junk_and_corrupt_frames_are_counted_and_logged_with_the_device():
    rig = Rig()
    good = xbee.encode_frame(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"PING 9\n"), escaped=True)
    corrupt = good[:-1] + bytes([good[-1] ^ 0x55])
    with capturedLogs() as events:
        rig.coordinator.dataReceived(b"noise" + corrupt + good)
    assert rig.sessions[0].lines == [b"PING 9"]
    text = " ".join(formatEvent(e) for e in events)
    assert "/dev/ttyTEST" in text and "bad_checksums 1" in text


def test_an_over_long_line_drops_that_board_only():
    rig = Rig()
    with capturedLogs():
        rig.radio_says(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"PING 1\n" + b"X" * 80))
    session = rig.sessions[0]
    assert session.lines == [b"PING 1", "too long"] and session.lost == "line too long"


def test_losing_the_serial_device_ends_every_board_link():
    rig = Rig()
    rig.radio_says(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"PING 1\n"))
    rig.coordinator.connectionLost(None)
    assert rig.sessions[0].lost == "the coordinator's serial device was lost"


def test_a_boards_own_xbee_frames_its_lines_to_the_coordinator_and_restarts_sessions():
    clock = Clock()
    sessions = []

    class BoardSession(Session):
        def __init__(self, wire):
            super().__init__(wire, None)
            wire.send_line(b"HELLO board-a 2 1 00\n")

    def make(wire):
        sessions.append(BoardSession(wire))
        return sessions[-1]

    device = EndDeviceProtocol(make, 0, clock, escaped=False, device="/dev/ttyB", restart_s=1.0)
    transport = StringTransport()
    device.makeConnection(transport)
    (hello,) = xbee.FrameDecoder(escaped=False).feed(transport.value())
    assert hello.dest64 == 0 and hello.data == b"HELLO board-a 2 1 00\n"
    device.dataReceived(xbee.encode_frame(xbee.ReceivePacket(src64=1, src16=0, options=1, data=b"WELCOME 1 2\n"),
                                          escaped=False))
    assert sessions[0].lines == [b"WELCOME 1 2"]
    device.abort()
    assert sessions[0].lost == "the session was aborted"
    clock.advance(1.0)
    assert len(sessions) == 2


def test_the_serial_service_retries_an_absent_device_and_says_why_once_per_reason():
    clock = Clock()
    attempts = []

    def open_port(protocol, device, reactor, baudrate):
        attempts.append(device)
        if len(attempts) < 4:
            raise OSError(2, f"could not open port {device}: No such file or directory")
        port = StringTransport()
        protocol.makeConnection(port)
        return port

    service = SerialPortService("/dev/ttyUSB7", 9600, Protocol, clock, retry_s=5,
                                open_port=open_port)
    with capturedLogs() as events:
        service.startService()
        clock.advance(5)
        clock.advance(5)
        assert not service.is_open
        clock.advance(5)
    assert service.is_open and len(attempts) == 4
    warnings = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
    assert len(warnings) == 1 and "/dev/ttyUSB7" in warnings[0] and "No such file" in warnings[0]
    service.stopService()


def test_a_boards_own_xbee_ends_the_session_on_an_over_long_line():
    clock = Clock()
    sessions = []

    def make(wire):
        sessions.append(Session(wire, None))
        return sessions[-1]

    device = EndDeviceProtocol(make, 0, clock, escaped=True, restart_s=1.0)
    device.makeConnection(StringTransport())
    with capturedLogs():
        device.dataReceived(xbee.encode_frame(
            xbee.ReceivePacket(src64=1, src16=0, options=1, data=b"PING 1\n" + b"Z" * 70), escaped=True))
    assert sessions[0].lines == [b"PING 1", "too long"]
    assert sessions[0].lost == "line too long"
    clock.advance(1.0)
    assert len(sessions) == 2
