"""The coordinator and a board's own XBee, without a serial device:
frames in and out through StringTransport, time on a task.Clock."""

import random

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent

from jeisson.transports.xbee_coordinator import FRAME_IDS, STATUS_TIMEOUT_S, CoordinatorProtocol
from jeisson.transports.xbee_end_device import EndDeviceProtocol
from jeisson.wire import xbee

A = 0x0013A20040A1B2C3
B = 0x0013A2004011137E
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
    def __init__(self, escaped=True, retries=2, boards=None):
        self.clock = Clock()
        self.sessions = []
        self.coordinator = CoordinatorProtocol(boards or {A: "board-a"}, self._session, self.clock, escaped=escaped,
                                               transmit_retries=retries, device="/dev/ttyTEST")
        self.transport = StringTransport()
        self.coordinator.makeConnection(self.transport)
        self.escaped = escaped

    def _session(self, link, actuator):
        self.sessions.append(Session(link, actuator))
        return self.sessions[-1]

    def radio_says(self, frame) -> None:
        self.coordinator.dataReceived(xbee.encode_frame(frame, escaped=self.escaped))

    def link_to(self, address=A):
        """The link of the board at ``address``, made by a line from it."""
        self.radio_says(xbee.ReceivePacket(src64=address, src16=1, options=1, data=b"PING 1\n"))
        return next(s.link for s in self.sessions if s.link.address == address)

    def status(self, frame_id, delivery=0):
        self.radio_says(xbee.TransmitStatus(frame_id=frame_id, dest16=1, retries=0, delivery=delivery, discovery=0))

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


def test_unconfigured_radios_are_dropped_counted_and_logged_once_a_minute():
    rig = Rig()
    with capturedLogs() as events:
        for n in range(30):  # many strangers: still one line a minute
            rig.radio_says(xbee.ReceivePacket(src64=STRANGER + n, src16=2, options=1, data=b"HELLO x 1 1 0\n"))
            rig.clock.advance(1)
        rig.clock.advance(31)
        rig.radio_says(xbee.ReceivePacket(src64=STRANGER, src16=2, options=1, data=b"HELLO x 1 1 0\n"))
    assert rig.sessions == [] and rig.coordinator.dropped == 31
    logged = [formatEvent(e) for e in events if "no actuator is configured for" in formatEvent(e)]
    assert len(logged) == 2
    assert "dropped 1 frame(s)" in logged[0] and "0013A200DEADBEEF" in logged[0]
    assert "dropped 30 frame(s)" in logged[1] and "31 in all" in logged[1]


def test_a_boards_own_xbee_takes_frames_only_from_its_home():
    clock = Clock()
    sessions = []

    def make(wire):
        sessions.append(Session(wire, None))
        return sessions[-1]

    home = 0x0013A20040000001
    device = EndDeviceProtocol(make, home, clock, escaped=True)
    device.makeConnection(StringTransport())
    with capturedLogs() as events:
        for n in range(5):
            device.dataReceived(xbee.encode_frame(
                xbee.ReceivePacket(src64=STRANGER, src16=0, options=1, data=b"SET %d 1 1\n" % n), escaped=True))
        device.dataReceived(xbee.encode_frame(
            xbee.ReceivePacket(src64=home, src16=0, options=1, data=b"PING 1\n"), escaped=True))
    assert sessions[0].lines == [b"PING 1"] and device.dropped == 5
    logged = [formatEvent(e) for e in events if "not this board's home" in formatEvent(e)]
    assert len(logged) == 1 and "0013A200DEADBEEF" in logged[0]


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
        rig.radio_says(xbee.ReceivePacket(src64=A, src16=1, options=1, data=b"PING 1\n" + b"X" * 120))
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
            xbee.ReceivePacket(src64=1, src16=0, options=1, data=b"PING 1\n" + b"Z" * 120), escaped=True))
    assert sessions[0].lines == [b"PING 1", "too long"]
    assert sessions[0].lost == "line too long"
    clock.advance(1.0)
    assert len(sessions) == 2


def lines(n, prefix=b"L"):
    return [prefix + b"%d\n" % i for i in range(n)]


