"""The adaptation loop: learn a table of codes for a frozen model.

The engine knows nothing of scikit-learn. It receives validated arrays, turns
them into tensors once, and returns a :class:`Result` of numpy arrays.

Objective of group ``g`` (rows ``i`` in ``g``, weights ``w_i``)::

    f_g(z_g) = sum_i w_i * loss_i / W_g  +  alpha / (2 W_g) * (z_g - m_g)^T P_g (z_g - m_g)

with ``W_g = sum_i w_i`` and ``N(m_g, P_g^-1)`` the group's prior: the MAP objective
divided by the group's weight. Every group may have its own prior. The optimizers
work in whitened coordinates ``u_g = L_g^-1 (z_g - m_g)`` (``L_g L_g^T`` the prior
covariance), where the penalty is ``|u_g|^2``: a prior with very different variances
per direction stays well conditioned, and step sizes are in units of prior standard
deviations.

The engine minimises ``sum_g f_g``; its gradient with respect to ``z_g`` is
exactly ``grad f_g``, so every group follows the path it would follow alone (the
first-order optimizers are row-wise and stopping is per group). A group's code is
*tied*: one vector whose gradient sums over all of the group's rows.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from ._graph import CodeGraph
from ._lbfgs import minimize_lbfgs
from ._optimizers import OPTIMIZERS, Optimizer
from ._persist import pop_models, push_models

__all__ = ["Engine", "EngineSpec", "Problem", "Result", "Settings", "engine_for"]

_CHUNK = 16384  # rows per call when evaluating the feature part or predicting
# XLA fuses the step (~35% faster per iteration on the seed workload) but compiles once
# per shape bucket (seconds); with jit_compile="auto" only fits of this many rows use it.
_XLA_MIN_ROWS = 1024


@dataclass
class Settings:
    """Optimisation settings of one fit."""

    optimizer: str = "adam"
    learning_rate: float = 0.05
    alpha: float = 1.0
    max_iter: int = 200
    tol: float = 1e-4
    n_iter_no_change: int = 10
    batch_size: int | None = None
    diversity: float = 0.0
    jit_compile: bool | str = "auto"

    def xla(self, n_rows: int) -> bool:
        """Whether a step over ``n_rows`` rows runs the XLA-compiled variant."""
        if self.jit_compile == "auto":
            return n_rows >= _XLA_MIN_ROWS
        return bool(self.jit_compile)


@dataclass
class Problem:
    """Validated arrays of one fit; ``group`` indexes rows of the code table.

    ``prior_mean`` ``(n_groups, d)`` and ``prior_covariance`` ``(n_groups, d, d)``
    hold each group's Gaussian prior.
    """

    X: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    group: np.ndarray
    n_groups: int
    prior_mean: np.ndarray
    prior_covariance: np.ndarray

    def subset(self, rows: np.ndarray) -> Problem:
        """The same groups and priors, with only ``rows`` (a mask or indices)."""
        return Problem(self.X[rows], self.y[rows], self.weight[rows], self.group[rows],
                       self.n_groups, self.prior_mean, self.prior_covariance)

    def groups(self, first: int, stop: int) -> Problem:
        """Groups ``first .. stop-1`` and their rows, re-indexed from zero."""
        rows = (self.group >= first) & (self.group < stop)
        return Problem(self.X[rows], self.y[rows], self.weight[rows], self.group[rows] - first,
                       stop - first, self.prior_mean[first:stop],
                       self.prior_covariance[first:stop])


@dataclass
class Result:
    """What a fit learned: best codes and the trace of the objective.

    ``state`` holds each group's optimizer state (opaque: pass it back to a later
    fit), ``None`` for optimizers without state.
    """

    codes: np.ndarray
    best_loss: np.ndarray
    loss_curve: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    interrupted: bool = False
    diverged: np.ndarray | None = None
    state: list | None = None


@dataclass(frozen=True)
class EngineSpec:
    """What a worker process needs to rebuild an engine: the model, its code input
    and the loss kind. Pickles the model as ``.keras`` bytes (``_persist``)."""

    model: object
    code_index: int
    loss: str

    def engine(self) -> Engine:
        return engine_for(self.model, self.code_index, self.loss)

    def __getstate__(self):
        return pop_models(dict(self.__dict__))

    def __setstate__(self, state):
        for key, value in push_models(state).items():
            object.__setattr__(self, key, value)


# model -> {(code_index, loss): Engine}. Engines hold no strong reference to their
# model (CodeGraph keeps a weak one), so a model nobody uses any more is freed, and
# its entry and compiled functions with it.
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ENGINES_LOCK = threading.Lock()


def engine_for(model, code_index: int, loss: str) -> Engine:
    """The cached engine of ``model``: its compiled functions outlive each fit."""
    with _ENGINES_LOCK:
        per_model = _ENGINES.setdefault(model, {})
        key = (code_index, loss)
        if key not in per_model:
            per_model[key] = Engine(CodeGraph(model, code_index), loss)
        return per_model[key]


def whitening(prior_mean: np.ndarray, prior_covariance: np.ndarray) -> np.ndarray:
    """Per-group factors ``U_g`` with ``U_g^T U_g`` the covariance: ``z = m + u U``."""
    return np.transpose(np.linalg.cholesky(prior_covariance), (0, 2, 1))


def _log_proba(loss: str, out):
    """Log-probabilities (n, n_classes) of a classifier's output."""
    eps = 1e-7
    if loss == "softmax":
        return tf.math.log(tf.clip_by_value(tf.reshape(out, (tf.shape(out)[0], -1)), eps, 1.0))
    if loss == "logits":
        return tf.nn.log_softmax(out)
    p = tf.clip_by_value(tf.reshape(out, [-1]), eps, 1.0 - eps)  # one sigmoid unit
    return tf.stack([tf.math.log(1.0 - p), tf.math.log(p)], axis=1)


