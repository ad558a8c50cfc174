"""Boards behind an API-mode coordinator, over real pseudo-terminals.

The simulated radio network (``jeisson.transports.radio_simulator``) owns one pty per
radio; the home opens the coordinator's with SerialPort, each board its own:
one board speaks API mode 2 to its XBee, the other transparent mode.  The
same board link logic runs as over TCP: HELLO, relays switched, MEAS; a
board that vanishes is marked unreachable and comes back; garbage and
corrupt frames on the coordinator's line are dropped and counted; a rogue
radio (a third device) is ignored by the board and by the home.
"""

import os

from twisted.internet import defer, reactor, task
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from jeisson.actuator import tap as actuator_tap
from jeisson.actuator.board import Board
from jeisson.actuator.config import config_from_string as actuator_config
from jeisson.config import IniFile
from jeisson.home import tap as home_tap
from jeisson.home.config import config_from_string as home_config
from jeisson.home.core import Home
from jeisson.transports.radio_simulator import RadioService
from jeisson.transports.radio_simulator import config_from_ini as radio_config_from_ini
from jeisson.wire import xbee
from tests.peers import board_key_file, keyed
from tests.waiting import eventually, scratch_directory

A_ADDRESS = "0013A20040A1B2C3"
B_ADDRESS = "0013A2004011137E"  # escaped bytes in the address itself

RADIO = """
[radio]
coordinator = {work}/coordinator.tty
mode = api2
address = 0013A20040000001
presence_s = 3

[device:board-a]
link = {work}/board-a.tty
address = {a}
mode = api2

[device:board-b]
link = {work}/board-b.tty
address = {b}
mode = transparent

[device:rogue]
link = {work}/rogue.tty
address = {rogue}
mode = api2
"""
ROGUE_ADDRESS = "0013A200BADBAD01"

HOME = """
[home]
id = home-z
secret = z
aggregator = tcp:127.0.0.1:9
heartbeat_s = 1
command_timeout_s = 2

[serial:coordinator]
device = {work}/coordinator.tty
mode = api2
retry_s = 0.2
transmit_retries = 1

[actuator:board-a]
relays = 2
serial = coordinator
xbee = {a}

[actuator:board-b]
relays = 1
serial = coordinator
xbee = {b}

[load:lamp]
actuator = board-a
relay = 1
rated_w = 60

[load:fan]
actuator = board-a
relay = 2
rated_w = 40
desired = off

[load:heater]
actuator = board-b
relay = 1
rated_w = 1500
"""

BOARD = """
[actuator]
id = {id}
key = {key}
failsafe_after_s = 4
measure_period_s = 0.3

[serial]
device = {work}/{id}.tty
mode = {mode}
retry_s = 0.2
coordinator = 0013A20040000001

{relays}
"""


def relays(*watts):
    return "\n".join(f"[relay:{n}]\nload_w = {w}\nmin_interval_s = 0\n" for n, w in enumerate(watts, 1))




