"""The home's ini file (jeisson.home.config): checked values, and errors that say where."""

import glob
import os

import pytest

from jeisson.config import ConfigError
from jeisson.home.config import HomeConfig, LoadConfig, config_from_string, read_config

HOME = """
[home]
id = home-1
secret = s3cret
aggregator = tcp:127.0.0.1:7700
actuators = tcp:7711:interface=127.0.0.1
"""

BOARD = """
[actuator:home-1-a]
key = none
relays = 3
"""

HEATER = """
[load:heater]
actuator = home-1-a
relay = 1
rated_w = 2000
"""

SOURCE = "etc/jeisson/home-test.ini"


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_string(text, SOURCE)
    return str(caught.value)


def test_a_minimal_config_takes_the_documented_defaults():
    config = config_from_string(HOME + BOARD + HEATER, SOURCE)
    assert isinstance(config, HomeConfig)
    assert (config.id, config.secret) == ("home-1", "s3cret")
    assert config.aggregator == "tcp:127.0.0.1:7700"
    assert config.actuators_listen == "tcp:7711:interface=127.0.0.1"
    assert (config.heartbeat_s, config.command_timeout_s, config.measure_period_s) == (5.0, 3.0, 5.0)
    assert config.actuators == {"home-1-a": 3}
    assert config.loads == {"heater": LoadConfig("heater", "home-1-a", 1, 2000.0, 1, False, 0.0, 0.0, True)}
    assert config.manhole is None


def test_every_load_key_is_read():
    text = HOME + BOARD + HEATER + "priority = 30\ncritical = yes\nmin_on_s = 60\nmin_off_s = 90.5\ndesired = off\n"
    heater = config_from_string(text, SOURCE).loads["heater"]
    assert heater == LoadConfig("heater", "home-1-a", 1, 2000.0, 30, True, 60.0, 90.5, False)


@pytest.mark.parametrize(("word", "value"), [("yes", True), ("On", True), ("1", True), ("TRUE", True),
                                              ("no", False), ("off", False), ("0", False), ("False", False)])
def test_booleans_accept_the_usual_words(word, value):
    config = config_from_string(HOME + BOARD + HEATER + f"critical = {word}\n", SOURCE)
    assert config.loads["heater"].critical is value


def shipped(path, tmp_path) -> str:
    """A shipped ini copied beside a ``pki/boards`` folder holding the key
    of every board it names (as ``jeisson pki board`` would write them)."""
    import re
    import shutil

    from tests.peers import board_key
    text = open(path, encoding="utf-8").read()
    boards = tmp_path / "pki" / "boards"
    boards.mkdir(parents=True, exist_ok=True)
    for board in re.findall(r"^key = pki/boards/(.+)\.key$", text, re.MULTILINE):
        key = boards / f"{board}.key"
        key.write_text(board_key(board).hex() + "\n")
        key.chmod(0o600)
    copy = tmp_path / os.path.basename(path)
    shutil.copy(path, copy)
    return str(copy)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "etc", "jeisson",
                                                               "home-*.ini"))))
def test_the_shipped_home_configs_are_valid(path, tmp_path):
    config = read_config(shipped(path, tmp_path))
    assert config.loads
    for load in config.loads.values():
        assert 1 <= load.relay <= config.actuators[load.actuator]


def test_the_shipped_home_1_config_reads_as_documented(tmp_path):
    config = read_config(shipped(os.path.join(os.path.dirname(__file__), "..", "etc", "jeisson", "home-1.ini"),
                                 tmp_path))
    assert config.actuators == {"home-1-a": 3, "home-1-b": 2}
    assert list(config.loads) == ["heater", "water-heater", "fridge", "ev-charger", "washer"]
    assert config.loads["fridge"].critical and not config.loads["heater"].critical
    assert config.heartbeat_s == 2


# -- errors name the file, the section, the key and what was expected


def test_a_load_on_an_undeclared_actuator():
    message = refused(HOME + BOARD + HEATER.replace("actuator = home-1-a", "actuator = home-1-z"))
    assert message == f"{SOURCE}: [load:heater] actuator: no [actuator:home-1-z] section"


@pytest.mark.parametrize("relay", ["0", "4", "-1", "two"])
def test_a_relay_the_board_does_not_have(relay):
    message = refused(HOME + BOARD + HEATER.replace("relay = 1", f"relay = {relay}"))
    assert message.startswith(f"{SOURCE}: [load:heater] relay: expected a whole number")
    assert repr(relay) in message


def test_the_relay_range_follows_the_boards_relay_count():
    message = refused(HOME + BOARD.replace("relays = 3", "relays = 2") + HEATER.replace("relay = 1", "relay = 3"))
    assert message == f"{SOURCE}: [load:heater] relay: expected a whole number from 1 to 2, got '3'"


