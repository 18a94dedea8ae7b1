"""Tests of the evaluation's statistics: the paired bootstrap over held-out
conditions (and seeds), the summary, pooling seeds and comparing two methods."""

import json

import numpy as np
import pytest

from skdc.evaluation import compare, evaluate, format_comparison, format_table, pool_seeds
from skdc.evaluation._report import ConditionTable, summarise
from skdc.evaluation._significance import PairedBootstrap, error_reduction


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


@pytest.fixture(scope="module")
def two_seeds(shifted, fast):
    X, y, groups = shifted
    kw = dict(shots=(0, 2), folds=2, repeats=1, methods=["si", "shift"], tune=False, **fast)
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


def test_runs_stored_before_a_setting_was_added_pool_at_its_old_value(two_seeds):
    """A run written before ``shift_covariance`` existed had the per-feature prior: it
    pools with a newer run of ``"diag"``, not with one of ``"full"``."""
    assert two_seeds[1]["settings"]["shift_covariance"] == "diag"
    older = {**two_seeds[0], "settings": {k: v for k, v in two_seeds[0]["settings"].items()
                                          if k != "shift_covariance"}}
    assert pool_seeds([older, two_seeds[1]])["per_condition"]["seeds"] == [0, 1]
    full = {**two_seeds[1], "settings": {**two_seeds[1]["settings"], "shift_covariance": "full"}}
    with pytest.raises(ValueError, match="differs from run 0 in 'settings'"):
        pool_seeds([older, full])


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


def _renamed(run: dict, names: dict) -> dict:
    """``run`` with its methods renamed in ``per_condition`` (a new dict)."""
    accuracy = run["per_condition"]["accuracy"]
    return {**run, "per_condition": {**run["per_condition"], "accuracy": {
        names.get(m, m): by_k for m, by_k in accuracy.items()}}}


def test_compare_takes_the_reference_from_another_run(two_seeds):
    """``reference_results``: a method against one of another run of the same
    evaluation, paired speaker by speaker as if both were in one run."""
    pooled = pool_seeds(two_seeds)
    other = _renamed(pooled, {"shift": "shift_other"})  # "another run"
    merged = {**pooled, "per_condition": {**pooled["per_condition"], "accuracy": {
        **pooled["per_condition"]["accuracy"],
        "si_other": pooled["per_condition"]["accuracy"]["si"]}}}
    across = compare(pooled, "shift", "si", reference_results=other)
    within = compare(merged, "shift", "si_other")
    assert across["k"] == within["k"] and across["reference"] == "si (reference run)"
    assert compare(pooled, "shift", "shift_other",
                   reference_results=other)["k"]["2"]["interval"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="'shift' is not among the methods"):
        compare(pooled, "shift", "shift", reference_results=other)
    with pytest.raises(ValueError, match="the same held-out conditions and seeds"):
        compare(pooled, "shift", "si", reference_results=two_seeds[0])


@pytest.mark.parametrize("change, match", [
    (lambda r: {k: v for k, v in r.items() if k != "per_condition"}, "no 'per_condition'"),
    (lambda r: r, "'codes' is not among the methods"),
])
def test_compare_refuses_what_it_cannot_pair(two_seeds, change, match):
    with pytest.raises(ValueError, match=match):
        compare(change(two_seeds[0]), "codes", "si")
    with pytest.raises(ValueError, match="n_resamples must be a positive int"):
        compare(two_seeds[0], "shift", n_resamples=0)
