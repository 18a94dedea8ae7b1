"""Conditions that are augmented copies of others (``evaluate(sources=...)``).

With ``augment=`` the audio loaders make every speaker several conditions: the
original recordings and a speed- or VTLP-warped copy per factor
(``"<speaker>|speed=0.9"``), each row's original speaker in ``source_groups``. A copy
must stay on the side of its source when folds are split (else the held-out speaker's
own voice, warped, trains the networks), and only originals are held out and scored:
copies add training conditions, not test speakers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Sources"]


class Sources:
    """The source of every row, and which conditions are originals.

    Parameters
    ----------
    groups : ndarray
        Condition of each row.
    g_idx : ndarray of int
        Each row's index into the distinct conditions (``np.unique(groups)``).
    sources : array-like, default=None
        Each row's source condition; a row belongs to an original when its condition
        equals its source, to a copy otherwise. None: every condition is an original.

    Attributes
    ----------
    of_row : ndarray of int
        Each row's source index: folds and ``max_train_conditions`` draw sources.
    original : ndarray of bool
        Per condition, whether it is an original (held out and scored).
    """

    def __init__(self, groups: np.ndarray, g_idx: np.ndarray, sources=None):
        n_conditions = int(g_idx.max()) + 1 if len(g_idx) else 0
        if sources is None:
            self.of_row, self.original = g_idx, np.ones(n_conditions, dtype=bool)
            return
        sources = np.asarray(sources)
        if sources.shape != groups.shape:
            raise ValueError(f"sources must have one entry per row of X ({len(groups)}); got "
                             f"shape {sources.shape}.")
        names, self.of_row = np.unique(sources, return_inverse=True)
        source_of = np.zeros(n_conditions, dtype=int)
        source_of[g_idx] = self.of_row
        mixed = np.flatnonzero(source_of[g_idx] != self.of_row)
        if len(mixed):
            raise ValueError(f"condition {_plain(groups[mixed[0]])!r} has rows of several "
                             "sources; a condition is one source's original or one of its "
                             "copies.")
        self.original = np.zeros(n_conditions, dtype=bool)
        self.original[g_idx[groups == sources]] = True
        without = np.setdiff1d(np.arange(len(names)), source_of[self.original])
        if len(without):
            raise ValueError(f"source {_plain(names[without[0]])!r} has no original condition "
                             "(rows whose groups equal their sources): only copies of it are "
                             "given.")

    def of_rows(self, rows: np.ndarray) -> Sources:
        """The same conditions, for the rows ``rows`` only (``of_row`` subset)."""
        out = object.__new__(Sources)
        out.of_row, out.original = self.of_row[rows], self.original
        return out

    @property
    def n_copies(self) -> int:
        """Conditions that are copies (training only)."""
        return int((~self.original).sum())

    def originals(self, rows: np.ndarray, g_idx: np.ndarray) -> np.ndarray:
        """Those of ``rows`` that belong to original conditions."""
        return rows[self.original[g_idx[rows]]]


def _plain(value):
    """A numpy scalar as the Python value it holds (for messages)."""
    return value.item() if isinstance(value, np.generic) else value
