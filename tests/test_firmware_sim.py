"""The reference firmware on a simulated ATmega328P (``firmware/sim``).

First the harness itself, on its own small AVR program
(``firmware/sim/selftest``): its pty carries the UART at the line's pace,
relay pins are reported, simulated time keeps step with the wall clock, an
injected sine is read at its RMS, the EEPROM survives a power cycle, the
stack margin and the cycles between markers are measured.

Then the Uno image (``firmware/uno``) against the real programs: a real
``twistd jeisson-home`` on the board's pty, directly and behind the radio
simulator (``twistd jeisson-radio``) with the board's XBee in transparent
mode, and a real aggregator over mutual TLS.  What a user would observe:
the relays switch when the home commands and only then, every SET is
acknowledged, lines that prove nothing are refused, the failsafe fires
``failsafe_after_s`` after the home's last line (the home killed -9), the
board powers up safe and waits out its cold-load delay (across a power
cycle, its EEPROM kept), and its readings reach the aggregator.

Everything here is built by ``make`` from the tree; a missing toolchain
fails naming the Debian package (``tests/firmware_sim.py``).
"""

import os
import signal
import subprocess

import pytest

from tests.firmware_sim import F_CPU, SELFTEST, FirmwareSim, SerialLine, build, missing_packages


@pytest.fixture(scope="module")
def harness():
    build()


def test_the_toolchain_is_installed():
    # Not a skip: a machine without it fails here, naming what to install.
    assert missing_packages() == [], "apt-get install " + " ".join(missing_packages())


# -- the harness, on its self-test program


def test_the_uart_is_bridged_to_a_pty_and_relay_pins_are_reported(harness, tmp_path):
    with FirmwareSim(SELFTEST, eeprom=str(tmp_path / "ee.bin")) as sim, SerialLine(sim.pty) as line:
        sim.wait_sent("BOOT")
        assert sim.pins() == {4: 0, 5: 0, 6: 0, 7: 0}
        since = sim.mark()
        line.write_line("ECHO hello, board")
        echo = sim.wait_sent("hello, board", since=since)
        line.write_line("PIN 5 1")
        pin = sim.wait(lambda e: e.kind == "PIN", 10, "pin 5 to rise", since)
        assert pin.words == ("5", "1")
        assert sim.pins() == {4: 0, 5: 1, 6: 0, 7: 0}
        sim.wait_sent("PIN 5 1", since=since)
        assert os.read(line.fd, 1000).endswith(b"hello, board\nPIN 5 1\n")
        # 9600 baud, 8N1: the echo's 13 bytes took 13.5 ms on the wire, on
        # the simulated clock, after its request's LF reached the board.
        (request,) = [e for e in sim.received(since) if e.text == "ECHO hello, board"]
        assert echo.cycles - request.cycles >= (1 + 13) * 10 * F_CPU // 9600


def test_simulated_time_keeps_step_with_the_wall_clock(harness, tmp_path):
    with FirmwareSim(SELFTEST) as sim, SerialLine(sim.pty) as line:
        sim.wait_sent("BOOT")
        since = sim.mark()
        line.write_line("MS")
        answer = sim.wait_sent("MS ", since=since)
        (request,) = sim.received(since)
        # The firmware's own clock (a timer interrupt) agrees with the harness's cycles.
        assert abs(int(answer.words[1]) - request.t_us / 1000) <= 2
        now = sim.time()
        # The harness paces the simulation to the wall clock (a loaded machine may lag a little).
        assert abs(now.t_us - now.wall_us) < 100_000, now.raw


def test_an_injected_sine_is_read_at_its_rms(harness):
    with FirmwareSim(SELFTEST) as sim, SerialLine(sim.pty) as line:
        sim.wait_sent("BOOT")
        sim.adc(2, rms_mv=1234.0, offset_mv=2500, hz=50)
        since = sim.mark()
        line.write_line("ADC 2")
        answer = sim.wait_sent("ADC 2 ", since=since)
        _, _, samples, mean, rms = answer.words
        assert int(samples) > 1000
        assert abs(int(mean) / 1000 * 5000 / 1023 - 2500) < 10
        assert abs(int(rms) / 1000 * 5000 / 1023 - 1234.0) / 1234.0 < 0.01


