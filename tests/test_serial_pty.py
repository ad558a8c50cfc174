"""The serial transport: ``SerialPortService``'s retry and reopen logic on a
``task.Clock`` with a fake ``open_port``; which protocol each side runs on a
port (``jeisson.transports.boards``); then real pseudo-terminals with
Twisted's ``SerialPort``: a device absent at start, plugged in, unplugged
and plugged back, and a home and a board wired by a transparent line."""

import os
import tty

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial import unittest

from jeisson.actuator import tap as actuator_tap
from jeisson.actuator.board import Board
from jeisson.actuator.config import config_from_string as actuator_config
from jeisson.home import tap as home_tap
from jeisson.home.config import config_from_string as home_config
from jeisson.home.core import Home
from jeisson.transports.boards import BoardSerialConfig, HomeSerialConfig, board_serial_service, home_serial_service
from jeisson.transports.radio_simulator import PtyMaster
from jeisson.transports.serial import SerialPortConfig, SerialPortService
from jeisson.transports.xbee_coordinator import CoordinatorProtocol
from jeisson.transports.xbee_end_device import EndDeviceProtocol
from jeisson.wire import xbee
from tests.peers import board_key_file, keyed
from tests.waiting import eventually, scratch_directory


class Recorder(Protocol):
    def __init__(self):
        self.data = b""
        self.lost = False

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason=None):
        self.lost = True


class Relay(Protocol):
    """Copies what one pty master reads to another: a wire between two ports."""

    def __init__(self):
        self.other = None

    def dataReceived(self, data):
        if self.other is not None and self.other.transport is not None:
            self.other.transport.write(data)


