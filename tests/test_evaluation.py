"""Tests of skdc.evaluation's k-shot protocol: its output, draws, inputs, methods' registry,
sources and report.

The workhorse is the synthetic *shift* problem of :mod:`skdc._synthetic` (the ``shifted``
fixture of conftest.py): every condition sees the teacher's features shifted by its own
code, so conditions matter and both codes and a feature shift can undo them.
"""

import json

import numpy as np
import pytest

from skdc.evaluation import METHODS, evaluate, format_table, plot_results
from skdc.evaluation._baselines import describe_candidates
from skdc.evaluation._episodes import HeldOut, Layout
from skdc.evaluation._fold import FoldContext, Settings
from skdc.evaluation._protocol import _draw_conditions, check_inputs
from skdc.evaluation._tuning import InnerValidation, candidates_of

SHOTS = (0, 2, 8)


@pytest.fixture(scope="module")
def results(shifted, fast):
    """All methods without nested tuning.

    The fixed defaults were chosen on Hillenbrand (a strong prior, ``alpha=4``); this
    problem's conditions differ far more, so ``codes`` is fixed to what nested validation
    picks here (``tune=True`` costs four times the run time).
    """
    X, y, groups = shifted
    return evaluate(X, y, groups, shots=SHOTS, folds=3, repeats=1, tune=False,
                    method_params={"codes": ("none", 1.0)}, random_state=0, **fast)


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


def test_reproducible_and_paired(shifted, fast):
    X, y, groups = shifted
    kw = dict(shots=(0, 2), folds=2, repeats=1, methods=["si", "lhuc"], tune=False,
              random_state=3, **fast)
    first, second = evaluate(X, y, groups, **kw), evaluate(X, y, groups, n_jobs=2, **kw)
    assert first["methods"] == second["methods"]  # also with folds in two worker processes


def test_nd_X_is_evaluated_one_example_per_row(shifted, fast):
    X, y, groups = shifted
    kw = dict(shots=(0, 2), folds=2, repeats=1, methods=["si", "shift"], tune=False,
              random_state=0, **fast)
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


def test_units_are_drawn_and_scored_whole(shifted, fast):
    """Units of 3 rows: k counts units, and a unit's decision sums its rows' log-probas."""
    X, y, groups = shifted
    units = np.arange(len(y)) // 3
    y_units = y[units * 3]  # one label per unit
    out = evaluate(X, y_units, groups, units=units, shots=(0, 2), folds=2, repeats=1,
                   methods=["si", "codes"], tune=False, random_state=0, **fast)
    assert out["n_units"] == len(y) // 3 and out["n_rows"] == len(y)
    with pytest.raises(ValueError, match="one label"):
        evaluate(X, y, groups, units=units, shots=(0,), folds=2, methods=["si"])
    with pytest.raises(ValueError, match="at least 11 units"):
        evaluate(X, y_units, groups, units=units, shots=(10,), folds=2, methods=["si"])


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
    """Real data: a quick run on Peterson & Barney (needs praat-parselmouth). One code
    start and one inner split: the default chooses the start by four inner splits per fold
    here, each training the networks of both starts, and is tested on its own."""
    pytest.importorskip("parselmouth", reason="Peterson & Barney needs praat-parselmouth")
    from skdc.datasets import load_peterson_barney

    pb = load_peterson_barney()
    out = evaluate(np.log(pb.data), pb.target, pb.groups, shots=(0, 5), folds=2, repeats=1,
                   methods=["codes", "si"], tune=False, hidden_layer_sizes=(16,),
                   max_epochs=30, batch_size=128, learning_rate_init=1e-2, adapt_max_iter=30,
                   code_start="scratch", inner_folds=1)
    assert out["n_conditions"] == 76 and out["n_classes"] == 10
    for entry in out["methods"].values():
        for item in entry["k"].values():
            assert 0.5 < item["accuracy"] <= 1  # chance is 0.1


@pytest.mark.parametrize("value", [1, 2.5, "all", True])
def test_bad_max_train_conditions(shifted, value):
    X, y, groups = shifted
    with pytest.raises(ValueError, match="max_train_conditions must be an int of at least 2"):
        evaluate(X, y, groups, methods=["si"], max_train_conditions=value)


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


def test_copies_train_with_their_source_and_are_never_scored(shifted, monkeypatch, fast):
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
                   methods=["si"], max_train_conditions=6, random_state=0, **fast)
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
