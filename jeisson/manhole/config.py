"""The ``[manhole]`` section, and the keys it names: reading and checking
the host key and ``authorized_keys``, fingerprints, and the ``ssh`` command
the demo prints."""


import base64
import hashlib
import ipaddress
import os
import shlex
import stat
from typing import Any

import attrs
from twisted.conch.ssh import keys
from twisted.internet import endpoints

from jeisson.config import IniFile

PKI_HINT = "make the manhole's keys with: jeisson pki manhole DIR"

# A disconnected peer's close is given this long to flush before the
# connection is aborted (a peer that does not read must not pin it).
CLOSE_GRACE_S = 5.0


@attrs.frozen
class ManholeConfig:
    """The ``[manhole]`` section, checked.

    ``listen`` is an endpoint string; ``host_key``, ``authorized_keys`` and
    ``passwd`` are absolute paths or relative to the working directory (the
    ini file's folder already joined).  ``passwd`` is for ``protocol =
    telnet`` only, the two key files for ``ssh`` only.
    """

    listen: str
    protocol: str = "ssh"
    host_key: str | None = None
    authorized_keys: str | None = None
    passwd: str | None = None
    allow_remote: bool = False
    max_auth_tries: int = 3
    max_unauthenticated: int = 10
    lockout_after: int = 10
    lockout_s: float = 600.0
    login_timeout_s: float = 30.0
    idle_s: float = 900.0


# ------------------------------------------------------------------ config


def read_manhole(ini: IniFile) -> ManholeConfig | None:
    """The ``[manhole]`` section of ``ini``, or None without one.

    Every file it names is read now, so a missing or bad key stops the start
    with an error naming the ini file, the key and the file.
    """
    if not ini.has_section("manhole"):
        return None
    s = "manhole"
    listen = ini.server_endpoint(s, "listen", loopback_default=True)
    protocol = ini.choice(s, "protocol", ("ssh", "telnet"), "ssh")
    allow_remote = ini.boolean(s, "allow_remote", False)
    try:
        local = listens_locally(listen)
    except ValueError as e:
        raise ini.error(s, "listen", str(e)) from None
    if protocol == "telnet":
        if not local:
            raise ini.error(s, "listen", f"{listen} is not loopback: the telnet manhole sends passwords and the "
                                         "shell in clear, so it listens on loopback only (allow_remote does not "
                                         "change that); use protocol = ssh")
        for key in ("host_key", "authorized_keys"):
            if ini.raw(s, key, None) is not None:
                raise ini.error(s, key, "only for protocol = ssh")
        passwd = _path(ini, ini.text(s, "passwd"))
        if not os.path.isfile(passwd):
            raise ini.error(s, "passwd", f"password file {passwd} does not exist (lines of user:password)")
        mode = stat.S_IMODE(os.stat(passwd).st_mode)
        if mode & 0o077:
            raise ini.error(s, "passwd", f"password file {passwd} is open to others (mode {mode:04o}): "
                                         f"chmod 600 {passwd}")
        return ManholeConfig(listen, protocol="telnet", passwd=passwd, allow_remote=allow_remote, **_limits(ini))
    if not local and not allow_remote:
        raise ini.error(s, "listen", f"{listen} listens beyond loopback: a manhole is a Python shell in the "
                                     "live process; set allow_remote = yes to mean it, or bind 127.0.0.1")
    if ini.raw(s, "passwd", None) is not None:
        raise ini.error(s, "passwd", "the SSH manhole takes keys only (authorized_keys), not passwords; "
                                     "passwd is for protocol = telnet")
    host_key = _path(ini, ini.text(s, "host_key"))
    authorized = _path(ini, ini.text(s, "authorized_keys"))
    try:
        load_host_key(host_key)
    except ValueError as e:
        raise ini.error(s, "host_key", str(e)) from None
    try:
        load_authorized_keys(authorized)
    except ValueError as e:
        raise ini.error(s, "authorized_keys", str(e)) from None
    return ManholeConfig(
        listen,
        protocol="ssh",
        host_key=host_key,
        authorized_keys=authorized,
        allow_remote=allow_remote,
        **_limits(ini),
    )


def _limits(ini: IniFile) -> dict[str, Any]:
    s = "manhole"
    return dict(
        max_auth_tries=ini.number(s, "max_auth_tries", 3, low=1, high=100, integer=True),
        max_unauthenticated=ini.number(s, "max_unauthenticated", 10, low=1, high=10_000, integer=True),
        lockout_after=ini.number(s, "lockout_after", 10, low=1, high=100_000, integer=True),
        lockout_s=ini.number(s, "lockout_s", 600.0, low=1, high=7 * 86400),
        login_timeout_s=ini.number(s, "login_timeout_s", 30.0, low=1, high=3600),
        idle_s=ini.number(s, "idle_s", 900.0, low=1, high=7 * 86400),
    )


