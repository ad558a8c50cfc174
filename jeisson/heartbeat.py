"""Link liveness: ping on a period, declare the peer dead after a silence.

Any line from the peer counts as a sign of life (``seen``).  Every
``interval`` seconds the heartbeat sends a ping.  The peer is dead once
``timeout`` seconds have passed since its last line: the check is a timer of
its own, due at ``last_seen + timeout`` and moved on when it finds the peer
heard since, so a dead peer is noticed ``timeout`` seconds after its last
line, not up to a period later (a check that ran only with the pings noticed
it between ``timeout`` and ``timeout + interval``: 16.8 s for a 5 s
heartbeat, above the promised three periods plus 1 s).  ``seen`` itself
touches no timer, so a busy link costs nothing per line.
"""

from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from jeisson.timers import cancel

# A peer is dead after this many heartbeat periods without a line from it.
HEARTBEAT_MISSES = 3


@attrs.define
class Heartbeat:
    clock: IReactorTime
    interval: float
    timeout: float
    send_ping: Callable[[int], None]
    on_dead: Callable[[], None]
    last_seen: float = attrs.field(init=False, default=0.0)
    _count: int = attrs.field(init=False, default=0)
    _call: IDelayedCall | None = attrs.field(init=False, default=None)
    _dead_check: IDelayedCall | None = attrs.field(init=False, default=None)

    def start(self) -> None:
        self.stop()
        self.last_seen = self.clock.seconds()
        self._schedule()
        self._dead_check = self.clock.callLater(self.timeout, self._check)

    def seen(self) -> None:
        self.last_seen = self.clock.seconds()

    def stop(self) -> None:
        cancel(self._call)
        cancel(self._dead_check)
        self._call = self._dead_check = None

    @property
    def running(self) -> bool:
        return self._call is not None

    @property
    def dead_at(self) -> float:
        """When the peer is dead unless heard before."""
        return self.last_seen + self.timeout

    def _schedule(self) -> None:
        self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self._count = (self._count + 1) % 65536
        self._schedule()
        self.send_ping(self._count)

    def _check(self) -> None:
        self._dead_check = None
        left = self.dead_at - self.clock.seconds()
        if left > 0:
            self._dead_check = self.clock.callLater(left, self._check)
            return
        self.stop()
        self.on_dead()
