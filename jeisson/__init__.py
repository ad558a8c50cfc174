"""jeisson: demand response for groups of houses, over Twisted."""

import os

# numpy's OpenBLAS hands every dot product over about 10,000 entries to its
# worker threads; on a busy machine waking them cost about 8 ms per product,
# and a 2,000-home plan took 45 ms instead of 6 (bench/solve_thread.py).
# jeisson's products are one-dimensional and gain nothing from threads.  Set
# before numpy is first imported; a value the user gives is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
