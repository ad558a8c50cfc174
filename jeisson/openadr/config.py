"""``[openadr]`` in the aggregator's ini file: the aggregator as an OpenADR 2.0b VEN.

Off unless the section is there (and not ``enabled = no``)::

    [openadr]
    vtn_url = https://vtn.example.net:8443/OpenADR2/Simple/2.0b
    ven_name = jeisson-north          ; how this VEN introduces itself
    ven_id =                          ; optional: a venID agreed out of band
    cert = pki/openadr/ven.pem        ; this VEN's client certificate (clientAuth) ...
    key = pki/openadr/ven.key         ; ... and its key: they also sign its messages
    vtn_ca = pki/openadr/vtn-ca.pem   ; the CA that signed the VTN's certificate
    vtn_fingerprint = 1B:8E:CA:E2:59:66:94:AD:37:4D   ; optional: OpenADR's fingerprint of it
    vtn_name =                        ; the VTN's name in its certificate (default: vtn_url's host)
    signatures = yes                  ; sign what it sends, check what the VTN signs
    levels_kw = 1: 9, 2: 6, 3: 3      ; SIMPLE level -> the fleet's limit (kW); level 0: no limit
    capacity_kw = 12                  ; the fleet's own capacity: what LOAD_CONTROL's fractions scale
    opt = auto                        ; auto | in | out (auto: out when must-run loads alone exceed it)
    poll_s = 10                       ; how often to poll when the VTN names no interval
    timeout_s = 10                    ; a request's whole time, connecting included
    connect_timeout_s = 5
    max_reply_kib = 1024              ; a longer reply is cut off and refused
    backoff_max_s = 300               ; the longest wait between failed attempts

Paths are relative to the ini file's folder.  The files are read and
checked while the config is read, so that a missing, unreadable, expired or
mismatched one stops the start with one line naming the ini file, the key
and the file (``OpenADRConfig`` then holds them as PEM bytes).

The VEN's certificate is a clientAuth certificate, issued by the jeisson
CA or by the DR program (the aggregator's own serverAuth certificate is
refused).  The
VTN is trusted through ``vtn_ca`` (required: OpenADR's PKI, or the program's
own CA) and, if given, also by ``vtn_fingerprint``, OpenADR's fingerprint of
its certificate (the last 10 bytes of its SHA-256, as colon-separated hex).
"""

import datetime
import os
from urllib.parse import urlsplit

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from jeisson import pki
from jeisson.config import ConfigError, IniFile
from jeisson.openadr.signature import fingerprint, normalize_fingerprint

SECTION = "openadr"
OPT_POLICIES = ("auto", "in", "out")
DEFAULT_POLL_S = 10.0
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_MAX_REPLY_BYTES = 1024 * 1024
DEFAULT_BACKOFF_MAX_S = 300.0


@attrs.frozen
class OpenADRConfig:
    """``[openadr]``, checked, its files read.

    ``levels_w``: SIMPLE level -> the fleet's limit in W (level 0 is no
    event: not in the table).  ``capacity_w``: what ``LOAD_CONTROL``'s
    capacity fractions multiply (None: such events are refused).
    """

    vtn_url: str
    ven_name: str
    cert_pem: bytes = attrs.field(repr=False)
    key_pem: bytes = attrs.field(repr=False)
    vtn_ca_pem: bytes = attrs.field(repr=False)
    source: str = "<string>"
    cert_path: str = ""
    key_path: str = ""
    vtn_ca_path: str = ""
    ven_id: str | None = None
    vtn_fingerprint: str | None = None
    vtn_name: str = ""
    signatures: bool = True
    levels_w: dict[int, float] = attrs.field(factory=dict)
    capacity_w: float | None = None
    opt: str = "auto"
    poll_s: float = DEFAULT_POLL_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    warnings: tuple[str, ...] = ()

    @property
    def own_fingerprint(self) -> str:
        """This VEN's certificate's OpenADR fingerprint: what the VTN's
        operator registers for it."""
        return fingerprint(self.cert_pem)

    def service_url(self, service: str) -> str:
        """The URL of one of the VTN's services (``EiRegisterParty``,
        ``EiEvent``, ``EiReport``, ``EiOpt``, ``OadrPoll``)."""
        return f"{self.vtn_url.rstrip('/')}/{service}"


