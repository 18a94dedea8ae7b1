"""TensorFlow: ``tf.function`` with input signatures, called through concrete functions."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .memory import collect_dropped

NAME = "tensorflow"
WEIGHTS_AS_ARGUMENTS = False


def _spec(tree):
    if isinstance(tree, list | tuple):
        return [_spec(t) for t in tree]
    return tf.TensorSpec(tree.shape, tree.dtype)


class _Compiled:
    """Calls go through the traced concrete function: dispatching a polymorphic
    ``tf.function`` costs about a millisecond per call with many arguments, and
    TensorFlow's warning about frequent retracing (one trace per model) never
    reaches the user.

    Binding structured arguments to a concrete function still costs ~40 us per
    argument (~0.65 ms for an adaptation step's 16). So calls pass the flat tensors
    to the concrete function's flat entry point; the first call checks that it gives
    the structured call's outputs, and any mismatch or missing entry point (another
    TensorFlow version) keeps the structured call.
    """

    def __init__(self, fn, signature, xla):
        self.function = tf.function(fn, input_signature=_spec(signature), jit_compile=xla,
                                    autograph=False)  # no tensor-dependent Python flow
        self._concrete = None
        self._flat = None

    def __call__(self, *args):
        if self._concrete is None:
            self._concrete = self.function.get_concrete_function()
            return self._first_call(args)
        if self._flat is not None:
            return self._flat(tf.nest.flatten(args), self._concrete.captured_inputs)
        return self._concrete(*args)

    def _first_call(self, args):
        out = self._concrete(*args)
        flat = getattr(self._concrete, "_call_flat", None)
        if flat is not None:
            try:
                again = flat(tf.nest.flatten(args), self._concrete.captured_inputs)
                tf.nest.assert_same_structure(out, again)
                same = all(np.array_equal(a.numpy(), b.numpy())
                           for a, b in zip(tf.nest.flatten(out), tf.nest.flatten(again)))
            except (TypeError, ValueError, AttributeError):
                same = False
            self._flat = flat if same else None
        return out

    def traces(self) -> int:
        return self.function.experimental_get_tracing_count()


def compile(fn, signature, xla: bool):
    collect_dropped()
    return _Compiled(fn, signature, xla)


def pads_rows(xla: bool) -> bool:
    return bool(xla)


def value_and_grad(fn):
    def wrapped(x, *args):
        # only the code: a trainable model's variables need no recording
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(x)
            total, aux = fn(x, *args)
        return total, aux, tape.gradient(total, x)

    return wrapped


def tensor(array, dtype: str = "float32"):
    if isinstance(array, np.ndarray):  # numpy casts float64 rows about twice as fast
        array = np.asarray(array, dtype)
    return tf.constant(array, getattr(tf, dtype))


def numpy(value) -> np.ndarray:
    return value.numpy()


def uses_xla(requested: bool) -> bool:
    """XLA is a choice on TensorFlow (``tf.function(jit_compile=...)``)."""
    return bool(requested)


#: Predictions of fewer rows run eagerly: TensorFlow's eager ops are fast enough, and a
#: first prediction after a fit then compiles nothing.
EAGER_PREDICT_BELOW = 1024
