"""The evaluation protocol: condition-disjoint folds, k-shot adaptation, paired draws.

Protocol
--------
* **Folds.** The conditions (``groups``) are split into ``folds`` condition-disjoint
  folds (:class:`~sklearn.model_selection.GroupKFold`, shuffled with the seed). Features
  are standardised with the training conditions' mean and spread.
* **Networks.** Per fold, a :class:`~skdc.CodeNetwork` is trained on the training
  conditions (one code per condition), and its twin *without* codes (same
  architecture, initial weights, penalty, optimizer, epochs: ``CodeNetwork``'s own
  training loop) for ``si`` and the methods built on it (``shift``, ``lhuc``,
  ``finetune_last``, ``finetune_all``); ``lobanov`` trains the same twin on
  Lobanov-normalised training conditions and ``shift`` (by default) on conditions with
  their own shift removed.
* **Episodes.** For every held-out condition and repeat, one seeded permutation of its
  units (rows, or e.g. utterances with ``units=``); with ``k`` shots the first ``k``
  units are labelled adaptation data and the condition's *remaining* units are scored.
  The draws depend only on the seed, the condition and the repeat, so every method sees
  the same rows (paired comparison), and the adaptation sets are nested in ``k``.
  ``k = 0`` has one draw (every unit is scored).
* **Scores.** Per condition, accuracy averaged over repeats; reported: the mean over
  conditions, a 95% interval ``1.96 * sd / sqrt(n_conditions)``, and the relative
  error reduction versus ``si``: ``1 - error(method) / error(si)``.

Choosing the settings (no test fold is ever looked at)
------------------------------------------------------
Fixed, principled defaults:

* Two hidden ReLU layers of 64 units; code size ``clip(2 * n_features, 4, 16)``: a code
  of ``n_features`` numbers can express any additive shift of the (standardised) input
  and ``2 * n_features`` a per-feature shift and scale, the classic form of speaker
  variation; more is capped for wide inputs. Codes feed every hidden layer (Xue et
  al., 2014).
* Training: Adam, learning rate 1e-3, minibatches of 200, up to 200 epochs with
  ``CodeNetwork``'s stopping rule, L2 1e-5 on kernels.
* Adaptation: L-BFGS, ``adapt_max_iter`` (100) iterations for every method. Every prior
  is MAP-weighted like ``CodeAdapter``'s and counts as *one unit* of evidence: with
  frames grouped into utterances, a prior strength is multiplied by the mean number of
  frames per utterance, because frames of one utterance are not independent evidence.

With ``tune=True`` (the default) the rest is chosen per fold by **nested,
condition-disjoint validation** inside the fold's training conditions: a quarter of
them is held out, networks are trained on the others (once per candidate network),
one episode per held-out condition is drawn for every ``k >= 1`` of ``shots`` (also
``k = 0`` for the transductive ``codes_unsup``), and the candidate with the best mean
accuracy wins (ties go to the earlier candidate, the stronger prior). Candidates:

* ``codes`` and ``codes_unsup``: how the training codes are regularised (code
  dropout 0 or 0.3: a share of training rows sees the mean code, so the prior mean is
  a good speaker-independent model; code L2 1e-3 or 0.1) x prior strength ``alpha``
  (``codes``: 4, 2, 1, 0.5; ``codes_unsup``: 0.3, 0.1, 0.03, 0.01).
* ``lhuc``: prior standard deviation of the amplitude logits (0.03, 0.1, 0.3, 1).
* ``finetune_last`` / ``finetune_all``: prior standard deviation of the weight
  changes (0.003, 0.01, 0.03, 0.1, 0.3).
* ``shift``: the network it feeds: the SI twin, or the twin trained on shift-normalised
  conditions ("sat"). Its shrinkage is empirical Bayes: the ratio of within- to
  between-condition variance of the training conditions' shifts.
* ``si`` and ``lobanov`` have nothing to tune.

With ``tune=False`` each method uses its ``default``: the choice nested validation made
most often on Hillenbrand (1995), 10 folds (``codes``: code dropout and code L2,
``alpha`` 4; ``codes_unsup``: no extra regularisation, ``alpha`` 0.01; ``lhuc`` 0.03;
fine-tuning 0.003; ``shift``: "sat"). Runs on other data with ``tune=False`` (the
demo on Peterson & Barney, the FSDD example) thus use settings chosen on another data
set, never on their own test folds.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.model_selection import GroupKFold, GroupShuffleSplit
from sklearn.preprocessing import StandardScaler

from ._baselines import METHODS, get_method
from ._fold import Episode, FoldContext, Settings

__all__ = ["evaluate", "DEFAULT_SHOTS", "check_inputs"]

DEFAULT_SHOTS = (0, 1, 2, 5, 10)
_Z95 = 1.96
_INNER_FRACTION = 0.25


def check_inputs(X, y, groups, shots, folds, repeats, methods, units=None):
    """Validate the inputs of :func:`evaluate`; ``ValueError`` with one clear message."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty 2-D array, got shape {X.shape}.")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError("X must be numeric.")
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or infinity.")
    y, groups = np.asarray(y), np.asarray(groups)
    if y.shape != (len(X),) or groups.shape != (len(X),):
        raise ValueError(
            f"y and groups must be 1-D with one entry per row of X ({len(X)}); got shapes "
            f"{y.shape} and {groups.shape}."
        )
    shots = sorted({int(k) for k in shots})
    if not shots or shots[0] < 0:
        raise ValueError(f"shots must be non-negative integers, got {shots}.")
    methods = list(dict.fromkeys(methods if methods is not None else METHODS))
    if not methods:
        raise ValueError("methods is empty.")
    for name in methods:
        get_method(name)
    keys = np.unique(groups)
    if int(folds) < 2 or int(folds) > len(keys):
        raise ValueError(
            f"folds must be between 2 and the number of conditions ({len(keys)}), got {folds}."
        )
    if int(repeats) < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    if len(np.unique(y)) < 2:
        raise ValueError("y must hold at least 2 classes.")
    layout = _Layout(np.unique(groups, return_inverse=True)[1], units, y)
    counts = np.bincount(layout.unit_condition)
    if counts.min() < shots[-1] + 1:
        small = keys[counts.argmin()]
        what = "rows" if units is None else "units"
        raise ValueError(
            f"condition {small!r} has {counts.min()} {what}, but {shots[-1]} shots need at least "
            f"{shots[-1] + 1} {what} per condition (k to adapt, at least one to score); use "
            "smaller shots or drop small conditions."
        )
    return X, y, groups, shots, methods