def _levels(ini: IniFile, text: str) -> dict[int, float]:
    levels: dict[int, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        level, sep, kw = part.partition(":")
        try:
            number = int(level)
            limit_kw = float(kw)
        except ValueError:
            number, limit_kw = -1, -1.0
        if not sep or number < 1 or not 0 <= limit_kw <= 1e6:
            raise ini.error(SECTION, "levels_kw", "expected LEVEL: KW pairs separated by commas, like '1: 9, 2: 6, "
                                                  f"3: 3' (levels from 1, limits in kW), got {part.strip()!r}")
        if number in levels:
            raise ini.error(SECTION, "levels_kw", f"level {number} is given twice")
        levels[number] = limit_kw * 1000.0
    ordered = [levels[k] for k in sorted(levels)]
    if any(later > earlier for earlier, later in zip(ordered, ordered[1:], strict=False)):
        raise ini.error(SECTION, "levels_kw", "a higher level must not allow more power than a lower one")
    return levels


def _path(ini: IniFile, key: str) -> str:
    value = os.path.expanduser(ini.text(SECTION, key))
    return os.path.join(os.path.dirname(os.path.abspath(ini.source)), value)


def _file_error(ini: IniFile, key: str, path: str, message: str) -> ConfigError:
    return ini.error(SECTION, key, f"{path}: {message}")


def _read(ini: IniFile, key: str, path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise _file_error(ini, key, path, f"no such file ({what})") from None
    except OSError as e:
        raise _file_error(ini, key, path, f"cannot read it: {e.strerror}") from None


def _certificate(ini: IniFile, key: str, path: str, what: str, at: datetime.datetime,
                 warnings: list[str]) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(_read(ini, key, path, what))
    except ValueError:
        raise _file_error(ini, key, path, f"not a PEM certificate ({what})") from None
    if at < cert.not_valid_before_utc:
        raise _file_error(ini, key, path, f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z")
    if at >= cert.not_valid_after_utc:
        raise _file_error(ini, key, path, f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z")
    if cert.not_valid_after_utc - at < datetime.timedelta(days=30):
        warnings.append(f"{ini.source}: [{SECTION}] {key}: {path} expires on "
                        f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z: renew it soon")
    return cert


def read_openadr(ini: IniFile, at: datetime.datetime | None = None) -> OpenADRConfig | None:
    """``[openadr]`` of ``ini``; None without the section or with
    ``enabled = no``.  Raises ``ConfigError`` naming the file and key."""
    if not ini.has_section(SECTION):
        return None
    if not ini.boolean(SECTION, "enabled", True):
        # Every key is still read, so that a typo is refused all the same.
        for key in _KEYS:
            ini.raw(SECTION, key, None)
        return None
    at = at or pki.now()
    url = ini.text(SECTION, "vtn_url")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ini.error(SECTION, "vtn_url", f"expected an https:// URL (OpenADR's simple HTTP over TLS), got {url!r}")
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ini.error(SECTION, "vtn_url", f"not a valid port in {url!r}") from None
    ven_name = ini.text(SECTION, "ven_name")
    ven_id = ini.text(SECTION, "ven_id", "") or None
    warnings: list[str] = []
    cert_path, key_path, ca_path = _path(ini, "cert"), _path(ini, "key"), _path(ini, "vtn_ca")
    cert = _certificate(ini, "cert", cert_path, "this VEN's certificate", at, warnings)
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise _file_error(ini, "cert", cert_path, "not a client certificate: its extendedKeyUsage lacks clientAuth "
                                                  "(the aggregator's server certificate cannot be used; issue one for "
                                                  "the VEN)")
    key_pem = _read(ini, "key", key_path, "this VEN's private key")
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise _file_error(ini, "key", key_path, "not an unencrypted PEM private key") from None
    if private.public_key() != cert.public_key():
        raise _file_error(ini, "key", key_path, f"not the key of [{SECTION}] cert ({cert_path})")
    mode = os.stat(key_path).st_mode & 0o777
    if mode & 0o077:
        warnings.append(f"{ini.source}: [{SECTION}] key: {key_path} can be read by others (mode {mode:04o}): "
                        f"chmod 600 {key_path}")
    ca = _certificate(ini, "vtn_ca", ca_path, "the VTN's CA", at, warnings)
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise _file_error(ini, "vtn_ca", ca_path, "not a CA certificate (no basicConstraints CA:TRUE)")
    vtn_fingerprint = ini.text(SECTION, "vtn_fingerprint", "") or None
    if vtn_fingerprint is not None:
        try:
            vtn_fingerprint = normalize_fingerprint(vtn_fingerprint)
        except ValueError as e:
            raise ini.error(SECTION, "vtn_fingerprint", str(e)) from None
    vtn_name = ini.text(SECTION, "vtn_name", "") or parts.hostname
    signatures = ini.boolean(SECTION, "signatures", True)
    levels = _levels(ini, ini.text(SECTION, "levels_kw", ""))
    capacity_kw = ini.number(SECTION, "capacity_kw", None, low=0, high=1e6)
    if not levels and capacity_kw is None:
        raise ini.error(SECTION, "levels_kw", "give levels_kw (SIMPLE levels to kW) or capacity_kw (what "
                                              "LOAD_CONTROL's fractions scale), or both: without either no event "
                                              "can be turned into a limit")
    opt = ini.choice(SECTION, "opt", OPT_POLICIES, "auto")
    poll_s = ini.number(SECTION, "poll_s", DEFAULT_POLL_S, low=0.1, high=86400)
    timeout_s = ini.number(SECTION, "timeout_s", DEFAULT_TIMEOUT_S, low=0.1, high=600)
    connect_timeout_s = ini.number(SECTION, "connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S, low=0.1, high=600)
    max_reply_kib = ini.number(SECTION, "max_reply_kib", DEFAULT_MAX_REPLY_BYTES // 1024, low=1, high=1024 * 1024,
                               integer=True)
    backoff_max_s = ini.number(SECTION, "backoff_max_s", DEFAULT_BACKOFF_MAX_S, low=1, high=86400)
    return OpenADRConfig(
        vtn_url=url, ven_name=ven_name, cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=key_pem,
        vtn_ca_pem=ca.public_bytes(serialization.Encoding.PEM), source=ini.source, cert_path=cert_path,
        key_path=key_path, vtn_ca_path=ca_path, ven_id=ven_id, vtn_fingerprint=vtn_fingerprint, vtn_name=vtn_name,
        signatures=signatures, levels_w=levels, capacity_w=None if capacity_kw is None else capacity_kw * 1000.0,
        opt=opt, poll_s=poll_s, timeout_s=timeout_s, connect_timeout_s=connect_timeout_s,
        max_reply_bytes=max_reply_kib * 1024, backoff_max_s=backoff_max_s, warnings=tuple(warnings))


_KEYS = ("vtn_url", "ven_name", "ven_id", "cert", "key", "vtn_ca", "vtn_fingerprint", "vtn_name", "signatures",
         "levels_kw", "capacity_kw", "opt", "poll_s", "timeout_s", "connect_timeout_s", "max_reply_kib",
         "backoff_max_s")
