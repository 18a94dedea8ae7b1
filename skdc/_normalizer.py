"""Per-condition feature normalisation (cepstral mean / mean-and-variance normalisation).

A condition's (speaker's) rows are centred with the condition's own mean and, for
``kind="meanvar"``, divided by its own standard deviation. With few rows those
statistics are noisy, so they are shrunk toward the global statistics as in Kaldi's
online CMVN: the condition's ``N`` rows are pooled with ``tau`` pseudo-rows that carry
the global mean ``mu`` and variance ``sigma^2``::

    mean = (N * xbar + tau * mu) / (N + tau)
    var  = (N * (s^2 + (xbar - mean)^2) + tau * (sigma^2 + (mu - mean)^2)) / (N + tau)

A condition without rows (``N = 0``) gets the global statistics. ``tau`` may differ
per feature; :func:`empirical_bayes_tau` chooses it from conditions with many rows,
as the ratio of the within- to the between-condition variance (then the shrunk mean
is the posterior mean of the condition's mean). The functions below hold the
arithmetic; :class:`ConditionNormalizer` is the scikit-learn transformer
built on them (and :mod:`skdc.evaluation` normalises its episodes with them).
"""

from __future__ import annotations

from numbers import Real
from typing import NamedTuple

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import FLOAT_DTYPES, check_is_fitted, validate_data

from ._groups import encode_groups

__all__ = ["ConditionNormalizer", "Moments", "empirical_bayes_tau", "group_moments",
           "normalise", "shrink"]

#: A condition's standard deviation is floored at this share of the global one (a
#: condition with one row, or a feature constant within it, is not blown up).
MIN_RELATIVE_SCALE = 1e-3

#: The between-condition variance behind ``tau="auto"`` is floored at this share of the
#: within-condition one: conditions that hardly differ give ``tau`` of 1000 rows.
MIN_BETWEEN_SHARE = 1e-3


class Moments(NamedTuple):
    """Row count, mean and (population) variance per feature: of one set of rows
    (``count`` a number, ``mean`` and ``var`` of shape ``(n_features,)``) or of
    several groups (``count`` of shape ``(n_groups,)``, the others
    ``(n_groups, n_features)``)."""

    count: np.ndarray
    mean: np.ndarray
    var: np.ndarray


def global_moments(X: np.ndarray) -> Moments:
    """The :class:`Moments` of all rows of ``X`` (float64)."""
    X = np.asarray(X, dtype=np.float64)
    if len(X) == 0:
        return Moments(np.float64(0), np.zeros(X.shape[1]), np.zeros(X.shape[1]))
    return Moments(np.float64(len(X)), X.mean(axis=0), X.var(axis=0))


def group_moments(X: np.ndarray, group_index: np.ndarray, n_groups: int) -> Moments:
    """The :class:`Moments` of every group ``0 .. n_groups-1`` of the rows of ``X``.

    ``group_index`` holds each row's group. A group without rows has count 0 and
    zero mean and variance. The variance is computed around the group mean (two
    passes), so large means do not cost precision.
    """
    X = np.asarray(X, dtype=np.float64)
    group_index = np.asarray(group_index, dtype=np.intp)
    member = sparse.csr_matrix(
        (np.ones(len(X)), (group_index, np.arange(len(X)))), shape=(n_groups, len(X))
    )
    count = np.bincount(group_index, minlength=n_groups).astype(np.float64)
    safe = np.maximum(count, 1.0)[:, None]
    mean = np.asarray(member @ X) / safe
    var = np.asarray(member @ (X - mean[group_index]) ** 2) / safe
    return Moments(count, mean, var)


def shrink(moments: Moments, toward: Moments, tau) -> Moments:
    """Every group's moments pooled with ``tau`` pseudo-rows of the ``toward`` moments.

    ``toward`` are the global moments (one set of rows); ``tau`` is a number or one per
    feature. With ``N + tau = 0`` (no rows, no shrinkage) a group gets ``toward``'s
    mean and variance.
    """
    n = np.asarray(moments.count, dtype=np.float64)[:, None]
    total = n + np.asarray(tau, dtype=np.float64)
    weight = np.divide(n, total, out=np.zeros_like(total), where=total > 0)
    mean = weight * moments.mean + (1 - weight) * toward.mean
    var = (weight * (moments.var + (moments.mean - mean) ** 2)
           + (1 - weight) * (toward.var + (toward.mean - mean) ** 2))
    return Moments(moments.count, mean, var)


def empirical_bayes_tau(moments: Moments) -> np.ndarray:
    """Per feature, the within- over the between-condition variance of the groups'
    ``moments`` (method of moments; at least two groups).

    A condition's mean ``m`` is drawn with variance ``b`` around the global mean and
    its rows with variance ``w`` around ``m``; the posterior mean of ``m`` given ``N``
    rows is the shrunk mean with ``tau = w / b``. ``b`` is floored at
    :data:`MIN_BETWEEN_SHARE` times ``w``; a feature constant within conditions gets 0.
    """
    count = np.asarray(moments.count, dtype=np.float64)
    if np.count_nonzero(count) < 2:
        raise ValueError("tau='auto' needs at least 2 conditions with rows.")
    present = count > 0
    count, means, variances = count[present], moments.mean[present], moments.var[present]
    within = (count[:, None] * variances).sum(axis=0) / max(count.sum() - len(count), 1)
    between = means.var(axis=0, ddof=1) - within * np.mean(1.0 / count)
    between = np.maximum(between, MIN_BETWEEN_SHARE * within)
    return np.divide(within, between, out=np.zeros_like(within), where=between > 0)