def test_two_loads_on_one_relay():
    washer = HEATER.replace("[load:heater]", "[load:washer]")
    message = refused(HOME + BOARD + HEATER + washer)
    assert message == f"{SOURCE}: [load:washer] relay: relay 1 of home-1-a already drives load heater"


@pytest.mark.parametrize("priority", ["0", "101", "2.5"])
def test_a_priority_outside_1_to_100(priority):
    message = refused(HOME + BOARD + HEATER + f"priority = {priority}\n")
    assert message.startswith(f"{SOURCE}: [load:heater] priority: expected a whole number")
    assert repr(priority) in message


def test_a_bad_boolean():
    message = refused(HOME + BOARD + HEATER + "critical = maybe\n")
    assert message == f"{SOURCE}: [load:heater] critical: expected yes or no, got 'maybe'"


def test_an_unknown_key_lists_the_known_ones():
    message = refused(HOME + BOARD + HEATER + "colour = red\n")
    assert message.startswith(f"{SOURCE}: [load:heater] colour: unknown key (known keys here: ")
    assert "min_on_s" in message and "rated_w" in message


def test_an_unknown_key_in_the_home_section():
    message = refused(HOME + "heartbeat = 5\n" + BOARD + HEATER)
    assert message.startswith(f"{SOURCE}: [home] heartbeat: unknown key")


def test_an_unknown_section():
    message = refused(HOME + BOARD + HEATER + "[relay:1]\nload_w = 5\n")
    assert message == f"{SOURCE}: [relay:1]: unknown section"


def test_no_loads():
    message = refused(HOME + BOARD)
    assert message.startswith(f"{SOURCE}: ")
    assert "no loads configured" in message and "[load:<id>]" in message


@pytest.mark.parametrize(("key", "value"), [("rated_w", "-1"), ("rated_w", "70000"), ("min_on_s", "-5"),
                                            ("min_off_s", "nan"), ("rated_w", "lots")])
def test_numbers_out_of_range(key, value):
    message = refused(HOME + BOARD + HEATER.replace("rated_w = 2000\n", "") + f"{key} = {value}\n"
                      + ("rated_w = 2000\n" if key != "rated_w" else ""))
    assert message.startswith(f"{SOURCE}: [load:heater] {key}: expected a number")


def test_a_missing_rated_power():
    message = refused(HOME + BOARD + HEATER.replace("rated_w = 2000\n", ""))
    assert message == f"{SOURCE}: [load:heater] rated_w: missing key"


def test_an_actuator_without_its_relay_count():
    message = refused(HOME + BOARD.replace("relays = 3\n", "") + HEATER)
    assert message == f"{SOURCE}: [actuator:home-1-a] relays: missing key"


def test_an_actuator_with_too_many_relays():
    message = refused(HOME + BOARD.replace("relays = 3", "relays = 9") + HEATER)
    assert message.startswith(f"{SOURCE}: [actuator:home-1-a] relays: expected a whole number from 1 to 8")


def test_an_actuator_id_too_long_for_a_board():
    board = "[actuator:a-very-long-board-id-1]\nrelays = 1\n"
    message = refused(HOME + board + HEATER.replace("home-1-a", "a-very-long-board-id-1"))
    assert message.startswith(f"{SOURCE}: [actuator:a-very-long-board-id-1]: an actuator id has at most 16")


@pytest.mark.parametrize(("key", "value"), [("heartbeat_s", "0"), ("command_timeout_s", "0"),
                                            ("measure_period_s", "0.1")])
def test_home_periods_out_of_range(key, value):
    message = refused(HOME + f"{key} = {value}\n" + BOARD + HEATER)
    assert message.startswith(f"{SOURCE}: [home] {key}: expected a ")
    assert "number from" in message


def test_heartbeat_is_whole_seconds():
    # WELCOME gives boards the period as an integer: the home pings at it.
    assert "expected a whole number" in refused(HOME + "heartbeat_s = 2.5\n" + BOARD + HEATER)


@pytest.mark.parametrize("key", ["id", "secret", "aggregator"])
def test_home_keys_are_required(key):
    text = "\n".join(line for line in HOME.splitlines() if not line.startswith(key + " "))
    message = refused(text + BOARD + HEATER)
    assert message == f"{SOURCE}: [home] {key}: missing key"


def test_the_tcp_listener_is_required_for_boards_on_tcp():
    text = "\n".join(line for line in HOME.splitlines() if not line.startswith("actuators "))
    message = refused(text + BOARD + HEATER)
    assert message == f"{SOURCE}: [home] actuators: missing: needed for the boards that are not on a serial port"


def test_a_bad_aggregator_endpoint():
    message = refused(HOME.replace("tcp:127.0.0.1:7700", "carrier-pigeon:7700") + BOARD + HEATER)
    assert message.startswith(f"{SOURCE}: [home] aggregator: not a client endpoint string")


