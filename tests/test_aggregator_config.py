"""The aggregator's ini file: checked values, and errors that name file, section and key."""

from pathlib import Path

import pytest
from twisted.python.usage import UsageError

from jeisson import pki
from jeisson.aggregator.config import (
    AggregatorConfig,
    EventSpec,
    Feeder,
    HomeEntry,
    config_from_string,
    read_config,
)
from jeisson.aggregator.events import Time
from jeisson.config import ConfigError
from jeisson.store.config import StoreConfig
from jeisson.wire.aggregator_home import parse_utc

EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "jeisson" / "aggregator.ini"

MINIMAL = """
[aggregator]
listen = tcp:7700:interface=127.0.0.1
[home:home-1]
secret = s1
"""

EVENT = """
[event:peak]
limit_kw = 9.5
start = {start}
end = {end}
"""


def error_for(text, source="agg.ini") -> str:
    with pytest.raises(ConfigError) as info:
        config_from_string(text, source, now=1000)
    return str(info.value)


def test_the_example_config_reads():
    config = read_config(str(EXAMPLE))
    assert config.listen == "tcp:7700:interface=127.0.0.1"
    assert set(config.homes) == {"home-1", "home-2", "home-3"}
    assert config.events == (EventSpec("evening-peak", 1, 12000.0, Time(20.0, True), Time(140.0, True)),)
    assert config.manhole is None
    # The events file and the store are next to the config, wherever jeisson runs from.
    assert config.events_file == str(EXAMPLE.parent / "events.ini")
    assert config.store == StoreConfig(str(EXAMPLE.parent / "aggregator.sqlite"), 2.0)


def test_defaults():
    assert config_from_string(MINIMAL, now=0) == AggregatorConfig(
        listen="tcp:7700:interface=127.0.0.1",
        heartbeat_s=10.0,
        round_period_s=30.0,
        round_timeout_s=10.0,
        homes={"home-1": HomeEntry("home-1", "s1", max_w=10_000.0)},
        events=(),
        status_file=None,
        manhole=None,
        # A config read from text has no folder: its store is in memory.
        store=StoreConfig(":memory:", 2.0),
    )


def test_every_key_is_read():
    config = config_from_string(
        """
        [aggregator]
        listen = tcp:0
        heartbeat_s = 2.5
        round_period_s = 60
        round_timeout_s = 0.5
        converge_s = 4
        status_file = /tmp/status.json   ; a comment
        [home:a]
        secret = one
        [home:b.2]
        secret = two words
        max_kw = 7.5
        [feeder:street-a]
        limit_kw = 4.5
        homes = a ,b.2
        [event:late]
        limit_kw = 3
        start = 2026-11-23T20:00:00Z
        end = 2026-11-23T21:00:00.500Z
        [event:early]
        limit_kw = 0
        start = +0
        end = +1.5
        """,
        now=100,
    )
    assert (config.listen, config.heartbeat_s, config.round_period_s, config.round_timeout_s) == ("tcp:0", 2.5, 60, 0.5)
    assert config.status_file == "/tmp/status.json"
    assert config.converge_s == 4
    assert config.feeders == (Feeder("street-a", 4500.0, ("a", "b.2")),)
    assert config.homes == {"a": HomeEntry("a", "one", 10_000.0), "b.2": HomeEntry("b.2", "two words", 7500.0)}
    # As written, in the file's order.
    assert config.events == (
        EventSpec("late", 1, 3000.0, Time(parse_utc("2026-11-23T20:00:00Z")),
                  Time(parse_utc("2026-11-23T21:00:00.5Z"))),
        EventSpec("early", 1, 0.0, Time(0.0, True), Time(1.5, True)),
    )


def test_plus_seconds_are_kept_as_written_for_the_aggregator_to_anchor():
    config = config_from_string(MINIMAL + EVENT.format(start="+20", end="+140"))
    [spec] = config.events
    assert (spec.start, spec.end, spec.limit_w, spec.relative) == (Time(20.0, True), Time(140.0, True), 9500, True)
    # Resolved against the anchor the aggregator keeps for the id, not the time of reading.
    assert (spec.offer(1_800_000_000).event.start, spec.offer(1_800_000_000).event.end) == (1_800_000_020,
                                                                                          1_800_000_140)