def _data_terms(loss: str, out, y, w, group, n_groups):
    """Per-group weighted sums of row losses and of row probabilities (classifiers).

    Classifier rows with label -1 are unlabelled: their loss is the entropy of the
    prediction (unsupervised adaptation).
    """
    if loss == "mse":
        diff = tf.reshape(out, (tf.shape(out)[0], -1)) - y
        per_row = tf.reduce_mean(tf.square(diff), axis=1)
        return tf.math.unsorted_segment_sum(per_row * w, group, n_groups), tf.zeros((n_groups, 1))
    logp = _log_proba(loss, out)
    p = tf.exp(logp)
    labelled = y >= 0
    ce = -tf.gather(logp, tf.maximum(y, 0), axis=1, batch_dims=1)
    entropy = -tf.reduce_sum(p * logp, axis=1)
    per_row = tf.where(labelled, ce, entropy) * w
    data = tf.math.unsorted_segment_sum(per_row, group, n_groups)
    return data, tf.math.unsorted_segment_sum(p * w[:, None], group, n_groups)


def _bucket(n_rows: int) -> int:
    """Row count padded for XLA: the next of 4 sizes per octave (at most 19% more rows)."""
    size = 2.0 ** (math.ceil(4 * math.log2(max(n_rows, 1))) / 4)
    return int(math.ceil(size / 64) * 64)


class _Compiled:
    """A ``tf.function`` with an input signature, in a plain and an XLA variant.

    Calls go through the traced concrete functions: dispatching the polymorphic
    function costs about a millisecond per call with many arguments, which
    dominates small fits; and TensorFlow's warning about frequent retracing (one
    trace per model, adapting many models) does not reach the user. Each variant is
    traced on its first call only.
    """

    def __init__(self, fn, signature):
        self.functions = tuple(
            tf.function(fn, input_signature=signature, jit_compile=jit) for jit in (False, True)
        )
        self._concrete = [None, None]

    def __call__(self, xla: bool, *args):
        if self._concrete[xla] is None:
            self._concrete[xla] = self.functions[xla].get_concrete_function()
        return self._concrete[xla](*args)


@dataclass
class Batch:
    """Tensors of the objective for some rows of a problem, ready for the engine."""

    xla: bool
    tensors: tuple


