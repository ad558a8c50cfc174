"""The reference firmware on the simulated Uno: ``python bench/firmware.py``.

The Uno image (``firmware/uno``) runs on ``jeisson-sim`` (simavr, an
ATmega328P at 16 MHz kept in step with the wall clock, ``firmware/sim``).
The bench plays its home, with jeisson's own handshake and seals
(``jeisson.wire.board_auth``), and measures:

- **SET-to-ACK latency at 9600 baud**: from writing a ``SET`` to reading its
  ``ACK``, at the home, wall clock; the board's relay 1 toggled ``--sets``
  times, one ``SET`` every 0.1 to 0.3 s (random), the board also sending its
  ``MEAS`` every 2 s and its ``PING``: direct on the board's pty, and
  through the radio simulator (``twistd jeisson-radio``, the board's XBee in
  transparent mode, the bench on the coordinator's line in API mode 2).
  Baselines in the same run: the same board provisioned ``KEY none``
  (protocol version 1, no MAC), direct; and the wire's own floor, the
  ``SET`` and ``ACK`` bytes at 9600 8N1.
- **The failsafe's accuracy**: ``--failsafe-runs`` times, the bench goes
  silent after a ``SET`` at a random moment; the relay's fall to its safe
  state on the simulated clock, less the last byte the bench sent (its LF
  entering the board), less ``failsafe_after_s``; then the same on a noisy
  line: a stranger streams bare newlines, ``PROV SHOW``, junk and lines
  that look sealed (each costs the board a MAC) at the line's full rate
  while the home is silent.
- **The MAC's cost in cycles**: the board raises D9 around each line MAC
  (HMAC-SHA256 with a session key); the harness times each pulse.
- **Flash and RAM** (``avr-size``) and the **stack margin at peak**: the bytes
  of the painted stack never touched over the whole run.

Last line: ``set_ack_p50_ms=... set_ack_p99_ms=... radio_set_ack_p50_ms=...
radio_set_ack_p99_ms=... v1_set_ack_p50_ms=... v1_set_ack_p99_ms=...
wire_floor_ms=... v1_wire_floor_ms=... failsafe_late_p50_ms=...
failsafe_late_max_ms=... noisy_failsafe_late_p50_ms=...
noisy_failsafe_late_max_ms=... mac_cycles=... mac_ms=... flash=... flash_pct=...
ram=... stack_margin=... stack_sp_margin=...`` (``stack_sp_margin``: the
lowest stack pointer seen, above the heap: frames reserved but not all
written leave paint below it).
"""

import argparse
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # this tree's jeisson and tests, not a copy installed in the virtualenv
    sys.path.insert(0, REPO)

from round_latency import percentile  # noqa: E402

from jeisson.demo import Fleet  # noqa: E402
from jeisson.wire import board_auth, xbee  # noqa: E402
from tests.firmware_sim import F_CPU, UNO, FirmwareSim, build, provision  # noqa: E402

BOARD = "uno-b"
HOME = "home-b"
KEY = bytes(range(32))
RADIO_ADDRESS = 0x0013A20040A1B2C3
COORDINATOR_ADDRESS = 0x0013A20040000001
BAUD_BYTE_S = 10 / 9600
# A stranger's lines (tests/test_firmware_noisy.py has the same).
NOISE = [b"\n", b"\n\n\n\n", b"PROV SHOW\n", b"SET 1 1 0 7 0123456789abcdef\n", b"\x00\xff garbage ~~ \r\n",
         b"ERR auth\n", b"PING 3 9 fedcba9876543210\n", b"x" * 120 + b"\n"]


