"""The actuator's ini file, read into a frozen ``ActuatorConfig``.

::

    [actuator]
    id = home-1-a              ; at most 16 characters: the board protocol's limit
    home = tcp:127.0.0.1:7711  ; client endpoint of the home's actuator listener,
                               ; or a [serial] section instead
    key = boards/home-1-a.key  ; the key shared with the home (jeisson pki board), relative
                               ; to this file's folder; none: unauthenticated (a lab board)
    failsafe_after_s = 15
    measure_period_s = 2
    noise = 0.02
    seed =
    cold_load_min_s = 5        ; the cold-load pickup delay after power-up is
    cold_load_max_s = 30       ; drawn uniformly between these (0 and 0: none)

    [serial]                   ; the board's serial port to its XBee (instead of home)
    device = /dev/ttyS1
    baud = 9600
    mode = transparent         ; transparent, api1 or api2
    retry_s = 5                ; reopen period while the serial device is absent
    coordinator = 0013A20040000001   ; API modes: the home's coordinator radio (SH+SL): frames go
                                     ; to it, and frames from any other radio are dropped

    [relay:1]                  ; relays 1..N, contiguous, N <= 8
    load_w = 2000
    safe_state = off           ; off | on | hold
    min_interval_s = 2

A board powers up with every relay open and applies its safe states only
after the cold-load pickup delay (``jeisson.actuator.board``).  ``[relay:N]
initial``, which once chose a relay's state at power-up, is still accepted
until the next release, ignored, with a warning.

The ``[serial]`` keys are those of the home's ``[serial:NAME]`` sections
(``jeisson.transports.serial.read_serial_port``).  Until the next release
the older form is still read, with a warning: ``serial = DEVICE``, ``baud``,
``xbee_mode``, ``coordinator`` and ``retry_s`` in ``[actuator]``.
"""

import attrs
from twisted.logger import Logger

from jeisson.config import IniFile
from jeisson.transports.boards import BoardSerialConfig, read_board_key
from jeisson.transports.serial import read_serial_port
from jeisson.wire import home_actuator

SAFE_STATES = ("off", "on", "hold")

# A feeder's boards back from an outage switch their loads back over half a
# minute instead of all at once; a board whose home answers never waits
# (the home's WELCOME puts it in charge, see jeisson.actuator.board).
COLD_LOAD_MIN_S = 5.0
COLD_LOAD_MAX_S = 30.0

log = Logger()

# The older form's keys in [actuator] -> the same in [serial].
_OLD_SERIAL_KEYS = {"serial": "device", "baud": "baud", "xbee_mode": "mode", "coordinator": "coordinator",
                    "retry_s": "retry_s"}


@attrs.frozen
class RelayConfig:
    number: int
    load_w: int
    safe_state: str
    min_interval_s: float


@attrs.frozen
class ActuatorConfig:
    source: str
    id: str
    home: str | None
    failsafe_after_s: float
    measure_period_s: float
    noise: float
    seed: int | None
    relays: tuple[RelayConfig, ...]
    serial: BoardSerialConfig | None = None
    # The cold-load pickup delay after power-up, drawn uniformly in this window.
    cold_load_min_s: float = COLD_LOAD_MIN_S
    cold_load_max_s: float = COLD_LOAD_MAX_S
    # The key shared with the home (jeisson.wire.board_auth); None: key = none.
    key: bytes | None = None


def read_config(path: str) -> ActuatorConfig:
    """Read and check the actuator's ini file; raises ``ConfigError``."""
    return _from_ini(IniFile.read(path))


def config_from_string(text: str, source: str = "<string>") -> ActuatorConfig:
    return _from_ini(IniFile(text, source))


def _from_ini(ini: IniFile) -> ActuatorConfig:
    section = "actuator"
    actuator_id = ini.ident(section, "id")
    # IniFile.ident allows the aggregator protocol's 32 characters; a board's
    # HELLO carries at most 16, and a longer id would only fail at connection.
    if not home_actuator.ID_PATTERN.match(actuator_id):
        raise ini.error(section, "id", f"an actuator id has at most 16 characters, got {actuator_id!r}")
    relay_sections = _relay_sections(ini)
    config = ActuatorConfig(
        source=ini.source,
        id=actuator_id,
        home=ini.client_endpoint(section, "home", None),
        failsafe_after_s=ini.number(section, "failsafe_after_s", 15.0, low=1, high=3600),
        measure_period_s=ini.number(section, "measure_period_s", 2.0, low=0.1, high=3600),
        noise=ini.number(section, "noise", 0.02, low=0, high=0.5),
        seed=_seed(ini, section),
        relays=tuple(_relay(ini, section, number) for section, number in relay_sections),
        serial=_serial(ini, section),
        cold_load_min_s=ini.number(section, "cold_load_min_s", COLD_LOAD_MIN_S, low=0, high=3600),
        cold_load_max_s=ini.number(section, "cold_load_max_s", COLD_LOAD_MAX_S, low=0, high=3600),
        key=read_board_key(ini, section),
    )
    if config.cold_load_min_s > config.cold_load_max_s:
        raise ini.error(section, "cold_load_min_s",
                        f"{config.cold_load_min_s:g} s is above cold_load_max_s ({config.cold_load_max_s:g} s): the "
                        "cold-load pickup delay is drawn between the two")
    # Read before check_unknown (it is no unknown key), warned of once the file is good.
    initial = [name for name, _ in relay_sections if ini.raw(name, "initial", None) is not None]
    if (config.home is None) == (config.serial is None):
        raise ini.error(section, "home", "give either home (a TCP endpoint) or a [serial] section, not both or "
                                         "none")
    ini.check_unknown()
    if initial:
        _warn_initial(ini.source, initial)
    return config


