"""The actuator's ini file and the twistd entry point built from it."""

from pathlib import Path

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.python.usage import UsageError

from jeisson.actuator import tap
from jeisson.actuator.config import ActuatorConfig, RelayConfig, config_from_string, read_config
from jeisson.config import ConfigError
from tests.peers import board_key, board_key_file

KEY = board_key_file("home-1-a")

EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "jeisson" / "actuator-home-1-a.ini"

MINIMAL = f"""
[actuator]
key = {KEY}
id = home-1-a
home = tcp:127.0.0.1:7711
[relay:1]
load_w = 2000
"""


def error_for(text, source="board.ini") -> str:
    with pytest.raises(ConfigError) as info:
        config_from_string(text, source)
    return str(info.value)


def test_the_example_config_reads(tmp_path):
    from tests.test_home_config import shipped
    config = read_config(shipped(str(EXAMPLE), tmp_path))
    assert config.id == "home-1-a"
    assert config.home == "tcp:127.0.0.1:7711"
    assert [relay.number for relay in config.relays] == [1, 2, 3]
    assert all(relay.load_w > 0 for relay in config.relays)


def test_defaults():
    config = config_from_string(MINIMAL, "board.ini")
    assert config == ActuatorConfig(
        source="board.ini",
        id="home-1-a",
        home="tcp:127.0.0.1:7711",
        failsafe_after_s=15,
        measure_period_s=2,
        noise=0.02,
        seed=None,
        relays=(RelayConfig(number=1, load_w=2000, safe_state="off", min_interval_s=2),),
        cold_load_min_s=5,
        cold_load_max_s=30,
        key=board_key("home-1-a"),
    )


def test_every_key_is_read():
    config = config_from_string(
        """
        [actuator]
key = none
        id = b.2
        home = tcp:localhost:7711
        failsafe_after_s = 30
        measure_period_s = 0.5
        noise = 0
        seed = 42
        cold_load_min_s = 0
        cold_load_max_s = 600
        [relay:2]
        load_w = 0
        safe_state = hold
        min_interval_s = 0
        [relay:1]
        load_w = 65535
        safe_state = on
        min_interval_s = 120
        """.replace("\n        ", "\n")
    )
    assert (config.failsafe_after_s, config.measure_period_s, config.noise, config.seed) == (30, 0.5, 0, 42)
    assert (config.cold_load_min_s, config.cold_load_max_s) == (0, 600)
    assert config.relays == (
        RelayConfig(1, 65535, "on", 120),
        RelayConfig(2, 0, "hold", 0),
    )


def test_missing_id_names_file_section_and_key():
    message = error_for(MINIMAL.replace("id = home-1-a\n", ""))
    assert message.startswith("board.ini: [actuator] id:")
    assert "missing" in message


def test_id_longer_than_the_board_protocol_allows():
    message = error_for(MINIMAL.replace("home-1-a", "a-seventeen-chars"))
    assert "board.ini: [actuator] id:" in message and "16" in message


def test_missing_actuator_section():
    assert "board.ini: [actuator]" in error_for("[relay:1]\nload_w = 1\n")


@pytest.mark.parametrize(
    "key, value",
    [
        ("failsafe_after_s", "soon"),
        ("failsafe_after_s", "0"),
        ("measure_period_s", "0.01"),
        ("noise", "0.6"),
        ("seed", "x"),
        ("cold_load_min_s", "-1"),
        ("cold_load_max_s", "3601"),
        ("cold_load_max_s", "later"),
    ],
)
def test_bad_actuator_values(key, value):
    message = error_for(MINIMAL.replace("[relay:1]", f"{key} = {value}\n[relay:1]"))
    assert message.startswith(f"board.ini: [actuator] {key}:")
    assert repr(value) in message


def test_bad_home_endpoint():
    message = error_for(MINIMAL.replace("tcp:127.0.0.1:7711", "nowhere:at:all"))
    assert message.startswith("board.ini: [actuator] home:") and "endpoint" in message