class _Layout:
    """Rows grouped into units (one row each unless ``units`` is given) within conditions.

    A unit (e.g. an utterance made of frames) is adapted on or scored as a whole: its
    decision sums the log-probabilities of its rows.
    """

    def __init__(self, g_idx, units=None, y=None):
        n = len(g_idx)
        if units is None:
            self.unit_of_row = np.arange(n)
        else:
            units = np.asarray(units)
            if units.shape != (n,):
                raise ValueError(f"units must be 1-D with one entry per row ({n}).")
            self.unit_of_row = np.unique(units, return_inverse=True)[1].ravel()
        n_units = int(self.unit_of_row.max()) + 1 if n else 0
        order = np.argsort(self.unit_of_row, kind="stable")
        bounds = np.cumsum(np.bincount(self.unit_of_row, minlength=n_units))[:-1]
        self.rows_of_unit = np.split(order, bounds)
        first = np.array([rows[0] for rows in self.rows_of_unit], dtype=int)
        self.unit_condition = np.asarray(g_idx)[first]
        if units is not None:
            for rows in self.rows_of_unit:
                if len(np.unique(np.asarray(g_idx)[rows])) > 1:
                    raise ValueError("each unit must lie within one condition (group).")
                if y is not None and len(np.unique(np.asarray(y)[rows])) > 1:
                    raise ValueError("each unit must have one label for all its rows.")
        self.unit_first_row = first

    def rows(self, units) -> np.ndarray:
        if len(units) == 0:
            return np.empty(0, dtype=int)
        return np.concatenate([self.rows_of_unit[u] for u in units])


def _default_code_size(n_features: int) -> int:
    return int(np.clip(2 * n_features, 4, 16))


