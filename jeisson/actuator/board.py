"""The relay board itself, without any I/O: relays, meter, failsafe and power-up.

Time comes from an injected ``IReactorTime`` (the reactor in service, a
``task.Clock`` in tests), so every rule here runs the same in both.  These
are the rules a board's firmware must follow (``docs/protocol.rst``,
"Writing firmware"); the software actuator is their reference.

Three rules protect the loads and the feeder, whoever asks:

- a relay never switches twice within its ``min_interval_s`` (compressors
  and heat pumps are damaged by short cycling), and power-up counts as a
  switch: a board keeps no clock across a power loss, and the relay that
  was closed opened when the power went;
- at power-up every relay is open; the relays whose ``safe_state`` is
  ``on`` close only after a *cold-load pickup* delay drawn uniformly in
  ``[cold_load_min_s, cold_load_max_s]``, so that a feeder's boards do not
  all switch their loads back at once when power returns.  A home that
  welcomes the board before then is in charge: nothing closes behind its
  back;
- when the home has been silent for ``failsafe_after_s`` (counted from
  power-up, connected or not), each relay goes to its ``safe_state``, at
  the earliest moment the first rule (and, for a closing, the cold-load
  delay) allows.

A switch the home did not command (power-up, cold-load pickup, failsafe)
sets ``unreported_switch``; the session tells the home the true states with
``HELLO`` before it obeys it again.
"""

import random
from typing import Self

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from jeisson.actuator.config import ActuatorConfig, RelayConfig
from jeisson.timers import cancel
from jeisson.wire import board_auth, home_actuator

OK = "ok"

# Why a relay switched: the home's SET, or the board on its own.
HOME = "home"
FAILSAFE = "failsafe"
COLD_LOAD = "cold-load pickup"
POWER_UP = "power-up"
POWER_DOWN = "power-down"


def _word(on: bool) -> str:
    return "on" if on else "off"


@attrs.define
class Relay:
    """One relay's state; ``last_switch`` is None until it first switches
    (a board not yet powered up)."""

    config: RelayConfig
    on: bool = False
    last_switch: float | None = None
    switches: int = 0
    # A switch to the safe state waiting for its moment (the cold-load
    # delay, or min_interval_s), and why it was scheduled.
    pending: IDelayedCall | None = None
    pending_cause: str | None = None

    def allowed_at(self) -> float:
        """The earliest time this relay may switch again."""
        if self.last_switch is None:
            return float("-inf")
        return self.last_switch + self.config.min_interval_s

    def cancel_pending(self) -> None:
        cancel(self.pending)
        self.pending = None
        self.pending_cause = None


