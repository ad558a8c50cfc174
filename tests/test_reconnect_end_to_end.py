"""A home started before its aggregator keeps trying, and registers once the
aggregator is up; when the aggregator goes away again, it reconnects to the
new one.  Real twistd processes on loopback, over mutual TLS."""

import os

from jeisson.demo import Fleet, free_ports
from tests.waiting import wait_for


def test_home_keeps_trying_until_the_aggregator_is_up(tmp_path, credentials):
    work = str(tmp_path)
    aggregator_port, board_port = free_ports(2)
    (tmp_path / "aggregator.ini").write_text(f"""
[aggregator]
listen = tcp:{aggregator_port}:interface=127.0.0.1
heartbeat_s = 1

[home:home-r]
secret = r-secret
""" + credentials.aggregator_tls())
    (tmp_path / "home-r.ini").write_text(f"""
[home]
id = home-r
secret = r-secret
aggregator = tcp:127.0.0.1:{aggregator_port}
actuators = tcp:{board_port}:interface=127.0.0.1

[actuator:board-r]
relays = 1
key = {credentials.board("board-r")}

[load:lamp]
actuator = board-r
relay = 1
rated_w = 60
""" + credentials.home_tls("home-r"))

    def home_log():
        with open(os.path.join(work, "home-r.log"), encoding="utf-8", errors="replace") as f:
            return f.read()

    fleet = Fleet(work)
    try:
        fleet.start("home-r", "jeisson-home", str(tmp_path / "home-r.ini"))
        wait_for(lambda: home_log().count("home home-r: no link to the aggregator at tcp:127.0.0.1:"
                                          f"{aggregator_port}; next attempt in") >= 2,
                 15, "the home to retry the absent aggregator")
        assert "registered with the aggregator" not in home_log()
        fleet.start("aggregator", "jeisson-aggregator", str(tmp_path / "aggregator.ini"))
        wait_for(lambda: home_log().count("registered with the aggregator") == 1, 20, "the home to register")
        # The aggregator goes away and comes back: the home notices and returns.
        name, aggregator = fleet.running.pop()
        aggregator.terminate()
        aggregator.wait(10)
        wait_for(lambda: "lost the aggregator" in home_log(), 10, "the home to notice the lost aggregator")
        fleet.start("aggregator-again", "jeisson-aggregator", str(tmp_path / "aggregator.ini"))
        wait_for(lambda: home_log().count("registered with the aggregator") == 2, 30, "the home to register again")
        assert fleet.dead() == []
    finally:
        fleet.stop()
