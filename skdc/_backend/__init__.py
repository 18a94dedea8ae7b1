"""The few things skdc does differently on each Keras backend.

Everything else (the objective, the graph walk, the optimizers) is written with
``keras.ops`` and runs on every backend. Per backend, one small module gives:

``compile(fn, signature, xla)``
    A compiled version of ``fn``: ``tf.function`` (XLA or not) on TensorFlow,
    ``jax.jit`` on JAX, ``fn`` itself (eager) on PyTorch. ``signature`` describes
    the arguments (:class:`Spec` leaves in lists), with ``None`` for sizes that vary.
``value_and_grad(fn)``
    ``fn(x, *args) -> (total, aux)`` becomes ``g(x, *args) -> (total, aux, d total/dx)``.
``uses_xla(requested)``
    Whether a function compiled with ``xla=requested`` runs XLA: the request on
    TensorFlow, always on JAX, never on PyTorch (so that one variant is kept where
    there is no choice).
``pads_rows(xla)``
    Whether compiled functions specialise on shapes (JAX; TensorFlow with XLA), so
    that row and group counts are padded to a few buckets.
``EAGER_PREDICT_BELOW``
    Predictions of fewer rows run eagerly instead of compiled (TensorFlow: 1,024).
``tensor(array, dtype)`` and ``numpy(tensor)``.
``WEIGHTS_AS_ARGUMENTS``
    Whether compiled functions take the model's weights as arguments (JAX, PyTorch:
    otherwise JAX would bake them in as constants) or read the variables in place
    (TensorFlow: captured by reference, as Keras' own trainer does).

Weights are never baked into compiled code as constants and never written.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from functools import cache

__all__ = ["SUPPORTED", "Spec", "current", "group_bucket", "pad_rows", "row_bucket"]

SUPPORTED = ("tensorflow", "jax", "torch")


@dataclass(frozen=True)
class Spec:
    """Shape (``None`` where it varies) and dtype name of one argument."""

    shape: tuple
    dtype: str = "float32"


@cache
def _load(name: str):
    return importlib.import_module(f"{__name__}._{name}")


def current():
    """The backend module of the running Keras backend.

    ``ValueError`` naming the backend when skdc does not run on it.
    """
    import keras

    name = keras.backend.backend()
    if name not in SUPPORTED:
        raise ValueError(
            f"skdc runs on the Keras backends {', '.join(SUPPORTED)}; this process uses "
            f"{name!r} (KERAS_BACKEND). Set KERAS_BACKEND=tensorflow, jax or torch before "
            "importing keras."
        )
    try:
        return _load(name)
    except ImportError as exc:
        raise ValueError(
            f"The Keras backend {name!r} is selected but cannot be imported ({exc}); install "
            f"it (pip install 'skdc[{'tensorflow' if name == 'tensorflow' else name}]')."
        ) from None


def row_bucket(n_rows: int) -> int:
    """Row count padded for shape-compiled functions: the next of 4 sizes per octave
    (at most 19% more rows), a multiple of 8 (of 64 from 512 rows)."""
    size = 2.0 ** (math.ceil(4 * math.log2(max(n_rows, 1))) / 4)
    step = 64 if size > 512 else 8
    return int(math.ceil(size / step) * step)


def group_bucket(n_groups: int) -> int:
    """Group count padded for backends that compile per shape: the next power of two."""
    return 1 << max(int(n_groups) - 1, 0).bit_length()


def pad_rows(array, n_rows: int):
    """``array`` (numpy) with zero rows appended up to ``n_rows`` rows (itself if it has
    as many already): what the shape buckets are filled with."""
    import numpy as np

    extra = n_rows - len(array)
    if extra <= 0:
        return array
    return np.concatenate([array, np.zeros((extra, *np.shape(array)[1:]), array.dtype)])
