"""jeisson's credentials, made and kept in one folder (``jeisson pki``).

The folder's layout is a contract between the commands that write it and
the configs that read it::

    ca.pem, ca.key                  the CA (ECDSA P-256)
    crl.pem                         the revocation list, signed by the CA (always present, maybe empty)
    aggregator.pem, aggregator.key  the aggregator's server certificate (DNS names and IPs in its SAN)
    homes/<home-id>.pem, .key       a home's client certificate: CN = the home id, SAN URI
                                    jeisson:home:<home-id>, extendedKeyUsage clientAuth
    boards/<board-id>.key           a board's shared key: 64 lowercase hex digits and a newline
    manhole/ssh_host_ed25519_key    the manhole's SSH host key (OpenSSH format), and .pub
    manhole/operator_ed25519, .pub  an operator's SSH key pair, for ``ssh -i``
    manhole/authorized_keys         the operator's public key, as OpenSSH reads it
    operators/<name>.pem, .key      an operator's client certificate for the HTTP API ([api] tls = yes):
                                    CN = the name, SAN URI jeisson:operator:<name>, clientAuth
    api-tokens                      the HTTP API's bearer tokens ([api] tokens = ...): one line each,
                                    the token's SHA-256 in hex and its name; the token itself is
                                    printed once and kept nowhere

Private keys are written with mode 0600 (PEM PKCS#8 unencrypted, except the
OpenSSH ones), each file atomically (a temporary file renamed over it).  An
existing credential is never replaced unless asked (``force``): a new CA
makes every certificate issued by the old one worthless.

Every function raises ``PKIError`` with a message naming the file and what
is wrong; nothing here prints.
"""

import datetime
import hashlib
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Sequence

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jeisson.wire.aggregator_home_messages import ID_PATTERN as HOME_ID_PATTERN
from jeisson.wire.home_actuator import ID_PATTERN as BOARD_ID_PATTERN

CA_DAYS = 3650  # the CA, and the revocation list's next update
CERT_DAYS = 825  # the aggregator's and the homes' certificates
HOME_URI_PREFIX = "jeisson:home:"
OPERATOR_URI_PREFIX = "jeisson:operator:"
OPERATOR_ROLE = "operator"
DEFAULT_DNS = ("localhost",)
DEFAULT_IPS = ("127.0.0.1",)
ORGANIZATION = "jeisson"

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
CRL = "crl.pem"
AGGREGATOR_CERT = "aggregator.pem"
AGGREGATOR_KEY = "aggregator.key"
HOMES = "homes"
BOARDS = "boards"
MANHOLE = "manhole"
MANHOLE_HOST_KEY = os.path.join(MANHOLE, "ssh_host_ed25519_key")
MANHOLE_OPERATOR_KEY = os.path.join(MANHOLE, "operator_ed25519")
MANHOLE_AUTHORIZED_KEYS = os.path.join(MANHOLE, "authorized_keys")
OPERATORS = "operators"
WEB = "web"  # HTTPS servers' certificates for the API ([api] cert, key): a home's, or a proxy's
API_TOKENS = "api-tokens"
TOKEN_PREFIX = "jst_"  # a token says what it is (secret scanners, logs)


class PKIError(Exception):
    """A credential that cannot be made, read or used, and why."""


@attrs.frozen
class Issued:
    """One credential in a folder, as ``list_credentials`` finds it."""

    kind: str  # ca, crl, aggregator, home, operator, api-token, board, manhole-host, manhole-operator
    name: str
    path: str
    not_after: datetime.datetime | None = None  # certificates and the CRL's next update
    serial: int | None = None
    revoked: datetime.datetime | None = None  # a home's certificate on the CRL: since when


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# ------------------------------------------------------------ files


def home_paths(directory: str, home_id: str) -> tuple[str, str]:
    """``(certificate, key)`` of a home in the folder."""
    return os.path.join(directory, HOMES, f"{home_id}.pem"), os.path.join(directory, HOMES, f"{home_id}.key")


def operator_paths(directory: str, name: str) -> tuple[str, str]:
    """``(certificate, key)`` of an operator in the folder."""
    return (os.path.join(directory, OPERATORS, f"{name}.pem"), os.path.join(directory, OPERATORS, f"{name}.key"))


def web_paths(directory: str, name: str) -> tuple[str, str]:
    """``(certificate, key)`` of an API's HTTPS server in the folder."""
    return os.path.join(directory, WEB, f"{name}.pem"), os.path.join(directory, WEB, f"{name}.key")


