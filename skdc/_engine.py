"""The adaptation loop: learn a table of codes for a frozen model.

The engine knows nothing of scikit-learn. It receives validated arrays, turns
them into tensors once, and returns a :class:`Result` of numpy arrays. It is
written with ``keras.ops`` and runs on every Keras backend; what differs per
backend (compilation, gradients, tensor conversion) is in ``_backend``.

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

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, NamedTuple

import numpy as np
from keras import ops

from . import _backend
from ._backend import Spec, group_bucket, pad_rows, row_bucket
from ._chunks import CHUNK, forward_in_chunks, row_chunks
from ._graph import CodeGraph
from ._lbfgs import minimize_lbfgs
from ._optimizers import OPTIMIZERS, Optimizer
from ._persist import pop_models, push_models
from ._stopping import Patience

__all__ = ["Engine", "EngineSpec", "Problem", "Result", "Settings", "engine_for"]

# XLA fuses the step (~35% faster per iteration on the seed workload) but compiles once
# per shape bucket (seconds); with jit_compile="auto" only fits of this many rows use it
# (TensorFlow; JAX always compiles with XLA, PyTorch runs eagerly).
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
    unlabelled: bool = False  # the fit has unlabelled rows: the objective scores their units
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
    hold each group's Gaussian prior. ``unit`` (integers, or None: one unit per row)
    says which rows make one unit, e.g. the frames of an utterance: unlabelled rows are
    scored by the entropy of their unit's prediction (each unit within one group).
    """

    X: np.ndarray
    y: np.ndarray
    weight: np.ndarray
    group: np.ndarray
    n_groups: int
    prior_mean: np.ndarray
    prior_covariance: np.ndarray
    unit: np.ndarray | None = None

    def subset(self, rows: np.ndarray) -> Problem:
        """The same groups and priors, with only ``rows`` (a mask or indices)."""
        return replace(self, X=self.X[rows], y=self.y[rows], weight=self.weight[rows],
                       group=self.group[rows],
                       unit=None if self.unit is None else self.unit[rows])

    def padded(self, n_groups: int) -> Problem:
        """The same rows with ``n_groups`` groups: the extra ones without rows, prior N(0, I)."""
        extra = n_groups - self.n_groups
        if extra <= 0:
            return self
        d = self.prior_mean.shape[1]
        return replace(self, n_groups=n_groups,
                       prior_mean=pad_rows(self.prior_mean, n_groups),
                       prior_covariance=np.concatenate(
                           [self.prior_covariance, np.tile(np.eye(d), (extra, 1, 1))]))

    def groups(self, first: int, stop: int) -> Problem:
        """Groups ``first .. stop-1`` and their rows, re-indexed from zero."""
        part = self.subset((self.group >= first) & (self.group < stop))
        return replace(part, group=part.group - first, n_groups=stop - first,
                       prior_mean=self.prior_mean[first:stop],
                       prior_covariance=self.prior_covariance[first:stop])


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
        return ops.log(ops.clip(ops.reshape(out, (ops.shape(out)[0], -1)), eps, 1.0))
    if loss == "logits":
        return ops.log_softmax(out, axis=-1)
    p = ops.clip(ops.reshape(out, (-1,)), eps, 1.0 - eps)  # one sigmoid unit
    return ops.stack([ops.log(1.0 - p), ops.log(p)], axis=1)