def pty_pair(link: str):
    """A pseudo-terminal whose slave is reachable at ``link``: its master fd
    (non-blocking) and its slave fd, kept open so the line stays up."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    os.symlink(os.ttyname(slave), link)
    return master, slave



# -- SerialPortService's retry and reopen logic, on a task.Clock


class FakePorts:
    """``open_port`` for SerialPortService: fails with the given errors, in
    turn, then opens a StringTransport."""

    def __init__(self, *errors):
        self.errors = list(errors)
        self.attempts = 0
        self.opened = []

    def __call__(self, protocol, device, clock, baudrate):
        self.attempts += 1
        if self.errors:
            raise self.errors.pop(0)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.opened.append((protocol, transport))
        return transport

    def unplug(self, protocol) -> None:
        """The device vanishes: SerialPort reads EIO and loses the connection."""
        protocol.connectionLost(Failure(OSError(5, "Input/output error")))


def absent(device="/dev/ttyUSB7"):
    return OSError(2, f"could not open port {device}: No such file or directory")


def service_on_a_clock(ports, retry_s=5):
    clock = Clock()
    protocols = []

    def make():
        protocols.append(Recorder())
        return protocols[-1]

    return SerialPortService("/dev/ttyUSB7", 9600, make, clock, retry_s=retry_s, open_port=ports), clock, protocols


def warnings(events):
    return [formatEvent(e) for e in events if e["log_level"].name == "warn"]


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


def test_an_absent_device_is_retried_every_retry_s_and_said_once_per_reason():
    ports = FakePorts(absent(), absent(), OSError(13, "Permission denied"), absent())
    service, clock, protocols = service_on_a_clock(ports)
    with capturedLogs() as events:
        service.startService()
        assert ports.attempts == 1 and not service.is_open
        clock.advance(4.9)
        assert ports.attempts == 1
        clock.advance(0.1)
        assert ports.attempts == 2
        clock.advance(5)
        clock.advance(5)
        assert not service.is_open and ports.attempts == 4
        clock.advance(5)
    assert service.is_open and ports.attempts == 5 and service.protocol is protocols[-1]
    said = warnings(events)
    # Absent, then a new reason, then absent again: three lines for four failures.
    assert len(said) == 3 and all("/dev/ttyUSB7" in line for line in said)
    assert "No such file" in said[0] and "Permission denied" in said[1] and "No such file" in said[2]
    assert "trying again every 5 s" in said[0]
    service.stopService()
    assert clock.getDelayedCalls() == []


def test_a_device_that_vanishes_is_reopened_after_retry_s_with_a_new_protocol():
    ports = FakePorts()
    service, clock, protocols = service_on_a_clock(ports, retry_s=2)
    service.startService()
    first, _ = ports.opened[0]
    with capturedLogs() as events:
        ports.unplug(first)
    assert not service.is_open and protocols[0].lost
    (said,) = warnings(events)
    assert "serial device /dev/ttyUSB7 lost ([Errno 5] Input/output error)" in said and "reopening in 2 s" in said
    clock.advance(1.9)
    assert not service.is_open
    clock.advance(0.1)
    assert service.is_open and len(protocols) == 2 and service.protocol is protocols[1]
    protocols[1].dataReceived(b"back\n")
    assert protocols[1].data == b"back\n" and protocols[0].data == b""
    service.stopService()


def test_a_port_its_link_closed_is_reopened_without_a_warning():
    # Transparent mode: a board session that ends closes the port; reopening starts a new one.
    ports = FakePorts()
    service, clock, protocols = service_on_a_clock(ports, retry_s=1)
    service.startService()
    with capturedLogs() as events:
        ports.opened[0][1].loseConnection()
        ports.opened[0][0].connectionLost(None)
    assert warnings(events) == []
    assert any("closed by its link; reopening in 1 s" in formatEvent(e) for e in events)
    clock.advance(1)
    assert service.is_open and len(ports.opened) == 2
    service.stopService()


def test_stopping_closes_the_port_and_cancels_the_retry():
    ports = FakePorts(absent())
    service, clock, protocols = service_on_a_clock(ports)
    with capturedLogs():
        service.startService()
    service.stopService()
    assert clock.getDelayedCalls() == []
    clock.advance(60)
    assert ports.attempts == 1
    # Opened, then stopped: the port is closed on purpose and not reopened.
    service.startService()
    protocol, transport = ports.opened[0]
    service.stopService()
    assert transport.disconnecting
    protocol.connectionLost(None)
    assert clock.getDelayedCalls() == [] and not service.is_open and ports.attempts == 2


# -- which protocol serves a serial port (jeisson.transports.boards)


class SessionOn:
    def __init__(self, wire, written_before):
        self.wire = wire
        self.written_before = written_before

    def line_received(self, line):
        pass

    def line_too_long(self, error):
        pass

    def connection_lost(self, reason):
        pass


def open_with(build, serial):
    """``serial``'s service built by ``build`` and opened on a
    StringTransport; each session made is told what the port had been sent
    before it."""
    transport = StringTransport()
    sessions = []

    def make_session(wire):
        sessions.append(SessionOn(wire, transport.value()))
        return sessions[-1]

    def open_port(protocol, device, clock, baudrate):
        protocol.makeConnection(transport)
        return transport

    service = build(serial, make_session, Clock())
    service._open_port = open_port
    service.startService()
    return service, sessions


def test_a_transparent_board_line_asks_for_hello_before_its_session_starts():
    serial = HomeSerialConfig("radio", SerialPortConfig("/dev/ttyS3", 19200, "transparent", 1.0), 2,
                              {None: "board-z"})
    service, sessions = open_with(home_serial_service, serial)
    (session,) = sessions
    assert session.written_before == b"ERR hello\n"
    assert (session.wire.peer, session.wire.connectionless, session.wire.expected_id) == (
        "serial:/dev/ttyS3", True, "board-z")
    assert service.baudrate == 19200 and service.retry_s == 1.0
    service.stopService()


def test_a_coordinator_port_serves_each_configured_radio():
    serial = HomeSerialConfig("zigbee", SerialPortConfig("/dev/ttyS4", 9600, "api1", 5.0), 1,
                              {0x0013A20040A1B2C3: "board-a"})
    service, sessions = open_with(home_serial_service, serial)
    coordinator = service.protocol
    assert isinstance(coordinator, CoordinatorProtocol)
    assert coordinator.boards == {0x0013A20040A1B2C3: "board-a"} and coordinator.transmit_retries == 1
    assert not coordinator.escaped
    coordinator.dataReceived(xbee.encode_frame(
        xbee.ReceivePacket(src64=0x0013A20040A1B2C3, src16=1, options=1, data=b"PING 1\n"), escaped=False))
    (session,) = sessions
    assert session.wire.connectionless and session.wire.expected_id == "board-a"
    service.stopService()


def test_a_boards_own_port_in_each_mode():
    serial = BoardSerialConfig(SerialPortConfig("/dev/ttyS5", 9600, "transparent", 5.0))
    service, sessions = open_with(board_serial_service, serial)
    (session,) = sessions
    assert session.written_before == b"" and session.wire.connectionless and session.wire.peer == "serial:/dev/ttyS5"
    service.stopService()
    serial = BoardSerialConfig(SerialPortConfig("/dev/ttyS5", 9600, "api2", 5.0), coordinator=0x0013A20040000001)
    service, sessions = open_with(board_serial_service, serial)
    device = service.protocol
    assert isinstance(device, EndDeviceProtocol) and device.escaped and device.coordinator == 0x0013A20040000001
    service.stopService()


# -- the real device: a pseudo-terminal with Twisted's SerialPort


class SerialPortServiceTests(unittest.TestCase):
    def setUp(self):
        self.dir = scratch_directory(self)
        self.link = os.path.join(self.dir, "radio.tty")
        self.fds = []

    def tearDown(self):
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass

    @defer.inlineCallbacks
    def test_a_real_device_plugged_in_read_unplugged_and_plugged_back(self):
        protocols = []

        def make():
            protocols.append(Recorder())
            return protocols[-1]

        service = SerialPortService(self.link, 9600, make, reactor, retry_s=0.1)
        with capturedLogs():
            service.startService()
        self.addCleanup(service.stopService)
        self.assertFalse(service.is_open)
        # The radio is plugged in.
        master, slave = pty_pair(self.link)
        self.fds += [slave]
        yield eventually(lambda: service.is_open)
        os.write(master, b"hello\n")
        yield eventually(lambda: protocols[-1].data == b"hello\n")
        # Unplugged: the master side goes away, the path disappears.
        os.close(master)
        os.unlink(self.link)
        yield eventually(lambda: not service.is_open)
        self.assertTrue(protocols[-1].lost)
        # Plugged back, under the same name.
        os.close(slave)
        self.fds.remove(slave)
        master, slave = pty_pair(self.link)
        self.fds += [master, slave]
        yield eventually(lambda: service.is_open)
        service.protocol.transport.write(b"back\n")
        received = b""
        for _ in range(100):
            try:
                received += os.read(master, 100)
            except BlockingIOError:
                pass
            if received:
                break
            yield task.deferLater(reactor, 0.02, lambda: None)
        self.assertEqual(received, b"back\n")


HOME = """
[home]
id = home-z
secret = z
aggregator = tcp:127.0.0.1:9
heartbeat_s = 1

