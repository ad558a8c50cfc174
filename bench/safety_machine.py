"""The safety state machine at length: ``python bench/safety_machine.py --steps 100000``.

Runs ``tests/test_safety_machine.py``'s ``SafetyMachine`` (an aggregator,
three homes and their boards on a simulated clock, driven through late,
reordered and duplicated lines, silent homes, cut links, restarts, owners'
switches and opt-outs, two overlapping events and a feeder) for at least
``--steps`` rule steps, in batches of fresh random examples.  A violated
invariant ends its example; it is printed (the steps that led to it, not
shrunk) and counted, and the run goes on.  The last line:
``steps=<n> examples=<n> violations=<n>``; the target is zero.
"""

import argparse
import pathlib
import sys
import time

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import invariant, run_state_machine_as_test

# The machine is the test's own, so the bench checks exactly what CI checks.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from tests.test_safety_machine import SafetyMachine  # noqa: E402

STEPS_PER_EXAMPLE = 100


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
            print(f"violation {violations}: {violation}"[:4000])
        print(f"{CountingMachine.steps} steps, {examples} examples, {violations} violations, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        if CountingMachine.steps == before:
            break
    print(f"steps={CountingMachine.steps} examples={examples} violations={violations}")


if __name__ == "__main__":
    main()