def _data_terms(loss: str, out, data: Data, n_groups, unlabelled: bool):
    """Per-group weighted sums of row losses, and of row probabilities when some rows
    are ``unlabelled`` (classifiers; None otherwise: only the diversity term needs them).

    Classifier rows with label -1 are unlabelled: each of their units (``data.unit``,
    with the group ``data.unit_group[unit]``) contributes the entropy of its prediction, the
    normalised geometric mean of its rows' probabilities (the decision of summed
    log-probabilities), weighted by its rows' weight. A unit of one row is scored by
    the entropy of that row's prediction.
    """
    y, w, group, unit, unit_group = data.y, data.w, data.group, data.unit, data.unit_group
    if loss == "mse":
        diff = ops.reshape(out, (ops.shape(out)[0], -1)) - y
        per_row = ops.mean(ops.square(diff), axis=1)
        return ops.segment_sum(per_row * w, group, n_groups), None
    logp = _log_proba(loss, out)
    ce = -ops.take_along_axis(logp, ops.expand_dims(ops.maximum(y, 0), 1), axis=1)[:, 0]
    if not unlabelled:  # the common case, kept free of the unit terms
        return ops.segment_sum(ce * w, group, n_groups), None
    labelled = ops.cast(y >= 0, logp.dtype)
    w_known, w_unknown = w * labelled, w * (1.0 - labelled)
    n_rows = ops.shape(logp)[0]
    unit_weight = ops.segment_sum(w_unknown, unit, n_rows)
    unit_logp = ops.log_softmax(
        ops.segment_sum(logp * ops.expand_dims(w_unknown, 1), unit, n_rows)
        / ops.expand_dims(ops.maximum(unit_weight, 1e-12), 1), axis=-1)
    unit_p = ops.exp(unit_logp)
    entropy = -ops.sum(unit_p * unit_logp, axis=1)
    data = (ops.segment_sum(ce * w_known, group, n_groups)
            + ops.segment_sum(entropy * unit_weight, unit_group, n_groups))
    proba_sum = (ops.segment_sum(ops.exp(logp) * ops.expand_dims(w_known, 1), group, n_groups)
                 + ops.segment_sum(unit_p * ops.expand_dims(unit_weight, 1), unit_group,
                                   n_groups))
    return data, proba_sum


class Variant(NamedTuple):
    """Which compiled variant a call runs: XLA or not (where the backend has the choice),
    and whether the objective scores unlabelled rows (see :class:`_Compiled`)."""

    xla: bool
    unlabelled: bool


class Data(NamedTuple):
    """The objective's tensors for some rows of a problem (see :meth:`Engine.batch`).

    The one place that orders them: compiled functions take them as trailing positional
    arguments in this order and rebuild the tuple with ``Data(*args)``.
    """

    weights: Any  # the model's weights (JAX, PyTorch) or an empty list (TensorFlow)
    frontier: list  # the feature part's outputs, one tensor per frontier node
    y: Any
    w: Any  # row weights
    group: Any  # each row's code
    unit: Any  # each row's unit (unlabelled fits only)
    unit_group: Any  # each unit's group
    data_scale: Any  # per group: 1 / the weight of its rows in the batch
    prior_scale: Any  # per group: alpha / (2 * the weight of all its rows)
    mean: Any  # per group: the prior mean
    factor: Any  # per group: U_g with U_g^T U_g the prior covariance
    diversity: Any  # weight of the diversity term (scalar)


class StepState(NamedTuple):
    """What a first-order step carries from one step to the next, per group."""

    u: Any  # whitened codes
    slots: list  # the optimizer's state, one tensor per slot
    t: Any  # steps taken


class _Compiled:
    """A function compiled by the backend per :class:`Variant`, each on its first call.
    ``make(unlabelled)`` returns the function."""

    def __init__(self, backend, make, signature):
        self.backend, self.make, self.signature = backend, make, signature
        self._variants: dict = {}

    def __call__(self, variant: Variant, *args):
        key = Variant(self.backend.uses_xla(variant.xla), variant.unlabelled)
        if key not in self._variants:
            self._variants[key] = self.backend.compile(self.make(key.unlabelled),
                                                       self.signature, key.xla)
        return self._variants[key](*args)

    def traces(self) -> int:
        return sum(v.traces() for v in self._variants.values())


@dataclass
class Batch:
    """The objective's tensors for some rows of a problem, and the variant they run."""

    variant: Variant
    data: Data