[actuator:board-z]
relays = 2
serial = radio

[serial:radio]
device = {device}
mode = transparent
retry_s = 0.2

[load:lamp]
actuator = board-z
relay = 1
rated_w = 60

[load:fan]
actuator = board-z
relay = 2
rated_w = 40
desired = off
"""

BOARD = """
[actuator]
id = board-z
key = {key}
failsafe_after_s = 5
measure_period_s = 0.2
cold_load_min_s = 0
cold_load_max_s = 0

[serial]
device = {device}
mode = transparent
retry_s = 0.2

[relay:1]
load_w = 60
min_interval_s = 0

[relay:2]
load_w = 40
safe_state = on
min_interval_s = 0
"""


class TransparentBoardTests(unittest.TestCase):
    """A home and a board, each with SerialPort on its own pty, wired together."""

    @defer.inlineCallbacks
    def test_a_board_on_a_serial_line_is_welcomed_and_switched_as_its_owner_wants(self):
        work = scratch_directory(self)
        home_link, board_link = os.path.join(work, "home.tty"), os.path.join(work, "board.tty")
        home_master, home_slave = pty_pair(home_link)
        board_master, board_slave = pty_pair(board_link)
        a, b = Relay(), Relay()
        a.other, b.other = b, a
        wires = [PtyMaster(home_master, a, reactor), PtyMaster(board_master, b, reactor)]

        home = Home(home_config(keyed(HOME.format(device=home_link))), reactor)
        home_service = home_tap.serial_service(home, home.config.serials["radio"], reactor)
        board = Board.from_config(actuator_config(BOARD.format(device=board_link, key=board_key_file("board-z"))),
                                  reactor)
        board.start()
        board_service = actuator_tap.serial_service(board, board.config.serial, reactor)
        home_service.startService()
        board_service.startService()

        def cleanup():
            home_service.stopService()
            board_service.stopService()
            board.stop()
            home.stop()
            for wire in wires:
                wire.loseConnection()
            os.close(home_slave)
            os.close(board_slave)

        self.addCleanup(cleanup)
        # The board powers up open, and at once (a 0 s cold-load window)
        # closes the fan, whose safe state is on; it says HELLO; the home
        # switches the lamp on and the fan off, as wanted.
        self.assertEqual(board.states, (False, True))
        yield eventually(lambda: board.states == (True, False))
        self.assertEqual({load.id: load.on for load in home.loads.values()}, {"lamp": True, "fan": False})
        yield eventually(lambda: home.loads["lamp"].measured_w is not None)
        self.assertIn("board-z", home.boards)
        self.assertTrue(home.boards["board-z"].peer.startswith("serial:"))
