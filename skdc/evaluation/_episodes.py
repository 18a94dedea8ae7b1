"""Episodes: which rows a method adapts on and which it is scored on.

Rows are grouped into *units* (one row each, or e.g. the frames of an utterance) within
conditions. For every held-out condition and repeat there is one permutation of its
units, seeded by ``(seed, condition, repeat)`` only; with ``k`` shots its first ``k``
units are labelled adaptation data and the *remaining* units are scored. Every method
thus sees the same rows (paired comparison), and the adaptation sets are nested in ``k``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Episode", "HeldOut", "Layout"]


@dataclass
class Episode:
    """One draw of adaptation rows for every held-out condition of a fold.

    Conditions are numbered ``0 .. n_groups-1``; ``X_score`` are the rows that are
    scored (the condition's rows that were not drawn for adaptation).
    """

    X_adapt: np.ndarray
    y_adapt: np.ndarray
    g_adapt: np.ndarray
    X_score: np.ndarray
    g_score: np.ndarray
    n_groups: int
    u_adapt: np.ndarray | None = None  # unit of each row (e.g. its utterance)
    u_score: np.ndarray | None = None


class Layout:
    """Rows grouped into units (one row each unless ``units`` is given) within conditions.

    A unit (e.g. an utterance made of frames) is adapted on or scored as a whole: its
    decision sums the log-probabilities of its rows. ``g_idx`` are condition indices;
    with ``y``, every unit must have one label. ``ValueError`` for a unit that spans
    conditions or labels.
    """

    def __init__(self, g_idx: np.ndarray, units=None, y=None):
        g_idx = np.asarray(g_idx)
        self.unit_of_row = _unit_index(units, len(g_idx))
        n_units = int(self.unit_of_row.max()) + 1 if len(g_idx) else 0
        order = np.argsort(self.unit_of_row, kind="stable")
        bounds = np.cumsum(np.bincount(self.unit_of_row, minlength=n_units))[:-1]
        self.rows_of_unit = np.split(order, bounds)
        self.unit_first_row = np.array([rows[0] for rows in self.rows_of_unit], dtype=int)
        self.unit_condition = g_idx[self.unit_first_row]
        if units is not None:
            self._check_units(g_idx, y)

    def _check_units(self, g_idx, y) -> None:
        for rows in self.rows_of_unit:
            if len(np.unique(g_idx[rows])) > 1:
                raise ValueError("each unit must lie within one condition (group).")
            if y is not None and len(np.unique(np.asarray(y)[rows])) > 1:
                raise ValueError("each unit must have one label for all its rows.")

    @property
    def n_units(self) -> int:
        return len(self.rows_of_unit)

    def rows(self, units) -> np.ndarray:
        """The rows of ``units``, unit by unit."""
        if len(units) == 0:
            return np.empty(0, dtype=int)
        return np.concatenate([self.rows_of_unit[u] for u in units])


def _unit_index(units, n_rows: int) -> np.ndarray:
    if units is None:
        return np.arange(n_rows)
    units = np.asarray(units)
    if units.shape != (n_rows,):
        raise ValueError(f"units must be 1-D with one entry per row ({n_rows}).")
    return np.unique(units, return_inverse=True)[1].ravel()


class HeldOut:
    """Held-out conditions, their seeded draws of units, and the scoring of an episode.

    Parameters
    ----------
    X, y : ndarray
        Features and label indices of every row of the layout.
    layout : Layout
        Units and conditions of the rows.
    held : ndarray of int
        The held-out conditions (indices into the layout's conditions).
    repeats : int
        Draws per condition.
    seed : int
        With the condition and the repeat, the only input of a draw.
    transform : callable, default=None
        Applied to every episode (e.g. per-condition normalisation from its adaptation
        rows); None leaves episodes as drawn.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, layout: Layout, held, repeats: int,
                 seed: int, transform: Callable[[Episode], Episode] | None = None):
        self.X, self.y, self.layout, self.held = X, y, layout, np.asarray(held)
        self.transform = transform
        self.draws = {
            c: [np.random.default_rng([seed, int(c), r]).permutation(
                np.flatnonzero(layout.unit_condition == c)) for r in range(repeats)]
            for c in self.held
        }

    def episode(self, r: int, k: int) -> tuple[Episode, np.ndarray]:
        """Draw ``r`` with ``k`` shots, and the scored units (in the order of ``X_score``)."""
        adapt = [self.layout.rows(self.draws[c][r][:k]) for c in self.held]
        scored_units = [self.draws[c][r][k:] for c in self.held]
        scored = [self.layout.rows(u) for u in scored_units]
        local = np.arange(len(self.held))
        adapt_rows = np.concatenate(adapt)
        score_rows = np.concatenate(scored)
        ep = Episode(
            X_adapt=self.X[adapt_rows],
            y_adapt=self.y[adapt_rows],
            g_adapt=np.repeat(local, [len(a) for a in adapt]),
            X_score=self.X[score_rows],
            g_score=np.repeat(local, [len(s) for s in scored]),
            n_groups=len(self.held),
            u_adapt=self.layout.unit_of_row[adapt_rows],
            u_score=self.layout.unit_of_row[score_rows],
        )
        if self.transform is not None:
            ep = self.transform(ep)
        return ep, np.concatenate(scored_units)

    def accuracy(self, log_p: np.ndarray, units: np.ndarray,
                 classes: np.ndarray) -> dict[int, float]:
        """Accuracy per held-out condition of an episode's scored ``units``.

        ``log_p`` are the log-probabilities of the episode's scored rows, columns in
        the order of ``classes`` (label values of ``y``). A unit's decision is the
        class of the largest sum of its rows' log-probabilities.
        """
        totals = self._unit_totals(log_p, units)
        order = np.sort(units)
        hits = classes[totals.argmax(axis=1)] == self.y[self.layout.unit_first_row[order]]
        condition = self.layout.unit_condition[order]
        return {int(c): float(hits[condition == c].mean()) for c in self.held}

    def _unit_totals(self, log_p: np.ndarray, units: np.ndarray) -> np.ndarray:
        """Sums of the scored rows' log-probabilities per unit, units in sorted order."""
        rows = self.layout.rows(units)
        position = np.searchsorted(np.sort(units), self.layout.unit_of_row[rows])
        totals = np.zeros((len(units), log_p.shape[1]))
        np.add.at(totals, position, log_p)
        return totals
