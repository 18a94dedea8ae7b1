"""The evaluation protocol: condition-disjoint folds, k-shot adaptation, paired draws.

Protocol
--------
* **Folds.** The conditions (``groups``) are split into ``folds`` condition-disjoint
  folds (:class:`~sklearn.model_selection.GroupKFold`, shuffled with the seed). Features
  are standardised with the training conditions' mean and spread.
* **Networks.** Per fold, one :class:`~skdc.CodeNetwork` is trained on the training
  conditions (one code per condition), and its twin *without* codes (same
  architecture, initial weights, penalty, optimizer, epochs: ``CodeNetwork``'s own
  training loop) for ``si`` and the methods built on it (``shift``, ``lhuc``,
  ``finetune_last``, ``finetune_all``); ``lobanov`` trains the same twin on
  Lobanov-normalised training conditions.
* **Episodes.** For every held-out condition and repeat, one seeded permutation of its
  rows; with ``k`` shots the first ``k`` rows are labelled adaptation rows and the
  *remaining* rows are scored. The draws depend only on the seed, the condition and the
  repeat, so every method sees the same rows (paired comparison), and the adaptation
  sets are nested in ``k``. ``k = 0`` has one draw (every row is scored).
* **Scores.** Per condition, accuracy averaged over repeats; reported: the mean over
  conditions and a 95% interval ``1.96 * sd / sqrt(n_conditions)``, and the relative
  error reduction versus ``si``: ``1 - error(method) / error(si)``.

Choosing the settings (no test fold is looked at)
-------------------------------------------------
Fixed, principled defaults:

* Features standardised on the training conditions; two hidden ReLU layers of 64
  units; code size ``clip(2 * n_features, 4, 16)``: a code of ``n_features`` numbers
  can express any additive shift of the (standardised) input and ``2 * n_features`` a
  per-feature shift and scale, the classic form of speaker variation; more is capped
  for wide inputs. Codes feed every hidden layer (Xue et al., 2014).
* Training: Adam, learning rate 1e-3, minibatches of 200, up to 200 epochs with
  ``CodeNetwork``'s stopping rule, L2 1e-5 on kernels and 1e-3 on codes (its defaults).
* Adaptation: L-BFGS, ``adapt_max_iter`` iterations (100) for every method; the Gaussian
  prior of each method is MAP-weighted exactly like ``CodeAdapter``'s.

One hyperparameter per adaptive method is chosen by **nested, condition-disjoint
validation** on the training conditions of each fold (``tune=True``): a quarter of the
training conditions is held out, the networks are trained on the rest, one episode per
held-out condition is drawn for every ``k >= 1`` of ``shots`` (also ``k = 0`` for
``codes_unsup``), and the candidate with the best mean accuracy wins (ties go to the
stronger prior). Candidates: prior strength ``alpha`` of ``codes``/``codes_unsup``
(4, 2, 1, 0.5), prior standard deviation of LHUC logits (0.1, 0.3, 1, 3) and of
fine-tuned weights (0.01, 0.03, 0.1, 0.3). ``shift`` is tuned by empirical Bayes: its
shrinkage is the ratio of within- to between-condition variance of the training
conditions' shifts. ``si`` and ``lobanov`` have nothing to tune.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.model_selection import GroupKFold, GroupShuffleSplit
from sklearn.preprocessing import StandardScaler

from ._baselines import METHODS, get_method
from ._fold import Episode, FoldContext, Settings

__all__ = ["evaluate", "DEFAULT_SHOTS", "check_inputs"]

DEFAULT_SHOTS = (0, 1, 2, 5, 10)
_Z95 = 1.96
_INNER_FRACTION = 0.25


def check_inputs(X, y, groups, shots, folds, repeats, methods):
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
    for name in methods:
        get_method(name)
    if not methods:
        raise ValueError("methods is empty.")
    keys, counts = np.unique(groups, return_counts=True)
    if int(folds) < 2 or int(folds) > len(keys):
        raise ValueError(
            f"folds must be between 2 and the number of conditions ({len(keys)}), got {folds}."
        )
    if int(repeats) < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    if len(np.unique(y)) < 2:
        raise ValueError("y must hold at least 2 classes.")
    if counts.min() < shots[-1] + 1:
        small = keys[counts.argmin()]
        raise ValueError(
            f"condition {small!r} has {counts.min()} rows, but {shots[-1]} shots need at least "
            f"{shots[-1] + 1} rows per condition (k to adapt, at least one to score); use "
            "smaller shots or drop small conditions."
        )
    return X, y, groups, shots, methods


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
    hidden_layer_sizes: Sequence[int] = (64, 64),
    code_size: int | str = "auto",
    max_epochs: int = 200,
    adapt_max_iter: int = 100,
    tune: bool = True,
    random_state: int = 0,
    progress: bool = False,
) -> dict:
    """Evaluate k-shot adaptation methods on held-out conditions.

    See the module docstring of :mod:`skdc.evaluation` for the protocol and how every
    setting is chosen.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric features.
    y : array-like of shape (n_samples,)
        Class labels.
    groups : array-like of shape (n_samples,)
        Condition (speaker, device, ...) of each row.
    shots : sequence of int, default=(0, 1, 2, 5, 10)
        Numbers ``k`` of labelled adaptation rows per held-out condition. Every
        condition needs at least ``max(shots) + 1`` rows.
    folds : int, default=10
        Number of condition-disjoint folds.
    repeats : int, default=5
        Draws of adaptation rows per condition and ``k >= 1``.
    methods : iterable of str, default=None
        Methods to compare (default: all): ``codes``, ``codes_unsup``, ``si``,
        ``shift``, ``lobanov``, ``lhuc``, ``finetune_last``, ``finetune_all``.
    hidden_layer_sizes : sequence of int, default=(64, 64)
        Hidden layers of every network.
    code_size : int or "auto", default="auto"
        Code length; ``"auto"`` is ``clip(2 * n_features, 4, 16)``.
    max_epochs : int, default=200
        Maximum training epochs of every network.
    adapt_max_iter : int, default=100
        L-BFGS iterations of every adaptive method.
    tune : bool, default=True
        Choose each adaptive method's prior strength by nested validation on the
        training conditions of each fold; otherwise use fixed defaults.
    random_state : int, default=0
        Seeds folds, draws and networks.
    progress : bool, default=False
        Show a progress bar on stderr (after a few seconds).

    Returns
    -------
    results : dict
        ``{"n_conditions", "n_rows", "folds", "shots", "repeats", "methods": {name:
        {"k": {"0": {"accuracy", "ci95", "error_reduction_vs_si"}, ...},
        "transductive", "description", "chosen"}}, "settings", "seconds"}``; JSON-ready.
    """
    start = time.perf_counter()
    X, y, groups, shots, methods = check_inputs(X, y, groups, shots, folds, repeats, methods)
    code_size = _default_code_size(X.shape[1]) if code_size == "auto" else int(code_size)
    settings = Settings(
        hidden_layer_sizes=tuple(int(h) for h in hidden_layer_sizes),
        code_size=code_size,
        max_epochs=int(max_epochs),
        adapt_max_iter=int(adapt_max_iter),
        tune=bool(tune),
    )
    classes, y_idx = np.unique(y, return_inverse=True)
    keys, g_idx = np.unique(groups, return_inverse=True)
    splitter = GroupKFold(n_splits=int(folds), shuffle=True, random_state=random_state)
    splits = list(splitter.split(X, y_idx, g_idx))
    bar = _Progress(len(splits) * len(methods) * len(shots), enabled=progress)
    per_condition: dict = {m: {k: {} for k in shots} for m in methods}
    chosen: dict = {m: [] for m in methods}
    for fold, (train, test) in enumerate(splits):
        scaler = StandardScaler().fit(X[train])
        Xs = scaler.transform(X)
        seed = int(np.random.SeedSequence([random_state, fold]).generate_state(1)[0] >> 1)
        ctx = FoldContext(Xs[train], y_idx[train], g_idx[train], settings, seed)
        held = np.unique(g_idx[test])
        draws = _draws(g_idx, held, repeats, random_state)
        inner = _InnerValidation(ctx, shots, random_state + 1 + fold) if tune else None
        for name in methods:
            method = get_method(name)
            param = inner.choose(method) if inner is not None and method.grid else method.default
            chosen[name].append(param)
            for k in shots:
                bar.update(f"fold {fold + 1}/{len(splits)} {name} k={k}")
                for r in range(1 if k == 0 else repeats):
                    ep = _episode(Xs, y_idx, g_idx, held, draws, r, k)
                    pred = method.predict(ctx, ep, param)
                    score_rows = np.concatenate([draws[c][r][k:] for c in held])
                    hits = pred == y_idx[score_rows]
                    for i, c in enumerate(held):
                        acc = hits[ep.g_score == i].mean()
                        per_condition[name][k].setdefault(int(c), []).append(float(acc))
                bar.advance()
    bar.close()
    results = _summarise(per_condition, methods, shots, chosen)
    return {
        "n_conditions": int(len(keys)),
        "n_rows": int(len(X)),
        "n_classes": int(len(classes)),
        "folds": int(folds),
        "shots": shots,
        "repeats": int(repeats),
        "methods": results,
        "settings": {
            "hidden_layer_sizes": list(settings.hidden_layer_sizes),
            "code_size": settings.code_size,
            "code_layers": settings.code_layers,
            "max_epochs": settings.max_epochs,
            "adapt_max_iter": settings.adapt_max_iter,
            "tune": settings.tune,
            "random_state": int(random_state),
        },
        "seconds": round(time.perf_counter() - start, 1),
    }


def _draws(g_idx, held, repeats, seed) -> dict:
    """For each held-out condition, ``repeats`` seeded permutations of its rows."""
    out = {}
    for c in held:
        rows = np.flatnonzero(g_idx == c)
        out[c] = [
            np.random.default_rng([seed, int(c), r]).permutation(rows) for r in range(repeats)
        ]
    return out


def _episode(X, y, g_idx, held, draws, r, k) -> Episode:
    adapt = [draws[c][r][:k] for c in held]
    score = [draws[c][r][k:] for c in held]
    local = np.arange(len(held))
    return Episode(
        X_adapt=X[np.concatenate(adapt)] if k else np.empty((0, X.shape[1])),
        y_adapt=y[np.concatenate(adapt)] if k else np.empty(0, dtype=y.dtype),
        g_adapt=np.repeat(local, [len(a) for a in adapt]),
        X_score=X[np.concatenate(score)],
        g_score=np.repeat(local, [len(s) for s in score]),
        n_groups=len(held),
    )


class _InnerValidation:
    """Nested, condition-disjoint validation inside a fold's training conditions."""

    def __init__(self, ctx: FoldContext, shots, seed):
        self.outer, self.seed = ctx, seed
        self.shots = [k for k in shots if k >= 1] or list(shots)
        self.all_shots = list(shots)
        self._ctx = None

    def _setup(self):
        ctx = self.outer
        split = GroupShuffleSplit(n_splits=1, test_size=_INNER_FRACTION, random_state=self.seed)
        train, val = next(split.split(ctx.X, ctx.y, ctx.groups))
        self._ctx = FoldContext(ctx.X[train], ctx.y[train], ctx.groups[train], ctx.settings,
                                ctx.seed + 1)
        self.X, self.y, self.g = ctx.X, ctx.y, ctx.groups
        self.held = np.unique(ctx.groups[val])
        self.draws = _draws(ctx.groups, self.held, 1, self.seed)

    def choose(self, method):
        if self._ctx is None:
            self._setup()
        shots = self.all_shots if method.transductive else self.shots
        best, best_score = method.default, -np.inf
        for param in method.grid:
            scores = []
            for k in shots:
                ep = _episode(self.X, self.y, self.g, self.held, self.draws, 0, k)
                pred = method.predict(self._ctx, ep, param)
                rows = np.concatenate([self.draws[c][0][k:] for c in self.held])
                hits = pred == self.y[rows]
                scores.append(np.mean([hits[ep.g_score == i].mean()
                                       for i in range(len(self.held))]))
            if np.mean(scores) > best_score + 1e-9:
                best, best_score = param, float(np.mean(scores))
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

    def advance(self):
        self.done += 1
        self._draw()

    def _draw(self):
        elapsed = time.perf_counter() - self.start
        if not self.enabled or elapsed < self.delay:
            return
        frac = self.done / self.total
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        line = (f"[{'=' * int(30 * frac):<30}] {self.done}/{self.total} {self.text}  "
                f"{elapsed:.0f}s elapsed, ~{eta:.0f}s left")
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
