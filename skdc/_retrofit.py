"""Graph surgery: retrofit a condition-code input into a pretrained Keras model.

:func:`add_condition_codes` rebuilds a Sequential or functional model of Dense layers
with a ``"code"`` input added to chosen layers' pre-activations through new matrices
``B_l`` (zero-initialised: a zero code reproduces the original exactly), every original
weight frozen.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import keras
import numpy as np

from ._input_shift import check_input_shift, shift_features
from ._model_copy import UniqueNames
from ._retrofit_graph import retrofit_graph

__all__ = ["CODE", "FEATURES", "add_condition_codes", "code_consumers", "is_dense_chain",
           "rewire"]

FEATURES = "features"
CODE = "code"

# Layers that keep a 2-D (batch, units) tensor 2-D and mix nothing across rows, so the
# Dense layers after them can take a code; anything else is refused by name.
_ROWWISE_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.Dropout,
    keras.layers.AlphaDropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.UnitNormalization,
    keras.layers.Normalization,
    keras.layers.Rescaling,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)


def add_condition_codes(
    model: keras.Model,
    code_size: int,
    layers: str | Sequence[int] = "all",
    *,
    input_shift: int | str | None = None,
    kind: str = "add",
) -> keras.Model:
    """Retrofit a condition-code input into a pretrained Keras model.

    Returns a new model with inputs ``"features"`` and ``"code"`` in which the code
    enters the pre-activation of the chosen Dense layers through new matrices
    ``B_l`` (``Dense(units, use_bias=False)``, initialised to zero)::

        h_l = act(W_l h_{l-1} + b_l + B_l z)

    so a zero code reproduces the original model exactly. Any other functional or
    Sequential model (convolutions, LSTM/GRU/Bidirectional, attention, residual merges,
    several feature inputs), or layers chosen by name, or ``kind="scale"``: the model's
    graph is replayed and each chosen layer takes ``B_l z`` per unit or channel,
    broadcast over time and space, in its pre-activation if it has an ``activation``
    (Dense, convolutions) and on its output otherwise (recurrent, attention, merges);
    ``kind="scale"`` multiplies the output by ``2 sigmoid(B_l z)`` instead (LHUC-style).
    With ``input_shift``, the
    code starts with ``p`` more entries, an offset added to the features before the
    first layer (tiled over the columns with period ``p``), so that a condition's code
    also holds the feature shift that normalises it (:mod:`skdc._input_shift`). The
    original layers are
    copied (weights included) and frozen (``trainable=False``) in the new model; only
    the ``B_l`` are trainable. ``model`` itself is left untouched. Train the ``B_l`` and
    one code per condition with ``CodeNetwork(base_model=...)``, then adapt the code of a
    new condition with :class:`~skdc.CodeAdapter`.

    Parameters
    ----------
    model : keras.Model
        A built Sequential or functional model with one output: a chain of Dense
        layers (row-wise layers between them) on one 2-D input, or any graph.
    code_size : int
        Length of the code vector.
    layers : {"all", "input"} or list of int, default="all"
        Where the code enters. ``"all"``: every hidden Dense layer (every Dense layer
        but the last one, which is the output layer). ``"input"``: the first Dense
        layer only, which is the same as concatenating the code to the features (the
        original recipe of Abdel-Hamid & Jiang, 2013). A list of indices selects hidden
        Dense layers by position (0 is the first; negative indices count from the end).
        A list of layer names selects those layers in any model. On a model that is not
        a Dense chain, ``"all"`` is every layer with weights but the one giving the
        output, ``"input"`` the layers that read an input.
    input_shift : None, "full" or int, default=None
        None: no shift part. ``"full"``: one offset per feature, the code's first
        ``n_features`` entries. An int ``p`` dividing ``n_features``: ``p`` offsets
        repeated every ``p`` columns, e.g. the number of features per frame of frames
        stacked with their context (the same offset for every context frame).
        Dense chains with ``kind="add"`` only.
    kind : {"add", "scale"}, default="add"
        ``"add"``: ``+ B_l z``; ``"scale"``: ``* 2 sigmoid(B_l z)`` per unit or channel.

    Returns
    -------
    keras.Model
        New model, inputs ``[features, code]`` (code of ``p + code_size`` entries,
        shift part first), same output as ``model``.

    Raises
    ------
    ValueError
        If the model is not built or has several outputs, a chosen layer cannot take
        a code (a nested model, a shared layer, several outputs; the message names
        it), a name or position selects no layer, or ``input_shift`` is asked of a
        model that is not a Dense chain.

    Examples
    --------
    >>> import keras, numpy as np
    >>> from skdc import add_condition_codes
    >>> si = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
    ...                        keras.layers.Dense(3, activation="softmax")])
    >>> coded = add_condition_codes(si, code_size=2)
    >>> [t.name for t in coded.inputs]
    ['features', 'code']
    >>> X = np.ones((5, 4), dtype="float32")
    >>> bool(np.allclose(coded([X, np.zeros((5, 2), "float32")]), si(X)))
    True
    """
    code_size = _check_code_size(code_size)
    if kind != "add" or not isinstance(layers, str) and any(isinstance(x, str) for x in layers) \
            or not is_dense_chain(model):
        if input_shift is not None:
            raise ValueError("input_shift needs a chain of Dense layers coded with "
                             "kind='add' and layers 'all', 'input' or indices.")
        return retrofit_graph(model, code_size, layers, kind)
    _layer_chain(model)  # a model it cannot rewire is refused before input_shift is read
    shift = check_input_shift(input_shift, model.inputs[0].shape[-1])
    coded, _ = rewire(model, code_size, layers, shift)
    return coded


def is_dense_chain(model) -> bool:
    """Whether ``model`` is a chain of Dense and row-wise layers (:func:`rewire` codes it)."""
    try:
        _layer_chain(model)
    except ValueError:
        return False
    return True


def _check_code_size(code_size) -> int:
    if isinstance(code_size, bool) or not isinstance(code_size, Integral):
        raise TypeError(f"code_size must be a positive int, got {code_size!r}.")
    if code_size < 1:
        raise ValueError(f"code_size must be a positive int, got {code_size}.")
    return int(code_size)


def rewire(model, code_size: int, layers, input_shift: int = 0) -> tuple[keras.Model, list]:
    """Rebuild ``model`` with a code input (``input_shift`` entries of feature shift,
    then ``code_size`` of hidden code); return it and its (Dense, B) layer pairs."""
    chain = _layer_chain(model)
    dense_at = [i for i, layer in enumerate(chain) if isinstance(layer, keras.layers.Dense)]
    if not dense_at:
        raise ValueError("add_condition_codes needs a model with at least one Dense layer.")
    targets = _target_positions(layers, dense_at)
    names = UniqueNames({layer.name for layer in chain} | {FEATURES, CODE})

    features = keras.Input((model.inputs[0].shape[-1],), name=FEATURES)
    code = keras.Input((input_shift + code_size,), name=CODE)
    x, hidden, pairs = features, code, []
    if input_shift:
        x, hidden = shift_features(features, code, input_shift)
    for i, layer in enumerate(chain):
        if i in targets:
            x, pair = _coded_dense(layer, x, hidden, names)
            pairs.append(pair)
        else:
            new = _frozen_copy(layer, names)
            x = new(x)
            if layer.weights:
                new.set_weights(layer.get_weights())
    return keras.Model([features, code], x, name=names.new(f"{model.name}_coded")), pairs


def _layer_chain(model) -> list:
    """The model's layers from input to output, checking that they form a simple chain."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model, got {type(model).__name__}.")
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"Model {model.name!r} is not built; give it an input shape (keras.Input) first."
        )
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"Model {model.name!r} has {len(inputs)} inputs and {len(model.outputs)} outputs;"
            " add_condition_codes needs exactly one of each."
        )
    if len(inputs[0].shape) != 2:
        raise ValueError(
            f"Model {model.name!r} takes inputs of shape {tuple(inputs[0].shape)}; "
            "add_condition_codes needs 2-D inputs (batch, n_features)."
        )
    if isinstance(model, keras.Sequential):
        chain = list(model.layers)
    else:
        chain = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        _check_functional_chain(model, chain)
    for layer in chain:
        _check_rewirable(layer)
    return chain