class Engine:
    """Compiled functions over one :class:`CodeGraph` and loss.

    Traced once per model (input signatures with a ``None`` row dimension);
    learning rate, prior strength and priors are tensors, so new fits, clones
    and grid-search candidates reuse the same graphs. Each optimizer's step is
    compiled the first time that optimizer runs.
    """

    def __init__(self, graph: CodeGraph, loss: str):
        self.graph = graph
        self.loss = loss
        d = graph.code_dim
        f32 = tf.float32
        y_spec = (
            tf.TensorSpec([None, graph.n_outputs], f32)
            if loss == "mse"
            else tf.TensorSpec([None], tf.int32)
        )
        codes = tf.TensorSpec([None, d], f32)
        vec = tf.TensorSpec([None], f32)
        scalar = tf.TensorSpec([], f32)
        self._data_sig = [graph.frontier_specs(), y_spec, vec, tf.TensorSpec([None], tf.int32),
                          vec, vec, tf.TensorSpec([None, d], f32),
                          tf.TensorSpec([None, d, d], f32), scalar]
        self._codes_sig, self._vec_sig, self._scalar_sig = codes, vec, scalar
        self._steps: dict[str, _Compiled] = {}
        # XLA compiles per shape, so its rows are padded to buckets
        self._value_and_grad = _Compiled(self._value_and_grad_impl, [codes, *self._data_sig])
        self._value = _Compiled(self._objective, [codes, *self._data_sig])
        parts = [tf.TensorSpec((None, *s), f32) for s in graph.feature_shapes]
        self._frontier = _Compiled(graph.feature_frontier, [parts])
        self._predict = _Compiled(
            self._predict_impl, [parts, codes, tf.TensorSpec([None], tf.int32)]
        )

    # -- compiled pieces -------------------------------------------------------
    def _objective(self, u, frontier, y, w, group, data_scale, prior_scale, mean, factor,
                   diversity):
        codes = mean + tf.einsum("gi,gij->gj", u, factor)
        out = self.graph.forward(frontier, codes, group)
        data, proba_sum = _data_terms(self.loss, out, y, w, group, tf.shape(u)[0])
        obj = data * data_scale + tf.reduce_sum(u * u, axis=1) * prior_scale
        if self.loss == "mse":
            return obj
        # information maximisation: reward a diverse mean prediction over each group's rows
        mean_p = tf.clip_by_value(proba_sum * data_scale[:, None], 1e-7, 1.0)
        return obj + diversity * tf.reduce_sum(mean_p * tf.math.log(mean_p), axis=1)

    def _value_and_grad_impl(self, u, *args):
        with tf.GradientTape() as tape:
            tape.watch(u)
            obj = self._objective(u, *args)
            total = tf.reduce_sum(obj)
        return obj, tape.gradient(total, u)

    def _step_impl(self, optimizer: Optimizer, u, *args):
        n_slots = len(optimizer.slots)
        slots, (t, active, *args) = args[:n_slots], args[n_slots:]
        *objective_args, lr = args
        obj, g = self._value_and_grad_impl(u, *objective_args)
        on = active[:, None] > 0
        t_new = t + active
        delta, new_slots = optimizer.update(g, slots, tf.maximum(t_new, 1.0)[:, None], lr)
        kept = [tf.where(on, new, old) for new, old in zip(new_slots, slots)]
        return (u + tf.where(on, delta, 0.0), *kept, t_new, obj)

    def _predict_impl(self, parts, codes, group):
        frontier = self.graph.feature_frontier(parts)
        return self.graph.forward(frontier, codes, group)

    # -- numpy-facing API ------------------------------------------------------
    def frontier(self, X: np.ndarray) -> list[tf.Tensor]:
        """Feature frontier of all rows of ``X``, evaluated in chunks."""
        chunks = []
        for start in range(0, max(len(X), 1), _CHUNK):
            parts = self.graph.split_features(X[start : start + _CHUNK])
            chunks.append(self._frontier(False, [tf.constant(p, tf.float32) for p in parts]))
        return [tf.concat(c, axis=0) for c in zip(*chunks)]

    def predict(self, X: np.ndarray, codes: np.ndarray, group: np.ndarray) -> np.ndarray:
        """Model outputs for rows of ``X`` with codes ``codes[group]``."""
        table = tf.constant(codes, tf.float32)
        out = None
        for start in range(0, len(X), _CHUNK):
            parts = self.graph.split_features(X[start : start + _CHUNK])
            idx = tf.constant(group[start : start + _CHUNK], tf.int32)
            chunk = self._predict(False, [tf.constant(p, tf.float32) for p in parts], table, idx)
            chunk = chunk.numpy().reshape(len(idx), -1)
            if out is None:  # written in place: no list of chunks to concatenate
                out = np.empty((len(X), chunk.shape[1]), chunk.dtype)
            out[start : start + len(chunk)] = chunk
        return out if out is not None else np.empty((0, self.graph.n_outputs), np.float32)

    def batch(self, problem: Problem, settings: Settings, rows=None, frontier=None) -> Batch:
        """The tensors of the objective for ``rows`` of ``problem`` (default: all).

        Data terms are scaled by the weight of the group's rows in the batch, the
        prior by the group's total weight. For the XLA variant the rows are padded
        to a shape bucket with weight 0.
        """
        sel = slice(None) if rows is None else rows
        w, group, y = problem.weight[sel], problem.group[sel], problem.y[sel]
        if frontier is None:
            frontier = self.frontier(problem.X[sel])
        total = np.bincount(problem.group, problem.weight, problem.n_groups)
        in_batch = np.bincount(group, w, problem.n_groups)
        with np.errstate(divide="ignore"):
            data_scale = np.where(in_batch > 0, 1.0 / in_batch, 0.0)
            prior_scale = np.where(total > 0, 0.5 * settings.alpha / total, 0.0)
        xla = settings.xla(len(w))
        pad = _bucket(len(w)) - len(w) if xla else 0
        if pad:  # padded rows have weight 0 and add nothing
            frontier = [tf.pad(t, [[0, pad]] + [[0, 0]] * (len(t.shape) - 1)) for t in frontier]
            y = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)])
            w = np.concatenate([w, np.zeros(pad)])
            group = np.concatenate([group, np.zeros(pad, group.dtype)])
        return Batch(xla, (
            frontier,
            tf.constant(y, tf.float32 if self.loss == "mse" else tf.int32),
            tf.constant(w, tf.float32),
            tf.constant(group, tf.int32),
            tf.constant(data_scale, tf.float32),
            tf.constant(prior_scale, tf.float32),
            tf.constant(problem.prior_mean, tf.float32),
            tf.constant(whitening(problem.prior_mean, problem.prior_covariance), tf.float32),
            tf.constant(settings.diversity, tf.float32),
        ))

    def objective(self, batch: Batch, u) -> np.ndarray:
        """Each group's objective at the whitened codes ``u``."""
        value = self._value(batch.xla, tf.constant(u, tf.float32), *batch.tensors)
        return value.numpy().astype(np.float64)

    def value_and_grad(self, batch: Batch, u) -> tuple[np.ndarray, np.ndarray]:
        """Each group's objective and the gradient of their sum at ``u``."""
        obj, grad = self._value_and_grad(batch.xla, tf.constant(u, tf.float32), *batch.tensors)
        return obj.numpy().astype(np.float64), grad.numpy().astype(np.float64)

    def step(self, optimizer: Optimizer, batch: Batch, u, slots, t, active, learning_rate):
        """One update of the active groups: new ``u``, slots, counts, and the objective
        at the old ``u``."""
        if optimizer.name not in self._steps:
            n = len(optimizer.slots)
            c, v, s = self._codes_sig, self._vec_sig, self._scalar_sig
            sig = [c, *[c] * n, v, v, *self._data_sig, s]
            fn = lambda u, *args: self._step_impl(optimizer, u, *args)  # noqa: E731
            self._steps[optimizer.name] = _Compiled(fn, sig)
        out = self._steps[optimizer.name](
            batch.xla, u, *slots, t, tf.constant(active, tf.float32), *batch.tensors,
            learning_rate,
        )
        return out[0], list(out[1:-2]), out[-2], out[-1].numpy().astype(np.float64)

    def traces(self) -> int:
        """How many times this engine's functions were traced (for tests and benchmarks)."""
        compiled = [self._value_and_grad, self._value, self._frontier, self._predict,
                    *self._steps.values()]
        return sum(f.experimental_get_tracing_count() for c in compiled for f in c.functions)

    # -- fits ------------------------------------------------------------------
    def fit(self, problem: Problem, init: np.ndarray, settings: Settings, *,
            validation: Problem | None = None, state: list | None = None,
            rng: np.random.Generator | None = None, report=None) -> Result:
        """Minimise ``sum_g f_g`` from ``init`` (an ``(n_groups, code_dim)`` table).

        ``state``: per group, the optimizer state a previous fit returned, or None.
        """
        optimizer = OPTIMIZERS[settings.optimizer]
        mean = problem.prior_mean
        factor = whitening(mean, problem.prior_covariance)
        u0 = np.linalg.solve(np.transpose(factor, (0, 2, 1)), (init - mean)[..., None])[..., 0]
        if optimizer.first_order:
            loop = FirstOrderLoop(self, optimizer, problem, u0, settings, validation, state,
                                  rng, report)
        else:
            loop = LbfgsLoop(self, problem, u0, settings, report)
        result = loop.run()
        result.codes = mean + np.einsum("gi,gij->gj", result.codes, factor)
        return result


