"""Parameter adaptation of a plain MLP, one parameter set per condition, in one fit.

The baselines ``lhuc``, ``finetune_last`` and ``finetune_all`` adapt some weights of
the speaker-independent network from a condition's few labelled rows. They share the
MAP objective of :class:`~skdc.CodeAdapter` so that the comparison is about *what* is
adapted, not how: per condition ``g`` with ``n_g`` rows,

    f_g(u_g) = (sum_i CE_i + m/2 |u_g|^2) / n_g,       theta_g = theta_SI + s * u_g

a Gaussian prior ``N(theta_SI, s^2 I)`` on the adapted parameters (for LHUC ``theta`` are
the amplitudes' logits ``r``, amplitude ``2 sigmoid(r)``, ``r_SI = 0``), minimised for
all conditions jointly (the objective is a sum of independent terms) from ``u = 0`` with
skdc's one L-BFGS wrapper (:func:`skdc._lbfgs.minimize_lbfgs`), with the same iteration
budget and tolerance as the codes (``evaluate``'s ``adapt_max_iter`` and ``adapt_tol``).
``m`` is the number of rows per independent unit (1 for rows; the frames per utterance
for frame data), as for the codes: the prior is worth ``m`` rows, i.e. one unit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import keras
import numpy as np
from keras import ops

from .. import _backend
from .._backend import Spec, group_bucket, row_bucket
from .._lbfgs import minimize_lbfgs

__all__ = ["ParameterAdapter"]

_MODES = ("lhuc", "finetune_last", "finetune_all")


def _dense_layers(model: keras.Model) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Kernels and biases of the model's Dense layers, and the hidden activations' names."""
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    weights = [np.asarray(w, np.float32) for layer in layers for w in layer.weights]
    if len(weights) != 2 * len(layers):
        raise ValueError("ParameterAdapter needs Dense layers with biases.")
    # the output layer is used as logits: its softmax is part of the loss
    activations = tuple(keras.activations.serialize(layer.activation) for layer in layers[:-1])
    return weights, activations


class ParameterAdapter:
    """Adapt some parameters of a Dense MLP per condition (LHUC or fine-tuning).

    Runs on every Keras backend: the objective is written with ``keras.ops`` and
    compiled once per architecture and mode (:func:`skdc._backend.current`); the SI
    weights are arguments of the compiled functions. Backends that compile per shape
    (JAX) see groups and rows padded to a few sizes, with padded rows masked out and
    padded groups held at ``u = 0``.

    Parameters
    ----------
    model : keras.Model
        A chain of Dense layers with a softmax output (the SI network).
    mode : {"lhuc", "finetune_last", "finetune_all"}
        What is adapted: per-hidden-unit amplitudes, the output layer, or all layers.
    """

    def __init__(self, model: keras.Model, mode: str):
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}.")
        weights, activations = _dense_layers(model)
        self._graph = _graph_for(mode, tuple(w.shape for w in weights), activations)
        self.weights = [self._graph.backend.tensor(w) for w in weights]
        self.n_params = self._graph.n_params

    def fit(self, X, y, groups, n_groups: int, prior_scale: float, max_iter: int,
            prior_weight: float = 1.0, *, tol: float = 1e-5) -> np.ndarray:
        """Learn the table ``u`` (n_groups, n_params); parameters are ``SI + prior_scale * u``.

        ``y`` are output-unit indices and ``groups`` indices ``0 .. n_groups-1``; groups
        without rows keep ``u = 0``. ``prior_scale`` is the standard deviation ``s`` of
        the Gaussian prior around the SI parameters; ``max_iter`` the L-BFGS iterations;
        ``prior_weight`` multiplies the prior term (rows per independent unit); ``tol``
        is L-BFGS' tolerance (relative decrease and projected gradient).
        """
        graph = self._graph
        tensor = graph.backend.tensor
        Xp, yp, mask = _pad(X, y, groups, n_groups, graph.pads)
        args = [tensor(prior_scale), tensor(prior_weight), tensor(Xp), tensor(yp, "int32"),
                tensor(mask), self.weights]
        shape = (n_groups, self.n_params)
        u = np.zeros((len(Xp), self.n_params), np.float32)  # padded groups stay at 0

        def fun(flat):
            u[:n_groups] = flat.reshape(shape)
            value, _, grad = graph.value_and_grad(tensor(u), *args)
            grad = graph.backend.numpy(grad)[:n_groups]
            return float(graph.backend.numpy(value)), grad.astype(np.float64).ravel()

        res = minimize_lbfgs(fun, np.zeros(n_groups * self.n_params), max_iter=int(max_iter),
                             tol=float(tol))
        return res.x.reshape(shape).astype(np.float32)

    def predict_log_proba(self, u, prior_scale: float, X, groups) -> np.ndarray:
        """Log-probabilities of rows ``X`` of conditions ``groups`` with the table ``u``."""
        graph = self._graph
        Xp, _, _ = _pad(X, np.zeros(len(X), np.int32), groups, len(u), graph.pads)
        table = np.zeros((len(Xp), self.n_params), np.float32)
        table[: len(u)] = u
        log_p = graph.backend.numpy(graph.log_proba(
            graph.backend.tensor(table), graph.backend.tensor(prior_scale),
            graph.backend.tensor(Xp), self.weights,
        ))
        out = np.empty((len(X), log_p.shape[-1]), np.float32)
        for g in range(len(u)):
            rows = np.flatnonzero(groups == g)
            out[rows] = log_p[g, : len(rows)]
        return out


