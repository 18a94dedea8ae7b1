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
  their own shift removed. With ``code_start="si"`` or ``"frozen_si"`` the coded
  network starts from the trained twin instead, with zero ``B_l``; with
  ``"shift_sat"`` from the shift's twin, frozen (codes on top of the feature shift);
  with several starts (``"auto"``, the default: ``"scratch"`` and ``"shift_sat"``)
  nested validation chooses one per fold and ``k``.
* **Episodes.** For every held-out condition and repeat, one seeded permutation of its
  units (rows, or e.g. utterances with ``units=``); with ``k`` shots the first ``k``
  units are labelled adaptation data and the condition's *remaining* units are scored.
  The draws depend only on the seed, the condition and the repeat, so every method sees
  the same rows (paired comparison), and the adaptation sets are nested in ``k``.
  ``k = 0`` has one draw (every unit is scored).
* **Scores.** Per condition, accuracy averaged over repeats; reported: the mean over
  conditions, a 95% interval ``1.96 * sd / sqrt(n_conditions)``, and the relative
  error reduction versus ``si``, ``1 - error(method) / error(si)``, with a 95% interval
  from a paired percentile bootstrap over held-out conditions (the same resamples for
  the method and ``si``; 1000 by default, seeded by ``random_state``).
  :func:`~skdc.evaluation.pool_seeds` pools runs of several seeds, and its bootstrap
  resamples seeds too.
* **Normalisation** (``normalize=``, off by default). Every method runs on features
  normalised by a :class:`~skdc.ConditionNormalizer` after standardisation:
  ``"utterance"``, each unit with its own rows; ``"speaker"``, each held-out condition
  with the statistics of its ``k`` adaptation units only (labels unused; ``k = 0``:
  the global statistics) and each training condition with those of ``k`` of its units
  drawn at random (seeded), so that training matches test: networks and nested
  validation then run once per ``k``. Statistics are per feature column (stacked
  context frames column by column). The table then says what each method adds on top
  of normalisation.

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
* Adaptation: L-BFGS for every method, one fit per episode for all held-out conditions
  (each with its own prior), at most ``adapt_max_iter`` (100) iterations and tolerance
  ``adapt_tol`` (1e-5, scipy's ``ftol`` and ``gtol``) for every method. Every prior
  is MAP-weighted like ``CodeAdapter``'s and counts as *one unit* of evidence: with
  frames grouped into utterances, a prior strength is multiplied by the mean number of
  frames per utterance, because frames of one utterance are not independent evidence.

With ``tune=True`` (the default) the rest is chosen per fold by **nested,
condition-disjoint validation** inside the fold's training conditions: a quarter of
them is held out (or, by inner cross-validation, each of ``inner_folds`` parts in turn:
by default 4 when that quarter would be fewer than 20 conditions), networks
are trained on the others (once per candidate network and inner fold),
``repeats`` episodes per held-out condition are drawn for every ``k >= 1`` of
``shots`` (one at ``k = 0`` for the transductive ``codes_unsup``), and the candidate
with the best mean accuracy over those ``k`` wins (ties go to the earlier candidate,
the stronger prior); of several code starts, each ``k`` takes the start best at that
``k``. For the codes,
code dropout (a share of training rows sees the mean code, so the prior mean is a good
speaker-independent model) and code L2 regularise the training codes. The candidates
and defaults (generated from ``METHODS``):

{candidates}

With ``tune=False`` each method uses its default: the choice nested validation made
most often on Hillenbrand (1995), 10 folds; for ``codes``, the training codes'
regularisation chosen so and the prior strength ``"evidence"``, which needs no
validation: each episode maximises the evidence of the held-out conditions it adapts
(their labelled rows only). Measured with three seeds (README), it does as well as the
fixed strength on raw features and better on normalised Arabic digits at k >= 5. Runs
on other data with ``tune=False`` (the demo on Peterson & Barney, the FSDD example)
thus use settings chosen on another data set, never on their own test folds.
``evaluate(method_params=...)`` fixes a method's hyperparameter or gives it other
candidates.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from .._input_shift import check_input_shift
from .._normalizer import ConditionNormalizer
from .._prior import SHRINKAGE_ESTIMATORS
from ._baselines import METHODS, describe_candidates, get_method
from ._episodes import HeldOut, Layout
from ._fold import AUTO_CODE_STARTS, CODE_STARTS, FoldContext, Settings
from ._normalisation import Normalisation, check_normalize, default_normalizer
from ._report import ConditionTable, summarise
from ._significance import PairedBootstrap
from ._sources import Sources
from ._tuning import InnerValidation, candidates_of, choices, choose, inner_folds_for

__doc__ = __doc__.replace("{candidates}", describe_candidates())

__all__ = ["evaluate", "DEFAULT_SHOTS", "check_inputs"]

DEFAULT_SHOTS = (0, 1, 2, 5, 10)


def check_inputs(X, y, groups, shots: Iterable[int], folds: int, repeats: int,
                 methods: Iterable[str] | None, units=None, normalize: str | None = None,
                 normalizer: ConditionNormalizer | None = None, n_resamples: int = 1000,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int], list[str]]:
    """Validate the inputs of :func:`evaluate`; ``ValueError`` with one clear message.

    Returns ``X`` (float64), ``y``, ``groups``, the sorted distinct ``shots`` and the
    list of methods.
    """
    X = np.asarray(X)
    if X.ndim > 2:  # each example (an utterance of frames, a spectrogram) one row
        X = X.reshape(len(X), -1)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty array of rows, got shape {X.shape}.")
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
    keys, g_idx = np.unique(groups, return_inverse=True)
    if int(folds) < 2 or int(folds) > len(keys):
        raise ValueError(
            f"folds must be between 2 and the number of conditions ({len(keys)}), got {folds}."
        )
    if int(repeats) < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}.")
    if len(np.unique(y)) < 2:
        raise ValueError("y must hold at least 2 classes.")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer) or (
            n_resamples < 1):
        raise ValueError(f"n_resamples must be a positive int, got {n_resamples!r}.")
    check_normalize(normalize, normalizer, units, X)
    _check_enough_units(Layout(g_idx, units, y), keys, shots[-1], units is None)
    return X, y, groups, shots, methods


