"""The input-level part of a condition code: a feature offset per condition.

A speaker's features are often the average speaker's moved by an offset (a cepstral
mean, a vocal-tract scaling of log formants). Hidden-layer codes ``B_l z`` need to
learn to express that offset through the network; a feature shift expresses it
directly. With an input shift, the first ``p`` entries of a condition's code are an
offset added to the features before the first layer, tiled over the feature columns
with period ``p``::

    x' = x + tile(z[:p]),    h_l = act(W_l h_{l-1} + b_l + B_l z[p:])

``p = n_features`` gives one offset per column; for frame features stacked over
context frames offset-major (``[frame -c: f_1..f_m, ..., frame +c: f_1..f_m]``, as the
audio loaders of :mod:`skdc.datasets` lay them out) ``p = m`` ties the offset of every
context frame. A zero shift part leaves the features as they are.

The graph uses ``keras.ops`` nodes only (a slice of the code, a tile, an add), which
Keras serialises in functional models: a model with an input shift saves and loads
with ``safe_mode=True`` without skdc.
"""

from __future__ import annotations

from numbers import Integral

import keras
import numpy as np
from keras import ops

__all__ = ["check_input_shift", "code_shift", "condition_offsets", "shift_features"]


def check_input_shift(input_shift, n_features: int | None) -> int:
    """The shift period ``p`` of ``input_shift`` (None: 0, no shift; ``"full"``: one
    offset per feature; an int: its value), checked against ``n_features``."""
    if input_shift is None:
        return 0
    if n_features is None:
        raise ValueError("input_shift needs a model input of known width; this one takes "
                         "any number of features.")
    if input_shift == "full":
        return int(n_features)
    if isinstance(input_shift, bool) or not isinstance(input_shift, Integral):
        raise TypeError(f'input_shift must be None, "full" or a positive int, got '
                        f"{input_shift!r}.")
    if input_shift < 1 or n_features % input_shift:
        raise ValueError(
            f"input_shift={input_shift} must be a positive divisor of the number of features "
            f"({n_features}): the offsets repeat every input_shift columns."
        )
    return int(input_shift)


def shift_features(features: keras.KerasTensor, code: keras.KerasTensor,
                   period: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """``features + tile(code[:, :period])`` and the rest of the code, ``code[:, period:]``
    (symbolic, in a functional model under construction)."""
    n_features = int(features.shape[-1])
    offsets = ops.tile(code[:, :period], (1, n_features // period))
    return features + offsets, code[:, period:]


def condition_offsets(X: np.ndarray, group: np.ndarray, n_groups: int, period: int,
                      label: np.ndarray | None = None) -> np.ndarray:
    """The shift part that removes each condition's mean offset, ``(n_groups, period)``.

    A condition's offset is the mean of its rows minus the mean of all rows; with
    ``label`` (class indices), of its rows' residuals ``x - mean of the row's class``,
    so that conditions with other class mixes are not told apart by their classes.
    Offsets are averaged over the columns that share a shift entry, and negated: adding
    the result to the features moves every condition to the average condition.
    """
    X = np.asarray(X, np.float64)
    if label is not None:
        means = np.zeros((int(label.max()) + 1, X.shape[1]))
        np.add.at(means, label, X)
        X = X - (means / np.maximum(np.bincount(label), 1)[:, None])[label]
    sums = np.zeros((n_groups, X.shape[1]))
    np.add.at(sums, group, X)
    counts = np.bincount(group, minlength=n_groups)[:, None]
    offsets = np.where(counts > 0, sums / np.maximum(counts, 1), X.mean(axis=0))
    return code_shift(offsets - X.mean(axis=0), period)


def code_shift(offsets: np.ndarray, period: int) -> np.ndarray:
    """The shift part of the codes that removes each condition's feature ``offsets``
    ``(n_groups, n_features)``: negated, averaged over the columns that share an entry,
    ``(n_groups, period)``."""
    return -np.asarray(offsets).reshape(len(offsets), -1, period).mean(axis=1)
