"""Tests of skdc.evaluation: the k-shot protocol, the baselines and the report.

The workhorse is the synthetic *shift* problem of :mod:`skdc._synthetic`: every
condition sees the teacher's features shifted by its own code, so conditions matter
and both codes and a feature shift can undo them.
"""

import functools
import json
from dataclasses import replace

import keras
import numpy as np
import pytest

from skdc import ConditionNormalizer
from skdc._feature_shift import class_residuals, condition_shifts
from skdc._synthetic import make_conditions, make_teacher
from skdc.evaluation import (
    METHODS,
    compare,
    evaluate,
    format_comparison,
    format_table,
    plot_results,
    pool_seeds,
)
from skdc.evaluation._baselines import Method, describe_candidates
from skdc.evaluation._episodes import Episode, HeldOut, Layout
from skdc.evaluation._finetune import ParameterAdapter
from skdc.evaluation._fold import FoldContext, Settings, lobanov
from skdc.evaluation._normalisation import Normalisation
from skdc.evaluation._protocol import _draw_conditions, check_inputs
from skdc.evaluation._report import ConditionTable, summarise
from skdc.evaluation._significance import PairedBootstrap, error_reduction
from skdc.evaluation._tuning import InnerValidation, candidates_of, choose, inner_folds_for

SHOTS = (0, 2, 8)
# the coded networks from scratch: what most tests look at (code_start="auto" trains
# the nested validation's networks of both starts; its own tests below)
FAST = dict(hidden_layer_sizes=(32,), max_epochs=40, batch_size=64, learning_rate_init=1e-2,
            adapt_max_iter=50, code_start="scratch", inner_folds=1)


@pytest.fixture(scope="module")
def shifted():
    teacher = make_teacher(shift=True, random_state=0)
    return make_conditions(teacher, n_conditions=12, rows_per_condition=30, shift=True,
                           random_state=1)[:3]


@pytest.fixture(scope="module")
def results(shifted):
    """All methods without nested tuning.

    The fixed defaults were chosen on Hillenbrand (a strong prior, ``alpha=4``); this
    problem's conditions differ far more, so ``codes`` is fixed to what nested validation
    picks here (``tune=True`` costs four times the run time).
    """
    X, y, groups = shifted
    return evaluate(X, y, groups, shots=SHOTS, folds=3, repeats=1, tune=False,
                    method_params={"codes": ("none", 1.0)}, random_state=0, **FAST)


def test_schema(results):
    assert results["n_conditions"] == 12 and results["n_rows"] == 360
    assert results["n_copies"] == 0
    assert results["folds"] == 3 and results["shots"] == list(SHOTS)
    assert set(results["methods"]) == set(METHODS)
    for entry in results["methods"].values():
        assert set(entry["k"]) == {"0", "2", "8"}
        for item in entry["k"].values():
            assert 0 <= item["accuracy"] <= 1 and item["ci95"] >= 0
            assert "error_reduction_vs_si" in item
            low, high = item["error_reduction_vs_si_interval"]
            assert low <= item["error_reduction_vs_si"] <= high
    flagged = {name for name, e in results["methods"].items() if e["transductive"]}
    assert flagged == {"codes_unsup", "lobanov"}
    chosen = {name: e["chosen"] for name, e in results["methods"].items()}
    assert chosen["codes"] == [("none", 1.0)] * 3  # fixed by method_params
    assert chosen["lhuc"] == [METHODS["lhuc"].default] * 3 and chosen["si"] is None
    assert results["settings"]["adapt_tol"] == 1e-5
    assert results["normalize"] is None and results["settings"]["normalizer"] is None
    assert results["settings"]["code_start"] == "scratch"
    assert results["settings"]["n_resamples"] == 1000
    # SI-based methods return si's own predictions at k = 0: no error cut, for sure
    for name in ("si", "lhuc", "finetune_last", "finetune_all"):
        assert results["methods"][name]["k"]["0"]["error_reduction_vs_si_interval"] == [0, 0]
    table = results["per_condition"]
    assert table["seeds"] == [0] and sorted(table["conditions"]) == list(range(12))
    cells = np.array(table["accuracy"]["codes"]["8"])
    assert cells.shape == (1, 12)
    assert round(cells.mean(), 4) == results["methods"]["codes"]["k"]["8"]["accuracy"]
    json.loads(json.dumps(results))  # JSON-ready


def test_every_method_is_sane(results):
    """All methods beat chance (4 classes) clearly. At k = 0 codes predict with the prior
    mean code, the average training condition: a network of its own (not si), no worse
    than si (on this problem 3-4 points better, over random_state 0 and 1)."""
    acc = {m: {k: e["k"][str(k)]["accuracy"] for k in SHOTS}
           for m, e in results["methods"].items()}
    for name in METHODS:
        assert min(acc[name].values()) > 0.4, name
    assert acc["codes"][0] > acc["si"][0] - 0.03


def test_codes_beat_si_where_conditions_matter(results):
    acc = {m: e["k"] for m, e in results["methods"].items()}
    assert acc["codes"]["8"]["accuracy"] > acc["si"]["8"]["accuracy"] + 0.05
    assert acc["codes"]["8"]["error_reduction_vs_si"] > 0.2
    assert acc["codes"]["8"]["accuracy"] > acc["codes"]["2"]["accuracy"]  # more rows help
    # unlabelled rows of the condition carry its shift: codes_unsup gains even at k = 0
    assert acc["codes_unsup"]["0"]["accuracy"] > acc["si"]["0"]["accuracy"]
    assert acc["lobanov"]["0"]["accuracy"] > acc["si"]["0"]["accuracy"]


def test_reproducible_and_paired(shifted):
    X, y, groups = shifted
    kw = dict(shots=(0, 2), folds=2, repeats=1, methods=["si", "lhuc"], tune=False,
              random_state=3, **FAST)
    first, second = evaluate(X, y, groups, **kw), evaluate(X, y, groups, n_jobs=2, **kw)
    assert first["methods"] == second["methods"]  # also with folds in two worker processes


def test_nd_X_is_evaluated_one_example_per_row(shifted):
    X, y, groups = shifted
    kw = dict(shots=(0, 2), folds=2, repeats=1, methods=["si", "shift"], tune=False,
              random_state=0, **FAST)
    utterances = X.reshape(len(X), 1, X.shape[1])  # (n, frames, features)
    assert evaluate(utterances, y, groups, **kw)["methods"] == evaluate(
        X, y, groups, **kw)["methods"]


def test_draws_are_nested_and_seeded():
    g_idx = np.repeat(np.arange(3), 5)
    X, y = np.zeros((15, 1)), np.zeros(15, dtype=int)
    a = HeldOut(X, y, Layout(g_idx), np.array([0, 2]), 2, 7).draws
    b = HeldOut(X, y, Layout(g_idx), np.array([2]), 2, 7).draws
    np.testing.assert_array_equal(a[2][1], b[2][1])  # independent of the other conditions
    assert sorted(a[2][0]) == list(range(10, 15))
    assert not np.array_equal(a[2][0], a[2][1])  # repeats draw different rows


