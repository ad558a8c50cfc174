"""What every benchmark here shares: a median over repeated runs."""

import statistics
import time


def median_seconds(function, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)