def _check_enough_units(layout: Layout, keys, max_k: int, rows: bool) -> None:
    counts = np.bincount(layout.unit_condition)
    if counts.min() < max_k + 1:
        small = keys[counts.argmin()]
        what = "rows" if rows else "units"
        raise ValueError(
            f"condition {small!r} has {counts.min()} {what}, but {max_k} shots need at least "
            f"{max_k + 1} {what} per condition (k to adapt, at least one to score); use "
            "smaller shots or drop small conditions."
        )


def _check_prior_shrinkage(value) -> None:
    if isinstance(value, str) and value in SHRINKAGE_ESTIMATORS:
        return
    if isinstance(value, Real) and not isinstance(value, bool) and 0 <= value <= 1:
        return
    raise ValueError(f"prior_shrinkage must be a number in [0, 1], "
                     f"{' or '.join(map(repr, SHRINKAGE_ESTIMATORS))}; got {value!r}.")


def _check_inner_folds(value) -> None:
    if isinstance(value, str) and value == "auto":
        return
    if isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1:
        return
    raise ValueError(f"inner_folds must be 'auto' or an int of at least 1; got {value!r}.")


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
    sources=None,
    normalize: str | None = None,
    normalizer: ConditionNormalizer | None = None,
    hidden_layer_sizes: Sequence[int] = (64, 64),
    code_size: int | str = "auto",
    input_shift: int | str | None = None,
    shift_estimate: str = "learned",
    shift_covariance: str = "diag",
    prior_shrinkage: float | str = 1e-3,
    training: str = "joint",
    code_start: str | Sequence[str] = "auto",
    posterior: str | None = None,
    max_epochs: int = 200,
    batch_size: int = 200,
    learning_rate_init: float = 1e-3,
    adapt_max_iter: int = 100,
    adapt_tol: float = 1e-5,
    tune: bool = True,
    method_params: Mapping | None = None,
    inner_folds: int | str = "auto",
    max_train_conditions: int | None = None,
    random_state: int = 0,
    n_resamples: int = 1000,
    progress: bool = False,
    n_jobs: int | None = None,
) -> dict:
    """Evaluate k-shot adaptation methods on held-out conditions.

    See :mod:`skdc.evaluation` for the protocol, the methods and how every setting is
    chosen.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or (n_samples, *shape)
        Numeric features. An N-D array (utterances of padded frames,
        ``return_utterances="padded"`` of the audio loaders) is evaluated with each
        example as one row of its flattened values: the evaluation's networks are MLPs,
        and the feature shift and normalisations act on every value of that row.
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
        Methods to compare (default: all): {method_names}.
    units : array-like of shape (n_samples,), default=None
        Unit of each row (e.g. the utterance of a frame): units are drawn, adapted on
        and scored whole, a unit's decision summing its rows' log-probabilities.
        Default: every row is a unit.
    sources : array-like of shape (n_samples,), default=None
        The original condition of each row when some conditions are augmented copies
        of others (the audio loaders' ``source_groups`` with ``augment=``): a row whose
        ``groups`` equals its ``sources`` belongs to an original condition, any other
        to a copy. Folds keep every source with all its copies on one side (in nested
        validation too), copies only train (they are never held out or scored), and
        ``max_train_conditions`` counts sources. Default: every condition is an original.
    normalize : {None, "utterance", "speaker"}, default=None
        Normalise the features before every method (after standardisation), so that
        the table shows what each method adds on top of normalisation:
        ``"utterance"``, every unit with its own rows (needs ``units``);
        ``"speaker"``, every held-out condition with the statistics of its ``k``
        adaptation units only (labels unused; ``k = 0``: the global statistics) and
        every training condition with those of ``k`` of its units drawn at random,
        so that training matches test (every network is then trained, and tuned,
        once per ``k``). See :mod:`skdc.evaluation` (Normalisation).
    normalizer : ConditionNormalizer, default=None
        Its ``kind`` and ``tau`` normalise (its ``statistics`` is ignored: ``normalize``
        says where the statistics come from). Default: ``ConditionNormalizer(kind=
        "mean", tau="auto")`` for ``"speaker"`` (empirical Bayes on the training
        conditions' unit means, counted in rows) and ``ConditionNormalizer(kind="mean",
        tau=0)`` for ``"utterance"``.
    hidden_layer_sizes : sequence of int, default=(64, 64)
        Hidden layers of every network.
    code_size : int or "auto", default="auto"
        Length of the codes' hidden part; ``"auto"`` is ``clip(2 * n_features, 4, 16)``.
    input_shift : None, "full" or int, default=None
        The codes' input-level part (:class:`~skdc.CodeNetwork`'s ``input_shift``): a
        feature offset per condition, learned with the hidden code by ``codes`` and
        ``codes_unsup``. For frame features stacked over context frames, the features
        per frame (e.g. 13 for 13 MFCCs with +/- 5 frames of context).
    shift_estimate : {"learned", "empirical_bayes"}, default="learned"
        How the shift part of ``input_shift`` is found (:class:`~skdc.CodeNetwork`'s
        ``shift_estimate``): by backpropagation, or in closed form from a condition's
        labelled rows, as ``shift`` estimates its shift, and held there (codes on top
        of the shift, the library's way; with ``code_start="scratch"`` or
        ``"frozen_si"``). A held-out condition without labelled rows has no shift to
        remove: ``codes`` give it ``si``'s predictions, as ``shift`` does.
    shift_covariance : {"diag", "full"}, default="diag"
        The empirical-Bayes prior of a condition's feature shift, used by ``shift``,
        by ``code_start="shift_sat"`` and by ``shift_estimate="empirical_bayes"``
        (:class:`~skdc.ShiftPrior`): a shrinkage per feature, or between- and
        within-condition covariance matrices, which shrink one recording's evidence
        toward the directions in which the training conditions' shifts differ (better
        on Hillenbrand's 4 features and 125 training speakers, worse on Arabic digits'
        143 features and 24; README).
    prior_shrinkage : float, "oas" or "ledoit_wolf", default=1e-3
        Shrinkage of the training codes' covariance, the codes' prior
        (:class:`~skdc.CodeNetwork`'s ``prior_shrinkage``).
    training : {"joint", "staged", "episodic"}, default="joint"
        How the coded networks learn (:class:`~skdc.CodeNetwork`'s ``training``).
        ``"staged"`` with ``input_shift`` and ``shift_estimate="empirical_bayes"`` is
        ``code_start="shift_sat"`` done by the library. With
        ``"episodic"``, ``codes`` and ``codes_unsup`` adapt by the networks' own inner
        procedure (a few gradient steps from the learned initial code): their ``alpha``
        and the shift-given prior of ``codes`` are not used.
    code_start : {"auto", "scratch", "si", "frozen_si", "shift_sat"} or list, default="auto"
        Where the coded networks start: their own initial weights (``"scratch"``), or
        the fold's trained SI network (the ``si`` method's) with zero-initialised
        ``B_l``, so that before training a zero code gives exactly ``si``'s predictions;
        ``"si"`` then trains every weight with the codes (without ``input_shift``),
        ``"frozen_si"`` only the ``B_l`` and the codes (the SI network's weights stay
        as they are; the shift part of ``input_shift``, starting at zero, is then a
        feature offset into the SI network). ``"shift_sat"``: codes on top of the
        feature shift: the network of ``shift``'s ``"sat"`` (trained on conditions with
        their own shifts removed), frozen, with ``B_l`` and codes learned on those
        shift-normalised conditions; ``codes`` and ``codes_unsup`` then remove each
        held-out condition's shift, estimated from its labelled rows as ``shift`` does,
        before adapting its code (prior: the training codes' Gaussian); a condition
        without labelled rows (``k = 0``) has no shift to remove and gets ``si``'s
        predictions from ``codes``, as from ``shift``. A list of starts: nested
        validation (as for ``tune``, with or without it) chooses one per fold, ``k``
        and coded method (each start with its hyperparameter chosen on average over
        ``k``), on conditions held out inside the fold's training conditions;
        ``"auto"`` is ``["scratch", "shift_sat"]`` (``"scratch"`` alone with an
        ``input_shift`` or ``training`` other than ``"joint"``). The JSON's
        ``chosen`` then holds ``{"code_start": ..., "param": ...}``.
    posterior : {None, "laplace"}, default=None
        ``"laplace"``: ``codes`` and ``codes_unsup`` predict with the average over
        each adapted code's Laplace posterior (:class:`~skdc.CodeAdapter`'s
        ``posterior``) instead of its MAP estimate. A codes candidate's ``alpha`` may
        also be ``"evidence"`` (``method_params={"codes": ("dropout+l2",
        "evidence")}``): the prior strength maximising the evidence of the conditions
        adapted together.
    max_epochs : int, default=200
        Maximum training epochs of every network.
    batch_size : int, default=200
        Training minibatch size of every network.
    learning_rate_init : float, default=1e-3
        Adam learning rate of every network.
    adapt_max_iter : int, default=100
        L-BFGS iterations of every adaptive method.
    adapt_tol : float, default=1e-5
        L-BFGS tolerance of every adaptive method: it stops when the objective's
        relative decrease or the largest projected gradient falls below it (scipy's
        ``ftol`` and ``gtol``).
    tune : bool, default=True
        Choose each adaptive method's hyperparameter by nested validation on the
        training conditions of each fold; otherwise use the fixed defaults.
    method_params : dict, default=None
        ``{method: value}`` or ``{method: [candidate, ...]}`` for some methods:
        a *list* gives the candidates that nested validation chooses from (in order
        of preference for ties; more than one needs ``tune=True``); *any other value*
        fixes the method's hyperparameter in every fold, tuned or not. A value has the
        form of the built-in candidates (see :mod:`skdc.evaluation`): for ``codes``
        and ``codes_unsup`` a tuple ``(regularisation, alpha)``, e.g.
        ``{"codes": ("none", 1.0)}`` (fixed) or ``{"codes": [("none", 1.0),
        ("none", 0.5)]}`` (tuned), optionally followed by the coded network's own
        ``code_size`` and ``code_layers`` (e.g. ``("none", 1.0, 32, "input")``: nested
        validation then also chooses the coded network); for ``shift`` ``"si"`` or
        ``"sat"``; for ``lhuc``, ``finetune_last`` and ``finetune_all`` a positive prior
        standard deviation.
        Methods not named use their built-in candidates (``tune=True``) or default.
        ``ValueError`` names the method and the value for an unknown method, a
        method not among ``methods``, one without hyperparameter, or a bad value.
    inner_folds : int or "auto", default="auto"
        How nested validation holds out a fold's training conditions: 1, a quarter
        of them (one split); more, inner cross-validation over that many
        condition-disjoint parts, so that every training condition validates once
        (the inner networks train ``inner_folds`` times). ``"auto"``: 4 when a quarter
        of the smallest fold's training sources is fewer than 20 (one split would
        validate on too few to tell two close candidates apart), else 1; the JSON's
        ``settings["inner_folds"]`` says which.
    max_train_conditions : int, default=None
        Train every fold's networks on at most this many of its training conditions
        (a seeded draw per fold; the draws for smaller values are subsets of those for
        larger ones), with the same folds and held-out conditions: how accuracy grows
        with the number of training conditions. None uses them all.
    random_state : int, default=0
        Seeds folds, draws, networks and the bootstrap.
    n_resamples : int, default=1000
        Resamples of the paired bootstrap behind ``error_reduction_vs_si_interval``.
    progress : bool, default=False
        Show a progress bar on stderr (after a few seconds).
    n_jobs : int, default=None
        Nested validation, one task per fold and inner fold, then the folds run in
        parallel in this many joblib workers (``-1``: all cores); ``None`` or 1 runs
        them in this process. Each task's seed depends only on ``random_state``, the
        fold and the inner fold, so results do not depend on ``n_jobs`` (beyond float
        rounding from TensorFlow's thread count).

    Returns
    -------
    results : dict
        JSON-ready: ``n_conditions`` (held out and scored: the originals),
        ``n_copies`` (augmented copies, training only), ``n_rows``, ``n_units``,
        ``n_classes``, ``folds``, ``shots``, ``repeats``, ``normalize``, ``methods`` (per method:
        ``k`` -> ``{"0": {"accuracy", "ci95", "error_reduction_vs_si",
        "error_reduction_vs_si_interval"}, ...}``, ``transductive``, ``description``,
        ``chosen`` (the hyperparameter per fold, or a dict ``{k: hyperparameter}`` for
        a fold whose ``k`` chose differently)), ``per_condition`` (``conditions``, ``seeds``
        and ``accuracy``: per method and ``k`` a table seeds x conditions, each
        condition's accuracy over repeats; :func:`pool_seeds` pools runs of several
        seeds with it), ``settings`` (including ``candidates``: what each method chose
        from, ``normalizer`` and ``n_resamples``) and ``seconds``.
        ``error_reduction_vs_si`` is ``1 - error(method) / error(si)`` and
        ``error_reduction_vs_si_interval`` its 95% interval ``[low, high]`` from a
        paired bootstrap over held-out conditions (``None`` when ``si`` makes no error
        in any resample); both are missing when ``si`` is not evaluated or makes no
        error.
    """
    start = time.perf_counter()
    X, y, groups, shots, methods = check_inputs(X, y, groups, shots, folds, repeats, methods,
                                                units, normalize, normalizer, n_resamples)
    candidates = candidates_of(methods, method_params, bool(tune))
    if max_train_conditions is not None and not (
            isinstance(max_train_conditions, int | np.integer) and max_train_conditions >= 2):
        raise ValueError("max_train_conditions must be an int of at least 2 (codes need "
                         f"conditions to learn from), or None; got {max_train_conditions!r}.")
    _check_prior_shrinkage(prior_shrinkage)
    _check_inner_folds(inner_folds)
    if training not in ("joint", "staged", "episodic"):
        raise ValueError("training must be 'joint', 'staged' or 'episodic'; got "
                         f"{training!r}.")
    if posterior not in (None, "laplace"):
        raise ValueError(f"posterior must be None or 'laplace'; got {posterior!r}.")
    code_starts = _code_starts(code_start, input_shift, training)
    if shift_estimate not in ("learned", "empirical_bayes"):
        raise ValueError("shift_estimate must be 'learned' or 'empirical_bayes'; got "
                         f"{shift_estimate!r}.")
    if shift_covariance not in ("diag", "full"):
        raise ValueError("shift_covariance must be 'diag' or 'full'; got "
                         f"{shift_covariance!r}.")
    if shift_estimate == "empirical_bayes" and (input_shift is None or training == "episodic"):
        raise ValueError("shift_estimate='empirical_bayes' estimates the codes' shift part: "
                         "it needs an input_shift and training='joint' or 'staged'.")
    started = [start for start in code_starts if start != "scratch"]
    if training == "staged" and started:
        raise ValueError(f"training='staged' trains its own first stage; code_start="
                         f"{started[0]!r} gives the coded network another one: use "
                         "code_start='scratch'.")
    unshifted = [start for start in code_starts if start in ("si", "shift_sat")]
    if unshifted and input_shift is not None:
        raise ValueError(f"code_start={unshifted[0]!r} does not take an input_shift; the "
                         "codes' shift part is learned with 'frozen_si' or 'scratch'.")
    settings = Settings(
        hidden_layer_sizes=tuple(int(h) for h in hidden_layer_sizes),
        code_size=_default_code_size(X.shape[1]) if code_size == "auto" else int(code_size),
        input_shift=check_input_shift(input_shift, X.shape[1]) or None,
        shift_estimate=shift_estimate,
        shift_covariance=shift_covariance,
        prior_shrinkage=prior_shrinkage,
        training=training,
        code_start=code_starts[0],
        posterior=posterior,
        max_epochs=int(max_epochs),
        batch_size=int(batch_size),
        learning_rate_init=float(learning_rate_init),
        adapt_max_iter=int(adapt_max_iter),
        adapt_tol=float(adapt_tol),
    )
    classes, y_idx = np.unique(y, return_inverse=True)
    keys, g_idx = np.unique(groups, return_inverse=True)
    sources = Sources(groups, g_idx, sources)
    n_held = int(sources.original.sum())  # conditions that can be held out: the originals
    if int(folds) > n_held:
        raise ValueError(f"folds must be between 2 and the number of sources ({n_held}), got "
                         f"{folds}.")
    layout = Layout(g_idx, units)
    settings.rows_per_unit = len(X) / layout.n_units
    if normalize is not None and normalizer is None:
        normalizer = default_normalizer(normalize)
    normalisation = Normalisation(normalize, normalizer, layout, random_state)
    splitter = GroupKFold(n_splits=int(folds), shuffle=True, random_state=random_state)
    splits = [(_draw_conditions(train, sources.of_row, max_train_conditions, random_state,
                                fold), sources.originals(test, g_idx))
              for fold, (train, test) in enumerate(splitter.split(X, y_idx, sources.of_row))]
    fewest = min(len(np.unique(sources.of_row[train])) for train, _ in splits)
    if isinstance(inner_folds, str):  # "auto"
        inner_folds = inner_folds_for(fewest)
    elif inner_folds > fewest:
        raise ValueError(f"inner_folds={inner_folds} is more than the {fewest} training "
                         "sources of the smallest fold: each inner fold needs one.")
    job = dict(X=X, y=y_idx, g=g_idx, layout=layout, sources=sources, settings=settings,
               code_starts=code_starts, methods=methods, candidates=candidates,
               shots=shots, repeats=int(repeats), inner_folds=int(inner_folds),
               random_state=random_state, folds=len(splits), normalisation=normalisation)
    per_condition, chosen = _run_folds(splits, job, n_jobs, progress)
    table = ConditionTable.from_scores(per_condition, keys.tolist(), int(random_state))
    bootstrap = PairedBootstrap(n_held, 1, int(n_resamples), random_state)
    return {
        "n_conditions": n_held,
        "n_copies": sources.n_copies,
        "n_rows": int(len(X)),
        "n_units": int(layout.n_units),
        "n_classes": int(len(classes)),
        "folds": int(folds),
        "shots": shots,
        "repeats": int(repeats),
        "normalize": normalize,
        "methods": summarise(table, _method_info(methods, chosen), bootstrap),
        "per_condition": table.to_json(),
        "settings": {**_settings_entry(settings, code_starts, bool(tune), candidates,
                                       random_state),
                     "inner_folds": int(inner_folds),
                     "max_train_conditions": None if max_train_conditions is None
                     else int(max_train_conditions),
                     "normalizer": None if normalizer is None
                     else {"kind": normalizer.kind, "tau": normalizer.tau if
                           normalizer.tau == "auto" else float(normalizer.tau)},
                     "n_resamples": int(n_resamples)},
        "seconds": round(time.perf_counter() - start, 1),
    }