def test_a_mixed_event_is_checked_once_resolved_not_in_the_config():
    config = config_from_string(MINIMAL + EVENT.format(start="+20", end="2026-11-23T21:00:00Z"))
    assert config.events[0].end == Time(parse_utc("2026-11-23T21:00:00Z"))


def test_the_store_is_on_by_default_next_to_the_config_and_can_be_turned_off(tmp_path):
    path = write(tmp_path / "feeder-7.ini", MINIMAL)
    assert read_config(path).store == StoreConfig(str(tmp_path / "feeder-7.sqlite"), 2.0)
    path = write(tmp_path / "agg.ini", MINIMAL + "[store]\npath = state/agg.db\nbatch_s = 2\n")
    assert read_config(path).store == StoreConfig(str(tmp_path / "state" / "agg.db"), 2.0)
    path = write(tmp_path / "agg.ini", MINIMAL + "[store]\npath = none\n")
    assert read_config(path).store is None


def test_the_events_file_is_relative_to_the_config_file_even_when_named_relatively(tmp_path, monkeypatch):
    write(tmp_path / "agg.ini", MINIMAL.replace("listen", "events_file = events.ini\nlisten"))
    monkeypatch.chdir(tmp_path.parent)
    config = read_config(f"{tmp_path.name}/agg.ini")
    assert config.events_file == str(tmp_path / "events.ini")


def test_config_errors_are_usage_errors_for_twistd():
    assert issubclass(ConfigError, UsageError)


@pytest.mark.parametrize(
    "text, where, what",
    [
        ("[home:h]\nsecret = s\n", "[aggregator]", "missing section"),
        ("[aggregator]\nheartbeat_s = 5\n[home:h]\nsecret = s\n", "[aggregator] listen", "missing key"),
        ("[aggregator]\nlisten = carrier-pigeon:7\n[home:h]\nsecret = s\n", "[aggregator] listen",
         "not a server endpoint string"),
        ("[aggregator]\nlisten = tcp:port\n[home:h]\nsecret = s\n", "[aggregator] listen",
         "not a server endpoint string"),
        (MINIMAL.replace("secret = s1", "secret ="), "[home:home-1] secret", "must not be empty"),
        (MINIMAL.replace("[home:home-1]\nsecret = s1\n", ""), "[home:<id>]", "no homes configured"),
        (MINIMAL + "[home:bad id]\nsecret = x\n", "[home:bad id]", "must be an id"),
        (MINIMAL + "colour = blue\n", "[home:home-1] colour", "unknown key (known keys here: max_kw, secret)"),
        (MINIMAL.replace("listen", "lissen = tcp:1\nlisten"), "[aggregator] lissen", "unknown key"),
        (MINIMAL + "[events:peak]\nlimit_kw = 1\n", "[events:peak]", "unknown section"),
        (MINIMAL + "[extra]\n", "[extra]", "unknown section"),
        (MINIMAL.replace("listen", "heartbeat_s = 0.1\nlisten"), "[aggregator] heartbeat_s", "from 0.5 to 3600"),
        (MINIMAL.replace("listen", "round_period_s = soon\nlisten"), "[aggregator] round_period_s",
         "expected a number, got 'soon'"),
        (MINIMAL + EVENT.format(start="+0", end="+60").replace("9.5", "-1"), "[event:peak] limit_kw",
         "expected a number from 0"),
        (MINIMAL + EVENT.format(start="+0", end="+60").replace("9.5", "nan"), "[event:peak] limit_kw",
         "expected a number"),
        (MINIMAL + EVENT.format(start="+60", end="+30"), "[event:peak] end", "must end after it starts"),
        (MINIMAL + EVENT.format(start="+60", end="+60"), "[event:peak] end", "must end after it starts"),
        (MINIMAL + EVENT.format(start="2026-11-23T20:00:00Z", end="2026-11-23T19:00:00Z"), "[event:peak] end",
         "must end after it starts"),
        (MINIMAL + EVENT.format(start="+ten", end="+60"), "[event:peak] start", "+SECONDS"),
        (MINIMAL + EVENT.format(start="-10", end="+60"), "[event:peak] start", "+SECONDS"),
        (MINIMAL + EVENT.format(start="+0", end="+1e3"), "[event:peak] end", "+SECONDS"),
        (MINIMAL + EVENT.format(start="2026-11-23 18:00", end="+60"), "[event:peak] start", "UTC time"),
        (MINIMAL + EVENT.format(start="2026-13-23T18:00:00Z", end="+60"), "[event:peak] start", "UTC time"),
        (MINIMAL + EVENT.format(start="2026-11-23T18:00:00+01:00", end="+60"), "[event:peak] start", "UTC time"),
        (MINIMAL + EVENT.format(start="+0", end="+60").replace("start = +0\n", ""), "[event:peak] start",
         "missing key"),
        (MINIMAL + "[feeder:f]\nlimit_kw = 5\nhomes = home-9\n", "[feeder:f] homes",
         "home 'home-9' is not configured"),
        (MINIMAL + "[feeder:f]\nlimit_kw = 5\nhomes = ,\n", "[feeder:f] homes", "comma-separated list"),
        (MINIMAL + "[feeder:f]\nhomes = home-1\n", "[feeder:f] limit_kw", "missing key"),
        (MINIMAL + "[feeder:f]\nlimit_kw = 5\nhomes = home-1\n[feeder:g]\nlimit_kw = 5\nhomes = home-1\n",
         "[feeder:g] homes", "already on feeder 'f'"),
        (MINIMAL.replace("listen", "converge_s = -1\nlisten"), "[aggregator] converge_s", "from 0"),
        (MINIMAL + "max_kw = lots\n", "[home:home-1] max_kw", "expected a number"),
        (MINIMAL + "max_kw = -1\n", "[home:home-1] max_kw", "expected a number from 0"),
        (MINIMAL + "[store]\npath =\n", "[store] path", "must not be empty"),
    ],
)
def test_errors_name_file_section_and_key(text, where, what):
    message = error_for(text)
    assert message.startswith(f"agg.ini: {where}: ")
    assert what in message


