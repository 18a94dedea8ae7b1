"""Tests of the evaluation's methods: ``codes`` (its starts, shift part, training,
posterior and prior strength), ``shift``'s prior and the parameter adapters.

Most run on the synthetic *shift* problem (the ``shifted`` fixture of conftest.py):
conditions apart by a feature offset, which codes and a feature shift can undo.
"""

import json

import keras
import numpy as np
import pytest

from skdc._feature_shift import class_residuals, condition_shifts
from skdc.evaluation import METHODS, evaluate
from skdc.evaluation._episodes import Episode
from skdc.evaluation._finetune import ParameterAdapter
from skdc.evaluation._fold import FoldContext, Settings


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


def test_codes_candidates_with_their_own_coded_network(shifted, fast):
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
                   method_params={"codes": candidates}, random_state=0, **fast)
    chosen = out["methods"]["codes"]["chosen"]
    assert len(chosen) == 3  # one choice per fold (which one: test_nested_validation_...)
    assert out["settings"]["candidates"]["codes"] == candidates
    json.dumps(out)


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


def test_codes_with_an_input_shift_do_at_least_what_the_shift_does(shifted, fast):
    # conditions that differ by a feature offset: a code with a shift part holds it
    X, y, groups = shifted
    out = evaluate(X, y, groups, shots=(0, 8), folds=3, repeats=1, tune=False,
                   methods=["codes", "si", "shift"], input_shift="full",
                   prior_shrinkage="oas", method_params={"codes": ("none", 1.0)},
                   random_state=0, **fast)
    assert out["settings"]["input_shift"] == 6 and out["settings"]["prior_shrinkage"] == "oas"
    acc = {m: e["k"]["8"]["accuracy"] for m, e in out["methods"].items()}
    assert acc["codes"] >= acc["shift"] - 0.02 and acc["codes"] > acc["si"] + 0.05


def _assert_codes_adapt(out: dict) -> None:
    """Conditions apart by an offset: codes adapted from 8 rows beat si clearly."""
    acc = {m: e["k"]["8"]["accuracy"] for m, e in out["methods"].items()}
    assert acc["codes"] > acc["si"] + 0.05


def _record_adapters(monkeypatch) -> list:
    """Patches ``CodeNetwork.adapter`` to record ``(network, params, adapter)`` of each
    adapter the protocol makes."""
    from skdc import CodeNetwork

    made = []
    real_adapter = CodeNetwork.adapter

    def adapter(net, **params):
        made.append((net, params, real_adapter(net, **params)))
        return made[-1][2]

    monkeypatch.setattr(CodeNetwork, "adapter", adapter)
    return made


def test_episodic_codes_adapt_by_their_inner_procedure(shifted, monkeypatch, fast):
    X, y, groups = shifted
    made = _record_adapters(monkeypatch)
    out = evaluate(X, y, groups, shots=(0, 8), folds=2, repeats=1, tune=False,
                   methods=["codes", "si"], training="episodic", random_state=0, **fast)
    assert out["settings"]["training"] == "episodic"
    assert made and all(net.training == "episodic" and set(params) <= {"random_state"}
                        for net, params, _ in made)
    _assert_codes_adapt(out)


def test_laplace_posterior_and_evidence_alpha_reach_the_adapters(shifted, monkeypatch, fast):
    X, y, groups = shifted
    made = _record_adapters(monkeypatch)
    out = evaluate(X, y, groups, shots=(8,), folds=2, repeats=1, tune=False,
                   methods=["codes", "si"], posterior="laplace",
                   method_params={"codes": ("none", "evidence")}, random_state=0, **fast)
    assert out["settings"]["posterior"] == "laplace"
    assert out["methods"]["codes"]["chosen"] == [("none", "evidence")] * 2
    assert made and all(params["posterior"] == "laplace" and params["alpha"] == "evidence"
                        for _, params, _ in made)
    _assert_codes_adapt(out)


def test_default_codes_take_the_evidence_prior_strength(shifted, monkeypatch, fast):
    # The default prior strength of codes is the evidence's: no fixed alpha to carry
    # from one data set to another (it did as well as the fixed 4.0 on raw features and
    # better on normalised Arabic digits, README).
    X, y, groups = shifted
    made = _record_adapters(monkeypatch)
    out = evaluate(X, y, groups, shots=(8,), folds=2, repeats=1, tune=False,
                   methods=["codes", "si"], random_state=0, **fast)
    assert METHODS["codes"].default[1] == "evidence"
    assert out["methods"]["codes"]["chosen"] == [METHODS["codes"].default] * 2
    assert made and all(a.alpha == "evidence" and a.alpha_ > 0 for _, _, a in made)
    _assert_codes_adapt(out)


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


def test_shift_covariance_chooses_the_folds_shift_prior(shifted):
    """``Settings.shift_covariance`` is the prior of every shift a fold estimates (the
    ``shift`` method's, ``shift_sat``'s): full covariance matrices with ``"full"``."""
    from skdc import ShiftPrior

    X, y, groups = shifted
    train = groups >= 3
    ctx = FoldContext(X[train], y[train], groups[train], Settings(shift_covariance="full"),
                      seed=0)
    label = np.searchsorted(ctx.classes, y[train])
    g = np.unique(groups[train], return_inverse=True)[1]
    full = ShiftPrior.fit(X[train], label, g, covariance="full")
    np.testing.assert_allclose(ctx.shift_prior.ratio, full.ratio)
    np.testing.assert_allclose(ctx.training_shifts, full.shifts(X[train], label, g, g.max() + 1))
    held = np.flatnonzero(~train)[:4]
    ep = Episode(X[held], y[held], groups[held], X[held], groups[held], n_groups=3)
    np.testing.assert_allclose(
        ctx.episode_shifts(ep),
        full.shifts(X[held], np.searchsorted(ctx.classes, y[held]), groups[held], 3))
    diag = FoldContext(X[train], y[train], groups[train], Settings(), seed=0)
    assert diag.shift_prior.ratio.ndim == 1  # the default: a shrinkage per feature


@pytest.mark.parametrize("kwargs, match", [
    ({"shift_estimate": "closed"}, "shift_estimate must be 'learned' or 'empirical_bayes'"),
    ({"shift_covariance": "tied"}, "shift_covariance must be 'diag' or 'full'"),
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