def normalise(X: np.ndarray, group_index: np.ndarray, moments: Moments, reference: Moments,
              kind: str) -> np.ndarray:
    """Each row of ``X`` centred with its group's mean and, for ``kind="meanvar"``,
    divided by its group's standard deviation (float64).

    The standard deviation is floored at :data:`MIN_RELATIVE_SCALE` times the
    ``reference`` (global) one; a feature constant in the reference is only centred.
    """
    centred = np.asarray(X, dtype=np.float64) - moments.mean[group_index]
    if kind == "mean":
        return centred
    return centred / scales(moments, reference)[group_index]


def scales(moments: Moments, reference: Moments) -> np.ndarray:
    """Every group's standard deviation, floored (see :func:`normalise`)."""
    ref_var = np.asarray(reference.var, dtype=np.float64)
    floor = MIN_RELATIVE_SCALE**2 * ref_var
    scale = np.sqrt(np.maximum(moments.var, floor))
    tiny = 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(reference.mean))
    constant = np.sqrt(ref_var) <= tiny  # a feature constant in the reference
    return np.where(constant | (scale == 0), 1.0, scale)


class ConditionNormalizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Normalise features per condition (speaker, device, ...): mean, or mean and variance.

    Each row is centred with its condition's mean (cepstral mean normalisation) and,
    with ``kind="meanvar"``, divided by its condition's standard deviation (CMVN,
    Lobanov normalisation), feature by feature. A condition's statistics are shrunk
    toward the global statistics learned in :meth:`fit` by ``tau`` pseudo-rows
    (Kaldi-style; see :mod:`skdc._normalizer` for the formula): a condition seen through
    ``N`` rows gets the mean ``(N * xbar + tau * mu) / (N + tau)``.

    Where a condition's statistics come from is chosen by ``statistics``:

    * ``"transform"`` (default): from the condition's own rows **in the call to**
      :meth:`transform`, labels unused. This is what adapting to a new speaker needs:
      ``transform(X_new, groups=speaker_of_each_row)`` normalises each new speaker with
      its own rows, shrunk toward the training statistics, whether or not it was seen
      in :meth:`fit`. The output for a row then depends on the other rows of its
      condition in the call.
    * ``"fit"``: from the condition's rows given to :meth:`fit`; conditions not seen in
      :meth:`fit` get the global statistics. Each row is transformed on its own (e.g.
      new rows of known speakers, or a new speaker whose statistics were gathered by
      fitting on its first rows together with the training rows).

    Rows transformed without ``groups`` get the global statistics (``kind="meanvar"``
    is then a :class:`~sklearn.preprocessing.StandardScaler`). Stacked context frames
    (e.g. MFCCs of +/- 5 frames side by side) are normalised column by column, which
    for frame-level statistics is the same up to the edges of each utterance.

    In a :class:`~sklearn.pipeline.Pipeline`, ``groups`` reaches the normaliser through
    metadata routing: ``ConditionNormalizer().set_fit_request(groups=True)
    .set_transform_request(groups=True)`` inside
    ``sklearn.config_context(enable_metadata_routing=True)``; then ``pipe.fit(X, y,
    groups=g)`` and ``pipe.predict(X_new, groups=g_new)`` normalise per condition.

    Parameters
    ----------
    kind : {"mean", "meanvar"}, default="mean"
        ``"mean"``: subtract the condition's mean (Kaldi's default, robust with few
        rows); ``"meanvar"``: also divide by the condition's standard deviation (floored
        at ``1e-3`` times the global one).
    tau : float or "auto", default=0.0
        Weight of the global statistics, in rows: the condition's ``N`` rows are pooled
        with ``tau`` rows' worth of the global mean and variance. ``0`` uses the
        condition's own statistics alone (a condition without rows gets the global
        ones); larger values trust a condition's few rows less. ``"auto"`` chooses one
        per feature in :meth:`fit` (which then needs ``groups`` with at least 2
        conditions): the within- over the between-condition variance of the fitted
        rows, so that the shrunk mean is the posterior mean of the condition's mean
        (empirical Bayes); rows that vary much within a condition (e.g. vowels of
        different kinds) give a large ``tau``.
    statistics : {"transform", "fit"}, default="transform"
        Where a condition's statistics come from: its rows in the call to
        :meth:`transform`, or its rows given to :meth:`fit` (see above).

    Attributes
    ----------
    mean_ : ndarray of shape (n_features,)
        Global mean of the rows given to :meth:`fit`.
    var_ : ndarray of shape (n_features,)
        Global (population) variance of those rows.
    n_samples_seen_ : int
        Rows given to :meth:`fit`.
    tau_ : ndarray of shape (n_features,)
        ``tau`` per feature (chosen in :meth:`fit` with ``tau="auto"``).
    groups_ : ndarray of shape (n_groups,)
        Conditions seen in :meth:`fit` (empty without ``groups``).
    group_counts_ : ndarray of shape (n_groups,)
        Rows of each of them.
    group_means_ : ndarray of shape (n_groups, n_features)
        Mean of each condition's rows (not shrunk).
    group_vars_ : ndarray of shape (n_groups, n_features)
        Variance of each condition's rows (not shrunk).
    n_features_in_ : int
        Number of features seen during :meth:`fit`.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :meth:`fit`, when ``X`` has string column names.

    See Also
    --------
    sklearn.preprocessing.StandardScaler : The same without conditions.

    Examples
    --------
    >>> import numpy as np
    >>> from skdc import ConditionNormalizer
    >>> X = np.array([[1.0], [3.0], [10.0], [14.0]])
    >>> speaker = np.array(["a", "a", "b", "b"])
    >>> norm = ConditionNormalizer().fit(X, groups=speaker)
    >>> norm.transform(X, groups=speaker).ravel()
    array([-1.,  1., -2.,  2.])

    A new speaker's two rows, centred with their mean (21) pooled with two rows' worth
    of the global mean (7), i.e. with 14:

    >>> norm = ConditionNormalizer(tau=2.0).fit(X)
    >>> norm.transform([[20.0], [22.0]], groups=["c", "c"]).ravel()
    array([6., 8.])
    """

    _parameter_constraints: dict = {
        "kind": [StrOptions({"mean", "meanvar"})],
        "tau": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "statistics": [StrOptions({"transform", "fit"})],
    }

    def __init__(self, kind="mean", tau=0.0, statistics="transform"):
        self.kind = kind
        self.tau = tau
        self.statistics = statistics

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, groups=None):
        """Learn the global statistics and those of every condition in ``groups``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : None
            Ignored.
        groups : array-like of shape (n_samples,), default=None
            Condition of each row; required with ``tau="auto"``.

        Returns
        -------
        self : object
            Fitted normaliser.
        """
        X = validate_data(self, X, dtype=FLOAT_DTYPES)
        overall = global_moments(X)
        self.n_samples_seen_ = int(overall.count)
        self.mean_, self.var_ = overall.mean, overall.var
        if groups is None:
            if self.tau == "auto":
                raise ValueError("tau='auto' needs groups in fit: it compares the variance "
                                 "within conditions to the variance between them.")
            keys, moments = [], Moments(np.zeros(0), np.zeros((0, X.shape[1])),
                                        np.zeros((0, X.shape[1])))
        else:
            keys, index = encode_groups(groups, len(X))
            moments = group_moments(X, index, len(keys))
        self.tau_ = (empirical_bayes_tau(moments) if self.tau == "auto"
                     else np.full(X.shape[1], float(self.tau)))
        self.groups_ = np.asarray(keys)
        self.group_counts_ = moments.count.astype(np.int64)
        self.group_means_, self.group_vars_ = moments.mean, moments.var
        return self

    def transform(self, X, groups=None):
        """Normalise every row with its condition's (shrunk) statistics.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        groups : array-like of shape (n_samples,), default=None
            Condition of each row; without it every row gets the global statistics.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
            Normalised features, of the dtype of ``X`` (float32 or float64).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=FLOAT_DTYPES, reset=False)
        overall = Moments(np.float64(self.n_samples_seen_), self.mean_, self.var_)
        if groups is None:
            index = np.zeros(len(X), dtype=np.intp)
            moments = Moments(np.zeros(1), self.mean_[None], self.var_[None])
        else:
            keys, index = encode_groups(groups, len(X))
            moments = shrink(self._moments_of(keys, X, index), overall, self.tau_)
        return normalise(X, index, moments, overall, self.kind).astype(X.dtype, copy=False)

    def _moments_of(self, keys: list, X: np.ndarray, index: np.ndarray) -> Moments:
        """Unshrunk moments of the conditions ``keys``, by ``statistics``."""
        if self.statistics == "transform":
            return group_moments(X, index, len(keys))
        fitted = {key: i for i, key in enumerate(self.groups_.tolist())}
        at = np.array([fitted.get(key, -1) for key in keys], dtype=np.intp)
        seen = at >= 0  # unseen conditions get count 0, hence the global statistics
        count = np.zeros(len(keys))
        mean, var = np.zeros((2, len(keys), len(self.mean_)))
        count[seen] = self.group_counts_[at[seen]]
        mean[seen], var[seen] = self.group_means_[at[seen]], self.group_vars_[at[seen]]
        return Moments(count, mean, var)

    def fit_transform(self, X, y=None, groups=None):
        """:meth:`fit`, then :meth:`transform` of the same rows with the same ``groups``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : None
            Ignored.
        groups : array-like of shape (n_samples,), default=None
            Condition of each row.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features)
            Normalised features.
        """
        return self.fit(X, y, groups=groups).transform(X, groups=groups)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
