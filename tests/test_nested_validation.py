"""Tests of the evaluation's nested validation: candidates, code starts and inner
cross-validation, chosen inside the training conditions of a fold.

Most tests score *oracles*, methods whose answers are known, on a small layout whose
feature 0 is the label.
"""

import functools

import keras
import numpy as np
import pytest

from skdc import ConditionNormalizer
from skdc.evaluation import evaluate
from skdc.evaluation._baselines import Method
from skdc.evaluation._episodes import Layout
from skdc.evaluation._fold import FoldContext, Settings
from skdc.evaluation._normalisation import Normalisation
from skdc.evaluation._tuning import InnerValidation, candidates_of, choose, inner_folds_for


@pytest.mark.xfail(
    keras.backend.backend() != "tensorflow", strict=False,
    reason="seed-dependent: Keras draws other initial weights on other backends; under JAX the "
    "weak prior loses one fold's inner validation by 0.008 (TensorFlow, random_state 0-3: 12 of "
    "12 folds pick it; JAX: 10 of 12)",
)
def test_nested_tuning_rejects_a_planted_bad_candidate(shifted, fast):
    """A prior so strong that the code cannot move (alpha 1e4) loses nested validation.

    The bad candidates come first and third: picking the first candidate (or ties) would
    fail in every fold, picking at random would pass all three folds with chance 1/27.
    ``codes_unsup`` because its objective moves the code from the start (many unlabelled
    rows); with 2 labelled rows the supervised codes often stop where they start (the
    prior mean), so candidate priors tie there.
    """
    X, y, groups = shifted
    bad, good = ("none", 1e4), ("none", 0.01)
    out = evaluate(X, y, groups, shots=(0, 2), folds=3, repeats=1, methods=["codes_unsup"],
                   method_params={"codes_unsup": [bad, good, ("none", 3e3)]}, random_state=0,
                   **fast)
    assert [tuple(p) for p in out["methods"]["codes_unsup"]["chosen"]] == [good] * 3
    assert out["settings"]["tune"] is True
    assert out["settings"]["candidates"]["codes_unsup"] == [bad, good, ("none", 3e3)]


class _Oracle(Method):
    """Predicts the label written in feature 0 (``"right"``), the next label
    (``"wrong"``), or the label only with / only without labelled rows."""

    name = "oracle"

    def log_proba(self, ctx, ep, param):
        has_rows = len(ep.X_adapt) > 0
        right = {"right": True, "wrong": False, "with_rows": has_rows,
                 "without_rows": not has_rows}[param]
        return _answers(ctx, ep, right)


def _answers(ctx, ep, right) -> np.ndarray:
    """Log-probabilities of the label in feature 0 of each scored row where ``right``
    (a bool, or one per row), else of the next label."""
    label = ep.X_score[:, 0].astype(int)
    guess = np.where(right, label, (label + 1) % len(ctx.classes))
    return np.log(np.eye(len(ctx.classes))[guess] + 1e-9)


def _oracle_validation(shots, n_conditions: int = 8, **kwargs) -> InnerValidation:
    """Nested validation over ``n_conditions`` conditions of 6 rows whose feature 0 is
    the label (what the oracles read)."""
    rng = np.random.default_rng(0)
    groups, y = np.repeat(np.arange(n_conditions), 6), np.tile(np.arange(3), 2 * n_conditions)
    X = np.column_stack([y, rng.normal(size=len(y))])
    ctx = FoldContext(X, y, groups, Settings(), seed=0)
    return InnerValidation(ctx, np.arange(len(y)), shots=shots, seed=0, **kwargs)


@pytest.mark.parametrize(
    ("candidates", "transductive", "best"),
    [
        (("wrong", "right"), False, "right"),  # the best, wherever it stands
        (("right", "wrong"), False, "right"),
        (("right", "with_rows", "wrong"), False, "right"),  # a tie goes to the earlier
        (("with_rows", "right"), False, "with_rows"),
        (("without_rows", "with_rows"), False, "with_rows"),  # k = 0 is not scored...
        (("with_rows", "without_rows"), True, "with_rows"),  # ...unless transductive: a tie
        (("wrong", "without_rows", "with_rows"), True, "without_rows"),
    ],
)
def test_nested_validation_chooses_the_best_scoring_candidate(candidates, transductive, best):
    """On held-out training conditions, the candidate with the highest accuracy over the
    k of the evaluation wins; k = 0 counts for transductive methods only."""
    inner = _oracle_validation((0, 2))
    method = _Oracle()
    method.transductive = transductive
    assert choose(method, candidates, inner) == (None, best)


