"""A frozen Keras model split around its code input.

Adaptation evaluates the model hundreds of times with the same features and a
changing code. Most of a functional model does not depend on the code (the
first layer's ``X @ W1 + b1``, whole layers below the first code connection),
and the code-only branch (``B_l z``) does not depend on the rows. So the graph
is split into three parts that are run separately:

* the *feature part*: nodes that depend on the features only; evaluated once per
  fit, its outputs consumed by the rest form the *feature frontier*;
* the *code part*: nodes that depend on the code only; evaluated once per step
  on the table of codes (one row per condition) and gathered to the rows;
* the *head*: everything that mixes the two, evaluated every step.

The split walks Keras' functional node graph and calls each layer on backend
tensors (as ``Functional.call`` does), so the user's model is never rebuilt or
modified, on any Keras backend. On JAX and PyTorch the parts read the model's
weights from values passed in (``weights()``, inside a ``keras.StatelessScope``), so
compiled functions take the weights as arguments instead of baking them in as
constants; on TensorFlow a compiled function reads the variables themselves (it
captures them by reference, as Keras' own trainer does; passing a dozen more
arguments per call would cost milliseconds of argument checks). Nothing is ever
written to the model. Models that are not functional (subclassed) fall back
to one part: the head is the whole model and the frontiers are its inputs.
"""

from __future__ import annotations

import contextlib
import weakref

import keras
import numpy as np
from keras import ops

from ._backend import Spec
from ._inputs import variable_shape_rows

__all__ = ["CodeGraph", "input_name", "operation_nodes", "output_activation", "output_units",
           "resolve_code_input", "run_nodes"]

_FEATURES, _CODE = "features", "code"


