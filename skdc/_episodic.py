"""Episodic training: learn the network for the way a code will be used.

Joint training learns each training condition's code from *all* of its rows; a new
condition's code is learned from a few rows by a few optimiser steps. Episodic
training (CAVIA, Zintgraf et al. 2019; MAML-style speaker-adaptive training, Klejch
et al. 2018) trains on that use. Each step takes ``C`` training conditions and, for
each, a *support* set of ``S`` rows and a *query* set of ``S`` other rows (with units,
rows of a few of the condition's recordings and rows of its others); starting
from the learned initial code ``z0``, ``T`` gradient steps on the support loss,
``z <- z - s * grad_z``, with learned per-entry step sizes ``s``, give the condition's
code; the network, the ``B_l``, ``z0`` and ``s`` are trained by Adam on the query loss
with that code.

The inner gradient is treated as a constant in the outer one (the *first-order*
variant, as first-order MAML): no second derivatives, so every backend runs it with
the same autodiff as joint training, at about ``T + 2`` forward and backward passes
of the sampled rows per step. The step sizes still learn: the query code depends on
them linearly. :class:`~skdc.CodeAdapter` runs the same inner procedure with
``optimizer="gd"``, ``learning_rate=1``, ``max_iter=T``, ``alpha=0`` and
``code_init=CodePrior(z0, diag(s))`` (gradient descent in the whitened coordinates of
that prior is ``z <- z - s * grad_z``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from . import _backend
from ._backend import Spec
from ._training import Adam, History, Rows, Schedule, Stopper, progress, spec_of

__all__ = ["EpisodeRunner", "EpisodeSampler", "train_episodic"]


class EpisodeRunner:
    """One compiled function per fit that runs an epoch of episodic Adam steps.

    Parameters
    ----------
    core : keras.Model
        The code network (inputs features and code); its trainable weights learn.
    loss : keras.losses.Loss
        Mean loss of the task.
    rows : Rows
        Training rows; ``group`` indexes the conditions.
    support : int
        Rows per condition in a support set (and in a query set).
    inner_steps : int
        Gradient steps from ``z0`` on the support set.
    conditions : int
        Conditions per outer step.
    alpha : float
        L2 penalty on the trainable kernels.
    z0 : ndarray of shape (code_dim,)
        Initial code (learned); random in the hidden part, so that zero-initialised
        ``B_l`` receive gradients.
    """

    def __init__(self, core, loss, optimizer: Adam, rows: Rows, *, support: int,
                 inner_steps: int, conditions: int, alpha: float, z0: np.ndarray,
                 units: np.ndarray | None = None, support_units: int = 5):
        if loss.reduction != "sum_over_batch_size":
            raise ValueError("EpisodeRunner needs a mean loss.")
        self.core, self.loss, self.optimizer = core, loss, optimizer
        self.backend = _backend.current()
        self.rows = rows
        self.support, self.inner_steps, self.conditions = support, inner_steps, conditions
        self.alpha = float(alpha)
        self.variables = list(core.trainable_variables)
        self.frozen = list(core.non_trainable_variables)
        weights = [ops.stop_gradient(v) for v in self.variables]
        extra = [self.backend.tensor(z0), self.backend.tensor(np.zeros_like(z0))]  # log s
        params = [*weights, *extra]
        self.state = [params, [ops.stop_gradient(v) for v in self.frozen],
                      optimizer.slots(params)]
        self.n_steps = max(1, -(-len(rows.features) // (2 * support * conditions)))
        self.data = [self.backend.tensor(rows.features),
                     self.backend.tensor(rows.target, "int32" if rows.target.dtype.kind in "iu"
                                         else "float32")]
        self._value_and_grad = self.backend.value_and_grad(self._query_loss)
        self._inner_grad = self.backend.value_and_grad(self._support_loss)
        episode = Spec((None, None, None), "int32")
        weight = Spec((None, None, None), "float32")
        signature = [spec_of(self.state), spec_of(self.data, rows=True), episode, weight,
                     episode, weight]
        self._epoch = self.backend.compile(self._epoch_impl, signature, False)
        self._row_condition = np.repeat(np.arange(conditions), support).astype(np.int32)
        self.sampler = EpisodeSampler(rows.group, rows.weight, units, support=support,
                                      support_units=support_units)

    # -- compiled pieces -------------------------------------------------------
    def _outputs(self, weights, frozen, X, codes):
        mapping = [*zip(self.variables, weights), *zip(self.frozen, frozen)]
        with keras.StatelessScope(state_mapping=mapping):
            return self.core([X, codes], training=True)

    def _per_condition(self, weights, frozen, X, y, w, codes):
        """Sum over conditions of each one's weighted mean loss (``w`` sums to 1 per
        condition), its code ``codes[c]`` on its ``S`` rows."""
        rows = ops.take(codes, self._row_condition, axis=0)
        pred = self._outputs(weights, frozen, X, rows)
        return self.loss(y, pred, sample_weight=w) * ops.cast(ops.shape(w)[0], "float32")

    def _support_loss(self, codes, weights, frozen, X, y, w):
        return self._per_condition(weights, frozen, X, y, w, codes), ()

    def _inner_steps(self, params, frozen, Xs, ys, ws):
        """The sum ``G`` of the inner gradients: the codes after the inner steps are
        ``z0 - s * G``, with ``G`` a constant of the outer step (first order), so the
        outer gradient needs no gradient of a gradient."""
        weights, (z0, log_step) = params[:-2], params[-2:]
        step = ops.exp(log_step)
        codes = ops.repeat(ops.expand_dims(z0, 0), self.conditions, axis=0)
        total = ops.zeros_like(codes)
        for _ in range(self.inner_steps):
            _, _, grad = self._inner_grad(codes, weights, frozen, Xs, ys, ws)
            total = total + grad
            codes = codes - step * grad
        return total

    def _query_loss(self, params, frozen, Xq, yq, wq, inner):
        weights, (z0, log_step) = params[:-2], params[-2:]
        codes = ops.expand_dims(z0, 0) - ops.exp(log_step) * inner
        query = self._per_condition(weights, frozen, Xq, yq, wq, codes) / self.conditions
        return query + self._penalty(weights), ()

    def _penalty(self, weights):
        kernels = [w for v, w in zip(self.variables, weights) if v.path.endswith("kernel")]
        if not self.alpha or not kernels:
            return ops.convert_to_tensor(0.0)
        return self.alpha * ops.sum(ops.stack([ops.sum(k**2) for k in kernels]))

    def _epoch_impl(self, state, data, support, support_w, query, query_w):
        X, y = data

        def body(i, carry):
            (params, frozen, slots), total = carry
            s, q = support[i], query[i]
            Xs, ys = ops.take(X, ops.reshape(s, (-1,)), axis=0), ops.take(
                y, ops.reshape(s, (-1,)), axis=0)
            Xq, yq = ops.take(X, ops.reshape(q, (-1,)), axis=0), ops.take(
                y, ops.reshape(q, (-1,)), axis=0)
            inner = self._inner_steps(params, frozen, Xs, ys,
                                      ops.reshape(support_w[i], (-1,)))
            value, _, grads = self._value_and_grad(
                params, frozen, Xq, yq, ops.reshape(query_w[i], (-1,)),
                ops.stop_gradient(inner))
            params, slots = self.optimizer.apply(params, grads, slots)
            return [params, frozen, slots], total + value

        state, total = ops.fori_loop(0, self.n_steps, body,
                                     (state, ops.zeros((), "float32")))
        return state, total / self.n_steps

    # -- host side -------------------------------------------------------------
    def _sample(self, rng: np.random.Generator):
        """Episode indices and per-condition weights of one epoch:
        ``(n_steps, conditions, support)`` each, for the support and the query sets."""
        n_groups = self.sampler.n_groups
        order = np.concatenate([rng.permutation(n_groups) for _ in range(
            -(-self.n_steps * self.conditions // n_groups))])
        chosen = order[: self.n_steps * self.conditions].reshape(self.n_steps, self.conditions)
        support = np.empty((*chosen.shape, self.support), np.int32)
        query = np.empty_like(support)
        for index in np.ndindex(chosen.shape):
            support[index], query[index] = self.sampler.split(chosen[index], rng)
        weight = self.rows.weight
        return support, _normalised(weight[support]), query, _normalised(weight[query])

    def epoch(self, rng: np.random.Generator) -> float:
        support, support_w, query, query_w = self._sample(rng)
        t = self.backend.tensor
        self.state, value = self._epoch(self.state, self.data, t(support, "int32"),
                                        t(support_w), t(query, "int32"), t(query_w))
        return float(self.backend.numpy(value))

    def weights(self) -> list[np.ndarray]:
        return [np.array(self.backend.numpy(t)) for t in (*self.state[0], *self.state[1])]

    def write(self, weights: list | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Assign ``weights`` (default: the current ones) to the network; return ``z0``
        and the step sizes."""
        values = self.weights() if weights is None else weights
        n = len(self.variables)
        for variable, value in zip((*self.variables, *self.frozen),
                                   (*values[:n], *values[n + 2 :]), strict=True):
            variable.assign(value)
        return values[n].astype(np.float64), np.exp(values[n + 1].astype(np.float64))