class _EvenConditions(_Oracle):
    """Right on the conditions whose feature 1 (the condition) is even, wrong on the
    others."""

    def log_proba(self, ctx, ep, param):
        return _answers(ctx, ep, ep.X_score[:, 1] % 2 == 0)


def test_inner_cross_validation_holds_out_every_training_condition_once():
    """``folds=4``: four condition-disjoint inner splits whose held-out conditions cover
    the fold's training conditions, each inner network trained on the others (its own
    seed); a score is the mean over all of them."""
    groups, y = np.repeat(np.arange(8), 6), np.tile(np.arange(3), 16)
    X = np.column_stack([y, groups]).astype(float)
    ctx = FoldContext(X, y, groups, Settings(), seed=0)
    inner = InnerValidation(ctx, np.arange(len(y)), shots=(0, 2), seed=0, folds=4)
    splits = inner.inner_folds()
    held = np.concatenate([h.held for _, h in splits])
    assert sorted(held.tolist()) == list(range(8))
    for inner_ctx, h in splits:
        assert not set(h.held) & set(inner_ctx.groups.tolist())
        assert sorted(set(h.held) | set(inner_ctx.groups.tolist())) == list(range(8))
    assert len({inner_ctx.seed for inner_ctx, _ in splits}) == 4
    # half the conditions are even: with all eight held out once the score is 1/2
    assert inner.scores(_EvenConditions(), [(None, "p")]) == {2: [0.5]}
    one = InnerValidation(ctx, np.arange(len(y)), shots=(0, 2), seed=0)
    [(_, h)] = one.inner_folds()
    assert len(h.held) == 2  # folds=1: a quarter held out, as before


def test_inner_folds_scored_apart_and_joined_score_as_one():
    """Each inner fold scored on its own (``parts``, as evaluate's workers do), the
    accuracies joined in order (``known``), gives the scores of all inner folds
    scored together, and nothing is scored again."""
    groups, y = np.repeat(np.arange(8), 6), np.tile(np.arange(3), 16)
    X = np.column_stack([y, groups]).astype(float)
    ctx = FoldContext(X, y, groups, Settings(), seed=0)
    method = _EvenConditions()
    make = functools.partial(InnerValidation, ctx, np.arange(len(y)), (0, 1, 2), 0,
                             repeats=2, folds=4)
    whole = make()
    joined: dict = {}
    for part in range(4):
        alone = make(parts=[part])
        [(_, held)] = alone.inner_folds()
        assert held.held.tolist() == whole.inner_folds()[part][1].held.tolist()
        for k, values in alone.accuracies(method, None, "p").items():
            joined.setdefault(k, []).extend(values)
    assert joined == whole.accuracies(method, None, "p")
    expected = whole.scores(method, [(None, "p")])
    assert expected == {1: [0.5], 2: [0.5]}

    def unseen(*args):
        raise AssertionError("scored again")

    method.log_proba = unseen
    known = make(known={InnerValidation.key(method, None, "p"): joined})
    assert known.scores(method, [(None, "p")]) == expected


@pytest.mark.parametrize("mode, views", [(None, 1), ("speaker", 2)])
def test_nested_validation_is_one_task_per_fold_view_and_inner_fold(mode, views):
    """evaluate's workers share nested validation as (fold, view, inner fold) tasks, and
    have none when no method has anything to choose."""
    from skdc.evaluation._protocol import _inner_tasks

    layout = Layout(np.repeat(np.arange(6), 2))
    job = dict(methods=["si", "codes"], shots=(0, 2), inner_folds=3,
               candidates=candidates_of(["si", "codes"], None, tune=False),
               code_starts=("scratch", "shift_sat"),
               normalisation=Normalisation(mode, ConditionNormalizer(), layout, 0))
    splits = [("train0", "test0"), ("train1", "test1")]
    tasks = _inner_tasks(splits, job)
    assert len(tasks) == 2 * views * 3 and len(set(tasks)) == len(tasks)
    assert {(fold, split) for fold, split, _, _ in tasks} == set(enumerate(splits))
    assert _inner_tasks(splits, {**job, "code_starts": ("scratch",)}) == []


class _ShotsOracle(_Oracle):
    """Right with at most one labelled row per condition (``"few"``) or with more
    (``"many"``)."""

    def log_proba(self, ctx, ep, param):
        few = len(ep.X_adapt) <= ep.n_groups
        return super().log_proba(ctx, ep, "right" if few == (param == "few") else "wrong")