class LbfgsLoop:
    """All codes at once with scipy's L-BFGS-B; each group's best evaluated code is kept.

    The groups' objectives are independent, so the best code of each group over
    every point L-BFGS evaluated is a valid table: it is what a fit returns, also
    when interrupted.
    """

    def __init__(self, engine: Engine, problem: Problem, u0, settings: Settings, report):
        self.engine, self.problem, self.settings, self.report = engine, problem, settings, report
        self.u0 = u0
        self.best_u = u0.astype(np.float64).copy()
        self.best = np.full(problem.n_groups, np.inf)
        self.curve: list[float] = []

    def run(self) -> Result:
        batch = self.engine.batch(self.problem, self.settings)
        shape = self.u0.shape

        def fun(flat):
            u = flat.reshape(shape)
            obj, grad = self.engine.value_and_grad(batch, u)
            better = np.isfinite(obj) & (obj < self.best)
            self.best[better], self.best_u[better] = obj[better], u[better]
            return float(obj.sum()), grad.ravel()

        def callback(value):
            self.curve.append(value / shape[0])
            if self.report is not None:
                self.report(len(self.curve), self.curve[-1], min(self.curve))

        res = minimize_lbfgs(fun, self.u0.ravel(), max_iter=self.settings.max_iter,
                             tol=self.settings.tol, callback=callback)
        return Result(codes=self.best_u, best_loss=self.best, loss_curve=self.curve,
                      n_iter=res.n_iter, converged=res.converged, interrupted=res.interrupted,
                      diverged=~np.isfinite(self.best))


