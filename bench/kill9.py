"""kill -9 at random instants, and nothing acknowledged is lost: ``python bench/kill9.py``.

The shipped lab (``etc/jeisson``: the aggregator, three homes, five
software boards, the simulated radio) runs as real ``twistd`` processes
(``bench/procs.py``: on the default, secure path, the homes over mutual
TLS, the boards authenticated, credentials in the work directory's
``pki/``; the homes reconnect within a lab's window, ``reconnect_base_s =
1`` and ``reconnect_cap_s = 15``, not a fleet's 120 s; the manhole is the
telnet one, loopback, a password file of mode 0600) under an event of
``--limit-kw`` whose end is far
away, so rounds, budgets and commitments go on the whole time; the homes
report every second.  Meanwhile an operator adds and cancels events, one
command at a time, through the manhole (``aggregator.add_event``,
``aggregator.cancel_event``) and through the events file (a new section,
and the previous one cancelled, every 0.5 to 1.5 s).  The bench then
kills the aggregator or one home (``--aggregator-share`` of the kills go to
the aggregator) with SIGKILL at a random instant (0 to ``--max-wait`` s
after the last one recovered), copies its store as the kill left it, and
starts it again.

*Acknowledged* means a peer or an operator was told it is done, and each
must be found in the store the kill left:

event
    the manhole answered ``added`` or ``cancelled``, or the aggregator
    logged an event from the events file as added or cancelled (it logs
    that once the event is durable): the store holds the event (for a
    cancellation, cancelled with at least that version); and the restarted
    aggregator resumes at least the events acknowledged and still live.
welcome
    a home logged that the aggregator WELCOMEd it: the aggregator's store
    holds a ``registered`` entry for that home from the same life, one per
    WELCOME.
round
    a home was sent a BUDGET numbered n: the aggregator's store has its
    round numbering at n or beyond (a restart never numbers a round again).
commit
    the aggregator received a home's COMMIT for round n (its round line
    names what the home committed): the home's store holds the budget of
    round n when the home applied it, and, for the home's last COMMIT, each
    load's last switch as the COMMIT says it is (or a later switch).

*Recovery* is from the kill to the restarted process taking up its work:
for the aggregator, resumed from its store and every home WELCOMEd again;
for a home, WELCOMEd by the aggregator again and each of its boards joined
again.  It includes the bench's copy of the store (a few ms) and
``twistd``'s start-up.

The last line: ``kills=N acked_lost=L recovery_p99_ms=R`` (with the kills
of each kind, what was acknowledged, and the p50 and the max).  ``--kills``
sets N (1,000 by default); ``--workdir`` keeps the configs, logs and
stores.  A loss is printed as it is found, with the store copy kept.
"""

import argparse
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from procs import (  # noqa: E402
    POLL_S,
    BenchError,
    Fleet,
    Layout,
    Life,
    Manhole,
    lay_out,
    percentile,
    read_journal,
    read_state,
    said,
    utc,
)

# The bench's own events start two days from now and last an hour: they
# never bind, so the run's one event keeps the rounds going.
FAR_S = 2 * 86400
# Live events the operator keeps through the manhole before cancelling one.
LIVE_MANHOLE_EVENTS = 4
RECOVERY_TIMEOUT_S = 60.0
RESULT = re.compile(r"(?:called back|current result): '([^']*)'")


