"""A serial device kept open: opened at start, retried while absent,
reopened after it is lost (a USB radio unplugged and plugged back).

Twisted's ``SerialPort`` (pyserial underneath) is the transport.  A failure
to open names the device and the reason; while the device stays absent the
service keeps trying every ``retry_s`` seconds, logging again only when the
reason changes.

``SerialPortConfig`` is the port's config, the same for the home's
``[serial:NAME]`` sections and a board's ``[serial]`` section, read by
``read_serial_port``::

    device = /dev/ttyUSB0   ; the radio's serial device
    baud = 9600             ; must match the radio's BD
    mode = api2             ; the radio's AP: transparent, api1 or api2
    retry_s = 5             ; (re)open period while the device is absent
"""

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.config import IniFile
from jeisson.timers import cancel

SERIAL_MODES = ("transparent", "api1", "api2")


@attrs.frozen
class SerialPortConfig:
    """A serial port with an XBee radio on it."""

    device: str
    baudrate: int = 9600
    mode: str = "transparent"  # one of SERIAL_MODES
    retry_s: float = 5.0

    @property
    def escaped(self) -> bool:
        """API mode 2 escapes the frames' special bytes."""
        return self.mode == "api2"


def read_serial_port(ini: IniFile, section: str, names: Mapping[str, str] | None = None) -> SerialPortConfig:
    """The port's keys of ``section``: ``device``, ``baud``, ``mode``, ``retry_s``.

    ``names``: other names for some of them (an older form of a file).
    """
    def key(name: str) -> str:
        return (names or {}).get(name, name)

    return SerialPortConfig(
        device=ini.text(section, key("device")),
        baudrate=ini.number(section, key("baud"), 9600, low=300, high=4_000_000, integer=True),
        mode=ini.choice(section, key("mode"), SERIAL_MODES, "transparent"),
        retry_s=ini.number(section, key("retry_s"), 5.0, low=0.1, high=3600),
    )


def _open_serial_port(protocol, device, reactor, baudrate):
    from twisted.internet.serialport import SerialPort

    return SerialPort(protocol, device, reactor, baudrate=baudrate)


class _Watched(Protocol):
    """Forwards to the real protocol and tells the service when the port is lost."""

    def __init__(self, protocol, on_lost):
        self.protocol = protocol
        self._on_lost = on_lost

    def makeConnection(self, transport):
        self.transport = transport
        self.protocol.makeConnection(transport)

    def dataReceived(self, data):
        self.protocol.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # loseConnection() marks the port as disconnecting; a device that
        # vanishes (EOF or an error on read) does not.
        on_purpose = bool(getattr(self.transport, "disconnecting", False))
        try:
            self.protocol.connectionLost(reason)
        finally:
            self._on_lost(reason, on_purpose)


class SerialPortService(Service):
    log = Logger()

    def __init__(self, device: str, baudrate: int, make_protocol: Callable[[], Protocol], clock,
                 retry_s: float = 5.0, open_port=_open_serial_port):
        self.device = device
        self.baudrate = baudrate
        self.make_protocol = make_protocol
        self.clock = clock
        self.retry_s = retry_s
        self._open_port = open_port
        self.port: Any = None  # what open_port returned: a SerialPort
        self.protocol: Protocol | None = None
        self._retry: IDelayedCall | None = None
        self._last_error: str | None = None

    def startService(self):
        super().startService()
        self._open()

    def stopService(self):
        super().stopService()
        cancel(self._retry)
        self._retry = None
        if self.port is not None:
            port, self.port = self.port, None
            port.loseConnection()

    @property
    def is_open(self) -> bool:
        return self.port is not None

    def _open(self) -> None:
        self._retry = None
        protocol = self.make_protocol()
        try:
            self.port = self._open_port(_Watched(protocol, self._lost), self.device, self.clock, self.baudrate)
        except Exception as error:  # pyserial raises SerialException, OSError, ValueError
            reason = _reason(error)
            if reason != self._last_error:
                self.log.warn("cannot open serial device {device}: {reason}; trying again every {retry} s",
                              device=self.device, reason=reason, retry=self.retry_s)
                self._last_error = reason
            self._schedule()
            return
        self.protocol = protocol
        self._last_error = None
        self.log.info("serial device {device} open at {baud} baud", device=self.device, baud=self.baudrate)

    def _lost(self, reason, on_purpose: bool = False) -> None:
        self.port = None
        self.protocol = None
        if not self.running:
            return
        if on_purpose:
            # The link dropped its board (transparent mode has no other way
            # to end a session): not a device fault.
            self.log.info("serial device {device} closed by its link; reopening in {retry} s",
                          device=self.device, retry=self.retry_s)
        else:
            self.log.warn("serial device {device} lost ({reason}); reopening in {retry} s", device=self.device,
                          reason=reason.getErrorMessage() if reason is not None else "unknown", retry=self.retry_s)
        self._schedule()

    def _schedule(self) -> None:
        if self.running and self._retry is None:
            self._retry = self.clock.callLater(self.retry_s, self._open)


def _reason(error: Exception) -> str:
    # pyserial wraps OSError text as "[Errno 2] could not open port X: ...".
    text = str(error) or type(error).__name__
    return text
