"""Authenticated board lines: jeisson-board version 2, without any I/O.

Each board shares a 32-byte key with its home.  At ``HELLO``/``WELCOME``
the two prove to each other that they hold it, with a nonce from each side,
and derive two session keys, one per direction, bound to the whole
``HELLO`` line (the board's id, relay count, states and nonce), the home's
id and the home's nonce.  Every line after carries a counter and a MAC::

    <message> <counter> <mac>

``counter``: decimal, 0 for ``WELCOME`` and ``AUTH``, then 1, 2, ... per
direction (at most ``MAX_COUNTER``); a receiver takes a line only if its
counter is above the last it took in that direction of that session.
``mac``: the first 8 bytes of HMAC-SHA256(direction key, everything before
the last space), as 16 lowercase hex digits.  ``HELLO``, ``REFUSED`` and
``ERR <code>`` (two words) are *plain*: they carry no MAC, and nothing but a
log line or a new ``HELLO`` follows from them.

The byte-exact rules and test vectors are in ``docs/protocol.rst``
("Authentication"); this module is their reference.  ``read_key_file`` is
the one function here that touches a file: the key files of ``jeisson pki
board``.
"""

import hmac
import os
import stat

import attrs

KEY_BYTES = 32
NONCE_BYTES = 8
MAC_BYTES = 8
MAX_COUNTER = 2**32 - 1

# Labels of the derivations (ASCII, each followed by LF in the input).
HOME_TO_BOARD = b"jeisson-board 2 home to board"
BOARD_TO_HOME = b"jeisson-board 2 board to home"
FIRMWARE_NONCE = b"jeisson-board 2 nonce"

# Lines that carry no MAC, whatever the state.
PLAIN_VERBS = (b"HELLO", b"REFUSED")


class AuthError(Exception):
    """A line, WELCOME or AUTH that does not prove the key; ``reason``
    says why, for the log (never for the peer, which is told ``ERR auth``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class KeyFileError(Exception):
    """A board key file that cannot be used, and why (names the file)."""


# ------------------------------------------------------------------ keys


def parse_key(text: str) -> bytes:
    """A key file's text: 64 lowercase hex digits, then a newline (or
    nothing); raises ``ValueError`` saying what is wrong."""
    body = text[:-1] if text.endswith("\n") else text
    if len(body) != 2 * KEY_BYTES:
        raise ValueError(f"expected {2 * KEY_BYTES} hex digits and a newline, got {len(body)} characters")
    if any(c not in "0123456789abcdef" for c in body):
        raise ValueError(f"expected {2 * KEY_BYTES} lowercase hex digits (0-9, a-f), got a character outside them")
    return bytes.fromhex(body)


def read_key_file(path: str) -> tuple[bytes, str | None]:
    """The key in ``path``, and a warning if others may read it (else
    None); raises ``KeyFileError`` naming the file."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read(4 * KEY_BYTES + 1)
    except OSError as e:
        raise KeyFileError(f"cannot read board key file {path}: {e.strerror}") from None
    try:
        key = parse_key(data.decode("ascii"))
    except UnicodeDecodeError:
        raise KeyFileError(f"board key file {path}: not ASCII text; expected {2 * KEY_BYTES} lowercase hex digits "
                           "and a newline (jeisson pki board writes one)") from None
    except ValueError as e:
        raise KeyFileError(f"board key file {path}: {e} (jeisson pki board writes one)") from None
    warning = None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        warning = (f"board key file {path} may be read by others (mode {stat.S_IMODE(mode):04o}); anyone who reads "
                   f"it can command the board: chmod 600 {path}")
    return key, warning


def new_nonce() -> str:
    """A nonce from the OS's random source, as 16 lowercase hex digits."""
    return os.urandom(NONCE_BYTES).hex()


def firmware_nonce(key: bytes, boot: int, count: int) -> str:
    """The nonce a board without a random source sends: never repeated
    (``boot``, a 32-bit counter kept in EEPROM and raised at every power-up,
    with ``count``, the 32-bit number of this HELLO since power-up) and
    unpredictable to whoever lacks the key."""
    data = FIRMWARE_NONCE + b"\n" + boot.to_bytes(4, "big") + count.to_bytes(4, "big")
    return hmac.digest(key, data, "sha256")[:NONCE_BYTES].hex()


# ------------------------------------------------------------------- MACs


def mac(key: bytes, data: bytes) -> bytes:
    """The MAC of ``data``: HMAC-SHA256 truncated to 8 bytes, in hex."""
    return hmac.digest(key, data, "sha256")[:MAC_BYTES].hex().encode("ascii")


def session_keys(key: bytes, hello: bytes, home: str, home_nonce: str) -> tuple[bytes, bytes]:
    """(home to board, board to home): the session's two keys.

    ``hello``: the HELLO line exactly as the board sent it, without its
    terminator; ``home``: the home's id; ``home_nonce``: its nonce in hex.
    """
    context = b"\n" + hello + b"\n" + home.encode("ascii") + b"\n" + home_nonce.encode("ascii")
    return (hmac.digest(key, HOME_TO_BOARD + context, "sha256"),
            hmac.digest(key, BOARD_TO_HOME + context, "sha256"))


def seal(key: bytes, counter: int, body: bytes) -> bytes:
    """``body`` (a line without its terminator) with its counter and MAC,
    and the LF."""
    head = body + b" %d" % counter
    return head + b" " + mac(key, head) + b"\n"


