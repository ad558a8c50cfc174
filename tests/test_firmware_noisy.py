"""The Uno image on a noisy line (``firmware/sim``, the real image).

A stranger on the board's line (a radio anyone can transmit on, or line
noise) streams bytes at the line's full rate: bare newlines, ``PROV SHOW``,
junk, and lines that look sealed (each costs the board a MAC).  What must
hold regardless:

- the failsafe fires within 10 ms of ``failsafe_after_s`` after the home's
  last line;
- the home's authenticated SETs are all obeyed and acknowledged;
- ``min_interval_s`` counts from when the relay really switched;
- a board whose program hangs still opens its relays at the failsafe (the
  backstop in the timer interrupt), and is reset by its watchdog into its
  safe power-up;
- the stack keeps a margin of 512 bytes or more.

The home here is the test itself (``jeisson.wire.board_auth``), so that it
can time its lines exactly; the real home is in ``test_firmware_sim``.
"""

import contextlib
import itertools
import os
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

from jeisson.wire import board_auth
from tests.firmware_sim import F_CPU, UNO, Event, FirmwareSim, SerialLine, build, provision
from tests.waiting import wait_for

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
BYTES_PER_S = 960  # 9600 baud, 10 bits a byte
NOISE = [b"\n", b"\n\n\n\n", b"PROV SHOW\n", b"SET 1 1 0 7 0123456789abcdef\n", b"\x00\xff garbage ~~ \r\n",
         b"ERR auth\n", b"PING 3 9 fedcba9876543210\n"]
# An over-long line ends the session by the protocol's rule (ERR long; the
# board says HELLO again 1 s later), whoever sent it: it stays out of the
# stream the home's SETs must get through, and is in the failsafe's.
OVER_LONG = b"x" * 120 + b"\n"


@pytest.fixture(scope="module")
def uno():
    build("uno")


@pytest.fixture()
def board(uno) -> Iterator[FirmwareSim]:
    with tempfile.TemporaryDirectory() as work, FirmwareSim(UNO, eeprom=os.path.join(work, "ee.bin")) as sim:
        yield sim


class Noise:
    """A stranger writing NOISE on the line at its full rate (paced on the
    wall clock, which the simulation keeps step with), whole lines at a
    time, until stopped."""

    def __init__(self, fd: int, lock: threading.Lock, chunks: list[bytes] = NOISE):
        self.fd = fd
        self.chunks = chunks
        self.lock = lock
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        for chunk in itertools.cycle(self.chunks):
            if self._stop.wait(max(0.0, start + self.sent / BYTES_PER_S - time.monotonic())):
                return
            with self.lock:
                os.write(self.fd, chunk)
            self.sent += len(chunk)

    def __enter__(self) -> "Noise":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class Home:
    """The home's side of a session, on the test's end of the line."""

    def __init__(self, sim: FirmwareSim, line: SerialLine, lock: threading.Lock):
        self.sim, self.line, self.lock = sim, line, lock
        hello = sim.wait_sent("HELLO")
        since = sim.mark()
        offer = board_auth.welcome(bytes.fromhex(KEY), hello.text.encode(), "home-x", 3600, "8f3a5c7e91b2d4f6")
        self.write(offer.welcome)
        auth = sim.wait_sent("AUTH", since=since)
        self.channel = offer.channel
        self.seq = 0
        # Power-up counts as a switch: the first SET after min_interval (0.5 s).
        due = auth.cycles + 0.6 * F_CPU
        wait_for(lambda: sim.time().cycles >= due, 10, "min_interval after power-up", step=0.05)

    def write(self, data: bytes) -> None:
        with self.lock:
            os.write(self.line.fd, data)

    def set(self, relay: int, state: int) -> tuple[int, bytes]:
        self.seq += 1
        line = self.channel.seal(b"SET %d %d %d" % (self.seq, relay, state))
        self.write(line)
        return self.seq, line.rstrip(b"\n")

    def close_relay_1(self) -> Event:
        """A SET closing relay 1, acknowledged and obeyed: the SET as the
        board received it (its LF's time: the failsafe counts from it)."""
        since = self.sim.mark()
        seq, sealed = self.set(1, 1)
        assert self.answer(seq, since).words[0] == "ACK"
        self.sim.wait(pin(1), 10, "relay 1 to close", since)
        return received(self.sim, sealed, since)

    def answer(self, seq: int, since: int, timeout: float = 10) -> Event:
        return self.sim.wait(lambda e: e.kind == "TX" and e.words[:2] in (("ACK", str(seq)), ("NAK", str(seq))),
                             timeout, f"the answer to SET {seq}", since)


def provisioned(sim: FirmwareSim, failsafe_s: float = 3, interval_s: float = 0.5) -> None:
    provision(sim, ["PROV ID uno-1", f"PROV KEY {KEY}", "PROV RELAYS 1", f"PROV RELAY 1 off {interval_s} 2000",
                    f"PROV FAILSAFE {failsafe_s}", "PROV COLDLOAD 0 0", "PROV MEASURE 1", "PROV SAVE"])


