"""The one stopping rule of skdc's loops: network training and code adaptation.

A value *improves* on the best so far only when it is lower by more than ``tol``
(Keras' ``EarlyStopping`` with ``mode="min"``, scikit-learn's ``MLPClassifier``).
A loop stops after ``patience`` checks in a row without an improvement. A value
that is lower, but not by more than ``tol``, does not reset the patience; it still
becomes the best value (its weights or code the ones kept), as in scikit-learn: a
loop never keeps something worse than what it saw.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Patience"]


class Patience:
    """Best values and patience counters of ``n`` independent series (groups)."""

    def __init__(self, n: int, tol: float, patience: int):
        self.tol, self.patience = float(tol), int(patience)
        self.best = np.full(n, np.inf)
        self.wait = np.zeros(n, dtype=int)

    def update(self, values, mask=None) -> np.ndarray:
        """Record ``values`` of the series in ``mask`` (default: all); returns the mask of
        series whose value is a new best (lower than any before)."""
        values, mask = self._checked(values, mask)
        finite = mask & np.isfinite(values)
        improved = finite & (values < self.best - self.tol)
        self.wait[improved] = 0
        self.wait[finite & ~improved] += 1
        return self.record(values, mask)

    def record(self, values, mask=None) -> np.ndarray:
        """Like :meth:`update`, without counting the check towards the patience."""
        values, mask = self._checked(values, mask)
        better = mask & np.isfinite(values) & (values < self.best)
        self.best[better] = values[better]
        return better

    def _checked(self, values, mask):
        mask = np.ones(len(self.best), bool) if mask is None else np.asarray(mask, bool)
        return np.asarray(values, dtype=np.float64), mask

    def exhausted(self) -> np.ndarray:
        """Series that have gone ``patience`` checks without an improvement."""
        return self.wait >= self.patience
