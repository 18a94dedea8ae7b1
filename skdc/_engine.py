"""The adaptation loop: learn a table of codes for a frozen model.

The engine knows nothing of scikit-learn. It receives validated arrays, turns
them into tensors once, and returns a :class:`Result` of numpy arrays.

Objective of group ``g`` (rows ``i`` in ``g``, weights ``w_i``)::

    f_g(z_g) = sum_i w_i * loss_i / W_g  +  alpha / (2 W_g) * (z_g - m)^T P (z_g - m)

with ``W_g = sum_i w_i`` and ``P`` the prior precision: the MAP objective divided
by the group's weight. The optimizers work in whitened coordinates
``u = L^-1 (z - m)`` (``L L^T`` the prior covariance), where the penalty is
``|u|^2``: a prior with very different variances per direction stays well
conditioned, and step sizes are in units of prior standard deviations.

The engine minimises ``sum_g f_g``; its gradient with respect to ``z_g`` is
exactly ``grad f_g``, so every group follows the path it
would follow alone (the first-order optimizers are element-wise and stopping is
per group). A group's code is *tied*: one vector whose gradient sums over all
of the group's rows.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from ._graph import CodeGraph

__all__ = ["Engine", "Problem", "Result", "Settings", "engine_for"]

_CHUNK = 16384  # rows per call when evaluating the feature part or predicting
# XLA fuses the step (~35% faster per iteration on the seed workload) but compiles once
# per shape bucket (seconds); with jit_compile="auto" only fits of this many rows use it.
_XLA_MIN_ROWS = 1024
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8
_MOMENTUM = 0.9
_OPTIMIZERS = {"adam": 0, "sgd": 1, "rms_sgd": 2}


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
    """Validated arrays of one fit; ``group`` indexes rows of the code table."""

    X: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    group: np.ndarray
    n_groups: int


@dataclass
class Result:
    """What a fit learned: best codes and the trace of the objective."""

    codes: np.ndarray
    best_loss: np.ndarray
    loss_curve: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    interrupted: bool = False
    diverged: np.ndarray | None = None
    state: tuple | None = None


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
    """Per-group weighted sum of row losses, and of row probabilities (classifiers).

    Classifier rows with label -1 are unlabelled: their loss is the entropy of the
    prediction (unsupervised adaptation).
    """
    if loss == "mse":
        diff = tf.reshape(out, (tf.shape(out)[0], -1)) - y
        per_row = tf.reduce_mean(tf.square(diff), axis=1)
        return tf.math.unsorted_segment_sum(per_row * w, group, n_groups), None
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
    trace per model, adapting many models) does not reach the user.
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


class Engine:
    """Compiled functions over one :class:`CodeGraph` and loss.

    Traced once per model (input signatures with a ``None`` row dimension);
    learning rate, prior strength and prior are tensors, so new fits, clones
    and grid-search candidates reuse the same graphs.
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
        frontier = graph.frontier_specs()
        codes = tf.TensorSpec([None, d], f32)
        vec = tf.TensorSpec([None], f32)
        data = [frontier, y_spec, vec, tf.TensorSpec([None], tf.int32), vec, vec]
        scalar = tf.TensorSpec([], f32)
        prior = [tf.TensorSpec([d], f32), tf.TensorSpec([d, d], f32), scalar]
        state = [codes, codes, vec]
        kind = tf.TensorSpec([], tf.int32)
        step_sig = [codes, *state, vec, *data, *prior, scalar, kind]
        vg_sig = [codes, *data, *prior]
        # XLA compiles per shape, so its rows are padded to buckets
        self._step = _Compiled(self._step_impl, step_sig)
        self._value_and_grad = _Compiled(self._value_and_grad_impl, vg_sig)
        self._value = _Compiled(self._objective, vg_sig)
        parts = [tf.TensorSpec((None, *s), f32) for s in graph.feature_shapes]
        self._frontier = _Compiled(graph.feature_frontier, [parts])
        self._predict = _Compiled(
            self._predict_impl, [parts, codes, tf.TensorSpec([None], tf.int32)]
        )

    # -- compiled pieces -------------------------------------------------------
    def _objective(self, u, frontier, y, w, group, data_scale, prior_scale, mean, factor,
                   diversity):
        codes = mean + tf.matmul(u, factor)
        out = self.graph.forward(frontier, codes, group)
        data, proba_sum = _data_terms(self.loss, out, y, w, group, tf.shape(u)[0])
        obj = data * data_scale + tf.reduce_sum(u * u, axis=1) * prior_scale
        if proba_sum is None:
            return obj
        # information maximisation: reward a diverse mean prediction over each group's rows
        mean_p = tf.clip_by_value(proba_sum * data_scale[:, None], 1e-7, 1.0)
        return obj + diversity * tf.reduce_sum(mean_p * tf.math.log(mean_p), axis=1)

    def _value_and_grad_impl(self, codes, *args):
        with tf.GradientTape() as tape:
            tape.watch(codes)
            obj = self._objective(codes, *args)
            total = tf.reduce_sum(obj)
        return obj, tape.gradient(total, codes)

    def _step_impl(self, codes, s1, s2, t, active, *args):
        *objective_args, lr, kind = args
        obj, g = self._value_and_grad_impl(codes, *objective_args)
        on = active[:, None]
        t_new = t + active
        if kind == 0:  # adam
            s1_new = _BETA1 * s1 + (1 - _BETA1) * g
            s2_new = _BETA2 * s2 + (1 - _BETA2) * g * g
            tt = tf.maximum(t_new, 1.0)[:, None]
            m_hat = s1_new / (1 - _BETA1**tt)
            v_hat = s2_new / (1 - _BETA2**tt)
            update = -lr * m_hat / (tf.sqrt(v_hat) + _EPS)
        elif kind == 1:  # sgd with momentum
            s1_new = _MOMENTUM * s1 - lr * g
            s2_new = s2
            update = s1_new
        else:  # rms_sgd: the gradient divided by its RMS, as in the original recipe
            s1_new, s2_new = s1, s2
            rms = tf.sqrt(tf.reduce_mean(g * g, axis=1, keepdims=True))
            update = -lr * g / (rms + 1e-5)
        return (
            codes + on * update,
            tf.where(on > 0, s1_new, s1),
            tf.where(on > 0, s2_new, s2),
            t_new,
            obj,
        )

    def _predict_impl(self, parts, codes, group):
        frontier = self.graph.feature_frontier(parts)
        return self.graph.forward(frontier, codes, group)

    # -- numpy-facing helpers --------------------------------------------------
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

    def _tensors(self, problem: Problem, frontier, settings: Settings, prior, rows=None):
        """Whether to use XLA, and the tensors of the objective for ``rows`` of ``problem``.

        For the XLA variant the rows are padded to a shape bucket with weight 0.
        """
        alpha, diversity = settings.alpha, settings.diversity
        sel = slice(None) if rows is None else rows
        w = problem.weight[sel]
        group = problem.group[sel]
        total = np.bincount(problem.group, problem.weight, problem.n_groups)
        batch = np.bincount(group, w, problem.n_groups)
        with np.errstate(divide="ignore"):
            data_scale = np.where(batch > 0, 1.0 / batch, 0.0)
            prior_scale = np.where(total > 0, 0.5 * alpha / total, 0.0)
        y = problem.y[sel]
        xla = settings.xla(len(w))
        pad = _bucket(len(w)) - len(w) if xla else 0
        if pad:  # padded rows have weight 0 and add nothing
            frontier = [tf.pad(t, [[0, pad]] + [[0, 0]] * (len(t.shape) - 1)) for t in frontier]
            y = np.concatenate([y, np.zeros((pad, *y.shape[1:]), y.dtype)])
            w = np.concatenate([w, np.zeros(pad)])
            group = np.concatenate([group, np.zeros(pad, group.dtype)])
        return xla, (
            frontier,
            tf.constant(y, tf.float32 if self.loss == "mse" else tf.int32),
            tf.constant(w, tf.float32),
            tf.constant(group, tf.int32),
            tf.constant(data_scale, tf.float32),
            tf.constant(prior_scale, tf.float32),
            tf.constant(prior[0], tf.float32),
            tf.constant(np.linalg.cholesky(prior[1]).T, tf.float32),
            tf.constant(diversity, tf.float32),
        )

    # -- fits ------------------------------------------------------------------
    def fit(
        self,
        problem: Problem,
        init: np.ndarray,
        prior: tuple[np.ndarray, np.ndarray],
        settings: Settings,
        *,
        validation: Problem | None = None,
        state: tuple | None = None,
        rng: np.random.Generator | None = None,
        report=None,
    ) -> Result:
        """Minimise ``sum_g f_g`` from ``init`` (an ``(n_groups, code_dim)`` table)."""
        mean, factor = prior[0], np.linalg.cholesky(prior[1]).T
        u0 = np.linalg.solve(factor.T, (init - mean).T).T
        if settings.optimizer == "lbfgs":
            result = self._fit_lbfgs(problem, u0, prior, settings, report)
        else:
            result = _FirstOrderLoop(self, problem, u0, prior, settings, validation, state, rng,
                                     report).run()
        result.codes = mean + result.codes @ factor
        return result

    def _fit_lbfgs(self, problem, init, prior, settings, report) -> Result:
        from scipy.optimize import minimize

        packed = self._tensors(problem, self.frontier(problem.X), settings, prior)
        shape = init.shape
        curve: list[float] = []
        per_group = [np.full(shape[0], np.inf)]

        def fun(flat):
            codes = tf.constant(flat.reshape(shape), tf.float32)
            obj, grad = self._value_and_grad(packed[0], codes, *packed[1])
            per_group[0] = obj.numpy().astype(np.float64)
            value = float(per_group[0].sum())
            if not np.isfinite(value):  # let the line search back off
                return np.inf, np.zeros(flat.size)
            return value, grad.numpy().astype(np.float64).ravel()

        def callback(intermediate_result):
            curve.append(float(intermediate_result.fun) / shape[0])
            if report is not None:
                report(len(curve), curve[-1], min(curve))

        tol = settings.tol
        interrupted = False
        x0 = init.astype(np.float64).ravel()
        try:
            res = minimize(
                fun, x0, jac=True, method="L-BFGS-B", callback=callback,
                options={"maxiter": settings.max_iter, "ftol": tol, "gtol": tol},
            )
            x, nit, converged = res.x, int(res.nit), bool(res.success)
        except KeyboardInterrupt:
            x, nit, converged, interrupted = x0, len(curve), False, True
        codes = x.reshape(shape)
        best = self._group_objective(codes, packed)
        return Result(codes=codes, best_loss=best, loss_curve=curve, n_iter=nit,
                      converged=converged and nit < settings.max_iter, interrupted=interrupted,
                      diverged=~np.isfinite(best))

    def _group_objective(self, codes, packed):
        xla, args = packed
        return self._value(xla, tf.constant(codes, tf.float32), *args).numpy().astype(np.float64)


