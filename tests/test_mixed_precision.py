"""Mixed precision: objective and outputs in float32, codes float32, on every backend."""

import warnings

import keras
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeAdapter, CodeNetwork


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def policy(request):
    before = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy(before)


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)).astype("float32")
    return X, (X[:, 0] > 0).astype(int), np.repeat(np.arange(3), 20)


def test_adapter_on_a_model_with_a_low_precision_output(policy):
    # seeded: the weights came from Keras' global generator, whose state depends on the
    # tests run before; one such state (JAX, the full suite) left a group's code at 0
    keras.utils.set_random_seed(0)
    x, z = keras.Input((3,), name="features"), keras.Input((2,), name="code")
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([x, z]))
    model = keras.Model([x, z], keras.layers.Dense(2, activation="softmax")(h))
    assert model.outputs[0].dtype != "float32"
    X, y, groups = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adapter = CodeAdapter(model, max_iter=20, learning_rate=0.1).fit(X, y, groups=groups)
    proba = adapter.predict_proba(X, groups=groups)
    assert adapter.code_.dtype == np.float64 and np.isfinite(adapter.loss_curve_).all()
    assert adapter.loss_curve_[-1] < adapter.loss_curve_[0]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-2)
    assert all(np.any(c != 0) for c in adapter.codes_.values())


def test_code_network_trains_under_a_mixed_policy(policy):
    X, y, groups = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net = CodeNetwork((8,), code_size=2, max_iter=5, random_state=0).fit(X, y, groups=groups)
    assert np.isfinite(net.loss_curve_).all()
    proba = net.predict_proba(X)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0, atol=1e-2)
    assert net.adapter(max_iter=3).fit(X[:20], y[:20]).code_.shape == (2,)