class Engine:
    """Compiled functions over one :class:`CodeGraph` and loss.

    Compiled once per model (signatures with a ``None`` row dimension on TensorFlow;
    rows and groups padded to a few sizes where the backend compiles per shape);
    learning rate, prior strength, priors and the model's weights are arguments, so
    new fits, clones and grid-search candidates reuse the same compiled functions.
    Each optimizer's step is compiled the first time that optimizer runs.
    """

    def __init__(self, graph: CodeGraph, loss: str):
        self.graph = graph
        self.loss = loss
        self.backend = _backend.current()
        d = graph.code_dim
        y_spec = Spec((None, graph.n_outputs)) if loss == "mse" else Spec((None,), "int32")
        codes, vec, scalar = Spec((None, d)), Spec((None,)), Spec(())
        index = Spec((None,), "int32")
        self._as_args = self.backend.WEIGHTS_AS_ARGUMENTS
        self._weights_sig = graph.weight_specs(self._as_args)
        self._data_sig = Data(
            weights=self._weights_sig, frontier=graph.frontier_specs(), y=y_spec, w=vec,
            group=index, unit=index, unit_group=index, data_scale=vec, prior_scale=vec,
            mean=Spec((None, d)), factor=Spec((None, d, d)), diversity=scalar)
        self._codes_sig, self._vec_sig, self._scalar_sig = codes, vec, scalar
        self._steps: dict[str, _Compiled] = {}
        self.pads = self.backend.pads_rows(False)
        self._value_and_grad = self._compile(
            lambda unlabelled: self.backend.value_and_grad(_on_data(self._total, unlabelled)),
            [codes, *self._data_sig])
        self._value = self._compile(lambda unlabelled: _on_data(self._objective, unlabelled),
                                    [codes, *self._data_sig])
        parts = [Spec((None, *s)) for s in graph.feature_shapes]
        self._predict = self._compile(
            lambda _: self._predict_impl,
            [self._weights_sig, parts, codes, Spec((None,), "int32")])
        self._head = self._compile(
            lambda _: self.graph.forward,
            [self._weights_sig, graph.frontier_specs(), codes, Spec((None,), "int32")])

    def _compile(self, make, signature) -> _Compiled:
        return _Compiled(self.backend, make, signature)

    # -- compiled pieces -------------------------------------------------------
    def _objective(self, u, data: Data, unlabelled: bool = False):
        codes = data.mean + ops.einsum("gi,gij->gj", u, data.factor)
        out = self.graph.forward(data.weights, data.frontier, codes, data.group)
        terms, proba_sum = _data_terms(self.loss, out, data, ops.shape(u)[0], unlabelled)
        obj = terms * data.data_scale + ops.sum(u * u, axis=1) * data.prior_scale
        if proba_sum is None:
            return obj
        # information maximisation: reward a diverse mean prediction over each group's rows
        mean_p = ops.clip(proba_sum * ops.expand_dims(data.data_scale, 1), 1e-7, 1.0)
        return obj + data.diversity * ops.sum(mean_p * ops.log(mean_p), axis=1)

    def _total(self, u, data: Data, unlabelled: bool = False):
        obj = self._objective(u, data, unlabelled)
        return ops.sum(obj), obj

    def _step_impl(self, optimizer: Optimizer, unlabelled: bool, u, slots, t, active, lr,
                   *data):
        total = _on_data(self._total, unlabelled)
        _, obj, g = self.backend.value_and_grad(total)(u, *data)
        on = ops.expand_dims(active, 1) > 0
        t_new = t + active
        delta, new_slots = optimizer.update(g, slots, ops.expand_dims(ops.maximum(t_new, 1.0), 1),
                                            lr)
        kept = [ops.where(on, new, old) for new, old in zip(new_slots, slots)]
        return StepState(u + ops.where(on, delta, 0.0), kept, t_new), obj

    def _predict_impl(self, weights, parts, codes, group):
        frontier = self.graph.feature_frontier(weights, parts)
        return self.graph.forward(weights, frontier, codes, group)

    # -- numpy-facing API ------------------------------------------------------
    def tensor(self, array, dtype="float32"):
        """``array`` as a tensor of the backend."""
        return self.backend.tensor(array, dtype)

    def _parts(self, X, n_rows: int = 0) -> list:
        """The feature inputs' parts of ``X`` as tensors, padded to ``n_rows`` rows."""
        return [self.tensor(pad_rows(p, n_rows)) for p in self.graph.split_features(X)]

    def frontier(self, X: np.ndarray, weights=None) -> list:
        """Feature frontier of all rows of ``X``, evaluated in chunks.

        Run eagerly: it runs once per fit, and compiling it would cost more than
        it saves (a first fit would compile two functions instead of one).
        """
        weights = self.graph.weights(self._as_args) if weights is None else weights
        chunks = [self.graph.feature_frontier(weights, self._parts(X[rows]))
                  for rows in row_chunks(len(X))]
        if len(chunks) == 1:
            return list(chunks[0])
        return [ops.concatenate(c, axis=0) for c in zip(*chunks)]

    def predict(self, X: np.ndarray, codes: np.ndarray, group: np.ndarray) -> np.ndarray:
        """Model outputs for rows of ``X`` with codes ``codes[group]``.

        Runs a compiled forward, in chunks, rows padded to a bucket where the backend
        compiles per shape. On TensorFlow, fewer than 1,024 rows run eagerly (its eager
        ops are fast, and an app's first prediction after its first fit then compiles
        nothing); JAX compiles once per row bucket, as fitting does.
        """
        return self.predict_each(X, codes[None], group, lambda outputs: outputs[0])

    def predict_each(self, X: np.ndarray, tables: np.ndarray, group: np.ndarray,
                     reduce: Callable[[list], np.ndarray]) -> np.ndarray:
        """``reduce`` of the outputs that :meth:`predict` gives with each code table of
        ``tables`` ``(n_tables, n_codes, d)`` (a posterior's draws), one chunk of rows at
        a time: ``reduce(outputs)`` gets the chunk's outputs, one array per table, and
        returns the chunk's result. Each chunk of ``X`` becomes tensors, and its
        code-independent part (the frontier) is computed, once for every table."""
        weights = self.graph.weights(self._as_args)
        if len(X) < self.backend.EAGER_PREDICT_BELOW:
            frontier = self.graph.feature_frontier(weights, self._parts(X))
            idx = self.tensor(group, "int32")
            return np.asarray(reduce([
                self.backend.numpy(self.graph.forward(weights, frontier, self.tensor(t), idx))
                .reshape(len(X), -1) for t in tables])).reshape(len(X), -1)
        if self.pads:
            tables = [pad_rows(t, group_bucket(len(t))) for t in tables]
        tables = [self.tensor(t) for t in tables]

        def forward(rows: slice) -> np.ndarray:
            part, idx = X[rows], group[rows]
            size = row_bucket(len(part)) if self.pads else len(part)
            parts, idx = self._parts(part, size), self.tensor(pad_rows(idx, size), "int32")
            if len(tables) == 1:
                outputs = [self._predict(Variant(False, False), weights, parts, tables[0], idx)]
            else:  # the code-independent part once for every table
                frontier = self.graph.feature_frontier(weights, parts)
                outputs = [self._head(Variant(False, False), weights, frontier, t, idx)
                           for t in tables]
            return reduce([self.backend.numpy(out)[: len(part)] for out in outputs])

        return forward_in_chunks(forward, len(X), self.graph.n_outputs)

    def batch(self, problem: Problem, settings: Settings, rows=None, frontier=None) -> Batch:
        """The tensors of the objective for ``rows`` of ``problem`` (default: all).

        Data terms are scaled by the weight of the group's rows in the batch, the
        prior by the group's total weight. Where the backend compiles per shape
        (JAX; TensorFlow with XLA) the rows are padded to a shape bucket with weight 0.
        """
        sel = slice(None) if rows is None else rows
        w, group, y = problem.weight[sel], problem.group[sel], problem.y[sel]
        weights = self.graph.weights(self._as_args)
        total = np.bincount(problem.group, problem.weight, problem.n_groups)
        in_batch = np.bincount(group, w, problem.n_groups)
        with np.errstate(divide="ignore", invalid="ignore"):  # groups without rows
            data_scale = np.where(in_batch > 0, 1.0 / in_batch, 0.0)
            prior_scale = np.where(total > 0, 0.5 * settings.alpha / total, 0.0)
        xla = settings.xla(len(w))
        pad = row_bucket(len(w)) - len(w) if self.backend.pads_rows(xla) else 0
        if frontier is None:
            frontier = self.frontier(problem.X[sel], weights)
        unit = unit_group = np.zeros(1, np.int64)  # not read by the labelled variant
        if settings.unlabelled:
            unit, unit_group = _local_units(problem.unit, sel, group, len(w) + pad)
            unit = pad_rows(unit, len(w) + pad)
        if pad:  # padded rows have weight 0 and add nothing
            frontier = [ops.pad(t, [[0, pad]] + [[0, 0]] * (len(t.shape) - 1)) for t in frontier]
            y, w, group = (pad_rows(a, len(a) + pad) for a in (y, w, group))
        t = self.tensor
        return Batch(Variant(xla, settings.unlabelled), Data(
            weights=weights,
            frontier=frontier,
            y=t(y, "float32" if self.loss == "mse" else "int32"),
            w=t(w),
            group=t(group, "int32"),
            unit=t(unit, "int32"),
            unit_group=t(unit_group, "int32"),
            data_scale=t(data_scale),
            prior_scale=t(prior_scale),
            mean=t(problem.prior_mean),
            factor=t(whitening(problem.prior_mean, problem.prior_covariance)),
            diversity=t(settings.diversity),
        ))

    def objective(self, batch: Batch, u) -> np.ndarray:
        """Each group's objective at the whitened codes ``u``."""
        value = self._value(batch.variant, self.tensor(u), *batch.data)
        return self.numpy(value)

    def value_and_grad(self, batch: Batch, u) -> tuple[np.ndarray, np.ndarray]:
        """Each group's objective and the gradient of their sum at ``u``."""
        _, obj, grad = self._value_and_grad(batch.variant, self.tensor(u), *batch.data)
        return self.numpy(obj), self.numpy(grad)

    def step(self, optimizer: Optimizer, batch: Batch, state: StepState, active,
             learning_rate) -> tuple[StepState, np.ndarray]:
        """One update of the ``active`` groups: the new state (tensors) and each group's
        objective at the old ``u`` (numpy)."""
        if optimizer.name not in self._steps:
            c, v, s = self._codes_sig, self._vec_sig, self._scalar_sig
            sig = [c, [c] * len(optimizer.slots), v, v, s, *self._data_sig]
            self._steps[optimizer.name] = self._compile(
                lambda unlabelled: partial(self._step_impl, optimizer, unlabelled), sig)
        new_state, obj = self._steps[optimizer.name](
            batch.variant, state.u, list(state.slots), state.t, self.tensor(active),
            learning_rate, *batch.data)
        return StepState(*new_state), self.numpy(obj)

    def numpy(self, tensor) -> np.ndarray:
        """A backend tensor as a float64 numpy array."""
        return self.backend.numpy(tensor).astype(np.float64)

    def traces(self) -> int:
        """How many times this engine's functions were compiled (tests and benchmarks)."""
        compiled = [self._value_and_grad, self._value, self._predict,
                    *self._steps.values()]
        return sum(c.traces() for c in compiled)

    # -- fits ------------------------------------------------------------------
    def fit(self, problem: Problem, init: np.ndarray, settings: Settings, *,
            validation: Problem | None = None, state: list | None = None,
            rng: np.random.Generator | None = None, report=None) -> Result:
        """Minimise ``sum_g f_g`` from ``init`` (an ``(n_groups, code_dim)`` table).

        ``state``: per group, the optimizer state a previous fit returned, or None.
        Where the backend compiles per shape, the group count is padded (to a power
        of two) with groups that have no rows, so that few shapes compile.
        """
        optimizer = OPTIMIZERS[settings.optimizer]
        n_real = problem.n_groups
        if self.backend.pads_rows(settings.xla(len(problem.y))):
            n = group_bucket(n_real)
            problem = problem.padded(n)
            validation = None if validation is None else validation.padded(n)
            init = pad_rows(init, n)
            state = None if state is None else [*state, *[None] * (n - n_real)]
        mean = problem.prior_mean
        factor = whitening(mean, problem.prior_covariance)
        u0 = np.linalg.solve(np.transpose(factor, (0, 2, 1)), (init - mean)[..., None])[..., 0]
        if optimizer.first_order:
            loop = FirstOrderLoop(self, optimizer, problem, u0, settings, validation, state,
                                  rng, report, n_real)
        else:
            loop = LbfgsLoop(self, problem, u0, settings, report, n_real)
        result = loop.run()
        result.codes = (mean + np.einsum("gi,gij->gj", result.codes, factor))[:n_real]
        result.best_loss = result.best_loss[:n_real]
        result.diverged = result.diverged[:n_real]
        result.state = None if result.state is None else result.state[:n_real]
        return result


