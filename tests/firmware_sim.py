"""A driver for ``jeisson-sim``, the simulated Arduino Uno (``firmware/sim``).

``FirmwareSim`` starts the harness on an AVR image, reads its events (the
pty it bridges UART0 to, relay pin changes, lines each way, crashes) in a
thread, and sends it commands (the ADC inputs, the stack margin, the EEPROM,
the provisioning jumper, the cycles of a MAC).  Every event carries the
simulated time (``cycles``, ``t_us``) and the harness's wall time
(``wall_us``), which the harness keeps in step.  ``SerialLine`` is the
test's own end of the pty: to provision a board, or to write lines a home
never would (unauthenticated, replayed).

``build()`` makes what the tests need with ``make``, after checking that the
toolchain is installed: a missing piece fails naming its Debian package.
Used by ``tests/test_firmware_sim.py`` and ``bench/firmware.py``.
"""

from __future__ import annotations

import os
import pathlib
import select
import shutil
import subprocess
import termios
import threading
import time
import tty
from collections.abc import Callable

import attrs

REPO = pathlib.Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
BUILD = FIRMWARE / "build"
HARNESS = BUILD / "sim" / "jeisson-sim"
SELFTEST = BUILD / "sim" / "selftest.elf"
UNO = BUILD / "uno" / "jeisson-uno.elf"

# What the builds need, each with the Debian package that brings it.
REQUIREMENTS = (
    ("avr-gcc", "gcc-avr"),
    ("/usr/lib/avr/include/avr/io.h", "avr-libc"),
    ("/usr/share/arduino/hardware/arduino/avr/cores/arduino/Arduino.h", "arduino-core-avr"),
    ("/usr/include/simavr/sim_avr.h", "libsimavr-dev"),
    ("/usr/include/libelf.h", "libelf-dev"),
    ("pkg-config", "pkg-config"),
    ("cc", "gcc"),
    ("make", "make"),
)

F_CPU = 16_000_000


def missing_packages() -> list[str]:
    """The Debian packages whose files the builds need and cannot find."""
    missing = []
    for need, package in REQUIREMENTS:
        found = os.path.exists(need) if need.startswith("/") else shutil.which(need) is not None
        if not found:
            missing.append(package)
    return missing


def build(*targets: str) -> None:
    """Build the harness (and its self-test program) and the given targets of
    ``firmware/Makefile`` (``"uno"``); raise saying what is missing or what
    failed."""
    missing = missing_packages()
    if missing:
        raise AssertionError("the firmware toolchain is not installed: apt-get install " + " ".join(missing))
    commands = [["make", "-s", "-C", str(FIRMWARE / "sim")]]
    if targets:
        commands.append(["make", "-s", "-C", str(FIRMWARE), *targets])
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")


@attrs.frozen
class Event:
    """One line of the harness: its kind (``PIN``, ``RX``, ``TX``, ``OK``, ...),
    its words, its ``key=value`` fields, and for ``RX``/``TX`` the line's text."""

    kind: str
    words: tuple[str, ...]
    fields: dict[str, str]
    text: str
    raw: str

    @property
    def cycles(self) -> int:
        return int(self.fields["cycles"])

    @property
    def t_us(self) -> int:
        return int(self.fields["t_us"])

    @property
    def wall_us(self) -> int:
        return int(self.fields["wall_us"])

    @property
    def seconds(self) -> float:
        """Simulated time, in seconds since power-up of the harness."""
        return self.cycles / F_CPU


def unescape(text: str) -> str:
    return text.encode("latin-1").decode("unicode_escape") if "\\x" in text else text


def parse(line: str) -> Event:
    kind, _, rest = line.partition(" ")
    if kind in ("RX", "TX"):
        parts = rest.split(" ", 3)
        fields = dict(p.split("=", 1) for p in parts[:3])
        text = unescape(parts[3]) if len(parts) > 3 else ""
        return Event(kind, tuple(text.split()), fields, text, line)
    words, fields = [], {}
    for token in rest.split():
        key, eq, value = token.partition("=")
        if eq and key.isidentifier():
            fields[key] = value
        else:
            words.append(token)
    return Event(kind, tuple(words), fields, "", line)


