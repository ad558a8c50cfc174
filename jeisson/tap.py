"""What every jeisson twistd plugin shares: the ``--config`` option."""

from twisted.python import usage


class ConfigOptions(usage.Options):
    optParameters = [["config", "c", None, "path of the ini file (see etc/jeisson/)"]]

    def postOptions(self):
        if not self["config"]:
            raise usage.UsageError("--config is required: the path of the ini file")
