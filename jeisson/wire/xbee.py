"""XBee API frames (Zigbee firmware), as a sans-IO codec.

In API mode an XBee radio exchanges structured frames with its host over the
serial port, instead of the plain byte stream of transparent mode.  Every
frame has the same envelope::

    0x7E | length (2 bytes, big-endian) | frame data | checksum

``length`` counts the frame data only.  The frame data starts with the API
identifier (the frame type) and continues with that type's fields; multi-byte
fields are big-endian.  The checksum is ``0xFF`` minus the low byte of the sum
of the frame data, so the frame data and the checksum add up to ``0xFF``
(mod 256).

Radios are set to one of two API modes with ``AP``:

* API mode 1 (``AP=1``): the bytes are sent as they are.  A ``0x7E`` inside a
  frame is ordinary data, so the only way to find the end of a frame is its
  length field.
* API mode 2 (``AP=2``, "escaped"): after the start delimiter, every ``0x7E``
  (start delimiter), ``0x7D`` (escape), ``0x11`` (XON) and ``0x13`` (XOFF) in
  the length, the frame data and the checksum is sent as ``0x7D`` followed by
  the byte XOR ``0x20``.  A bare ``0x7E`` then always starts a frame, which lets
  a receiver resynchronise on a noisy line.  The length and the checksum are
  computed on the unescaped bytes.  Every Digi 64-bit address begins with
  ``0013A2``, so most frames carry at least one escape.

Frames this module knows are ``TransmitRequest`` (0x10), ``TransmitStatus``
(0x8B), ``ReceivePacket`` (0x90) and ``ModemStatus`` (0x8A); any other type is
kept as an ``UnknownFrame``.  ``frame.encode()`` gives the frame data and
``decode_frame_data`` reads it back; ``encode_frame`` builds the whole frame
for the wire.

``FrameDecoder.feed`` takes bytes from the serial port split anywhere and
returns the complete frames.  It never raises; it drops what it cannot use and
counts it:

* ``junk_bytes``: bytes outside any frame (noise before a start delimiter, or a
  header whose length is over ``max_length``, after which the decoder looks for
  a start delimiter again from the byte that follows that header's ``0x7E``);
* ``bad_checksums``: frames whose checksum is wrong.  Decoding resumes after
  the checksum byte, at the next ``0x7E``;
* ``truncated``: (API mode 2 only) frames cut short by a ``0x7E``, which is
  taken as the start of the next frame;
* ``undecodable``: frames with a good checksum whose frame data is too short
  for their type.

In API mode 1 a corrupted length can hide the frames that follow it inside a
frame that then fails its checksum; API mode 2 does not have that weakness.
"""

from collections.abc import Callable
from typing import Any

import attrs

START = 0x7E
ESCAPE = 0x7D
XON = 0x11
XOFF = 0x13
ESCAPE_XOR = 0x20

TRANSMIT_REQUEST = 0x10
MODEM_STATUS = 0x8A
TRANSMIT_STATUS = 0x8B
RECEIVE_PACKET = 0x90

# Addresses with a fixed meaning (Digi's Zigbee user guide).
COORDINATOR_64 = 0x0000000000000000
BROADCAST_64 = 0x000000000000FFFF
UNKNOWN_16 = 0xFFFE

MAX_FRAME_DATA = 0xFFFF

# Delivery status of a Transmit Status frame, from the "Transmit Status frame -
# 0x8B" table of Digi's XBee 3 Zigbee RF Module user guide.  digi-xbee 1.5.0's
# TransmitStatus enum knows every code here, but words three differently:
# 0x01 "No acknowledgement received", 0x2C "Invalid endpoint" and 0x2E
# "Attempted broadcast with APS transmission, but EE=0"; we follow the guide.
DELIVERY_STATUS = {
    0x00: "success",
    0x01: "MAC ACK failure",
    0x02: "CCA failure",
    0x15: "invalid destination endpoint",
    0x21: "network ACK failure",
    0x22: "not joined to network",
    0x23: "self-addressed",
    0x24: "address not found",
    0x25: "route not found",
    0x26: "broadcast source failed to hear a neighbor relay the message",
    0x2B: "invalid binding table index",
    0x2C: "resource error (lack of free buffers, timers, etc.)",
    0x2D: "attempted broadcast with APS transmission",
    0x2E: "attempted unicast with APS transmission, but EE=0",
    0x32: "resource error (lack of free buffers, timers, etc.)",
    0x34: "no secure session connection",
    0x35: "encryption failure",
    0x74: "data payload too large",
    0x75: "indirect message unrequested",
}


class FrameError(ValueError):
    """Frame data that is not a valid frame of its type, or a frame too big to send."""


def _unsigned(bits: int) -> Callable[[Any, "attrs.Attribute[int]", Any], None]:
    """An attrs validator: an ``int`` of ``bits`` bits, unsigned."""
    high = (1 << bits) - 1

    def check(instance: Any, attribute: "attrs.Attribute[int]", value: Any) -> None:
        if type(value) is not int or not 0 <= value <= high:
            raise ValueError(
                f"{type(instance).__name__}.{attribute.name} must be an int from 0 to {high:#x}, got {value!r}"
            )

    return check