def unseal(key: bytes, line: bytes) -> tuple[bytes, int]:
    """(the message, its counter) of an authenticated line; raises
    ``AuthError`` if it is not one."""
    head, space, tag = line.rpartition(b" ")
    body, space2, counter = head.rpartition(b" ")
    if not space or not space2 or len(tag) != 2 * MAC_BYTES:
        raise AuthError("no MAC")
    if not hmac.compare_digest(mac(key, head), tag):
        raise AuthError("wrong MAC")
    # Checked once the MAC holds: only the sender's own digits get here.
    if not counter.isdigit() or len(counter) > 10 or (counter[:1] == b"0" and counter != b"0"):
        raise AuthError("bad counter")
    return body, int(counter)


def is_plain(line: bytes) -> bool:
    """A line that carries no MAC: ``HELLO``, ``REFUSED``, ``ERR <code>``."""
    # On every line received: the common case (a sealed SET, ACK or MEAS)
    # answered without splitting the line.
    line = line.lstrip(b" ")
    if line.startswith(b"ERR"):
        words = line.split()
        return words[0] == b"ERR" and len(words) == 2
    if not line.startswith((b"HELLO", b"REFUSED")):
        return False
    words = line.split(None, 1)
    return words[0] in PLAIN_VERBS


_HEX = frozenset(b"0123456789abcdef")


def looks_sealed(line: bytes) -> bool:
    """A line that is not plain and ends as an authenticated line does (a
    counter, then 16 hex digits): a board speaking in a session that the
    receiver does not hold."""
    if is_plain(line):
        return False
    words = line.split()
    return (len(words) >= 3 and len(words[-1]) == 2 * MAC_BYTES and set(words[-1]) <= _HEX
            and words[-2].isdigit())


def verb(line: bytes) -> bytes:
    words = line.split(None, 1)
    return words[0] if words else b""


# --------------------------------------------------------------- sessions


@attrs.define
class Channel:
    """One side of a session: its key for the lines it sends and for those
    it receives, and the counters of each direction."""

    send_key: bytes
    receive_key: bytes
    sent: int = 0  # the counter of the last line sent (0: the handshake's)
    received: int = 0  # the counter of the last line taken

    def seal(self, body: bytes) -> bytes:
        """The next line out (``body`` without terminator), with LF."""
        if self.sent >= MAX_COUNTER:
            raise AuthError("the session's counter is spent; say HELLO again")
        self.sent += 1
        return seal(self.send_key, self.sent, body)

    def open(self, line: bytes) -> bytes:
        """The message of an authenticated line from the peer, its counter
        above the last taken; raises ``AuthError``."""
        body, counter = unseal(self.receive_key, line)
        if counter <= self.received:
            raise AuthError(f"counter {counter} not above {self.received}: a replayed or reordered line")
        self.received = counter
        return body


@attrs.frozen
class Offer:
    """The home's side of a handshake under way: what it said, the channel
    that ``AUTH`` must prove."""

    welcome: bytes  # the WELCOME line, with its counter, MAC and LF
    channel: Channel


def welcome(key: bytes, hello: bytes, home: str, heartbeat_s: int, home_nonce: str) -> Offer:
    """The home's answer to a version 2 ``hello`` (the raw line): its
    ``WELCOME`` and the channel an ``AUTH`` must prove."""
    to_board, to_home = session_keys(key, hello, home, home_nonce)
    body = b"WELCOME 2 %d %s %s" % (heartbeat_s, home.encode("ascii"), home_nonce.encode("ascii"))
    return Offer(seal(to_board, 0, body), Channel(to_board, to_home))


def check_auth(offer: Offer, line: bytes) -> None:
    """Does ``line`` (``AUTH 0 <mac>``) prove the key for ``offer``?
    Raises ``AuthError`` if not."""
    body, counter = unseal(offer.channel.receive_key, line)
    if body != b"AUTH" or counter != 0:
        raise AuthError("not AUTH 0")


def accept_welcome(key: bytes, hello: bytes, line: bytes, home: str, home_nonce: str) -> tuple[bytes, Channel]:
    """The board's side: a ``WELCOME`` (raw ``line``; ``home`` and
    ``home_nonce`` as parsed from it) that answers its ``hello`` (the raw
    line it sent).  Returns the board's ``AUTH`` line (with LF) and the
    session's channel; raises ``AuthError`` if the WELCOME does not prove
    the key."""
    to_board, to_home = session_keys(key, hello, home, home_nonce)
    _, counter = unseal(to_board, line)
    if counter != 0:
        raise AuthError("WELCOME's counter is not 0")
    return seal(to_home, 0, b"AUTH"), Channel(to_home, to_board)


def welcome_body(line: bytes) -> bytes:
    """A WELCOME line without its counter and MAC (to parse it before
    checking it); the line as is if it has none."""
    head, _, _ = line.rpartition(b" ")
    body, _, _ = head.rpartition(b" ")
    return body or line


# ------------------------------------------------------------ failures


@attrs.define
class Tally:
    """Authentication failures, logged once per ``interval``, counted.

    ``failed(now)`` returns None to count a failure quietly, or the number
    of failures the log line written now stands for (this one and those
    counted quietly since the last)."""

    interval: float = 60.0
    _logged_at: float | None = None
    _quiet: int = 0

    def failed(self, now: float) -> int | None:
        if self._logged_at is not None and now - self._logged_at < self.interval:
            self._quiet += 1
            return None
        count, self._quiet, self._logged_at = self._quiet + 1, 0, now
        return count
