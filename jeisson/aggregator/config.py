"""The aggregator's ini file, checked into a frozen ``AggregatorConfig``.

::

    [aggregator]
    listen = tcp:7700:interface=127.0.0.1
    heartbeat_s = 10          ; PING period on every home link
    round_period_s = 30       ; a negotiation round at least this often in an event
    round_timeout_s = 10      ; how long each round phase waits for commitments
    converge_s = 20           ; follow-up rounds until commitments settle, at most this long
    status_file = /var/lib/jeisson/status.json   ; optional JSON snapshot
    events_file = events.ini  ; optional, relative to this file's folder
    max_event_s = 86400       ; longer events are refused (from the config, the file, the manhole)
    max_connections = 20000   ; and the other listener limits: jeisson.limits

    [home:home-1]
    secret = ...
    max_kw = 10               ; counted at this until it reports its loads

    [feeder:street-a]                 ; optional: a transformer's own limit
    limit_kw = 7
    homes = home-1, home-2

    [event:evening-peak]
    limit_kw = 9.5
    start = 2026-11-23T18:00:00Z      ; or +SECONDS after the first start
    end = 2026-11-23T20:00:00Z

    [manhole]
    listen = 7790                      ; a bare port binds 127.0.0.1
    passwd = manhole.passwd

    [store]                            ; optional: see jeisson.store.config
    path = aggregator.sqlite           ; the default: this file's name, .sqlite

    [api]                              ; optional: see jeisson.web.config
    listen = tcp:8480:interface=127.0.0.1   ; the default; none: no HTTP API, dashboard nor metrics

    [openadr]                          ; optional: the aggregator as an OpenADR 2.0b VEN,
    vtn_url = https://vtn.example.net:8443/OpenADR2/Simple/2.0b   ; see jeisson.openadr.config
    ven_name = jeisson-north

    [tls]                              ; required to start: see jeisson.tls
    ca = pki/ca.pem                    ; paths relative to this file's folder
    cert = pki/aggregator.pem
    key = pki/aggregator.key
    crl = pki/crl.pem
    crl_poll_s = 5

Events are kept as written (``events.EventSpec``): a ``+SECONDS`` time is
resolved by the aggregator against the event id's anchor, the first time it
read that id (kept in its store), so it never moves across restarts.
"""

import os

import attrs

from jeisson.aggregator.events import MAX_EVENT_S, Event, EventSpec, event_from_section
from jeisson.config import IniFile
from jeisson.limits import Limits, read_limits
from jeisson.manhole import ManholeConfig, read_manhole
from jeisson.openadr.config import OpenADRConfig, read_openadr
from jeisson.store.config import StoreConfig, read_store
from jeisson.tls import TLSConfig, read_tls, refuse_tls_endpoint
from jeisson.web.config import AGGREGATOR_LISTEN, ApiConfig, read_api

__all__ = ["AggregatorConfig", "Event", "EventSpec", "Feeder", "HomeEntry", "config_from_ini", "config_from_string",
           "read_config"]

# A home that has never reported its loads is counted at this much while it
# cannot answer: a typical service size.  Set it per home (``max_kw``).
DEFAULT_MAX_W = 10_000.0
# The aggregator's store commits within this long of a write (homes' records,
# journal) unless something waits for it (``durable()``).  2 s rather than
# less: at 10,000 homes a shorter timer commits within the round, and the
# writer then competes with the round for the interpreter (bench/store_cost.py).
STORE_BATCH_S = 2.0


@attrs.frozen
class HomeEntry:
    id: str
    secret: str
    # What the home may draw at most: what it is counted at while it cannot
    # answer and has never reported its loads.
    max_w: float = DEFAULT_MAX_W


@attrs.frozen
class Feeder:
    """Homes behind one feeder or transformer, with its own limit (W)."""

    id: str
    limit_w: float
    homes: tuple[str, ...]


@attrs.frozen
class AggregatorConfig:
    listen: str
    heartbeat_s: float
    round_period_s: float
    round_timeout_s: float
    homes: dict[str, HomeEntry]
    events: tuple[EventSpec, ...]  # as written: their +SECONDS resolved by the aggregator
    status_file: str | None = None
    manhole: ManholeConfig | None = None
    feeders: tuple[Feeder, ...] = ()
    converge_s: float = 20.0
    events_file: str | None = None
    events_poll_s: float = 2.0
    seed: int | None = None  # for the homes' randomised start and restore times
    store: StoreConfig | None = None  # None: nothing survives a restart
    # None: no [tls] section, refused at start (jeisson.tls.require); read
    # here, checked at start, so that tests build configs without files.
    tls: TLSConfig | None = None
    limits: Limits = Limits()  # the listener for homes (jeisson.limits)
    max_event_s: float = MAX_EVENT_S  # longer events are refused
    # [api]: the HTTP API, dashboard and metrics (jeisson.web); None: no
    # [api] section, the defaults (jeisson.aggregator.tap.api_config).
    api: ApiConfig | None = None
    openadr: OpenADRConfig | None = None  # [openadr]: the aggregator as an OpenADR VEN (off without it)


