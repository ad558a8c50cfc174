"""The relay board itself, without any I/O: relays, meter and failsafe.

Time comes from an injected ``IReactorTime`` (the reactor in service, a
``task.Clock`` in tests), so every rule here runs the same in both.

Two rules protect the loads, whoever asks:

- a relay never switches twice within its ``min_interval_s`` (compressors
  and heat pumps are damaged by short cycling);
- when the home has been silent for ``failsafe_after_s``, each relay goes to
  its ``safe_state``, at the earliest moment the first rule allows.
"""

import random
from typing import Self

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from jeisson.actuator.config import ActuatorConfig, RelayConfig
from jeisson.timers import cancel
from jeisson.wire import home_actuator

OK = "ok"


def _word(on: bool) -> str:
    return "on" if on else "off"


@attrs.define
class Relay:
    """One relay's state; ``last_switch`` is None until it first switches."""

    config: RelayConfig
    on: bool
    last_switch: float | None = None
    switches: int = 0
    # A failsafe switch waiting for min_interval_s to pass.
    pending: IDelayedCall | None = None

    def allowed_at(self) -> float:
        """The earliest time this relay may switch again."""
        if self.last_switch is None:
            return float("-inf")
        return self.last_switch + self.config.min_interval_s

    def cancel_pending(self) -> None:
        cancel(self.pending)
        self.pending = None


@attrs.define
class Board:
    """Relays with state, a power meter, and the failsafe timer."""

    log = Logger()

    config: ActuatorConfig
    clock: IReactorTime
    # Meter noise; seeded from the config so a run can be replayed.
    rng: random.Random
    relays: list[Relay]
    in_failsafe: bool = False
    # Relays the failsafe switched that the home has not been told of (the
    # home learns relay states from HELLO): the session says HELLO again.
    failsafe_switched: bool = False
    last_heard: float | None = None
    _running: bool = False
    _failsafe_call: IDelayedCall | None = None

    @classmethod
    def from_config(cls, config: ActuatorConfig, clock: IReactorTime) -> Self:
        relays = [Relay(relay, relay.initial) for relay in config.relays]
        return cls(config, clock, random.Random(config.seed), relays)

    @property
    def states(self) -> tuple[bool, ...]:
        return tuple(relay.on for relay in self.relays)

    # -- commands from the home

    def switch(self, number: int, on: bool) -> str:
        """Switch relay ``number`` (from 1): ``"ok"``, ``"relay"`` or ``"busy"``."""
        if not 1 <= number <= len(self.relays):
            return home_actuator.RELAY
        relay = self.relays[number - 1]
        # The home is in charge again: its command replaces any failsafe
        # switch still waiting for this relay.
        self.in_failsafe = False
        relay.cancel_pending()
        if relay.on == on:
            return OK
        if self.clock.seconds() < relay.allowed_at():
            return home_actuator.BUSY
        self._apply(relay, on)
        self.log.info("actuator {actuator}: relay {relay} switched {state} by the home", actuator=self.config.id,
                      relay=number, state=_word(on))
        return OK

    def readings(self, rng: random.Random) -> tuple[int, ...]:
        """Watts per relay as the meter reads them: the load with noise, 0 when off."""
        return tuple(self._reading(relay, rng) for relay in self.relays)

    def _reading(self, relay: Relay, rng: random.Random) -> int:
        if not relay.on:
            return 0
        watts = round(relay.config.load_w * (1 + rng.gauss(0, self.config.noise)))
        return min(max(watts, 0), home_actuator.MAX_WATTS)

    # -- failsafe

    def start(self) -> None:
        """Power-up: the failsafe counts from now, connected or not."""
        self._running = True
        self.heard_from_home()

    def stop(self) -> None:
        self._running = False
        cancel(self._failsafe_call)
        self._failsafe_call = None
        for relay in self.relays:
            relay.cancel_pending()

    def heard_from_home(self) -> None:
        """Any line from the home, valid or not: the home is alive."""
        self.last_heard = self.clock.seconds()
        if self.in_failsafe:
            # The home is back: it decides again; no safe switch still
            # waiting for its relay's interval may fire behind its back.
            self.in_failsafe = False
            for relay in self.relays:
                relay.cancel_pending()
        if not self._running:
            return
        delay = self.config.failsafe_after_s
        # reset() only moves the existing call later, which reactors do
        # lazily: cheap enough for every line received.
        if self._failsafe_call is not None and self._failsafe_call.active():
            self._failsafe_call.reset(delay)
        else:
            self._failsafe_call = self.clock.callLater(delay, self._go_safe)

    def _go_safe(self) -> None:
        self._failsafe_call = None
        self.in_failsafe = True
        self.log.warn(
            "actuator {actuator}: nothing heard from the home for {seconds} s; relays going to their safe states",
            actuator=self.config.id,
            seconds=self.config.failsafe_after_s,
        )
        for relay in self.relays:
            self._make_safe(relay)

    def _make_safe(self, relay: Relay) -> None:
        safe_state = relay.config.safe_state
        if safe_state == "hold" or relay.on == (safe_state == "on"):
            self.log.info(
                "actuator {actuator}: relay {relay} stays {state} (safe state {safe_state})",
                actuator=self.config.id,
                relay=relay.config.number,
                state=_word(relay.on),
                safe_state=safe_state,
            )
            return
        wait = relay.allowed_at() - self.clock.seconds()
        if wait <= 0:
            self._safe_switch(relay)
            return
        self.log.info(
            "actuator {actuator}: relay {relay} goes {state} in {wait:.1f} s, its minimum switching interval",
            actuator=self.config.id,
            relay=relay.config.number,
            state=safe_state,
            wait=wait,
        )
        relay.cancel_pending()
        relay.pending = self.clock.callLater(wait, self._safe_switch, relay)

    def _safe_switch(self, relay: Relay) -> None:
        # Scheduled for allowed_at(); clock arithmetic may land it a rounding
        # error early, so the interval is not checked again here.
        relay.pending = None
        on = relay.config.safe_state == "on"
        self._apply(relay, on)
        self.failsafe_switched = True
        self.log.warn(
            "actuator {actuator}: failsafe switched relay {relay} {state}",
            actuator=self.config.id,
            relay=relay.config.number,
            state=_word(on),
        )

    def _apply(self, relay: Relay, on: bool) -> None:
        relay.on = on
        relay.last_switch = self.clock.seconds()
        relay.switches += 1
