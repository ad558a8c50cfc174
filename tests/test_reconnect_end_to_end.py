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
reconnect_base_s = 1
reconnect_cap_s = 4
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


def test_a_home_revoked_while_connected_is_dropped_and_cannot_come_back(tmp_path):
    """``jeisson pki revoke`` while both run: the aggregator rereads its
    revocation list, drops the home, and refuses its certificate after."""
    import subprocess
    import sys

    from jeisson import pki

    folder = str(tmp_path / "pki")
    pki.init(folder)
    pki.issue_home(folder, "home-v")
    pki.issue_board(folder, "board-v")
    [aggregator_port] = free_ports(1)
    (tmp_path / "aggregator.ini").write_text(f"""
[aggregator]
listen = tcp:{aggregator_port}:interface=127.0.0.1
heartbeat_s = 1

[home:home-v]
secret = v-secret

[tls]
ca = pki/ca.pem
cert = pki/aggregator.pem
key = pki/aggregator.key
crl = pki/crl.pem
crl_poll_s = 0.2
""")
    (tmp_path / "home-v.ini").write_text(f"""
[home]
reconnect_base_s = 1
reconnect_cap_s = 4
id = home-v
secret = v-secret
aggregator = tcp:127.0.0.1:{aggregator_port}
actuators = tcp:0:interface=127.0.0.1

[actuator:board-v]
relays = 1
key = pki/boards/board-v.key

[load:lamp]
actuator = board-v
relay = 1
rated_w = 60

[tls]
ca = pki/ca.pem
cert = pki/homes/home-v.pem
key = pki/homes/home-v.key
""")

    def log(name):
        with open(tmp_path / f"{name}.log", encoding="utf-8", errors="replace") as f:
            return f.read()

    fleet = Fleet(str(tmp_path))
    try:
        fleet.start("aggregator", "jeisson-aggregator", str(tmp_path / "aggregator.ini"))
        fleet.start("home-v", "jeisson-home", str(tmp_path / "home-v.ini"))
        wait_for(lambda: "registered with the aggregator" in log("home-v"), 20, "the home to register")
        revoked = subprocess.run([sys.executable, "-m", "jeisson.cli", "pki", "revoke", folder, "home-v"],
                                 capture_output=True, text=True, timeout=60)
        assert revoked.returncode == 0, revoked.stderr
        wait_for(lambda: "home home-v at 127.0.0.1:" in log("aggregator") and "is revoked; dropping the link"
                 in log("aggregator"), 10, "the aggregator to drop the revoked home")
        wait_for(lambda: "failed: certificate revoked (subject CN home-v)" in log("aggregator"), 20,
                 "the home's next attempt to be refused")
        assert log("home-v").count("registered with the aggregator") == 1
        assert fleet.dead() == []
    finally:
        fleet.stop()
