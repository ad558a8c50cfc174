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
                        reactor=reactor, hang_s=config.hang_s)
    store.open()
    return store


class StoreService(Service):
    """Keeps ``store`` (already open): prunes it at start and every
    ``prune_period_s``.

    With ``reactor`` (in ``twistd``): at stop, commits what is queued
    (``twistd`` waits for that), and closes the store only at the reactor's
    very end ("after" "shutdown"), so that what the links write as the
    reactor drops them (a home left, a board lost) is stored too.  Without
    it, ``stopService`` closes the store."""

    log = Logger()

    def __init__(self, store: SqliteStore, clock: IReactorTime, prune_period_s: float = PRUNE_PERIOD_S,
                 reactor: Any = None):
        self.store = store
        self.clock = clock
        self.reactor = reactor
        self._trigger: Any = None
        self._pruning = GuardedTimerService(prune_period_s, self._prune, clock, self.log,
                                            "store {path}: prune failed", path=store.path)

    def _prune(self) -> None:
        self.store.prune(self.clock.seconds()).addErrback(
            lambda failure: self.log.failure("store {path}: prune failed", failure, path=self.store.path))

    def startService(self) -> None:
        super().startService()
        self._pruning.startService()
        if self.reactor is not None and self._trigger is None:
            self._trigger = self.reactor.addSystemEventTrigger("after", "shutdown", self.store.close_now)

    def stopService(self) -> "Deferred[None]":
        super().stopService()
        self._pruning.stopService()
        if self._trigger is None:
            return self.store.close()
        return self.store.durable().addErrback(
            lambda failure: self.log.failure("store {path}: what was queued at stop could not be stored", failure,
                                             path=self.store.path))
