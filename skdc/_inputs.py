"""``X`` as the model takes it: one 2-D table of rows, from N-D arrays or a dict.

The engine works on a 2-D table, one row per example, its columns the model's feature
inputs flattened one after the other (:meth:`CodeGraph.split_features` cuts them back).
Users may give ``X`` shaped like the model's feature input, ``(n, *input_shape)`` (an
utterance of frames, a spectrogram), or, for a model with named feature inputs, a dict
of such arrays.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

import keras
import numpy as np
from scipy.sparse import issparse

_WRAPPED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # wrapper -> model

__all__ = [
    "as_rows", "flat_rows", "shaped_rows", "variable_shape_rows", "with_flat_features",
    "without_flat_features",
]


def as_rows(X, graph):
    """``X`` as a 2-D table for ``graph``'s feature inputs; 2-D ``X`` is returned as it
    is (the scikit-learn validation that follows checks it)."""
    if issparse(X):  # a DOK matrix is a dict: validation refuses sparse input by name
        return X
    if isinstance(X, Mapping):
        return _from_dict(X, graph)
    if graph.dict_inputs and len(graph.feature_names) > 1:
        raise ValueError(
            f"The model takes its features as a dict {graph.feature_names}: pass X as a "
            "dict of arrays with those keys (a flat table's columns cannot be matched to "
            "named inputs unambiguously).")
    array = X if hasattr(X, "ndim") and hasattr(X, "shape") else None
    if array is None or array.ndim <= 2:
        return X
    if len(graph.feature_shapes) > 1:
        raise ValueError(
            f"X has shape {array.shape}, but the model has {len(graph.feature_shapes)} "
            f"feature inputs {graph.feature_names}: pass a dict of arrays, or a 2-D table "
            "of their flattened columns.")
    return _flatten(np.asarray(array), graph.feature_shapes[0], "X")


def _from_dict(X: Mapping, graph):
    names = graph.feature_names
    missing = [n for n in names if n not in X]
    extra = [k for k in X if k not in names]
    if missing or extra:
        raise ValueError(f"X's keys {sorted(X)} do not match the model's feature inputs "
                         f"{names} (missing {missing}, unexpected {extra}).")
    parts = [_flatten(np.asarray(X[n]), shape, f"X[{n!r}]")
             for n, shape in zip(names, graph.feature_shapes)]
    if len({len(p) for p in parts}) > 1:
        raise ValueError("X's arrays have different numbers of rows: "
                         f"{ {n: len(p) for n, p in zip(names, parts)} }.")
    return np.concatenate(parts, axis=1)


def _flatten(array: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    if _matches(array.shape[1:], shape):
        return array.reshape(len(array), -1)
    known = _known_size(shape)
    if array.ndim == 2 and (array.shape[1] % known == 0 if None in shape
                            else array.shape[1] == known):
        return array
    if len(shape) == 1 and None not in shape and np.prod(array.shape[1:], dtype=int) == known:
        return array.reshape(len(array), -1)  # a model that takes its examples flattened
    values = ("a multiple of " if None in shape else "") + f"{known} values"
    raise ValueError(f"{what} has shape {array.shape}, but the model's feature input takes "
                     f"{(None, *shape)} (or {values} per row flattened).")


def _matches(shape: tuple, model_shape: tuple) -> bool:
    """``shape`` is ``model_shape``, its unknown (``None``) dimensions any size."""
    return len(shape) == len(model_shape) and all(
        m is None or s == m for s, m in zip(shape, model_shape))


def _known_size(shape: tuple) -> int:
    return int(np.prod([d for d in shape if d is not None], dtype=int))


def variable_shape_rows(X, shape: tuple):
    """Rows of a 2-D ``X`` reshaped for a feature input whose ``shape`` has one unknown
    dimension (``(None, n_features)``: utterances of any length, padded alike)."""
    known = _known_size(shape)
    if X.shape[1] % known:
        raise ValueError(f"X has {X.shape[1]} values per row, not a multiple of the "
                         f"{known} that the model's feature input {(None, *shape)} takes "
                         "per step of its unknown dimension.")
    return X.reshape(len(X), *(-1 if d is None else d for d in shape))


def flat_rows(X):
    """An N-D array of examples as a 2-D table (other ``X`` unchanged, for validation)."""
    return X.reshape(len(X), -1) if getattr(X, "ndim", 2) > 2 else X


def with_flat_features(model):
    """``model`` (inputs features and code) taking its features as flat rows: a model of
    its own whose ``"features"`` input of ``prod(shape)`` columns is reshaped back, so
    that 2-D machinery trains it. Returns ``model`` itself when its features are flat."""
    features, code = model.inputs
    shape = tuple(features.shape[1:])
    if len(shape) == 1:
        return model
    if shape.count(None) > 1:
        raise ValueError(f"base_model's features have shape {(None, *shape)}: more than one "
                         "unknown dimension; give the model fixed sizes but one (e.g. "
                         "(None, n_features) for utterances of any length).")
    flat = keras.Input((None if None in shape else _known_size(shape),), name=features.name)
    code_in = keras.Input(tuple(code.shape[1:]), name=code.name)
    target = tuple(-1 if d is None else d for d in shape)
    out = model([keras.layers.Reshape(target)(flat), code_in])
    wrapper = keras.Model([flat, code_in], out, name=model.name)
    _WRAPPED[wrapper] = model
    return wrapper


def without_flat_features(model):
    """The model that :func:`with_flat_features` wrapped (its weights are the wrapper's)."""
    return _WRAPPED.get(model, model)


def shaped_rows(X: np.ndarray, model) -> np.ndarray:
    """A 2-D table of rows shaped like ``model``'s (first) feature input."""
    shape = tuple(model.inputs[0].shape[1:])
    return X if len(shape) == 1 else variable_shape_rows(X, shape)
