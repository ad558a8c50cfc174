"""Which wire serves which board link over a serial radio, on each side.

The home and a board share the port's config (``serial.SerialPortConfig``);
each side adds its own: the home the boards behind a port and its resends,
a board the address its frames go to.  From those, the functions here build
the ``SerialPortService`` and the protocol it runs for the port's ``mode``:

============  ===========================================  ======================================
mode          the home (``home_serial_service``)           a board (``board_serial_service``)
============  ===========================================  ======================================
transparent   one ``LineLink``: one board, the line as is  one ``LineLink``: the line as is
api1, api2    ``CoordinatorProtocol``: a ``RadioLink``     ``EndDeviceProtocol``: frames to and
              per configured radio address                 from the coordinator's address
============  ===========================================  ======================================

Every wire here is connectionless (``jeisson.link.Wire``): a serial line or
a radio shows no connection opening or closing.  On the home's side each
also carries one actuator only (``expected_id``), and each starts by asking
its boards for a ``HELLO`` (``ERR hello``): opening a serial port flushes
its input, so a board's ``HELLO`` sent before may be lost.
"""

import os
from collections.abc import Callable

import attrs
from twisted.logger import Logger

from jeisson.config import IniFile
from jeisson.link import Session, Wire
from jeisson.transports.serial import SerialPortConfig, SerialPortService
from jeisson.transports.stream import LineLink
from jeisson.transports.xbee_coordinator import CoordinatorProtocol
from jeisson.transports.xbee_end_device import EndDeviceProtocol
from jeisson.wire import board_auth, home_actuator

log = Logger()

# ``key = none``: a lab board, spoken to in version 1, without authentication.
NO_KEY = "none"


@attrs.frozen
class HomeSerialConfig:
    """A home's ``[serial:NAME]``: its port, and the boards behind it."""

    name: str
    port: SerialPortConfig
    transmit_retries: int  # API modes: resends after a failed delivery
    boards: dict[int | None, str]  # API modes: 64-bit address -> actuator id; transparent: {None: actuator id}


@attrs.frozen
class BoardSerialConfig:
    """A board's ``[serial]``: its port, and where its frames go."""

    port: SerialPortConfig
    coordinator: int = 0  # API modes: 64-bit destination; 0 addresses the coordinator


def read_board_key(ini: IniFile, section: str, key: str = "key", required: bool = True) -> bytes | None:
    """A board's shared key, from the key file named by ``[section] key``
    (a path relative to the ini file's folder, as ``jeisson pki board``
    writes it: ``boards/<id>.key``).  ``none`` means no authentication (a
    lab board, logged as a warning); the key is required unless
    ``required`` is false (then absent reads as None too).  Errors name the
    ini file, section and key, and the key file."""
    value = ini.raw(section, key, None)
    if value is None:
        if required:
            raise ini.error(section, key, "missing: the board's shared key file (jeisson pki board DIR ID writes "
                                          "DIR/boards/ID.key), or none for a lab board without authentication")
        return None
    if value == NO_KEY:
        log.warn("{source}: [{section}] key = none: this board's lines are not authenticated (protocol version 1); "
                 "anyone who reaches its link can command it; for a lab only", source=ini.source, section=section)
        return None
    if not value:
        raise ini.error(section, key, "empty: give the board's key file, or none")
    path = value if os.path.isabs(value) else os.path.join(os.path.dirname(ini.source), value)
    try:
        secret, warning = board_auth.read_key_file(path)
    except board_auth.KeyFileError as e:
        raise ini.error(section, key, str(e)) from None
    if warning is not None:
        log.warn("{source}: [{section}] {key}: {warning}", source=ini.source, section=section, key=key,
                 warning=warning)
    return secret


def home_serial_service(serial: HomeSerialConfig, make_session: Callable[[Wire], Session],
                        clock) -> SerialPortService:
    """The boards behind one of the home's serial radios: one board
    (transparent mode) or every configured radio address behind a
    coordinator (API modes).  ``make_session(wire)``: a board session on
    ``wire``, which names its actuator in ``expected_id``."""
    port = serial.port
    if port.mode == "transparent":
        (actuator,) = serial.boards.values()

        def make_protocol():
            return LineLink(home_actuator.MAX_LINE, make_session, peer=f"serial:{port.device}",
                            connectionless=True, expected_id=actuator, prompt=home_actuator.HELLO_PROMPT)
    else:
        addresses = {address: actuator for address, actuator in serial.boards.items() if address is not None}

        def make_protocol():
            return CoordinatorProtocol(addresses, lambda link, actuator: make_session(link), clock,
                                       escaped=port.escaped, transmit_retries=serial.transmit_retries,
                                       device=port.device)
    return SerialPortService(port.device, port.baudrate, make_protocol, clock, retry_s=port.retry_s)


def board_serial_service(serial: BoardSerialConfig, make_session: Callable[[Wire], Session],
                         clock) -> SerialPortService:
    """A board on the serial port to its own XBee, as firmware would be.

    Transparent mode: the lines go out as they are; a session that ends
    closes the port, and reopening it starts a new one (a new ``HELLO``).
    API modes: frames to and from the coordinator's address.
    """
    port = serial.port
    if port.mode == "transparent":
        def make_protocol():
            return LineLink(home_actuator.MAX_LINE, make_session, peer=f"serial:{port.device}",
                            connectionless=True)
    else:
        def make_protocol():
            return EndDeviceProtocol(make_session, serial.coordinator, clock, escaped=port.escaped,
                                     device=port.device)
    return SerialPortService(port.device, port.baudrate, make_protocol, clock, retry_s=port.retry_s)
