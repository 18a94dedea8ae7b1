"""Laplace posteriors over codes and the evidence-maximising prior strength."""

import warnings

import keras
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeAdapter, CodeAdapterRegressor, CodePrior
from skdc._laplace import evidence_alpha, posterior_draws
from skdc._synthetic import make_teacher


def _linear_coded(seed=0):
    """out = x W + z B + b: two linear outputs, a code of two entries."""
    x = keras.Input((3,), name="features")
    z = keras.Input((2,), name="code")
    rows = keras.layers.Dense(2, name="rows")
    code = keras.layers.Dense(2, use_bias=False, name="code_map")
    out = keras.layers.Add()([rows(x), code(z)])
    model = keras.Model([x, z], out)
    rng = np.random.default_rng(seed)
    rows.set_weights([rng.normal(size=(3, 2)), rng.normal(size=2)])
    code.set_weights([np.array([[1.0, 0.5], [-0.3, 2.0]])])
    return model


def test_laplace_covariance_of_a_linear_model_is_the_exact_posterior():
    model = _linear_coded()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = model.predict([X, np.tile([0.5, -1.0], (40, 1))], verbose=0) + rng.normal(
        scale=0.1, size=(40, 2))
    C = np.array([[1.0, 0.3], [0.3, 0.5]])
    adapter = CodeAdapterRegressor(model, code_init=CodePrior(np.zeros(2), C), alpha=2.0,
                                   posterior="laplace", optimizer="lbfgs", max_iter=200)
    adapter.fit(X, y)
    B = model.get_layer("code_map").get_weights()[0]
    # N f = sum_i mean_o r_io^2 + alpha/2 (z - m)^T C^-1 (z - m): Hessian 2N/2 B B^T + alpha C^-1
    expected = np.linalg.inv(40 * B @ B.T + 2.0 * np.linalg.inv(C))
    np.testing.assert_allclose(adapter.code_covariance_, expected, rtol=2e-2, atol=1e-5)
    # a linear model: the mean over the posterior is the prediction of the mean code
    no_posterior = CodeAdapterRegressor(model, code_init=CodePrior(np.zeros(2), C), alpha=2.0,
                                        optimizer="lbfgs", max_iter=200).fit(X, y)
    assert adapter.predict(X).shape == no_posterior.predict(X).shape == (40, 2)
    np.testing.assert_allclose(adapter.predict(X), no_posterior.predict(X), atol=0.05)


