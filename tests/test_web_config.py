"""``[api]`` in the aggregator's and a home's ini files (jeisson.web.config)."""

import os

import pytest

from jeisson import pki
from jeisson.aggregator import tap as aggregator_tap
from jeisson.aggregator.config import config_from_string
from jeisson.config import ConfigError
from jeisson.home import tap as home_tap
from jeisson.home.config import config_from_string as home_config
from jeisson.web.config import AGGREGATOR_LISTEN, HOME_LISTEN, ApiConfig, check_tokens

AGGREGATOR = """
[aggregator]
listen = tcp:7700:interface=127.0.0.1
[home:h1]
secret = s1
"""

HOME = """
[home]
id = h1
secret = s1
aggregator = tcp:127.0.0.1:7700
actuators = tcp:7711:interface=127.0.0.1
[actuator:a]
relays = 1
key = none
[load:heater]
actuator = a
relay = 1
rated_w = 2000
"""


def api_of(text: str, source: str = "/etc/jeisson/aggregator.ini") -> ApiConfig:
    config = config_from_string(AGGREGATOR + text, source)
    return aggregator_tap.api_config(config, source)


def test_without_a_section_the_api_listens_on_loopback_by_default():
    assert config_from_string(AGGREGATOR).api is None
    api = api_of("")
    assert api.listen == AGGREGATOR_LISTEN and api.loopback and not api.needs_credentials and not api.explicit
    home = home_config(HOME)
    assert home_tap.api_config(home, "h.ini").listen == HOME_LISTEN


def test_none_turns_it_off_and_a_bare_port_is_loopback():
    assert api_of("[api]\nlisten = none\n").listen is None
    api = api_of("[api]\nlisten = 9000\n")
    assert api.listen == "tcp:9000:interface=127.0.0.1" and api.explicit
    assert api_of("[api]\nlisten = tcp:9000\n").listen == "tcp:9000:interface=127.0.0.1"


def test_off_loopback_is_refused_without_credentials_naming_the_file_and_key():
    with pytest.raises(ConfigError) as caught:
        api_of("[api]\nlisten = tcp:8480:interface=0.0.0.0\n")
    message = str(caught.value)
    assert message.startswith("/etc/jeisson/aggregator.ini: [api] listen: tcp:8480:interface=0.0.0.0 is not loopback")
    assert "tls = yes" in message and "tokens" in message


def test_off_loopback_tls_is_needed_tokens_alone_would_travel_in_clear():
    tls = api_of("[api]\nlisten = tcp:8480:interface=0.0.0.0\ntls = yes\nhosts = Jeisson.Example, 10.0.0.5\n")
    assert tls.tls and tls.needs_credentials and tls.hosts == ("jeisson.example", "10.0.0.5")
    both = api_of("[api]\nlisten = tcp:8480:interface=0.0.0.0\ntls = yes\ntokens = pki/api-tokens\n")
    assert both.tokens == "/etc/jeisson/pki/api-tokens" and both.tls
    with pytest.raises(ConfigError, match=r"aggregator.ini: \[api\] listen: tcp:8480:interface=0.0.0.0 is not "
                                          r"loopback: off loopback the API is served over HTTPS only"):
        api_of("[api]\nlisten = tcp:8480:interface=0.0.0.0\ntokens = pki/api-tokens\n")
    loopback = api_of("[api]\ntokens = pki/api-tokens\n")
    assert loopback.tokens == "/etc/jeisson/pki/api-tokens" and loopback.needs_credentials and not loopback.tls


@pytest.mark.parametrize("text, key, words", [
    ("[api]\nlisten = ssl:8480\n", "listen", "ssl: endpoints are not used"),
    ("[api]\nlisten = nonsense:1\n", "listen", "not a server endpoint"),
    ("[api]\ntls = maybe\n", "tls", "expected yes or no"),
    ("[api]\nrounds_kept = 0\n", "rounds_kept", "expected a whole number"),
    ("[api]\nmax_rows = lots\n", "max_rows", "expected a whole number"),
    ("[api]\nport = 8480\n", "port", "unknown key"),
])
def test_bad_keys_are_named(text, key, words):
    with pytest.raises(ConfigError, match=rf"\[api\] {key}: .*{words}"):
        api_of(text)


