"""What the board protocol's MAC costs the home per command: ``python bench/board_mac.py``.

A command is a ``SET`` out and its ``ACK`` back.  Two figures, each beside
its baseline without authentication, in the same run:

- the wire: the ``SET`` written and the ``ACK`` read (``home_actuator``),
  with version 2's seal and open (``board_auth.Channel``) or without;
- the session: a real home's ``BoardSession.command()`` and the ``ACK``
  handled, on a board proven with its key or a ``key = none`` board in
  version 1 (the board's lines made beforehand, so only the home is timed).

The last line sums it up: ``mac_us_per_command`` is the session's cost with
the MAC less the one without.
"""

import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # this tree's jeisson, not a copy installed in the virtualenv
    sys.path.insert(0, REPO)

from timing import median_seconds  # noqa: E402

from jeisson.home.board_link import BoardSession  # noqa: E402
from jeisson.home.config import config_from_string  # noqa: E402
from jeisson.home.core import Home  # noqa: E402
from jeisson.wire import board_auth  # noqa: E402
from jeisson.wire import home_actuator as wire  # noqa: E402

COMMANDS = 20000

HOME = """
[home]
id = home-1
secret = s
aggregator = tcp:127.0.0.1:7700
actuators = tcp:7711:interface=127.0.0.1
heartbeat_s = 3600
command_timeout_s = 600

[actuator:a]
relays = 2
key = {key}

[load:l1]
actuator = a
relay = 1
rated_w = 100
desired = off

[load:l2]
actuator = a
relay = 2
rated_w = 100
desired = off

[store]
path = none
"""


class Wire:
    def __init__(self) -> None:
        self.peer = "bench"
        self.connectionless = False
        self.expected_id: str | None = None
        self.sent: list[bytes] = []

    def send_line(self, data: bytes) -> None:
        self.sent.append(data)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def wire_level(key: bytes) -> tuple[float, float]:
    """(plain, sealed) seconds per command: the SET written, the ACK read."""
    to_board, to_home = board_auth.session_keys(key, b"HELLO a 2 2 00 0123456789abcdef", "home-1", "fedcba9876543210")
    commands = [wire.Set(n % 65536, 1 + n % 2, bool(n % 3)) for n in range(COMMANDS)]
    acks = [wire.serialize(wire.Ack(c.seq, c.relay, c.on))[:-1] for c in commands]
    board = board_auth.Channel(to_home, to_board)
    sealed_acks = [board.seal(ack)[:-1] for ack in acks]

    def plain():
        for command, ack in zip(commands, acks, strict=True):
            wire.serialize(command)
            wire.parse_line(ack)

    def sealed():
        home = board_auth.Channel(to_board, to_home)
        for command, ack in zip(commands, sealed_acks, strict=True):
            home.seal(wire.serialize(command)[:-1])
            wire.parse_line(home.open(ack))

    first, second = alternated(plain, sealed)
    return first / COMMANDS, second / COMMANDS


def alternated(first, second, repeats: int = 9) -> tuple[float, float]:
    """The median seconds of each, their runs alternated: on a shared
    machine, both see the same load."""
    a, b = [], []
    for _ in range(repeats):
        a.append(median_seconds(first, 1))
        b.append(median_seconds(second, 1))
    return statistics.median(a), statistics.median(b)


def session_level(folder: str, keyed: bool):
    """A run of ``COMMANDS`` commands through a real home's BoardSession:
    a function that returns the seconds they took."""
    from twisted.internet.task import Clock

    key = os.urandom(32)
    path = os.path.join(folder, "a.key")
    with open(path, "w") as f:
        f.write(key.hex() + "\n")
    os.chmod(path, 0o600)

    def run():
        home = Home(config_from_string(HOME.format(key=path if keyed else "none")), Clock())
        link = Wire()
        session = BoardSession(home, link)
        end = None
        if keyed:
            hello = b"HELLO a 2 2 00 " + board_auth.new_nonce().encode()
            session.line_received(hello)
            welcome = link.sent[-1][:-1]
            parsed = wire.parse_line(board_auth.welcome_body(welcome))
            assert isinstance(parsed, wire.Welcome) and parsed.home is not None and parsed.nonce is not None
            auth, end = board_auth.accept_welcome(key, hello, welcome, parsed.home, parsed.nonce)
            session.line_received(auth[:-1])
        else:
            session.line_received(b"HELLO a 2 1 00")
        assert session.state == "active"
        plan = [(1 + n % 2, n % 4 < 2) for n in range(COMMANDS)]
        acks = []
        for n, (relay, on) in enumerate(plan, start=session._seq + 1):
            line = wire.serialize(wire.Ack(n % 65536, relay, on))
            acks.append((end.seal(line[:-1]) if end else line)[:-1])
        start = time.perf_counter()
        for (relay, on), ack in zip(plan, acks, strict=True):
            session.command(relay, on)
            session.line_received(ack)
        elapsed = time.perf_counter() - start
        assert not session._pending and session.state == "active"
        return elapsed

    return run


def main() -> None:
    plain, sealed = wire_level(os.urandom(32))
    print(f"wire: SET written and ACK read: {plain * 1e6:.2f} us plain, {sealed * 1e6:.2f} us sealed "
          f"(+{(sealed - plain) * 1e6:.2f} us)")
    with tempfile.TemporaryDirectory() as folder:
        runs = (session_level(folder, keyed=False), session_level(folder, keyed=True))
        samples: tuple[list[float], list[float]] = ([], [])
        for _ in range(9):
            for run, kept in zip(runs, samples, strict=True):
                kept.append(run() / COMMANDS)
        v1, v2 = (statistics.median(kept) for kept in samples)
    print(f"session: command() and its ACK handled: {v1 * 1e6:.2f} us in version 1, {v2 * 1e6:.2f} us in "
          f"version 2 (+{(v2 - v1) * 1e6:.2f} us)")
    print(f"wire_plain_us={plain * 1e6:.2f} wire_sealed_us={sealed * 1e6:.2f} session_v1_us={v1 * 1e6:.2f} "
          f"session_v2_us={v2 * 1e6:.2f} mac_us_per_command={(v2 - v1) * 1e6:.2f}")


if __name__ == "__main__":
    main()
