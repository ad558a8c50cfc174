"""The ``[store]`` section of the aggregator's and the home's ini files.

The store is on by default, without a ``[store]`` section::

    [store]
    ; default: this ini file's name with .sqlite instead of .ini, beside it;
    ; relative to this file's folder; "none" turns the store off
    path = /var/lib/jeisson/aggregator.sqlite
    batch_s = 0.5          ; the longest a write waits for its commit (0.01..3600)
    retention_days = 90    ; measurements and journal entries older are dropped (1..3650)
    raw_hours = 48         ; raw readings older become averages (1..8760)
    downsample_s = 60      ; the width of those averages (1..86400)
    hang_s = 30            ; a commit not back after this long is hung: what waits for it fails (1..3600)

A config read from text rather than a file (``"<string>"``, tests) has no
folder to put a file in: its default ``path`` is ``:memory:`` (a store that
forgets at exit), and a relative ``path`` is taken from the working
directory.
"""

import os

import attrs

from jeisson.config import IniFile

SECTION = "store"


@attrs.frozen
class StoreConfig:
    path: str  # absolute, or ":memory:"
    batch_s: float
    retention_days: float = 90
    raw_hours: float = 48
    downsample_s: float = 60
    hang_s: float = 30


def _is_file(source: str) -> bool:
    return not (source.startswith("<") and source.endswith(">"))


def read_store(ini: IniFile, default_batch_s: float) -> StoreConfig | None:
    """The ``[store]`` section (all optional), or None for ``path = none``."""
    path = ini.raw(SECTION, "path", None)
    batch_s = ini.number(SECTION, "batch_s", default_batch_s, low=0.01, high=3600)
    retention_days = ini.number(SECTION, "retention_days", 90.0, low=1, high=3650)
    raw_hours = ini.number(SECTION, "raw_hours", 48.0, low=1, high=8760)
    downsample_s = ini.number(SECTION, "downsample_s", 60.0, low=1, high=86400)
    hang_s = ini.number(SECTION, "hang_s", 30.0, low=1, high=3600)
    if path is not None and path.lower() == "none":
        return None
    if path == "":
        raise ini.error(SECTION, "path", "must not be empty (a file, :memory:, or none to turn the store off)")
    if raw_hours * 3600 >= retention_days * 86400:
        raise ini.error(SECTION, "raw_hours", f"must be less than retention_days ({retention_days:g} days), "
                                              f"got {raw_hours:g} hours")
    if _is_file(ini.source):
        folder = os.path.dirname(os.path.abspath(ini.source))
        if path is None:
            stem, _ = os.path.splitext(os.path.basename(ini.source))
            path = stem + ".sqlite"
    else:
        folder = os.getcwd()
        if path is None:
            path = ":memory:"
    if path != ":memory:":
        path = os.path.join(folder, os.path.expanduser(path))
    return StoreConfig(path=path, batch_s=batch_s, retention_days=retention_days, raw_hours=raw_hours,
                       downsample_s=downsample_s, hang_s=hang_s)
