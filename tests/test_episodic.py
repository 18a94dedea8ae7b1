"""Episodic (first-order CAVIA-style) training of code networks."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeNetwork, CodeNetworkRegressor
from skdc._synthetic import make_conditions, make_teacher


@pytest.fixture(scope="module")
def data():
    teacher = make_teacher(random_state=0)
    return make_conditions(teacher, n_conditions=24, rows_per_condition=60, random_state=1)


def _episodic(X, y, groups, cls=CodeNetwork, **params):
    net = cls((32,), code_size=3, max_iter=60, random_state=0, training="episodic",
              support_size=5, batch_size=200, learning_rate_init=1e-2, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return net.fit(X, y, groups=groups)


@pytest.fixture(scope="module")
def trained(data):
    X, y, groups, _ = data
    train = groups < 20
    return _episodic(X[train], y[train], groups[train])


def test_adapter_runs_the_inner_procedure_and_adapts(trained, data):
    X, y, groups, _ = data
    adapter = trained.adapter()
    params = adapter.get_params()
    assert (params["optimizer"], params["learning_rate"], params["max_iter"],
            params["alpha"]) == ("gd", 1.0, 5, 0.0)
    z0, steps = trained.code_prior_.mean, np.diag(trained.code_prior_.covariance)
    assert z0.shape == (3,) and np.all(steps > 0)
    gains = []
    for g in range(20, 24):
        new = np.flatnonzero(groups == g)
        fitted = trained.adapter().fit(X[new[:5]], y[new[:5]])
        gains.append(fitted.score(X[new[5:]], y[new[5:]]) - trained.score(X[new[5:]], y[new[5:]]))
    assert np.mean(gains) > 0.1  # five rows, five steps: well above the initial code


def test_one_inner_step_is_a_scaled_gradient_step(trained, data):
    X, y, groups, _ = data
    rows = np.flatnonzero(groups == 21)[:5]
    z0 = trained.code_prior_.mean
    steps = np.diag(trained.code_prior_.covariance)
    one = trained.adapter(max_iter=1).fit(X[rows], y[rows]).code_
    model, index = trained.model_, np.searchsorted(trained.classes_, y[rows])

    def loss(z):
        proba = model.predict([X[rows], np.tile(z, (len(rows), 1))], verbose=0)
        return -np.mean(np.log(proba[np.arange(len(rows)), index].astype(np.float64)))

    eps = 1e-2
    grad = np.array([(loss(z0 + eps * e) - loss(z0 - eps * e)) / (2 * eps)
                     for e in np.eye(3)])
    np.testing.assert_allclose(one, z0 - steps * grad, atol=2e-3)


def test_training_codes_come_from_the_inner_procedure(trained, data):
    X, y, groups, _ = data
    train = groups < 20
    assert sorted(trained.codes_) == list(range(20))
    again = trained.adapter().fit(X[train], y[train], groups=groups[train])
    for g in range(20):
        np.testing.assert_allclose(trained.codes_[g], again.codes_[g], atol=1e-5)


def test_regressor_and_input_shift_train_episodically(data):
    X, y, groups, _ = data
    reg = _episodic(X, y.astype(float), groups, cls=CodeNetworkRegressor, input_shift=2)
    assert len(reg.code_prior_.mean) == 2 + 3 and np.isfinite(reg.loss_curve_).all()


def test_episodic_refuses_early_stopping(data):
    X, y, groups, _ = data
    with pytest.raises(ValueError, match="early_stopping is not available with training="):
        _episodic(X, y, groups, early_stopping=True)


def test_with_units_a_support_set_is_a_few_whole_units_and_the_query_the_others():
    # the defect: support sets were 32 rows from all of a speaker's recordings, while a
    # new speaker's code is learned from the frames of 1-5 recordings (Arabic digits:
    # codes 87.7% at k=1 against si's 93.1%)
    from skdc._episodic import EpisodeSampler

    rng = np.random.default_rng(0)
    group = np.repeat([0, 1], 200)
    units = np.concatenate([np.repeat(np.arange(20), 10), np.repeat(np.arange(20, 40), 10)])
    sampler = EpisodeSampler(group, np.ones(400), units, support=16, support_units=3)
    sizes = set()
    for _ in range(200):
        support, query = sampler.split(1, rng)
        assert np.all(group[support] == 1) and np.all(group[query] == 1)
        chosen = set(units[support])
        sizes.add(len(chosen))
        assert not chosen & set(units[query])
    assert sizes == {1, 2, 3}  # 1 to support_units recordings, as adaptation sees them
    rows = EpisodeSampler(group, np.ones(400), None, support=16, support_units=3)
    support, query = rows.split(0, rng)
    assert len(set(units[support])) > 3  # without units: rows from anywhere, as before
    assert not set(support) & set(query)


def test_episodic_training_takes_units(data):
    X, y, groups, _ = data
    units = np.arange(len(X)) // 5  # five rows a recording

    def fit(**params):
        net = CodeNetwork((32,), code_size=3, max_iter=2, random_state=0, training="episodic",
                          support_size=5, batch_size=200, learning_rate_init=1e-2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return net.set_params(**params).fit(X, y, groups=groups, **(
                {"units": units} if "support_units" in params else {}))

    rows, whole = fit(), fit(support_units=2)
    assert np.all(np.isfinite(whole.loss_curve_))
    assert not np.allclose(whole.code_prior_.mean, rows.code_prior_.mean)
    with pytest.raises(ValueError, match="support_units"):
        fit(support_units=0)


def test_units_of_one_row_each_train_as_rows(data):
    # the defect: evaluate() passes one unit per row when it has no units, and support
    # sets became 1-5 rows (its episodic codes fell to si's level on offset conditions)
    X, y, groups, _ = data

    def fit(**units):
        net = CodeNetwork((32,), code_size=3, max_iter=2, random_state=0, training="episodic",
                          support_size=5, batch_size=200, learning_rate_init=1e-2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return net.fit(X, y, groups=groups, **units)

    rows, single = fit(), fit(units=np.arange(len(X)))
    np.testing.assert_array_equal(single.code_prior_.mean, rows.code_prior_.mean)
    np.testing.assert_array_equal(single.loss_curve_, rows.loss_curve_)
