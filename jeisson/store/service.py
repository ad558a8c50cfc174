"""The store as a service: opened at start-up, pruned every hour, closed
(flushed) at stop."""

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jeisson.store.config import StoreConfig
from jeisson.store.sqlite import SqliteStore
from jeisson.timers import GuardedTimerService

PRUNE_PERIOD_S = 3600.0


def open_store(config: StoreConfig, clock: IReactorTime, reactor: Any = None, threaded: bool = True) -> SqliteStore:
    """A ``SqliteStore`` as ``config`` says, opened (its schema created or
    migrated, its threads started); raises ``StoreError``.  Call it at
    start-up, before the reactor runs, so that a store that cannot be
    opened stops jeisson with the reason."""
    store = SqliteStore(config.path, clock, batch_s=config.batch_s, retention_days=config.retention_days,
                        raw_hours=config.raw_hours, downsample_s=config.downsample_s, threaded=threaded,
                        reactor=reactor)
    store.open()
    return store


class StoreService(Service):
    """Keeps ``store`` (already open): prunes it at start and every
    ``prune_period_s``; at stop, closes it (what is queued is committed,
    its threads stopped) and ``twistd`` waits for that."""

    log = Logger()

    def __init__(self, store: SqliteStore, clock: IReactorTime, prune_period_s: float = PRUNE_PERIOD_S):
        self.store = store
        self.clock = clock
        self._pruning = GuardedTimerService(prune_period_s, self._prune, clock, self.log,
                                            "store {path}: prune failed", path=store.path)

    def _prune(self) -> None:
        self.store.prune(self.clock.seconds()).addErrback(
            lambda failure: self.log.failure("store {path}: prune failed", failure, path=self.store.path))

    def startService(self) -> None:
        super().startService()
        self._pruning.startService()

    def stopService(self) -> "Deferred[None]":
        super().stopService()
        self._pruning.stopService()
        return self.store.close()