def test_units_are_drawn_and_scored_whole(shifted):
    """Units of 3 rows: k counts units, and a unit's decision sums its rows' log-probas."""
    X, y, groups = shifted
    units = np.arange(len(y)) // 3
    y_units = y[units * 3]  # one label per unit
    out = evaluate(X, y_units, groups, units=units, shots=(0, 2), folds=2, repeats=1,
                   methods=["si", "codes"], tune=False, random_state=0, **FAST)
    assert out["n_units"] == len(y) // 3 and out["n_rows"] == len(y)
    with pytest.raises(ValueError, match="one label"):
        evaluate(X, y, groups, units=units, shots=(0,), folds=2, methods=["si"])
    with pytest.raises(ValueError, match="at least 11 units"):
        evaluate(X, y_units, groups, units=units, shots=(10,), folds=2, methods=["si"])


@pytest.mark.xfail(
    keras.backend.backend() != "tensorflow", strict=False,
    reason="seed-dependent: Keras draws other initial weights on other backends; under JAX the "
    "weak prior loses one fold's inner validation by 0.008 (TensorFlow, random_state 0-3: 12 of "
    "12 folds pick it; JAX: 10 of 12)",
)
def test_nested_tuning_rejects_a_planted_bad_candidate(shifted):
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
                   **FAST)
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


def test_auto_code_start_is_chosen_per_fold_and_scores_as_the_start_chosen(shifted):
    """``code_start="auto"``: each fold's codes score exactly as in a run with the start
    that fold chose; methods without codes are not touched."""
    X, y, groups = shifted
    small = dict(shots=(1,), folds=2, repeats=1, tune=False, methods=["codes", "shift"],
                 method_params={"codes": ("none", 1.0)}, random_state=0,
                 **{**FAST, "max_epochs": 10})
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


def test_method_params_fix_or_list_candidates():
    assert candidates_of(["codes", "lhuc", "si"], {"codes": ("l2", 2), "lhuc": [1, 0.1, 1.0]},
                         tune=True) == {"codes": (("l2", 2.0),), "lhuc": (1.0, 0.1), "si": ()}
    default = candidates_of(["codes", "shift"], None, tune=False)
    assert default == {"codes": (METHODS["codes"].default,), "shift": ("sat",)}
    tuned = candidates_of(["codes", "shift"], {"shift": ["si"]}, tune=True)
    assert tuned == {"codes": METHODS["codes"].grid, "shift": ("si",)}


@pytest.mark.parametrize(
    ("params", "tune", "match"),
    [
        ({"magic": 1.0}, True, "unknown method 'magic'"),
        ({"lhuc": 0.1}, True, "'lhuc', which is not among the methods"),
        ({"si": 1.0}, True, "'si' has no hyperparameter"),
        ({"codes": ["none", 1.0]}, True,
         r"method_params\['codes'\]: candidate 'none' is not valid.*one fixed value is a tuple"),
        ({"codes": ("nothing", 1.0)}, True, r"'codes'\]: value \('nothing', 1.0\).*'dropout'"),
        ({"codes": ("none", -1.0)}, True, "alpha must be a positive"),
        ({"codes": ("none", "mackay")}, True, "alpha must be a positive"),
        ({"codes": ("none", 1.0, 0)}, True, "code_size must be a positive int, got 0"),
        ({"codes": ("none", 1.0, 4, "middle")}, True, "code_layers must be \"all\", \"input\""),
        ({"codes": ("none", 1.0, 4, "all", 1)}, True, r"\(regularisation, alpha, code_size\)"),
        ({"shift": "magic"}, True, "'shift'.*'magic'.*\"si\" or \"sat\""),
        ({"codes": []}, True, "'codes'.*empty"),
        ({"codes": [("none", 1.0), ("l2", 2.0)]}, False, "'codes'.*needs tune=True"),
        ([("codes", 1.0)], True, "must be a dict"),
    ],
)
def test_bad_method_params(shifted, params, tune, match):
    X, y, groups = shifted
    with pytest.raises(ValueError, match=match):
        evaluate(X, y, groups, methods=["codes", "si", "shift"], method_params=params,
                 tune=tune)


def test_methods_are_built_from_the_names_and_refuse_a_gap():
    """``METHODS`` follows the command line's Keras-free names; a name without an
    implementation, or an implementation without a name, stops the import."""
    from skdc._method_names import METHOD_NAMES
    from skdc.evaluation._baselines import registry

    implementations = [type(m) for m in METHODS.values()]
    rebuilt = registry(METHOD_NAMES[::-1], implementations)
    assert list(rebuilt) == list(METHOD_NAMES[::-1])  # the names' order, not the classes'
    assert all(type(rebuilt[name]) is type(METHODS[name]) for name in METHOD_NAMES)
    with pytest.raises(ImportError, match=r"without an implementation: \['lobanov'\]"):
        registry(METHOD_NAMES, [c for c in implementations if c.name != "lobanov"])
    with pytest.raises(ImportError, match=r"without a name: \['lobanov'\]"):
        registry([n for n in METHOD_NAMES if n != "lobanov"], implementations)


def test_every_method_is_documented():
    import skdc.evaluation

    section = skdc.evaluation.__doc__.split("Methods\n-------\n", 1)[1].split("\n\n")[0]
    entries = {line.strip("` ") for line in section.splitlines() if line.startswith("``")}
    documented = {name.strip("` ") for entry in entries for name in entry.split(",")}
    assert documented == set(METHODS)


def test_candidates_in_the_docs_come_from_methods():
    import skdc.evaluation

    text = describe_candidates()
    assert text in skdc.evaluation.__doc__
    words = " ".join(text.split())
    for method in METHODS.values():
        assert method.grid == () or f"Default: {method.format_param(method.default)}." in words
        for param in (*method.grid, *([method.default] if method.grid else [])):
            assert method.check_param(param) == param  # built-in values pass the check
    assert "``lhuc``: prior standard deviation of the amplitude logits ``r``. Candidates: 0.03, " \
           "0.1, 0.3, 1. Default: 0.03." in words


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shots": (0, 30)}, "at least 31 rows"),
        ({"methods": ["codes", "magic"]}, "unknown method 'magic'"),
        ({"folds": 1}, "folds must be"),
        ({"folds": 13}, "folds must be"),
        ({"repeats": 0}, "repeats"),
        ({"shots": (-1,)}, "non-negative"),
    ],
)
def test_bad_inputs(shifted, kwargs, match):
    X, y, groups = shifted
    args = {"shots": (0, 1), "folds": 3, "repeats": 1, "methods": None, **kwargs}
    with pytest.raises(ValueError, match=match):
        check_inputs(X, y, groups, **args)


def test_bad_arrays(shifted):
    X, y, groups = shifted
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate(X_nan, y, groups)
    with pytest.raises(ValueError, match="one entry per row"):
        evaluate(X, y[:-1], groups)


def test_lobanov_zscores_each_condition():
    X = np.random.default_rng(0).normal(3, 2, size=(20, 2))
    g = np.repeat([0, 1], 10)
    Z = lobanov(X, g)
    np.testing.assert_allclose(Z[g == 1].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[g == 1].std(axis=0), 1)