def _check_functional_chain(model, chain) -> None:
    previous = model.inputs[0]
    for layer in chain:
        try:
            inbound = layer.input
        except (AttributeError, ValueError) as exc:
            raise ValueError(_cannot_rewire(layer, "it is not called exactly once")) from exc
        if inbound is not previous:
            raise ValueError(
                _cannot_rewire(layer, "the model is not a simple chain of layers at this point")
            )
        previous = layer.output
    if previous is not model.outputs[0]:
        raise ValueError(f"Model {model.name!r} is not a simple chain of layers.")


def _check_rewirable(layer) -> None:
    if isinstance(layer, keras.Model):
        raise ValueError(_cannot_rewire(layer, "nested models are not supported"))
    if not isinstance(layer, (keras.layers.Dense, *_ROWWISE_LAYERS)):
        raise ValueError(
            _cannot_rewire(
                layer,
                "only Dense layers and row-wise layers (activations, dropout, noise, "
                "normalisation, rescaling) can carry a code",
            )
        )


def _cannot_rewire(layer, why: str) -> str:
    kind = type(layer).__name__
    return f"add_condition_codes cannot rewire layer {layer.name!r} ({kind}): {why}."


def _target_positions(layers, dense_at: list[int]) -> set[int]:
    """Chain positions of the Dense layers that get a code."""
    hidden = dense_at[:-1]
    if isinstance(layers, str):
        if layers == "input":
            return {dense_at[0]}
        if layers == "all":
            if not hidden:
                raise ValueError(
                    "The model has no hidden Dense layer (its only Dense layer is the output "
                    "layer); use layers='input' to feed the code into it."
                )
            return set(hidden)
        raise ValueError(f"layers={layers!r} is not understood; use 'all', 'input' or a list.")
    indices = list(np.atleast_1d(np.asarray(layers, dtype=object)))
    if not indices:
        raise ValueError("layers is an empty list; give at least one hidden-layer index.")
    targets = set()
    for index in indices:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, Integral):
            raise TypeError(f"layers must hold int hidden-layer indices, got {index!r}.")
        if not -len(hidden) <= index < len(hidden):
            raise ValueError(
                f"Hidden-layer index {index} is out of range: the model has {len(hidden)} "
                "hidden Dense layers (the last Dense layer is the output layer)."
            )
        targets.add(hidden[int(index)])
    return targets


