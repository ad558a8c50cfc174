"""The operator's debug manhole: a telnet Python shell into the live process.

Configured in a ``[manhole]`` section of the aggregator's or home's ini file::

    [manhole]
    listen = 7790            ; a bare port, or a tcp: endpoint without
                             ; interface=, is bound to 127.0.0.1
    passwd = manhole.passwd  ; lines of user:password (relative to the ini file)

Connect with ``telnet 127.0.0.1 7790`` and log in; the namespace holds the
live ``aggregator`` or ``home`` object.
"""

import os

import attrs
from twisted.conch import manhole_tap

from jeisson.config import IniFile


@attrs.frozen
class ManholeConfig:
    listen: str
    passwd: str


def read_manhole(ini: IniFile) -> ManholeConfig | None:
    if not ini.has_section("manhole"):
        return None
    listen = ini.server_endpoint("manhole", "listen", loopback_default=True)
    passwd = ini.text("manhole", "passwd")
    if not os.path.isabs(passwd) and ini.source and os.path.dirname(ini.source):
        passwd = os.path.join(os.path.dirname(ini.source), passwd)
    if not os.path.isfile(passwd):
        raise ini.error("manhole", "passwd", f"password file {passwd} does not exist (lines of user:password)")
    return ManholeConfig(listen, passwd)


def manhole_service(config: ManholeConfig, namespace: dict):
    """A telnet manhole service whose shell sees ``namespace``."""
    return manhole_tap.makeService(
        {
            "telnetPort": config.listen,
            "sshPort": None,
            "namespace": namespace,
            "passwd": config.passwd,
            "sshKeyDir": "<USER DATA DIR>",
            "sshKeyName": "server.key",
            "sshKeySize": 4096,
        }
    )