class Ledger:
    """What was acknowledged, and what of it was lost."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.events: dict[str, tuple[int, bool]] = {}  # id -> (version, cancelled) as last acknowledged
        self.acked: Counter[str] = Counter()
        self.lost: list[str] = []

    def event(self, event_id: str, version: int, cancelled: bool) -> None:
        self.events[event_id] = (version, cancelled)
        self.acked["event"] += 1

    def lose(self, what: str) -> None:
        self.lost.append(what)
        if not self.quiet:
            print(f"LOST: {what}", flush=True)


class Operator:
    """The operator at the manhole: adds an event, or cancels the oldest
    of its live ones, one command at a time, each after the answer to the
    last (the manhole's shell is a terminal: typing over an answer arriving
    garbles the line)."""

    def __init__(self, fleet: Fleet, ledger: Ledger, rng: random.Random):
        self.fleet = fleet
        self.ledger = ledger
        self.rng = rng
        self.manhole: Manhole | None = None
        self.pending: tuple[str, str, int] | None = None  # (add or cancel, event id, version)
        self.answer = ""
        self.count = 0
        self.next_at = 0.0

    def step(self) -> None:
        fleet = self.fleet
        if self.manhole is None:
            port = fleet.layout.manhole[0] if fleet.layout.manhole else None
            if port is None or not fleet.running("aggregator") or not fleet.listening("aggregator", port):
                return
            try:
                self.manhole = Manhole(*fleet.layout.manhole)  # type: ignore[misc]
            except (OSError, BenchError):
                self.manhole = None  # not up yet, or killed meanwhile: the next step tries again
                return
        manhole = self.manhole
        if self.pending is not None:
            self.answer += manhole.output()
            match = RESULT.search(self.answer)
            if match is not None:
                what, event_id, version = self.pending
                verdict = match.group(1)
                if what == "add" and verdict.startswith("added"):
                    self.ledger.event(event_id, version, False)
                elif what == "cancel" and verdict.startswith("cancelled"):
                    self.ledger.event(event_id, version, True)
                else:
                    print(f"manhole: {what} {event_id}: {verdict}", flush=True)
                self.pending = None
            elif "Traceback" in self.answer and ">>> " in self.answer.split("Traceback")[-1]:
                print(f"manhole: {self.pending}: {self.answer[-300:]!r}", flush=True)
                self.pending = None
            elif manhole.closed:
                self.drop()
            return
        if manhole.closed:
            self.drop()
            return
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.rng.uniform(0.05, 0.3)
        live = [e for e, (_, cancelled) in self.ledger.events.items() if e.startswith("m") and not cancelled]
        self.answer = ""
        if len(live) >= LIVE_MANHOLE_EVENTS:
            event_id = live[0]
            version = self.ledger.events[event_id][0] + 1
            self.pending = ("cancel", event_id, version)
            manhole.send(f'aggregator.cancel_event("{event_id}", {version})')
        else:
            self.count += 1
            event_id = f"m{self.count}"
            self.pending = ("add", event_id, 1)
            manhole.send(f'aggregator.add_event("{event_id}", 8, "+{FAR_S}", "+{FAR_S + 3600}")')

    def drop(self) -> None:
        """The aggregator died: the command under way was never answered."""
        if self.manhole is not None:
            self.manhole.close()
        self.manhole = None
        self.pending = None


class EventsFile:
    """Writes the events file (a new event, the previous one cancelled) and
    takes the aggregator's log lines saying it took them as acknowledged."""

    def __init__(self, fleet: Fleet, ledger: Ledger, rng: random.Random):
        self.fleet = fleet
        self.ledger = ledger
        self.rng = rng
        self.count = 0
        self.next_at = 0.0
        self.read = 0  # aggregator events looked at

    def step(self) -> None:
        events = self.fleet.tails["aggregator"].events
        for event in events[self.read:]:
            source = str(event.get("source", ""))
            if not source.startswith("events file"):
                continue
            if said(event, "event {event} {verdict} from {source}") and event.get("verdict") == "added":
                self.ledger.event(str(event["event"]), int(event.get("version", 1)), False)
            elif said(event, "event {event} cancelled by {source}"):
                self.ledger.event(str(event["event"]), 2, True)
        self.read = len(events)
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.rng.uniform(0.5, 1.5)
        self.count += 1
        start = time.time() + FAR_S
        sections = [f"[event:f{self.count}]\nversion = 1\nlimit_kw = 7\nstart = {utc(start)}\n"
                    f"end = {utc(start + 3600)}\n"]
        if self.count > 1:
            sections.append(f"[event:f{self.count - 1}]\nversion = 2\ncancelled = yes\n")
        path = self.fleet.layout.events_file
        with open(path + ".new", "w", encoding="utf-8") as f:
            f.write("# written by bench/kill9.py\n\n" + "\n".join(sections))
        os.replace(path + ".new", path)


