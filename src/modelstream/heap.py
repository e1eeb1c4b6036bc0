"""Garbage-collector settings for long-running roles: short pauses, rare full sweeps.

CPython's cyclic collector stops every thread while it runs. A process that has imported
onnxruntime, scikit-learn, pandas and pyarrow and loaded its models holds some 150,000
container objects, and each full (generation 2) collection walks all of them: 70-115 ms
measured under load in ``modelstream serve``, every second or two -- longer than a
request's whole deadline. Nearly all of those objects live as long as the process.

:func:`settle` is called once a role has started (imports done, models loaded):

* ``gc.freeze()`` moves every object alive now to the permanent generation, which no
  collection walks again. Objects created later are collected as before; the cost is that
  a frozen object which later becomes part of an unreachable cycle is never reclaimed, a
  bounded leak of start-up state (Python's documentation recommends exactly this for
  long-lived servers).
* a higher generation-0 threshold, so the young generation is swept every 20,000
  allocations instead of every 700: per-request objects mostly die by reference count
  before then, and each sweep stays under a millisecond.

Measured with ``benchmarks/serving.py`` (see ``docs/benchmarks.md``). ``settle`` is
idempotent and changes no behaviour other than pause times and memory.
"""

from __future__ import annotations

import gc

# (generation 0, 1, 2) thresholds; Python's default is (700, 10, 10).
THRESHOLDS = (20_000, 50, 100)


def settle() -> None:
    """Collect once, freeze what is alive and raise the collection thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
