"""Plain Keras models with learned condition codes built in, for serving.

An adapter keeps its codes in Python; a server (TensorFlow Serving, a mobile runtime,
a JAX service) wants an ordinary Keras model. An export copies the user's model and
feeds its code input from a frozen ``Embedding`` instead of from an input:

* :func:`with_code` builds in one code: every row looks up row 0 of an
  ``Embedding(1, code_dim)``. The zero index is computed from the first feature input
  (``zeros_like``, summed over its non-batch axes), so the batch size follows the
  features, and feature inputs of unknown width work.
* :func:`with_code_table` builds in a table of codes: an extra integer input picks
  each row's code; an index outside ``[0, n_codes)`` (-1, say, for a condition not
  seen in fit) picks a last row that holds the fallback code.

Only built-in layers and ``keras.ops`` nodes are used; Keras serialises both in
functional models. The result therefore saves to ``.keras`` and loads back with
``safe_mode=True`` without importing skdc, and ``Model.export`` writes a SavedModel on
TensorFlow. The user's model is cloned and its weights copied: the export and the
model share no variables, and the model is never written to.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from ._graph import input_name
from ._model_copy import UniqueNames, clone_with_weights

__all__ = ["code_of", "export_codes", "with_code", "with_code_table"]

Head = Callable[[keras.KerasTensor], keras.KerasTensor]


def with_code(model: keras.Model, code_index: int, code, head: Head | None = None,
              name: str | None = None) -> keras.Model:
    """A copy of ``model`` whose code input is the constant ``code``.

    Parameters
    ----------
    model : keras.Model
        Functional model with feature inputs and a code input; never modified.
    code_index : int
        Position of the code input in ``model.inputs``.
    code : array-like of shape (code_dim,)
        The code built in.
    head : callable, default=None
        Applied to the model's output tensor (e.g. a softmax for a logit output).
    name : str, default=None
        Name of the new model; default ``model.name + "_adapted"``.

    Returns
    -------
    keras.Model
        Inputs: the model's feature inputs (same names, shapes and dtypes, in order);
        one output.
    """
    code_input = _code_input(model, code_index)
    table = _codes(np.asarray(code, dtype=np.float64)[None, :], code_input, "code")
    inputs = _feature_inputs(model, code_index)
    names = UniqueNames({t.name for t in inputs} | {model.name})
    codes = _frozen_table(table, names.new("condition_code"), code_input.dtype)
    return _assemble(model, code_index, inputs, inputs, codes(_zero_index(inputs[0])),
                     head, name or f"{model.name}_adapted")


def with_code_table(model: keras.Model, code_index: int, table, fallback,
                    head: Head | None = None, index_name: str = "group",
                    name: str | None = None) -> keras.Model:
    """A copy of ``model`` whose code is picked from ``table`` by an integer input.

    Parameters
    ----------
    model : keras.Model
        Functional model with feature inputs and a code input; never modified.
    code_index : int
        Position of the code input in ``model.inputs``.
    table : array-like of shape (n_codes, code_dim)
        Row ``i`` is the code of index ``i``.
    fallback : array-like of shape (code_dim,)
        Code of every index outside ``[0, n_codes)``.
    head : callable, default=None
        Applied to the model's output tensor.
    index_name : str, default="group"
        Name of the index input (suffixed ``_1``, ``_2``... if a feature input has it).
    name : str, default=None
        Name of the new model; default ``model.name + "_conditions"``.

    Returns
    -------
    keras.Model
        Inputs: the model's feature inputs, then the index, int32 of shape ``(None,)``.
    """
    code_input = _code_input(model, code_index)
    table = _codes(np.asarray(table, dtype=np.float64), code_input, "table")
    fallback = _codes(np.asarray(fallback, dtype=np.float64)[None, :], code_input, "fallback")
    inputs = _feature_inputs(model, code_index)
    names = UniqueNames({t.name for t in inputs} | {model.name})
    index = keras.Input((), dtype="int32", name=names.new(index_name))
    n = len(table)
    codes = _frozen_table(np.concatenate([table, fallback]),
                          names.new("condition_codes"), code_input.dtype)
    known = ops.logical_and(ops.greater_equal(index, 0), ops.less(index, n))
    code = codes(ops.where(known, index, n))
    return _assemble(model, code_index, [*inputs, index], inputs, code, head,
                     name or f"{model.name}_conditions")


def _code_input(model, code_index):
    inputs = list(model.inputs)
    if len(inputs) < 2 or not 0 <= code_index < len(inputs):
        raise ValueError(f"code_index={code_index} is not the position of a code input "
                         f"beside feature inputs; the model has {len(inputs)} inputs.")
    return inputs[code_index]


def _codes(values: np.ndarray, code_input, what: str) -> np.ndarray:
    width = int(code_input.shape[-1])
    if values.ndim != 2 or values.shape[1] != width:
        raise ValueError(f"The {what} must have {width} entries per code (the model's code "
                         f"input), got shape {values.shape[1:] if values.ndim else ()}.")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"The {what} contains NaN or infinity.")
    return values


def export_codes(model: keras.Model, code_index: int, code: np.ndarray, codes: dict,
                 group=None, all_groups: bool = False, head: Head | None = None) -> keras.Model:
    """What an adapter's ``to_keras(group, all_groups=...)`` returns: ``model`` with the
    tied ``code`` or one group's code built in, or with all ``codes`` (a dict by group
    label, ``code`` the fallback) and an index input."""
    if not isinstance(all_groups, (bool, np.bool_)):
        raise TypeError(f"all_groups must be True or False, got {all_groups!r}.")
    if not all_groups:
        return with_code(model, code_index, code_of(codes, code, group), head=head)
    if group is not None:
        raise ValueError(
            f"Pass group={group!r} (one group's code) or all_groups=True (every "
            "group's code and an index input), not both."
        )
    if not codes:
        raise ValueError(
            "all_groups=True needs a fit with groups, but this adapter was fitted "
            "without groups: it has one code, code_. Call to_keras() to export it."
        )
    return with_code_table(model, code_index, np.stack(list(codes.values())), code, head=head)


def code_of(codes: dict, code: np.ndarray, group=None) -> np.ndarray:
    """The code of ``group`` in ``codes`` (``code`` for ``None``), or a clear error."""
    if group is None:
        return code
    if not codes:
        raise ValueError(
            f"group={group!r} was given, but this adapter was fitted without groups: it "
            "has one code, code_. Call to_keras() without group to export it."
        )
    try:
        return codes[group]
    except TypeError:
        raise TypeError(
            f"group must be one group label (a str, int, ...), got {type(group).__name__}."
        ) from None
    except KeyError:
        known = list(codes)
        more = f" and {len(known) - 5} more" if len(known) > 5 else ""
        raise ValueError(
            f"group {group!r} was not seen in fit; the adapter's groups are "
            f"{known[:5]}{more}."
        ) from None


def _feature_inputs(model, code_index) -> list:
    return [keras.Input(tuple(t.shape[1:]), dtype=t.dtype, name=input_name(t))
            for i, t in enumerate(model.inputs) if i != code_index]


def _frozen_table(rows: np.ndarray, name: str, dtype) -> keras.layers.Embedding:
    layer = keras.layers.Embedding(len(rows), rows.shape[1], trainable=False, name=name,
                                   dtype=dtype)
    layer.build()
    layer.set_weights([rows.astype(layer.embeddings.dtype)])
    return layer


def _zero_index(features):
    """Zeros of shape ``(batch,)``, whatever the features hold (even NaN)."""
    zeros = ops.zeros_like(features, dtype="int32")
    if len(features.shape) > 1:
        zeros = ops.sum(zeros, axis=tuple(range(1, len(features.shape))))
    return zeros


def _assemble(model, code_index, inputs, features, code, head, name) -> keras.Model:
    copy = clone_with_weights(model)
    arguments = list(features)
    arguments.insert(code_index, code)
    keyed = isinstance(model.input, dict)  # inputs by name: called, and exported, by name
    if keyed:
        arguments = {input_name(t): a for t, a in zip(model.inputs, arguments)}
    output = copy(arguments)
    if head is not None:
        output = head(output)
    if keyed:
        return keras.Model({t.name: t for t in inputs}, output, name=name)
    # one input as a bare tensor: a SavedModel's `serve` then takes a tensor, not a list
    return keras.Model(inputs[0] if len(inputs) == 1 else inputs, output, name=name)