def board_key_path(directory: str, board_id: str) -> str:
    return os.path.join(directory, BOARDS, f"{board_id}.key")


def _refuse_existing(paths: Iterable[str], force: bool) -> None:
    if force:
        return
    for path in paths:
        if os.path.lexists(path):
            raise PKIError(f"{path} exists: not replacing it (--force replaces it)")


def _write(path: str, data: bytes, private: bool) -> None:
    """Write ``path`` whole or not at all, 0600 if ``private``."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as e:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise PKIError(f"cannot write {path}: {e.strerror}") from None


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise PKIError(f"{path}: no such file ({what})") from None
    except OSError as e:
        raise PKIError(f"cannot read {path} ({what}): {e.strerror}") from None


def load_certificate(path: str, what: str = "a certificate") -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path, what))
    except ValueError:
        raise PKIError(f"{path}: not a PEM certificate ({what})") from None


def load_private_key(path: str, what: str = "a private key") -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(_read(path, what), password=None)
    except (ValueError, TypeError):
        raise PKIError(f"{path}: not an unencrypted PEM private key ({what})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PKIError(f"{path}: an {type(key).__name__}, not the ECDSA key jeisson makes ({what})")
    return key


def load_crl(path: str) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(_read(path, "the revocation list"))
    except ValueError:
        raise PKIError(f"{path}: not a PEM revocation list (X509 CRL)") from None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# ------------------------------------------------------- certificates


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(name: str = "jeisson CA", not_before: datetime.datetime | None = None,
            not_after: datetime.datetime | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new self-signed CA: ``(key, certificate)``."""
    key = new_key()
    start = not_before or now() - datetime.timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common_name: str,
          names: Sequence[x509.GeneralName], usage: x509.ObjectIdentifier,
          not_before: datetime.datetime | None = None, not_after: datetime.datetime | None = None,
          days: int = CERT_DAYS) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new key and its certificate signed by the CA: ``(key, certificate)``.

    ``usage``: ``ExtendedKeyUsageOID.SERVER_AUTH`` or ``CLIENT_AUTH``.
    ``not_before``/``not_after``: the validity (tests issue expired ones).
    """
    key = new_key()
    start = not_before or now() - datetime.timedelta(minutes=5)
    server = usage == ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                                 x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=server, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_crl(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
             revoked: Iterable[tuple[int, datetime.datetime]] = (), number: int = 1,
             next_update: datetime.datetime | None = None) -> x509.CertificateRevocationList:
    """A revocation list of ``(serial, since)`` signed by the CA."""
    at = now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(at - datetime.timedelta(minutes=5))
        .next_update(next_update or at + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
    )
    for serial, since in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(since).build())
    return builder.sign(ca_key, hashes.SHA256())


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(uri) for uri in san.get_values_for_type(x509.UniformResourceIdentifier)]


def home_id_of(cert: x509.Certificate) -> str | None:
    """The home id a certificate names: its SAN URI ``jeisson:home:<id>``,
    else its subject CN; None when it names none, and for an operator's
    certificate (``jeisson:operator:<name>``), whatever its CN: an operator
    named like a home is not that home."""
    uris = _uris(cert)
    for uri in uris:
        if uri.startswith(HOME_URI_PREFIX):
            return uri[len(HOME_URI_PREFIX):]
    if any(uri.startswith(OPERATOR_URI_PREFIX) for uri in uris):
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None


def operator_of(cert: x509.Certificate) -> str | None:
    """The operator a certificate names (its SAN URI
    ``jeisson:operator:<name>``, the role the HTTP API takes), or None: a
    home's certificate, from the same CA, is no operator's."""
    for uri in _uris(cert):
        if uri.startswith(OPERATOR_URI_PREFIX):
            return uri[len(OPERATOR_URI_PREFIX):] or None
    return None


def _check_id(kind: str, value: str, pattern: re.Pattern[str], rule: str) -> None:
    if not pattern.match(value):
        article = "an" if kind[0] in "aeiou" else "a"
        raise PKIError(f"{value!r} is not {article} {kind} id: {rule}")


def _load_ca(directory: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    cert_path = os.path.join(directory, CA_CERT)
    key_path = os.path.join(directory, CA_KEY)
    if not os.path.exists(cert_path):
        raise PKIError(f"{cert_path}: no such file: make the CA first (jeisson pki init {directory})")
    cert = load_certificate(cert_path, "the CA's certificate")
    key = load_private_key(key_path, "the CA's key")
    if key.public_key() != cert.public_key():
        raise PKIError(f"{key_path} is not the key of {cert_path}")
    return key, cert


# ------------------------------------------------------------ commands


def _aggregator_names(dns: Sequence[str], ips: Sequence[str]) -> tuple[str, list[x509.GeneralName]]:
    """The aggregator certificate's CN and SAN; both empty: ``localhost``
    and ``127.0.0.1``."""
    names: list[x509.GeneralName] = []
    if not dns and not ips:
        dns, ips = DEFAULT_DNS, DEFAULT_IPS
    for name in dns:
        if not re.fullmatch(r"(?=.{1,253}\Z)([A-Za-z0-9*]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                            r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", name):
            raise PKIError(f"--dns {name!r}: not a DNS name")
        names.append(x509.DNSName(name))
    for ip in ips:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise PKIError(f"--ip {ip!r}: not an IP address") from None
    return (list(dns) + list(ips))[0], names


def init(directory: str, dns: Sequence[str] = (), ips: Sequence[str] = (), force: bool = False) -> list[str]:
    """A CA, an empty revocation list and the aggregator's certificate.

    ``dns``/``ips``: the names the homes reach the aggregator by (its
    certificate's SAN); both empty: ``localhost`` and ``127.0.0.1``.
    Returns the files written.
    """
    common_name, names = _aggregator_names(dns, ips)
    paths = [os.path.join(directory, p) for p in (CA_CERT, CA_KEY, CRL, AGGREGATOR_CERT, AGGREGATOR_KEY)]
    _refuse_existing(paths, force)
    ca_key, ca_cert = make_ca()
    agg_key, agg_cert = issue(ca_key, ca_cert, common_name, names, ExtendedKeyUsageOID.SERVER_AUTH)
    _write(paths[1], _key_pem(ca_key), private=True)
    _write(paths[0], _cert_pem(ca_cert), private=False)
    _write(paths[2], make_crl(ca_key, ca_cert).public_bytes(serialization.Encoding.PEM), private=False)
    _write(paths[4], _key_pem(agg_key), private=True)
    _write(paths[3], _cert_pem(agg_cert), private=False)
    return paths


def issue_aggregator(directory: str, dns: Sequence[str] = (), ips: Sequence[str] = (), force: bool = False,
                     days: int = CERT_DAYS) -> list[str]:
    """A new key and server certificate for the aggregator from the
    folder's CA (renewing it, or for new names); returns the files written."""
    common_name, names = _aggregator_names(dns, ips)
    paths = [os.path.join(directory, AGGREGATOR_CERT), os.path.join(directory, AGGREGATOR_KEY)]
    _refuse_existing(paths, force)
    ca_key, ca_cert = _load_ca(directory)
    key, cert = issue(ca_key, ca_cert, common_name, names, ExtendedKeyUsageOID.SERVER_AUTH, days=days)
    _write(paths[1], _key_pem(key), private=True)
    _write(paths[0], _cert_pem(cert), private=False)
    return paths


def issue_home(directory: str, home_id: str, force: bool = False, not_before: datetime.datetime | None = None,
               not_after: datetime.datetime | None = None, days: int = CERT_DAYS) -> list[str]:
    """A home's key and client certificate; returns the files written."""
    _check_id("home", home_id, HOME_ID_PATTERN, "1-32 letters, digits, '_', '.', '-'")
    cert_path, key_path = home_paths(directory, home_id)
    _refuse_existing((cert_path, key_path), force)
    ca_key, ca_cert = _load_ca(directory)
    key, cert = issue(ca_key, ca_cert, home_id, [x509.UniformResourceIdentifier(HOME_URI_PREFIX + home_id)],
                      ExtendedKeyUsageOID.CLIENT_AUTH, not_before, not_after, days)
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, _cert_pem(cert), private=False)
    return [cert_path, key_path]