def config_from_ini(ini: IniFile) -> AggregatorConfig:
    section = "aggregator"
    refuse_tls_endpoint(ini, section, "listen")
    listen = ini.server_endpoint(section, "listen")
    tls = read_tls(ini, "aggregator", section, "listen", listen)
    heartbeat_s = ini.number(section, "heartbeat_s", 10.0, low=0.5, high=3600)
    round_period_s = ini.number(section, "round_period_s", 30.0, low=1, high=86400)
    # A home commits after its offs and then its ons are acknowledged, each
    # within its command_timeout_s (3 s by default): 10 s covers both.
    round_timeout_s = ini.number(section, "round_timeout_s", 10.0, low=0.1, high=600)
    # Follow-up rounds run while commitments change, up to this long after
    # the negotiation began; then rounds come on the period again.
    converge_s = ini.number(section, "converge_s", 20.0, low=0, high=86400)
    status_file = ini.raw(section, "status_file", None) or None
    events_file = ini.raw(section, "events_file", None) or None
    if events_file is not None:
        # Next to the config file, wherever jeisson was started from.
        events_file = os.path.join(os.path.dirname(os.path.abspath(ini.source)), os.path.expanduser(events_file))
    events_poll_s = ini.number(section, "events_poll_s", 2.0, low=0.1, high=3600)
    seed = ini.number(section, "seed", None, integer=True) if ini.raw(section, "seed", "") != "" else None
    homes: dict[str, HomeEntry] = {}
    for name, home_id in ini.sections("home"):
        homes[home_id] = HomeEntry(home_id, ini.text(name, "secret"),
                                   ini.number(name, "max_kw", DEFAULT_MAX_W / 1000.0, low=0, high=1e4) * 1000.0)
    if not homes:
        raise ini.error("home:<id>", None, "no homes configured: add a [home:<id>] section with a secret")
    feeders: list[Feeder] = []
    feeder_of: dict[str, str] = {}  # home -> its feeder
    for name, feeder_id in ini.sections("feeder"):
        limit_kw = ini.number(name, "limit_kw", low=0, high=1e6)
        members = [m.strip() for m in ini.text(name, "homes").split(",") if m.strip()]
        if not members:
            raise ini.error(name, "homes", "expected a comma-separated list of home ids")
        for member in members:
            if member not in homes:
                raise ini.error(name, "homes", f"home {member!r} is not configured (no [home:{member}] section)")
            if member in feeder_of:
                raise ini.error(name, "homes", f"home {member!r} is already on feeder {feeder_of[member]!r}")
            feeder_of[member] = feeder_id
        feeders.append(Feeder(feeder_id, limit_kw * 1000.0, tuple(members)))
    events: list[EventSpec] = []
    for name, event_id in ini.sections("event"):
        spec = event_from_section(ini, name, event_id)
        if spec.cancelled:
            raise ini.error(name, "cancelled", "an event in the config cannot be cancelled: remove it, or cancel "
                                               "it in the events file")
        events.append(spec)
    manhole = read_manhole(ini)
    store = read_store(ini, STORE_BATCH_S)
    limits = read_limits(ini, section)
    max_event_s = ini.number(section, "max_event_s", MAX_EVENT_S, low=60, high=366 * 86400)
    api = read_api(ini, AGGREGATOR_LISTEN) if ini.has_section("api") else None
    openadr = read_openadr(ini)
    ini.check_unknown()
    return AggregatorConfig(
        listen=listen,
        heartbeat_s=heartbeat_s,
        round_period_s=round_period_s,
        round_timeout_s=round_timeout_s,
        homes=homes,
        events=tuple(events),
        status_file=status_file,
        manhole=manhole,
        feeders=tuple(feeders),
        converge_s=converge_s,
        events_file=events_file,
        events_poll_s=events_poll_s,
        seed=seed,
        store=store,
        tls=tls,
        limits=limits,
        max_event_s=max_event_s,
        api=api,
        openadr=openadr,
    )


def config_from_string(text: str, source: str = "<string>", now: float | None = None) -> AggregatorConfig:
    """``now`` is not used any more (the aggregator resolves ``+SECONDS``
    against each event's anchor); kept so that older callers still work."""
    return config_from_ini(IniFile(text, source))


def read_config(path: str) -> AggregatorConfig:
    return config_from_ini(IniFile.read(path))