def test_a_home_serves_tls_with_its_own_server_certificate_and_tokens():
    with pytest.raises(ConfigError, match=r"\[api\] cert: tls = yes on a home needs the HTTPS server's own "
                                          r"certificate \(its \[tls\] certificate is a client's\): jeisson pki web"):
        home_config(HOME + "[api]\ntls = yes\ntokens = t\n")
    with pytest.raises(ConfigError, match=r"\[api\] tokens: a home's HTTPS API identifies its owner by bearer token"):
        home_config(HOME + "[api]\ntls = yes\ncert = w.pem\nkey = w.key\n")
    with pytest.raises(ConfigError, match=r"\[api\] key: missing key: \[api\] cert and key go together"):
        home_config(HOME + "[api]\ntls = yes\ncert = w.pem\ntokens = t\n")
    with pytest.raises(ConfigError, match=r"\[api\] cert: a server certificate is for HTTPS: set tls = yes"):
        home_config(HOME + "[api]\ncert = w.pem\nkey = w.key\ntokens = t\n")
    api = home_config(HOME + "[api]\nlisten = tcp:8481:interface=0.0.0.0\ntls = yes\ncert = w.pem\nkey = w.key\n"
                             "tokens = t\n").api
    assert api is not None and api.tls and not api.loopback and os.path.isabs(api.cert) and api.key.endswith("w.key")
    for off in ("tokens = t\n", ""):
        with pytest.raises(ConfigError, match=r"\[api\] listen: .* is not loopback: off loopback the API is served "
                                              r"over HTTPS only"):
            home_config(HOME + "[api]\nlisten = tcp:8481:interface=0.0.0.0\n" + off)


def test_a_tokens_file_that_cannot_be_read_stops_the_start_naming_it(tmp_path):
    missing = ApiConfig("a.ini", AGGREGATOR_LISTEN, tokens=str(tmp_path / "none"))
    with pytest.raises(ConfigError, match=r"a.ini: \[api\] tokens: .*none: no such file"):
        check_tokens(missing)
    bad = tmp_path / "bad"
    bad.write_text("xyz alice\n")
    with pytest.raises(ConfigError, match="line 1"):
        check_tokens(ApiConfig("a.ini", AGGREGATOR_LISTEN, tokens=str(bad)))
    good = tmp_path / "good"
    good.write_text(f"{pki.token_hash('t')} alice\n")
    check_tokens(ApiConfig("a.ini", AGGREGATOR_LISTEN, tokens=str(good)))


def test_the_shipped_configs_give_the_demo_distinct_ports():
    """The lab's aggregator and three homes on one machine: each its own port
    (read as the configs read [api], without the credentials they name)."""
    from jeisson.config import IniFile
    from jeisson.web.config import read_api

    etc = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc", "jeisson")
    listens = {}
    for name in sorted(os.listdir(etc)):
        if name == "aggregator.ini" or (name.startswith("home") and name.endswith(".ini")):
            ini = IniFile.read(os.path.join(etc, name))
            assert ini.has_section("api"), name
            listens[name] = read_api(ini, AGGREGATOR_LISTEN if name == "aggregator.ini" else HOME_LISTEN).listen
    assert len(listens) == 4 and len(set(listens.values())) == 4, listens
    assert listens["aggregator.ini"] == AGGREGATOR_LISTEN


def test_the_listeners_limits_are_read_from_api():
    api = api_of("[api]\nmax_connections = 32\nlockout_failures = 5\n")
    assert api.limits.max_connections == 32 and api.limits.lockout_failures == 5
    assert api_of("").limits.max_connections == 256
    with pytest.raises(ConfigError, match=r"\[api\] max_connections: expected a whole number"):
        api_of("[api]\nmax_connections = many\n")


class TakenReactor:
    """A reactor whose every port is taken."""

    def listenTCP(self, port, factory, backlog=50, interface=""):
        from twisted.internet.error import CannotListenError

        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


def test_a_default_port_taken_is_warned_about_and_one_written_stops_the_start():
    from twisted.logger import capturedLogs, formatEvent

    from jeisson.web import ApiListener

    default = ApiListener(HOME_LISTEN, object(), explicit=False, reactor=TakenReactor(), what="home h2 API")
    with capturedLogs() as events:
        default.privilegedStartService()
    said = [formatEvent(e) for e in events]
    assert any("home h2 API: not served: cannot listen on tcp:8481" in line and "[api] listen" in line
               for line in said), said
    written = ApiListener(HOME_LISTEN, object(), explicit=True, reactor=TakenReactor(), what="home h2 API")
    with pytest.raises(Exception, match="Address already in use"):
        written.privilegedStartService()
