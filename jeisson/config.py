"""Reading jeisson's ini files into checked values.

Each role (``aggregator``, ``home``, ``actuator``) declares its sections and
keys in its own ``config`` module through ``IniFile``; anything not declared
is refused, and every error names the file, the section, the key and what was
expected, as a ``twisted.python.usage.UsageError`` that ``twistd`` prints.
"""

import configparser
import math
import re
import time
from collections.abc import Collection
from typing import Literal, TypeVar, overload

from twisted.python.usage import UsageError

from jeisson.wire.aggregator_home import ID_PATTERN, parse_utc

_REQUIRED = object()  # the default of a key that must be present
_D = TypeVar("_D")
_BOOLEANS = {"yes": True, "true": True, "on": True, "1": True, "no": False, "false": False, "off": False, "0": False}


class ConfigError(UsageError):
    """A config file that cannot be used, and why."""


class _CaseSensitiveParser(configparser.ConfigParser):
    """Keys as written: ``rated_W`` is not ``rated_w``."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


class IniFile:
    """An ini file being read; tracks which sections and keys were used."""

    def __init__(self, text: str, source: str):
        self.source = source
        self._parser = _CaseSensitiveParser(
            interpolation=None, strict=True, default_section="\x00none", inline_comment_prefixes=(";",)
        )
        try:
            self._parser.read_string(text, source=source)
        except configparser.Error as e:
            raise ConfigError(f"{source}: not a valid ini file: {e}") from None
        self._used: dict[str, set[str]] = {}

    @classmethod
    def read(cls, path: str) -> "IniFile":
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text") from None
        return cls(text, path)

    def error(self, section: str, key: str | None, message: str) -> ConfigError:
        where = f"[{section}]" + (f" {key}" if key else "")
        return ConfigError(f"{self.source}: {where}: {message}")

    def has_section(self, section: str) -> bool:
        return self._parser.has_section(section)

    def sections(self, prefix: str) -> list[tuple[str, str]]:
        """``(section, name)`` for every section named ``prefix:name``."""
        found: list[tuple[str, str]] = []
        for section in self._parser.sections():
            kind, sep, name = section.partition(":")
            if sep and kind == prefix:
                if not ID_PATTERN.match(name):
                    raise self.error(section, None, "the name after ':' must be an id of 1-32 letters, digits, _ . -")
                found.append((section, name))
        return found

    def _get(self, section: str, key: str, required: bool) -> str | None:
        """The key's value, stripped; None when it is absent and not required."""
        self._used.setdefault(section, set()).add(key)
        if not self._parser.has_section(section):
            if required:
                raise self.error(section, None, "missing section")
            return None
        if not self._parser.has_option(section, key):
            if required:
                raise self.error(section, key, "missing key")
            return None
        return self._parser.get(section, key).strip()

    # Every reader below takes an optional default, returned as given when
    # the key is absent; without one the key is required.  The overloads say
    # so to the type checker: the value's type, or it or the default's.

    @overload
    def raw(self, section: str, key: str) -> str: ...
    @overload
    def raw(self, section: str, key: str, default: _D) -> str | _D: ...
    def raw(self, section: str, key: str, default: object = _REQUIRED) -> object:
        value = self._get(section, key, default is _REQUIRED)
        return default if value is None else value

    @overload
    def text(self, section: str, key: str) -> str: ...
    @overload
    def text(self, section: str, key: str, default: _D) -> str | _D: ...
    def text(self, section: str, key: str, default: object = _REQUIRED) -> object:
        value = self._get(section, key, default is _REQUIRED)
        if value is None:
            return default
        if value == "" and default is _REQUIRED:
            raise self.error(section, key, "must not be empty")
        return value

    @overload
    def ident(self, section: str, key: str) -> str: ...
    @overload
    def ident(self, section: str, key: str, default: _D) -> str | _D: ...
    def ident(self, section: str, key: str, default: object = _REQUIRED) -> object:
        value = self._get(section, key, default is _REQUIRED)
        if value is None:
            return default
        if not ID_PATTERN.match(value):
            raise self.error(section, key, f"expected an id of 1-32 letters, digits, '_', '.', '-', got {value!r}")
        return value

    @overload
    def number(self, section: str, key: str, *, low: float = ..., high: float = ...,
               integer: Literal[False] = ...) -> float: ...
    @overload
    def number(self, section: str, key: str, default: _D, low: float = ..., high: float = ...,
               integer: Literal[False] = ...) -> float | _D: ...
    @overload
    def number(self, section: str, key: str, *, low: float = ..., high: float = ..., integer: Literal[True]) -> int: ...
    @overload
    def number(self, section: str, key: str, default: _D, low: float = ..., high: float = ...,
               *, integer: Literal[True]) -> int | _D: ...
    def number(self, section: str, key: str, default: object = _REQUIRED, low: float = -math.inf,
               high: float = math.inf, integer: bool = False) -> object:
        value = self._get(section, key, default is _REQUIRED)
        if value is None:
            return default
        kind = "a whole number" if integer else "a number"
        try:
            number = int(value) if integer else float(value)
        except ValueError:
            raise self.error(section, key, f"expected {kind}, got {value!r}") from None
        if not math.isfinite(number) or not low <= number <= high:
            raise self.error(section, key, f"expected {kind} from {low} to {high}, got {value!r}")
        return number

    @overload
    def boolean(self, section: str, key: str) -> bool: ...
    @overload
    def boolean(self, section: str, key: str, default: _D) -> bool | _D: ...
    def boolean(self, section: str, key: str, default: object = _REQUIRED) -> object:
        value = self._get(section, key, default is _REQUIRED)
        if value is None:
            return default
        try:
            return _BOOLEANS[value.lower()]
        except KeyError:
            raise self.error(section, key, f"expected yes or no, got {value!r}") from None

    @overload
    def choice(self, section: str, key: str, choices: Collection[str]) -> str: ...
    @overload
    def choice(self, section: str, key: str, choices: Collection[str], default: _D) -> str | _D: ...
    def choice(self, section: str, key: str, choices: Collection[str], default: object = _REQUIRED) -> object:
        value = self._get(section, key, default is _REQUIRED)
        if value is None:
            return default
        if value not in choices:
            raise self.error(section, key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    @overload
    def xbee_address(self, section: str, key: str) -> int: ...
    @overload
    def xbee_address(self, section: str, key: str, default: _D) -> int | _D: ...
    def xbee_address(self, section: str, key: str, default: object = _REQUIRED) -> object:
        """A radio's 64-bit address: 16 hex digits (SH then SL)."""
        value = self._get(section, key, default is _REQUIRED)
        if value is None:
            return default
        if not re.fullmatch(r"[0-9A-Fa-f]{16}", value):
            raise self.error(section, key, f"expected a 64-bit XBee address of 16 hex digits, got {value!r}")
        return int(value, 16)

    def time(self, section: str, key: str, now: float) -> float:
        """A UTC time (``2026-11-23T18:00:00Z``) or ``+SECONDS`` after ``now``."""
        value = self.raw(section, key)
        if re.fullmatch(r"\+\d+(\.\d+)?", value):
            return now + float(value[1:])
        try:
            return parse_utc(value)
        except ValueError:
            raise self.error(
                section, key, f"expected a UTC time like 2026-11-23T18:00:00Z or +SECONDS from start, got {value!r}"
            ) from None

    @overload
    def server_endpoint(self, section: str, key: str, *, loopback_default: bool = ...) -> str: ...
    @overload
    def server_endpoint(self, section: str, key: str, default: _D, loopback_default: bool = ...) -> str | _D: ...
    def server_endpoint(self, section: str, key: str, default: object = _REQUIRED,
                        loopback_default: bool = False) -> object:
        """An endpoint string to listen on, checked by Twisted's parser.

        With ``loopback_default`` a bare port number, or a ``tcp:`` endpoint
        without an ``interface``, is bound to 127.0.0.1.
        """
        value = self._get(section, key, default is _REQUIRED)
        if value is None:
            return default
        if loopback_default:
            if value.isdigit():
                value = f"tcp:{value}:interface=127.0.0.1"
            elif value.startswith("tcp:") and "interface=" not in value:
                value += ":interface=127.0.0.1"
        from twisted.internet import endpoints, reactor

        try:
            endpoints.serverFromString(reactor, value)
        except Exception as e:
            raise self.error(section, key, f"not a server endpoint string like tcp:7700 ({e})") from None
        return value

    @overload
    def client_endpoint(self, section: str, key: str) -> str: ...
    @overload
    def client_endpoint(self, section: str, key: str, default: _D) -> str | _D: ...
    def client_endpoint(self, section: str, key: str, default: object = _REQUIRED) -> object:
        value = self._get(section, key, default is _REQUIRED)
        if value is None:
            return default
        from twisted.internet import endpoints, reactor

        try:
            endpoints.clientFromString(reactor, value)
        except Exception as e:
            raise self.error(section, key, f"not a client endpoint string like tcp:127.0.0.1:7700 ({e})") from None
        return value

    def check_unknown(self) -> None:
        """Refuse sections and keys that nothing read: likely typos."""
        for section in self._parser.sections():
            if section not in self._used:
                raise self.error(section, None, "unknown section")
            for key in self._parser.options(section):
                if key not in self._used[section]:
                    known = ", ".join(sorted(self._used[section]))
                    raise self.error(section, key, f"unknown key (known keys here: {known})")


def wall_clock() -> float:
    return time.time()
