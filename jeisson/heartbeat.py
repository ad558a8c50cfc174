"""Link liveness: ping on a period, declare the peer dead after a silence.

Any line from the peer counts as a sign of life (``seen``).  Every
``interval`` seconds the heartbeat checks the silence: past ``timeout`` it
calls ``on_dead``, otherwise it sends a ping.  A dead peer is therefore
noticed between ``timeout`` and ``timeout + interval`` seconds after its last
line, whatever TCP keepalive says.
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

    def start(self) -> None:
        self.last_seen = self.clock.seconds()
        self._schedule()

    def seen(self) -> None:
        self.last_seen = self.clock.seconds()

    def stop(self) -> None:
        cancel(self._call)
        self._call = None

    @property
    def running(self) -> bool:
        return self._call is not None

    def _schedule(self) -> None:
        self._call = self.clock.callLater(self.interval, self._tick)

    def _tick(self) -> None:
        self._call = None
        if self.clock.seconds() - self.last_seen >= self.timeout:
            self.on_dead()
            return
        self._count = (self._count + 1) % 65536
        self._schedule()
        self.send_ping(self._count)
