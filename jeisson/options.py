"""What every jeisson twistd plugin shares: the ``--config`` option.

The config is read while twistd parses the command line, so a bad file is
reported as a usage error (one clear line naming file, section and key)
rather than as a traceback from ``makeService``.
"""

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from twisted.python import usage

_Config = TypeVar("_Config")


class ConfigOptions(usage.Options):
    optParameters = [["config", "c", None, "path of the ini file (see etc/jeisson/)"]]

    @staticmethod
    def read_config(path: str) -> object:
        """``path -> config``: the role's ``read_config``, set by each plugin."""
        raise NotImplementedError("each plugin sets read_config")

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config is required: the path of the ini file")
        self["parsed"] = type(self).read_config(self["config"])


# Options are twistd's dict of parsed values (Any: they hold whatever each
# option's parser made of the command line).
def config_of(options: Mapping[str, Any], read_config: Callable[[str], _Config]) -> _Config:
    """The config read at option parsing, or read now (tests, callers)."""
    parsed: _Config | None = options.get("parsed")
    return parsed if parsed is not None else read_config(options["config"])