@pytest.mark.parametrize(
    "line, where",
    [
        ("load_w = lots", "[relay:1] load_w"),
        ("load_w = 2000.5", "[relay:1] load_w"),
        ("load_w = 70000", "[relay:1] load_w"),
        ("load_w = 100\nsafe_state = open", "[relay:1] safe_state"),
        ("load_w = 100\nmin_interval_s = -1", "[relay:1] min_interval_s"),
        ("safe_state = on", "[relay:1] load_w"),
    ],
)
def test_bad_relay_values(line, where):
    message = error_for(MINIMAL.replace("load_w = 2000", line))
    assert message.startswith(f"board.ini: {where}:")


def test_a_cold_load_window_upside_down_names_file_section_and_key():
    message = error_for(MINIMAL.replace("[relay:1]", "cold_load_min_s = 40\n[relay:1]"))
    assert message == ("board.ini: [actuator] cold_load_min_s: 40 s is above cold_load_max_s (30 s): the cold-load "
                       "pickup delay is drawn between the two")
    assert error_for(MINIMAL.replace("[relay:1]", "cold_load_min_s = 3\ncold_load_max_s = 2\n[relay:1]")).startswith(
        "board.ini: [actuator] cold_load_min_s:")


def test_a_cold_load_window_of_zero_is_allowed_for_labs():
    config = config_from_string(MINIMAL.replace("[relay:1]", "cold_load_min_s = 0\ncold_load_max_s = 0\n[relay:1]"))
    assert (config.cold_load_min_s, config.cold_load_max_s) == (0, 0)


def test_initial_is_still_accepted_ignored_and_warned_of_naming_the_file():
    from twisted.logger import capturedLogs, formatEvent

    text = MINIMAL.replace("load_w = 2000", "load_w = 2000\ninitial = on") + "[relay:2]\nload_w = 5\ninitial = off\n"
    with capturedLogs() as events:
        config = config_from_string(text, "board.ini")
    assert config.relays == config_from_string(MINIMAL + "[relay:2]\nload_w = 5\n").relays
    (warning,) = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
    assert warning.startswith("board.ini: [relay:1] initial, [relay:2] initial: ignored, accepted for one more "
                              "release; remove it: a board powers up with every relay open")
    assert "cold_load_min_s" in warning


def test_no_warning_without_initial():
    from twisted.logger import capturedLogs

    with capturedLogs() as events:
        config_from_string(MINIMAL)
    assert events == []


def test_initial_in_a_bad_file_gives_the_error_not_the_warning():
    from twisted.logger import capturedLogs

    with capturedLogs() as events:
        error_for(MINIMAL.replace("load_w = 2000", "load_w = 2000\ninitial = on\nlod_w = 3"))
    assert events == []


def test_bad_safe_state_lists_the_choices():
    message = error_for(MINIMAL + "safe_state = open\n")
    assert "off, on, hold" in message and "'open'" in message


def test_unknown_key_is_refused():
    message = error_for(MINIMAL + "lod_w = 3\n")
    assert message.startswith("board.ini: [relay:1] lod_w: unknown key")


def test_unknown_section_is_refused():
    assert error_for(MINIMAL + "[relais:2]\nload_w = 3\n").startswith("board.ini: [relais:2]: unknown section")


def test_relays_must_be_contiguous():
    message = error_for(MINIMAL + "[relay:3]\nload_w = 3\n")
    assert message.startswith("board.ini: [relay:3]:")
    assert "[relay:2] is missing" in message


def test_relays_start_at_one():
    message = error_for(MINIMAL.replace("[relay:1]", "[relay:2]"))
    assert message.startswith("board.ini: [relay:2]:") and "[relay:1] is missing" in message


