"""The operator's debug manhole: a Python shell into the live process, over SSH.

Configured in a ``[manhole]`` section of the aggregator's or home's ini file::

    [manhole]
    listen = 7790                  ; a bare port, or a tcp: endpoint without
                                   ; interface=, is bound to 127.0.0.1
    host_key = pki/manhole/ssh_host_ed25519_key
    authorized_keys = pki/manhole/authorized_keys

(paths relative to the ini file's folder; ``jeisson pki manhole DIR`` makes
both, and an operator's key pair).  Connect with::

    ssh -i pki/manhole/operator_ed25519 -o IdentitiesOnly=yes -p 7790 operator@127.0.0.1

and the shell's namespace holds the live ``aggregator`` or ``home`` object.

What guards it, by layer:

- *Keys only.*  A public key listed in ``authorized_keys`` (OpenSSH format,
  re-read at every attempt, so adding an operator needs no restart); any
  user name.  Passwords and keyboard-interactive are not offered, and a
  client trying them anyway is counted as failing.
- *Loopback by default.*  An interface other than loopback needs
  ``allow_remote = yes`` and is warned of at start; without it the config is
  refused.
- *Attempts limited.*  At most ``max_unauthenticated`` connections not
  logged in yet at once; ``max_auth_tries`` failed authentications close a
  connection; ``lockout_after`` failures (authentications refused, logins
  timed out, protocol garbage) from one address within ``lockout_s`` lock
  it out (every connection closed at once) for ``lockout_s``.  A
  connection not logged in after ``login_timeout_s`` is closed, and so is a
  session nobody has typed in for ``idle_s``.
- *Garbage.*  Whatever a client sends, a connection that breaks the protocol
  costs one log line naming the peer, never a traceback.

``protocol = telnet`` keeps the old telnet manhole with a password file
(``passwd =``) for the lab: off unless asked for, loopback only even with
``allow_remote``, warned of at start, and under the same limits.

The rooms: ``config`` (the section, the key files, the ``ssh`` command the
demo prints), ``watch`` (the lockout, plain Python, and one ``_Watch`` per
connection that keeps its timers, counts its failures and logs how it
ended, for SSH and telnet alike), ``ssh`` and ``telnet`` (thin shells over
Twisted conch that tell the watch what happened and carry out its closes).
"""

from twisted.application import strports
from twisted.internet.protocol import ServerFactory

from jeisson.config import ConfigError
from jeisson.manhole.config import (
    CLOSE_GRACE_S,
    PKI_HINT,
    ManholeConfig,
    authorized_keys_with_comments,
    fingerprint,
    known_hosts_line,
    listens_locally,
    load_authorized_keys,
    load_host_key,
    read_manhole,
    ssh_command,
)
from jeisson.manhole.ssh import AuthorizedKeysFile, manhole_factory
from jeisson.manhole.telnet import telnet_factory
from jeisson.manhole.watch import Lockout, _peer

__all__ = ["CLOSE_GRACE_S", "PKI_HINT", "AuthorizedKeysFile", "Lockout", "ManholeConfig", "_peer",
           "authorized_keys_with_comments", "fingerprint", "known_hosts_line", "listens_locally",
           "load_authorized_keys", "load_host_key", "manhole_factory", "manhole_service", "read_manhole",
           "ssh_command", "telnet_factory"]


def manhole_service(config: ManholeConfig, namespace: dict):
    """The manhole's listening service, whose shell sees ``namespace``.

    Built with ``strports.service``, so a port that cannot be bound stops
    start-up.  Raises ``ConfigError`` when a key file went bad since the
    config was read.
    """
    factory: ServerFactory
    if config.protocol == "telnet":
        factory = telnet_factory(config, namespace)
    else:
        try:
            factory = manhole_factory(config, namespace)
        except ValueError as e:
            raise ConfigError(f"[manhole]: {e}") from None
    return strports.service(config.listen, factory)