class CoordinatorOverPtyTests(unittest.TestCase):
    def setUp(self):
        self.work = scratch_directory(self)
        fill = {"work": self.work, "a": A_ADDRESS, "b": B_ADDRESS, "rogue": ROGUE_ADDRESS}
        self.radio = RadioService(radio_config_from_ini(IniFile(RADIO.format(**fill), "radio.ini")), reactor)
        self.radio.startService()
        self.home = Home(home_config(keyed(HOME.format(**fill))), reactor)
        self.home_port = home_tap.serial_service(self.home, self.home.config.serials["coordinator"], reactor)
        self.boards = {}
        self.board_ports = {}
        for board_id, mode, watts in (("board-a", "api2", (60, 40)), ("board-b", "transparent", (1500,))):
            self.start_board(board_id, mode, watts)
        self.home_port.startService()

    def start_board(self, board_id, mode, watts):
        config = actuator_config(BOARD.format(id=board_id, work=self.work, mode=mode, relays=relays(*watts),
                                              key=board_key_file(board_id)))
        board = Board.from_config(config, reactor)
        board.start()
        port = actuator_tap.serial_service(board, config.serial, reactor)
        port.startService()
        self.boards[board_id], self.board_ports[board_id] = board, port

    def stop_board(self, board_id):
        self.board_ports.pop(board_id).stopService()
        self.boards.pop(board_id).stop()

    def tearDown(self):
        for board_id in list(self.boards):
            self.stop_board(board_id)
        self.home_port.stopService()
        self.home.stop()
        self.radio.stopService()
        return task.deferLater(reactor, 0.05, lambda: None)

    def loads(self):
        return {load.id: load.on for load in self.home.loads.values()}

    @defer.inlineCallbacks
    def test_boards_in_api_and_transparent_mode_are_welcomed_and_switched(self):
        yield eventually(lambda: self.loads() == {"lamp": True, "fan": False, "heater": True})
        self.assertEqual(self.boards["board-a"].states, (True, False))
        self.assertEqual(self.boards["board-b"].states, (True,))
        self.assertEqual(self.home.boards["board-a"].peer, f"xbee:{A_ADDRESS}")
        # Readings come back over the radio too.
        yield eventually(lambda: self.home.loads["heater"].measured_w is not None)
        self.assertLess(abs(self.home.loads["heater"].measured_w - 1500), 200)

    @defer.inlineCallbacks
    def test_a_board_that_vanishes_is_unreachable_then_comes_back(self):
        yield eventually(lambda: "board-b" in self.home.boards and self.loads()["heater"] is True)
        with capturedLogs() as events:
            self.stop_board("board-b")
            # Counted at its rated power (unknown) once the home gives up on it.
            yield eventually(lambda: "board-b" not in self.home.boards, timeout=15)
        self.assertIsNone(self.home.loads["heater"].on)
        self.assertEqual(self.home.drawn_w(), 60 + 1500)
        text = "\n".join(formatEvent(e) for e in events)
        self.assertIn("board-b", text)
        self.start_board("board-b", "transparent", (1500,))
        yield eventually(lambda: "board-b" in self.home.boards and self.loads()["heater"] is True, timeout=15)

    @defer.inlineCallbacks
    def test_a_rogue_radio_is_ignored_by_the_board_and_by_the_home(self):
        yield eventually(lambda: self.loads() == {"lamp": True, "fan": False, "heater": True})
        rogue = os.open(os.path.join(self.work, "rogue.tty"), os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.addCleanup(os.close, rogue)
        board_radio = self.board_ports["board-a"].protocol
        coordinator = self.home_port.protocol
        lines = [b"WELCOME 2 1 home-z 0123456789abcdef 0 0123456789abcdef\n", b"SET 90 1 0\n",
                 b"SET 91 1 0 5 0123456789abcdef\n", b"ERR hello\n"]
        with capturedLogs() as events:
            for n, line in enumerate(lines, 1):
                # To the board's radio, and to the coordinator as a board would.
                os.write(rogue, xbee.encode_frame(xbee.TransmitRequest(frame_id=n, dest64=int(A_ADDRESS, 16),
                                                                       data=line), escaped=True))
                hello = b"HELLO board-a 2 2 11 0123456789abcdef\n"
                os.write(rogue, xbee.encode_frame(xbee.TransmitRequest(frame_id=0, dest64=0, data=hello),
                                                  escaped=True))
            yield eventually(lambda: board_radio.dropped >= len(lines) and coordinator.dropped >= len(lines))
        self.assertEqual(self.boards["board-a"].states, (True, False))
        self.assertIs(self.home.boards["board-a"].state, "active")
        text = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
        self.assertEqual(sum("not this board's home" in t for t in text), 1, text)
        self.assertEqual(sum("no actuator is configured for" in t for t in text), 1, text)
        # The home still commands its board.
        self.home.set_desired("fan", True)
        yield eventually(lambda: self.boards["board-a"].states == (True, True))

    @defer.inlineCallbacks
    def test_garbage_and_corrupt_frames_are_dropped_and_the_boards_keep_working(self):
        yield eventually(lambda: self.loads() == {"lamp": True, "fan": False, "heater": True})
        coordinator = self.radio.network.coordinator
        good = xbee.encode_frame(xbee.ReceivePacket(src64=int(A_ADDRESS, 16), src16=1, options=1,
                                                    data=b"PING 77\n"), escaped=True)
        corrupt = good[:-1] + bytes([good[-1] ^ 0xFF])
        decoder = self.home_port.protocol.decoder
        with capturedLogs() as events:
            coordinator.transport.write(b"\x00garbage\xff" + corrupt + good[:9] + good)
            yield eventually(lambda: decoder.bad_checksums >= 1 and decoder.junk_bytes > 0)
        self.assertGreaterEqual(decoder.truncated + decoder.bad_checksums, 1)
        self.assertTrue(any("dropped bad input" in formatEvent(e) for e in events))
        # The boards are still there, and the home still commands them.
        self.home.set_desired("fan", True)
        yield eventually(lambda: self.boards["board-a"].states == (True, True))
