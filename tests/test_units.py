"""Unsupervised adaptation over units (e.g. the frames of an utterance): ``fit(units=)``."""

import numpy as np
import pytest

from skdc import CodeAdapter
from skdc._groups import encode_units


@pytest.fixture(scope="module")
def unlabelled(teacher):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    units = np.repeat([f"utt{i}" for i in range(6)], 10)
    return X, units


def _fit(teacher, X, **fit_params):
    adapter = CodeAdapter(teacher, optimizer="lbfgs", max_iter=30, alpha=0.5, diversity=0.7)
    return adapter.fit(X, **fit_params)


def test_one_unit_per_row_is_the_default(teacher, unlabelled):
    X, units = unlabelled
    by_default = _fit(teacher, X).code_
    np.testing.assert_array_equal(by_default, _fit(teacher, X, units=np.arange(len(X))).code_)
    assert not np.allclose(by_default, _fit(teacher, X, units=units).code_, atol=1e-3)


def test_unit_objective_is_the_entropy_of_each_units_prediction(teacher, unlabelled):
    X, units = unlabelled
    adapter = _fit(teacher, X, units=units)
    code = adapter.code_
    logp = np.log(np.clip(teacher.predict([X, np.tile(code, (len(X), 1))], verbose=0),
                          1e-7, 1.0)).astype(np.float64)
    entropy, unit_p = [], []
    for name in np.unique(units):
        mean_logp = logp[units == name].mean(axis=0)
        q = np.exp(mean_logp - np.logaddexp.reduce(mean_logp))
        entropy.append(-(q * np.log(q)).sum())
        unit_p.append(q)
    mean_p = np.mean(unit_p, axis=0)  # units of equal weight
    expected = (np.mean(entropy) + 0.5 * 0.5 / len(X) * np.sum(code ** 2)
                + 0.7 * np.sum(mean_p * np.log(mean_p)))
    np.testing.assert_allclose(adapter.best_loss_, expected, rtol=1e-4)


def test_a_unit_label_in_two_groups_names_two_units():
    index = encode_units(["a", "b", "a", "a"], np.array([0, 0, 1, 0]))
    assert index[0] == index[3] and len({index[0], index[1], index[2]}) == 3
    assert encode_units(None, np.zeros(4, int)) is None


def test_units_of_the_wrong_length_are_refused(teacher, unlabelled):
    X, units = unlabelled
    with pytest.raises(ValueError, match="units has 59 entries but X has 60 rows"):
        _fit(teacher, X, units=units[:-1])


def test_partial_fit_takes_units(teacher, unlabelled):
    """One ``partial_fit`` step with units is the first step of ``fit`` with them."""
    X, units = unlabelled
    kw = dict(optimizer="sgd", learning_rate=0.5, diversity=0.7, random_state=0)
    fitted = CodeAdapter(teacher, max_iter=1, tol=0.0, **kw).fit(X, units=units)
    online = CodeAdapter(teacher, **kw).partial_fit(X, units=units)
    np.testing.assert_allclose(online.code_, fitted.code_, rtol=1e-5, atol=1e-7)
    per_row = CodeAdapter(teacher, **kw).partial_fit(X)
    assert not np.allclose(per_row.code_, online.code_, atol=1e-6)
