"""Keras models inside pickled estimators.

Estimators keep their Keras models in the pickled state as ``.keras`` archive
bytes (weights and config, never Python code) and load them back with
``safe_mode=True``, so unpickling an estimator cannot run code hidden in a
``Lambda`` layer.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import inspect
import json
import os
import tempfile
import threading
import weakref
from collections import OrderedDict

import keras
import numpy as np

__all__ = [
    "allow_unsafe_models",
    "fingerprint",
    "model_from_bytes",
    "model_to_bytes",
    "pop_models",
    "push_models",
]

_PREFIX = "__keras_model__:"
_LOADED: OrderedDict = OrderedDict()  # sha256 of archive bytes -> loaded model
_LOADED_MAX = 8
_SAVED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> (key, bytes)
_LOCK = threading.Lock()
_UNSAFE = contextvars.ContextVar("skdc_allow_unsafe_models", default=False)


@contextlib.contextmanager
def allow_unsafe_models():
    """Let estimators unpickled in this block load models with ``safe_mode=False``.

    By default the Keras model inside a persisted estimator loads with
    ``safe_mode=True``, which refuses ``Lambda`` layers (their Python code could
    be anything). Use this only for files you trust:

    >>> import joblib, skdc
    >>> with skdc.allow_unsafe_models():  # doctest: +SKIP
    ...     adapter = joblib.load("trusted_adapter.joblib")
    """
    token = _UNSAFE.set(True)
    try:
        yield
    finally:
        _UNSAFE.reset(token)


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
    if key is None or _UNSAFE.get():
        return _load(data)
    with _LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    model = _load(data)
    if fingerprint(model) != key:
        raise ValueError(
            "The persisted estimator's Keras model is corrupted: its weights do not match "
            "the fingerprint recorded when it was saved."
        )
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
            return keras.saving.load_model(path, compile=False, safe_mode=not _UNSAFE.get())
        except Exception as exc:  # zip/h5/config errors of a truncated or corrupted archive
            if not isinstance(exc, ValueError) or "safe_mode" not in str(exc):
                raise ValueError(
                    "The persisted estimator holds a corrupted or truncated Keras model "
                    f"({type(exc).__name__}: {exc})."
                ) from exc
            raise ValueError(
                "The persisted estimator holds a Keras model with Python code (e.g. a Lambda "
                "layer) that safe_mode=True refuses to load. If you trust the file, load it "
                "inside `with skdc.allow_unsafe_models():`."
            ) from None


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


def with_new_params(estimator, state: dict) -> dict:
    """``state`` with every constructor parameter it lacks set to its default: an
    estimator pickled before a parameter existed loads and behaves as it did."""
    signature = inspect.signature(type(estimator).__init__)
    missing = {name: p.default for name, p in signature.parameters.items()
               if name != "self" and name not in state and p.default is not p.empty}
    return {**missing, **state}


def _is_archive(value) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 3
        and isinstance(value[0], str)
        and value[0] == _PREFIX
    )
