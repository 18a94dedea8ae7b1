"""Codes in common architectures: retrofit, SAT, adaptation, export and persistence of
CNN, recurrent, attention and residual models on N-D X, on every backend."""

import io
import warnings

import joblib
import keras
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeNetwork, add_condition_codes

T, F = 6, 4


def _conv1d():
    x = keras.Input((T, F))
    h = keras.layers.Conv1D(8, 3, activation="relu", name="conv")(x)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model(x, keras.layers.Dense(3, activation="softmax")(h)), ["conv"]


def _conv2d():
    model = keras.Sequential([keras.Input((T, F, 1)),
                              keras.layers.Conv2D(4, 3, activation="relu", name="conv2d"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    return model, "all"


def _recurrent():
    x = keras.Input((T, F))
    h = keras.layers.LSTM(8, return_sequences=True, name="lstm")(keras.layers.Masking()(x))
    h = keras.layers.GRU(6, name="gru")(h)
    return keras.Model(x, keras.layers.Dense(3, activation="softmax")(h)), ["lstm", "gru"]


def _bidirectional():
    x = keras.Input((T, F))
    h = keras.layers.Bidirectional(keras.layers.LSTM(4), name="bilstm")(x)
    return keras.Model(x, keras.layers.Dense(3, activation="softmax")(h)), ["bilstm"]


def _transformer():
    x = keras.Input((T, F))
    a = keras.layers.MultiHeadAttention(2, 4, name="attention")(x, x)
    h = keras.layers.LayerNormalization()(keras.layers.Add(name="residual")([x, a]))
    h = keras.layers.Dense(8, activation="relu", name="feedforward")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    return (keras.Model(x, keras.layers.Dense(3, activation="softmax")(h)),
            ["attention", "residual", "feedforward"])


BUILDERS = [_conv1d, _conv2d, _recurrent, _bidirectional, _transformer]


def _conditions(shape, n_groups=6, rows=30, seed=0):
    """Conditions apart by a per-condition feature offset, labels from the offset-free
    features."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), rows)
    clean = rng.normal(size=(len(groups), *shape))
    offsets = 2.0 * rng.normal(size=(n_groups, shape[-1]))
    X = (clean + offsets[groups].reshape(-1, *[1] * (len(shape) - 1), shape[-1]))
    score = clean.reshape(len(groups), -1)[:, :3].sum(axis=1)
    y = (score > -0.7).astype(int) + (score > 0.7)  # 3 classes
    return X.astype("float32"), y, groups


@pytest.mark.parametrize("kind", ["add", "scale"])
@pytest.mark.parametrize("build", BUILDERS)
def test_retrofit_reproduces_the_model_at_a_zero_code_and_saves_safely(build, kind, tmp_path):
    keras.utils.set_random_seed(0)
    model, layers = build()
    before = [w.copy() for w in model.get_weights()]
    coded = add_condition_codes(model, 3, layers=layers, kind=kind)
    X = np.random.default_rng(1).normal(size=(5, *model.inputs[0].shape[1:])).astype("float32")
    zero = np.zeros((5, 3), "float32")
    np.testing.assert_array_equal(coded.predict([X, zero], verbose=0), model.predict(X, verbose=0))
    assert [t.name for t in coded.inputs] == ["features", "code"]
    assert all(w.path.endswith("kernel") and "_code" in w.path for w in coded.trainable_weights)
    coded.save(tmp_path / "coded.keras")
    loaded = keras.models.load_model(tmp_path / "coded.keras", safe_mode=True)
    np.testing.assert_array_equal(loaded.predict([X, zero], verbose=0),
                                  model.predict(X, verbose=0))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("build", BUILDERS)
def test_sat_adaptation_export_and_persistence_on_nd_X(build):
    keras.utils.set_random_seed(0)
    model, layers = build()
    shape = tuple(model.inputs[0].shape[1:])
    X, y, groups = _conditions(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net = CodeNetwork(base_model=model, code_size=3, code_layers=layers, max_iter=5,
                          learning_rate_init=1e-2, random_state=0).fit(X, y, groups=groups)
        assert net.n_features_in_ == int(np.prod(shape))
        assert np.isfinite(net.loss_curve_).all() and net.loss_curve_[-1] < net.loss_curve_[0]
        new = groups == 5
        adapter = net.adapter(max_iter=5).fit(X[new][:10], y[new][:10])
    proba = adapter.predict_proba(X[new])
    np.testing.assert_allclose(proba, adapter.predict_proba(X[new].reshape(new.sum(), -1)),
                               rtol=1e-6)
    np.testing.assert_allclose(adapter.to_keras().predict(X[new], verbose=0), proba,
                               rtol=1e-4, atol=1e-5)
    for fitted in (net, adapter):
        buffer = io.BytesIO()
        joblib.dump(fitted, buffer)
        buffer.seek(0)
        np.testing.assert_allclose(joblib.load(buffer).predict_proba(X[new]),
                                   fitted.predict_proba(X[new]), rtol=1e-5, atol=1e-6)


def test_layers_that_cannot_take_a_code_are_refused_by_name():
    inner = keras.Sequential([keras.Input((F,)), keras.layers.Dense(4)], name="block")
    x = keras.Input((F,))
    shared = keras.layers.Dense(F, name="shared")
    h = shared(shared(x))
    model = keras.Model(x, keras.layers.Dense(2)(inner(h)))
    with pytest.raises(ValueError, match="layer 'block' is a nested model"):
        add_condition_codes(model, 2, layers=["block"])
    with pytest.raises(ValueError, match="layer 'shared' is called more than once"):
        add_condition_codes(model, 2, layers=["shared"])
    with pytest.raises(ValueError, match=r"no layers named \['nope'\]"):
        add_condition_codes(model, 2, layers=["nope"])
    with pytest.raises(ValueError, match="kind must be one of"):
        add_condition_codes(_conv1d()[0], 2, layers=["conv"], kind="mul")
    with pytest.raises(ValueError, match="input_shift needs a chain of Dense layers"):
        add_condition_codes(_conv1d()[0], 2, layers=["conv"], input_shift="full")