def _frozen_copy(layer, names: UniqueNames, **overrides):
    config = {**layer.get_config(), **overrides}
    if config["name"] in (FEATURES, CODE):
        config["name"] = names.new(f"{config['name']}_layer")
    new = type(layer).from_config(config)
    new.trainable = False
    return new


def _coded_dense(layer, x, code, names: UniqueNames):
    """``act(W x + b + B z)`` with W, b copied from ``layer`` and a zero-initialised B."""
    linear = _frozen_copy(layer, names, activation="linear")
    pre = linear(x)
    linear.set_weights(layer.get_weights())
    b_layer = keras.layers.Dense(
        layer.units,
        use_bias=False,
        kernel_initializer="zeros",
        name=names.new(f"{layer.name}_code"),
    )
    pre = keras.layers.Add(name=names.new(f"{layer.name}_code_add"))([pre, b_layer(code)])
    if keras.activations.serialize(layer.activation) != "linear":
        pre = keras.layers.Activation(
            layer.activation, name=names.new(f"{layer.name}_activation")
        )(pre)
    return pre, (linear, b_layer)


def code_consumers(model) -> list | None:
    """Layers fed directly by the ``code`` input, or None if any operation fed by it
    (a ``keras.ops`` node too: a slice, as in an input shift) is not a Dense layer."""
    code = model.inputs[1]
    consumers = []
    for layer in model.operations:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            inbound = layer.input
        except (AttributeError, ValueError):
            return None
        flat = inbound if isinstance(inbound, (list, tuple)) else [inbound]
        if any(t is code for t in flat):
            if not isinstance(layer, keras.layers.Dense) or len(flat) != 1:
                return None
            consumers.append(layer)
    return consumers