@pytest.mark.parametrize("name", ["0", "x", "01", "-1"])
def test_relay_names_are_numbers_from_one(name):
    message = error_for(MINIMAL + f"[relay:{name}]\nload_w = 3\n")
    assert message.startswith(f"board.ini: [relay:{name}]:")


def test_at_least_one_relay():
    message = error_for(MINIMAL.replace("[relay:1]\nload_w = 2000\n", ""))
    assert message.startswith("board.ini: [relay:1]:") and "at least one relay" in message


def test_at_most_eight_relays():
    text = MINIMAL + "".join(f"[relay:{n}]\nload_w = 1\n" for n in range(2, 10))
    message = error_for(text)
    assert message.startswith("board.ini: [relay:9]:") and "at most 8" in message


def test_empty_seed_means_random_and_a_number_is_kept():
    assert config_from_string(MINIMAL.replace("[relay:1]", "seed =\n[relay:1]")).seed is None
    assert config_from_string(MINIMAL.replace("[relay:1]", "seed = -3\n[relay:1]")).seed == -3


def test_read_config_of_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_config(str(tmp_path / "nope.ini"))


def test_config_errors_are_usage_errors_for_twistd():
    assert issubclass(ConfigError, UsageError)


# -- the twistd entry point


def test_options_require_config():
    with pytest.raises(UsageError, match="--config is required"):
        tap.Options().parseOptions([])


def test_options_read_the_config(tmp_path):
    path = tmp_path / "board.ini"
    path.write_text(MINIMAL)
    options = tap.Options()
    options.parseOptions(["-c", str(path)])
    assert options["config"] == str(path)
    assert options["parsed"].id == config_from_string(MINIMAL).id


def test_a_bad_config_is_a_usage_error_while_parsing_options(tmp_path):
    # twistd prints a UsageError from option parsing as one clear line.
    path = tmp_path / "bad.ini"
    path.write_text(MINIMAL.replace("load_w = 2000", "load_w = x"))
    with pytest.raises(UsageError, match=r"bad.ini: \[relay:1\] load_w"):
        tap.Options().parseOptions(["--config", str(path)])


def test_make_service_connects_to_the_home_and_runs_the_failsafe(tmp_path):
    path = tmp_path / "board.ini"
    path.write_text(MINIMAL.replace("load_w = 2000", "load_w = 2000\nsafe_state = on").replace(
        "[relay:1]", "cold_load_min_s = 20\ncold_load_max_s = 20\n[relay:1]"))
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    reactor = MemoryReactorClock()
    service = tap.makeService(options, reactor)
    [board] = [child.board for child in service if isinstance(child, tap.BoardService)]
    service.startService()
    host, port, factory, _, _ = reactor.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 7711)
    link = factory.buildProtocol(None)
    transport = StringTransport()
    link.makeConnection(transport)
    assert transport.value().startswith(b"HELLO home-1-a 1 2 0 "), "powered up open"
    # The home accepted the connection but never answers.
    reactor.advance(14.9)
    assert board.states == (False,) and not transport.disconnecting
    reactor.advance(0.1)
    assert board.in_failsafe and board.states == (False,), "safe state on, but not before the cold-load delay"
    assert transport.disconnecting, "no WELCOME within failsafe_after_s: dropped, to connect again"
    link.connectionLost(Failure(ConnectionDone()))
    reactor.advance(5)
    assert board.states == (True,), "the cold-load pickup at 20 s"
    service.stopService()
    assert board.states == (False,), "stopped: powered down"
    assert [call for call in reactor.getDelayedCalls() if call.active()] == []


# -- a board on a serial port to its XBee

ON_SERIAL = MINIMAL.replace("home = tcp:127.0.0.1:7711\n", "") + """
[serial]
device = /dev/ttyS1
baud = 19200
mode = api2
retry_s = 2
coordinator = 0013A20040000001
"""