class CodeGraph:
    """Analyse ``model`` once; run its parts on tensors.

    Parameters
    ----------
    model : keras.Model
        Frozen model with a code input and one or more feature inputs.
    code_index : int
        Position of the code input in ``model.inputs``.
    split : bool
        Split the graph around the code (the default); ``False`` runs the whole
        model every step (the plain graph, kept as a reference).
    """

    def __init__(self, model: keras.Model, code_index: int, split: bool = True):
        # weak: the engine cache holds graphs, and must not keep a dropped model alive
        self._model = weakref.ref(model)
        self._variables = list(model.variables)
        self.code_index = code_index
        inputs = list(model.inputs)
        self._code_input = inputs[code_index]
        self._output = model.outputs[0]
        self.code_dim = int(inputs[code_index].shape[-1])
        self.feature_inputs = [t for i, t in enumerate(inputs) if i != code_index]
        self.feature_shapes = [tuple(t.shape[1:]) for t in self.feature_inputs]
        self.feature_names = [input_name(t) for t in self.feature_inputs]
        self.dict_inputs = isinstance(model.input, dict)  # keyed by name, not by position
        # one feature input with one unknown dimension (a flat input of any width, or
        # utterances of any length, (None, F)) takes rows of any multiple of the rest
        self.n_features = (
            None
            if any(None in s for s in self.feature_shapes)
            else int(sum(np.prod(s, dtype=int) for s in self.feature_shapes))
        )
        if self.n_features is None and (len(self.feature_shapes) > 1 or
                                        self.feature_shapes[0].count(None) > 1):
            raise ValueError(
                "The model's feature inputs have unknown sizes "
                f"{self.feature_shapes}; only a single feature input with one unknown "
                "dimension (e.g. (None, n_features) for utterances of any length) can take "
                "examples of varying size."
            )
        # examples of any length, (None, F): predictions need not take fit's length
        self.any_length = self.n_features is None and len(self.feature_shapes[0]) > 1
        self.output_activation = output_activation(model)
        self.n_outputs = output_units(model)
        self.is_split = False
        self._plan = _split_plan(model, code_index) if split else None
        if self._plan is not None:
            self.is_split = True
            self._f_frontier, self._c_frontier, self._f_nodes, self._c_nodes, self._m_nodes = (
                self._plan
            )

    # -- shapes ----------------------------------------------------------------
    def frontier_specs(self) -> list[Spec]:
        """Specs of the feature frontier (batch dimension ``None``)."""
        tensors = self._f_frontier if self.is_split else self.feature_inputs
        return [Spec((None, *t.shape[1:]), _frontier_dtype(t)) for t in tensors]

    def weight_specs(self, as_arguments: bool = True) -> list[Spec]:
        """Specs of :meth:`weights` (none when the variables are read in place)."""
        if not as_arguments:
            return []
        return [Spec(tuple(v.shape), str(v.dtype)) for v in self._variables]

    def weights(self, as_arguments: bool = True) -> list:
        """The model's current weights, as (detached) backend tensors; an empty list
        means: read the variables in place."""
        if not as_arguments:
            return []
        return [ops.stop_gradient(v.value) for v in self._variables]

    def _scope(self, weights):
        if not weights:
            return contextlib.nullcontext()
        return keras.StatelessScope(state_mapping=list(zip(self._variables, weights)))

    def split_features(self, X: np.ndarray) -> list[np.ndarray]:
        """Cut the columns of a 2-D ``X`` into the model's feature inputs."""
        if self.n_features is None:
            return [variable_shape_rows(X, self.feature_shapes[0])]
        parts, start = [], 0
        for shape in self.feature_shapes:
            width = int(np.prod(shape, dtype=int))
            parts.append(X[:, start : start + width].reshape((X.shape[0], *shape)))
            start += width
        return parts

    # -- the three parts -------------------------------------------------------
    def feature_frontier(self, weights: list, x_parts: list) -> list:
        """Tensors of the code-independent part that the head consumes."""
        if not self.is_split:
            return list(x_parts)
        seed = {id(t): x for t, x in zip(self.feature_inputs, x_parts)}
        with self._scope(weights):
            values = run_nodes(self._f_nodes, seed)
        # float32 between the parts (the compiled steps' signature); the head's layers
        # cast back to their compute dtype exactly
        return [_float32(values[id(t)]) for t in self._f_frontier]

    def forward(self, weights: list, frontier: list, codes, group_index):
        """Outputs (float32, whatever the model's dtype policy) for rows whose code is
        ``codes[group_index]``."""
        with self._scope(weights):
            if not self.is_split:
                inputs = list(frontier)
                inputs.insert(self.code_index, ops.take(codes, group_index, axis=0))
                return ops.cast(self._model()(inputs, training=False), "float32")
            code_values = run_nodes(self._c_nodes, {id(self._code_input): codes})
            seed = {id(t): v for t, v in zip(self._f_frontier, frontier)}
            seed.update({id(t): ops.take(code_values[id(t)], group_index, axis=0)
                         for t in self._c_frontier})
            return ops.cast(run_nodes(self._m_nodes, seed)[id(self._output)], "float32")


def _frontier_dtype(tensor) -> str:
    """Float frontier tensors pass as float32 (:func:`_float32`); masks and ids as they are."""
    dtype = keras.backend.standardize_dtype(tensor.dtype)
    return "float32" if "float" in dtype else dtype


def _float32(value):
    dtype = keras.backend.standardize_dtype(value.dtype)
    return ops.cast(value, "float32") if "float" in dtype and dtype != "float32" else value


