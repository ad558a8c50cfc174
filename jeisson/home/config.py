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

    [actuator:home-1-a]
    relays = 3

    [load:heater]
    actuator = home-1-a
    relay = 1
    rated_w = 2000
    priority = 5        ; 1 (least) to 100 (most important)
    critical = no       ; critical loads are never shed
    min_on_s = 60
    min_off_s = 60
    desired = on        ; the owner's setting outside events
"""

import attrs

from jeisson.config import IniFile
from jeisson.manhole import ManholeConfig, read_manhole
from jeisson.wire import aggregator_home, home_actuator


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


@attrs.frozen
class HomeConfig:
    id: str
    secret: str
    aggregator: str
    actuators_listen: str
    heartbeat_s: float
    command_timeout_s: float
    measure_period_s: float
    actuators: dict[str, int]  # actuator id -> relay count
    loads: dict[str, LoadConfig]
    manhole: ManholeConfig | None = None


def config_from_ini(ini: IniFile) -> HomeConfig:
    s = "home"
    home_id = ini.ident(s, "id")
    secret = ini.text(s, "secret")
    aggregator = ini.client_endpoint(s, "aggregator")
    listen = ini.server_endpoint(s, "actuators")
    # Whole seconds: WELCOME carries it to the boards as an integer.
    heartbeat_s = ini.number(s, "heartbeat_s", 5, low=1, high=3600, integer=True)
    command_timeout_s = ini.number(s, "command_timeout_s", 3.0, low=0.1, high=600)
    measure_period_s = ini.number(s, "measure_period_s", 5.0, low=0.5, high=3600)
    actuators = {}
    for name, actuator_id in ini.sections("actuator"):
        if not home_actuator.ID_PATTERN.match(actuator_id):
            raise ini.error(name, None, "an actuator id has at most 16 letters, digits, '_', '.', '-'")
        actuators[actuator_id] = ini.number(name, "relays", low=1, high=home_actuator.MAX_RELAYS, integer=True)
    loads = {}
    wired = {}
    for name, load_id in ini.sections("load"):
        actuator = ini.ident(name, "actuator")
        if actuator not in actuators:
            raise ini.error(name, "actuator", f"no [actuator:{actuator}] section")
        relay = ini.number(name, "relay", low=1, high=actuators[actuator], integer=True)
        if (actuator, relay) in wired:
            raise ini.error(name, "relay", f"relay {relay} of {actuator} already drives load {wired[actuator, relay]}")
        wired[actuator, relay] = load_id
        loads[load_id] = LoadConfig(
            id=load_id,
            actuator=actuator,
            relay=relay,
            rated_w=ini.number(name, "rated_w", low=0, high=home_actuator.MAX_WATTS),
            priority=ini.number(name, "priority", 1, low=1, high=100, integer=True),
            critical=ini.boolean(name, "critical", False),
            min_on_s=ini.number(name, "min_on_s", 0.0, low=0, high=86400),
            min_off_s=ini.number(name, "min_off_s", 0.0, low=0, high=86400),
            desired=ini.boolean(name, "desired", True),
        )
    if not loads:
        raise ini.error("load:<id>", None, "no loads configured: add a [load:<id>] section")
    if len(loads) > aggregator_home.MAX_LOADS:
        raise ini.error("load:<id>", None, f"{len(loads)} loads: a home reports at most {aggregator_home.MAX_LOADS}")
    manhole = read_manhole(ini)
    ini.check_unknown()
    return HomeConfig(home_id, secret, aggregator, listen, heartbeat_s, command_timeout_s, measure_period_s,
                      actuators, loads, manhole)


def config_from_string(text: str, source: str = "<string>") -> HomeConfig:
    return config_from_ini(IniFile(text, source))


def read_config(path: str) -> HomeConfig:
    return config_from_ini(IniFile.read(path))