evaluate.__doc__ = evaluate.__doc__.replace("{method_names}",
                                            ", ".join(f"``{name}``" for name in METHODS))


def _method_info(methods: list[str], chosen: dict) -> dict:
    """What the report says of every method besides its scores."""
    return {name: {"transductive": get_method(name).transductive,
                   "description": get_method(name).description,
                   "chosen": chosen[name] if get_method(name).grid else None}
            for name in methods}


def _code_starts(code_start, input_shift, training: str) -> tuple[str, ...]:
    """The code starts to use (one) or to choose among; ``ValueError`` naming a bad one.
    ``"auto"`` keeps to ``"scratch"`` where ``"shift_sat"`` does not apply (codes with
    a shift part of their own, or trained otherwise than jointly)."""
    if code_start == "auto":
        return (AUTO_CODE_STARTS if input_shift is None and training == "joint"
                else AUTO_CODE_STARTS[:1])
    if isinstance(code_start, str):
        starts = (code_start,)
    elif (isinstance(code_start, Sequence) and len(code_start) > 0
          and all(isinstance(start, str) for start in code_start)):
        starts = tuple(dict.fromkeys(code_start))
    else:
        raise ValueError("code_start must be one of the code starts, 'auto' or a non-empty "
                         f"list of code starts; got {code_start!r}.")
    for start in starts:
        if start not in CODE_STARTS:
            raise ValueError(f"code_start must be 'auto' or one of "
                             f"{', '.join(map(repr, CODE_STARTS))} (or a list of them); "
                             f"got {start!r}.")
    return starts


