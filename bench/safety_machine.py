"""The safety state machine at length: ``python bench/safety_machine.py --steps 100000``.

Runs ``tests/test_safety_machine.py``'s ``SafetyMachine`` (an aggregator,
three homes and their boards, each a process with its own SQLite store, on
a simulated clock; driven through late, reordered and duplicated lines,
silent homes, cut links, owners' switches and opt-outs, two overlapping
events and a feeder, an operator's live event, and the ways processes die:
the aggregator killed and restarted or down a while, homes killed and
restarted, boards' power blips, all three at once) for at least
``--steps`` rule steps, in batches of fresh random examples.  Its invariant
is the physical draw (the boards' closed relays) against the limit, at
every switch.  A violated invariant ends its example; it is printed with
the steps that led to it (not shrunk) and counted, and the run goes on.
The last line: ``steps=<n> examples=<n> violations=<n> steps_per_s=<n>``;
the target is zero violations.
"""

import argparse
import importlib
import pathlib
import sys
import time
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import invariant, run_state_machine_as_test

# The machine is the test's own, so the bench checks exactly what CI checks.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
# Imported by name: the tests are not type-checked, the bench is.
SafetyMachine: Any = importlib.import_module("tests.test_safety_machine").SafetyMachine

STEPS_PER_EXAMPLE = 100
INVARIANTS = ("count", "the_physical_draw_keeps_every_limit", "rounds_keep_every_limit",
              "homes_draw_within_their_budget", "relays_respect_minimum_times_and_critical_loads")


class CountingMachine(SafetyMachine):
    steps = 0

    @invariant()
    def count(self):
        CountingMachine.steps += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    args = parser.parse_args()
    started = time.perf_counter()
    examples = violations = 0
    batch = 50
    while CountingMachine.steps < args.steps:
        before = CountingMachine.steps
        try:
            run_state_machine_as_test(CountingMachine, settings=settings(
                max_examples=batch, stateful_step_count=STEPS_PER_EXAMPLE, deadline=None, database=None,
                phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
            examples += batch
        except AssertionError as violation:
            violations += 1
            examples += 1
            # Hypothesis notes the steps that led to it on the exception
            # (the invariants' calls between them left out).
            steps = "\n".join(line for line in getattr(violation, "__notes__", [])
                              if not any(f"state.{name}()" in line for name in INVARIANTS))
            print(f"violation {violations}: {violation}\n{steps}"[:20000], flush=True)
        print(f"{CountingMachine.steps} steps, {examples} examples, {violations} violations, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        if CountingMachine.steps == before:
            break
    elapsed = time.perf_counter() - started
    print(f"steps={CountingMachine.steps} examples={examples} violations={violations} "
          f"steps_per_s={CountingMachine.steps / elapsed:.0f}")


if __name__ == "__main__":
    main()
