"""A simulated XBee network on pseudo-terminals, for labs and tests without radios.

``twistd -n jeisson-radio --config radio.ini`` creates one pseudo-terminal
pair per radio and links each slave side at the configured path: the home's
``[serial:...] device`` opens the coordinator's path, each software actuator
its own.  Between them the program plays the radios:

- a *Transmit Request* (0x10) from the coordinator (API mode) reaches the
  radio with that 64-bit address: as raw bytes if it is in transparent mode,
  as a *Receive Packet* (0x90) from the coordinator's address in API mode;
  the coordinator gets a *Transmit Status* (0x8B): success, ``address not
  found`` (0x24) for an unknown address, ``network ACK failure`` (0x21) for
  a radio not heard from within ``presence_s`` (its board is gone);
- what an end device sends (raw bytes in transparent mode, 0x10 frames in
  API mode) reaches the coordinator as a 0x90 from that device's address;
  a 0x10 frame from an end device to another device's address reaches that
  device as a 0x90 from the sender's address, as any radio in range could
  send (a rogue radio, to test that boards take only their home's frames).

::

    [radio]
    coordinator = /tmp/lab/coordinator.tty
    mode = api2                          ; the coordinator's API mode: api1 or api2
    address = 0013A20040000001           ; the coordinator's own 64-bit address
    presence_s = 30

    [device:home-2-a]
    link = /tmp/lab/home-2-a.tty
    address = 0013A20040A1B2C3
    mode = transparent                   ; transparent, api1 or api2
"""

import os
import tty

import attrs
from twisted.application.service import MultiService, Service
from twisted.internet import abstract, fdesc
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from jeisson.config import IniFile
from jeisson.options import ConfigOptions, config_of
from jeisson.wire import xbee

ADDRESS_NOT_FOUND = 0x24
NETWORK_ACK_FAILURE = 0x21


@attrs.frozen
class DeviceConfig:
    name: str
    link: str
    address: int
    mode: str


@attrs.frozen
class RadioConfig:
    coordinator: str
    mode: str
    address: int
    presence_s: float
    devices: tuple[DeviceConfig, ...]


def config_from_ini(ini: IniFile) -> RadioConfig:
    devices = tuple(
        DeviceConfig(name, ini.text(section, "link"), ini.xbee_address(section, "address"),
                     ini.choice(section, "mode", ("transparent", "api1", "api2"), "transparent"))
        for section, name in ini.sections("device")
    )
    config = RadioConfig(
        coordinator=ini.text("radio", "coordinator"),
        mode=ini.choice("radio", "mode", ("api1", "api2"), "api2"),
        address=ini.xbee_address("radio", "address", 0x0013A20040000001),
        presence_s=ini.number("radio", "presence_s", 30.0, low=1, high=86400),
        devices=devices,
    )
    ini.check_unknown()
    if len({d.address for d in devices}) != len(devices):
        raise ini.error("device:<name>", "address", "two devices share an address")
    return config


def read_config(path: str) -> RadioConfig:
    return config_from_ini(IniFile.read(path))


class PtyMaster(abstract.FileDescriptor):
    """The master side of a pseudo-terminal as a transport (as SerialPort is
    for the slave side)."""

    # FileDescriptor.write() drops data unless the transport is connected.
    connected = 1

    def __init__(self, fd: int, protocol, reactor):
        super().__init__(reactor)
        self.fd = fd
        fdesc.setNonBlocking(fd)
        self.protocol = protocol
        protocol.makeConnection(self)
        self.startReading()

    def fileno(self) -> int:
        return self.fd

    def doRead(self):
        return fdesc.readFromFD(self.fd, self.protocol.dataReceived)

    def writeSomeData(self, data):
        return fdesc.writeToFD(self.fd, data)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        os.close(self.fd)
        self.protocol.connectionLost(reason)


class Endpoint(Protocol):
    """The master side of one pseudo-terminal: a radio's serial line."""

    def __init__(self, network: "Network", name: str, mode: str, address: int):
        self.network = network
        self.name = name
        self.mode = mode
        self.address = address
        self.decoder = None if mode == "transparent" else xbee.FrameDecoder(escaped=mode == "api2")
        self.last_heard: float | None = None

    def dataReceived(self, data: bytes) -> None:
        self.last_heard = self.network.clock.seconds()
        if self.decoder is None:
            self.network.from_device(self, data)
            return
        for frame in self.decoder.feed(data):
            if isinstance(frame, xbee.TransmitRequest):
                self.network.transmit(self, frame)

    def write(self, data: bytes) -> None:
        assert self.transport is not None, "the pty is not open"
        self.transport.write(data)

    def write_frame(self, frame) -> None:
        self.write(xbee.encode_frame(frame, escaped=self.mode == "api2"))


