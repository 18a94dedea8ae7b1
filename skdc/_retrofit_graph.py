"""Graph surgery for any functional model: a code term at chosen layers.

:func:`add_condition_codes` with layer *names* (or on a model that is not a chain of
Dense layers) replays the model's graph on new inputs, every original layer copied and
frozen, and at each chosen layer adds ``B_l z`` (``kind="add"``) or scales by
``2 sigmoid(B_l z)`` (``kind="scale"``, LHUC-style), per unit or channel and broadcast
over time and space. ``B_l`` starts at zero, so a zero code reproduces the model
exactly. A layer with an ``activation`` (Dense, convolutions) takes the term in its
pre-activation, ``act(W x + b + B z)``; any other (recurrent, attention, merges,
normalisation) on its output. Only ``keras.layers`` and ``keras.ops`` nodes are added:
the model saves and loads (safe mode) without skdc.
"""

from __future__ import annotations

import keras
from keras import ops

from ._graph import input_name, operation_nodes
from ._model_copy import UniqueNames, clone_with_weights

__all__ = ["KINDS", "retrofit_graph"]

KINDS = ("add", "scale")
_CODE = "code"


def retrofit_graph(model: keras.Model, code_size: int, layers, kind: str = "add"
                   ) -> keras.Model:
    """``model`` rebuilt with a ``"code"`` input entering ``layers`` (names, ``"all"``
    or ``"input"``); see :func:`~skdc.add_condition_codes`."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}.")
    copy = clone_with_weights(_functional(model))
    for layer in copy.layers:
        layer.trainable = False
    nodes = operation_nodes(copy)
    targets = _targets(copy, nodes, layers)
    names = UniqueNames({layer.name for layer in copy.layers} | {_CODE})
    single = len(copy.inputs) == 1
    inputs = [keras.Input(tuple(t.shape[1:]), dtype=t.dtype,
                          name="features" if single else input_name(t)) for t in copy.inputs]
    code = keras.Input((code_size,), name=_CODE)
    values = {id(old): new for old, new in zip(copy.inputs, inputs)}
    for node in nodes:
        args, kwargs = node.arguments.fill_in(values)
        layer = node.operation
        if layer in targets:
            outputs = _coded_call(layer, args, kwargs, code, kind, names)
        else:
            outputs = layer(*args, **kwargs)
        for ref, out in zip(node.outputs, keras.tree.flatten(outputs)):
            values[id(ref)] = out
    return keras.Model([*inputs, code], values[id(copy.outputs[0])],
                       name=names.new(f"{model.name}_coded"))


def _functional(model: keras.Model) -> keras.Model:
    if len(getattr(model, "outputs", None) or []) != 1:
        raise ValueError(f"model {model.name!r} is not built or has several outputs: "
                         "add_condition_codes needs a built model (give it a keras.Input) "
                         "with one output.")
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    if not hasattr(model, "_nodes_by_depth"):
        raise ValueError(f"model {model.name!r} is a subclassed model: add_condition_codes "
                         "needs a Sequential or functional model.")
    return model


def _targets(model, nodes, layers) -> set:
    """The layers that take the code, checked: ``"all"`` is every layer with weights but
    the one that gives the output; ``"input"`` those that read an input."""
    output_layer = model.outputs[0]._keras_history.operation
    weighted = [n.operation for n in nodes if getattr(n.operation, "weights", None)]
    if layers == "all":
        chosen = [layer for layer in weighted if layer is not output_layer]
    elif layers == "input":
        chosen = [n.operation for n in nodes
                  if any(t is i for t in n.input_tensors for i in model.inputs)]
    else:
        by_name = {layer.name: layer for layer in model.layers}
        unknown = [name for name in layers if name not in by_name]
        if unknown:
            raise ValueError(f"model has no layers named {unknown}; its layers are "
                             f"{list(by_name)}.")
        chosen = [by_name[name] for name in layers]
    for layer in chosen:
        if isinstance(layer, keras.Model):
            raise ValueError(f"layer {layer.name!r} is a nested model: it cannot take a code "
                             "(name the layers inside it on the nested model instead).")
        if sum(n.operation is layer for n in nodes) != 1:
            raise ValueError(f"layer {layer.name!r} is called more than once (a shared "
                             "layer): it cannot take a code.")
    if not chosen:
        raise ValueError(f"layers={layers!r} selects no layer of the model.")
    return set(chosen)


def _coded_call(layer, args, kwargs, code, kind, names):
    activation = getattr(layer, "activation", None)
    pre_activation = (kind == "add" and activation is not None
                      and not isinstance(layer, keras.layers.RNN))
    if pre_activation:
        config = {**layer.get_config(), "activation": "linear",
                  "name": names.new(f"{layer.name}_linear")}
        linear = type(layer).from_config(config)
        out = linear(*args, **kwargs)
        linear.set_weights(layer.get_weights())
        linear.trainable = False
    else:
        out = layer(*args, **kwargs)
    if not hasattr(out, "shape") or isinstance(out, (list, tuple, dict)):
        raise ValueError(f"layer {layer.name!r} has several outputs: it cannot take a code.")
    channels = out.shape[-1]
    term = keras.layers.Dense(channels, use_bias=False, kernel_initializer="zeros",
                              name=names.new(f"{layer.name}_code"))(code)
    term = ops.reshape(term, (-1, *([1] * (len(out.shape) - 2)), channels))
    if kind == "scale":
        out = out * (2.0 * ops.sigmoid(term))
    else:
        out = out + term
    if pre_activation:
        out = keras.layers.Activation(activation, name=names.new(f"{layer.name}_act"))(out)
    return out
