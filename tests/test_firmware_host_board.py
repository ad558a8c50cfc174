"""The firmware's core as a TCP board on the host (``firmware/host/board.c``,
``make -C firmware host-board``), switched by a real ``twistd jeisson-home``
with a real aggregator over mutual TLS: the very C of the Uno image, against
the very home a user runs.

What a user would observe: the board, provisioned over its console, connects,
proves its key and is switched as the owner wants, and only by the home; a
board with a wrong key is never welcomed and never switched by the home (it
goes to its safe states, as a board alone does); when the
home is killed -9, the board's relays go to their safe states
``failsafe_after_s`` after the home's last line.
"""

import os
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from jeisson.demo import Fleet, free_ports
from tests.waiting import wait_for

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
BOARD = "host-1"
HOME = "home-h"
FAILSAFE_S = 3
COLD_LOAD_S = 1
# relay -> (load, rated W, safe state, wanted on)
RELAYS = {1: ("heater", 2000, "off", True), 2: ("fan", 500, "on", False)}


class HostBoard:
    """A running ``jeisson-board``: its events (``RELAY``, ``LINK``, ``HEARD``
    with the board's own millisecond clock) collected in a thread."""

    def __init__(self, binary: Path, store: Path, home_port: int):
        self.process = subprocess.Popen([str(binary), "--store", str(store), "--home", f"127.0.0.1:{home_port}"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, bufsize=1)
        self.lines: list[str] = []
        self.saved = 0  # the index of the line "PROV OK saved"
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def seen(self, since: int = 0) -> list[str]:
        with self._lock:
            return self.lines[since:]

    def mark(self) -> int:
        with self._lock:
            return len(self.lines)

    def say(self, line: str, answer: str = "PROV OK") -> None:
        since = self.mark()
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        wait_for(lambda: any(seen.startswith("PROV ") for seen in self.seen(since)), 10, f"an answer to {line}")
        got = next(seen for seen in self.seen(since) if seen.startswith("PROV "))
        assert got.startswith(answer), f"{line!r} answered {got!r}"

    def relays(self, since: int = 0) -> list[tuple[int, int, int]]:
        """(relay, state, t_ms) of every switch since ``since``."""
        out = []
        for line in self.seen(since):
            words = line.split()
            if words[0] == "RELAY":
                out.append((int(words[1]), int(words[2]), int(words[3].split("=")[1])))
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # stdin closed: the board powers off
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)


