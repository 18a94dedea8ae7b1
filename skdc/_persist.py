"""Keras models inside pickled estimators.

Estimators keep their Keras models in the pickled state as ``.keras`` archive
bytes (weights and config, never Python code) and load them back with
``safe_mode=True``, so unpickling an estimator cannot run code hidden in a
``Lambda`` layer.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import weakref
from collections import OrderedDict

import keras
import numpy as np

__all__ = ["fingerprint", "model_to_bytes", "model_from_bytes", "pop_models", "push_models"]

_PREFIX = "__keras_model__:"
_LOADED: OrderedDict = OrderedDict()  # sha256 of archive bytes -> loaded model
_LOADED_MAX = 8
_SAVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (key, bytes)
_LOCK = threading.Lock()


def model_to_bytes(model: keras.Model) -> bytes:
    """Serialise ``model`` to ``.keras`` archive bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        with open(path, "rb") as fh:
            return fh.read()


def fingerprint(model: keras.Model) -> str:
    """SHA-256 of a model's config and weights (archives embed a save time; this does not)."""
    digest = hashlib.sha256(
        json.dumps(model.get_config(), sort_keys=True, default=str).encode()
    )
    for weight in model.weights:
        digest.update(np.asarray(weight.numpy()).tobytes())
    return digest.hexdigest()


def model_from_bytes(data: bytes, key: str | None = None) -> keras.Model:
    """Load a model written by :func:`model_to_bytes` with ``safe_mode=True``.

    Estimators unpickled in one process from the same model (same ``key``, its
    :func:`fingerprint`) share one model object: adaptation never writes to it,
    and in a grid search, where every task unpickles its estimator, the compiled
    adaptation graphs are then traced once per worker instead of once per task.
    """
    if key is None:
        return _load(data)
    with _LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    model = _load(data)
    with _LOCK:
        _LOADED[key] = model
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    return model


def _load(data: bytes) -> keras.Model:
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


def _archive(model: keras.Model) -> tuple[str, bytes]:
    """Fingerprint and archive bytes of ``model``, saved once per unchanged model."""
    key = fingerprint(model)
    with _LOCK:
        cached = _SAVED.get(model)
    if cached is not None and cached[0] == key:
        return cached
    result = (key, model_to_bytes(model))
    with _LOCK:
        _SAVED[model] = result
    return result


def pop_models(state: dict) -> dict:
    """Return a copy of ``state`` with every Keras model replaced by archive bytes."""
    return {
        k: (_PREFIX, *_archive(v)) if isinstance(v, keras.Model) else v
        for k, v in state.items()
    }


def push_models(state: dict) -> dict:
    """Inverse of :func:`pop_models`."""
    return {k: model_from_bytes(v[2], v[1]) if _is_archive(v) else v for k, v in state.items()}


def _is_archive(value) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 3
        and isinstance(value[0], str)
        and value[0] == _PREFIX
    )