def test_nested_validation_chooses_the_start_per_k_and_the_hyperparameter_on_average():
    inner = _oracle_validation((0, 1, 4))
    method = _ShotsOracle()
    method.coded = True
    # a hyperparameter on average over k (a tie here: the earlier one)
    assert choose(method, ("many", "few"), inner, k=1) == (None, "many")
    # a start at each k: "few"'s rows under one start, "many"'s under the other
    assert choose(_ShotsStart(), ("p",), inner, ("a", "b"), k=1) == ("a", "p")
    assert choose(_ShotsStart(), ("p",), inner, ("a", "b"), k=4) == ("b", "p")
    assert choose(_ShotsStart(), ("p",), inner, ("a", "b"), k=0) == ("a", "p")  # average: tie


class _ShotsStart(_ShotsOracle):
    """Start ``"a"`` is right with one labelled row per condition, ``"b"`` with more."""

    coded = True

    def log_proba(self, ctx, ep, param):
        return super().log_proba(ctx, ep, "few" if ctx.settings.code_start == "a" else "many")


class _Counting(_Oracle):
    """Right on the first draw it is asked for at each k, wrong on the others."""

    def __init__(self):
        self.calls = []

    def log_proba(self, ctx, ep, param):
        first = len(ep.X_adapt) not in self.calls
        self.calls.append(len(ep.X_adapt))
        return super().log_proba(ctx, ep, "right" if first else "wrong")


@pytest.mark.parametrize("transductive, calls", [(False, 3), (True, 4)])
def test_nested_validation_scores_repeats_draws_per_k(transductive, calls):
    """As many draws per held-out condition and k >= 1 as the outer protocol (one at
    k = 0), averaged."""
    inner = _oracle_validation((0, 2), repeats=3)
    method = _Counting()
    method.transductive = transductive
    scores = inner.scores(method, [(None, "p")])
    assert len(method.calls) == calls
    assert scores[2] == [pytest.approx(1 / 3)]
    assert not transductive or scores[0] == [1.0]


class _StartOracle(_Oracle):
    """A coded method that is right only when its codes start on top of the shift."""

    coded = True

    def log_proba(self, ctx, ep, param):
        right = "right" if ctx.settings.code_start == "shift_sat" else "wrong"
        return super().log_proba(ctx, ep, right if param == "right" else param)


def test_nested_validation_chooses_the_code_start_with_the_hyperparameter():
    """``evaluate(code_start=[...])``: the (start, param) pair scoring best on held-out
    training conditions; methods without codes ignore the starts."""
    inner = _oracle_validation((0, 2))
    starts = ("scratch", "shift_sat")
    assert choose(_StartOracle(), ("wrong", "right"), inner, starts) == ("shift_sat", "right")
    assert choose(_StartOracle(), ("wrong",), inner, starts) == ("scratch", "wrong")  # a tie
    assert choose(_Oracle(), ("wrong", "right"), inner, starts) == (None, "right")
    assert choose(_StartOracle(), (), None, ("shift_sat",)) == ("shift_sat", None)


class _CloseStart(_Oracle):
    """Start ``"a"`` is right with one labelled row per condition and, with more, right
    except on the first held-out condition (``param="close"``) or wrong (``"far"``);
    ``"b"`` is wrong with one labelled row per condition and right with more."""

    coded = True

    def log_proba(self, ctx, ep, param):
        one_row = len(ep.X_adapt) == ep.n_groups
        if ctx.settings.code_start == "b":
            right = np.full(len(ep.X_score), not one_row)
        else:
            right = np.full(len(ep.X_score), one_row) | ((param == "close") & (ep.g_score != 0))
        return _answers(ctx, ep, right)


@pytest.mark.xfail(strict=True, reason="known: the start at each k is the best mean on a "
                   "few inner conditions, a coin flip between close starts; the rule that "
                   "fixed it (11c1988) lost on normalised Arabic digits (README, Choosing "
                   "the start) and was reverted")