_byte = _unsigned(8)
_short = _unsigned(16)
_long = _unsigned(64)
_payload = attrs.validators.instance_of(bytes)


def _int(data: bytes | bytearray, start: int, size: int) -> int:
    return int.from_bytes(data[start : start + size], "big")


@attrs.frozen
class TransmitRequest:
    """Host -> radio: send ``data`` to the radio at ``dest64``.

    ``frame_id`` 0 asks for no Transmit Status; any other value comes back in
    the status.  ``dest16`` is the destination's network address if known,
    else 0xFFFE.  ``radius`` 0 means the network's maximum hops (``NH``).
    """

    api_id = TRANSMIT_REQUEST
    frame_id: int = attrs.field(validator=_byte)
    dest64: int = attrs.field(validator=_long)
    dest16: int = attrs.field(default=UNKNOWN_16, validator=_short)
    radius: int = attrs.field(default=0, validator=_byte)
    options: int = attrs.field(default=0, validator=_byte)
    data: bytes = attrs.field(default=b"", validator=_payload)

    def encode(self) -> bytes:
        return (
            bytes((TRANSMIT_REQUEST, self.frame_id))
            + self.dest64.to_bytes(8, "big")
            + self.dest16.to_bytes(2, "big")
            + bytes((self.radius, self.options))
            + self.data
        )


@attrs.frozen
class TransmitStatus:
    """Radio -> host: how the Transmit Request with ``frame_id`` went.

    ``dest16`` is the network address the packet was delivered to (0xFFFD if
    it was not); ``retries`` counts application retransmissions.  Broadcasts
    are not acknowledged and always report success.
    """

    api_id = TRANSMIT_STATUS
    frame_id: int = attrs.field(validator=_byte)
    dest16: int = attrs.field(validator=_short)
    retries: int = attrs.field(validator=_byte)
    delivery: int = attrs.field(validator=_byte)
    discovery: int = attrs.field(validator=_byte)

    @property
    def ok(self) -> bool:
        return self.delivery == 0

    @property
    def delivery_name(self) -> str:
        return DELIVERY_STATUS.get(self.delivery, f"unknown delivery status 0x{self.delivery:02X}")

    def encode(self) -> bytes:
        return (
            bytes((TRANSMIT_STATUS, self.frame_id))
            + self.dest16.to_bytes(2, "big")
            + bytes((self.retries, self.delivery, self.discovery))
        )


@attrs.frozen
class ReceivePacket:
    """Radio -> host: ``data`` received from the radio at ``src64``.

    ``options`` bits: 0x01 acknowledged, 0x02 broadcast, 0x20 APS-encrypted,
    0x40 sent from an end device.
    """

    api_id = RECEIVE_PACKET
    src64: int = attrs.field(validator=_long)
    src16: int = attrs.field(validator=_short)
    options: int = attrs.field(validator=_byte)
    data: bytes = attrs.field(default=b"", validator=_payload)

    def encode(self) -> bytes:
        return (
            bytes((RECEIVE_PACKET,))
            + self.src64.to_bytes(8, "big")
            + self.src16.to_bytes(2, "big")
            + bytes((self.options,))
            + self.data
        )


@attrs.frozen
class ModemStatus:
    """Radio -> host: an event such as 0x00 reset or 0x02 joined the network."""

    api_id = MODEM_STATUS
    status: int = attrs.field(validator=_byte)

    def encode(self) -> bytes:
        return bytes((MODEM_STATUS, self.status))


@attrs.frozen
class UnknownFrame:
    """A frame of a type this module does not decode, kept as it came."""

    api_id: int = attrs.field(validator=_byte)
    payload: bytes = attrs.field(default=b"", validator=_payload)

    def encode(self) -> bytes:
        return bytes((self.api_id,)) + self.payload


Frame = TransmitRequest | TransmitStatus | ReceivePacket | ModemStatus | UnknownFrame

# Frame data size (API identifier included) of the fixed part of each known type.
_MINIMUM = {TRANSMIT_REQUEST: 14, TRANSMIT_STATUS: 7, RECEIVE_PACKET: 12, MODEM_STATUS: 2}
_NAMES = {
    TRANSMIT_REQUEST: "Transmit Request",
    TRANSMIT_STATUS: "Transmit Status",
    RECEIVE_PACKET: "Receive Packet",
    MODEM_STATUS: "Modem Status",
}