def test_shift_prior_recovers_the_variances():
    """Rows mu_c + s_g + e with known between/within variances (1 and 0.25)."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(200), 10)
    y = np.tile(np.arange(2), 1000)
    X = (np.array([[0.0], [5.0]])[y] + rng.normal(size=(200, 1))[groups]
         + rng.normal(scale=0.5, size=(2000, 1)))
    ctx = FoldContext(X, y, groups, Settings(), seed=0)
    ratio = ctx.shift_prior.ratio
    np.testing.assert_allclose(ratio, 0.25, rtol=0.3)


def test_shift_prior_counts_units_not_rows():
    """Frames of one utterance are not independent evidence of a speaker's shift: an
    utterance of 20 copies of one row is the evidence of that row, in the prior and in
    a held-out condition's shift (counting rows trusted one utterance 20 times over)."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 10)
    y = np.tile(np.arange(2), 200)
    X = (np.array([[0.0], [5.0]])[y] + rng.normal(size=(40, 1))[groups]
         + rng.normal(scale=0.5, size=(400, 1)))
    copies = np.repeat(np.arange(400), 20)  # row i, 20 times: unit i
    one = FoldContext(X, y, groups, Settings(), seed=0)
    many = FoldContext(X[copies], y[copies], groups[copies], Settings(), seed=0,
                       units=copies)
    np.testing.assert_allclose(many.shift_prior.ratio, one.shift_prior.ratio)
    np.testing.assert_allclose(many.training_shifts, one.training_shifts)
    adapt = np.array([0, 11, 12])  # one row of condition 0, two of condition 1
    ep = Episode(X[adapt], y[adapt], np.array([0, 1, 1]), X[:0], groups[:0], n_groups=2)
    ep_many = Episode(X[adapt].repeat(20, axis=0), y[adapt].repeat(20),
                      np.repeat([0, 1, 1], 20), X[:0], groups[:0], n_groups=2,
                      u_adapt=np.repeat(adapt, 20))
    np.testing.assert_allclose(many.episode_shifts(ep_many), one.episode_shifts(ep))


def test_condition_shifts_shrink_few_rows_towards_zero():
    """Residuals s_g + noise: many rows give s_g; one row is shrunk by 1 / (1 + ratio);
    a condition without rows has no shift; ratio 0 is the plain mean."""
    X = np.array([[0.0], [10.0]])[[0, 1] * 200] + 3.0  # both classes shifted by +3
    y = np.tile([0, 1], 200)
    resid = class_residuals(X, y, np.array([[0.0], [10.0]]))
    groups = np.r_[np.zeros(399, int), 1]
    shifts = condition_shifts(resid, groups, 3, ratio=0.25)
    np.testing.assert_allclose(shifts[:, 0], [3 * 399 / 399.25, 3 / 1.25, 0.0])
    np.testing.assert_allclose(condition_shifts(resid, groups, 2)[:, 0], [3.0, 3.0])


@pytest.mark.backend
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("mode", ["lhuc", "finetune_last", "finetune_all"])
def test_parameter_adapter(shifted, mode):
    """A tiny prior keeps the SI network; adaptation lowers the training loss."""
    X, y, groups = shifted
    X = X.astype("float32")
    si = Settings(hidden_layer_sizes=(16,), max_epochs=50).twin(X, y, None, random_state=0)
    adapter = ParameterAdapter(si, mode)
    g = (groups % 3).astype(int)
    log_si = np.log(keras.ops.convert_to_numpy(si(X)))
    u0 = adapter.fit(X, y, g, 3, prior_scale=1e-6, max_iter=20)
    np.testing.assert_allclose(adapter.predict_log_proba(u0, 1e-6, X, g), log_si, atol=1e-4)
    u = adapter.fit(X, y, g, 3, prior_scale=1.0, max_iter=30)
    log_p = adapter.predict_log_proba(u, 1.0, X, g)
    nll = -log_p[np.arange(len(y)), y].mean()
    assert nll < -log_si[np.arange(len(y)), y].mean()


def test_codes_one_grouped_fit_per_episode(shifted):
    """Labelled conditions adapt (each from its own posterior prior, in one fit); a condition
    without labelled rows is scored with the prior mean code, like the network itself."""
    X, y, groups = shifted
    train = groups >= 3
    settings = Settings(hidden_layer_sizes=(16,), max_epochs=30, batch_size=64,
                        learning_rate_init=1e-2, adapt_max_iter=30)
    ctx = FoldContext(X[train], y[train], groups[train], settings, seed=0)
    rows = [np.flatnonzero(groups == g) for g in range(3)]
    adapt = np.concatenate([rows[0][:8], rows[1][:8]])  # condition 2: no labelled rows
    score = np.concatenate([rows[0][8:], rows[1][8:], rows[2]])
    ep = Episode(X[adapt], y[adapt], groups[adapt], X[score], groups[score], n_groups=3)
    param = ("none", 1.0)
    log_p = METHODS["codes"].log_proba(ctx, ep, param)
    np.testing.assert_allclose(np.exp(log_p).sum(axis=1), 1, rtol=1e-5)
    prior_mean = np.log(ctx.code_network("none").predict_proba(ep.X_score))
    unlabelled = ep.g_score == 2
    # the same code through the adapter's split graph and through the whole model: equal up
    # to float32 rounding, which differs a little more under XLA (JAX)
    np.testing.assert_allclose(log_p[unlabelled], prior_mean[unlabelled], rtol=1e-5,
                               atol=1e-6)  # log p near 0: float32 steps of 6e-8
    for g in (0, 1):  # adapted: no longer the prior mean code's prediction
        assert np.abs(log_p[ep.g_score == g] - prior_mean[ep.g_score == g]).max() > 1e-3
    adapted, truth = ~unlabelled, y[score][~unlabelled]
    hits, hits_prior = (ctx.classes[lp[adapted].argmax(axis=1)] == truth
                        for lp in (log_p, prior_mean))
    assert hits.mean() > hits_prior.mean()  # the shifted conditions' 8 rows help


def test_codes_candidates_with_their_own_coded_network(shifted):
    """A codes candidate ``(regularisation, alpha, code_size, code_layers)`` trains and
    uses a coded network of its own; nested validation chooses among them per fold."""
    X, y, groups = shifted
    train = groups >= 3
    ctx = FoldContext(X[train], y[train], groups[train],
                      Settings(hidden_layer_sizes=(8,), code_size=3, max_epochs=5), seed=0)
    own = ctx.code_network("none", 5, "input")
    assert (own.code_size, own.code_layers, own.code_prior_.mean.shape) == (5, "input", (5,))
    assert ctx.code_network("none", 5, "input") is own  # cached
    assert ctx.code_network("none").code_size == 3  # the settings' network is another
    assert ctx.code_network("none", 3, "all") is ctx.code_network("none")  # however spelt
    score = np.flatnonzero(~train)
    ep = Episode(X[:0], y[:0], groups[:0], X[score], groups[score], n_groups=3)
    log_p = METHODS["codes"].log_proba(ctx, ep, ("none", 1.0, 5, "input"))
    np.testing.assert_allclose(log_p, np.log(own.predict_proba(X[score])), rtol=1e-5)

    candidates = [("none", 1.0, 2), ("none", 1.0, 6, (0,))]
    out = evaluate(X, y, groups, shots=(0, 2), folds=3, repeats=1, methods=["codes", "si"],
                   method_params={"codes": candidates}, random_state=0, **FAST)
    chosen = out["methods"]["codes"]["chosen"]
    assert len(chosen) == 3  # one choice per fold (which one: test_nested_validation_...)
    assert out["settings"]["candidates"]["codes"] == candidates
    json.dumps(out)