#: Compiled graphs kept for reuse: those of the most recently used architectures and
#: modes (an evaluation uses the 3 modes of its SI network).
_GRAPHS_MAX = 8
_GRAPHS: OrderedDict = OrderedDict()
_GRAPHS_LOCK = threading.Lock()


def _graph_for(mode, shapes, activations) -> _Graph:
    """Compiled functions for one architecture and mode, built once while they stay among
    the ``_GRAPHS_MAX`` most recently used (the least recently used is dropped; an adapter
    that holds it keeps it); one build when threads ask for the same graph at once."""
    key = (mode, shapes, activations)
    with _GRAPHS_LOCK:  # building only wraps the functions: they trace on their first call
        graph = _GRAPHS.get(key)
        if graph is None:
            graph = _GRAPHS[key] = _Graph(mode, shapes, activations)
            while len(_GRAPHS) > _GRAPHS_MAX:
                _GRAPHS.popitem(last=False)
        else:
            _GRAPHS.move_to_end(key)
        return graph


class _Graph:
    """Objective and prediction of a batched MLP; the weights are arguments."""

    def __init__(self, mode, shapes, activations):
        self.backend = _backend.current()
        self.pads = self.backend.pads_rows(False)
        self.mode = mode
        self.n_layers = len(shapes) // 2
        self.activations = [keras.activations.get(a) for a in activations]
        kernels = shapes[0::2]
        if mode == "lhuc":
            self.shapes = [(k[1],) for k in kernels[:-1]]
        elif mode == "finetune_last":
            self.shapes = list(shapes[-2:])
        else:
            self.shapes = list(shapes)
        self.n_params = int(sum(np.prod(s) for s in self.shapes))
        table = Spec((None, None))
        scale = Spec(())
        rows = Spec((None, None, None))
        labels = Spec((None, None), "int32")
        weights = [Spec(s) for s in shapes]
        self.value_and_grad = self.backend.compile(
            self.backend.value_and_grad(self._objective),
            [table, scale, scale, rows, labels, table, weights],
            False,
        )
        self.log_proba = self.backend.compile(
            self._log_proba, [table, scale, rows, weights], False
        )

    def _unpack(self, u, scale):
        """Per-condition parameter deltas (or LHUC logits) from the flat table ``u``."""
        parts, start = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            parts.append(ops.reshape(u[:, start : start + size], (-1, *shape)) * scale)
            start += size
        return parts

    def _logits(self, u, scale, X, weights):
        """Logits of rows ``X`` of shape (groups, rows, features)."""
        parts = self._unpack(u, scale)
        h = X
        last = self.n_layers - 1
        for i in range(self.n_layers):
            kernel, bias = weights[2 * i], weights[2 * i + 1]
            if self.mode == "finetune_all" or (self.mode == "finetune_last" and i == last):
                j = 2 * i if self.mode == "finetune_all" else 0
                pre = ops.einsum("grd,gdh->grh", h, kernel + parts[j])
                pre = pre + ops.expand_dims(bias[None, :] + parts[j + 1], 1)
            else:
                pre = ops.einsum("grd,dh->grh", h, kernel) + bias
            if i == last:
                return pre
            h = self.activations[i](pre)
            if self.mode == "lhuc":
                h = h * 2.0 * ops.expand_dims(ops.sigmoid(parts[i]), 1)
        return h

    def _objective(self, u, scale, prior_weight, X, y, mask, weights):
        """The sum over conditions of the MAP objectives (and each condition's)."""
        log_p = ops.log_softmax(self._logits(u, scale, X, weights), axis=-1)
        ce = -ops.take_along_axis(log_p, ops.expand_dims(y, -1), axis=2)[..., 0] * mask
        n = ops.maximum(ops.sum(mask, axis=1), 1.0)
        prior = 0.5 * prior_weight * ops.sum(u * u, axis=1)
        obj = (ops.sum(ce, axis=1) + prior) / n
        return ops.sum(obj), obj

    def _log_proba(self, u, scale, X, weights):
        return ops.log_softmax(self._logits(u, scale, X, weights), axis=-1)


def _pad(X, y, groups, n_groups, bucket: bool = False):
    """Rows per condition, padded to (n_groups, max_rows, ...) with a 0/1 mask.

    With ``bucket`` (backends that compile per shape), groups are padded to the next
    power of two and rows to the engine's row buckets; padded rows have mask 0.
    """
    counts = np.bincount(groups, minlength=n_groups)
    width = max(int(counts.max()) if len(counts) else 0, 1)
    n_out = n_groups
    if bucket:
        width, n_out = row_bucket(width), group_bucket(n_groups)
    Xp = np.zeros((n_out, width, X.shape[1]), np.float32)
    yp = np.zeros((n_out, width), np.int32)
    mask = np.zeros((n_out, width), np.float32)
    for g in range(n_groups):
        rows = np.flatnonzero(groups == g)
        Xp[g, : len(rows)] = X[rows]
        yp[g, : len(rows)] = y[rows]
        mask[g, : len(rows)] = 1.0
    return Xp, yp, mask