@pytest.fixture(scope="module")
def binary(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("firmware-host")
    done = subprocess.run(["make", "-C", str(FIRMWARE), f"BUILD={build}", "host-board"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"make host-board failed (needs gcc):\n{done.stdout}\n{done.stderr}"
    return build / "host" / "jeisson-board"


@pytest.fixture
def lab(tmp_path, credentials):
    """An aggregator and a home (real twistd processes) with a TCP board listener."""
    work = str(tmp_path)
    aggregator_port, board_port = free_ports(2)
    (tmp_path / "aggregator.ini").write_text(f"""
[aggregator]
listen = tcp:{aggregator_port}:interface=127.0.0.1
heartbeat_s = 1
round_period_s = 2

[home:{HOME}]
secret = secret-h
""" + credentials.aggregator_tls())
    home = f"""
[home]
id = {HOME}
secret = secret-h
aggregator = tcp:127.0.0.1:{aggregator_port}
actuators = tcp:{board_port}:interface=127.0.0.1
heartbeat_s = 1
command_timeout_s = 3
measure_period_s = 1

[actuator:{BOARD}]
relays = {len(RELAYS)}
key = {credentials.board(BOARD)}
"""
    for relay, (load, watts, _, wanted) in RELAYS.items():
        home += (f"\n[load:{load}]\nactuator = {BOARD}\nrelay = {relay}\nrated_w = {watts}\n"
                 f"desired = {'on' if wanted else 'off'}\n")
    (tmp_path / "home.ini").write_text(home + credentials.home_tls(HOME))
    fleet = Fleet(work)
    fleet.start("aggregator", "jeisson-aggregator", os.path.join(work, "aggregator.ini"))
    fleet.start("home", "jeisson-home", os.path.join(work, "home.ini"))
    boards: list[HostBoard] = []
    try:
        yield {"fleet": fleet, "port": board_port, "work": tmp_path, "boards": boards}
    finally:
        for board in boards:
            board.stop()
        fleet.stop()


def home_log(lab) -> str:
    return (lab["work"] / "home.log").read_text(errors="replace")


def start_board(lab, binary: Path, key: str, name: str = "board") -> HostBoard:
    # The home listening first: a board that finds no home for longer than
    # its cold-load delay closes its safe-on relays on its own, as it should.
    wait_for(lambda: f"starting on {lab['port']}" in home_log(lab), 20, "the home to listen for boards")
    board = HostBoard(binary, lab["work"] / f"{name}.eeprom", lab["port"])
    lab["boards"].append(board)
    wait_for(lambda: any(line.startswith("POWER up") for line in board.seen()), 10, "the board to power up")
    for line in [f"PROV ID {BOARD}", f"PROV KEY {key}", f"PROV RELAYS {len(RELAYS)}",
                 *[f"PROV RELAY {r} {safe} 0.5 2000" for r, (_, _, safe, _) in RELAYS.items()],
                 f"PROV FAILSAFE {FAILSAFE_S}", f"PROV COLDLOAD {COLD_LOAD_S} {COLD_LOAD_S}", "PROV MEASURE 1"]:
        board.say(line)
    board.say("PROV SAVE", "PROV OK saved")
    # The restart that follows opens every relay: the board's power-up.
    board.saved = board.seen().index("PROV OK saved")
    wait_for(lambda: board.relays(board.saved), 10, "the board to power up again with its settings")
    return board


def test_the_home_switches_the_host_board_and_only_the_home_does(lab, binary, credentials):
    key = Path(credentials.board(BOARD)).read_text().strip()
    board = start_board(lab, binary, key)
    since = board.saved
    saved_at = board.relays(since)[0][2]
    try:
        wait_for(lambda: (1, 1) in [(r, s) for r, s, _ in board.relays(since)], 30, "the home to switch the heater on")
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- home log:\n{home_log(lab)[-3000:]}\n--- board:\n{board.seen()}") from None
    # The fan (safe on) would close after its cold-load delay if the board
    # were alone; the home took charge (and wants it off): wait until the
    # board's clock is well past that delay, then look.
    wait_for(lambda: any(int(line.split("=")[1]) > saved_at + COLD_LOAD_S * 1000 + 500
                         for line in board.seen(since) if line.startswith("HEARD")), 10,
             "the board to hear its home past the cold-load delay")
    assert [(r, s) for r, s, _ in board.relays(since) if s == 1] == [(1, 1)], board.seen()
    assert f"actuator {BOARD} connected from 127.0.0.1" in home_log(lab)
    assert "Traceback" not in home_log(lab)


def test_a_board_with_a_wrong_key_is_never_switched(lab, binary):
    board = start_board(lab, binary, "ab" * 32, name="impostor")
    since = board.saved
    # The home's WELCOME does not prove the board's (wrong) key: the board
    # answers ERR auth and obeys nothing; the home never takes it.
    wait_for(lambda: "reported an error: auth" in home_log(lab), 20, "the board to refuse the home's WELCOME")
    # Alone, as far as it can tell: its safe states after the cold-load
    # delay (the fan on), never the heater the owner wants on.
    wait_for(lambda: (2, 1) in [(r, s) for r, s, _ in board.relays(since)], 10, "the fan to close (its safe state)")
    assert [(r, s) for r, s, _ in board.relays(since) if s == 1] == [(2, 1)]
    assert f"actuator {BOARD} connected" not in home_log(lab)


def test_the_failsafe_fires_failsafe_after_s_after_the_home_is_killed(lab, binary, credentials):
    key = Path(credentials.board(BOARD)).read_text().strip()
    board = start_board(lab, binary, key)
    wait_for(lambda: (1, 1) in [(r, s) for r, s, _ in board.relays()], 30, "the home to switch the heater on")
    since = board.mark()
    home = dict(lab["fleet"].running)["home"]
    home.send_signal(signal.SIGKILL)
    home.wait(10)
    wait_for(lambda: (1, 0) in [(r, s) for r, s, _ in board.relays(since)] and
             (2, 1) in [(r, s) for r, s, _ in board.relays(since)], FAILSAFE_S + 10,
             "the heater to open and the fan to close (their safe states)")
    heard = [int(line.split("=")[1]) for line in board.seen() if line.startswith("HEARD")]
    switches = {(r, s): t for r, s, t in board.relays(since)}
    last = max(t for t in heard if t <= switches[(1, 0)])
    for relay_state in ((1, 0), (2, 1)):
        late_ms = switches[relay_state] - last - FAILSAFE_S * 1000
        assert 0 <= late_ms <= 50, f"relay {relay_state}: {late_ms} ms after failsafe_after_s from the last line"


def test_the_provisioning_example_of_docs_firmware_rst(binary, tmp_path):
    """docs/firmware.rst's example, line for line: each ``>`` line sent to
    a fresh board, each ``<`` line what it answers (the HELLO on its link
    to the home, a listening socket here)."""
    doc = (FIRMWARE.parent / "docs" / "firmware.rst").read_text(encoding="utf-8")
    block = doc[doc.index("A board for ``home-1-a`` of the examples"):]
    block = block[block.index("::\n") + 3:]
    example = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        if line.strip():
            example.append(line.strip())
    assert example[-1].startswith("< HELLO ") and len(example) >= 10
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(20)
        board = HostBoard(binary, tmp_path / "fresh.eeprom", listener.getsockname()[1])
        try:
            wait_for(lambda: any(line.startswith("POWER up") for line in board.seen()), 10, "the board to power up")
            sent = [line[2:] for line in example if line.startswith("> ")]
            answers = [line[2:] for line in example[:-1] if line.startswith("< ")]
            for line, answer in zip(sent, answers, strict=True):
                board.say(line, answer)
                assert next(seen for seen in reversed(board.seen()) if seen.startswith("PROV ")) == answer
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(10)
                hello = b""
                while not hello.endswith(b"\n"):
                    chunk = connection.recv(100)
                    assert chunk, "the board closed its link before its HELLO"
                    hello += chunk
            assert hello.decode() == example[-1][2:] + "\n"
        finally:
            board.stop()
