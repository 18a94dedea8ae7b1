"""A synthetic multi-condition problem with known true codes.

A fixed random *teacher* network reads features and a condition code
(``h = tanh(X W + b + z B)``, softmax output). Each condition has a true code
``z ~ N(0, I)``; its labels are the teacher's decisions for its code. Adapting
the teacher from the mean code (zeros) must move the code toward the truth and
raise accuracy: the workhorse of the tests, the demo and the benchmarks.
"""

from __future__ import annotations

import keras
import numpy as np

__all__ = ["make_teacher", "make_conditions"]


def make_teacher(
    n_features: int = 6,
    code_dim: int = 3,
    n_classes: int = 4,
    hidden: int = 16,
    code_strength: float = 2.0,
    random_state: int = 0,
    shift: bool = False,
) -> keras.Model:
    """A random Keras model with inputs ``features`` and ``code``.

    ``code_strength`` scales ``B``, i.e. how much conditions differ. With
    ``shift=True`` the code is a feature shift: ``code_dim = n_features`` and
    ``B = -W``, so the code ``s`` exactly undoes features observed as ``X + s``
    (see :func:`make_conditions`); unlabelled rows then carry their condition.
    """
    if shift:
        code_dim, code_strength = n_features, 1.0
    rng = np.random.default_rng(random_state)
    x = keras.Input((n_features,), name="features")
    z = keras.Input((code_dim,), name="code")
    dense = keras.layers.Dense(hidden, name="hidden")
    code_proj = keras.layers.Dense(hidden, use_bias=False, name="hidden_code")
    out = keras.layers.Dense(n_classes, activation="softmax", name="output")
    h = keras.layers.Activation("tanh")(keras.layers.Add()([dense(x), code_proj(z)]))
    model = keras.Model([x, z], out(h), name="teacher")
    dense.set_weights([rng.normal(size=(n_features, hidden)) / np.sqrt(n_features),
                       rng.normal(scale=0.1, size=hidden)])
    if shift:
        code_proj.set_weights([-dense.get_weights()[0]])
    else:
        code_proj.set_weights([code_strength * rng.normal(size=(code_dim, hidden))
                               / np.sqrt(code_dim)])
    out.set_weights([3.0 * rng.normal(size=(hidden, n_classes)) / np.sqrt(hidden),
                     np.zeros(n_classes)])
    return model


def make_conditions(
    teacher: keras.Model,
    n_conditions: int = 10,
    rows_per_condition: int = 60,
    random_state: int = 0,
    shift: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of ``n_conditions`` conditions labelled by the teacher.

    Returns ``X, y, groups, true_codes`` (``true_codes[g]`` is the code of
    group ``g``). With ``shift=True`` (for a ``make_teacher(shift=True)``
    teacher) each condition's features are observed shifted by its code.
    """
    rng = np.random.default_rng(random_state)
    n_features = teacher.inputs[0].shape[-1]
    code_dim = teacher.inputs[1].shape[-1]
    true_codes = rng.normal(size=(n_conditions, code_dim))
    groups = np.repeat(np.arange(n_conditions), rows_per_condition)
    X = rng.normal(size=(len(groups), n_features))
    if shift:
        X += true_codes[groups]
    proba = teacher.predict([X, true_codes[groups]], verbose=0, batch_size=4096)
    y = proba.argmax(axis=1)
    return X, y, groups, true_codes