def decode_frame_data(data: bytes) -> Frame:
    """The frame in ``data`` (API identifier and fields, unescaped).

    Raises ``FrameError`` if ``data`` is too short for its type.  Bytes after
    the last field of a fixed-size type are ignored, as digi-xbee does.
    """
    if not data:
        raise FrameError("empty frame data: no API identifier")
    api_id = data[0]
    minimum = _MINIMUM.get(api_id)
    if minimum is None:
        return UnknownFrame(api_id, bytes(data[1:]))
    if len(data) < minimum:
        raise FrameError(
            f"{_NAMES[api_id]} (0x{api_id:02X}) frame data needs at least {minimum} bytes, "
            f"got {len(data)}: {bytes(data).hex(' ')}"
        )
    if api_id == TRANSMIT_REQUEST:
        return TransmitRequest(data[1], _int(data, 2, 8), _int(data, 10, 2), data[12], data[13], bytes(data[14:]))
    if api_id == TRANSMIT_STATUS:
        return TransmitStatus(data[1], _int(data, 2, 2), data[4], data[5], data[6])
    if api_id == RECEIVE_PACKET:
        return ReceivePacket(_int(data, 1, 8), _int(data, 9, 2), data[11], bytes(data[12:]))
    return ModemStatus(data[1])


def checksum(data: bytes) -> int:
    """The checksum byte for frame data ``data``."""
    return 0xFF - (sum(data) & 0xFF)


def escape(data: bytes) -> bytes:
    """``data`` with API mode 2 escapes (for the part of a frame after its 0x7E)."""
    # 0x7D first: the later replacements insert 0x7D bytes that must stay.
    return (
        data.replace(b"\x7d", b"\x7d\x5d")
        .replace(b"\x7e", b"\x7d\x5e")
        .replace(b"\x11", b"\x7d\x31")
        .replace(b"\x13", b"\x7d\x33")
    )


def encode_frame(frame: Frame, escaped: bool) -> bytes:
    """The API frame for ``frame``, escaped for API mode 2 if ``escaped``."""
    data = frame.encode()
    if len(data) > MAX_FRAME_DATA:
        raise FrameError(f"frame data of {len(data)} bytes does not fit the 2-byte length field")
    body = len(data).to_bytes(2, "big") + data + bytes((checksum(data),))
    return bytes((START,)) + (escape(body) if escaped else body)


# Decoder states.
_HUNT = "hunt"  # looking for a start delimiter
_LENGTH = "length"  # reading the two length bytes
_DATA = "data"  # reading the frame data
_CHECKSUM = "checksum"  # reading the checksum byte


@attrs.define
class FrameDecoder:
    """Split a serial byte stream into frames; see the module docstring.

    ``max_length`` bounds the frame data a header may announce, so noise that
    looks like a start delimiter cannot make the decoder wait for 64 KiB.
    """

    escaped: bool
    max_length: int = 255
    junk_bytes: int = attrs.field(default=0, init=False)
    bad_checksums: int = attrs.field(default=0, init=False)
    truncated: int = attrs.field(default=0, init=False)
    undecodable: int = attrs.field(default=0, init=False)
    _state: str = attrs.field(default=_HUNT, init=False)
    _unescape_next: bool = attrs.field(default=False, init=False)
    # The header's raw bytes after its 0x7E, to look again for a start
    # delimiter in them if the length is rejected.
    _header: bytearray = attrs.field(factory=bytearray, init=False)
    _length: int = attrs.field(default=0, init=False)
    _data: bytearray = attrs.field(factory=bytearray, init=False)

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        for byte in data:
            self._step(byte, frames)
        return frames

    @property
    def in_frame(self) -> bool:
        """Whether a frame has started and not yet ended."""
        return self._state != _HUNT

    def _start(self) -> None:
        self._state = _LENGTH
        self._unescape_next = False
        self._header.clear()
        self._data.clear()

    def _step(self, byte: int, frames: list[Frame]) -> None:
        state = self._state
        if state == _HUNT:
            if byte == START:
                self._start()
            else:
                self.junk_bytes += 1
            return
        if self.escaped and byte == START:
            self.truncated += 1
            self._start()
            return
        if state == _LENGTH:
            self._header.append(byte)
        if self.escaped:
            if self._unescape_next:
                self._unescape_next = False
                byte ^= ESCAPE_XOR
            elif byte == ESCAPE:
                self._unescape_next = True
                return
        if state == _LENGTH:
            self._data.append(byte)
            if len(self._data) == 2:
                self._length = _int(self._data, 0, 2)
                self._data.clear()
                if self._length > self.max_length:
                    self._reject_header(frames)
                else:
                    self._state = _DATA if self._length else _CHECKSUM
        elif state == _DATA:
            self._data.append(byte)
            if len(self._data) == self._length:
                self._state = _CHECKSUM
        else:
            self._state = _HUNT
            self._end(byte, frames)

    def _reject_header(self, frames: list[Frame]) -> None:
        # The 0x7E was noise, not a start delimiter; the real one may be among
        # the bytes taken for the length (in API mode 1 at least).
        self.junk_bytes += 1
        self._state = _HUNT
        header = bytes(self._header)
        for byte in header:
            self._step(byte, frames)

    def _end(self, check: int, frames: list[Frame]) -> None:
        data = bytes(self._data)
        self._data.clear()
        if (sum(data) + check) & 0xFF != 0xFF:
            self.bad_checksums += 1
            return
        try:
            frames.append(decode_frame_data(data))
        except FrameError:
            self.undecodable += 1