def test_report(results, tmp_path):
    table = format_table(results)
    assert "codes_unsup *" in table and "k=8" in table and "transductive" in table
    assert "relative error reduction vs si" in table and "paired-bootstrap interval" in table
    item = results["methods"]["codes"]["k"]["8"]
    low, high = (100 * v for v in item["error_reduction_vs_si_interval"])
    assert f"{100 * item['error_reduction_vs_si']:+.1f} [{low:+.1f}, {high:+.1f}]" in table
    assert "+0.0 [+0.0, +0.0]" in table  # lhuc at k = 0
    pytest.importorskip("matplotlib")
    path = tmp_path / "plot.png"
    plot_results(results, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peterson_barney_smoke():
    """Real data: a quick run on Peterson & Barney (needs praat-parselmouth)."""
    pytest.importorskip("parselmouth", reason="Peterson & Barney needs praat-parselmouth")
    from skdc.datasets import load_peterson_barney

    pb = load_peterson_barney()
    out = evaluate(np.log(pb.data), pb.target, pb.groups, shots=(0, 5), folds=2, repeats=1,
                   methods=["codes", "si"], tune=False, hidden_layer_sizes=(16,),
                   max_epochs=30, batch_size=128, learning_rate_init=1e-2, adapt_max_iter=30)
    assert out["n_conditions"] == 76 and out["n_classes"] == 10
    for entry in out["methods"].values():
        for item in entry["k"].values():
            assert 0.5 < item["accuracy"] <= 1  # chance is 0.1


def test_code_given_shift_posterior():
    """Residuals r = A (z - m) + noise: many rows recover z; no rows or noise keep the prior."""
    from skdc.evaluation._fold import CodeGivenShift

    rng = np.random.default_rng(0)
    d, p = 2, 3
    A = rng.normal(size=(p, d))
    mean, cov = np.zeros(d), np.eye(d)
    mu = rng.normal(size=(4, p))  # class means
    z = np.array([1.5, -0.5])
    y = rng.integers(0, 4, size=400)
    X = mu[y] + A @ z + rng.normal(scale=0.3, size=(400, p))
    link = CodeGivenShift(mu, A, 0.09 * np.eye(p), 1e-4 * np.eye(p), mean, cov)
    m400, c400 = link.posterior(X, y)
    np.testing.assert_allclose(m400, z, atol=0.1)
    m4, c4 = link.posterior(X[:4], y[:4])
    assert np.trace(c400) < np.trace(c4) < np.trace(cov)  # more rows, more certainty
    m0, c0 = link.posterior(X[:0], y[:0])
    np.testing.assert_array_equal(m0, mean)
    np.testing.assert_array_equal(c0, cov)
    noisy = CodeGivenShift(mu, A, 1e6 * np.eye(p), 1e6 * np.eye(p), mean, cov)
    np.testing.assert_allclose(noisy.posterior(X, y)[0], mean, atol=1e-3)


@pytest.mark.parametrize("value", [1, 2.5, "all", True])
def test_bad_max_train_conditions(shifted, value):
    X, y, groups = shifted
    with pytest.raises(ValueError, match="max_train_conditions must be an int of at least 2"):
        evaluate(X, y, groups, methods=["si"], max_train_conditions=value)


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


def test_inner_folds_reach_nested_validation(shifted, monkeypatch):
    from skdc.evaluation import _protocol

    X, y, groups = shifted
    made = []

    class Recording(InnerValidation):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.folds)

    monkeypatch.setattr(_protocol, "InnerValidation", Recording)
    out = evaluate(X, y, groups, shots=(0,), folds=3, repeats=1, methods=["si"],
                   random_state=0, **{**FAST, "inner_folds": 3})
    assert made == [3, 3, 3] and out["settings"]["inner_folds"] == 3
    made.clear()  # the default, "auto": a quarter of 8 training conditions is too few
    out = evaluate(X, y, groups, shots=(0,), folds=3, repeats=1, methods=["si"],
                   random_state=0, **{**FAST, "inner_folds": "auto"})
    assert made == [4, 4, 4] and out["settings"]["inner_folds"] == 4


@pytest.mark.parametrize("n_sources, folds", [(1, 1), (3, 3), (24, 4), (79, 4), (80, 1),
                                              (155, 1)])
def test_auto_inner_folds_cross_validate_only_when_a_quarter_is_few(n_sources, folds):
    assert inner_folds_for(n_sources) == folds


def test_training_condition_draws_are_nested_and_keep_whole_conditions():
    g = np.repeat(np.arange(12), 5)
    train = np.flatnonzero(g >= 2)  # conditions 2..11 train
    drawn = {n: _draw_conditions(train, g, n, random_state=0, fold=1) for n in (2, 4, 8)}
    for n, rows in drawn.items():
        kept = np.unique(g[rows])
        assert len(kept) == n and set(kept) <= set(range(2, 12))
        assert len(rows) == 5 * n  # every row of a kept condition
    assert set(drawn[2]) <= set(drawn[4]) <= set(drawn[8])
    other_fold = _draw_conditions(train, g, 4, random_state=0, fold=2)
    assert not np.array_equal(other_fold, drawn[4])
    assert _draw_conditions(train, g, None, 0, 1) is train


def _with_copies(shifted):
    """Every condition of ``shifted`` and a noisy copy of it, named ``"<g>|copy"``."""
    X, y, groups = shifted
    noise = np.random.default_rng(0).normal(scale=0.05, size=X.shape)
    names = groups.astype(str)
    return (np.concatenate([X, X + noise]), np.concatenate([y, y]),
            np.concatenate([names, np.char.add(names, "|copy")]), np.concatenate([names, names]))


def test_copies_train_with_their_source_and_are_never_scored(shifted, monkeypatch):
    """``sources``: folds keep a source with its copies, copies only train, and
    ``max_train_conditions`` counts sources (the augmented audio loaders' layout)."""
    from skdc.evaluation import _protocol

    X, y, groups, sources = _with_copies(shifted)
    folds = []
    real = _protocol._run_fold

    def run_fold(fold, split, *args, **kwargs):
        folds.append(split)
        return real(fold, split, *args, **kwargs)

    monkeypatch.setattr(_protocol, "_run_fold", run_fold)
    out = evaluate(X, y, groups, sources=sources, shots=(0, 2), folds=3, repeats=1,
                   methods=["si"], max_train_conditions=6, random_state=0, **FAST)
    assert out["n_conditions"] == 12 and out["n_copies"] == 12
    assert sorted(out["per_condition"]["conditions"]) == sorted(set(sources))
    for train, test in folds:
        assert set(groups[test]) <= set(sources)  # originals only are held out
        assert not set(sources[train]) & set(sources[test])
        assert len(set(sources[train])) == 6  # 6 sources, each with its copy
        assert len(set(groups[train])) == 12


