"""Copies of Keras models and fresh layer names: what graph surgery and export share."""

from __future__ import annotations

import keras

__all__ = ["UniqueNames", "clone_with_weights"]


class UniqueNames:
    """Hands out names that clash with none already taken (``name``, ``name_1``, ...)."""

    def __init__(self, taken=()):
        self.taken = set(taken)

    def new(self, name: str) -> str:
        candidate, k = name, 1
        while candidate in self.taken:
            candidate, k = f"{name}_{k}", k + 1
        self.taken.add(candidate)
        return candidate


def clone_with_weights(model: keras.Model) -> keras.Model:
    """A copy of ``model`` sharing no variables with it: same graph, weights copied,
    each layer's ``trainable`` flag kept."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    for old, new in zip(model.layers, copy.layers, strict=True):
        new.trainable = old.trainable
    return copy
