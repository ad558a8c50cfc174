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

from collections.abc import Callable

import attrs

from jeisson.link import Session, Wire
from jeisson.transports.serial import SerialPortConfig, SerialPortService
from jeisson.transports.stream import LineLink
from jeisson.transports.xbee_coordinator import CoordinatorProtocol
from jeisson.transports.xbee_end_device import EndDeviceProtocol
from jeisson.wire import home_actuator


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