def _draw_conditions(train, g, n, random_state, fold) -> np.ndarray:
    """The rows of ``train`` from ``n`` of its conditions, drawn with a per-fold seed."""
    if n is None:
        return train
    present = np.unique(g[train])
    order = np.random.default_rng([random_state, fold, 1]).permutation(present)
    return train[np.isin(g[train], order[:n])]


def _settings_entry(settings: Settings, code_starts: tuple, tune: bool, candidates: dict,
                    random_state) -> dict:
    return {
        "hidden_layer_sizes": list(settings.hidden_layer_sizes),
        "code_size": settings.code_size,
        "code_layers": settings.code_layers,
        "input_shift": settings.input_shift,
        "shift_estimate": settings.shift_estimate,
        "shift_covariance": settings.shift_covariance,
        "prior_shrinkage": settings.prior_shrinkage,
        "training": settings.training,
        "code_start": code_starts[0] if len(code_starts) == 1 else list(code_starts),
        "posterior": settings.posterior,
        "max_epochs": settings.max_epochs,
        "batch_size": settings.batch_size,
        "learning_rate_init": settings.learning_rate_init,
        "adapt_max_iter": settings.adapt_max_iter,
        "adapt_tol": settings.adapt_tol,
        "tune": tune,
        "candidates": {name: list(c) for name, c in candidates.items() if c},
        "rows_per_unit": round(settings.rows_per_unit, 2),
        "random_state": int(random_state),
    }