@pytest.fixture()
def fitted(teacher, conditions):
    X, y, groups, _ = conditions
    rows = np.concatenate([np.flatnonzero(groups == g)[:n] for g, n in ((0, 2), (1, 40))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adapter = CodeAdapter(teacher, posterior="laplace", optimizer="lbfgs", max_iter=100,
                              random_state=0).fit(X[rows], y[rows], groups=groups[rows])
    return adapter, X, groups


def test_more_rows_make_a_narrower_posterior(fitted):
    adapter, _, _ = fitted
    few, many = adapter.code_covariances_[0], adapter.code_covariances_[1]
    assert np.trace(many) < np.trace(few) / 3
    assert np.all(np.linalg.eigvalsh(few) > 0) and np.all(np.linalg.eigvalsh(many) > 0)
    # unseen groups draw from the prior (the identity of code_init="zeros")
    np.testing.assert_allclose(adapter.code_covariance_, np.eye(3))


def test_predictions_average_over_the_posterior_and_repeat(fitted):
    adapter, X, groups = fitted
    rows = np.flatnonzero(groups < 3)
    proba = adapter.predict_proba(X[rows], groups=groups[rows])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(proba, adapter.predict_proba(X[rows], groups=groups[rows]))
    point = adapter.set_params(posterior=None).predict_proba(X[rows], groups=groups[rows])
    adapter.set_params(posterior="laplace")
    two = groups[rows] == 0  # two rows: a wide posterior moves the average
    forty = groups[rows] == 1  # forty: barely
    gap = np.abs(proba - point).max(axis=1)
    assert gap[two].mean() > 3 * gap[forty].mean()


@pytest.mark.parametrize("n_rows", [30, 2500])  # eager, and compiled in chunks
def test_the_posterior_average_is_the_models_mean_over_the_draws(fitted, teacher, n_rows):
    adapter, X, groups = fitted
    rows = np.random.default_rng(0).integers(0, len(X), n_rows)
    Xr, gr = X[rows], groups[rows]
    proba = adapter.predict_proba(Xr, groups=gr)
    # the draws the adapter takes: its codes and covariances, rng(0), unseen groups the prior
    known = [g for g in np.unique(gr) if g in adapter.codes_]
    table = np.stack([adapter.codes_.get(g, adapter.code_) for g in np.unique(gr)])
    covs = np.stack([adapter.code_covariances_.get(g, adapter.code_covariance_)
                     for g in np.unique(gr)])
    draws = posterior_draws(table, covs, np.random.default_rng(0))
    index = np.searchsorted(np.unique(gr), gr)
    expected = np.mean([teacher.predict([Xr, d[index]], verbose=0, batch_size=4096)
                        for d in draws], axis=0)
    assert known  # some rows use fitted codes, others the prior
    np.testing.assert_allclose(proba, expected, atol=1e-5)


def test_evidence_finds_the_spread_of_the_true_codes(teacher):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 40)
    X = rng.normal(size=(len(groups), 6))
    alphas = {}
    for scale in (1.0, 0.2):
        codes = scale * rng.normal(size=(30, 3))
        y = teacher.predict([X, codes[groups]], verbose=0).argmax(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            adapter = CodeAdapter(teacher, alpha="evidence", optimizer="lbfgs", max_iter=100)
            alphas[scale] = adapter.fit(X, y, groups=groups).alpha_
    assert 0.2 < alphas[1.0] < 5.0  # prior N(0, I / alpha): the true codes' is alpha = 1
    assert alphas[0.2] > 4 * alphas[1.0]  # codes of spread 0.2: alpha near 25


def test_the_evidence_settles_at_a_fixed_point_of_the_exact_update(teacher):
    # After the fit, one exact MacKay update at the fitted codes (prior N(0, I), so the
    # codes are their own whitened coordinates) barely moves alpha_.
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 5)
    X = rng.normal(size=(len(groups), 6))
    y = teacher.predict([X, 0.5 * rng.normal(size=(30, 3))[groups]], verbose=0).argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adapter = CodeAdapter(teacher, alpha="evidence", posterior="laplace",
                              optimizer="lbfgs", max_iter=100).fit(X, y, groups=groups)
    u = np.stack([adapter.codes_[g] for g in range(30)])
    cov = np.stack([adapter.code_covariances_[g] for g in range(30)])
    assert evidence_alpha(adapter.alpha_, u, cov) == pytest.approx(adapter.alpha_, rel=3e-2)


def test_the_evidence_stays_finite_when_the_code_changes_nothing():
    # A model that ignores its code (B = 0): every code stays at the prior mean, MacKay's
    # update has no spread to measure, and the strength grew tenfold a step (to 1e102 on
    # synthetic data in evaluate) until the float32 loss overflowed and the Hessian's
    # eigenvalues failed (LinAlgError). It stops at the update's upper bound instead.
    teacher = make_teacher(random_state=0)
    ignored = teacher.get_layer("hidden_code")
    ignored.set_weights([np.zeros_like(ignored.get_weights()[0])])
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(4), 5)
    X, y = rng.normal(size=(20, 6)), rng.integers(0, 4, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adapter = CodeAdapter(teacher, alpha="evidence", posterior="laplace",
                              optimizer="lbfgs", max_iter=50).fit(X, y, groups=groups)
    assert np.isfinite(adapter.alpha_) and adapter.alpha_ <= 1e4
    unadapted = teacher.predict([X, np.zeros((20, 3))], verbose=0)
    np.testing.assert_allclose(adapter.predict_proba(X, groups=groups), unadapted, atol=1e-6)
    assert evidence_alpha(1e3, np.zeros((4, 3)), np.zeros((4, 3, 3))) == 1e4


def test_posterior_and_evidence_need_fit(teacher, one_condition):
    X, y, _, _, _ = one_condition
    for params in ({"posterior": "laplace"}, {"alpha": "evidence"}):
        with pytest.raises(ValueError, match="need all of a condition's rows in one fit"):
            CodeAdapter(teacher, **params).partial_fit(X, y)


def test_a_units_rows_count_once_in_the_evidence_and_the_posterior(teacher, conditions):
    # Frames of one utterance are not independent evidence: with units, r copies of a
    # row must weigh like that row alone (before, the evidence took them for r rows and
    # drove the prior strength toward zero: Arabic digits at k=1, 88% -> 45%).
    X, y, groups, _ = conditions
    rows = np.concatenate([np.flatnonzero(groups == g)[:3] for g in range(6)])
    r = 20
    copies = np.repeat(rows, r)
    params = dict(alpha="evidence", posterior="laplace", optimizer="lbfgs", max_iter=200,
                  tol=0.0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        single = CodeAdapter(teacher, **params).fit(X[rows], y[rows], groups=groups[rows])
        framed = CodeAdapter(teacher, **params).fit(X[copies], y[copies],
                                                    groups=groups[copies], units=copies)
    assert framed.alpha_ == pytest.approx(r * single.alpha_, rel=2e-2)
    for g in range(6):
        np.testing.assert_allclose(framed.codes_[g], single.codes_[g], atol=2e-3)
        np.testing.assert_allclose(framed.code_covariances_[g], single.code_covariances_[g],
                                   rtol=5e-2, atol=1e-4)