def test_an_unparsable_file_is_named():
    assert error_for("listen = tcp:7700\n").startswith("agg.ini: not a valid ini file")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*nowhere.ini"):
        read_config(str(tmp_path / "nowhere.ini"))


# -------------------------------------------------------------------- manhole


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


SSH_MANHOLE = ("[manhole]\nlisten = 7790\nhost_key = pki/manhole/ssh_host_ed25519_key\n"
               "authorized_keys = pki/manhole/authorized_keys\n")


def test_manhole_is_read_from_the_config_with_its_keys_next_to_it(tmp_path):
    pki.issue_manhole(str(tmp_path / "pki"), force=True)
    config = read_config(write(tmp_path / "agg.ini", MINIMAL + SSH_MANHOLE))
    assert config.manhole.listen == "tcp:7790:interface=127.0.0.1"
    assert config.manhole.host_key == str(tmp_path / "pki" / "manhole" / "ssh_host_ed25519_key")
    with pytest.raises(ConfigError, match=r"\[manhole\] port: unknown key"):
        read_config(write(tmp_path / "agg.ini", MINIMAL + SSH_MANHOLE + "port = 1\n"))


@pytest.mark.parametrize("section, where", [
    ("[manhole]\nhost_key = k\nauthorized_keys = a\n", "[manhole] listen"),
    ("[manhole]\nlisten = 7790\n", "[manhole] host_key"),
    ("[manhole]\nlisten = telnet:7790\n", "[manhole] listen"),
    ("[manhole]\nlisten = tcp:7790:interface=0.0.0.0\n", "[manhole] listen"),
    ("[manhole]\nlisten = 7790\nprotocol = telnet\npasswd = nowhere\n", "[manhole] passwd"),
])
def test_manhole_errors(section, where):
    assert error_for(MINIMAL + section).startswith(f"agg.ini: {where}: ")


def test_limits_and_the_longest_event_are_read_from_the_aggregator_section():
    config = config_from_string(MINIMAL)
    assert config.limits.max_connections == 20000 and config.max_event_s == 86400
    tuned = config_from_string(MINIMAL.replace("[aggregator]\n", "[aggregator]\nmax_event_s = 7200\n"
                                                                   "max_connections = 5000\n"))
    assert tuned.limits.max_connections == 5000 and tuned.max_event_s == 7200
    assert error_for(MINIMAL.replace("[aggregator]\n", "[aggregator]\nmax_event_s = 10\n")).startswith(
        "agg.ini: [aggregator] max_event_s: ")