def _run_folds(splits, job: dict, n_jobs, progress: bool) -> tuple[dict, dict]:
    """Run every fold (here or in joblib workers); scores per condition and choices.

    Nested validation runs first, one task per fold, view and inner fold (each trains
    its own networks), so that with inner cross-validation the workers share many small
    tasks instead of a few large ones; then each fold chooses from those scores and
    runs its methods.
    """
    methods, shots = job["methods"], job["shots"]
    per_fold = len(methods) * len(shots)
    inner_tasks = _inner_tasks(splits, job)
    bar = _Progress(len(inner_tasks) + len(splits) * per_fold, enabled=progress)
    known: dict = {}
    with warnings.catch_warnings():
        # loky restarts a worker whose memory grew (TensorFlow's caches) and says so; no
        # task is lost (a lost one raises TerminatedWorkerError)
        warnings.filterwarnings("ignore", message="A worker stopped", category=UserWarning)
        outputs = _map(_score_inner_fold, inner_tasks, job, n_jobs)
        for (fold, _, view, _), accuracies in zip(inner_tasks, outputs, strict=True):
            for key, by_k in accuracies.items():
                joined = known.setdefault((fold, view), {}).setdefault(key, {})
                for k, values in by_k.items():
                    joined.setdefault(k, []).extend(values)
            bar.update(f"fold {fold + 1}/{len(splits)} nested validation")
            bar.advance()
        fold_tasks = [(fold, split, {view: known.get((fold, view), {}) for view in
                                     job["normalisation"].views(shots)})
                      for fold, split in enumerate(splits)]
        report = bar if min(effective_n_jobs(n_jobs), len(splits)) == 1 else None
        outputs = _map(_run_fold, fold_tasks, job, n_jobs, report=report)
        per_condition: dict = {m: {k: {} for k in shots} for m in methods}
        chosen: dict = {m: [] for m in methods}
        for done, (fold_scores, fold_chosen) in enumerate(outputs, start=1):
            for name in methods:
                chosen[name].append(fold_chosen[name])
                for k in shots:
                    per_condition[name][k].update(fold_scores[name][k])
            if report is None:
                bar.update(f"{done}/{len(splits)} folds")
                bar.advance(per_fold)
    bar.close()
    return per_condition, chosen


