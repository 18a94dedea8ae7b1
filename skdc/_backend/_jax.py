"""JAX: ``jax.jit`` (always XLA; one compilation per shape, so shapes are padded)."""

from __future__ import annotations

import ctypes
import gc
import threading

import jax
import jax.numpy as jnp
import numpy as np

from .compilation_cache import cache_from_environment

NAME = "jax"
WEIGHTS_AS_ARGUMENTS = True
cache_from_environment()  # SKDC_COMPILATION_CACHE: compiled code on disk across processes


class _Compiled:
    def __init__(self, fn, signature, xla):
        self.function = jax.jit(fn)
        self._shapes: set = set()

    def __call__(self, *args):
        self._shapes.add(tuple(np.shape(a) for a in jax.tree_util.tree_leaves(args)))
        return self.function(*args)

    def traces(self) -> int:
        return len(self._shapes)


def compile(fn, signature, xla: bool):
    _collect_dropped()
    return _Compiled(fn, signature, xla)


def pads_rows(xla: bool) -> bool:
    return True


def value_and_grad(fn):
    grad_fn = jax.value_and_grad(fn, has_aux=True)

    def wrapped(x, *args):
        (total, aux), grad = grad_fn(x, *args)
        return total, aux, grad

    return wrapped


def tensor(array, dtype: str = "float32"):
    return jnp.asarray(array, dtype=dtype)


def numpy(value) -> np.ndarray:
    return np.asarray(value)


def uses_xla(requested: bool) -> bool:
    """``jax.jit`` always compiles with XLA: one variant, whatever was asked."""
    return True


#: Every prediction runs compiled (per row bucket): eager JAX dispatches op by op, which
#: a recurrent layer pays at every time step.
EAGER_PREDICT_BELOW = 0


# -- memory ----------------------------------------------------------------------
#: Compilations between two full garbage collections (0: none; see _collect_dropped).
_COLLECT_EVERY = 4
_since_collect = 0
_collect_lock = threading.Lock()
try:  # glibc: give freed heap pages back to the system
    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (AttributeError, OSError, TypeError):
    _malloc_trim = None


def _collect_dropped() -> None:
    """Free the compiled functions of dropped models: a full collection before every
    ``_COLLECT_EVERY``-th compilation (unless automatic collection is disabled).

    A jitted function's memory (its XLA executables, and JAX's caches of its traces,
    weak on the function) is mostly outside Python's heap, which Python's collector does
    not count. Keras models are reference cycles and an engine goes with its model, so
    a dropped model's functions are freed only by a full collection (its engine one
    collection after the model), and Python ran 3 in 100 dropped models: over 100
    distinct small models adapted and dropped, RSS grew by ~340 MB, and malloc's heap by
    ~120 MB in use (dropped models awaiting a collection) and ~200 MB freed but kept.
    A process compiles when it sees new models, so every fourth compilation first runs
    a full collection (~0.15 s) and hands the freed pages back to the system (glibc's
    ``malloc_trim``, ~6 ms): +37 MB over the 100 models (benchmarks/bench_load.py).
    """
    global _since_collect
    if _COLLECT_EVERY <= 0 or not gc.isenabled():
        return
    with _collect_lock:
        _since_collect += 1
        if _since_collect < _COLLECT_EVERY:
            return
        _since_collect = 0
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
