"""ZigBee as a user runs it: twistd jeisson-radio, a home with an API-mode
coordinator and a board on its own XBee, all real processes; the radio
network goes away (the coordinator's device disappears) and comes back."""

import os

from jeisson.demo import Fleet
from tests.waiting import wait_for


def test_a_board_on_zigbee_through_the_radio_process_and_a_device_that_returns(tmp_path, credentials):
    work = str(tmp_path)
    (tmp_path / "radio.ini").write_text("""
[radio]
coordinator = coordinator.tty
mode = api2
address = 0013A20040000001
presence_s = 5

[device:board-z]
link = board-z.tty
address = 0013A20040A1B2C3
mode = api1
""")
    (tmp_path / "home.ini").write_text(f"""
[home]
reconnect_base_s = 1
reconnect_cap_s = 4
id = home-z
secret = z
aggregator = tcp:127.0.0.1:9
heartbeat_s = 1

[serial:zigbee]
device = coordinator.tty
mode = api2
retry_s = 0.5

[actuator:board-z]
relays = 1
serial = zigbee
xbee = 0013A20040A1B2C3
key = {credentials.board("board-z")}

[load:lamp]
actuator = board-z
relay = 1
rated_w = 60
""" + credentials.home_tls("home-z"))
    (tmp_path / "board.ini").write_text(f"""
[actuator]
id = board-z
key = {credentials.board("board-z")}
failsafe_after_s = 5
measure_period_s = 0.5

[serial]
device = board-z.tty
mode = api1
retry_s = 0.5
coordinator = 0013A20040000001

[relay:1]
load_w = 60
min_interval_s = 0
""")

    def log(name):
        with open(os.path.join(work, f"{name}.log"), encoding="utf-8", errors="replace") as f:
            return f.read()

    fleet = Fleet(work)
    try:
        fleet.start("radio", "jeisson-radio", str(tmp_path / "radio.ini"))
        wait_for(lambda: os.path.islink(tmp_path / "board-z.tty") and os.path.islink(tmp_path / "coordinator.tty"),
                 15, "the radio's pseudo-terminals")
        fleet.start("home", "jeisson-home", str(tmp_path / "home.ini"))
        fleet.start("board", "jeisson-actuator", str(tmp_path / "board.ini"))
        # The board is welcomed over the radio and its lamp switched on, as its owner wants.
        wait_for(lambda: "actuator board-z connected from xbee:0013A20040A1B2C3" in log("home"), 20,
                 "the board to say HELLO over the radio")
        wait_for(lambda: "relay 1 switched on by the home" in log("board"), 10, "the lamp to be switched on")
        # The radio network goes away: the coordinator's device disappears.
        name, radio = fleet.running.pop(0)
        radio.terminate()
        radio.wait(10)
        wait_for(lambda: "serial device coordinator.tty lost" in log("home"), 10, "the home to notice")
        wait_for(lambda: "cannot open serial device coordinator.tty" in log("home"), 10, "the home to retry")
        wait_for(lambda: "actuator board-z unreachable" in log("home"), 10, "the board to count as unknown")
        # It comes back: the home reopens the device and the board is welcomed again.
        fleet.start("radio-again", "jeisson-radio", str(tmp_path / "radio.ini"))
        wait_for(lambda: log("home").count("actuator board-z connected from xbee:") >= 2, 30,
                 "the board to be welcomed again")
        assert fleet.dead() == []
        for name in ("home", "board", "radio", "radio-again"):
            assert "Traceback" not in log(name), (name, log(name)[-2000:])
    finally:
        fleet.stop()