class FirmwareSim:
    """One running harness (a board powered up); a context manager that
    stops it (saving its EEPROM, if it has a file).  ``serial``: bridge the
    UART to this existing device instead of a new pty; ``link``: a symlink to
    the new pty, made before the board powers up."""

    def __init__(self, elf: pathlib.Path | str, eeprom: str | None = None, serial: str | None = None,
                 link: str | None = None, jumper: bool = False, fast: bool = False, log: str | None = None):
        command = [str(HARNESS)]
        if eeprom:
            command += ["--eeprom", eeprom]
        if serial:
            command += ["--serial", serial]
        if link:
            command += ["--link", link]
        if jumper:
            command.append("--jumper")
        if fast:
            command.append("--fast")
        command.append(str(elf))
        self._log = open(log, "a", encoding="utf-8") if log else None  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._log if self._log else subprocess.DEVNULL, text=True,
                                        bufsize=1)
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self._commands = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        pty = self.wait(lambda e: e.kind in ("PTY", "ERR"), 10, "the harness to start")
        if pty.kind == "ERR":
            self.stop()
            raise AssertionError(f"jeisson-sim did not start: {pty.raw}")
        self.pty = pty.words[0]
        self.start = self.wait(lambda e: e.kind == "START", 10, "the harness to power up")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            if self._log:
                self._log.write(line + "\n")
                self._log.flush()
            with self._changed:
                self.events.append(parse(line))
                self._changed.notify_all()
        with self._changed:
            self.events.append(Event("EXIT", (), {}, "", "EXIT"))
            self._changed.notify_all()

    # -- events

    def wait(self, predicate: Callable[[Event], bool], timeout: float, what: str, since: int = 0) -> Event:
        """The first event from index ``since`` for which ``predicate`` holds,
        waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events[since:]:
                    if predicate(event):
                        return event
                    if event.kind in ("CRASH", "EXIT") and not predicate(event):
                        raise AssertionError(f"the simulated board stopped ({event.raw}) while waiting for {what}")
                since = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
                self._changed.wait(left)

    def mark(self) -> int:
        """An index into the events: ``since`` for what comes after now."""
        with self._changed:
            return len(self.events)

    def of(self, kind: str, since: int = 0) -> list[Event]:
        with self._changed:
            return [e for e in self.events[since:] if e.kind == kind]

    def sent(self, since: int = 0) -> list[Event]:
        """The lines the board sent (TX)."""
        return self.of("TX", since)

    def received(self, since: int = 0) -> list[Event]:
        """The lines the board received (RX)."""
        return self.of("RX", since)

    def wait_sent(self, start: str, timeout: float = 10, since: int = 0) -> Event:
        return self.wait(lambda e: e.kind == "TX" and e.text.startswith(start), timeout,
                         f"the board to send {start!r}", since)

    def pins(self) -> dict[int, int]:
        reply = self.command("PINS", "PINS")
        return {int(k): int(v) for k, v in (w.split("=") for w in reply.raw.split()[1:5])}

    # -- commands

    def command(self, text: str, answer: str = "OK", timeout: float = 10) -> Event:
        """Send a command; its answer (an event of kind ``answer``, or ``ERR``)."""
        with self._commands:
            since = self.mark()
            assert self.process.stdin is not None
            self.process.stdin.write(text + "\n")
            self.process.stdin.flush()
            reply = self.wait(lambda e: e.kind in (answer, "ERR"), timeout, f"the answer to {text!r}", since)
        if reply.kind == "ERR" and answer != "ERR":
            raise AssertionError(f"jeisson-sim refused {text!r}: {reply.raw}")
        return reply

    def adc(self, channel: int, rms_mv: float, offset_mv: float = 2500, hz: float = 50) -> None:
        self.command(f"ADC {channel} {rms_mv} {offset_mv} {hz}")

    def stack(self) -> dict[str, int]:
        reply = self.command("STACK", "STACK")
        return {k: int(v, 0) for k, v in reply.fields.items()}

    def pulses(self, pin: int) -> dict[str, int]:
        return {k: int(v) for k, v in self.command(f"PULSES {pin}", "PULSES").fields.items()}

    def time(self) -> Event:
        return self.command("TIME", "TIME")

    def stop(self) -> int:
        """Power off: QUIT (the EEPROM saved), or killed if it does not go."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("QUIT\n")
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # The reader ends at the harness's end of output; only then are the pipes closed.
        self._reader.join(5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                try:
                    stream.close()
                except (BrokenPipeError, ValueError):
                    pass
        if self._log:
            self._log.close()
            self._log = None
        return self.process.returncode

    def __enter__(self) -> FirmwareSim:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class SerialLine:
    """The test's own end of the board's serial line (the pty's slave, as a
    home opens it), raw; a context manager that closes it."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        # Raw, without flushing what may already be waiting (tty.setraw flushes).
        tty.setraw(self.fd, termios.TCSANOW)

    def write_line(self, line: str | bytes) -> None:
        data = line.encode() if isinstance(line, str) else line
        os.write(self.fd, data if data.endswith(b"\n") else data + b"\n")

    def read_until(self, end: bytes, timeout: float = 10) -> bytes:
        """What the board sent on the line, up to and including ``end``."""
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(end):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"timed out after {timeout} s reading {end!r} from the line; got {data!r}")
            data += os.read(self.fd, 4096)
        return data

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> SerialLine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def provision(sim: FirmwareSim, lines: list[str], timeout: float = 10) -> None:
    """Provision the board over its serial line (``PROV ...``, docs/firmware.rst),
    each line answered before the next; ``PROV SAVE`` last."""
    with SerialLine(sim.pty) as line:
        for text in lines:
            # A board just powered up may not listen yet: what reaches its
            # UART before it is set up is lost, as on a real line.  Edits are
            # idempotent, so an unanswered one is sent again.
            for attempt in range(int(timeout)):
                since = sim.mark()
                line.write_line(text)
                try:
                    answer = sim.wait(lambda e: e.kind == "TX" and e.text.startswith("PROV "), 1.0,
                                      f"the board's answer to {text!r}", since)
                    break
                except AssertionError:
                    if attempt == int(timeout) - 1:
                        raise
            if not answer.text.startswith("PROV OK"):
                raise AssertionError(f"the board refused {text!r}: {answer.text}")