def test_a_serial_section_has_the_home_serial_keys():
    from jeisson.transports.boards import BoardSerialConfig
    from jeisson.transports.serial import SerialPortConfig

    config = config_from_string(ON_SERIAL)
    assert config.home is None
    assert config.serial == BoardSerialConfig(SerialPortConfig("/dev/ttyS1", 19200, "api2", 2.0), 0x0013A20040000001)
    defaults = config_from_string(MINIMAL.replace("home = tcp:127.0.0.1:7711\n", "") + "[serial]\ndevice = x\n")
    assert defaults.serial == BoardSerialConfig(SerialPortConfig("x", 9600, "transparent", 5.0), 0)


@pytest.mark.parametrize("change, where", [
    (("mode = api2", "mode = api3"), "[serial] mode"),
    (("baud = 19200", "baud = 7"), "[serial] baud"),
    (("coordinator = 0013A20040000001", "coordinator = 12"), "[serial] coordinator"),
    # API modes: frames only from the home's coordinator, whose own address it must know.
    (("coordinator = 0013A20040000001", ""), "[serial] coordinator: missing: in api2 mode"),
    (("coordinator = 0013A20040000001", "coordinator = 0000000000000000"), "[serial] coordinator: missing"),
    (("mode = api2", "xbee_mode = api2"), "[serial] xbee_mode: unknown key"),
])
def test_a_bad_serial_key_names_file_section_and_key(change, where):
    assert error_for(ON_SERIAL.replace(*change)).startswith(f"board.ini: {where}")


def test_a_serial_section_without_its_device():
    assert error_for(ON_SERIAL.replace("device = /dev/ttyS1\n", "")) == "board.ini: [serial] device: missing key"


def test_home_and_a_serial_section_together_are_refused():
    message = error_for(ON_SERIAL.replace("[actuator]\n", "[actuator]\nhome = tcp:127.0.0.1:7711\n"))
    assert message == ("board.ini: [actuator] home: give either home (a TCP endpoint) or a [serial] section, "
                       "not both or none")


def test_serial_port_keys_without_a_device_are_refused_by_name():
    # Today's stray keys: a board on TCP whose file still says how its radio was set.
    message = error_for(MINIMAL.replace("[relay:1]", "baud = 9600\nxbee_mode = api2\ncoordinator = "
                                                     "0000000000000000\n[relay:1]"))
    assert message.startswith("board.ini: [actuator] baud: serial-port keys (baud, xbee_mode, coordinator) "
                              "without a serial device")


def test_the_older_form_is_read_with_a_warning_naming_the_new_one():
    from twisted.logger import capturedLogs, formatEvent

    older = MINIMAL.replace("home = tcp:127.0.0.1:7711\n", "serial = /dev/ttyS1\nbaud = 19200\nxbee_mode = api2\n"
                                                             "retry_s = 2\ncoordinator = 0013A20040000001\n")
    with capturedLogs() as events:
        config = config_from_string(older, "board.ini")
    assert config.serial == config_from_string(ON_SERIAL).serial
    (warning,) = [formatEvent(e) for e in events]
    assert warning.startswith("board.ini: [actuator] serial, baud, xbee_mode, coordinator, retry_s: deprecated")
    assert "[serial]\n    device = /dev/ttyS1\n    baud = 19200\n    mode = api2\n" in warning


def test_the_older_form_beside_a_serial_section_is_refused():
    message = error_for(ON_SERIAL.replace("[actuator]\n", "[actuator]\nxbee_mode = api2\n"))
    assert message.startswith("board.ini: [actuator] xbee_mode: serial-port keys (xbee_mode) belong in the "
                              "[serial] section")


def test_make_service_opens_the_serial_port(tmp_path):
    from jeisson.transports.serial import SerialPortService

    path = tmp_path / "board.ini"
    path.write_text(ON_SERIAL)
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    [port] = [child for child in tap.makeService(options, MemoryReactorClock())
              if isinstance(child, SerialPortService)]
    assert (port.device, port.baudrate, port.retry_s) == ("/dev/ttyS1", 19200, 2.0)