def resolve_code_input(model, code_input) -> int:
    """Index of the code input named or numbered by ``code_input``."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}.")
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    names = [input_name(t) for t in inputs]
    if len(inputs) < 2:
        raise ValueError(
            "model needs at least two inputs (features and a condition code); it has "
            f"{len(inputs)}: {names}."
        )
    if isinstance(code_input, str):
        if code_input not in names:
            raise ValueError(f"model has no input named {code_input!r}; its inputs are {names}.")
        index = names.index(code_input)
    else:
        if not -len(inputs) <= code_input < len(inputs):
            raise ValueError(
                f"code_input={code_input} is out of range; the model's inputs are {names}."
            )
        index = code_input % len(inputs)
    _check_differentiable(model, inputs[index], names[index])
    if len(inputs[index].shape) != 2:
        raise ValueError(
            f"The code input {names[index]!r} must have shape (None, code_dim); it has "
            f"{tuple(inputs[index].shape)}."
        )
    if len(model.outputs) != 1:
        raise ValueError(f"model must have one output; it has {len(model.outputs)}.")
    return index


def _check_differentiable(model, code, name: str) -> None:
    """A code is learned by gradients: an integer input, or one read by an Embedding
    lookup, has none (the fit would stand still and report convergence)."""
    dtype = keras.backend.standardize_dtype(code.dtype)
    lookups = [node.operation for node in operation_nodes(model)
               if isinstance(node.operation, keras.layers.Embedding)
               and any(t is code for t in node.input_tensors)]
    if "float" not in dtype or lookups:
        raise TypeError(
            f"The code input {name!r} is {'looked up by an Embedding' if lookups else dtype}:"
            " a code is learned by gradients, which do not flow through an id. Turn the "
            f"embedding into a code input with skdc.from_embedding(model, {name!r}).")


def input_name(tensor) -> str:
    history = getattr(tensor, "_keras_history", None)
    if history is not None:
        return history.operation.name
    return getattr(tensor, "name", "?")


def output_activation(model) -> str:
    """'softmax', 'sigmoid' or 'linear' (anything else counts as linear)."""
    history = getattr(model.outputs[0], "_keras_history", None)
    layer = history.operation if history is not None else None
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    name = getattr(getattr(layer, "activation", None), "__name__", "linear")
    return name if name in ("softmax", "sigmoid") else "linear"


def output_units(model) -> int:
    """Number of units of the model's (one) output."""
    return int(np.prod(model.outputs[0].shape[1:], dtype=int))


def run_nodes(nodes, values: dict) -> dict:
    """Run ``nodes`` (in order) on ``values``, a map of tensor id to value."""
    values = dict(values)
    for node in nodes:
        args, kwargs = node.arguments.fill_in(values)
        if "training" in getattr(node.operation, "_call_context_args", ()):
            kwargs["training"] = False
        outputs = node.operation(*args, **kwargs)
        for ref, out in zip(node.outputs, keras.tree.flatten(outputs)):
            values[id(ref)] = out
    return values


def operation_nodes(model) -> list:
    """The nodes of a functional ``model`` that run an operation, inputs first (the
    order ``run_nodes`` needs); empty when the model has no graph."""
    nodes_by_depth = getattr(model, "_nodes_by_depth", None) or {}
    return [node for depth in sorted(nodes_by_depth, reverse=True)
            for node in nodes_by_depth[depth]
            if node.operation is not None and not node.is_input]


def _split_plan(model, code_index):
    """Nodes and frontiers of the three parts, or ``None`` when the graph cannot split."""
    if not getattr(model, "_nodes_by_depth", None):
        return None
    try:
        return _plan_nodes(model, code_index)
    except (AttributeError, TypeError, KeyError):
        return None


def _plan_nodes(model, code_index):
    deps: dict[int, frozenset] = {}
    for i, t in enumerate(model.inputs):
        deps[id(t)] = frozenset({_CODE if i == code_index else _FEATURES})
    ordered = operation_nodes(model)
    for node in ordered:
        d = frozenset().union(*(deps[id(t)] for t in node.input_tensors))
        if not d:  # a node without inputs: keep the plain graph
            return None
        for out in node.outputs:
            deps[id(out)] = d
    out_id = id(model.outputs[0])
    if deps.get(out_id) != frozenset({_FEATURES, _CODE}):
        raise ValueError("The model's output does not depend on both the features and the code.")
    mixed = [n for n in ordered if len(deps[id(n.outputs[0])]) == 2]
    frontier = {_FEATURES: {}, _CODE: {}}
    for node in mixed:
        for t in node.input_tensors:
            kind = deps[id(t)]
            if len(kind) == 1:
                frontier[next(iter(kind))][id(t)] = t
    f_nodes = [n for n in ordered if deps[id(n.outputs[0])] == {_FEATURES}]
    c_nodes = [n for n in ordered if deps[id(n.outputs[0])] == {_CODE}]
    return (
        list(frontier[_FEATURES].values()),
        list(frontier[_CODE].values()),
        f_nodes,
        c_nodes,
        mixed,
    )