def _serial(ini: IniFile, section: str) -> BoardSerialConfig | None:
    old = {key: ini.raw(section, key, None) for key in _OLD_SERIAL_KEYS}
    given = [key for key, value in old.items() if value is not None]
    if ini.has_section("serial"):
        if given:
            raise ini.error(section, given[0], f"serial-port keys ({', '.join(given)}) belong in the [serial] "
                                               "section, which this file has: move them there")
        return _home_radio(ini, "serial", BoardSerialConfig(read_serial_port(ini, "serial"),
                                                            ini.xbee_address("serial", "coordinator", 0)))
    if not given:
        return None
    if old["serial"] is None:
        raise ini.error(section, given[0], f"serial-port keys ({', '.join(given)}) without a serial device: "
                                           "put them in a [serial] section with its device, or remove them")
    config = _home_radio(ini, section, BoardSerialConfig(
        read_serial_port(ini, section, {"device": "serial", "mode": "xbee_mode"}),
        ini.xbee_address(section, "coordinator", 0)))
    moved = "\n".join(f"    {_OLD_SERIAL_KEYS[key]} = {old[key]}" for key in given)
    log.warn("{source}: [actuator] {keys}: deprecated, read for one more release; write them as a "
             "[serial] section:\n    [serial]\n{moved}", source=ini.source, keys=", ".join(given), moved=moved)
    return config


def _home_radio(ini: IniFile, section: str, config: BoardSerialConfig) -> BoardSerialConfig:
    """In API modes the board takes frames only from its home's coordinator,
    so it must know that radio's own address (16 zeros, the coordinator's
    alias, would say nothing about who sent a frame)."""
    if config.port.mode != "transparent" and config.coordinator == 0:
        raise ini.error(section, "coordinator", f"missing: in {config.port.mode} mode, the 64-bit address (SH then "
                                                "SL, 16 hex digits) of the home's coordinator radio: frames go to it, "
                                                "and frames from any other radio are dropped")
    return config


def _seed(ini: IniFile, section: str) -> int | None:
    # "seed =" (empty) is the documented way to ask for a random seed.
    if ini.raw(section, "seed", "") == "":
        return None
    return ini.number(section, "seed", integer=True)


def _relay_sections(ini: IniFile) -> list[tuple[str, int]]:
    """``[relay:N]`` sections sorted by N, checked to be 1..N without gaps."""
    numbered = []
    for section, name in ini.sections("relay"):
        # Leading zeros refused: [relay:01] and [relay:1] would be the same relay.
        if not name.isdigit() or name != str(int(name)):
            raise ini.error(section, None, f"relay sections are named [relay:1] to [relay:{home_actuator.MAX_RELAYS}]")
        numbered.append((int(name), section))
    numbered.sort()
    if not numbered:
        raise ini.error("relay:1", None, "missing section: an actuator has at least one relay")
    for expected, (number, section) in enumerate(numbered, start=1):
        if number > home_actuator.MAX_RELAYS:
            raise ini.error(section, None, f"a board has at most {home_actuator.MAX_RELAYS} relays")
        if number != expected:
            missing = f"[relay:{expected}] is missing"
            raise ini.error(section, None, f"relays are numbered 1 to N without gaps, but {missing}")
    return [(section, number) for number, section in numbered]


def _warn_initial(source: str, sections: list[str]) -> None:
    # Ignored: a board that powered up into 'initial = on' drew a load its
    # home had not counted, after a power blip in the middle of an event.
    log.warn("{source}: {keys}: ignored, accepted for one more release; remove it: a board powers up with every "
             "relay open, and puts the relays whose safe_state is on back on after the cold-load pickup delay "
             "([actuator] cold_load_min_s to cold_load_max_s) unless its home takes charge first",
             source=source, keys=", ".join(f"[{section}] initial" for section in sections))


def _relay(ini: IniFile, section: str, number: int) -> RelayConfig:
    return RelayConfig(
        number=number,
        load_w=ini.number(section, "load_w", low=0, high=home_actuator.MAX_WATTS, integer=True),
        safe_state=ini.choice(section, "safe_state", SAFE_STATES, "off"),
        min_interval_s=ini.number(section, "min_interval_s", 2.0, low=0, high=3600),
    )