def _map(function, tasks: list[tuple], job: dict, n_jobs, **kwargs):
    """``function(*task, job, **kwargs)`` for every task, in order: here, or in at most
    one joblib worker per task (each worker process holds its own TensorFlow)."""
    n_jobs = min(effective_n_jobs(n_jobs), max(len(tasks), 1))
    if n_jobs == 1:
        return (function(*task, job, **kwargs) for task in tasks)
    return Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(function)(*task, job, **kwargs) for task in tasks)


def _inner_tasks(splits, job: dict) -> list[tuple]:
    """``(fold, split, view, inner fold)`` of every nested validation to run: none when
    no method has anything to choose."""
    if not any(choices(get_method(name), job["candidates"][name], job["code_starts"])
               for name in job["methods"]):
        return []
    return [(fold, split, view, part) for fold, split in enumerate(splits)
            for view in job["normalisation"].views(job["shots"])
            for part in range(job["inner_folds"])]


class _Fold:
    """One outer fold: its standardised features, seed, and per view of the
    normalisation the training context and nested validation."""

    def __init__(self, fold: int, split, job: dict):
        (self.train, self.test), self.job = split, job
        X, normalisation = job["X"], job["normalisation"]
        Xs = StandardScaler().fit(X[self.train]).transform(X)
        self.X = normalisation.fold_features(Xs, self.train)
        self.seed = int(np.random.SeedSequence([job["random_state"], fold])
                        .generate_state(1)[0] >> 1)

    def context(self, view: tuple) -> FoldContext:
        job, train = self.job, self.train
        return FoldContext(job["normalisation"].training(self.X, train, view[0]),
                           job["y"][train], job["g"][train], job["settings"], self.seed,
                           units=job["layout"].unit_of_row[train])

    def validation(self, ctx: FoldContext, view: tuple, **kwargs) -> InnerValidation:
        job, train = self.job, self.train
        return InnerValidation(ctx, job["layout"].unit_of_row[train], view, self.seed,
                               self.X[train], job["normalisation"],
                               job["sources"].of_rows(train), job["repeats"],
                               job["inner_folds"], **kwargs)