class Network:
    log = Logger()

    def __init__(self, config: RadioConfig, clock):
        self.config = config
        self.clock = clock
        self.coordinator: Endpoint | None = None
        self.devices: dict[int, Endpoint] = {}

    def transmit(self, sender: Endpoint, request) -> None:
        if sender is self.coordinator:
            target = self.devices.get(request.dest64)
            delivery = self._deliver_to_device(target, request.data)
        elif request.dest64 in (0, self.config.address):
            # To the coordinator: address 0 or its own.
            self.from_device(sender, request.data)
            delivery = 0
        else:
            # To another device, as any radio in range may send (a rogue
            # radio, say), from the sender's own address.
            target = self.devices.get(request.dest64)
            delivery = self._deliver_to_device(target, request.data, sender.address)
        if request.frame_id:
            sender.write_frame(xbee.TransmitStatus(frame_id=request.frame_id, dest16=0xFFFE, retries=0,
                                                   delivery=delivery, discovery=0))

    def _deliver_to_device(self, target: Endpoint | None, data: bytes, source: int | None = None) -> int:
        if target is None:
            return ADDRESS_NOT_FOUND
        now = self.clock.seconds()
        if target.last_heard is None or now - target.last_heard > self.config.presence_s:
            return NETWORK_ACK_FAILURE
        if target.decoder is None:
            target.write(data)
        else:
            source = self.config.address if source is None else source
            target.write_frame(xbee.ReceivePacket(src64=source, src16=0, options=1, data=data))
        return 0

    def from_device(self, device: Endpoint, data: bytes) -> None:
        if self.coordinator is not None and self.coordinator.transport is not None:
            self.coordinator.write_frame(xbee.ReceivePacket(src64=device.address, src16=0x1234, options=1,
                                                            data=data))


class RadioService(Service):
    """Creates the pseudo-terminals and their links; removes them at stop."""

    log = Logger()

    def __init__(self, config: RadioConfig, reactor):
        self.config = config
        self.reactor = reactor
        self.network = Network(config, reactor)
        self._slaves: list[int] = []
        self._links: list[str] = []
        self._masters: list[PtyMaster] = []

    def _open(self, endpoint: Endpoint, link: str) -> None:
        master, slave = os.openpty()
        # Raw, no echo: a serial line, not a terminal.  Keeping the slave
        # open means a board restarting does not end the radio's line.
        tty.setraw(slave)
        self._slaves.append(slave)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.ttyname(slave), link)
        self._links.append(link)
        self._masters.append(PtyMaster(master, endpoint, self.reactor))
        self.log.info("radio {name} ({address:016X}, {mode}) at {link} -> {tty}", name=endpoint.name,
                      address=endpoint.address, mode=endpoint.mode, link=link, tty=os.ttyname(slave))

    def startService(self):
        super().startService()
        config = self.config
        self.network.coordinator = Endpoint(self.network, "coordinator", config.mode, config.address)
        self._open(self.network.coordinator, config.coordinator)
        for device in config.devices:
            endpoint = Endpoint(self.network, device.name, device.mode, device.address)
            self.network.devices[device.address] = endpoint
            self._open(endpoint, device.link)

    def stopService(self):
        super().stopService()
        for master in self._masters:
            master.loseConnection()
        for link in self._links:
            if os.path.islink(link):
                os.unlink(link)
        # Closing the slaves ends the lines: whoever has a device open reads
        # EIO, as when a USB radio is unplugged.
        for fd in self._slaves:
            os.close(fd)
        self._slaves, self._links, self._masters = [], [], []


class Options(ConfigOptions):
    read_config = staticmethod(read_config)


def makeService(options, reactor=None) -> MultiService:
    if reactor is None:
        from twisted.internet import reactor
    top = MultiService()
    RadioService(config_of(options, read_config), reactor).setServiceParent(top)
    return top