class Bench:
    def __init__(self, layout: Layout, fleet: Fleet, rng: random.Random, keep: bool):
        self.layout = layout
        self.fleet = fleet
        self.rng = rng
        self.keep = keep
        self.ledger = Ledger()
        self.operator = Operator(fleet, self.ledger, rng)
        self.events_file = EventsFile(fleet, self.ledger, rng)
        self.recovery_ms: dict[str, list[float]] = {"aggregator": [], "home": []}
        self.snapshots = os.path.join(layout.workdir, "snapshots")
        os.makedirs(self.snapshots, exist_ok=True)
        self.initial: dict[str, str] = {}  # process -> its store copied when the run began
        self.self_checked: set[str] = set()

    # -- running

    def run_until(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """Keep the operator and the events file going until ``condition()``."""
        deadline = time.monotonic() + timeout
        while True:
            self.fleet.poll()
            self.operator.step()
            self.events_file.step()
            value = condition()
            if value:
                return value
            self.fleet.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(POLL_S)

    def kill(self, number: int, victim: str, wait_s: float) -> None:
        fleet = self.fleet
        until = time.monotonic() + wait_s
        self.run_until(lambda: time.monotonic() >= until, wait_s + 5, "the kill's instant")
        life = fleet.life(victim)
        killed = fleet.kill9(victim)
        acked = dict(self.ledger.events)  # the events acknowledged before the kill
        if victim == "aggregator":
            self.operator.drop()
        snapshot = self.snapshot(victim, f"{number:04d}")
        fleet.start(victim)
        if victim == "aggregator":
            self.check_aggregator(life, killed, snapshot, acked, self.ledger)
            if "aggregator" not in self.self_checked:
                self.self_check("aggregator", lambda initial, scratch: self.check_aggregator(
                    life, killed, initial, acked, scratch))
            recovered = self.run_until(lambda: self.aggregator_recovered(), RECOVERY_TIMEOUT_S,
                                       "the aggregator to resume and every home to be WELCOMEd")
            self.check_resumed(snapshot, killed, acked)
            self.recovery_ms["aggregator"].append((recovered - killed) * 1e3)
        else:
            recovered = self.run_until(lambda: self.home_recovered(victim), RECOVERY_TIMEOUT_S,
                                       f"{victim} to be WELCOMEd and its boards to join")
            self.recovery_ms["home"].append((recovered - killed) * 1e3)
            self.check_home(victim, life, killed, snapshot, self.ledger)
            if "home" not in self.self_checked:
                self.self_check(victim, lambda initial, scratch: self.check_home(
                    victim, life, killed, initial, scratch))
        if not self.keep and not any(snapshot in lost for lost in self.ledger.lost):
            shutil.rmtree(snapshot, ignore_errors=True)

    def self_check(self, victim: str, check: Callable[[str, Ledger], None]) -> None:
        """The checks just made, once per kind of victim, against the
        victim's store as it was when the run began: a check that finds
        nothing missing there is blind."""
        kind = "aggregator" if victim == "aggregator" else "home"
        self.self_checked.add(kind)
        scratch = Ledger(quiet=True)
        check(self.initial[victim], scratch)
        print(f"self-check ({kind}): the same checks against {victim}'s store as it was when the run began find "
              f"{len(scratch.lost)} acknowledgement(s) missing{' (BLIND: none)' if not scratch.lost else ''}",
              flush=True)

    def snapshot(self, victim: str, label: str) -> str:
        """The victim's store files as they are (as the kill left them)."""
        store = self.layout.store_of(victim)
        folder = os.path.join(self.snapshots, f"{label}-{victim}")
        os.makedirs(folder, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(store + suffix):
                shutil.copyfile(store + suffix, os.path.join(folder, os.path.basename(store) + suffix))
        return folder

    def _store(self, snapshot: str, victim: str) -> str:
        return os.path.join(snapshot, os.path.basename(self.layout.store_of(victim)))

    # -- recovery

    def aggregator_recovered(self) -> float | None:
        fleet = self.fleet
        current = fleet.current("aggregator")
        resumed = [e for e in current if said(e, "resumed from store")]
        joined: dict[str, float] = {}
        for event in current:
            if said(event, "home {home} registered from"):
                joined.setdefault(event["home"], float(event["log_time"]))
        if not resumed or set(joined) != set(self.layout.homes):
            return None
        return max([float(resumed[0]["log_time"]), *joined.values()])

    def home_recovered(self, home: str) -> float | None:
        fleet = self.fleet
        since = fleet.life(home).started
        moments = [fleet.home_registered(home, since)]
        moments += [fleet.board_joined(board, since) for board in self.layout.boards_of(home)]
        if any(m is None for m in moments):
            return None
        return max(m for m in moments if m is not None)

    # -- what must be in the store

    def check_aggregator(self, life: Life, killed: float, snapshot: str, acked: dict[str, tuple[int, bool]],
                         ledger: Ledger) -> None:
        store = self._store(snapshot, "aggregator")
        kept = read_state(store, "event")
        for event_id, (version, cancelled) in sorted(acked.items()):
            value = kept.get(event_id)
            if value is None:
                ledger.lose(f"event {event_id} (acknowledged as {'cancelled' if cancelled else 'added'}) "
                                 f"is not in the store the kill left ({snapshot})")
            elif cancelled and int(value.get("cancelled", 0)) < version:
                ledger.lose(f"event {event_id}: cancelled (version {version}) acknowledged, the store has "
                                 f"{value} ({snapshot})")
        registered = read_journal(store, "registered")
        for home in self.layout.homes:
            welcomes = [e for e in self.fleet.events(home, life.started) if said(e, "registered with the aggregator")]
            entries = [at for at, subject, _, detail in registered
                       if subject == home and not detail.get("left") and life.started <= at <= killed]
            ledger.acked["welcome"] += len(welcomes)
            if len(entries) < len(welcomes):
                ledger.lose(f"{home} was WELCOMEd {len(welcomes)} time(s) by the aggregator killed at "
                                 f"{utc(killed)}, its store holds {len(entries)} registration(s) ({snapshot})")
        numbers = [int(e["n"]) for home in self.layout.homes for e in self.fleet.events(home, life.started)
                   if said(e, "event {event}: budget") and "n" in e]
        if numbers:
            ledger.acked["round"] += 1
            kept_number = int(read_state(store, "meta").get("round", 0))
            if kept_number < max(numbers):
                ledger.lose(f"round {max(numbers)} was sent to the homes; the store numbers rounds from "
                                 f"{kept_number} ({snapshot})")

    def check_resumed(self, snapshot: str, killed: float, acked: dict[str, tuple[int, bool]]) -> None:
        """The restarted aggregator resumed at least the events acknowledged
        live before the kill (and the run's own): a cancellation the store
        holds though it was never answered counts as a cancellation."""
        kept = read_state(self._store(snapshot, "aggregator"), "event")
        live = {e for e, (_, cancelled) in acked.items()
                if not cancelled and "cancelled" not in kept.get(e, {})}
        resumed = [e for e in self.fleet.current("aggregator") if said(e, "resumed from store")]
        count = int(resumed[0].get("events", 0))
        if count < len(live) + 1:
            self.ledger.lose(f"the aggregator restarted after the kill at {utc(killed)} resumed {count} event(s); "
                             f"{len(live)} acknowledged and live, and {self.layout.event_id}")

    def check_home(self, home: str, life: Life, killed: float, snapshot: str, ledger: Ledger) -> None:
        fleet = self.fleet
        received: dict[int, float] = {}
        applied: set[int] = set()
        for event in fleet.events(home, life.started):
            if event["log_time"] > killed:
                break
            n = event.get("n")
            if n is None:
                continue
            if said(event, "round {n} event {event}: budget {w:.0f} W until"):
                applied.add(int(n))
                received.setdefault(int(n), float(event["log_time"]))
            elif said(event, "budget of round {n}") or said(event, "round {n} event {event}: budget"):
                received.setdefault(int(n), float(event["log_time"]))
        if not received:
            return
        # Every round the dead home took part in has finished (or given up on it).
        last = max(received)
        self.run_until(lambda: any(int(e.get("n", -1)) >= last for e in fleet.rounds(life.started))
                       or any(said(e, "round {n} abandoned") and int(e.get("n", -1)) >= last
                              for e in fleet.events("aggregator", life.started)),
                       30, f"the aggregator's round {last} to finish")
        commits = [e for e in fleet.events("aggregator", life.started)
                   if said(e, "event {event}: home {home}: demand") and e.get("home") == home
                   and int(e.get("n", -1)) in received and e.get("committed") != "?"]
        if not commits:
            return
        store = self._store(snapshot, home)
        budgets = {int(rnd) for _, _, rnd, _ in read_journal(store, "budget") if rnd is not None}
        for commit in commits:
            ledger.acked["commit"] += 1
            n = int(commit["n"])
            if n in applied and n not in budgets:
                ledger.lose(f"{home} COMMITted round {n} after applying its budget; its store (killed at "
                                 f"{utc(killed)}) has no budget of round {n} ({snapshot})")
        commit = max(commits, key=lambda e: int(e["n"]))
        n = int(commit["n"])
        on = {load for load in str(commit.get("on", "")).split(", ") if load}
        for load, entry in read_state(store, "load").items():
            if bool(entry.get("on")) != (load in on) and float(entry.get("last_switch") or 0) <= received[n]:
                ledger.lose(f"{home} COMMITted round {n} with {load} {'on' if load in on else 'off'}; its "
                                 f"store (killed at {utc(killed)}) says {entry} ({snapshot})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=1000, help="how many kill -9 (default 1000)")
    parser.add_argument("--aggregator-share", type=float, default=0.5,
                        help="the share of the kills that go to the aggregator; the rest to a home (default 0.5)")
    parser.add_argument("--max-wait", type=float, default=3.0,
                        help="each kill comes at a random instant up to this long after the last recovery (s)")
    parser.add_argument("--limit-kw", type=float, default=10.0, help="the run's event limit (default 10 kW)")
    parser.add_argument("--seed", type=int, default=None, help="the random instants' seed")
    parser.add_argument("--workdir", default=None, help="keep configs, logs and stores here (default: a temp dir)")
    parser.add_argument("--keep-snapshots", action="store_true", help="keep every store copy, not only a loss's")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    workdir = args.workdir or tempfile.mkdtemp(prefix="jeisson-kill9-")
    layout = lay_out(workdir, limit_kw=args.limit_kw, event_start=time.time() + 8, event_length=86400,
                     manhole=True)
    print(f"kill9: {args.kills} kills, seed {seed}; configs, logs and stores in {workdir}", flush=True)
    started = time.monotonic()
    kinds: Counter[str] = Counter()
    with Fleet(layout) as fleet:
        bench = Bench(layout, fleet, rng, args.keep_snapshots)
        for name in layout.specs:
            fleet.start(name)
        fleet.wait(fleet.all_up, 60, "every home WELCOMEd and every board joined")
        bench.run_until(lambda: fleet.rounds(layout.event_start), 60, "the event's first round")
        for name in ("aggregator", *layout.homes):
            bench.initial[name] = bench.snapshot(name, "initial")
        for number in range(1, args.kills + 1):
            victim = "aggregator" if rng.random() < args.aggregator_share else rng.choice(layout.homes)
            kinds["aggregator" if victim == "aggregator" else "home"] += 1
            bench.kill(number, victim, rng.uniform(0, args.max_wait))
            if number % 10 == 0 or number == args.kills:
                done = bench.recovery_ms["aggregator"] + bench.recovery_ms["home"]
                print(f"{number} kills in {time.monotonic() - started:.0f} s; acked {dict(bench.ledger.acked)}; "
                      f"lost {len(bench.ledger.lost)}; recovery p50 {percentile(done, 50):.0f} ms", flush=True)
    elapsed = time.monotonic() - started
    ledger = bench.ledger
    every = bench.recovery_ms["aggregator"] + bench.recovery_ms["home"]
    for kind, values in bench.recovery_ms.items():
        if values:
            print(f"recovery after a kill of {'the aggregator' if kind == 'aggregator' else 'a home'}: "
                  f"{len(values)} kills, p50 {percentile(values, 50):.0f} ms, p99 {percentile(values, 99):.0f} ms, "
                  f"max {max(values):.0f} ms")
    print(f"acknowledged: {', '.join(f'{k}={v}' for k, v in sorted(ledger.acked.items()))}; "
          f"{elapsed:.0f} s in all")
    print(f"aggregator_kills={kinds['aggregator']} home_kills={kinds['home']} acked={sum(ledger.acked.values())} "
          f"recovery_p50_ms={percentile(every, 50):.0f} recovery_max_ms={max(every, default=float('nan')):.0f} "
          f"s_per_kill={elapsed / max(args.kills, 1):.2f}")
    print(f"kills={args.kills} acked_lost={len(ledger.lost)} recovery_p99_ms={percentile(every, 99):.0f}")
    return 0 if not ledger.lost else 1


if __name__ == "__main__":
    sys.exit(main())
