"""The home's ini file, checked into a frozen ``HomeConfig``.

::

    [home]
    id = home-1
    secret = ...                        ; the credential the aggregator expects
    aggregator = tcp:127.0.0.1:7700      ; client endpoint of the aggregator
    actuators = tcp:7711:interface=127.0.0.1   ; where boards connect
    heartbeat_s = 5                     ; PING period on board links
    command_timeout_s = 3               ; wait for a relay's ACK
    measure_period_s = 5                ; MEASURE period to the aggregator
    opt_out = no                        ; yes (every event), or event ids: the owner opts out

    [actuator:home-1-a]
    relays = 3
    key = boards/home-1-a.key           ; the board's shared key file (jeisson pki board), relative to
                                        ; this file's folder; none: a lab board, unauthenticated
    serial = coordinator                ; reached over this serial port, not TCP
    xbee = 0013A20040A1B2C3              ; its radio's 64-bit address (API modes)

    [serial:coordinator]
    device = /dev/ttyUSB0
    baud = 9600
    mode = api2                         ; transparent, api1 or api2
    retry_s = 5                         ; reopen period while the device is absent
    transmit_retries = 2                ; API modes: resends after a delivery failure

    [load:heater]
    actuator = home-1-a
    relay = 1
    rated_w = 2000
    priority = 5        ; 1 (least) to 100 (most important)
    critical = no       ; critical loads are never shed
    min_on_s = 60
    min_off_s = 60
    max_off_s = 1800    ; optional: a load shed this long comes back on (for min_on_s)
    desired = on        ; the owner's setting outside events

    [tls]                               ; required to start: see jeisson.tls
    ca = pki/ca.pem                     ; paths relative to this file's folder
    cert = pki/homes/home-1.pem         ; its certificate names this home
    key = pki/homes/home-1.key
    name = localhost                    ; default: the host of [home] aggregator

    [api]                               ; optional: see jeisson.web.config
    listen = tcp:8481:interface=127.0.0.1   ; the default; none: no owner's page nor API
    tokens = api-tokens                 ; bearer tokens; off loopback also tls = yes with cert and key (jeisson pki web)

    [store]                             ; optional: on by default (jeisson.store.config)
    path = home-1.sqlite                ; default: this file's name with .sqlite, beside it; none: off
    batch_s = 30                        ; a home's default: commits at most this often (an SD card)
"""

import attrs

from jeisson.backoff import FullJitter, read_backoff
from jeisson.config import IniFile
from jeisson.limits import DEFAULTS, Limits, read_limits
from jeisson.manhole import ManholeConfig, read_manhole
from jeisson.store.config import StoreConfig, read_store
from jeisson.tls import TLSConfig, read_tls, refuse_tls_endpoint
from jeisson.transports.boards import HomeSerialConfig, read_board_key
from jeisson.transports.serial import read_serial_port
from jeisson.web.config import HOME_LISTEN, ApiConfig, read_api
from jeisson.wire import aggregator_home, home_actuator

# The furthest ahead a BUDGET may end (``[home] max_budget_s``): two days,
# above the aggregator's longest event (a day, ``[aggregator] max_event_s``)
# with its windows.  A BUDGET ending later is held only this long: a forged
# or mistaken line cannot shed the home for years.
MAX_BUDGET_S = 2 * 86400.0

# A home's store commits at most this often by default: a BeagleBone's SD
# card wears with every commit.  What is acknowledged (a COMMIT, an owner's
# setting) is committed at once regardless (``Home.durable``).
STORE_BATCH_S = 30.0


@attrs.frozen
class LoadConfig:
    id: str
    actuator: str
    relay: int
    rated_w: float
    priority: int
    critical: bool
    min_on_s: float
    min_off_s: float
    desired: bool
    max_off_s: float | None = None


