"""The ``[api]`` section: where a process serves HTTP, and to whom.

::

    [api]
    listen = tcp:8480:interface=127.0.0.1   ; the default (a home's: 8481); none: no HTTP at all
    tls = no                  ; yes: HTTPS with the process's [tls] credentials, and a client
                              ; certificate with role operator (jeisson pki operator DIR NAME);
                              ; needed for a listen off loopback
    cert = web/home-1.pem     ; with key: the HTTPS server's own certificate instead (a home's, whose
    key = web/home-1.key      ; [tls] one is a client's: jeisson pki web DIR NAME --dns ... --ip ...)
    tokens = api-tokens       ; bearer tokens' SHA-256 hashes (jeisson pki token DIR NAME),
                              ; relative to this file's folder
    hosts = jeisson.example   ; names the API is reached by, besides the listen address and localhost
    rounds_kept = 200         ; recent rounds answered from memory (older ones from the store)
    max_rows = 10000          ; the most measurement rows one reply carries
    header_timeout_s = 10     ; a request's line and headers must come within this of the accept or
                              ; of the previous reply (an idle kept-alive connection is closed)
    max_connections = 256     ; and the other listener limits of jeisson.limits (per address, rate);
                              ; a bad token is counted and its 401 delayed 1 s, never locked out

A listen that is not loopback is refused unless ``tls = yes`` (tokens
over plain HTTP can be read on the way): the error names the file and the
key.  A home's ``tls = yes`` needs ``cert``, ``key`` and ``tokens``.  A
bare port listens on 127.0.0.1.
"""

import os

import attrs

from jeisson.config import ConfigError, IniFile
from jeisson.limits import Limits, read_limits
from jeisson.tls import server_is_loopback

SECTION = "api"
AGGREGATOR_LISTEN = "tcp:8480:interface=127.0.0.1"
HOME_LISTEN = "tcp:8481:interface=127.0.0.1"
ROUNDS_KEPT = 200
MAX_ROWS = 10_000
HEADER_TIMEOUT_S = 10.0
# The API's listener: a few operators, scripts, dashboards and a scraper.
API_LIMITS = Limits(max_connections=256, max_connections_per_address=64, max_new_connections_per_address=600)


@attrs.frozen
class ApiConfig:
    """``[api]`` as read: ``listen`` None when turned off (``none``)."""

    source: str
    listen: str | None
    tls: bool = False
    tokens: str | None = None  # the tokens file's absolute path
    hosts: tuple[str, ...] = ()
    rounds_kept: int = ROUNDS_KEPT
    max_rows: int = MAX_ROWS
    explicit: bool = False  # listen written in the file (a port that cannot be bound then stops the start)
    limits: Limits = API_LIMITS  # connections per listener and address (bad tokens: counted, delayed)
    header_timeout_s: float = HEADER_TIMEOUT_S  # a request's line and headers, from accept or the previous reply
    cert: str | None = None  # [api] cert, key: the HTTPS server's own certificate (a home's: jeisson pki web)
    key: str | None = None

    @property
    def loopback(self) -> bool:
        return self.listen is not None and server_is_loopback(self.listen)

    @property
    def needs_credentials(self) -> bool:
        return self.tls or self.tokens is not None


def read_api(ini: IniFile, default_listen: str, tls_possible: bool = True) -> ApiConfig:
    """The ``[api]`` section of ``ini`` (all of it optional).

    ``tls_possible`` False (a home: its certificate is a client's) takes
    ``tls = yes`` only with ``[api] cert`` and ``key`` (jeisson pki web) and
    tokens."""
    section = SECTION
    raw_listen = ini.raw(section, "listen", default_listen)
    listen: str | None
    if raw_listen.lower() == "none":
        listen = None
    else:
        kind = raw_listen.split(":", 1)[0].strip().lower()
        if kind in ("ssl", "tls"):
            raise ini.error(section, "listen", f"{kind}: endpoints are not used: write a tcp: endpoint and "
                                               "tls = yes (the process's [tls] credentials)")
        listen = ini.server_endpoint(section, "listen", default_listen, loopback_default=True)
    tls = ini.boolean(section, "tls", False)
    folder = os.path.dirname(os.path.abspath(ini.source))
    tokens = ini.raw(section, "tokens", None) or None
    if tokens is not None:
        tokens = os.path.join(folder, os.path.expanduser(tokens))
    cert, key = (ini.raw(section, name, None) or None for name in ("cert", "key"))
    if (cert is None) != (key is None):
        missing = "key" if key is None else "cert"
        raise ini.error(section, missing, "missing key: [api] cert and key go together (the HTTPS server's "
                                          "certificate and its private key, jeisson pki web DIR NAME)")
    if cert is not None and not tls:
        raise ini.error(section, "cert", "a server certificate is for HTTPS: set tls = yes, or remove cert and key")
    if tls and not tls_possible:
        if cert is None:
            raise ini.error(section, "cert", "tls = yes on a home needs the HTTPS server's own certificate (its "
                                             "[tls] certificate is a client's): jeisson pki web DIR NAME --dns ... "
                                             "--ip ..., then [api] cert = DIR/web/NAME.pem and key = DIR/web/NAME.key")
        if tokens is None:
            raise ini.error(section, "tokens", "a home's HTTPS API identifies its owner by bearer token: set tokens "
                                               "= FILE (jeisson pki token DIR NAME)")
    cert = os.path.join(folder, os.path.expanduser(cert)) if cert is not None else None
    key = os.path.join(folder, os.path.expanduser(key)) if key is not None else None
    hosts = tuple(h.strip().lower() for h in ini.raw(section, "hosts", "").split(",") if h.strip())
    rounds_kept = ini.number(section, "rounds_kept", ROUNDS_KEPT, low=1, high=100_000, integer=True)
    max_rows = ini.number(section, "max_rows", MAX_ROWS, low=1, high=1_000_000, integer=True)
    explicit = ini.raw(section, "listen", None) is not None
    limits = read_limits(ini, section, API_LIMITS)
    header_timeout_s = ini.number(section, "header_timeout_s", HEADER_TIMEOUT_S, low=0.1, high=3600)
    config = ApiConfig(ini.source, listen, tls, tokens, hosts, rounds_kept, max_rows, explicit, limits,
                       header_timeout_s, cert, key)
    if listen is not None and not config.loopback and not config.tls:
        how = ("set tls = yes (client certificates with role operator, and/or tokens = FILE over HTTPS)"
               if tls_possible else "set tls = yes with cert and key (jeisson pki web DIR NAME) and tokens = FILE")
        raise ini.error(section, "listen", f"{listen} is not loopback: off loopback the API is served over HTTPS "
                                           f"only (a token or cookie over plain HTTP can be read on the way); {how}, "
                                           "or listen on 127.0.0.1")
    return config


def check_tokens(config: ApiConfig) -> None:
    """At start: the tokens file can be read (``ConfigError`` naming it)."""
    if config.tokens is None:
        return
    from jeisson import pki

    try:
        pki.read_tokens(config.tokens)
    except pki.PKIError as e:
        raise ConfigError(f"{config.source}: [api] tokens: {e}") from None
