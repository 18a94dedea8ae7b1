"""JAX: ``jax.jit`` (always XLA; one compilation per shape, so shapes are padded)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .compilation_cache import cache_from_environment
from .memory import collect_dropped

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
    collect_dropped()
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
