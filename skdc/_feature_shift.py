"""A condition's feature shift, estimated in closed form (empirical Bayes).

Where a condition's labelled rows lie says much about it: speaker variation of
cepstra or log formants is largely an offset of the features. Model: a unit's (a row's,
or an utterance's) mean class residual ``r = mean(x - mu_y)`` in condition ``g`` is
``s_g + e``, with ``s_g ~ N(0, tau^2)`` and ``e ~ N(0, sigma^2)`` per feature, both
variances method-of-moments estimates over the training conditions' units. The
posterior mean of ``s_g`` from ``n`` labelled units is ``sum(r_u) / (n + sigma^2/tau^2)``:
one recording is trusted as one observation, however many frames it has. With
``covariance="full"`` ``tau^2`` and ``sigma^2`` are covariance matrices ``T`` and ``S``
and the posterior mean is ``(n I + S T^-1)^-1 sum(r_u)``: speakers' shifts are strongly
correlated across features (vocal-tract length moves every formant, a cepstral offset
repeats in every stacked frame), so the evidence of one recording is projected onto the
directions in which conditions differ, and its noise in the others is shrunk away.

:class:`ShiftPrior` holds the class means and ``sigma^2 / tau^2``; a coded network with
``shift_estimate="empirical_bayes"`` trains on features with each training condition's
shift removed and its adapter removes a new condition's shift, from its labelled rows,
before the hidden code is learned (codes on top of the shift).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._input_shift import code_shift

__all__ = ["ShiftPrior", "class_residuals", "condition_shifts", "unit_means"]


class ShiftPrior(NamedTuple):
    """Class means and per-feature shrinkage ``sigma^2 / tau^2`` of a feature shift.

    ``class_means`` has one row per class index (one row, the mean of all rows, for
    targets without classes); ``ratio`` one entry per feature; ``period`` is the shift
    part of a code that holds it (``input_shift``: the shift of a feature is the same
    every ``period`` columns; None: one entry per feature). ``mean`` (the mean of all
    training rows) and ``unlabelled_weight`` (per feature, ``sigma^2`` over the
    within-condition variance of an unlabelled unit's offset from ``mean``: what an
    unlabelled unit counts against a labelled one) let rows without a label inform
    the shift (``shifts(..., unlabelled=True)``); None: they do not.

    ``ratio`` is a ``(n_features, n_features)`` matrix ``S T^-1`` when fitted with
    ``covariance="full"`` (within-condition covariance times the inverse of the
    between-condition one).

    Fitted by :class:`~skdc.CodeNetwork` with ``shift_estimate="empirical_bayes"``
    (its ``shift_prior_``) and passed to :class:`~skdc.CodeAdapter` as
    ``shift_prior``.
    """

    class_means: np.ndarray
    ratio: np.ndarray
    period: int | None = None
    mean: np.ndarray | None = None
    unlabelled_weight: np.ndarray | None = None

    @classmethod
    def fit(cls, X, label, group, units=None, period: int | None = None,
            covariance: str = "diag") -> ShiftPrior:
        """The prior of the conditions ``group`` (indices ``0..n-1``) of ``X``.

        ``label``: each row's class index, or None (residuals from the mean of all rows);
        ``units``: each row's unit (e.g. its utterance; None: one unit per row);
        ``covariance``: ``"diag"``, a shrinkage per feature, or ``"full"``, the
        between- and within-condition covariance matrices.
        """
        if covariance not in ("diag", "full"):
            raise ValueError(f"covariance must be 'diag' or 'full'; got {covariance!r}.")
        X = np.asarray(X, np.float64)
        label = np.zeros(len(X), np.intp) if label is None else np.asarray(label)
        class_means = np.stack([X[label == c].mean(axis=0) for c in range(label.max() + 1)])
        resid, index = unit_means(class_residuals(X, label, class_means), group, units)
        n_groups = int(index.max()) + 1
        counts = np.bincount(index, minlength=n_groups).astype(float)
        means = condition_shifts(resid, index, n_groups)
        within = _within_variance(resid, index, means)
        between = means.var(axis=0, ddof=1) - within * np.mean(1.0 / counts)
        between = np.maximum(between, 1e-3 * within)
        mean = X.mean(axis=0)
        offsets, index = unit_means(X - mean, group, units)
        within_unlabelled = _within_variance(offsets, index,
                                             condition_shifts(offsets, index, n_groups))
        weight = np.minimum(np.divide(within, within_unlabelled, out=np.ones_like(within),
                                      where=within_unlabelled > 0), 1.0)
        ratio = (within / between if covariance == "diag"
                 else _full_ratio(resid, index, means, counts))
        return cls(class_means, ratio, period, mean, weight)

    def shifts(self, X, label, group, n_groups: int, units=None, *,
               unlabelled: bool = False) -> np.ndarray:
        """Each condition's shift, the posterior mean from its rows (zero without any),
        ``(n_groups, n_features)``.

        Rows with a negative ``label`` are not used, unless ``unlabelled`` (and the
        prior has ``mean``): then each of their units adds its offset from ``mean``,
        counted as ``unlabelled_weight`` of a labelled unit (a condition's class mix
        assumed to be the training rows').
        """
        X = np.asarray(X, np.float64)
        group = np.asarray(group)
        label = np.zeros(len(X), np.intp) if label is None else np.asarray(label)
        units = None if units is None else np.asarray(units)
        known = label >= 0
        pick = (lambda rows: None) if units is None else (lambda rows: units[rows])
        resid = class_residuals(X[known], label[known], self.class_means)
        sums, counts = _evidence(*unit_means(resid, group[known], pick(known)), n_groups)
        if unlabelled and self.mean is not None and not known.all():
            other, n_other = _evidence(*unit_means(X[~known] - self.mean, group[~known],
                                                   pick(~known)), n_groups)
            sums = sums + self.unlabelled_weight * other
            counts = counts + self.unlabelled_weight * n_other
        return _posterior_mean(sums, counts, self.ratio)

    def code_shifts(self, X, label, group, n_groups: int, units=None, *,
                    unlabelled: bool = False) -> np.ndarray:
        """The shift part of each condition's code, ``(n_groups, period)``: its
        :meth:`shifts` removed (:func:`~skdc._input_shift.code_shift`)."""
        offsets = self.shifts(X, label, group, n_groups, units, unlabelled=unlabelled)
        return code_shift(offsets, self.period or offsets.shape[1])


def _evidence(residuals: np.ndarray, group_index: np.ndarray,
              n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Each condition's sum of residuals ``(n_groups, n_features)`` and their count
    ``(n_groups, 1)``."""
    sums = np.zeros((n_groups, residuals.shape[1]))
    np.add.at(sums, group_index, residuals)
    return sums, np.bincount(group_index, minlength=n_groups)[:, None].astype(float)


def _posterior_mean(sums: np.ndarray, counts: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Each condition's posterior mean shift from the sum of its residuals and their
    count (per feature): ``sums / (counts + ratio)``, or with a matrix ``ratio``
    ``(diag(counts) + ratio)^-1 sums`` (zero for a condition without evidence)."""
    if ratio.ndim < 2:
        return sums / (counts + ratio)
    counts = np.broadcast_to(counts, sums.shape)
    out = np.zeros_like(sums)
    seen = (counts > 0).any(axis=1)
    lhs = ratio + counts[seen][:, :, None] * np.eye(len(ratio))
    out[seen] = np.linalg.solve(lhs, sums[seen][..., None])[..., 0]
    return out


def _full_ratio(resid: np.ndarray, index: np.ndarray, means: np.ndarray,
                counts: np.ndarray) -> np.ndarray:
    """``S T^-1`` from the units' residuals: ``S`` the pooled within-condition
    covariance, ``T`` the covariance of the condition means less their noise, its
    eigenvalues relative to ``S`` floored at 1e-3 (the diagonal prior's floor)."""
    spread = resid - means[index]
    within = spread.T @ spread / max(len(index) - len(means), 1)
    between = np.atleast_2d(np.cov(means, rowvar=False)) - within * np.mean(1.0 / counts)
    # T = S^1/2 W diag(lam) W' S^1/2 with lam >= 1e-3, so S T^-1 = S^1/2 W diag(1/lam) W' S^-1/2
    values, vectors = np.linalg.eigh(within)
    values = np.sqrt(np.maximum(values, 1e-12 * max(values.max(), 1e-300)))
    root, inv_root = (vectors * values) @ vectors.T, (vectors / values) @ vectors.T
    lam, rotation = np.linalg.eigh(inv_root @ between @ inv_root)
    return root @ (rotation / np.maximum(lam, 1e-3)) @ rotation.T @ inv_root


def _within_variance(residuals: np.ndarray, group_index: np.ndarray,
                     means: np.ndarray) -> np.ndarray:
    """Pooled variance of the residuals around their condition's mean, per feature."""
    spread = ((residuals - means[group_index]) ** 2).sum(axis=0)
    return spread / max(len(group_index) - len(means), 1)


def class_residuals(X: np.ndarray, y_index: np.ndarray, class_means: np.ndarray) -> np.ndarray:
    """Every row minus the mean of its class, ``x - mu_y``: where the row lies, the
    evidence about its condition's feature shift."""
    return X - class_means[y_index]


def unit_means(residuals: np.ndarray, group_index: np.ndarray,
               units=None) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's mean residual and the condition index of each unit (the rows as they
    are when ``units`` is None). A unit lies in one condition."""
    if units is None:
        return residuals, group_index
    _, inverse = np.unique(units, return_inverse=True)
    n_units = int(inverse.max()) + 1 if len(inverse) else 0
    if n_units == len(inverse):  # a row per unit: the rows, in their order
        return residuals, group_index
    sums = np.zeros((n_units, residuals.shape[1]))
    np.add.at(sums, inverse, residuals)
    condition = np.zeros(n_units, dtype=np.asarray(group_index).dtype)
    condition[inverse] = group_index
    return sums / np.bincount(inverse, minlength=n_units)[:, None], condition


def condition_shifts(residuals: np.ndarray, group_index: np.ndarray, n_groups: int,
                     ratio=0.0) -> np.ndarray:
    """Each condition's shift: the sum of its rows' residuals over ``n + ratio``.

    With ``ratio = sigma^2 / tau^2`` (:class:`ShiftPrior`) it is the posterior mean of
    the shift (zero for a condition without rows); with ``ratio=0``, the condition's
    mean residual (NaN without rows).
    """
    sums, counts = _evidence(residuals, group_index, n_groups)
    return sums / (counts + ratio)