def test_nested_validation_keeps_sources_whole_and_holds_out_originals(shifted):
    from skdc.evaluation._sources import Sources

    X, y, groups, sources = _with_copies(shifted)
    keys, g_idx = np.unique(groups, return_inverse=True)
    split = Sources(groups, g_idx, sources)
    ctx = FoldContext(X, y, g_idx, Settings(hidden_layer_sizes=(4,), max_epochs=1), seed=0)
    for folds in (1, 3):
        inner = InnerValidation(ctx, np.arange(len(X)), (0, 2), 0, sources=split.of_rows(
            np.arange(len(X))), folds=folds)
        assert len(inner.inner_folds()) == folds
        for inner_ctx, held in inner.inner_folds():
            assert len(held.held) and split.original[held.held].all()
            held_sources = set(sources[np.isin(g_idx, held.held)])
            assert not held_sources & set(sources[np.isin(g_idx, np.unique(inner_ctx.groups))])


@pytest.mark.parametrize("change, match", [
    (lambda s: s[:-1], "sources must have one entry per row of X"),
    (lambda s: np.where(np.arange(len(s)) == len(s) - 1, "0", s), "has rows of several sources"),
    (lambda s: np.where(s == "3", "x", s), "source 'x' has no original condition"),
])
def test_bad_sources(shifted, change, match):
    X, y, groups, sources = _with_copies(shifted)
    with pytest.raises(ValueError, match=match):
        evaluate(X, y, groups, sources=change(sources), methods=["si"], folds=3)


# -- significance -------------------------------------------------------------------------


def test_bootstrap_of_a_method_identical_to_si_is_exactly_zero():
    rng = np.random.default_rng(0)
    si = rng.uniform(0.3, 0.9, size=20)
    bootstrap = PairedBootstrap(20, n_resamples=200, random_state=0)
    assert bootstrap.interval(si, si) == [0.0, 0.0]


def test_bootstrap_of_a_method_right_where_si_errs_on_half_the_conditions():
    """si fails every row of half the conditions and the method none: every resample
    (with an si error) has a cut of 100%; a method that fails where si fails, plus a
    little, has a negative interval."""
    si = np.r_[np.zeros(10), np.ones(10)]
    bootstrap = PairedBootstrap(20, n_resamples=500, random_state=0)
    assert bootstrap.interval(np.ones(20), si) == [1.0, 1.0]
    worse = np.r_[np.zeros(10), np.full(10, 0.9)]
    low, high = bootstrap.interval(worse, si)
    assert low < high < 0
    assert low <= error_reduction(worse, si) <= high


def test_bootstrap_interval_covers_the_estimate_and_narrows_with_conditions():
    rng = np.random.default_rng(1)

    def width(n):
        si = rng.uniform(0.5, 0.9, size=n)
        method = np.clip(si + rng.normal(0.05, 0.05, size=n), 0, 1)
        low, high = PairedBootstrap(n, n_resamples=1000, random_state=0).interval(method, si)
        assert low < error_reduction(method, si) < high
        return high - low

    assert width(400) < width(25) / 2


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(2)
    si, method = rng.uniform(0.5, 0.9, size=(2, 30))
    first = PairedBootstrap(30, random_state=3).interval(method, si)
    assert PairedBootstrap(30, random_state=3).interval(method, si) == first
    assert PairedBootstrap(30, random_state=4).interval(method, si) != first


def test_bootstrap_without_si_errors_has_no_interval():
    bootstrap = PairedBootstrap(5, n_resamples=50, random_state=0)
    assert bootstrap.interval(np.full(5, 0.5), np.ones(5)) is None


def test_bootstrap_over_seeds_widens_when_seeds_disagree():
    """Two seeds whose cuts differ (networks of one seed better than the other's): the
    two-way bootstrap over seeds and conditions is wider than over conditions alone."""
    rng = np.random.default_rng(3)
    si = rng.uniform(0.6, 0.8, size=(1, 40)).repeat(2, axis=0)
    method = si + np.array([[0.02], [0.15]])
    both = PairedBootstrap(40, n_seeds=2, random_state=0).interval(method, si)
    mean_only = PairedBootstrap(40, random_state=0).interval(method.mean(axis=0, keepdims=True),
                                                           si[:1])
    assert (both[1] - both[0]) > 2 * (mean_only[1] - mean_only[0])
    with pytest.raises(ValueError, match="2 seeds x 40 conditions"):
        PairedBootstrap(40, n_seeds=2).interval(method[:1], si[:1])


def test_summary_and_table_of_a_constructed_case():
    """Per-condition scores with a known answer through summarise and format_table."""
    per_condition = {
        "si": {0: {c: [0.0 if c < 2 else 1.0] for c in range(4)}},
        "oracle": {0: {c: [1.0] for c in range(4)}},
    }
    table = ConditionTable.from_scores(per_condition, ["a", "b", "c", "d"], seed=0)
    info = {name: {"transductive": False, "description": "", "chosen": None}
            for name in per_condition}
    methods = summarise(table, info, PairedBootstrap(4, n_resamples=100, random_state=0))
    item = methods["oracle"]["k"]["0"]
    assert item["error_reduction_vs_si"] == 1.0
    assert item["error_reduction_vs_si_interval"] == [1.0, 1.0]
    results = {"shots": [0], "methods": methods}
    assert "+100.0 [+100.0, +100.0]" in format_table(results)


# -- pooling seeds ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_seeds(shifted):
    X, y, groups = shifted
    kw = dict(shots=(0, 2), folds=2, repeats=1, methods=["si", "shift"], tune=False, **FAST)
    return [evaluate(X, y, groups, random_state=seed, **kw) for seed in (0, 1)]


def test_pool_seeds(two_seeds):
    pooled = pool_seeds(two_seeds)
    assert pooled["per_condition"]["seeds"] == [0, 1]
    assert pooled["settings"]["random_state"] == [0, 1]
    for k in ("0", "2"):
        item = pooled["methods"]["shift"]["k"][k]
        mean = np.mean([run["methods"]["shift"]["k"][k]["accuracy"] for run in two_seeds])
        assert item["accuracy"] == pytest.approx(mean, abs=1e-4)
        low, high = item["error_reduction_vs_si_interval"]
        assert low <= item["error_reduction_vs_si"] <= high
    assert pooled["methods"]["shift"]["chosen"] == [["sat", "sat"], ["sat", "sat"]]
    # from the JSON as written, and pooled again with a third seed: the same machinery
    from_json = pool_seeds([json.loads(json.dumps(run)) for run in two_seeds])
    assert from_json["methods"] == json.loads(json.dumps(pooled["methods"]))
    assert pool_seeds([pooled, two_seeds[0]])["per_condition"]["seeds"] == [0, 1, 0]


def test_pool_seeds_refuses_different_evaluations(two_seeds, shifted):
    other = {**two_seeds[1], "shots": [0, 3]}
    with pytest.raises(ValueError, match="run 1 differs from run 0 in 'shots'"):
        pool_seeds([two_seeds[0], other])
    old = {key: value for key, value in two_seeds[1].items() if key != "per_condition"}
    with pytest.raises(ValueError, match="no 'per_condition'"):
        pool_seeds([two_seeds[0], old])
    with pytest.raises(ValueError, match="at least one run"):
        pool_seeds([])


