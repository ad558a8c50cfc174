"""``bench/attacks.py`` still runs: a few of its attacks against the real
lab (twistd processes on the secure default path), each refused while the
honest homes are served, and its last line as the issue asks.

The hand-made ClientHello of the TLS 1.0/1.1 attacks is checked without a
lab: a server must see exactly the version asked, with no
``supported_versions`` extension that would let it pick TLS 1.3.
"""

import importlib
import os
import re
import struct
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench", "attacks.py")

# The attacks that need no home stopped and no long count: the whole quick
# run, the rogue listener's outage and the floods included, takes minutes.
SMOKE = ("replayed-hello-other-cert", "cert-wrong-ca", "impostor-board", "replayed-set", "junk-lines")


def test_a_few_attacks_against_the_real_lab_are_refused(tmp_path):
    command = [sys.executable, BENCH, "--quick", "--workdir", str(tmp_path / "lab")]
    for name in SMOKE:
        command += ["--only", name]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=REPO)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in SMOKE:
        line = next((line for line in lines if line.startswith(name + " ")), None)
        assert line is not None, f"no line for {name}: {done.stdout[-2000:]}"
        assert re.match(rf"{re.escape(name)} +refused ", line), line
        assert "homes dropped 0, relays moved 0, failsafes 0" in line, line
    assert lines[-1] == f"attacks={len(SMOKE)} refused={len(SMOKE)} honest_homes_dropped=0 relays_moved=0"


@pytest.mark.parametrize("version", [0x0301, 0x0302])
def test_the_hand_made_client_hello_asks_for_that_version_only(version):
    sys.path.insert(0, os.path.dirname(BENCH))
    try:
        attacks = importlib.import_module("attacks")  # by name: bench/ is no package
    finally:
        sys.path.remove(os.path.dirname(BENCH))
    record = attacks._raw_client_hello(version)
    kind, record_version, length = struct.unpack("!BHH", record[:5])
    assert (kind, record_version, length) == (0x16, version, len(record) - 5)
    handshake = record[5:]
    assert handshake[0] == 1  # ClientHello
    assert int.from_bytes(handshake[1:4], "big") == len(handshake) - 4
    body = handshake[4:]
    assert struct.unpack("!H", body[:2])[0] == version
    at = 2 + 32
    at += 1 + body[at]  # session id
    suites = struct.unpack("!H", body[at:at + 2])[0]
    at += 2 + suites
    at += 1 + body[at]  # compression methods
    extensions = body[at + 2:]
    assert struct.unpack("!H", body[at:at + 2])[0] == len(extensions)
    kinds = []
    while extensions:
        kind_, size = struct.unpack("!HH", extensions[:4])
        kinds.append(kind_)
        extensions = extensions[4 + size:]
    assert 0x002B not in kinds, "no supported_versions: the server cannot pick TLS 1.3"
