"""The actuator's ini file, read into a frozen ``ActuatorConfig``.

::

    [actuator]
    id = home-1-a              ; at most 16 characters: the board protocol's limit
    home = tcp:127.0.0.1:7711  ; client endpoint of the home's actuator listener
    failsafe_after_s = 15
    measure_period_s = 2
    noise = 0.02
    seed =

    [relay:1]                  ; relays 1..N, contiguous, N <= 8
    load_w = 2000
    initial = off
    safe_state = off           ; off | on | hold
    min_interval_s = 2
"""

import attrs

from jeisson.config import IniFile
from jeisson.wire import home_actuator

SAFE_STATES = ("off", "on", "hold")


@attrs.frozen
class RelayConfig:
    number: int
    load_w: int
    initial: bool
    safe_state: str
    min_interval_s: float


@attrs.frozen
class ActuatorConfig:
    source: str
    id: str
    home: str
    failsafe_after_s: float
    measure_period_s: float
    noise: float
    seed: int | None
    relays: tuple[RelayConfig, ...]


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
    config = ActuatorConfig(
        source=ini.source,
        id=actuator_id,
        home=ini.client_endpoint(section, "home"),
        failsafe_after_s=ini.number(section, "failsafe_after_s", 15.0, low=1, high=3600),
        measure_period_s=ini.number(section, "measure_period_s", 2.0, low=0.1, high=3600),
        noise=ini.number(section, "noise", 0.02, low=0, high=0.5),
        seed=_seed(ini, section),
        relays=tuple(_relay(ini, section, number) for section, number in _relay_sections(ini)),
    )
    ini.check_unknown()
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


def _relay(ini: IniFile, section: str, number: int) -> RelayConfig:
    return RelayConfig(
        number=number,
        load_w=ini.number(section, "load_w", low=0, high=home_actuator.MAX_WATTS, integer=True),
        initial=ini.choice(section, "initial", ("on", "off"), "off") == "on",
        safe_state=ini.choice(section, "safe_state", SAFE_STATES, "off"),
        min_interval_s=ini.number(section, "min_interval_s", 2.0, low=0, high=3600),
    )