def test_the_eeprom_survives_a_power_cycle(harness, tmp_path):
    image = str(tmp_path / "ee.bin")
    for boot in (1, 2, 3):
        with FirmwareSim(SELFTEST, eeprom=image) as sim:
            assert sim.wait_sent("BOOT").text == f"BOOT {boot}"
    assert os.path.getsize(image) == 1024
    # In-process power cycle too: the RAM cleared, the EEPROM kept.
    with FirmwareSim(SELFTEST, eeprom=image) as sim:
        sim.wait_sent("BOOT 4")
        since = sim.mark()
        sim.command("RESET")
        sim.wait_sent("BOOT 5", since=since)


def test_a_bad_eeprom_image_is_refused_naming_the_file(harness, tmp_path):
    image = tmp_path / "short.bin"
    image.write_bytes(b"\xff" * 100)
    done = subprocess.run([str(SELFTEST.parent / "jeisson-sim"), "--eeprom", str(image), str(SELFTEST)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10)
    assert done.returncode == 2
    assert f"{image} holds 100 bytes; an ATmega328P image is exactly 1024" in done.stdout


def test_the_stack_margin_is_measured_by_painting(harness):
    with FirmwareSim(SELFTEST) as sim, SerialLine(sim.pty) as line:
        sim.wait_sent("BOOT")
        before = sim.stack()
        since = sim.mark()
        line.write_line("DEEP 20")
        sim.wait_sent("DEEP 20", since=since)
        after = sim.stack()
        # 20 nested calls with 32-byte frames: at least 640 bytes deeper.
        assert before["margin"] - after["margin"] >= 20 * 32
        assert after["ramend"] == 0x8FF and after["heap_start"] > 0x100
        # The lowest stack pointer seen is the cautious figure: a frame
        # reserved but not all written leaves paint below it.
        assert 0 <= after["margin"] - after["sp_margin"] < 128


def test_the_cycles_between_two_markers(harness):
    with FirmwareSim(SELFTEST) as sim, SerialLine(sim.pty) as line:
        sim.wait_sent("BOOT")
        for _ in range(3):
            since = sim.mark()
            line.write_line("MARK")
            sim.wait_sent("MARKED", since=since)
        span = sim.command("SPAN 1 2", "SPAN").fields
        # _delay_loop_2(2499): 4 cycles an iteration, plus the loop's set-up
        # (and now and then the 1 kHz timer's interrupt in between).
        assert span["count"] == "3" and 9996 <= int(span["min"]) <= 10010 and int(span["max"]) < 10200


def test_a_silence_is_timed_on_the_simulated_clock(harness):
    # The self-test's failsafe: D7 rises once no line came for 300 ms,
    # measured from the LF of the last line the board received.
    with FirmwareSim(SELFTEST) as sim, SerialLine(sim.pty) as line:
        sim.wait_sent("BOOT")
        since = sim.mark()
        line.write_line("FS 300")
        pin = sim.wait(lambda e: e.kind == "PIN" and e.words == ("7", "1"), 10, "D7 to rise", since)
        (last,) = sim.received(since)
        assert abs((pin.cycles - last.cycles) / F_CPU - 0.300) < 0.003


def test_bad_commands_are_answered_and_the_harness_keeps_going(harness):
    with FirmwareSim(SELFTEST) as sim:
        assert "unknown command BOGUS" in sim.command("BOGUS", "ERR").raw
        assert "ADC wants" in sim.command("ADC 7 100 2500 50", "ERR").raw
        assert "PULSES wants a pin 8-13" in sim.command("PULSES 3", "ERR").raw
        assert "cannot read /nonexistent/ee.bin" in sim.command("EELOAD /nonexistent/ee.bin", "ERR").raw
        assert sim.time().t_us > 0


def test_a_missing_firmware_is_named(harness, tmp_path):
    done = subprocess.run([str(SELFTEST.parent / "jeisson-sim"), str(tmp_path / "none.elf")],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=10)
    assert done.returncode == 2 and f"cannot load firmware {tmp_path / 'none.elf'}" in done.stdout


def test_the_harness_saves_its_eeprom_when_terminated(harness, tmp_path):
    image = str(tmp_path / "ee.bin")
    sim = FirmwareSim(SELFTEST, eeprom=image)
    sim.wait_sent("BOOT 1")
    sim.process.send_signal(signal.SIGTERM)
    sim.wait(lambda e: e.kind == "BYE", 10, "the harness to stop")
    sim.stop()
    with FirmwareSim(SELFTEST, eeprom=image) as sim:
        sim.wait_sent("BOOT 2")