class FirstOrderLoop:
    """Adam / SGD / RMS-SGD with per-group best-code tracking and stopping.

    A group's best code is the one with the lowest objective (on the validation
    rows with early stopping; on all training rows otherwise, scored after each
    epoch with mini-batches); a group stops after ``n_iter_no_change`` iterations
    without a gain of ``tol``.
    """

    def __init__(self, engine: Engine, optimizer: Optimizer, problem: Problem, u0,
                 settings: Settings, validation: Problem | None, state, rng, report):
        self.engine, self.optimizer, self.problem = engine, optimizer, problem
        self.settings, self.validation, self.report = settings, validation, report
        self.rng = rng if rng is not None else np.random.default_rng(0)
        n_groups, d = u0.shape
        self.u = tf.constant(u0, tf.float32)
        self.slots, self.t = self._initial_state(state, n_groups, d)
        self.lr = tf.constant(settings.learning_rate, tf.float32)
        self.best_u = u0.astype(np.float64).copy()
        self.best = np.full(n_groups, np.inf)
        self.no_change = np.zeros(n_groups, dtype=int)
        self.has_rows = np.bincount(problem.group, problem.weight, n_groups) > 0
        self.active = self.has_rows.copy()
        self.diverged = np.zeros(n_groups, dtype=bool)
        # groups scored on validation rows; the others are scored on their training rows
        self.on_validation = np.zeros(n_groups, dtype=bool)
        if validation is not None:
            self.on_validation = np.bincount(validation.group, validation.weight, n_groups) > 0

    def _initial_state(self, state, n_groups, d):
        n = len(self.optimizer.slots)
        slots = [np.zeros((n_groups, d)) for _ in range(n)]
        t = np.zeros(n_groups)
        for i, group_state in enumerate(state or []):
            if group_state is not None and len(group_state) == n + 1:
                for slot, value in zip(slots, group_state[:n]):
                    slot[i] = value
                t[i] = group_state[n]
        return [tf.constant(s, tf.float32) for s in slots], tf.constant(t, tf.float32)

    def run(self) -> Result:
        s, p = self.settings, self.problem
        full_batch = s.batch_size is None or s.batch_size >= len(p.y)
        train = self.engine.batch(p, s) if full_batch else None
        val = None if self.validation is None else self.engine.batch(self.validation, s)
        curve, n_iter, interrupted = [], 0, False
        try:
            for n_iter in range(1, s.max_iter + 1):
                if full_batch:
                    loss = self._step(train, self.active, track=~self.on_validation)
                else:
                    self._epoch()
                    loss = self._score_training() if (~self.on_validation).any() else None
                    if loss is not None:
                        self._track(loss, self.u.numpy(), self.active & ~self.on_validation)
                if val is not None:
                    val_loss = self.engine.objective(val, self.u.numpy())
                    self._track(val_loss, self.u.numpy(), self.active & self.on_validation)
                    loss = val_loss if loss is None else np.where(self.on_validation, val_loss,
                                                                  loss)
                curve.append(_mean_finite(loss))
                if self.report is not None:
                    self.report(n_iter, curve[-1], _mean_finite(self.best))
                if not self.active.any():
                    break
        except KeyboardInterrupt:
            interrupted = True
        if full_batch and not interrupted:  # the last update has not been scored yet
            last = self.engine.objective(train, self.u.numpy())
            self._track(last, self.u.numpy(), self.has_rows & ~self.on_validation, count=False)
        return Result(
            codes=self.best_u, best_loss=self.best, loss_curve=curve, n_iter=n_iter,
            converged=not self.active.any() and not self.diverged.all(),
            interrupted=interrupted, diverged=self.diverged, state=self._state(),
        )

    def _state(self) -> list:
        parts = [s.numpy().astype(np.float64) for s in self.slots]
        t = self.t.numpy().astype(np.float64)
        return [(*(part[i] for part in parts), t[i]) for i in range(len(t))]

    def _step(self, batch, active, track) -> np.ndarray:
        before = self.u.numpy()
        self.u, self.slots, self.t, loss = self.engine.step(
            self.optimizer, batch, self.u, self.slots, self.t, active, self.lr)
        if track is not None:
            self._track(loss, before, active & track)
        return loss

    def _epoch(self) -> None:
        p, s = self.problem, self.settings
        order = self.rng.permutation(len(p.y))
        for start in range(0, len(order), s.batch_size):
            rows = np.sort(order[start : start + s.batch_size])
            present = np.bincount(p.group[rows], minlength=p.n_groups) > 0
            self._step(self.engine.batch(p, s, rows=rows), self.active & present, track=None)

    def _score_training(self) -> np.ndarray:
        """Each group's objective on all its training rows (in chunks of ``batch_size``
        beyond ``_CHUNK`` rows).

        With several chunks the data terms add up exactly; the diversity term of
        unsupervised rows is then the chunks' weighted mean.
        """
        p, s = self.problem, self.settings
        u = self.u.numpy()
        if len(p.y) <= _CHUNK:
            return self.engine.objective(self.engine.batch(p, s), u)
        total_weight = np.bincount(p.group, p.weight, p.n_groups)
        with np.errstate(divide="ignore", invalid="ignore"):
            prior = np.where(total_weight > 0, 0.5 * s.alpha / total_weight, 0.0) * np.sum(
                u.astype(np.float64) ** 2, axis=1)
        total = np.where(total_weight > 0, prior, 0.0)
        for start in range(0, len(p.y), s.batch_size):
            rows = np.arange(start, min(start + s.batch_size, len(p.y)))
            share = np.bincount(p.group[rows], p.weight[rows], p.n_groups)
            share = np.divide(share, total_weight, out=np.zeros_like(share),
                              where=total_weight > 0)
            value = self.engine.objective(self.engine.batch(p, s, rows=rows), u)
            total += np.where(share > 0, share * (value - prior), 0.0)
        return total

    def _track(self, loss, u, mask, count=True):
        """Update best codes, stopping counters and divergence for the groups in ``mask``."""
        s = self.settings
        finite = np.isfinite(loss)
        newly_diverged = mask & ~finite & ~self.diverged
        if newly_diverged.any():
            self.diverged |= newly_diverged
            self.active &= ~newly_diverged
            # restart diverged groups from their best finite code; they stop here
            self.u = tf.constant(
                np.where(self.diverged[:, None], self.best_u, self.u.numpy()), tf.float32
            )
        improved = mask & finite & (loss < self.best - s.tol)
        better = mask & finite & (loss < self.best)
        self.best_u[better] = u[better]
        if s.tol > 0 and count:
            self.no_change[improved] = 0
            self.no_change[mask & finite & ~improved] += 1
            self.active &= ~(self.no_change >= s.n_iter_no_change)
        self.best[better] = loss[better]


def _mean_finite(values) -> float:
    finite = np.asarray(values)[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