@attrs.frozen
class HomeConfig:
    id: str
    secret: str
    aggregator: str
    actuators_listen: str | None
    heartbeat_s: float
    command_timeout_s: float
    measure_period_s: float
    actuators: dict[str, int]  # actuator id -> relay count
    loads: dict[str, LoadConfig]
    manhole: ManholeConfig | None = None
    serials: dict[str, HomeSerialConfig] = attrs.Factory(dict)
    opt_out_all: bool = False  # the owner opts out of every event
    opt_out_events: frozenset[str] = frozenset()  # ... or of these
    store: StoreConfig | None = None  # None: the home remembers nothing across restarts
    # actuator id -> its shared key (jeisson.wire.board_auth); None: key = none
    board_keys: dict[str, bytes | None] = attrs.Factory(dict)
    tls: TLSConfig | None = None  # None: no [tls] section, refused at start (jeisson.tls.require)
    limits: Limits = DEFAULTS["home"]  # the boards' listener (jeisson.limits)
    reconnect: FullJitter = FullJitter()  # the uplink's retry policy (jeisson.backoff)
    max_budget_s: float = MAX_BUDGET_S  # a BUDGET ending later is held this long only
    api: ApiConfig | None = None  # [api] (jeisson.web); None: no [api] section, the defaults


def config_from_ini(ini: IniFile) -> HomeConfig:
    s = "home"
    home_id = ini.ident(s, "id")
    secret = ini.text(s, "secret")
    refuse_tls_endpoint(ini, s, "aggregator")
    aggregator = ini.client_endpoint(s, "aggregator")
    tls = read_tls(ini, "home", s, "aggregator", aggregator)
    listen = ini.server_endpoint(s, "actuators", None)
    # Whole seconds: WELCOME carries it to the boards as an integer.
    heartbeat_s = ini.number(s, "heartbeat_s", 5, low=1, high=3600, integer=True)
    command_timeout_s = ini.number(s, "command_timeout_s", 3.0, low=0.1, high=600)
    measure_period_s = ini.number(s, "measure_period_s", 5.0, low=0.5, high=3600)
    opt_out_all, opt_out_events = _opt_out(ini, s)
    actuators = {}
    board_keys: dict[str, bytes | None] = {}
    for name, actuator_id in ini.sections("actuator"):
        if not home_actuator.ID_PATTERN.match(actuator_id):
            raise ini.error(name, None, "an actuator id has at most 16 letters, digits, '_', '.', '-'")
        actuators[actuator_id] = ini.number(name, "relays", low=1, high=home_actuator.MAX_RELAYS, integer=True)
        board_keys[actuator_id] = read_board_key(ini, name)
    serials = _serials(ini, actuators)
    if listen is None and any(a not in _serial_boards(serials) for a in actuators):
        raise ini.error(s, "actuators", "missing: needed for the boards that are not on a serial port")
    loads = {}
    wired: dict[tuple[str, int], str] = {}
    for name, load_id in ini.sections("load"):
        actuator = ini.ident(name, "actuator")
        if actuator not in actuators:
            raise ini.error(name, "actuator", f"no [actuator:{actuator}] section")
        relay = ini.number(name, "relay", low=1, high=actuators[actuator], integer=True)
        if (actuator, relay) in wired:
            raise ini.error(name, "relay", f"relay {relay} of {actuator} already drives load {wired[actuator, relay]}")
        wired[actuator, relay] = load_id
        min_off_s = ini.number(name, "min_off_s", 0.0, low=0, high=86400)
        max_off_s = ini.number(name, "max_off_s", None, low=1, high=86400)
        if max_off_s is not None and max_off_s < min_off_s:
            raise ini.error(name, "max_off_s", f"must be at least min_off_s ({min_off_s:g}): a shed load cannot be "
                                               "due back on before it may switch on")
        loads[load_id] = LoadConfig(
            id=load_id,
            actuator=actuator,
            relay=relay,
            rated_w=ini.number(name, "rated_w", low=0, high=home_actuator.MAX_WATTS),
            priority=ini.number(name, "priority", 1, low=1, high=100, integer=True),
            critical=ini.boolean(name, "critical", False),
            min_on_s=ini.number(name, "min_on_s", 0.0, low=0, high=86400),
            min_off_s=min_off_s,
            desired=ini.boolean(name, "desired", True),
            max_off_s=max_off_s,
        )
    if not loads:
        raise ini.error("load:<id>", None, "no loads configured: add a [load:<id>] section")
    if len(loads) > aggregator_home.MAX_LOADS:
        raise ini.error("load:<id>", None, f"{len(loads)} loads: a home reports at most {aggregator_home.MAX_LOADS}")
    manhole = read_manhole(ini)
    store = read_store(ini, default_batch_s=STORE_BATCH_S)
    limits = read_limits(ini, s)
    reconnect = read_backoff(ini, s)
    max_budget_s = ini.number(s, "max_budget_s", MAX_BUDGET_S, low=60, high=366 * 86400)
    api = read_api(ini, HOME_LISTEN, tls_possible=False) if ini.has_section("api") else None
    ini.check_unknown()
    return HomeConfig(home_id, secret, aggregator, listen, heartbeat_s, command_timeout_s, measure_period_s,
                      actuators, loads, manhole, serials, opt_out_all, opt_out_events, store, tls=tls,
                      board_keys=board_keys, limits=limits, reconnect=reconnect, max_budget_s=max_budget_s,
                      api=api)