def test_text_that_is_not_ini():
    assert refused("id = home-1\n").startswith(f"{SOURCE}: not a valid ini file")


def test_a_missing_file_names_the_path(tmp_path):
    path = str(tmp_path / "nowhere.ini")
    with pytest.raises(ConfigError, match="cannot read config file .*nowhere.ini"):
        read_config(path)


SERIAL = "[serial:zigbee]\ndevice = /dev/ttyUSB0\nmode = api2\n"


def test_a_board_behind_an_api_coordinator_needs_its_radio_address():
    board = BOARD + "serial = zigbee\n"
    message = refused(HOME + board + SERIAL + HEATER)
    assert message.startswith(f"{SOURCE}: [actuator:home-1-a] xbee: missing: [serial:zigbee] is in API mode")


def test_a_bad_radio_address_is_named():
    board = BOARD + "serial = zigbee\nxbee = 0013A2004\n"
    message = refused(HOME + board + SERIAL + HEATER)
    assert message == (f"{SOURCE}: [actuator:home-1-a] xbee: expected a 64-bit XBee address of 16 hex digits, "
                       "got '0013A2004'")


def test_boards_behind_a_coordinator_map_addresses_to_ids():
    board = BOARD + "serial = zigbee\nxbee = 0013a20040A1B2C3\n"
    config = config_from_string(HOME + board + SERIAL + HEATER, SOURCE)
    assert config.serials["zigbee"].boards == {0x0013A20040A1B2C3: "home-1-a"}
    assert config.serials["zigbee"].port.mode == "api2"


def test_a_serial_port_no_board_uses_is_refused():
    message = refused(HOME + BOARD + SERIAL + HEATER)
    assert message == (f"{SOURCE}: [serial:zigbee]: no board uses this serial port: add serial = zigbee to an "
                       "[actuator:<id>] section, or remove it")


def test_max_off_time_and_opt_out():
    text = (HOME + BOARD + HEATER).replace("rated_w", "min_off_s = 10\nmax_off_s = 900\nrated_w")
    config = config_from_string(text.replace("[actuator:", "opt_out = yes\n[actuator:", 1))
    [load] = config.loads.values()
    assert (load.min_off_s, load.max_off_s) == (10.0, 900.0)
    assert config.opt_out_all and config.opt_out_events == frozenset()
    config = config_from_string((HOME + BOARD + HEATER).replace("[actuator:", "opt_out = gala , peak-2\n[actuator:", 1))
    assert not config.opt_out_all and config.opt_out_events == {"gala", "peak-2"}
    config = config_from_string(HOME + BOARD + HEATER)
    assert not config.opt_out_all and config.opt_out_events == frozenset()
    assert next(iter(config.loads.values())).max_off_s is None


@pytest.mark.parametrize("change, where, what", [
    (("rated_w", "min_off_s = 100\nmax_off_s = 50\nrated_w"), "max_off_s", "at least min_off_s"),
    (("rated_w", "max_off_s = 0\nrated_w"), "max_off_s", "from 1"),
    (("[actuator:", "opt_out = maybe so\n[actuator:"), "[home] opt_out", "event ids"),
])
def test_max_off_time_and_opt_out_errors(change, where, what):
    with pytest.raises(ConfigError) as info:
        config_from_string((HOME + BOARD + HEATER).replace(*change, 1), "home.ini")
    assert where in str(info.value) and what in str(info.value)


# -- the store


def test_the_store_is_on_by_default_beside_the_config_and_commits_every_30_s(tmp_path):
    path = tmp_path / "home-7.ini"
    path.write_text(HOME + BOARD + HEATER)
    store = read_config(str(path)).store
    assert store is not None
    assert (store.path, store.batch_s) == (str(tmp_path / "home-7.sqlite"), 30.0)


def test_the_store_section_sets_its_path_relative_to_the_config_and_its_batch(tmp_path):
    path = tmp_path / "home-7.ini"
    path.write_text(HOME + BOARD + HEATER + "[store]\npath = data/h7.sqlite\nbatch_s = 60\n")
    store = read_config(str(path)).store
    assert store is not None
    assert (store.path, store.batch_s) == (str(tmp_path / "data" / "h7.sqlite"), 60.0)


def test_path_none_turns_the_store_off():
    assert config_from_string(HOME + BOARD + HEATER + "[store]\npath = none\n", SOURCE).store is None


def test_a_bad_store_key_is_named():
    assert "[store] batch_s" in refused(HOME + BOARD + HEATER + "[store]\nbatch_s = 0\n")
    assert "[store] bacth_s: unknown key" in refused(HOME + BOARD + HEATER + "[store]\nbacth_s = 5\n")
