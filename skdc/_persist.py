"""Keras models inside pickled estimators.

Estimators keep their Keras models in the pickled state as ``.keras`` archive
bytes (weights and config, never Python code) and load them back with
``safe_mode=True``, so unpickling an estimator cannot run code hidden in a
``Lambda`` layer.
"""

from __future__ import annotations

import os
import tempfile

import keras

__all__ = ["model_to_bytes", "model_from_bytes", "pop_models", "push_models"]

_PREFIX = "__keras_model__:"


def model_to_bytes(model: keras.Model) -> bytes:
    """Serialise ``model`` to ``.keras`` archive bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as fh:
            return fh.read()


def model_from_bytes(data: bytes) -> keras.Model:
    """Load a model written by :func:`model_to_bytes` with ``safe_mode=True``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except ValueError as exc:
            raise ValueError(
                "The persisted estimator holds a Keras model that cannot be loaded safely "
                f"(safe_mode=True): {exc}"
            ) from exc
        except Exception as exc:  # zip/h5 errors of a truncated or corrupted file
            raise ValueError(
                "The persisted estimator holds a corrupted or truncated Keras model "
                f"({type(exc).__name__}: {exc})."
            ) from exc


def pop_models(state: dict) -> dict:
    """Return a copy of ``state`` with every Keras model replaced by archive bytes."""
    out = {}
    for key, value in state.items():
        if isinstance(value, keras.Model):
            out[key] = (_PREFIX, model_to_bytes(value))
        else:
            out[key] = value
    return out


def push_models(state: dict) -> dict:
    """Inverse of :func:`pop_models`."""
    out = {}
    for key, value in state.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) \
                and value[0] == _PREFIX:
            out[key] = model_from_bytes(value[1])
        else:
            out[key] = value
    return out