def evaluate(
    X,
    y,
    groups,
    *,
    shots: Sequence[int] = DEFAULT_SHOTS,
    folds: int = 10,
    repeats: int = 5,
    methods: Iterable[str] | None = None,
    units=None,
    hidden_layer_sizes: Sequence[int] = (64, 64),
    code_size: int | str = "auto",
    max_epochs: int = 200,
    batch_size: int = 200,
    learning_rate_init: float = 1e-3,
    adapt_max_iter: int = 100,
    tune: bool = True,
    random_state: int = 0,
    progress: bool = False,
    n_jobs: int | None = None,
) -> dict:
    """Evaluate k-shot adaptation methods on held-out conditions.

    See :mod:`skdc.evaluation` for the protocol, the methods and how every setting is
    chosen.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric features.
    y : array-like of shape (n_samples,)
        Class labels.
    groups : array-like of shape (n_samples,)
        Condition (speaker, device, ...) of each row.
    shots : sequence of int, default=(0, 1, 2, 5, 10)
        Numbers ``k`` of labelled adaptation units (rows) per held-out condition.
        Every condition needs at least ``max(shots) + 1`` of them.
    folds : int, default=10
        Number of condition-disjoint folds.
    repeats : int, default=5
        Draws of adaptation units per condition and ``k >= 1``.
    methods : iterable of str, default=None
        Methods to compare (default: all): ``codes``, ``codes_unsup``, ``si``,
        ``shift``, ``lobanov``, ``lhuc``, ``finetune_last``, ``finetune_all``.
    units : array-like of shape (n_samples,), default=None
        Unit of each row (e.g. the utterance of a frame): units are drawn, adapted on
        and scored whole, a unit's decision summing its rows' log-probabilities.
        Default: every row is a unit.
    hidden_layer_sizes : sequence of int, default=(64, 64)
        Hidden layers of every network.
    code_size : int or "auto", default="auto"
        Code length; ``"auto"`` is ``clip(2 * n_features, 4, 16)``.
    max_epochs : int, default=200
        Maximum training epochs of every network.
    batch_size : int, default=200
        Training minibatch size of every network.
    learning_rate_init : float, default=1e-3
        Adam learning rate of every network.
    adapt_max_iter : int, default=100
        L-BFGS iterations of every adaptive method.
    tune : bool, default=True
        Choose each adaptive method's hyperparameters by nested validation on the
        training conditions of each fold; otherwise use the fixed defaults.
    random_state : int, default=0
        Seeds folds, draws and networks.
    progress : bool, default=False
        Show a progress bar on stderr (after a few seconds).
    n_jobs : int, default=None
        Folds run in parallel in this many joblib workers (``-1``: all cores); ``None``
        or 1 runs them in this process. Each fold's seed depends only on
        ``random_state`` and the fold, so results do not depend on ``n_jobs`` (beyond
        float rounding from TensorFlow's thread count).

    Returns
    -------
    results : dict
        JSON-ready: ``n_conditions``, ``n_rows``, ``n_units``, ``n_classes``,
        ``folds``, ``shots``, ``repeats``, ``methods`` (per method: ``k`` -> ``{"0":
        {"accuracy", "ci95", "error_reduction_vs_si"}, ...}``, ``transductive``,
        ``description``, ``chosen`` (hyperparameters per fold)), ``settings`` and
        ``seconds``.
    """
    start = time.perf_counter()
    X, y, groups, shots, methods = check_inputs(X, y, groups, shots, folds, repeats, methods,
                                                units)
    code_size = _default_code_size(X.shape[1]) if code_size == "auto" else int(code_size)
    settings = Settings(
        hidden_layer_sizes=tuple(int(h) for h in hidden_layer_sizes),
        code_size=code_size,
        max_epochs=int(max_epochs),
        batch_size=int(batch_size),
        learning_rate_init=float(learning_rate_init),
        adapt_max_iter=int(adapt_max_iter),
        tune=bool(tune),
    )
    classes, y_idx = np.unique(y, return_inverse=True)
    keys, g_idx = np.unique(groups, return_inverse=True)
    layout = _Layout(g_idx, units)
    settings.rows_per_unit = len(X) / len(layout.rows_of_unit)
    splitter = GroupKFold(n_splits=int(folds), shuffle=True, random_state=random_state)
    splits = list(splitter.split(X, y_idx, g_idx))
    per_fold = len(methods) * len(shots)
    bar = _Progress(len(splits) * per_fold, enabled=progress)
    job = dict(X=X, y=y_idx, g=g_idx, layout=layout, settings=settings, methods=methods,
               shots=shots, repeats=int(repeats), random_state=random_state, folds=len(splits))
    # never more workers than folds: each worker process holds its own TensorFlow
    n_jobs = min(effective_n_jobs(n_jobs), len(splits))
    if n_jobs == 1:
        outputs = (_run_fold(fold, split, report=bar, **job) for fold, split in enumerate(splits))
    else:  # folds are independent: one per worker; the bar advances per finished fold
        outputs = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_run_fold)(fold, split, **job) for fold, split in enumerate(splits)
        )
    per_condition: dict = {m: {k: {} for k in shots} for m in methods}
    chosen: dict = {m: [] for m in methods}
    with warnings.catch_warnings():
        # loky restarts a worker whose memory grew (TensorFlow's caches) and says so; no
        # fold is lost (a lost one raises TerminatedWorkerError)
        warnings.filterwarnings("ignore", message="A worker stopped", category=UserWarning)
        for fold_scores, fold_chosen in outputs:
            for name in methods:
                chosen[name].append(fold_chosen[name])
                for k in shots:
                    per_condition[name][k].update(fold_scores[name][k])
            if n_jobs > 1:
                bar.update(f"{len(chosen[methods[0]])}/{len(splits)} folds")
                bar.advance(per_fold)
    bar.close()
    return {
        "n_conditions": int(len(keys)),
        "n_rows": int(len(X)),
        "n_units": int(len(layout.rows_of_unit)),
        "n_classes": int(len(classes)),
        "folds": int(folds),
        "shots": shots,
        "repeats": int(repeats),
        "methods": _summarise(per_condition, methods, shots, chosen),
        "settings": {
            "hidden_layer_sizes": list(settings.hidden_layer_sizes),
            "code_size": settings.code_size,
            "code_layers": settings.code_layers,
            "max_epochs": settings.max_epochs,
            "batch_size": settings.batch_size,
            "learning_rate_init": settings.learning_rate_init,
            "adapt_max_iter": settings.adapt_max_iter,
            "tune": settings.tune,
            "rows_per_unit": round(settings.rows_per_unit, 2),
            "random_state": int(random_state),
        },
        "seconds": round(time.perf_counter() - start, 1),
    }