def issue_web(directory: str, name: str, dns: Sequence[str] = (), ips: Sequence[str] = (), force: bool = False,
              days: int = CERT_DAYS) -> list[str]:
    """A key and server certificate (serverAuth) for an HTTP API served over
    TLS (``[api] tls = yes`` with ``[api] cert`` and ``key``, a home's
    above all: its ``[tls]`` certificate is a client's), signed by the
    folder's CA, for the names browsers and ``jeisson`` reach it by
    (``dns``/``ips``; both empty: ``localhost`` and ``127.0.0.1``).  It
    names no home or operator, so it opens neither the homes' listener nor
    the API.  Returns the files written (``web/NAME.pem``, ``.key``)."""
    _check_id("web server", name, HOME_ID_PATTERN, "1-32 letters, digits, '_', '.', '-'")
    common_name, names = _aggregator_names(dns, ips)
    cert_path, key_path = web_paths(directory, name)
    _refuse_existing((cert_path, key_path), force)
    ca_key, ca_cert = _load_ca(directory)
    key, cert = issue(ca_key, ca_cert, common_name, names, ExtendedKeyUsageOID.SERVER_AUTH, days=days)
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, _cert_pem(cert), private=False)
    return [cert_path, key_path]


def issue_operator(directory: str, name: str, force: bool = False, days: int = CERT_DAYS) -> list[str]:
    """An operator's key and client certificate for the HTTP API (role
    ``operator``: SAN URI ``jeisson:operator:<name>``); returns the files."""
    _check_id("operator", name, HOME_ID_PATTERN, "1-32 letters, digits, '_', '.', '-'")
    cert_path, key_path = operator_paths(directory, name)
    _refuse_existing((cert_path, key_path), force)
    ca_key, ca_cert = _load_ca(directory)
    key, cert = issue(ca_key, ca_cert, name, [x509.UniformResourceIdentifier(OPERATOR_URI_PREFIX + name)],
                      ExtendedKeyUsageOID.CLIENT_AUTH, days=days)
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, _cert_pem(cert), private=False)
    return [cert_path, key_path]


