"""Feature normalisation inside the protocol: ``evaluate(normalize=...)``.

Every method then runs on normalised features, so the table says what each method
adds *on top of* normalisation. Features are first standardised with the fold's
training rows (as always), then normalised by a :class:`~skdc.ConditionNormalizer`
(its ``kind`` and ``tau``; the fold's training rows give the global statistics that
``tau`` shrinks toward):

``"utterance"``
    Every unit (utterance) with its own rows, training and held-out alike: the unit is
    observed whole before it is scored. Needs ``units``.
``"speaker"``
    A held-out condition with the statistics of its ``k`` adaptation units only (all
    their rows, labels unused), applied to its adaptation and scored rows; ``k = 0``
    has none, hence the global statistics. So that training matches test, each
    training condition is normalised with the statistics of ``k`` of its units drawn
    at random (seeded by ``random_state`` and the condition; the draws for smaller
    ``k`` are subsets of those for larger), and every network is trained once per
    ``k`` (nested validation too chooses per ``k``). With ``tau="auto"`` (the
    default), ``tau`` is the empirical-Bayes ratio of the within- to the
    between-condition variance of the training conditions' *unit means*, times the
    mean number of rows per unit: rows of one unit are not independent evidence
    about the condition (the protocol's rule for every prior).

Statistics are per feature column: stacked context frames are normalised column by
column (the loaders' own per-utterance normalisation of the frames is the frame-level
alternative).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from sklearn.base import clone

from .._normalizer import (
    ConditionNormalizer,
    Moments,
    global_moments,
    group_moments,
    normalise,
    shrink,
)
from ._episodes import Episode, Layout

__all__ = ["NORMALIZE", "Normalisation", "check_normalize", "default_normalizer"]

NORMALIZE = (None, "utterance", "speaker")


def default_normalizer(normalize: str | None) -> ConditionNormalizer:
    """``evaluate``'s normaliser when none is given: mean normalisation (Kaldi's default);
    per speaker shrunk toward the global mean by the empirical-Bayes ``tau`` (a few
    units of a speaker say little about its mean when units differ much, e.g. vowels
    of different kinds), per utterance not shrunk."""
    return ConditionNormalizer(kind="mean", tau="auto" if normalize == "speaker" else 0.0)


def check_normalize(normalize, normalizer, units, X: np.ndarray) -> None:
    """``ValueError`` with one clear message for a bad ``normalize`` or ``normalizer``."""
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be None, 'utterance' or 'speaker', got {normalize!r}.")
    if normalize == "utterance" and units is None:
        raise ValueError("normalize='utterance' needs units= (the utterance of each row) to "
                         "normalise each utterance with its own rows.")
    if normalizer is None:
        return
    if normalize is None:
        raise ValueError("normalizer is given but normalize is None; choose normalize="
                         "'utterance' or 'speaker'.")
    if not isinstance(normalizer, ConditionNormalizer):
        raise ValueError("normalizer must be a skdc.ConditionNormalizer, got "
                         f"{type(normalizer).__name__}.")
    # its own parameter validation, before any fold runs (two rows, two conditions)
    clone(normalizer).fit(X[:2], groups=np.arange(len(X[:2])))


class Normalisation:
    """How one run of the protocol normalises its features (see the module).

    Parameters
    ----------
    mode : {None, "utterance", "speaker"}
        What is normalised with its own statistics.
    normalizer : ConditionNormalizer or None
        Its ``kind`` and ``tau`` are used (not its ``statistics``: the mode decides).
    layout : Layout
        Units and conditions of the rows.
    random_state : int
        Seeds the draws of the training conditions' units (``"speaker"``).
    """

    def __init__(self, mode: str | None, normalizer: ConditionNormalizer | None,
                 layout: Layout, random_state: int):
        self.mode, self.normalizer, self.layout = mode, normalizer, layout
        self.random_state = int(random_state)

    def views(self, shots: Sequence[int]) -> list[tuple[int, ...]]:
        """Groups of ``k`` that share training data (and networks): one per ``k`` when
        training conditions are normalised from ``k`` units, else all together."""
        if self.mode == "speaker":
            return [(k,) for k in shots]
        return [tuple(shots)]

    def fold_features(self, X: np.ndarray, train: np.ndarray) -> np.ndarray:
        """All rows as every ``k`` sees them before episodes: per utterance normalised
        (``"utterance"``), else ``X`` itself."""
        if self.mode != "utterance":
            return X
        units = self.layout.unit_of_row
        norm = clone(self.normalizer).set_params(statistics="transform")
        return norm.fit(X[train], groups=units[train]).transform(X, groups=units)

    def training(self, X: np.ndarray, train: np.ndarray, k: int) -> np.ndarray:
        """The training rows ``X[train]`` as the networks of ``k`` see them."""
        if self.mode != "speaker":
            return X[train]
        condition_of_row = self.layout.unit_condition[self.layout.unit_of_row]
        reference, tau = self.statistics(X[train], condition_of_row[train],
                                         self.layout.unit_of_row[train])
        conditions, position = np.unique(condition_of_row[train], return_inverse=True)
        drawn = [self.layout.rows(self.units_drawn(c)[:k]) for c in conditions]
        moments = group_moments(X[np.concatenate(drawn)],
                                np.repeat(np.arange(len(conditions)), [len(d) for d in drawn]),
                                len(conditions))
        moments = shrink(moments, reference, tau)
        return normalise(X[train], position, moments, reference, self.normalizer.kind)

    def episode_transform(self, X: np.ndarray, conditions: np.ndarray,
                          units: np.ndarray) -> Callable[[Episode], Episode] | None:
        """What every episode goes through (None: nothing): with ``"speaker"``, each
        held-out condition normalised with its adaptation rows' statistics, shrunk
        toward the training rows ``X`` (of ``conditions`` and ``units``)."""
        if self.mode != "speaker":
            return None
        reference, tau = self.statistics(X, conditions, units)
        kind = self.normalizer.kind

        def transform(ep: Episode) -> Episode:
            moments = shrink(group_moments(ep.X_adapt, ep.g_adapt, ep.n_groups), reference, tau)
            return replace(ep, X_adapt=normalise(ep.X_adapt, ep.g_adapt, moments, reference,
                                                 kind),
                           X_score=normalise(ep.X_score, ep.g_score, moments, reference, kind))

        return transform

    def statistics(self, X: np.ndarray, conditions: np.ndarray,
                   units: np.ndarray) -> tuple[Moments, np.ndarray | float]:
        """The global statistics of the training rows ``X`` and ``tau`` (in rows).

        ``tau="auto"``: the normaliser's empirical-Bayes ``tau`` on the units' mean
        rows (per condition), times the mean number of rows per unit.
        """
        if self.normalizer.tau != "auto":
            return global_moments(X), float(self.normalizer.tau)
        unit_keys, unit_index = np.unique(units, return_inverse=True)
        means = group_moments(X, unit_index, len(unit_keys)).mean
        unit_condition = np.zeros(len(unit_keys), dtype=np.asarray(conditions).dtype)
        unit_condition[unit_index] = conditions
        fitted = clone(self.normalizer).fit(means, groups=unit_condition)
        return global_moments(X), fitted.tau_ * (len(X) / len(unit_keys))

    def units_drawn(self, condition: int) -> np.ndarray:
        """The condition's units in a seeded order (its first ``k`` normalise it)."""
        # spawn_key (1,): a stream apart from the held-out draws (seeded [seed, c, r])
        seed = np.random.SeedSequence([self.random_state, int(condition)], spawn_key=(1,))
        units = np.flatnonzero(self.layout.unit_condition == condition)
        return np.random.default_rng(seed).permutation(units)