def test_pool_seeds_on_the_shots_the_runs_share(two_seeds):
    """Runs measured at other sets of k pool on the k they share, as if measured alone."""
    full = pool_seeds(two_seeds)
    fewer = {**two_seeds[1], "shots": [2],
             "per_condition": {**two_seeds[1]["per_condition"],
                               "accuracy": {m: {"2": by_k["2"]} for m, by_k in
                                            two_seeds[1]["per_condition"]["accuracy"].items()}}}
    pooled = pool_seeds([two_seeds[0], fewer], shots=[2])
    assert pooled["shots"] == [2] and list(pooled["methods"]["shift"]["k"]) == ["2"]
    assert pooled["methods"]["shift"]["k"]["2"] == full["methods"]["shift"]["k"]["2"]
    assert list(two_seeds[0]["methods"]["shift"]["k"]) == ["0", "2"]  # inputs untouched
    with pytest.raises(ValueError, match="run 1 measured k = \\[2\\], not 0"):
        pool_seeds([two_seeds[0], fewer], shots=[0, 2])
    with pytest.raises(ValueError, match="non-empty subset"):
        pool_seeds(two_seeds, shots=[])


def test_compare_against_si_is_the_error_reduction_vs_si(two_seeds):
    """Same cut and, with the same resamples, the same interval as the summary's."""
    pooled = pool_seeds(two_seeds)
    comparison = compare(pooled, "shift")
    assert comparison["seeds"] == [0, 1] and list(comparison["k"]) == ["0", "2"]
    for k, item in comparison["k"].items():
        summary = pooled["methods"]["shift"]["k"][k]
        assert item["error_reduction"] == pytest.approx(summary["error_reduction_vs_si"],
                                                        abs=1e-4)
        assert item["interval"] == pytest.approx(summary["error_reduction_vs_si_interval"],
                                                 abs=1e-4)
        alone = [compare(run, "shift", random_state=seed)["k"][k]["error_reduction"]
                 for seed, run in enumerate(two_seeds)]
        assert item["per_seed"] == pytest.approx(alone, abs=1e-4)
        if k == "0":  # no adaptation rows: the shift is si
            assert item["error_reduction"] == 0.0 and item["interval"] == [0.0, 0.0]


def test_compare_two_methods_is_antisymmetric_in_sign(two_seeds):
    pooled = pool_seeds(two_seeds)
    forward = compare(pooled, "shift", "si")["k"]["2"]
    backward = compare(pooled, "si", "shift")["k"]["2"]
    assert forward["error_reduction"] > 0 > backward["error_reduction"]
    assert compare(pooled, "shift", "shift")["k"]["2"]["interval"] == [0.0, 0.0]
    text = format_comparison(compare(pooled, "shift", "si"))
    assert text.startswith("shift against si") and "seeds" in text.splitlines()[2]
    assert f"{100 * forward['error_reduction']:+6.1f}" in text


@pytest.mark.parametrize("change, match", [
    (lambda r: {k: v for k, v in r.items() if k != "per_condition"}, "no 'per_condition'"),
    (lambda r: r, "'codes' is not among the methods"),
])
def test_compare_refuses_what_it_cannot_pair(two_seeds, change, match):
    with pytest.raises(ValueError, match=match):
        compare(change(two_seeds[0]), "codes", "si")
    with pytest.raises(ValueError, match="n_resamples must be a positive int"):
        compare(two_seeds[0], "shift", n_resamples=0)


# -- normalisation ------------------------------------------------------------------------


def _speaker_layout(n_conditions=3, units_per_condition=4, rows_per_unit=2):
    g = np.repeat(np.arange(n_conditions), units_per_condition * rows_per_unit)
    units = np.arange(len(g)) // rows_per_unit
    return g, units, Layout(g, units)


def test_speaker_normalisation_of_training_conditions_from_k_drawn_units():
    """Each training condition is centred with the mean of k of its units (drawn with a
    seed, nested in k); k = 0 leaves the (standardised) rows at the global mean."""
    g, units, layout = _speaker_layout()
    X = np.random.default_rng(0).normal(size=(len(g), 2)) + 10 * g[:, None]
    norm = Normalisation("speaker", ConditionNormalizer(tau=0.0), layout, random_state=5)
    train = np.arange(len(g))
    assert norm.views([0, 1, 3]) == [(0,), (1,), (3,)]
    for k in (1, 3):
        out = norm.training(X, train, k)
        for c in range(3):
            drawn = layout.rows(norm.units_drawn(c)[:k])
            np.testing.assert_allclose(out[drawn].mean(axis=0), 0, atol=1e-12)
            shift = X[g == c] - out[g == c]  # one shift for all the condition's rows
            np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape))
    np.testing.assert_allclose(norm.training(X, train, 0), X - X.mean(axis=0))
    again = Normalisation("speaker", ConditionNormalizer(), layout, random_state=5)
    np.testing.assert_array_equal(again.units_drawn(1), norm.units_drawn(1))


def test_speaker_normalisation_of_episodes_uses_adaptation_rows_only():
    """A held-out condition is centred with its k adaptation units' mean (labels unused),
    its scored rows too; with k = 0, the global mean of the training rows."""
    g, units, layout = _speaker_layout()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(len(g), 2)) + 10 * g[:, None]
    y = rng.integers(0, 2, size=len(g))
    y = y[units * 2]  # one label per unit
    norm = Normalisation("speaker", ConditionNormalizer(), layout, random_state=0)
    train = g == 0
    transform = norm.episode_transform(X[train], g[train], units[train])
    held = HeldOut(X, y, layout, np.array([1, 2]), 2, 0, transform)
    raw = HeldOut(X, y, layout, np.array([1, 2]), 2, 0)
    ep, _ = held.episode(1, 2)
    ep_raw, _ = raw.episode(1, 2)
    for c in range(2):
        adapt, score = ep_raw.g_adapt == c, ep_raw.g_score == c
        mean = ep_raw.X_adapt[adapt].mean(axis=0)
        np.testing.assert_allclose(ep.X_adapt[adapt], ep_raw.X_adapt[adapt] - mean)
        np.testing.assert_allclose(ep.X_score[score], ep_raw.X_score[score] - mean)
    relabelled = transform(replace(ep_raw, y_adapt=1 - ep_raw.y_adapt))
    np.testing.assert_array_equal(relabelled.X_score, ep.X_score)
    ep0, _ = held.episode(0, 0)
    ep0_raw, _ = raw.episode(0, 0)
    np.testing.assert_allclose(ep0.X_score, ep0_raw.X_score - X[train].mean(axis=0))