def token_hash(token: str) -> str:
    """What the tokens file keeps of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(directory: str, name: str) -> tuple[str, str]:
    """A new bearer token for the HTTP API named ``name``: its hash is
    appended to ``DIR/api-tokens`` (made 0600 if new); returns ``(token,
    path)``.  The token is kept nowhere: lost, it is replaced by a new one
    (and the old line deleted)."""
    _check_id("token", name, HOME_ID_PATTERN, "1-32 letters, digits, '_', '.', '-'")
    path = os.path.join(directory, API_TOKENS)
    if not os.path.isdir(directory):
        raise PKIError(f"{directory}: no such folder")
    if os.path.exists(path):
        for number, (_, known) in enumerate(read_tokens(path), 1):
            if known == name:
                raise PKIError(f"{path}: a token named {name!r} exists (line {number}): delete its line first, "
                               "or choose another name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(f"{token_hash(token)} {name}\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise PKIError(f"cannot write {path}: {e.strerror}") from None
    return token, path


def read_tokens(path: str) -> list[tuple[str, str]]:
    """``(SHA-256 hex, name)`` of each line of a tokens file (``#`` starts a
    comment); ``PKIError`` naming the line that is not one."""
    found = []
    text = _read(path, "the API's tokens").decode("utf-8", "replace")
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        digest, _, name = line.partition(" ")
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise PKIError(f"{path}: line {number}: expected a token's SHA-256 (64 lowercase hex digits) and its "
                           "name, as jeisson pki token writes")
        found.append((digest, name.strip()))
    return found


def issue_board(directory: str, board_id: str, force: bool = False) -> list[str]:
    """A board's shared key (for the board and its home); returns the file."""
    _check_id("board", board_id, BOARD_ID_PATTERN, "1-16 letters, digits, '_', '.', '-'")
    path = board_key_path(directory, board_id)
    _refuse_existing((path,), force)
    _write(path, secrets.token_bytes(32).hex().encode() + b"\n", private=True)
    return [path]


def read_board_key(path: str) -> bytes:
    """The 32 bytes of a board key file (64 lowercase hex digits)."""
    text = _read(path, "a board key").decode("ascii", "replace").strip()
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise PKIError(f"{path}: not a board key (64 lowercase hex digits, as jeisson pki board writes)")
    return bytes.fromhex(text)


def issue_manhole(directory: str, force: bool = False) -> list[str]:
    """The manhole's SSH host key, an operator's key pair and its
    ``authorized_keys``; returns the files written."""
    host = os.path.join(directory, MANHOLE_HOST_KEY)
    operator = os.path.join(directory, MANHOLE_OPERATOR_KEY)
    authorized = os.path.join(directory, MANHOLE_AUTHORIZED_KEYS)
    paths = [host, host + ".pub", operator, operator + ".pub", authorized]
    _refuse_existing(paths, force)
    written = []
    for path, comment in ((host, "jeisson-manhole-host"), (operator, "jeisson-operator")):
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        public_line = public + f" {comment}\n".encode()
        _write(path, private, private=True)
        _write(path + ".pub", public_line, private=False)
        written += [path, path + ".pub"]
        if path == operator:
            _write(authorized, public_line, private=False)
            written.append(authorized)
    return written


