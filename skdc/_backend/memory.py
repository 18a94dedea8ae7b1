"""Freeing the compiled functions of dropped models (every backend that compiles).

A compiled function's memory (TensorFlow: its graph, FunctionDef, kernels and executors;
JAX: its XLA executables and trace caches) is mostly outside Python's heap, which
Python's collector does not count. Keras models are reference cycles and an engine goes
with its model, so a dropped model's functions are freed only by a full collection (its
engine one collection after the model), and Python ran 3 in 100 dropped models: over
100 distinct small models adapted and dropped, RSS grew by ~150 MB (TensorFlow) and
~340 MB (JAX), malloc's heap holding dropped models awaiting a collection and pages
freed but kept. A process compiles when it sees new models, so every fourth compilation
first runs a full collection (~0.2 s) and hands the freed pages back to the system
(glibc's ``malloc_trim``, 1-6 ms): +19 MB (TensorFlow) and +37 MB (JAX) over the 100
models (benchmarks/bench_load.py).
"""

from __future__ import annotations

import ctypes
import gc
import threading

__all__ = ["COLLECTION", "collect_dropped"]


class _Collection:
    """Counts compilations; a full collection and ``malloc_trim`` every ``every``-th."""

    def __init__(self, every: int):
        self.every = every  # 0: never (benchmarks set it to measure skdc without it)
        self._since = 0
        self._lock = threading.Lock()
        try:  # glibc: give freed heap pages back to the system
            self._trim = ctypes.CDLL(None).malloc_trim
        except (AttributeError, OSError, TypeError):
            self._trim = None

    def before_compiling(self) -> None:
        """Count one compilation; collect before every ``every``-th (unless automatic
        collection is disabled)."""
        if self.every <= 0 or not gc.isenabled():
            return
        with self._lock:
            self._since += 1
            if self._since < self.every:
                return
            self._since = 0
        gc.collect()
        if self._trim is not None:
            self._trim(0)


#: The process's one counter, shared by the backends.
COLLECTION = _Collection(every=4)


def collect_dropped() -> None:
    """Call before compiling a function (see the module docstring)."""
    COLLECTION.before_compiling()
