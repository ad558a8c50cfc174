"""How fast the pure parts are: wire codecs, the aggregator's plan, the
home's choice.  ``python bench/wire_and_allocation.py``; prints one line per
figure and a last summary line.  Figures are medians over repeats.
"""

import argparse
import random

import numpy as np
from timing import median_seconds, per_call_seconds

from jeisson.aggregator.negotiation import Offers, plan
from jeisson.allocation import choose
from jeisson.wire import aggregator_home as dr
from jeisson.wire import home_actuator as board


def random_flex(rng: random.Random, bid: int, loads: int = 8) -> dr.Flex:
    return dr.Flex(bid, tuple(
        dr.LoadOffer(f"load-{i}", float(rng.randint(100, 5000)), rng.randint(1, 100),
                     rng.choice(("must", "may", "may", "may", "off")), rng.random() < 0.5, rng.random() < 0.1,
                     True)
        for i in range(loads)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    sample = random_flex(rng, 1)
    n = 20000
    per_flex = {}
    for version in dr.PROTOCOL_VERSIONS:
        flex_line = dr.serialize(sample, version)[:-1]
        per_flex[version] = per_call_seconds(lambda line=flex_line, v=version: dr.parse_line(line, v), n)
        per_write = per_call_seconds(lambda v=version: dr.serialize(sample, v), n)
        print(f"FLEX with 8 loads, version {version} ({len(flex_line)} bytes): parse {per_flex[version] * 1e6:.1f} us,"
              f" write {per_write * 1e6:.1f} us")
    set_line = board.serialize(board.Set(1234, 3, True))[:-1]
    per_set = per_call_seconds(lambda: board.parse_line(set_line), n)
    print(f"parse SET ({len(set_line)} bytes): {per_set * 1e6:.2f} us")

    flex = random_flex(rng, 1)
    per_offers = per_call_seconds(lambda: Offers.of(flex), 2000)
    print(f"arrays of one FLEX (Offers.of, once per FLEX received): {per_offers * 1e6:.1f} us")

    figures = {}
    for homes in (3, 100, 1000, 10000):
        flexes = {f"home-{h}": random_flex(rng, h) for h in range(homes)}
        # As the aggregator holds them: arrays built when each FLEX arrived.
        offers = {h: Offers.of(f) for h, f in flexes.items()}
        demand = sum(o.rated_w for f in flexes.values() for o in f.loads if o.mode != "off")
        seconds = median_seconds(lambda offers=offers, demand=demand: plan(offers, demand * 0.6), 5)
        figures[homes] = seconds
        print(f"plan for {homes} homes x 8 loads (limit 60 % of demand, whole-load budgets): {seconds * 1e3:.1f} ms")

    rated = np.array([rng.randint(100, 5000) for _ in range(8)], dtype=float)
    value = rated * np.array([rng.randint(1, 100) for _ in range(8)])
    low, high = np.zeros(8), np.ones(8)
    per_choice = median_seconds(lambda: choose(rated, value, low, high, rated.sum() * 0.5), 50)
    print(f"home choice (8 loads, every subset tried): {per_choice * 1e3:.3f} ms")
    print(f"flex_parse_us={per_flex[1] * 1e6:.1f} flex_v2_parse_us={per_flex[2] * 1e6:.1f} "
          f"set_parse_us={per_set * 1e6:.2f} "
          f"plan_1000_homes_ms={figures[1000] * 1e3:.1f} plan_10000_homes_ms={figures[10000] * 1e3:.1f} "
          f"choose_ms={per_choice * 1e3:.3f}")


if __name__ == "__main__":
    main()