def test_nested_validation_keeps_the_start_best_over_k_unless_another_is_surely_better():
    """Wanted: the start best on average over k stays at a k where another is better on
    one held-out condition of four (a coin flip; the rule in use, the best at each k,
    takes it), and gives way where another is better on every one."""
    inner = _oracle_validation((0, 1, 2), n_conditions=16)
    method = _CloseStart()
    assert inner.best(method, [("a", "close"), ("b", "close")], 2) == ("b", "close")
    for starts in (("a", "b"), ("b", "a")):
        assert choose(method, ("close",), inner, starts, k=2) == ("a", "close")
        assert choose(method, ("close",), inner, starts, k=1) == ("a", "close")
        assert choose(method, ("close",), inner, starts, k=0) == ("a", "close")
        assert choose(method, ("far",), inner, starts, k=2) == ("b", "far")
        assert choose(method, ("far",), inner, starts, k=1) == ("a", "far")


def test_code_starts_share_the_networks_without_codes(shifted):
    X, y, groups = shifted
    settings = Settings(hidden_layer_sizes=(4,), max_epochs=1)
    ctx = FoldContext(X, y, groups, settings, seed=0)
    other = ctx.with_code_start("shift_sat")
    assert other.settings.code_start == "shift_sat" and ctx.settings.code_start == "scratch"
    assert ctx.with_code_start("scratch") is ctx and ctx.with_code_start("shift_sat") is other
    assert other.shift_network is ctx.shift_network and other.si_network is ctx.si_network


def test_auto_code_start_is_chosen_per_fold_and_scores_as_the_start_chosen(shifted, fast):
    """``code_start="auto"``: each fold's codes score exactly as in a run with the start
    that fold chose; methods without codes are not touched."""
    X, y, groups = shifted
    small = dict(shots=(1,), folds=2, repeats=1, tune=False, methods=["codes", "shift"],
                 method_params={"codes": ("none", 1.0)}, random_state=0,
                 **{**fast, "max_epochs": 10})
    out = evaluate(X, y, groups, **{**small, "code_start": "auto"})
    assert out["settings"]["code_start"] == ["scratch", "shift_sat"]
    chosen = out["methods"]["codes"]["chosen"]
    assert len(chosen) == 2
    assert all(c["code_start"] in ("scratch", "shift_sat") and c["param"] == ("none", 1.0)
               for c in chosen)
    assert out["methods"]["shift"]["chosen"] == ["sat"] * 2  # not a coded method
    auto = np.array(out["per_condition"]["accuracy"]["codes"]["1"])
    fixed = {start: np.array(evaluate(X, y, groups, **{**small, "code_start": start})
                             ["per_condition"]["accuracy"]["codes"]["1"])
             for start in ("scratch", "shift_sat")}
    assert (np.isclose(auto, fixed["scratch"]) | np.isclose(auto, fixed["shift_sat"])).all()
    starts = {c["code_start"] for c in chosen}
    if len(starts) == 1:
        np.testing.assert_allclose(auto, fixed[starts.pop()])


@pytest.mark.parametrize("value, match", [
    (0, "inner_folds must be 'auto' or an int of at least 1"),
    (2.5, "inner_folds must be 'auto' or an int of at least 1"),
    (True, "inner_folds must be 'auto' or an int of at least 1"),
    ("four", "inner_folds must be 'auto' or an int of at least 1"),
    (9, "inner_folds=9 is more than the 8 training sources of the smallest fold"),
])
def test_bad_inner_folds(shifted, value, match):
    X, y, groups = shifted
    with pytest.raises(ValueError, match=match):
        evaluate(X, y, groups, methods=["si"], folds=3, inner_folds=value)


def test_inner_folds_reach_nested_validation(shifted, monkeypatch, fast):
    from skdc.evaluation import _protocol

    X, y, groups = shifted
    made = []

    class Recording(InnerValidation):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.folds)

    monkeypatch.setattr(_protocol, "InnerValidation", Recording)
    out = evaluate(X, y, groups, shots=(0,), folds=3, repeats=1, methods=["si"],
                   random_state=0, **{**fast, "inner_folds": 3})
    assert made == [3, 3, 3] and out["settings"]["inner_folds"] == 3
    made.clear()  # the default, "auto": a quarter of 8 training conditions is too few
    out = evaluate(X, y, groups, shots=(0,), folds=3, repeats=1, methods=["si"],
                   random_state=0, **{**fast, "inner_folds": "auto"})
    assert made == [4, 4, 4] and out["settings"]["inner_folds"] == 4


@pytest.mark.parametrize("n_sources, folds", [(1, 1), (3, 3), (24, 4), (79, 4), (80, 1),
                                              (155, 1)])
def test_auto_inner_folds_cross_validate_only_when_a_quarter_is_few(n_sources, folds):
    assert inner_folds_for(n_sources) == folds
