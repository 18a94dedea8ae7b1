"""Tests of the evaluation's feature normalisation: per speaker from k drawn units,
per utterance, and the Lobanov baseline."""

from dataclasses import replace

import numpy as np
import pytest

from skdc import ConditionNormalizer
from skdc.evaluation import evaluate
from skdc.evaluation._episodes import HeldOut, Layout
from skdc.evaluation._fold import lobanov
from skdc.evaluation._normalisation import Normalisation


def test_lobanov_zscores_each_condition():
    X = np.random.default_rng(0).normal(3, 2, size=(20, 2))
    g = np.repeat([0, 1], 10)
    Z = lobanov(X, g)
    np.testing.assert_allclose(Z[g == 1].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[g == 1].std(axis=0), 1)


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


def test_speaker_normalisation_lifts_si_on_shifted_conditions(shifted, fast):
    """Conditions differ by a feature shift: normalised from k = 8 rows, si improves; at
    k = 0 normalisation is (almost) the identity. Networks and choices are per k."""
    X, y, groups = shifted
    kw = dict(shots=(0, 8), folds=3, repeats=1, methods=["si", "shift"], tune=False,
              random_state=0, **fast)
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