def revoke_home(directory: str, home_id: str) -> int:
    """Put a home's certificate on the revocation list (rewritten whole);
    returns its serial.  Running aggregators read the new list within their
    poll period and drop the home."""
    _check_id("home", home_id, HOME_ID_PATTERN, "1-32 letters, digits, '_', '.', '-'")
    return _revoke(directory, home_paths(directory, home_id)[0], "home", home_id)


def revoke_operator(directory: str, name: str) -> int:
    """Put an operator's certificate on the revocation list; returns its
    serial.  A running aggregator's API reads the new list within its
    ``[tls] crl_poll_s`` and refuses the certificate from then on."""
    _check_id("operator", name, HOME_ID_PATTERN, "1-32 letters, digits, '_', '.', '-'")
    return _revoke(directory, operator_paths(directory, name)[0], "operator", name)


def _revoke(directory: str, cert_path: str, kind: str, name: str) -> int:
    """The CRL rewritten whole with ``cert_path``'s serial added (its CRL
    number one above the last)."""
    if not os.path.exists(cert_path):
        raise PKIError(f"{cert_path}: no such file: no certificate was issued to {kind} {name!r} in {directory}")
    cert = load_certificate(cert_path, f"{kind} {name}'s certificate")
    ca_key, ca_cert = _load_ca(directory)
    crl_path = os.path.join(directory, CRL)
    entries: dict[int, datetime.datetime] = {}
    number = 1
    if os.path.exists(crl_path):
        old = load_crl(crl_path)
        for entry in old:
            entries[entry.serial_number] = entry.revocation_date_utc
        try:
            number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        except x509.ExtensionNotFound:
            pass
    entries.setdefault(cert.serial_number, now())
    crl = make_crl(ca_key, ca_cert, entries.items(), number)
    _write(crl_path, crl.public_bytes(serialization.Encoding.PEM), private=False)
    return cert.serial_number


def list_credentials(directory: str) -> list[Issued]:
    """What the folder holds, CA first."""
    if not os.path.isdir(directory):
        raise PKIError(f"{directory}: no such folder")
    found: list[Issued] = []
    revoked: dict[int, datetime.datetime] = {}
    crl_path = os.path.join(directory, CRL)
    if os.path.exists(crl_path):
        crl = load_crl(crl_path)
        revoked = {entry.serial_number: entry.revocation_date_utc for entry in crl}
    for kind, name in (("ca", CA_CERT), ("aggregator", AGGREGATOR_CERT)):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            cert = load_certificate(path)
            name = str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
            if kind == "aggregator":
                try:
                    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                    name = ", ".join([*san.get_values_for_type(x509.DNSName),
                                      *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))])
                except x509.ExtensionNotFound:
                    pass
            found.append(Issued(kind, str(name), path, cert.not_valid_after_utc, cert.serial_number))
    if os.path.exists(crl_path):
        found.append(Issued("crl", f"{len(revoked)} revoked", crl_path, load_crl(crl_path).next_update_utc))
    for kind, folder, name_of in (("home", HOMES, home_id_of), ("operator", OPERATORS, operator_of)):
        where = os.path.join(directory, folder)
        for entry in sorted(os.listdir(where)) if os.path.isdir(where) else []:
            if entry.endswith(".pem"):
                path = os.path.join(where, entry)
                cert = load_certificate(path)
                found.append(Issued(kind, name_of(cert) or entry[:-4], path, cert.not_valid_after_utc,
                                    cert.serial_number, revoked.get(cert.serial_number)))
    tokens = os.path.join(directory, API_TOKENS)
    if os.path.exists(tokens):
        for _, name in read_tokens(tokens):
            found.append(Issued("api-token", name, tokens))
    boards = os.path.join(directory, BOARDS)
    for entry in sorted(os.listdir(boards)) if os.path.isdir(boards) else []:
        if entry.endswith(".key"):
            found.append(Issued("board", entry[:-4], os.path.join(boards, entry)))
    for kind, relative in (("manhole-host", MANHOLE_HOST_KEY), ("manhole-operator", MANHOLE_OPERATOR_KEY)):
        path = os.path.join(directory, relative)
        if os.path.exists(path):
            found.append(Issued(kind, os.path.basename(path), path))
    return found
