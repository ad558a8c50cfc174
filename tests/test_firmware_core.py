"""The reference firmware's own build and tests (``firmware/``), run as CI
runs them: the portable core's host tests (``make -C firmware host-test``,
which include the test vectors read out of ``docs/protocol.rst``), and the
Uno image's build with its flash limit (``make -C firmware uno``).

Each build goes to its own scratch folder (``BUILD=...``), from nothing, so
a stale object cannot hide a broken build.  A missing toolchain fails the
test naming the Debian package to install; nothing is skipped.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parent.parent / "firmware"
PROTOCOL_DOC = FIRMWARE.parent / "docs" / "protocol.rst"
FLASH_LIMIT = 24576  # 75 % of the ATmega328P's 32 KiB
TOOLS = {"make": "make", "gcc": "gcc", "avr-gcc": "gcc-avr", "avr-size": "binutils-avr",
         "avr-objcopy": "binutils-avr"}


def make(*args: str, build: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-C", str(FIRMWARE), f"BUILD={build}", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture
def build(tmp_path: Path) -> Path:
    missing = [f"{tool} (Debian package {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]
    assert not missing, f"the firmware's toolchain is missing: {', '.join(missing)}"
    return tmp_path


def test_core_host_tests_pass(build):
    result = make("host-test", build=build)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(r"^(\d+) checks, (\d+) failed, (\d+) tests$", result.stdout, re.MULTILINE)
    assert summary is not None, result.stdout
    checks, failed, tests = map(int, summary.groups())
    assert failed == 0 and checks > 400 and tests >= 25, summary.group(0)


def test_core_host_tests_fail_on_a_wrong_vector(build):
    """The vectors come from the doc: a MAC changed there fails the C tests."""
    doc = PROTOCOL_DOC.read_text(encoding="utf-8")
    line = "H> SET 1 1 1 1 ad1acc45e1bf373c"
    assert line in doc
    wrong = build / "protocol.rst"
    wrong.write_text(doc.replace(line, line[:-1] + "d"), encoding="utf-8")
    result = make("host-test", f"PROTOCOL_DOC={wrong}", build=build)
    assert result.returncode != 0
    assert "SET 1 1 1 1 ad1acc45e1bf373d" in result.stderr


def test_vectors_script_refuses_a_doc_without_vectors(build):
    doc = build / "protocol.rst"
    doc.write_text("Test vectors\n~~~~~~~~~~~~\n\nnone here\n\nBoard messages\n--------------\n", encoding="utf-8")
    result = subprocess.run(["python3", str(FIRMWARE / "tests" / "vectors.py"), str(doc)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    assert "RFC 4231 vector" in result.stderr


def _uno_figures(output: str) -> dict[str, float]:
    line = next(line for line in output.splitlines() if line.startswith("flash="))
    return {key: float(value) for key, value in (item.split("=") for item in line.split())}


def test_uno_image_builds_within_the_flash_limit(build):
    result = make("uno", build=build)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = _uno_figures(result.stdout)
    assert figures["flash"] <= FLASH_LIMIT, figures
    assert figures["flash_limit"] == FLASH_LIMIT
    # The static RAM leaves room for the stack and its 512-byte margin.
    assert figures["ram"] <= 2048 - 512 - 400, figures
    for name in ("jeisson-uno.elf", "jeisson-uno.hex"):
        assert (build / "uno" / name).stat().st_size > 0
    hex_lines = (build / "uno" / "jeisson-uno.hex").read_text().splitlines()
    assert hex_lines[-1] == ":00000001FF"  # an Intel HEX file avrdude can flash


def test_uno_build_fails_above_the_flash_limit(build):
    """The limit is enforced: the same image against a limit it exceeds."""
    result = make("uno", "FLASH_LIMIT=4096", build=build)
    assert result.returncode != 0
    assert "above the limit 4096 B" in result.stderr