def _run_fold(fold, split, *, X, y, g, layout, settings, methods, shots, repeats,
              random_state, folds, report=None):
    """Scores ``{method: {k: {condition: [accuracy per repeat]}}}`` and choices of one fold."""
    train, test = split
    Xs = StandardScaler().fit(X[train]).transform(X)
    seed = int(np.random.SeedSequence([random_state, fold]).generate_state(1)[0] >> 1)
    ctx = FoldContext(Xs[train], y[train], g[train], settings, seed)
    held = _Held(Xs, y, layout, np.unique(g[test]), repeats, random_state)
    inner = None
    if settings.tune:
        inner = _InnerValidation(ctx, layout.unit_of_row[train], shots, seed)
    scores: dict = {m: {k: {} for k in shots} for m in methods}
    chosen = {}
    for name in methods:
        method = get_method(name)
        param = inner.choose(method) if inner is not None and method.grid else method.default
        chosen[name] = param
        for k in shots:
            if report is not None:
                report.update(f"fold {fold + 1}/{folds} {name} k={k}")
            for r in range(1 if k == 0 else repeats):
                for c, acc in held.score(ctx, method, param, r, k).items():
                    scores[name][k].setdefault(c, []).append(acc)
            if report is not None:
                report.advance()
    return scores, chosen


class _Held:
    """The held-out conditions of a fold, their seeded draws, and scoring of episodes.

    For every held-out condition and repeat, one permutation of its units, seeded by
    (random_state, condition, repeat) only: every method sees the same draws, and the
    adaptation sets are nested in ``k``.
    """

    def __init__(self, X, y, layout: _Layout, held, repeats, seed):
        self.X, self.y, self.layout, self.held = X, y, layout, held
        self.draws = {
            c: [np.random.default_rng([seed, int(c), r]).permutation(
                np.flatnonzero(layout.unit_condition == c)) for r in range(repeats)]
            for c in held
        }

    def episode(self, r, k) -> tuple[Episode, np.ndarray, list]:
        layout = self.layout
        adapt = [layout.rows(self.draws[c][r][:k]) for c in self.held]
        score_units = [self.draws[c][r][k:] for c in self.held]
        score = [layout.rows(u) for u in score_units]
        local = np.arange(len(self.held))
        adapt_rows = np.concatenate(adapt)
        ep = Episode(
            X_adapt=self.X[adapt_rows],
            y_adapt=self.y[adapt_rows],
            g_adapt=np.repeat(local, [len(a) for a in adapt]),
            X_score=self.X[np.concatenate(score)],
            g_score=np.repeat(local, [len(s) for s in score]),
            n_groups=len(self.held),
        )
        return ep, np.concatenate(score), score_units

    def score(self, ctx: FoldContext, method, param, r, k) -> dict:
        """Accuracy over the scored units of each held-out condition."""
        ep, rows, score_units = self.episode(r, k)
        log_p = method.log_proba(ctx, ep, param)
        units = np.concatenate(score_units)
        position = np.searchsorted(np.sort(units), self.layout.unit_of_row[rows])
        totals = np.zeros((len(units), log_p.shape[1]))
        np.add.at(totals, position, log_p)
        truth = self.y[self.layout.unit_first_row[np.sort(units)]]
        hits = ctx.classes[totals.argmax(axis=1)] == truth
        condition = self.layout.unit_condition[np.sort(units)]
        return {int(c): float(hits[condition == c].mean()) for c in self.held}