def _score_inner_fold(fold: int, split, view: tuple, part: int, job: dict) -> dict:
    """Accuracies (``InnerValidation.accuracies``) of every candidate a method of the
    fold chooses from, on one inner fold of one view."""
    outer = _Fold(fold, split, job)
    inner = outer.validation(outer.context(view), view, parts=[part])
    out = {}
    for name in job["methods"]:
        method = get_method(name)
        for start, param in choices(method, job["candidates"][name], job["code_starts"]):
            out[inner.key(method, start, param)] = inner.accuracies(method, start, param)
    return out


def _run_fold(fold: int, split, known: dict, job: dict, report=None) -> tuple[dict, dict]:
    """Scores ``{method: {k: {condition: [accuracy per repeat]}}}`` and choices of one fold,
    its nested validation's accuracies ``known`` per view.

    Every view of the normalisation (all ``k`` together, or one ``k`` at a time when
    training rows are normalised from ``k`` units) trains its own networks.
    """
    outer, shots, repeats = _Fold(fold, split, job), job["shots"], job["repeats"]
    layout, normalisation, g = job["layout"], job["normalisation"], job["g"]
    held = HeldOut(outer.X, job["y"], layout, np.unique(g[outer.test]), repeats,
                   job["random_state"],
                   normalisation.episode_transform(outer.X[outer.train], g[outer.train],
                                                   layout.unit_of_row[outer.train]))
    scores: dict = {m: {k: {} for k in shots} for m in job["methods"]}
    chosen: dict = {m: {} for m in job["methods"]}
    for view in normalisation.views(shots):
        ctx = outer.context(view)
        inner = outer.validation(ctx, view, known=known[view])
        for name in job["methods"]:
            method = get_method(name)
            for k in view:
                start, param = choose(method, job["candidates"][name], inner,
                                      job["code_starts"], k)
                chosen[name][k] = (param if len(job["code_starts"]) == 1 or not method.coded
                                   else {"code_start": start, "param": param})
                method_ctx = ctx if start is None else ctx.with_code_start(start)
                if report is not None:
                    report.update(f"fold {fold + 1}/{job['folds']} {name} k={k}")
                for r in range(1 if k == 0 else repeats):
                    ep, units = held.episode(r, k)
                    accuracy = held.accuracy(method.log_proba(method_ctx, ep, param), units,
                                             ctx.classes)
                    for c, acc in accuracy.items():
                        scores[name][k].setdefault(c, []).append(acc)
                if report is not None:
                    report.advance()
    return scores, {name: _per_k(by_k) for name, by_k in chosen.items()}


def _per_k(by_k: dict):
    """One fold's choice: the value, or ``{k: value}`` when the ``k`` chose differently."""
    values = list(by_k.values())
    if all(value == values[0] for value in values):
        return values[0]
    return {str(k): value for k, value in by_k.items()}


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