def test_auto_tau_counts_units_not_rows():
    """tau="auto" is the empirical-Bayes ratio on the units' mean rows, in rows: units of
    4 identical rows give 4 times the tau of one row per unit."""
    rng = np.random.default_rng(3)
    g, units, layout = _speaker_layout(n_conditions=40, units_per_condition=10,
                                       rows_per_unit=1)
    X = rng.normal(size=(40, 2))[g] + rng.normal(scale=2, size=(len(g), 2))
    norm = Normalisation("speaker", ConditionNormalizer(tau="auto"), layout, 0)
    reference, tau = norm.statistics(X, g, units)
    expected = ConditionNormalizer(tau="auto").fit(X, groups=g).tau_
    np.testing.assert_allclose(tau, expected)
    np.testing.assert_allclose(reference.mean, X.mean(axis=0))
    X4, g4, units4 = (np.repeat(a, 4, axis=0) for a in (X, g, units))
    _, tau4 = norm.statistics(X4, g4, units4)
    np.testing.assert_allclose(tau4, 4 * expected)


def test_utterance_normalisation_centres_every_unit():
    g, units, layout = _speaker_layout(rows_per_unit=3)
    X = np.random.default_rng(2).normal(size=(len(g), 2)) + units[:, None]
    norm = Normalisation("utterance", ConditionNormalizer(kind="meanvar"), layout, 0)
    out = norm.fold_features(X, np.flatnonzero(g > 0))
    for u in np.unique(units):
        np.testing.assert_allclose(out[units == u].mean(axis=0), 0, atol=1e-12)
        np.testing.assert_allclose(out[units == u].std(axis=0), 1)
    assert norm.views([0, 2]) == [(0, 2)]
    auto = Normalisation("utterance", ConditionNormalizer(tau="auto"), layout, 0)
    assert np.all(np.isfinite(auto.fold_features(X, np.flatnonzero(g > 0))))
    assert norm.episode_transform(X, g, units) is None
    np.testing.assert_array_equal(norm.training(out, np.arange(4), 2), out[:4])


def test_speaker_normalisation_lifts_si_on_shifted_conditions(shifted):
    """Conditions differ by a feature shift: normalised from k = 8 rows, si improves; at
    k = 0 normalisation is (almost) the identity. Networks and choices are per k."""
    X, y, groups = shifted
    kw = dict(shots=(0, 8), folds=3, repeats=1, methods=["si", "shift"], tune=False,
              random_state=0, **FAST)
    plain = evaluate(X, y, groups, **kw)
    normalised = evaluate(X, y, groups, normalize="speaker", **kw)
    si, si_plain = (r["methods"]["si"]["k"] for r in (normalised, plain))
    assert si["8"]["accuracy"] > si_plain["8"]["accuracy"] + 0.1
    assert abs(si["0"]["accuracy"] - si_plain["0"]["accuracy"]) < 0.02
    assert normalised["normalize"] == "speaker"
    assert normalised["settings"]["normalizer"] == {"kind": "mean", "tau": "auto"}
    assert normalised["methods"]["shift"]["chosen"] == ["sat"] * 3
    assert "error_reduction_vs_si_interval" in normalised["methods"]["shift"]["k"]["8"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"normalize": "utterance"}, "normalize='utterance' needs units="),
        ({"normalize": "frame"}, "normalize must be None, 'utterance' or 'speaker'"),
        ({"normalizer": ConditionNormalizer()}, "normalizer is given but normalize is None"),
        ({"normalize": "speaker", "normalizer": "meanvar"}, "must be a skdc.ConditionNormalizer"),
        ({"normalize": "speaker", "normalizer": ConditionNormalizer(tau=-1)}, "tau"),
        ({"n_resamples": 0}, "n_resamples must be a positive int"),
    ],
)
def test_bad_normalize(shifted, kwargs, match):
    X, y, groups = shifted
    with pytest.raises(ValueError, match=match):
        evaluate(X, y, groups, methods=["si"], **kwargs)


def test_codes_with_an_input_shift_do_at_least_what_the_shift_does(shifted):
    # conditions that differ by a feature offset: a code with a shift part holds it
    X, y, groups = shifted
    out = evaluate(X, y, groups, shots=(0, 8), folds=3, repeats=1, tune=False,
                   methods=["codes", "si", "shift"], input_shift="full",
                   prior_shrinkage="oas", method_params={"codes": ("none", 1.0)},
                   random_state=0, **FAST)
    assert out["settings"]["input_shift"] == 6 and out["settings"]["prior_shrinkage"] == "oas"
    acc = {m: e["k"]["8"]["accuracy"] for m, e in out["methods"].items()}
    assert acc["codes"] >= acc["shift"] - 0.02 and acc["codes"] > acc["si"] + 0.05


def test_episodic_codes_adapt_by_their_inner_procedure(shifted, monkeypatch):
    X, y, groups = shifted
    from skdc import CodeNetwork

    fitted = []
    real_adapter = CodeNetwork.adapter

    def adapter(net, **params):
        fitted.append((net.training, params))
        return real_adapter(net, **params)

    monkeypatch.setattr(CodeNetwork, "adapter", adapter)
    out = evaluate(X, y, groups, shots=(0, 8), folds=2, repeats=1, tune=False,
                   methods=["codes", "si"], training="episodic", random_state=0, **FAST)
    assert out["settings"]["training"] == "episodic"
    assert fitted and all(t == "episodic" and set(p) <= {"random_state"} for t, p in fitted)
    acc = {m: e["k"]["8"]["accuracy"] for m, e in out["methods"].items()}
    assert acc["codes"] > acc["si"] + 0.05  # conditions apart by an offset: codes adapt


def test_laplace_posterior_and_evidence_alpha_reach_the_adapters(shifted, monkeypatch):
    from skdc import CodeNetwork

    X, y, groups = shifted
    fitted = []
    real_adapter = CodeNetwork.adapter

    def adapter(net, **params):
        fitted.append(params)
        return real_adapter(net, **params)

    monkeypatch.setattr(CodeNetwork, "adapter", adapter)
    out = evaluate(X, y, groups, shots=(8,), folds=2, repeats=1, tune=False,
                   methods=["codes", "si"], posterior="laplace",
                   method_params={"codes": ("none", "evidence")}, random_state=0, **FAST)
    assert out["settings"]["posterior"] == "laplace"
    assert out["methods"]["codes"]["chosen"] == [("none", "evidence")] * 2
    assert fitted and all(p["posterior"] == "laplace" and p["alpha"] == "evidence"
                          for p in fitted)
    acc = {m: e["k"]["8"]["accuracy"] for m, e in out["methods"].items()}
    assert acc["codes"] > acc["si"] + 0.05  # conditions apart by an offset: codes adapt


def test_default_codes_take_the_evidence_prior_strength(shifted, monkeypatch):
    # The default prior strength of codes is the evidence's: no fixed alpha to carry
    # from one data set to another (it did as well as the fixed 4.0 on raw features and
    # better on normalised Arabic digits, README).
    from skdc import CodeNetwork

    X, y, groups = shifted
    adapters = []
    real_adapter = CodeNetwork.adapter

    def adapter(net, **params):
        adapters.append(real_adapter(net, **params))
        return adapters[-1]

    monkeypatch.setattr(CodeNetwork, "adapter", adapter)
    out = evaluate(X, y, groups, shots=(8,), folds=2, repeats=1, tune=False,
                   methods=["codes", "si"], random_state=0, **FAST)
    assert METHODS["codes"].default[1] == "evidence"
    assert out["methods"]["codes"]["chosen"] == [METHODS["codes"].default] * 2
    assert adapters and all(a.alpha == "evidence" and a.alpha_ > 0 for a in adapters)
    acc = {m: e["k"]["8"]["accuracy"] for m, e in out["methods"].items()}
    assert acc["codes"] > acc["si"] + 0.05  # conditions apart by an offset: codes adapt