class Direct:
    """The home's end of a board's own serial line: raw bytes."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)

    def send(self, line: bytes) -> None:
        os.write(self.fd, line)

    def receive(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return b""
        try:
            return os.read(self.fd, 4096)
        except BlockingIOError:
            return b""

    def close(self) -> None:
        os.close(self.fd)


class Coordinator(Direct):
    """The home's end of an XBee coordinator in API mode 2: each line out in
    a Transmit Request to the board's radio, the board's bytes out of its
    Receive Packets."""

    def __init__(self, path: str):
        super().__init__(path)
        self.decoder = xbee.FrameDecoder(escaped=True)

    def send(self, line: bytes) -> None:
        super().send(xbee.encode_frame(xbee.TransmitRequest(frame_id=0, dest64=RADIO_ADDRESS, data=line),
                                       escaped=True))

    def receive(self, timeout: float) -> bytes:
        frames = self.decoder.feed(super().receive(timeout))
        return b"".join(f.data for f in frames if isinstance(f, xbee.ReceivePacket) and f.src64 == RADIO_ADDRESS)


class BenchHome:
    """A home for one board, just enough to command it: the handshake, sealed
    lines, PING answered."""

    def __init__(self, link: Direct, key: bytes | None):
        self.link = link
        self.key = key
        self.buffer = b""
        self.channel: board_auth.Channel | None = None
        self.seq = 0

    def line(self, timeout: float) -> bytes | None:
        deadline = time.perf_counter() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            self.buffer += self.link.receive(left)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")

    def send(self, body: bytes) -> None:
        self.link.send(self.channel.seal(body) if self.channel else body + b"\n")

    def welcome(self, timeout: float = 20) -> None:
        """Welcome the board's latest HELLO (prompting it with ``ERR hello``
        while it is silent) and take its proof."""
        offer = None
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            line = self.line(1.0)
            if line is None:
                self.link.send(b"ERR hello\n")
            elif line.startswith(b"HELLO "):
                if self.key is None:
                    self.link.send(b"WELCOME 1 60\n")
                    self.channel = None
                    return
                offer = board_auth.welcome(self.key, line, HOME, 60, board_auth.new_nonce())
                self.link.send(offer.welcome)
            elif line.startswith(b"AUTH ") and offer is not None:
                board_auth.check_auth(offer, line)
                self.channel = offer.channel
                return
        raise SystemExit("the board never completed its handshake")

    def command(self, relay: int, state: int, timeout: float = 5) -> float:
        """A SET; the seconds until its ACK (or NAK) was read."""
        self.seq = (self.seq + 1) % 65536
        body = b"SET %d %d %d" % (self.seq, relay, state)
        start = time.perf_counter()
        self.send(body)
        while True:
            line = self.line(timeout - (time.perf_counter() - start))
            if line is None:
                raise SystemExit(f"no answer to {body!r}")
            message = self.channel.open(line) if self.channel and board_auth.looks_sealed(line) else line
            words = message.split()
            if words[:2] in ([b"ACK", b"%d" % self.seq], [b"NAK", b"%d" % self.seq]):
                return time.perf_counter() - start
            if words[:1] == [b"PING"]:
                self.send(b"PONG " + words[1])
            elif words[:1] == [b"HELLO"]:
                raise SystemExit(f"the board restarted its session during the bench: {line!r}")


def provisioned(directory: str, name: str, key: bytes | None, failsafe_s: float) -> str:
    image = os.path.join(directory, f"{name}.eeprom")
    lines = [f"PROV ID {BOARD}", f"PROV KEY {key.hex() if key else 'none'}", "PROV RELAYS 2",
             "PROV RELAY 1 off 0 2000", "PROV RELAY 2 off 0 2000", f"PROV FAILSAFE {failsafe_s}",
             "PROV COLDLOAD 0 0", "PROV MEASURE 2", "PROV SAVE"]
    with FirmwareSim(UNO, eeprom=image) as sim:
        provision(sim, lines)
        sim.wait_sent("HELLO")
    return image


def latencies(home: BenchHome, sets: int, rng: random.Random) -> list[float]:
    home.welcome()
    out = []
    for n in range(sets):
        out.append(home.command(1, (n + 1) % 2))
        # Idle a while, reading (and answering PINGs) meanwhile.
        end = time.perf_counter() + rng.uniform(0.1, 0.3)
        while (left := end - time.perf_counter()) > 0:
            line = home.line(left)
            if line and line.startswith(b"PING") and home.channel:
                home.send(b"PONG " + home.channel.open(line).split()[1])
    return out


def stream_noise(link: Direct, stop: threading.Event) -> None:
    """A stranger on the line: NOISE at 960 bytes a second (9600 8N1)."""
    sent, start, i = 0, time.monotonic(), 0
    while not stop.wait(max(0.0, start + sent * BAUD_BYTE_S - time.monotonic())):
        chunk = NOISE[i % len(NOISE)]
        i += 1
        try:
            link.send(chunk)
        except BlockingIOError:
            continue
        sent += len(chunk)


def failsafe_lateness(sim: FirmwareSim, home: BenchHome, failsafe_s: float, runs: int,
                      rng: random.Random, noisy: bool = False) -> list[float]:
    late = []
    noise = {chunk.decode("latin-1").strip() for chunk in NOISE}
    for _ in range(runs):
        home.buffer = b""
        home.welcome()
        home.command(1, 1)
        # Silent from a random moment: the board may be busy with a line of its own.
        time.sleep(rng.uniform(0, 0.5))
        since = sim.mark()
        home.command(1, 1)
        stop = threading.Event()
        stranger = threading.Thread(target=stream_noise, args=(home.link, stop), daemon=True)
        if noisy:
            stranger.start()
        try:
            fall = sim.wait(lambda e: e.kind == "PIN" and e.words == ("4", "0"), failsafe_s + 10, "the failsafe",
                            since)
        finally:
            stop.set()
            if noisy:
                stranger.join()
        # The home's last line (not the stranger's).
        last = max((e for e in sim.received(since) if e.cycles < fall.cycles and e.text.startswith("SET ")
                    and e.text.strip() not in noise), key=lambda e: e.cycles)
        late.append((fall.cycles - last.cycles) / F_CPU - failsafe_s)
        if noisy:
            # The stranger's last bytes drain before the next run's WELCOME.
            time.sleep(1.5)
    return late


def on_the_board(sim: FirmwareSim) -> tuple[list[float], float]:
    """Each SET's time on the board (its LF in to its answer's LF out, on the
    simulated clock), and the wire's floor: the mean SET and answer, with
    their LFs, at 9600 8N1."""
    times, sizes = [], []
    sent = sim.sent()
    for request in sim.received():
        if not request.text.startswith("SET "):
            continue
        seq = request.words[1]
        answer = next((e for e in sent if e.cycles > request.cycles and e.words[:2] in (("ACK", seq), ("NAK", seq))),
                      None)
        if answer is not None:
            times.append((answer.cycles - request.cycles) / F_CPU)
            sizes.append(len(request.text) + len(answer.text) + 2)
    return times, statistics.mean(sizes) * BAUD_BYTE_S


def sizes() -> tuple[int, int]:
    """Flash (.text + .data) and static RAM (.data + .bss) of the image."""
    out = subprocess.run(["avr-size", "-A", str(UNO)], capture_output=True, text=True, check=True).stdout
    section = {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line.startswith(".")}
    return section.get(".text", 0) + section.get(".data", 0), section.get(".data", 0) + section.get(".bss", 0)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=60)
    parser.add_argument("--failsafe-runs", type=int, default=8)
    parser.add_argument("--failsafe-s", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    build("uno")
    work = tempfile.mkdtemp(prefix="jeisson-bench-firmware-")
    try:
        sealed = provisioned(work, "sealed", KEY, 30)
        plain = provisioned(work, "plain", None, 30)
        quick = provisioned(work, "failsafe", KEY, args.failsafe_s)

        with FirmwareSim(UNO, eeprom=sealed) as sim:
            link = Direct(sim.pty)
            direct = latencies(BenchHome(link, KEY), args.sets, rng)
            link.close()
            mac = sim.pulses(9)
            stack = sim.stack()
            board_side, floor = on_the_board(sim)
        print(f"direct, authenticated: {len(direct)} SETs, p50 {ms(percentile(direct, 0.5))} ms, "
              f"p99 {ms(percentile(direct, 0.99))} ms; on the board (SET's LF in to ACK's LF out) "
              f"p50 {ms(percentile(board_side, 0.5))} ms, p99 {ms(percentile(board_side, 0.99))} ms")

        with FirmwareSim(UNO, eeprom=plain) as sim:
            link = Direct(sim.pty)
            v1 = latencies(BenchHome(link, None), args.sets, rng)
            link.close()
            _, v1_floor = on_the_board(sim)
        print(f"direct, version 1 (KEY none): p50 {ms(percentile(v1, 0.5))} ms, p99 {ms(percentile(v1, 0.99))} ms")

        with open(os.path.join(work, "radio.ini"), "w", encoding="utf-8") as f:
            f.write(f"[radio]\ncoordinator = {work}/coordinator.tty\nmode = api2\n"
                    f"address = {COORDINATOR_ADDRESS:016X}\npresence_s = 30\n\n[device:{BOARD}]\n"
                    f"link = {work}/board.tty\naddress = {RADIO_ADDRESS:016X}\nmode = transparent\n")
        fleet = Fleet(work)
        fleet.start("radio", "jeisson-radio", os.path.join(work, "radio.ini"))
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(f"{work}/board.tty") and time.monotonic() < deadline:
                time.sleep(0.1)
            with FirmwareSim(UNO, eeprom=sealed, serial=f"{work}/board.tty") as sim:
                sim.wait_sent("HELLO")
                link = Coordinator(f"{work}/coordinator.tty")
                radio = latencies(BenchHome(link, KEY), args.sets, rng)
                link.close()
        finally:
            fleet.stop()
        print(f"through the radio simulator: p50 {ms(percentile(radio, 0.5))} ms, "
              f"p99 {ms(percentile(radio, 0.99))} ms")

        with FirmwareSim(UNO, eeprom=quick) as sim:
            link = Direct(sim.pty)
            late = failsafe_lateness(sim, BenchHome(link, KEY), args.failsafe_s, args.failsafe_runs, rng)
            noisy = failsafe_lateness(sim, BenchHome(link, KEY), args.failsafe_s, args.failsafe_runs, rng,
                                      noisy=True)
            stack_after = sim.stack()
            # The firmware's own count of its painted stack, for comparison
            # (PROV STACK: only with the provisioning jumper in).
            sim.command("JUMPER on")
            since = sim.mark()
            link.send(b"PROV STACK\n")
            own = int(sim.wait_sent("PROV STACK ", since=since).words[2])
            link.close()
        print("failsafe after the last byte, less failsafe_after_s (ms): "
              + " ".join(f"{x * 1000:+.1f}" for x in late))
        print("the same on a noisy line (ms): " + " ".join(f"{x * 1000:+.1f}" for x in noisy))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    flash, ram = sizes()
    margin = min(stack["margin"], stack_after["margin"])
    mac_cycles = mac["mean"]
    sp_margin = min(stack["sp_margin"], stack_after["sp_margin"])
    print(f"MAC: {mac['count']} line MACs, {mac['min']}..{mac['max']} cycles ({mac_cycles / F_CPU * 1000:.1f} ms); "
          f"flash {flash} B of 32768, static RAM {ram} B of 2048, stack never touched {margin} B "
          f"(the firmware's own count: {own} B; lowest stack pointer: {sp_margin} B above the heap)")
    print(f"wire floor (the SET and ACK bytes at 9600 8N1): {ms(floor)} ms sealed, {ms(v1_floor)} ms version 1")
    wire_floor = floor
    abs_late = [abs(x) for x in late]
    print(f"set_ack_p50_ms={ms(percentile(direct, 0.5))} set_ack_p99_ms={ms(percentile(direct, 0.99))} "
          f"radio_set_ack_p50_ms={ms(percentile(radio, 0.5))} radio_set_ack_p99_ms={ms(percentile(radio, 0.99))} "
          f"v1_set_ack_p50_ms={ms(percentile(v1, 0.5))} v1_set_ack_p99_ms={ms(percentile(v1, 0.99))} "
          f"wire_floor_ms={ms(wire_floor)} v1_wire_floor_ms={ms(v1_floor)} "
          f"failsafe_late_p50_ms={statistics.median(late) * 1000:.1f} "
          f"failsafe_late_max_ms={max(abs_late) * 1000:.1f} "
          f"noisy_failsafe_late_p50_ms={statistics.median(noisy) * 1000:.1f} "
          f"noisy_failsafe_late_max_ms={max(abs(x) for x in noisy) * 1000:.1f} mac_cycles={mac_cycles} "
          f"mac_ms={mac_cycles / F_CPU * 1000:.2f} flash={flash} flash_pct={flash / 32768 * 100:.1f} ram={ram} "
          f"stack_margin={margin} stack_sp_margin={sp_margin}")


if __name__ == "__main__":
    main()