class _FirstOrderLoop:
    """Adam / SGD / RMS-SGD with per-group best-code tracking and stopping."""

    def __init__(self, engine, problem, init, prior, settings, validation, state, rng, report):
        self.engine, self.problem, self.settings = engine, problem, settings
        self.prior, self.report = prior, report
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.validation = validation
        n_groups, d = init.shape
        if state is None:
            state = (np.zeros((n_groups, d)), np.zeros((n_groups, d)), np.zeros(n_groups))
        self.codes = tf.constant(init, tf.float32)
        self.state = [tf.constant(s, tf.float32) for s in state]
        self.best_codes = init.astype(np.float64).copy()
        self.best = np.full(n_groups, np.inf)
        self.no_change = np.zeros(n_groups, dtype=int)
        self.has_rows = np.bincount(problem.group, problem.weight, n_groups) > 0
        self.active = self.has_rows.copy()
        self.diverged = np.zeros(n_groups, dtype=bool)
        self.lr = tf.constant(settings.learning_rate, tf.float32)
        self.kind = tf.constant(_OPTIMIZERS[settings.optimizer], tf.int32)

    def run(self) -> Result:
        s, p = self.settings, self.problem
        full_batch = s.batch_size is None or s.batch_size >= len(p.y)
        frontier = self.engine.frontier(p.X) if full_batch else None
        args = (
            self.engine._tensors(p, frontier, s, self.prior) if full_batch else None
        )
        val_args = None
        if self.validation is not None:
            v = self.validation
            val_args = self.engine._tensors(v, self.engine.frontier(v.X), s, self.prior)
        curve, n_iter, interrupted = [], 0, False
        try:
            for n_iter in range(1, s.max_iter + 1):
                if full_batch:
                    loss = self._step(args)
                else:
                    loss = self._epoch()
                    if val_args is None:
                        self._track(loss, self.codes.numpy().astype(np.float64))
                if val_args is not None:
                    loss = self.engine._group_objective(self.codes.numpy(), val_args)
                    self._track(loss, self.codes.numpy().astype(np.float64))
                curve.append(float(np.mean(loss[np.isfinite(loss)])) if np.any(
                    np.isfinite(loss)) else float("nan"))
                if self.report is not None:
                    finite = self.best[np.isfinite(self.best)]
                    self.report(n_iter, curve[-1], float(finite.mean()) if finite.size else
                                float("nan"))
                if not self.active.any():
                    break
        except KeyboardInterrupt:
            interrupted = True
        if val_args is None and full_batch and not interrupted:
            # the last update has not been scored yet
            last = self.engine._group_objective(self.codes.numpy(), args)
            self._track(last, self.codes.numpy().astype(np.float64), mask=self.has_rows,
                        count=False)
        return Result(
            codes=self.best_codes, best_loss=self.best, loss_curve=curve, n_iter=n_iter,
            converged=not self.active.any() and not self.diverged.all(),
            interrupted=interrupted, diverged=self.diverged,
            state=tuple(t.numpy().astype(np.float64) for t in self.state),
        )

    def _step(self, args, present=None, track=True) -> np.ndarray:
        active = self.active if present is None else self.active & present
        before = self.codes
        xla, tensors = args
        out = self.engine._step(
            xla, before, *self.state, tf.constant(active, tf.float32), *tensors, self.lr, self.kind
        )
        self.codes, self.state = out[0], list(out[1:4])
        loss = out[4].numpy().astype(np.float64)
        if track and self.validation is None:
            self._track(loss, before.numpy().astype(np.float64), mask=active)
        return loss

    def _epoch(self) -> np.ndarray:
        p, s = self.problem, self.settings
        order = self.rng.permutation(len(p.y))
        total = np.zeros(p.n_groups)
        weight = np.zeros(p.n_groups)
        for start in range(0, len(order), s.batch_size):
            rows = np.sort(order[start : start + s.batch_size])
            frontier = self.engine.frontier(p.X[rows])
            args = self.engine._tensors(p, frontier, s, self.prior, rows=rows)
            present = np.bincount(p.group[rows], minlength=p.n_groups) > 0
            loss = self._step(args, present, track=False)
            n = np.bincount(p.group[rows], minlength=p.n_groups)
            total += np.where(present, loss * n, 0.0)
            weight += n
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(weight > 0, total / weight, np.inf)

    def _track(self, loss, codes, mask=None, count=True):
        """Update best codes, stopping counters and divergence for the groups in ``mask``."""
        s = self.settings
        mask = self.active if mask is None else mask
        finite = np.isfinite(loss)
        newly_diverged = mask & ~finite & ~self.diverged
        if newly_diverged.any():
            self.diverged |= newly_diverged
            self.active &= ~newly_diverged
            # restart diverged groups from their best finite code; they stop here
            self.codes = tf.constant(
                np.where(self.diverged[:, None], self.best_codes, self.codes.numpy()), tf.float32
            )
        improved = mask & finite & (loss < self.best - s.tol)
        better = mask & finite & (loss < self.best)
        self.best_codes[better] = codes[better]
        if s.tol > 0 and count:
            self.no_change[improved] = 0
            self.no_change[mask & finite & ~improved] += 1
            self.active &= ~(self.no_change >= s.n_iter_no_change)
        self.best[better] = loss[better]