@attrs.define
class Board:
    """Relays with state, a power meter, the failsafe timer and the
    cold-load pickup after power-up."""

    log = Logger()

    config: ActuatorConfig
    clock: IReactorTime
    # Meter noise and the cold-load delay; seeded from the config so that a
    # run can be replayed (and boards with different seeds draw apart).
    rng: random.Random
    relays: list[Relay]
    in_failsafe: bool = False
    # A relay switched by the board on its own (power-up, cold-load pickup,
    # failsafe) that the home has not been told of: the home learns relay
    # states only from HELLO, so the session says HELLO again.
    unreported_switch: bool = False
    last_heard: float | None = None
    # When the relays whose safe state is on may first close after power-up.
    cold_load_at: float | None = None
    _running: bool = False
    _failsafe_call: IDelayedCall | None = None
    # Lines from a home that proved nothing (a rogue listener, a replay):
    # logged once a minute, counted, across sessions.
    auth_failures: board_auth.Tally = attrs.Factory(board_auth.Tally)
    # Plain ERR lines in version 2 (anyone may send one): logged likewise.
    plain_errors: board_auth.Tally = attrs.Factory(board_auth.Tally)

    @classmethod
    def from_config(cls, config: ActuatorConfig, clock: IReactorTime) -> Self:
        relays = [Relay(relay) for relay in config.relays]
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
        # The home is in charge again: its command replaces any switch to
        # the safe state still waiting for this relay (failsafe, cold-load).
        self.in_failsafe = False
        relay.cancel_pending()
        if relay.on == on:
            return OK
        if self.clock.seconds() < relay.allowed_at():
            return home_actuator.BUSY
        self._apply(relay, on, HOME)
        self.log.info("actuator {actuator}: relay {relay} switched {state} by the home", actuator=self.config.id,
                      relay=number, state=_word(on))
        return OK

    def home_in_charge(self) -> None:
        """The home welcomed the board: it knows the true states (from
        ``HELLO``) and decides every switch from now on, so no switch to a
        safe state still waiting (the cold-load pickup) may happen behind
        its back."""
        waiting = [relay for relay in self.relays if relay.pending is not None]
        if not waiting:
            return
        self.log.info("actuator {actuator}: the home is in charge; relays {relays} stay as they are ({cause} "
                      "cancelled)", actuator=self.config.id,
                      relays=", ".join(str(relay.config.number) for relay in waiting),
                      cause=" and ".join(sorted({relay.pending_cause or "" for relay in waiting})))
        for relay in waiting:
            relay.cancel_pending()

    def readings(self, rng: random.Random) -> tuple[int, ...]:
        """Watts per relay as the meter reads them: the load with noise, 0 when off."""
        return tuple(self._reading(relay, rng) for relay in self.relays)

    def _reading(self, relay: Relay, rng: random.Random) -> int:
        if not relay.on:
            return 0
        watts = round(relay.config.load_w * (1 + rng.gauss(0, self.config.noise)))
        return min(max(watts, 0), home_actuator.MAX_WATTS)

    # -- power

    def start(self) -> None:
        """Power-up: every relay open, whatever it was before the power
        went, and each counted as switched now; the relays whose safe state
        is on close after the cold-load pickup delay (and their
        ``min_interval_s``); the failsafe counts from now, connected or not."""
        now = self.clock.seconds()
        self._running = True
        self.in_failsafe = False
        for relay in self.relays:
            relay.cancel_pending()
            if relay.on:  # started again without a new board: the power went
                self._apply(relay, False, POWER_UP)
            relay.last_switch = now
        delay = self.rng.uniform(self.config.cold_load_min_s, self.config.cold_load_max_s)
        self.cold_load_at = now + delay
        safe_on = [relay for relay in self.relays if relay.config.safe_state == "on"]
        if safe_on:
            self.log.info("actuator {actuator}: powered up: relays open; safe states in {delay:.1f} s (cold-load "
                          "pickup): relays {relays} on", actuator=self.config.id, delay=delay,
                          relays=", ".join(str(relay.config.number) for relay in safe_on))
        else:
            self.log.info("actuator {actuator}: powered up: relays open (no relay's safe state is on); they stay "
                          "open until the home commands them", actuator=self.config.id)
        self.heard_from_home()
        for relay in safe_on:
            self._to_safe_state(relay, COLD_LOAD)

    def stop(self) -> None:
        """Power-down: timers stopped, every relay open (a relay coil
        without power releases)."""
        self._running = False
        cancel(self._failsafe_call)
        self._failsafe_call = None
        for relay in self.relays:
            relay.cancel_pending()
        closed = [relay for relay in self.relays if relay.on]
        for relay in closed:
            self._apply(relay, False, POWER_DOWN)
        if closed:
            self.log.info("actuator {actuator}: powered down: relays open", actuator=self.config.id)

    # -- failsafe

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
            safe_state = relay.config.safe_state
            if safe_state == "hold" or relay.on == (safe_state == "on"):
                relay.cancel_pending()
                self.log.info(
                    "actuator {actuator}: relay {relay} stays {state} (safe state {safe_state})",
                    actuator=self.config.id,
                    relay=relay.config.number,
                    state=_word(relay.on),
                    safe_state=safe_state,
                )
            else:
                self._to_safe_state(relay, FAILSAFE)

    def _to_safe_state(self, relay: Relay, cause: str) -> None:
        """Switch ``relay`` to its safe state (on or off) now, or when its
        ``min_interval_s`` and, to close, the cold-load delay allow."""
        on = relay.config.safe_state == "on"
        at, why = relay.allowed_at(), "its minimum switching interval"
        if on and self.cold_load_at is not None and self.cold_load_at > at:
            at, why = self.cold_load_at, "the cold-load pickup delay"
        relay.cancel_pending()
        wait = at - self.clock.seconds()
        if wait <= 0:
            self._own_switch(relay, cause)
            return
        if cause != COLD_LOAD or why != "the cold-load pickup delay":  # power-up said when
            self.log.info(
                "actuator {actuator}: relay {relay} goes {state} in {wait:.1f} s, {why}",
                actuator=self.config.id,
                relay=relay.config.number,
                state=_word(on),
                wait=wait,
                why=why,
            )
        relay.pending = self.clock.callLater(wait, self._own_switch, relay, cause)
        relay.pending_cause = cause

    def _own_switch(self, relay: Relay, cause: str) -> None:
        # Scheduled for its moment; clock arithmetic may land it a rounding
        # error early, so the interval is not checked again here.
        relay.pending = None
        relay.pending_cause = None
        on = relay.config.safe_state == "on"
        self._apply(relay, on, cause)
        self.log.warn(
            "actuator {actuator}: {cause} switched relay {relay} {state} (its safe state)",
            actuator=self.config.id,
            cause=cause,
            relay=relay.config.number,
            state=_word(on),
        )

    def _apply(self, relay: Relay, on: bool, cause: str) -> None:
        relay.on = on
        relay.last_switch = self.clock.seconds()
        relay.switches += 1
        if cause != HOME:
            self.unreported_switch = True