class EpisodeSampler:
    """Support and query rows of one condition for an episode.

    With ``units`` (the recordings that rows come from) a support set is the rows of 1
    to ``support_units`` of the condition's recordings, drawn at random, as a new
    condition's code is learned from the frames of a few recordings, and the query set
    is rows of its other recordings. Without units, or for a condition with a single
    unit, both are ``support`` rows drawn from all of its rows; units of one row each
    are rows (``None`` means one unit per row). Each set has ``support`` rows (drawn
    with replacement from fewer).
    """

    def __init__(self, group: np.ndarray, weight: np.ndarray, units: np.ndarray | None, *,
                 support: int, support_units: int):
        self.support, self.support_units = support, support_units
        if units is not None and len(np.unique(units)) == len(units):
            units = None
        self.n_groups = int(group.max()) + 1
        self._rows, self._bounds = [], []
        for g in range(self.n_groups):
            rows = np.flatnonzero((group == g) & (weight > 0))
            if units is not None:  # each unit's rows contiguous: [bounds[i], bounds[i+1])
                rows = rows[np.argsort(units[rows], kind="stable")]
                _, starts = np.unique(units[rows], return_index=True)
                bounds = np.append(starts, len(rows))
            self._rows.append(rows)
            self._bounds.append(bounds if units is not None and len(bounds) > 2 else None)

    def split(self, g: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``support`` support rows and ``support`` query rows of condition ``g``."""
        rows, bounds = self._rows[g], self._bounds[g]
        if bounds is None:
            return self._split_rows(rows, rng)
        n_units = len(bounds) - 1
        chosen = rng.permutation(n_units)[: rng.integers(
            1, min(self.support_units, n_units - 1) + 1)]
        inside = np.zeros(len(rows), bool)
        for i in chosen:
            inside[bounds[i]: bounds[i + 1]] = True
        return self._draw(rows[inside], rng), self._draw(rows[~inside], rng)

    def _draw(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(rows, self.support, replace=len(rows) < self.support)

    def _split_rows(self, rows: np.ndarray, rng: np.random.Generator):
        """``support`` rows and ``support`` other rows (drawn again from the halves of
        a condition with fewer than ``2 * support``)."""
        rows = rng.permutation(rows)
        if len(rows) >= 2 * self.support:
            return rows[: self.support], rows[self.support : 2 * self.support]
        half = max(1, len(rows) // 2)
        first, second = rows[:half], rows[half:] if len(rows) > 1 else rows
        return (rng.choice(first, self.support), rng.choice(second, self.support))


def _normalised(weight: np.ndarray) -> np.ndarray:
    """Row weights summing to 1 over each condition's rows (the last axis)."""
    total = weight.sum(axis=-1, keepdims=True)
    return np.where(total > 0, weight / np.maximum(total, 1e-12), 1.0 / weight.shape[-1]
                    ).astype(np.float32)


def train_episodic(core, rows: Rows, loss, schedule: Schedule, shuffle: np.random.Generator,
                   *, support: int, inner_steps: int, alpha: float, z0: np.ndarray,
                   units: np.ndarray | None = None, support_units: int = 5
                   ) -> tuple[History, np.ndarray, np.ndarray]:
    """Train ``core`` episodically by ``schedule`` (its batch size, in rows, sets the
    conditions per step: ``batch_rows // (2 * support)``), support sets of whole
    ``units`` when given (:class:`EpisodeSampler`); returns the history, the learned
    initial code and the per-entry step sizes."""
    conditions = max(1, schedule.batch_rows(len(rows.features)) // (2 * support))
    conditions = min(conditions, int(rows.group.max()) + 1)
    runner = EpisodeRunner(core, loss, Adam(schedule.learning_rate_init), rows,
                           support=support, inner_steps=inner_steps, conditions=conditions,
                           alpha=alpha, z0=z0, units=units, support_units=support_units)
    stopper = Stopper(schedule.tol, schedule.n_iter_no_change, keep_best=False)
    report = progress(schedule.verbose, schedule.max_iter)
    history = History()
    for epoch in range(schedule.max_iter):
        history.loss.append(runner.epoch(shuffle))
        report(epoch, {"loss": history.loss[-1]})
        if stopper.stop(epoch, history.loss[-1], runner.weights):
            history.stopped = True
            break
    z0, step = runner.write()
    return history, z0, step
