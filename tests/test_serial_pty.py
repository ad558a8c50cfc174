"""Real pseudo-terminals with Twisted's SerialPort: the serial transport as
the home and a board use it (transparent mode), a device that is absent at
start, and one that disappears and returns."""

import os
import tty

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Protocol
from twisted.trial import unittest

from jeisson.actuator import tap as actuator_tap
from jeisson.actuator.board import Board
from jeisson.actuator.config import config_from_string as actuator_config
from jeisson.home import tap as home_tap
from jeisson.home.config import config_from_string as home_config
from jeisson.home.core import Home
from jeisson.transports.radio_simulator import PtyMaster
from jeisson.transports.serial import SerialPortService
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
    def test_absent_device_is_retried_then_opened_then_reopened_after_loss(self):
        protocols = []

        def make():
            protocols.append(Recorder())
            return protocols[-1]

        service = SerialPortService(self.link, 9600, make, reactor, retry_s=0.1)
        service.startService()
        self.addCleanup(service.stopService)
        yield task.deferLater(reactor, 0.35, lambda: None)
        self.assertFalse(service.is_open)
        errors = self.flushLoggedErrors()
        self.assertEqual(errors, [])
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
serial = {device}
xbee_mode = transparent
failsafe_after_s = 5
measure_period_s = 0.2
retry_s = 0.2

[relay:1]
load_w = 60
min_interval_s = 0

[relay:2]
load_w = 40
initial = on
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

        home = Home(home_config(HOME.format(device=home_link)), reactor)
        home_service = home_tap.serial_service(home, home.config.serials["radio"], reactor)
        board = Board.from_config(actuator_config(BOARD.format(device=board_link)), reactor)
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
        # The board says HELLO; the home switches lamp on and fan off, as wanted.
        yield eventually(lambda: board.states == (True, False))
        self.assertEqual({load.id: load.on for load in home.loads.values()}, {"lamp": True, "fan": False})
        yield eventually(lambda: home.loads["lamp"].measured_w is not None)
        self.assertIn("board-z", home.boards)
        self.assertTrue(home.boards["board-z"].peer.startswith("serial:"))