def _held_out_hits(ctx, data, train, params: dict) -> dict:
    """Accuracy of each method (``{name: param}``) on the conditions outside ``train``,
    adapted on 8 rows of each of them (conditions 0-2) and scored on the rest."""
    X, y, groups = data
    held = np.flatnonzero(~train)
    adapt = np.concatenate([held[groups[held] == g][:8] for g in range(3)])
    score = np.setdiff1d(held, adapt)
    ep = Episode(X[adapt], y[adapt], groups[adapt], X[score], groups[score], n_groups=3)
    return {name: np.mean(ctx.classes[METHODS[name].log_proba(ctx, ep, param).argmax(axis=1)]
                          == y[score])
            for name, param in params.items()}


@pytest.mark.parametrize("start", ["si", "frozen_si"])
def test_coded_networks_start_from_the_si_network(shifted, start):
    """``code_start``: the coded network is the fold's SI twin with zero ``B_l``, trained
    on with the codes (``"si"``) or with only the ``B_l`` and codes (``"frozen_si"``:
    the twin's weights unchanged); its codes adapt like a network of its own."""

    X, y, groups = shifted
    train = groups >= 3
    settings = Settings(hidden_layer_sizes=(16,), code_size=3, max_epochs=30,
                        learning_rate_init=1e-2, code_start=start,
                        input_shift=6 if start == "frozen_si" else None)
    ctx = FoldContext(X[train], y[train], groups[train], settings, seed=0)
    net = ctx.code_network("none")
    # a shift part is a feature shift for fit (not a hidden code: no L2, no dropout)
    assert net.input_shift_ == (settings.input_shift or 0)
    coded = {w.path: np.asarray(w) for w in net.model_.weights}
    kept = [np.array_equal(coded[w.path], np.asarray(w)) for w in ctx.si_network.weights]
    # "frozen_si": every SI weight is in the coded network, unchanged; "si": trained on
    assert all(kept) if start == "frozen_si" else not any(kept)
    hits = _held_out_hits(ctx, shifted, train, {"codes": ("none", 1.0), "si": None})
    assert hits["codes"] > hits["si"] + 0.05  # conditions apart by an offset: codes adapt


def test_codes_on_top_of_the_shift_do_what_the_shift_does(shifted):
    """``code_start="shift_sat"``: the frozen network of ``shift``'s ``"sat"`` with codes,
    learned and adapted on shift-normalised features: at least as good as the shift."""

    X, y, groups = shifted
    train = groups >= 3
    settings = Settings(hidden_layer_sizes=(16,), code_size=3, max_epochs=30,
                        learning_rate_init=1e-2, code_start="shift_sat")
    ctx = FoldContext(X[train], y[train], groups[train], settings, seed=0)
    net = ctx.code_network("none")
    coded = {w.path: np.asarray(w) for w in net.model_.weights}
    for w in ctx.shift_network.weights:  # the shift network, frozen
        np.testing.assert_array_equal(coded[w.path], np.asarray(w))
    hits = _held_out_hits(ctx, shifted, train,
                          {"codes": ("none", 1.0), "shift": "sat", "si": None})
    assert hits["codes"] >= hits["shift"] - 0.02 and hits["codes"] > hits["si"] + 0.05
    # without labelled rows there is no shift to remove: codes are si, as shift is
    held = ~train
    ep = Episode(X[:0], y[:0], groups[:0], X[held], groups[held], n_groups=3)
    np.testing.assert_array_equal(METHODS["codes"].log_proba(ctx, ep, ("none", 1.0)),
                                  METHODS["si"].log_proba(ctx, ep, None))


@pytest.mark.parametrize("training", ["joint", "staged"])
def test_codes_with_an_estimated_shift_part_do_what_the_shift_does(shifted, training):
    """``shift_estimate="empirical_bayes"``: the library's codes on top of the shift
    (the shift part estimated as ``shift`` estimates it, held fixed) in the protocol;
    without labelled rows there is no shift to remove: codes are si, as shift is."""
    X, y, groups = shifted
    train = groups >= 3
    settings = Settings(hidden_layer_sizes=(16,), code_size=3, max_epochs=30,
                        learning_rate_init=1e-2, input_shift=X.shape[1],
                        shift_estimate="empirical_bayes", training=training)
    ctx = FoldContext(X[train], y[train], groups[train], settings, seed=0)
    net = ctx.code_network("none")
    shifts = np.stack([net.codes_[g][: X.shape[1]] for g in np.unique(groups[train])])
    np.testing.assert_allclose(shifts, -ctx.training_shifts, atol=1e-5)  # shift's own
    hits = _held_out_hits(ctx, shifted, train,
                          {"codes": ("none", 1.0), "shift": "sat", "si": None})
    assert hits["codes"] >= hits["shift"] - 0.02 and hits["codes"] > hits["si"] + 0.05
    ep = Episode(X[:0], y[:0], groups[:0], X[~train], groups[~train], n_groups=3)
    np.testing.assert_array_equal(METHODS["codes"].log_proba(ctx, ep, ("none", 1.0)),
                                  METHODS["si"].log_proba(ctx, ep, None))


@pytest.mark.parametrize("kwargs, match", [
    ({"shift_estimate": "closed"}, "shift_estimate must be 'learned' or 'empirical_bayes'"),
    ({"shift_estimate": "empirical_bayes"}, "it needs an input_shift and training='joint' or"),
    ({"training": "staged", "code_start": "shift_sat"}, "training='staged' trains its own"),
    ({"code_start": "warm"}, "code_start must be 'auto' or one of 'scratch', 'si', "
                             "'frozen_si', 'shift_sat'"),
    ({"code_start": []}, "or a non-empty list of code starts; got \\[\\]"),
    ({"code_start": ["scratch", "shift_sat"], "input_shift": 2},
     "code_start='shift_sat' does not take an input_shift"),
    ({"code_start": "si", "input_shift": "full"}, "code_start='si' does not take an input_shift"),
    ({"code_start": "shift_sat", "input_shift": 2}, "'shift_sat' does not take an input_shift"),
    ({"posterior": "mc"}, "posterior must be None or 'laplace'"),
    ({"prior_shrinkage": "lw"}, "prior_shrinkage must be a number in \\[0, 1\\], 'oas'"),
    ({"prior_shrinkage": 2.0}, "prior_shrinkage must be"),
    ({"input_shift": 4}, "input_shift=4 must be a positive divisor of the number of features"),
    ({"training": "maml"}, "training must be 'joint', 'staged' or 'episodic'"),
])
def test_bad_code_settings_are_refused_before_training(shifted, kwargs, match):
    X, y, groups = shifted
    with pytest.raises(ValueError, match=match):
        evaluate(X, y, groups, shots=(0, 1), folds=3, repeats=1, tune=False, **kwargs)
