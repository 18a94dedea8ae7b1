"""Choosing a method's hyperparameter: candidates, and nested condition-disjoint validation.

Per method, the candidates are its ``grid`` (with tuning), its ``default`` (without),
or what the caller gives in ``evaluate(method_params=...)``: a list is candidates to
tune among, any other value is one fixed value; for the coded methods, each with every
code start of ``evaluate(code_start=...)``. With one candidate there is nothing to
choose. With more, :class:`InnerValidation` scores each on conditions held out *inside*
a fold's training conditions (a quarter of them, or every one of them once by inner
cross-validation); no test condition is ever looked at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit

from ._baselines import Method, get_method
from ._episodes import HeldOut, Layout
from ._fold import FoldContext
from ._normalisation import Normalisation
from ._sources import Sources

__all__ = ["INNER_FRACTION", "InnerValidation", "candidates_of", "choices", "choose",
           "inner_folds_for"]

INNER_FRACTION = 0.25  # share of a fold's training conditions held out for validation
#: ``inner_folds="auto"`` cross-validates when one split would validate on fewer
#: training conditions than this: 6 inner speakers (Arabic digits) flipped the start
#: choice between folds and inner cross-validation mended it; 31 (Hillenbrand) and 39
#: (Speech Commands) kept it steady, and on Hillenbrand inner cross-validation changed
#: nothing at 4.4 times the run. Any value from 7 to 31 draws the same line there.
MIN_VALIDATION = 20
AUTO_INNER_FOLDS = 4  # inner networks then train on three quarters, as with one split


def inner_folds_for(n_sources: int) -> int:
    """``inner_folds="auto"``: how many inner folds a fold with ``n_sources`` training
    sources gets — 1 (a quarter held out once) when that quarter holds at least
    ``MIN_VALIDATION`` of them, else ``AUTO_INNER_FOLDS`` (every one validates once),
    at most one per source."""
    if INNER_FRACTION * n_sources >= MIN_VALIDATION:
        return 1
    return max(1, min(AUTO_INNER_FOLDS, int(n_sources)))


def candidates_of(methods: Sequence[str], method_params: Mapping | None,
                  tune: bool) -> dict[str, tuple]:
    """The candidates of every method in ``methods``; ``ValueError`` for a bad entry.

    Each value of ``method_params`` is a list of candidates (tuned among, needs
    ``tune=True``) or a single value (fixed). Methods without a hyperparameter have
    no candidates (``()``).
    """
    if method_params is not None and not isinstance(method_params, Mapping):
        raise ValueError("method_params must be a dict {method name: value or list of "
                         f"candidates}}, got {type(method_params).__name__}.")
    given = dict(method_params or {})
    for name in given:
        get_method(name)  # unknown names: ValueError naming the choices
        if name not in methods:
            raise ValueError(f"method_params names {name!r}, which is not among the methods "
                             f"evaluated ({', '.join(methods)}).")
    out = {}
    for name in methods:
        method = get_method(name)
        if name in given:
            out[name] = _given(method, given[name], tune)
        elif not method.grid:
            out[name] = ()
        else:
            out[name] = method.grid if tune else (method.default,)
    return out


def _given(method: Method, value, tune: bool) -> tuple:
    where = f"method_params[{method.name!r}]"
    if not method.grid:
        raise ValueError(f"{where}: method {method.name!r} has no hyperparameter to set.")
    if not isinstance(value, list):
        return (_checked(method, value, f"{where}: value"),)
    if not value:
        raise ValueError(f"{where}: the list of candidates is empty.")
    if len(value) > 1 and not tune:
        raise ValueError(f"{where}: a list of {len(value)} candidates needs tune=True; give "
                         "one value (not a list) to fix it.")
    candidates = tuple(_checked(method, v, f"{where}: candidate") for v in value)
    return tuple(dict.fromkeys(candidates))


def _checked(method: Method, value, what: str):
    try:
        return method.check_param(value)
    except ValueError as exc:
        hint = ("; a list gives candidates to tune among, one fixed value is a tuple"
                if isinstance(method.default, tuple) else "")
        raise ValueError(f"{what} {value!r} is not valid: {exc}{hint}.") from None


def choices(method: Method, candidates: tuple,
            starts: Sequence[str | None] = (None,)) -> list[tuple]:
    """The ``(code start, param)`` pairs nested validation scores for ``method`` (see
    :func:`choose`); empty when there is one pair, nothing to choose."""
    starts = tuple(starts) if method.coded else (None,)
    pairs = [(start, param) for start in starts for param in candidates or (None,)]
    return pairs if len(pairs) > 1 else []


def choose(method: Method, candidates: tuple, inner: InnerValidation | None,
           starts: Sequence[str | None] = (None,), k: int | None = None) -> tuple:
    """The code start and hyperparameter a fold uses at ``k`` shots: ``(start, param)``.

    ``starts`` are the code starts (``CODE_STARTS``) a coded method may use (``None``:
    the fold's own); other methods ignore them. With one start and one candidate (or
    none: ``param`` is None) there is nothing to choose. With more, nested validation
    picks each start's hyperparameter on average over the ``k`` scored (one ``k`` alone
    has too few draws to tell priors apart), then the start best at ``k`` (on average
    for a ``k`` not scored, e.g. ``k = 0`` without labelled rows, or None): how much a
    shift estimated from ``k`` rows helps depends on ``k``.
    """
    starts = tuple(starts) if method.coded else (None,)
    params = candidates or (None,)
    if not choices(method, candidates, starts):
        return starts[0], params[0]
    finalists = [inner.best(method, [(start, param) for param in params]) for start in starts]
    return finalists[0] if len(finalists) == 1 else inner.best(method, finalists, k)


class InnerValidation:
    """Nested, condition-disjoint validation inside a fold's training conditions.

    ``INNER_FRACTION`` of the training conditions is held out (``folds=1``), or each of
    ``folds`` condition-disjoint parts of them in turn (inner cross-validation: every
    training condition validates once); the networks are trained on the rest (lazily,
    once per candidate network and inner fold); ``repeats`` episodes per held-out
    condition and ``k`` of ``shots`` score each candidate: ``k >= 1`` (``k = 0`` has no labelled
    row to tell priors apart), plus ``k = 0`` for transductive methods (see
    :func:`choose` for how the scores choose).

    Parameters
    ----------
    ctx : FoldContext
        The fold's training conditions.
    units : ndarray
        Unit of each of the fold's training rows.
    shots : sequence of int
        The ``k`` of the evaluation.
    seed : int
        Seeds the inner split, the inner networks and the draws.
    X_held : ndarray, default=None
        The fold's training rows as held-out rows are drawn from, when they differ from
        ``ctx.X`` (``evaluate(normalize="speaker")``: not yet normalised).
    normalisation : Normalisation, default=None
        Its ``episode_transform`` (statistics of the inner training rows) applies to the
        inner episodes.
    sources : Sources, default=None
        Sources of the fold's training rows (``Sources.of_rows``): the inner split keeps
        sources whole and holds out originals only. None: every condition is its own
        source.
    repeats : int, default=1
        Draws of adaptation units per held-out condition and ``k >= 1`` (the outer
        protocol's ``repeats``): with a few held-out conditions one draw each is too
        noisy to tell candidates apart at one ``k``.
    folds : int, default=1
        1: one split, ``INNER_FRACTION`` held out. More: inner cross-validation over
        that many condition-disjoint parts (shuffled with ``seed``); a candidate's score
        is its mean accuracy over every training condition, each held out once, at
        ``folds`` times the inner networks' training.
    parts : sequence of int, default=None
        The inner folds this object trains and scores (None: all ``folds``): each is
        independent of the others, so they can run in separate processes, their
        :meth:`accuracies` joined with ``known``.
    known : dict, default=None
        Accuracies computed elsewhere, ``{InnerValidation.key(...): {k: [accuracy of
        each held-out condition of every inner fold, in order]}}``: those candidates
        are not trained again.
    """

    def __init__(self, ctx: FoldContext, units: np.ndarray, shots: Sequence[int], seed: int,
                 X_held: np.ndarray | None = None, normalisation: Normalisation | None = None,
                 sources: Sources | None = None, repeats: int = 1, folds: int = 1,
                 parts: Sequence[int] | None = None, known: Mapping | None = None):
        self.outer, self.units, self.seed, self.repeats = ctx, units, seed, int(repeats)
        self.sources, self.folds = sources, int(folds)
        self.parts = list(range(self.folds)) if parts is None else [int(p) for p in parts]
        self.X_held = ctx.X if X_held is None else X_held
        self.normalisation = normalisation
        self.shots = [k for k in shots if k >= 1] or list(shots)
        self.all_shots = list(shots)
        self._known = dict(known or {})
        self._inner: list[tuple[FoldContext, HeldOut]] | None = None

    @staticmethod
    def key(method: Method, start, param) -> tuple:
        """What identifies a candidate's accuracies (in :meth:`accuracies`' ``known``)."""
        return (type(method).__name__, method.name, start, repr(param))

    def _splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Inner (train, validation) row indices, sources kept whole."""
        ctx = self.outer
        whole = ctx.groups if self.sources is None else self.sources.of_row
        if self.folds == 1:
            split = GroupShuffleSplit(n_splits=1, test_size=INNER_FRACTION,
                                      random_state=self.seed)
        else:
            split = GroupKFold(n_splits=self.folds, shuffle=True, random_state=self.seed)
        return list(split.split(ctx.X, ctx.y, whole))

    def inner_folds(self) -> list[tuple[FoldContext, HeldOut]]:
        """The inner folds of ``parts``: each its training context (networks trained
        lazily) and its held-out conditions."""
        if self._inner is None:
            ctx = self.outer
            layout = Layout(ctx.groups, self.units)
            splits = self._splits()
            self._inner = []
            for i in self.parts:
                train, val = splits[i]
                if self.sources is not None:
                    val = self.sources.originals(val, ctx.groups)
                inner = FoldContext(ctx.X[train], ctx.y[train], ctx.groups[train],
                                    ctx.settings, ctx.seed + 1 + i, units=self.units[train])
                transform = (None if self.normalisation is None
                             else self.normalisation.episode_transform(
                                 self.X_held[train], ctx.groups[train], self.units[train]))
                held = HeldOut(self.X_held, ctx.y, layout, np.unique(ctx.groups[val]),
                               self.repeats, self.seed, transform)
                self._inner.append((inner, held))
        return self._inner

    def scores(self, method: Method, candidates: Sequence[tuple]) -> dict[int, list[float]]:
        """Validation accuracy (mean over the held-out conditions of every inner fold) of
        every candidate, a pair ``(code start, param)`` (a start of None is the fold's
        own), at each ``k`` scored."""
        out: dict[int, list[float]] = {}
        for start, param in candidates:
            for k, accuracies in self.accuracies(method, start, param).items():
                out.setdefault(k, []).append(float(np.mean(accuracies)))
        return out

    def accuracies(self, method: Method, start, param) -> dict[int, list[float]]:
        """Accuracy of every held-out condition of every inner fold (of ``parts``) at each
        ``k`` scored (mean over its draws); computed once per candidate."""
        key = self.key(method, start, param)
        if key not in self._known:
            shots = self.all_shots if method.transductive else self.shots
            self._known[key] = {k: self._accuracies(method, start, param, k) for k in shots}
        return self._known[key]

    def _accuracies(self, method: Method, start, param, k: int) -> list[float]:
        out = []
        for ctx, held in self.inner_folds():
            inner = ctx if start is None else ctx.with_code_start(start)
            draws = [self._accuracy(held, method, inner, param, r, k)
                     for r in range(1 if k == 0 else self.repeats)]
            out.extend(np.mean([list(d.values()) for d in draws], axis=0).tolist())
        return out

    @staticmethod
    def _accuracy(held: HeldOut, method: Method, ctx: FoldContext, param, r: int,
                  k: int) -> dict:
        """Accuracy of each held-out condition in draw ``r`` with ``k`` shots."""
        ep, units = held.episode(r, k)
        return held.accuracy(method.log_proba(ctx, ep, param), units, ctx.classes)

    def best(self, method: Method, candidates: Sequence[tuple], k: int | None = None) -> tuple:
        """The ``(start, param)`` candidate with the best validation accuracy at ``k``
        (averaged over the ``k`` scored when ``k`` is not one of them); ties go to the
        earlier one."""
        by_k = self.scores(method, candidates)
        scores = by_k[k] if k in by_k else np.mean(list(by_k.values()), axis=0)
        best = 0
        for i, score in enumerate(scores):
            if score > scores[best] + 1e-9:
                best = i
        return candidates[best]
