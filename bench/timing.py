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


def per_call_seconds(function, calls: int, repeats: int = 5) -> float:
    """The median time of one call, over ``repeats`` runs of ``calls`` calls.
    The results are dropped as they come: kept, tens of thousands of objects
    would make the garbage collector's passes part of the figure."""

    def run():
        for _ in range(calls):
            function()

    return median_seconds(run, repeats) / calls