@contextlib.contextmanager
def session(sim: FirmwareSim, **settings) -> Iterator[Home]:
    """The board provisioned with ``settings`` and welcomed by the test's home."""
    provisioned(sim, **settings)
    with SerialLine(sim.pty) as line:
        yield Home(sim, line, threading.Lock())


def pin(level: int):
    return lambda e: e.kind == "PIN" and e.words == ("4", str(level))


def received(sim: FirmwareSim, text: bytes, since: int) -> Event:
    return sim.wait(lambda e: e.kind == "RX" and e.text == text.decode(), 10, f"the board to receive {text!r}", since)


def stack_margin_holds(sim: FirmwareSim) -> None:
    stack = sim.stack()
    assert stack["sp_margin"] >= 512, stack


def test_the_failsafe_fires_on_time_while_a_stranger_streams_bytes(board):
    sim = board
    with session(sim, failsafe_s=3) as home:
        since = sim.mark()
        last = home.close_relay_1()
        # The home goes silent; the stranger does not.
        with Noise(home.line.fd, home.lock, NOISE + [OVER_LONG]) as noise:
            opened = sim.wait(pin(0), 3 + 10, "the failsafe to open relay 1", since)
            noise_sent = noise.sent
        late = (opened.cycles - last.cycles) / F_CPU - 3
        assert abs(late) <= 0.010, f"{late * 1000:+.1f} ms from failsafe_after_s"
        assert noise_sent > 3 * BYTES_PER_S * 0.8  # the stream really ran at about the line's rate
        stack_margin_holds(sim)


def test_the_homes_sets_are_all_obeyed_while_a_stranger_streams_bytes(board):
    sim = board
    with session(sim, failsafe_s=3, interval_s=0.5) as home, Noise(home.line.fd, home.lock):
        for n in range(8):
            since = sim.mark()
            seq, _ = home.set(1, (n + 1) % 2)
            answer = home.answer(seq, since)
            # Each SET comes more than min_interval after the last switch.
            assert answer.words[0] == "ACK", answer.raw
            switched = sim.wait(pin((n + 1) % 2), 5, f"relay 1 to go to {(n + 1) % 2}", since)
            # The home's pace: its next SET 0.7 s (simulated) after the switch.
            due = switched.cycles + 0.7 * F_CPU
            wait_for(lambda due=due: sim.time().cycles >= due, 10, "0.7 s to pass", step=0.05)
        assert [e for e in sim.sent() if e.words[:1] == ("NAK",)] == []
        stack_margin_holds(sim)


def test_min_interval_counts_from_the_switch_itself(board):
    sim = board
    with session(sim, failsafe_s=20, interval_s=0.5) as home:
        since = sim.mark()
        # A stranger's PROV SHOW and a line that looks sealed right in front of the SET.
        home.write(b"PROV SHOW\nSET 1 1 0 7 0123456789abcdef\n")
        seq, _ = home.set(1, 1)
        on = sim.wait(pin(1), 10, "relay 1 to close", since)
        home.answer(seq, since)
        # Then the home asks, again and again, to open it.
        while True:
            asked = sim.mark()
            seq, _ = home.set(1, 0)
            if home.answer(seq, asked).words[0] == "ACK":
                break
        off = sim.wait(pin(0), 10, "relay 1 to open", since)
        assert (off.cycles - on.cycles) / F_CPU >= 0.5


def test_a_hung_board_is_reset_by_its_watchdog_into_its_safe_power_up(board):
    sim = board
    with session(sim, failsafe_s=60) as home:
        home.close_relay_1()
        first_hello = sim.sent()[0].text
        hung = sim.mark()
        hang = sim.command("HANG")
        opened = sim.wait(pin(0), 5, "the watchdog to reset the board (relay 1 open)", hung)
        # WDTO_2S: about 2 s (the watchdog's own oscillator, not the crystal).
        assert 1.5 <= (opened.cycles - hang.cycles) / F_CPU <= 2.5, (hang.raw, opened.raw)
        hello = sim.wait_sent("HELLO uno-1 1 2 0 ", 5, hung)
        # A power-up: the boot counter raised, so a new nonce.
        assert hello.text != first_hello
        assert sim.pins() == {4: 0, 5: 0, 6: 0, 7: 0}


def test_a_hung_board_still_opens_its_relays_at_the_failsafe(board):
    # The backstop in the Timer1 interrupt: loop() stuck, the failsafe's
    # relays (safe state off) open 5 ms after it is due, long before the
    # watchdog's reset.
    sim = board
    with session(sim, failsafe_s=1) as home:
        since = sim.mark()
        last = home.close_relay_1()
        hang = sim.command("HANG")
        assert (hang.cycles - last.cycles) / F_CPU < 0.9  # hung before the failsafe was due
        opened = sim.wait(pin(0), 5, "the backstop to open relay 1", since)
        late = (opened.cycles - last.cycles) / F_CPU - 1
        assert 0 <= late <= 0.010, f"{late * 1000:+.1f} ms from failsafe_after_s"