def _opt_out(ini: IniFile, section: str) -> tuple[bool, frozenset[str]]:
    """``opt_out``: yes or no for every event, or a list of event ids."""
    value = ini.raw(section, "opt_out", "no")
    if value.lower() in ("yes", "true", "on", "1", "no", "false", "off", "0", ""):
        return ini.boolean(section, "opt_out", False) if value else False, frozenset()
    events = [e.strip() for e in value.split(",")]
    for event in events:
        if not aggregator_home.ID_PATTERN.match(event):
            raise ini.error(section, "opt_out", f"expected yes, no or event ids separated by commas, got {event!r}")
    return False, frozenset(events)


def _serial_boards(serials: dict[str, HomeSerialConfig]) -> set[str]:
    return {actuator for serial in serials.values() for actuator in serial.boards.values()}


def _serials(ini: IniFile, actuators: dict[str, int]) -> dict[str, HomeSerialConfig]:
    ports = {}
    for name, port_id in ini.sections("serial"):
        ports[port_id] = (
            name,
            read_serial_port(ini, name),
            ini.number(name, "transmit_retries", 2, low=0, high=10, integer=True),
        )
    boards: dict[str, dict[int | None, str]] = {port_id: {} for port_id in ports}
    for section, actuator in ini.sections("actuator"):
        serial_id = ini.raw(section, "serial", None)
        address = ini.xbee_address(section, "xbee", None)
        if serial_id is None:
            if address is not None:
                raise ini.error(section, "xbee", "an XBee address needs serial = <a [serial:NAME] section>")
            continue
        if serial_id not in ports:
            raise ini.error(section, "serial", f"no [serial:{serial_id}] section")
        mode = ports[serial_id][1].mode
        if mode == "transparent":
            if boards[serial_id]:
                raise ini.error(section, "serial", f"[serial:{serial_id}] is in transparent mode, which carries one "
                                                   f"board; {next(iter(boards[serial_id].values()))} is already on it")
            boards[serial_id][None] = actuator
            continue
        if address is None:
            raise ini.error(section, "xbee", f"missing: [serial:{serial_id}] is in API mode, so each board needs "
                                             "its radio's 64-bit address (16 hex digits, SH then SL)")
        if address in boards[serial_id]:
            raise ini.error(section, "xbee", f"address {address:016X} is already {boards[serial_id][address]}'s")
        boards[serial_id][address] = actuator
    for serial_id, (section, *_rest) in ports.items():
        if not boards[serial_id]:
            raise ini.error(section, None, "no board uses this serial port: add serial = "
                                           f"{serial_id} to an [actuator:<id>] section, or remove it")
    return {
        serial_id: HomeSerialConfig(serial_id, port, retries, boards[serial_id])
        for serial_id, (_, port, retries) in ports.items()
    }


def config_from_string(text: str, source: str = "<string>") -> HomeConfig:
    return config_from_ini(IniFile(text, source))


def read_config(path: str) -> HomeConfig:
    return config_from_ini(IniFile.read(path))
