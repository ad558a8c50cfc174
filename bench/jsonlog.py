"""A twistd log observer factory for the benches: every event as JSON.

``twistd --logger=jsonlog.observer ...`` with this folder on ``PYTHONPATH``
and ``JEISSON_BENCH_LOG`` naming the file: each event is appended as one
record of ``twisted.logger.jsonFileLogObserver`` (``\\x1e`` + JSON + newline,
flushed as it is written), so a bench reads every event's precise
``log_time`` and its fields (a relay's number and state, a home's id)
instead of parsing text.  The file is opened for appending: a process
restarted after ``kill -9`` continues the same file, and the bench tells its
lives apart by the times it started them.
"""

import os

from twisted.logger import ILogObserver, jsonFileLogObserver

LOG_ENV = "JEISSON_BENCH_LOG"


def observer() -> ILogObserver:
    """The observer twistd starts logging to (``--logger=jsonlog.observer``)."""
    path = os.environ.get(LOG_ENV)
    if not path:
        raise SystemExit(f"jsonlog.observer: set {LOG_ENV} to the file to log to")
    return jsonFileLogObserver(open(path, "a", encoding="utf-8"))  # noqa: SIM115 (open for the process's life)
