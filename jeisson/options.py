"""What every jeisson twistd plugin shares: the ``--config`` option.

The config is read while twistd parses the command line, so a bad file is
reported as a usage error (one clear line naming file, section and key)
rather than as a traceback from ``makeService``.
"""

from twisted.python import usage


class ConfigOptions(usage.Options):
    optParameters = [["config", "c", None, "path of the ini file (see etc/jeisson/)"]]

    #: ``path -> config``: the role's ``read_config``, set by each plugin.
    read_config = None

    def postOptions(self):
        if not self["config"]:
            raise usage.UsageError("--config is required: the path of the ini file")
        self["parsed"] = type(self).read_config(self["config"])


def config_of(options, read_config):
    """The config read at option parsing, or read now (tests, callers)."""
    parsed = options.get("parsed")
    return parsed if parsed is not None else read_config(options["config"])
