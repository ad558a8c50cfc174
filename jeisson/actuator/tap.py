"""``twistd jeisson-actuator --config FILE``: a software relay board."""

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger

from jeisson.actuator.board import Board
from jeisson.actuator.config import read_config
from jeisson.actuator.home_link import session_factory
from jeisson.options import ConfigOptions, config_of
from jeisson.transports.boards import BoardSerialConfig, board_serial_service
from jeisson.transports.serial import SerialPortService
from jeisson.transports.stream import LineLinkFactory
from jeisson.wire import home_actuator


class Options(ConfigOptions):
    read_config = staticmethod(read_config)


class BoardService(Service):
    """Powers the board up and down (``Board.start`` and ``stop``): at
    start-up every relay opens, the cold-load pickup is drawn and the
    failsafe starts counting, whether or not the home is ever reached; at
    shutdown the relays open."""

    log = Logger()

    def __init__(self, board: Board):
        self.board = board

    def startService(self):
        super().startService()
        config = self.board.config
        serial = config.serial
        where = config.home if serial is None else f"{serial.port.device} ({serial.port.mode} XBee)"
        self.log.info("actuator {id} connecting to home at {endpoint} ({auth})", id=config.id, endpoint=where,
                      auth="authenticated: board protocol version 2" if config.key is not None else
                      "NOT authenticated: key = none, board protocol version 1")
        self.board.start()

    def stopService(self):
        self.board.stop()
        return super().stopService()


def makeService(options, reactor=None) -> MultiService:
    """The actuator: the board, then the connection to its home.

    ``reactor`` is for tests; twistd passes only ``options``.
    """
    if reactor is None:
        from twisted.internet import reactor
    config = config_of(options, read_config)
    board = Board.from_config(config, reactor)
    top = MultiService()
    # Started first and stopped last, so the failsafe covers the whole run.
    BoardService(board).setServiceParent(top)
    if config.serial is not None:
        serial_service(board, config.serial, reactor).setServiceParent(top)
        return top
    client = ClientService(
        clientFromString(reactor, config.home),
        LineLinkFactory(home_actuator.MAX_LINE, session_factory(board)),
        retryPolicy=backoffPolicy(initialDelay=0.5, maxDelay=10),
        clock=reactor,
    )
    client.setServiceParent(top)
    return top


def serial_service(board: Board, serial: BoardSerialConfig, reactor) -> SerialPortService:
    """The board on the serial port to its XBee (``jeisson.transports.boards``)."""
    return board_serial_service(serial, session_factory(board), reactor)
