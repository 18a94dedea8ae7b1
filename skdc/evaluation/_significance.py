"""How sure is an error cut? A paired bootstrap over held-out conditions (and seeds).

The relative error cut of a method against the reference ``si`` is
``1 - error(method) / error(si)``, errors averaged over held-out conditions (and
seeds). Its 95% interval comes from a paired percentile bootstrap: held-out
conditions are resampled with replacement, and the *same* resample is applied to the
method and to ``si`` (and to every method and ``k``), so what is shared by both, such
as a hard speaker, cancels. With results of several seeds (independent runs of the
protocol, see :func:`~skdc.evaluation.pool_seeds`), seeds are resampled too,
independently of the conditions (a two-way bootstrap of the seeds x conditions table,
Owen 2007), which also carries the spread that comes from training other networks.
A cell of that table is a condition's accuracy averaged over the repeats (draws of
adaptation units) of one seed: the repeats of a condition share its networks and
its speaker, so they are averaged, not resampled apart.

A resample in which ``si`` makes no error has no error cut and is left out; with
none left there is no interval.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PairedBootstrap", "error_reduction"]

CONFIDENCE = 0.95


def error_reduction(accuracy: np.ndarray, reference: np.ndarray) -> float:
    """``1 - error / error of the reference``, errors averaged over all cells (NaN when
    the reference makes no error)."""
    reference_error = np.mean(1 - np.asarray(reference, dtype=np.float64))
    if reference_error == 0:
        return float("nan")
    return float(1 - np.mean(1 - np.asarray(accuracy, dtype=np.float64)) / reference_error)


class PairedBootstrap:
    """Resamples of seeds and held-out conditions, drawn once and shared by every method.

    Parameters
    ----------
    n_conditions : int
        Held-out conditions (columns of the tables passed to :meth:`interval`).
    n_seeds : int, default=1
        Seeds (rows of those tables); with one seed only conditions are resampled.
    n_resamples : int, default=1000
        Bootstrap resamples.
    random_state : int, default=0
        Seeds the resampling.
    """

    def __init__(self, n_conditions: int, n_seeds: int = 1, n_resamples: int = 1000,
                 random_state: int = 0):
        # a stream of its own: draws of folds, units and networks use other seed keys
        rng = np.random.default_rng(np.random.SeedSequence(int(random_state), spawn_key=(2,)))
        self.condition_weights = _counts(rng, n_resamples, n_conditions)
        self.seed_weights = _counts(rng, n_resamples, n_seeds)

    def interval(self, accuracy, reference,
                 confidence: float = CONFIDENCE) -> list[float] | None:
        """Percentile interval of the error cut of ``accuracy`` against ``reference``.

        Both are tables of shape ``(n_seeds, n_conditions)`` (or ``(n_conditions,)``
        for one seed), cells paired. Returns ``[low, high]``, or None when ``si`` makes
        no error in any resample.
        """
        cuts = self.resampled_reductions(accuracy, reference)
        cuts = cuts[np.isfinite(cuts)]
        if len(cuts) == 0:
            return None
        tail = 100 * (1 - confidence) / 2
        low, high = np.percentile(cuts, [tail, 100 - tail])
        return [float(low), float(high)]

    def resampled_reductions(self, accuracy, reference) -> np.ndarray:
        """The error cut in every resample (NaN where the reference makes no error)."""
        method_error = self._resampled_error(accuracy)
        reference_error = self._resampled_error(reference)
        out = np.full(len(method_error), np.nan)
        np.divide(method_error, reference_error, out=out, where=reference_error > 0)
        return 1 - out

    def _resampled_error(self, accuracy) -> np.ndarray:
        """Total error of every resample (weights: how often each cell is drawn)."""
        error = 1 - np.atleast_2d(np.asarray(accuracy, dtype=np.float64))
        if error.shape != (self.seed_weights.shape[1], self.condition_weights.shape[1]):
            raise ValueError(f"expected a table of {self.seed_weights.shape[1]} seeds x "
                             f"{self.condition_weights.shape[1]} conditions, got {error.shape}")
        return np.einsum("bs,sc,bc->b", self.seed_weights, error, self.condition_weights)


def _counts(rng: np.random.Generator, n_resamples: int, n: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each resample (with replacement)."""
    draws = rng.integers(0, n, size=(n_resamples, n))
    counts = np.zeros((n_resamples, n))
    np.add.at(counts, (np.arange(n_resamples)[:, None], draws), 1.0)
    return counts