def test_while_every_frame_id_awaits_its_status_lines_wait_their_turn_in_order():
    rig = Rig()
    rig.sent()
    link = rig.link_to(A)
    for line in lines(300):
        link.send_line(line)
    first = rig.sent()
    # 255 frames out, each with its own id; the 256th line has none to take.
    assert len(first) == FRAME_IDS
    assert sorted(f.frame_id for f in first) == list(range(1, FRAME_IDS + 1))
    assert [f.data for f in first] == lines(300)[:FRAME_IDS]
    rig.clock.advance(STATUS_TIMEOUT_S - 0.1)
    assert rig.sent() == []
    # A status frees an id: the 256th line goes, with that id.
    rig.status(first[9].frame_id)
    (next_frame,) = rig.sent()
    assert next_frame.data == b"L255\n" and next_frame.frame_id == first[9].frame_id
    # Then one more line per status, in order, never on an id still awaited.
    awaited = {f.frame_id for f in first} - {first[9].frame_id} | {next_frame.frame_id}
    out = [next_frame]
    for frame in first[:50]:
        if frame.frame_id == first[9].frame_id:
            continue
        rig.status(frame.frame_id)
        awaited.discard(frame.frame_id)
        for new in rig.sent():
            assert new.frame_id not in awaited
            awaited.add(new.frame_id)
            out.append(new)
    assert [f.data for f in out] == lines(300)[FRAME_IDS:]
    assert rig.sessions[0].lost is None


def test_a_status_timeout_frees_its_id_and_the_retry_goes_ahead_of_the_waiting_lines():
    rig = Rig(retries=1)
    rig.sent()
    link = rig.link_to(A)
    for line in lines(FRAME_IDS + 3):
        link.send_line(line)
    first = rig.sent()
    rig.clock.advance(1)
    for frame in first[1:]:
        rig.status(frame.frame_id)
    # 254 statuses freed 254 ids: the 3 waiting lines went out.
    assert [f.data for f in rig.sent()] == lines(FRAME_IDS + 3)[FRAME_IDS:]
    more = lines(2, b"M")
    for line in more:
        link.send_line(line)
    assert [f.data for f in rig.sent()] == more
    # The first line's status never comes: retried before anything new.
    with capturedLogs() as events:
        rig.clock.advance(STATUS_TIMEOUT_S - 1)
    (retry,) = rig.sent()
    assert retry.data == b"L0\n"
    assert any("no transmit status" in formatEvent(e) and "retrying" in formatEvent(e) for e in events)


def test_random_sends_and_statuses_never_reuse_an_awaited_id_and_keep_the_order():
    rig = Rig()
    rig.sent()
    link = rig.link_to(A)
    rng = random.Random(13)
    given, out, awaited = [], [], set()
    for step in range(3000):
        if awaited and rng.random() < 0.45:
            frame_id = rng.choice(sorted(awaited))
            awaited.discard(frame_id)
            rig.status(frame_id)
        else:
            given.append(b"S%d\n" % step)
            link.send_line(given[-1])
        for frame in rig.sent():
            assert frame.frame_id not in awaited and 1 <= frame.frame_id <= FRAME_IDS
            awaited.add(frame.frame_id)
            out.append(frame.data)
        assert len(awaited) <= FRAME_IDS
    while awaited:
        rig.status(awaited.pop())
        for frame in rig.sent():
            awaited.add(frame.frame_id)
            out.append(frame.data)
    assert out == given


def test_a_dropped_boards_waiting_lines_go_with_it_and_its_frames_keep_their_ids():
    rig = Rig(retries=0, boards={A: "board-a", B: "board-b"})
    rig.sent()
    a, b = rig.link_to(A), rig.link_to(B)
    for line in lines(FRAME_IDS):
        a.send_line(line)
    b.send_line(b"B0\n")
    b.send_line(b"B1\n")
    first = rig.sent()
    assert len(first) == FRAME_IDS and all(f.dest64 == A for f in first)
    a.close()
    # Board A's frames still hold their ids: B's lines wait until one is answered.
    assert rig.sent() == []
    rig.status(first[0].frame_id)
    rig.status(first[1].frame_id)
    assert [(f.dest64, f.data) for f in rig.sent()] == [(B, b"B0\n"), (B, b"B1\n")]
    assert rig.sessions[1].lost is None


def test_a_status_for_a_frame_nobody_awaits_is_a_warning():
    rig = Rig()
    rig.sent()
    with capturedLogs() as events:
        rig.status(77)
    (event,) = events
    assert event["log_level"].name == "warn"
    assert "frame 77" in formatEvent(event) and "/dev/ttyTEST" in formatEvent(event)


def test_payload_too_large_is_never_retried_the_board_is_dropped_saying_why():
    rig = Rig(retries=2)
    rig.sent()
    link = rig.link_to(A)
    link.send_line(b"PONG 1\n")
    (request,) = rig.sent()
    with capturedLogs() as events:
        rig.status(request.frame_id, delivery=0x74)
    assert rig.sent() == []
    session = rig.sessions[0]
    assert session.lost == "delivery failed: data payload too large (0x74)"
    (error,) = [formatEvent(e) for e in events if e["log_level"].name == "error"]
    assert "not retried" in error and "board-a" in error and "retrying" not in error