class _InnerValidation:
    """Nested, condition-disjoint validation inside a fold's training conditions.

    A quarter of the training conditions is held out; the networks are trained on the
    rest (lazily, once per candidate network); one episode per held-out condition and
    ``k`` scores each candidate.
    """

    def __init__(self, ctx: FoldContext, units, shots, seed):
        self.outer, self.units, self.seed = ctx, units, seed
        self.shots = [k for k in shots if k >= 1] or list(shots)
        self.all_shots = list(shots)
        self._ctx = None

    def _setup(self):
        ctx = self.outer
        split = GroupShuffleSplit(n_splits=1, test_size=_INNER_FRACTION, random_state=self.seed)
        train, val = next(split.split(ctx.X, ctx.y, ctx.groups))
        self._ctx = FoldContext(ctx.X[train], ctx.y[train], ctx.groups[train], ctx.settings,
                                ctx.seed + 1)
        layout = _Layout(ctx.groups, self.units)
        self.held = _Held(ctx.X, ctx.y, layout, np.unique(ctx.groups[val]), 1, self.seed)

    def choose(self, method):
        if self._ctx is None:
            self._setup()
        shots = self.all_shots if method.transductive else self.shots
        best, best_score = method.default, -np.inf
        for param in method.grid:
            score = np.mean([np.mean(list(self.held.score(self._ctx, method, param, 0, k)
                                          .values())) for k in shots])
            if score > best_score + 1e-9:
                best, best_score = param, float(score)
        return best


def _summarise(per_condition, methods, shots, chosen) -> dict:
    out = {}
    si = per_condition.get("si")
    for name in methods:
        method = get_method(name)
        entry = {}
        for k in shots:
            acc = np.array([np.mean(v) for v in per_condition[name][k].values()])
            item = {
                "accuracy": round(float(acc.mean()), 4),
                "ci95": round(float(_Z95 * acc.std(ddof=1) / np.sqrt(len(acc)))
                              if len(acc) > 1 else 0.0, 4),
            }
            if si is not None:
                si_acc = np.mean([np.mean(v) for v in si[k].values()])
                if si_acc < 1:
                    item["error_reduction_vs_si"] = round(
                        float(1 - (1 - acc.mean()) / (1 - si_acc)), 4
                    )
            entry[str(k)] = item
        out[name] = {
            "k": entry,
            "transductive": method.transductive,
            "description": method.description,
            "chosen": chosen[name] if method.grid else None,
        }
    return out


class _Progress:
    """A progress bar on stderr that appears only once a run has taken a few seconds.

    On a terminal it redraws one line; otherwise it prints a line at most every
    30 seconds.
    """

    def __init__(self, total: int, enabled: bool, delay: float = 3.0):
        self.total, self.enabled, self.delay = max(total, 1), enabled, delay
        self.done, self.start, self.text = 0, time.perf_counter(), ""
        self.tty = enabled and sys.stderr.isatty()
        self.last_line, self.shown = 0.0, False

    def update(self, text: str):
        self.text = text
        self._draw()

    def advance(self, n: int = 1):
        self.done += n
        self._draw()

    def _draw(self):
        elapsed = time.perf_counter() - self.start
        if not self.enabled or elapsed < self.delay:
            return
        frac = self.done / self.total
        left = f", ~{elapsed / frac - elapsed:.0f}s left" if frac > 0 else ""
        line = (f"[{'=' * int(30 * frac):<30}] {self.done}/{self.total} {self.text}  "
                f"{elapsed:.0f}s elapsed{left}")
        if self.tty:
            sys.stderr.write("\r" + line[:120].ljust(120))
            sys.stderr.flush()
            self.shown = True
        elif elapsed - self.last_line >= 30:
            self.last_line = elapsed
            print(line, file=sys.stderr, flush=True)

    def close(self):
        if self.tty and self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
