"""Speaker-embedding models: the condition enters through an ``Embedding`` lookup.

Many models read a speaker (device, room...) as an integer id looked up in an
``Embedding(n_conditions, d)`` table. A code cannot be learned through an integer
input; the table's row, though, *is* a code. :func:`from_embedding` cuts the lookup out:
the returned model reads that row directly as a float ``"code"`` input.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np

from ._graph import input_name, operation_nodes, run_nodes
from ._model_copy import clone_with_weights
from ._prior import CodePrior, prior_from_codes
from ._retrofit import CODE

__all__ = ["EmbeddingCodes", "from_embedding"]


class EmbeddingCodes(NamedTuple):
    """What :func:`from_embedding` returns."""

    model: keras.Model
    """The model with a float ``"code"`` input in place of the id and its lookup."""
    codes: np.ndarray
    """The embedding table, one row (code) per known id."""
    prior: CodePrior
    """Gaussian of the table's rows, shrunk (``code_init`` of a new condition)."""


def from_embedding(model: keras.Model, id_input: str, *, shrinkage: float | str = "oas"
                   ) -> EmbeddingCodes:
    """Turn a model whose condition enters through an ``Embedding`` into a code model.

    Parameters
    ----------
    model : keras.Model
        A functional model with an integer input ``id_input`` of shape ``(None,)`` or
        ``(None, 1)`` whose only consumer is an ``Embedding`` layer. Not modified.
    id_input : str
        Name of that input.
    shrinkage : float, "oas" or "ledoit_wolf", default="oas"
        Shrinkage of the prior's covariance (see :class:`~skdc.CodeNetwork`'s
        ``prior_shrinkage``).

    Returns
    -------
    result : EmbeddingCodes
        ``model``: a copy (weights copied, every layer frozen) whose input ``"code"``
        of shape ``(None, d)`` takes the place of the id and its lookup, so that
        ``model.predict([..., codes[i]])`` equals the original with id ``i``;
        ``codes``: the table; ``prior``: the Gaussian of its rows.

    Examples
    --------
    >>> import keras, numpy as np
    >>> from skdc import CodeAdapter, from_embedding
    >>> x, spk = keras.Input((4,), name="features"), keras.Input((1,), name="speaker_id",
    ...                                                          dtype="int32")
    >>> e = keras.layers.Flatten()(keras.layers.Embedding(10, 3)(spk))
    >>> out = keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()([x, e]))
    >>> conv = from_embedding(keras.Model([x, spk], out), "speaker_id")
    >>> conv.codes.shape, [t.name for t in conv.model.inputs]
    ((10, 3), ['features', 'code'])
    >>> adapter = CodeAdapter(conv.model, code_init=conv.prior)
    """
    inputs = list(getattr(model, "inputs", None) or [])
    names = [input_name(t) for t in inputs]
    if id_input not in names:
        raise ValueError(f"model has no input named {id_input!r}; its inputs are {names}.")
    if CODE in names:
        raise ValueError(f"model already has an input named {CODE!r}.")
    copy = clone_with_weights(model)
    copy.trainable = False
    id_tensor = copy.inputs[names.index(id_input)]
    embedding = _lookup(copy, id_tensor, id_input)
    table = np.asarray(embedding.get_weights()[0], dtype=np.float64)
    code = keras.Input((table.shape[1],), name=CODE)
    lookup_shape = tuple(embedding.output.shape[1:])
    looked_up = code if len(lookup_shape) == 1 else keras.layers.Reshape(lookup_shape)(code)
    new_inputs = [keras.Input(t.shape[1:], dtype=t.dtype, name=input_name(t))
                  for t in copy.inputs if t is not id_tensor]
    values = {id(old): new for old, new in zip(
        [t for t in copy.inputs if t is not id_tensor], new_inputs)}
    values[id(embedding.output)] = looked_up
    nodes = [node for node in operation_nodes(copy) if node.operation is not embedding]
    values = run_nodes(nodes, values)
    rebuilt = keras.Model([*new_inputs, code], values[id(copy.outputs[0])], name=model.name)
    return EmbeddingCodes(rebuilt, table, prior_from_codes(table, shrinkage))


def _lookup(model, id_tensor, id_input: str):
    """The one ``Embedding`` layer that reads ``id_tensor``; clear errors otherwise."""
    if "int" not in keras.backend.standardize_dtype(id_tensor.dtype):
        raise TypeError(f"input {id_input!r} is {id_tensor.dtype}, not an integer id.")
    consumers = [node.operation for node in operation_nodes(model)
                 if any(t is id_tensor for t in node.input_tensors)]
    if len(consumers) != 1 or not isinstance(consumers[0], keras.layers.Embedding):
        found = [type(c).__name__ for c in consumers]
        raise ValueError(f"input {id_input!r} must feed exactly one Embedding layer; it feeds "
                         f"{found or 'nothing'}.")
    layer = consumers[0]
    shape = tuple(layer.output.shape[1:])
    if len(shape) == 2 and shape[0] != 1 or len(shape) > 2:
        raise ValueError(f"input {id_input!r} looks up {shape[:-1]} ids per row; "
                         "from_embedding needs one id per row.")
    return layer