def _on_data(fn, unlabelled: bool):
    """``fn(u, data, unlabelled)`` as a function of ``(u, *data)``, positional only."""
    return lambda u, *data: fn(u, Data(*data), unlabelled)


def _local_units(unit, sel, group, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Units of the selected rows numbered from 0, and each unit's group (``size`` long)."""
    if unit is None:
        local = np.arange(len(group))
    else:
        local = np.unique(unit[sel], return_inverse=True)[1].ravel()
    unit_group = np.zeros(size, dtype=np.int64)
    unit_group[local] = group
    return local, unit_group


class LbfgsLoop:
    """All codes at once with scipy's L-BFGS-B; each group's best evaluated code is kept.

    The groups' objectives are independent, so the best code of each group over
    every point L-BFGS evaluated is a valid table: it is what a fit returns, also
    when interrupted.
    """

    def __init__(self, engine: Engine, problem: Problem, u0, settings: Settings, report,
                 n_real: int):
        self.engine, self.problem, self.settings, self.report = engine, problem, settings, report
        self.u0, self.n_real = u0, n_real
        self.best_u = u0.astype(np.float64).copy()
        self.kept = Patience(problem.n_groups, settings.tol, settings.n_iter_no_change)
        self.curve: list[float] = []

    def run(self) -> Result:
        batch = self.engine.batch(self.problem, self.settings)
        shape = self.u0.shape

        def fun(flat):
            u = flat.reshape(shape)
            obj, grad = self.engine.value_and_grad(batch, u)
            better = self.kept.record(obj)
            self.best_u[better] = u[better]
            return float(obj.sum()), grad.ravel()

        def callback(value):
            self.curve.append(value / self.n_real)
            if self.report is not None:
                self.report(len(self.curve), self.curve[-1], min(self.curve))

        res = minimize_lbfgs(fun, self.u0.ravel(), max_iter=self.settings.max_iter,
                             tol=self.settings.tol, callback=callback)
        return Result(codes=self.best_u, best_loss=self.kept.best, loss_curve=self.curve,
                      n_iter=res.n_iter, converged=res.converged, interrupted=res.interrupted,
                      diverged=~np.isfinite(self.kept.best))


class FirstOrderLoop:
    """Adam / SGD / RMS-SGD with per-group best-code tracking and stopping.

    A group's best code is the one with the lowest objective (on the validation
    rows with early stopping; on all training rows otherwise, scored after each
    epoch with mini-batches); a group stops after ``n_iter_no_change`` iterations
    without a gain of ``tol``.
    """

    def __init__(self, engine: Engine, optimizer: Optimizer, problem: Problem, u0,
                 settings: Settings, validation: Problem | None, state, rng, report,
                 n_real: int):
        self.engine, self.optimizer, self.problem, self.n_real = engine, optimizer, problem, n_real
        self.settings, self.validation, self.report = settings, validation, report
        self.rng = rng if rng is not None else np.random.default_rng(0)
        n_groups = len(u0)
        self.state = self._initial_state(u0, state)
        self.lr = engine.tensor(settings.learning_rate)
        self.best_u = u0.astype(np.float64).copy()
        self.patience = Patience(n_groups, settings.tol, settings.n_iter_no_change)
        self.has_rows = np.bincount(problem.group, problem.weight, n_groups) > 0
        self.active = self.has_rows.copy()
        self.diverged = np.zeros(n_groups, dtype=bool)
        # groups scored on validation rows; the others are scored on their training rows
        self.on_validation = np.zeros(n_groups, dtype=bool)
        if validation is not None:
            self.on_validation = np.bincount(validation.group, validation.weight, n_groups) > 0

    def _initial_state(self, u0, state) -> StepState:
        """The step state from ``u0`` and each group's saved optimizer state (or None)."""
        n_groups, d = u0.shape
        n = len(self.optimizer.slots)
        slots = [np.zeros((n_groups, d)) for _ in range(n)]
        t = np.zeros(n_groups)
        for i, group_state in enumerate(state or []):
            if group_state is not None and len(group_state) == n + 1:
                for slot, value in zip(slots, group_state[:n]):
                    slot[i] = value
                t[i] = group_state[n]
        tensor = self.engine.tensor
        return StepState(tensor(u0), [tensor(slot) for slot in slots], tensor(t))

    @property
    def u(self) -> np.ndarray:
        """The current whitened codes."""
        return self.engine.numpy(self.state.u)

    def run(self) -> Result:
        s, p = self.settings, self.problem
        full_batch = s.batch_size is None or s.batch_size >= len(p.y)
        train = self.engine.batch(p, s) if full_batch else None
        val = None if self.validation is None else self.engine.batch(self.validation, s)
        curve, n_iter, interrupted = [], 0, False
        on_training = self.has_rows & ~self.on_validation
        try:
            for n_iter in range(1, s.max_iter + 1):
                loss = None
                if full_batch:
                    loss = self._step(train, self.active, track=~self.on_validation)
                else:
                    self._epoch()
                    if on_training.any():
                        loss = self._score_training()
                        self._track(loss, self.u, self.active & on_training)
                if val is not None:
                    u = self.u
                    val_loss = self.engine.objective(val, u)
                    self._track(val_loss, u, self.active & self.on_validation)
                    loss = val_loss if loss is None else np.where(self.on_validation, val_loss,
                                                                  loss)
                curve.append(_mean_finite(loss[: self.n_real]))
                if self.report is not None:
                    self.report(n_iter, curve[-1], _mean_finite(self.patience.best[: self.n_real]))
                if not self.active.any():
                    break
        except KeyboardInterrupt:
            interrupted = True
        if full_batch and not interrupted:  # the last update has not been scored yet
            # a step that moves nothing scores it (no second function to compile)
            self._step(train, np.zeros_like(self.active), track=None, record_to=on_training)
        return Result(
            codes=self.best_u, best_loss=self.patience.best, loss_curve=curve, n_iter=n_iter,
            converged=not self.active.any() and not self.diverged.all(),
            interrupted=interrupted, diverged=self.diverged, state=self._state(),
        )

    def _state(self) -> list:
        parts = [self.engine.numpy(s) for s in self.state.slots]
        t = self.engine.numpy(self.state.t)
        return [(*(part[i] for part in parts), t[i]) for i in range(len(t))]

    def _step(self, batch, active, track, record_to=None) -> np.ndarray:
        """One step of the ``active`` groups; the objective at the codes before it is
        tracked for ``active & track`` (or, without counting, for ``record_to``)."""
        before = self.u
        self.state, loss = self.engine.step(self.optimizer, batch, self.state, active, self.lr)
        if track is not None:
            self._track(loss, before, active & track)
        if record_to is not None:
            self._track(loss, before, record_to, count=False)
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
        beyond ``CHUNK`` rows).

        With several chunks the data terms add up exactly; the diversity term of
        unsupervised rows is then the chunks' weighted mean.
        """
        p, s = self.problem, self.settings
        u = self.u
        if len(p.y) <= CHUNK:
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
            u = np.where(self.diverged[:, None], self.best_u, self.u)
            self.state = self.state._replace(u=self.engine.tensor(u))
        if s.tol > 0 and count:
            better = self.patience.update(loss, mask)
            self.active &= ~self.patience.exhausted()
        else:
            better = self.patience.record(loss, mask)
        self.best_u[better] = u[better]


def _mean_finite(values) -> float:
    finite = np.asarray(values)[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