def _path(ini: IniFile, path: str) -> str:
    if not os.path.isabs(path) and ini.source and os.path.dirname(ini.source):
        return os.path.join(os.path.dirname(ini.source), path)
    return path


def listens_locally(listen: str) -> bool:
    """Whether the endpoint string ``listen`` can only be reached from this
    machine: a ``tcp:``/``tcp6:`` on a loopback interface, or a ``unix:``
    socket.  ValueError for a kind of endpoint a manhole cannot use."""
    args, kwargs = endpoints._parse(listen)
    kind = args[0] if args else ""
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6"):
        raise ValueError(f"expected a tcp:, tcp6: or unix: endpoint, got {listen!r}")
    interface = kwargs.get("interface", "" if kind == "tcp" else "::")
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback if interface else False
    except ValueError:
        raise ValueError(f"interface {interface!r} is not an IP address") from None


def fingerprint(key: keys.Key) -> str:
    """A key's fingerprint as ``ssh-keygen -l`` and ``ssh`` show it."""
    digest = hashlib.sha256(key.blob()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def ssh_command(port: int, identity: str, known_hosts: str | None = None, host: str = "127.0.0.1",
                user: str = "operator") -> str:
    """The command an operator types to reach the manhole: ``identity`` is
    the private key (``manhole/operator_ed25519``), ``known_hosts`` a file
    holding the host key's line (``known_hosts_line``) so that ``ssh``
    checks it instead of asking."""
    options = ["-o IdentitiesOnly=yes"]
    if known_hosts is not None:
        options += [f"-o UserKnownHostsFile={shlex.quote(known_hosts)}", "-o StrictHostKeyChecking=yes"]
    return f"ssh -i {shlex.quote(identity)} {' '.join(options)} -p {port} {user}@{host}"


def known_hosts_line(host_key: str, port: int, host: str = "127.0.0.1") -> str:
    """The ``known_hosts`` line for the manhole's host key (the private key
    file ``host_key``) at ``host``:``port``, newline ended."""
    key = load_host_key(host_key).public()
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key.toString('openssh').decode('ascii')}\n"


def load_host_key(path: str) -> keys.Key:
    """The SSH host key (private) in ``path``; ValueError saying what is wrong:
    missing, unreadable, readable by others, not a key, a public key, or
    encrypted."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ValueError(f"host key {path} does not exist; {PKI_HINT}") from None
    except OSError as e:
        raise ValueError(f"cannot read host key {path}: {e.strerror}") from None
    if mode & 0o077:
        raise ValueError(f"host key {path} is open to others (mode {stat.S_IMODE(mode):04o}): "
                         f"chmod 600 {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read host key {path}: {e.strerror}") from None
    try:
        key = keys.Key.fromString(data)
    except keys.EncryptedKeyError:
        raise ValueError(f"host key {path} is encrypted with a passphrase; the manhole needs it unencrypted "
                         "(and mode 0600)") from None
    except (keys.BadKeyError, ValueError, IndexError, TypeError) as e:
        raise ValueError(f"host key {path} is not an OpenSSH private key ({e or type(e).__name__})") from None
    if key.isPublic():
        raise ValueError(f"host key {path} is a public key; host_key names the private one "
                         "(ssh_host_ed25519_key, not the .pub)")
    return key


def load_authorized_keys(path: str) -> list[keys.Key]:
    """The public keys in the OpenSSH ``authorized_keys`` file ``path``;
    ValueError naming the file (and line) when it is missing, writable by
    others, holds a line that is not a key, or holds no key at all."""
    return [key for key, _ in authorized_keys_with_comments(path)]


def authorized_keys_with_comments(path: str) -> list[tuple[keys.Key, str]]:
    """``load_authorized_keys``, each key with its comment (who it is)."""
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ValueError(f"authorized keys file {path} does not exist; {PKI_HINT}") from None
    except OSError as e:
        raise ValueError(f"cannot read authorized keys file {path}: {e.strerror}") from None
    if mode & 0o022:
        raise ValueError(f"authorized keys file {path} is writable by others (mode {stat.S_IMODE(mode):04o}): "
                         f"chmod 600 {path}")
    found = []
    for number, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            key = keys.Key.fromString(line)
        except Exception:
            key = None
        if key is None or not key.isPublic():
            raise ValueError(f"{path} line {number}: not an OpenSSH public key (expected a line like "
                             "'ssh-ed25519 AAAA... operator'; options before the key are not supported)")
        fields = line.split(None, 2)
        found.append((key, fields[2].decode("utf-8", "replace") if len(fields) > 2 else ""))
    if not found:
        raise ValueError(f"authorized keys file {path} holds no key: nobody could log in; {PKI_HINT}")
    return found
