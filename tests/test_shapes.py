"""X shaped like the model's feature input: N-D arrays and dicts, on every backend."""

import io
import warnings

import joblib
import keras
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeAdapter

T, F = 6, 4


def _per_frame_code(x, z):
    """The code concatenated to every frame."""
    return keras.layers.Concatenate()([x, keras.layers.RepeatVector(T)(z)])


def _conv1d():
    x, z = keras.Input((T, F), name="features"), keras.Input((2,), name="code")
    h = keras.layers.Conv1D(8, 3, activation="relu")(_per_frame_code(x, z))
    h = keras.layers.GlobalAveragePooling1D()(h)
    return keras.Model([x, z], keras.layers.Dense(3, activation="softmax")(h))


def _masked_lstm():
    x, z = keras.Input((T, F), name="features"), keras.Input((2,), name="code")
    h = keras.layers.LSTM(8)(_per_frame_code(keras.layers.Masking()(x), z))
    return keras.Model([x, z], keras.layers.Dense(3, activation="softmax")(h))


def _conv2d():
    x, z = keras.Input((T, F, 1), name="features"), keras.Input((2,), name="code")
    h = keras.layers.Conv2D(4, 3, activation="relu")(x)
    h = keras.layers.Concatenate()([keras.layers.Flatten()(h), z])
    return keras.Model([x, z], keras.layers.Dense(3, activation="softmax")(h))


def _fit(model, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return CodeAdapter(model, max_iter=10, learning_rate=0.1, random_state=0, **kw).fit(X, y)


def _reloaded(estimator):
    """``estimator`` through a joblib round trip."""
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer)
    buffer.seek(0)
    return joblib.load(buffer)


@pytest.mark.parametrize("build", [_conv1d, _masked_lstm, _conv2d])
def test_nd_X_fits_predicts_exports_and_persists(build):
    keras.utils.set_random_seed(0)
    model = build()
    shape = tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, *shape)).astype("float32")
    if build is _masked_lstm:
        X[:10, 4:] = 0.0  # padded frames, masked
    y = np.arange(30) % 3
    adapter = _fit(model, X, y)
    flat = _fit(model, X.reshape(30, -1), y)
    np.testing.assert_array_equal(adapter.code_, flat.code_)
    proba = adapter.predict_proba(X)
    np.testing.assert_allclose(proba, adapter.predict_proba(X.reshape(30, -1)), rtol=1e-6)
    expected = model.predict([X, np.tile(adapter.code_, (30, 1))], verbose=0)
    np.testing.assert_allclose(proba, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(adapter.to_keras().predict(X, verbose=0), proba,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_reloaded(adapter).predict_proba(X), proba, rtol=1e-6)


def test_a_wrong_shape_names_both_shapes():
    X = np.zeros((5, T + 1, F), "float32")
    with pytest.raises(ValueError, match=r"X has shape \(5, 7, 4\), but the model's feature "
                                         r"input takes \(None, 6, 4\)"):
        CodeAdapter(_conv1d()).fit(X, np.zeros(5, int))


def _dict_model():
    a, b = keras.Input((3,), name="mfcc"), keras.Input((2,), name="pitch")
    z = keras.Input((2,), name="code")
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([a, b, z]))
    return keras.Model({"pitch": b, "mfcc": a, "code": z},
                       keras.layers.Dense(3, activation="softmax")(h))


def test_dict_X_for_a_dict_input_model():
    keras.utils.set_random_seed(0)
    model = _dict_model()
    rng = np.random.default_rng(0)
    X = {"mfcc": rng.normal(size=(30, 3)), "pitch": rng.normal(size=(30, 2))}
    y = np.arange(30) % 3
    adapter = _fit(model, X, y)
    expected = model.predict({**X, "code": np.tile(adapter.code_, (30, 1))}, verbose=0)
    np.testing.assert_allclose(adapter.predict_proba(X), expected, rtol=1e-4, atol=1e-5)
    exported = adapter.to_keras()
    np.testing.assert_allclose(exported.predict(X, verbose=0), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"takes its features as a dict \['mfcc', 'pitch'\]"):
        adapter.predict_proba(np.hstack([X["mfcc"], X["pitch"]]))
    with pytest.raises(ValueError, match=r"missing \['pitch'\], unexpected \['f0'\]"):
        adapter.predict_proba({"mfcc": X["mfcc"], "f0": X["pitch"]})


def _any_length_lstm(code: bool = True):
    """Utterances of any length: ``Input((None, F))``, padding masked."""
    x = keras.Input((None, F), name="features")
    h = keras.layers.LSTM(8, name="lstm")(keras.layers.Masking()(x))
    if not code:
        h = keras.layers.Dense(8, activation="tanh", name="hidden")(h)
        return keras.Model(x, keras.layers.Dense(3, activation="softmax")(h))
    z = keras.Input((2,), name="code")
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([h, z]))
    return keras.Model([x, z], keras.layers.Dense(3, activation="softmax")(h))


def _padded(n: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, length, F)).astype("float32")
    X[: n // 3, length // 2:] = 0.0  # shorter utterances, padded
    return X


def test_a_model_of_any_length_fits_and_predicts_other_lengths():
    keras.utils.set_random_seed(0)
    model = _any_length_lstm()
    X, y = _padded(30, T, 0), np.arange(30) % 3
    adapter = _fit(model, X, y)
    np.testing.assert_array_equal(_fit(model, X.reshape(30, -1), y).code_, adapter.code_)
    longer = _padded(7, T + 3, 1)  # another padded length than fit's
    expected = model.predict([longer, np.tile(adapter.code_, (7, 1))], verbose=0)
    np.testing.assert_allclose(adapter.predict_proba(longer), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(adapter.to_keras().predict(longer, verbose=0), expected,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_reloaded(adapter).predict_proba(longer), expected, rtol=1e-6)
    with pytest.raises(ValueError, match=r"X has 10 values per row, not a multiple of the 4"):
        adapter.predict(np.zeros((2, 10), "float32"))
    with pytest.raises(ValueError, match=r"X has shape \(2, 5, 3\), but the model's feature "
                                         r"input takes \(None, None, 4\)"):
        adapter.predict(np.zeros((2, 5, 3), "float32"))


def test_a_code_network_on_a_model_of_any_length():
    from skdc import CodeNetwork

    keras.utils.set_random_seed(0)
    X, y = _padded(40, T, 0), np.arange(40) % 3
    groups = np.repeat(np.arange(4), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net = CodeNetwork(base_model=_any_length_lstm(code=False), code_size=2,
                          code_layers=["hidden"], max_iter=2, random_state=0)
        net.fit(X, y, groups=groups)
        assert tuple(net.model_.inputs[0].shape[1:]) == (None, F)
        longer = _padded(6, T + 3, 1)
        codes = np.stack([net.codes_[g] for g in [0, 0, 1, 1, 2, 3]])
        expected = net.model_.predict([longer, codes], verbose=0)
        np.testing.assert_allclose(net.predict_proba(longer, groups=[0, 0, 1, 1, 2, 3]),
                                   expected, rtol=1e-4, atol=1e-5)
        adapter = net.adapter(max_iter=5).fit(X[:6], y[:6])
    assert adapter.predict(longer).shape == (6,)


def test_two_unknown_dimensions_are_refused():
    x, z = keras.Input((None, None, 4), name="features"), keras.Input((2,), name="code")
    h = keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(x), z])
    model = keras.Model([x, z], keras.layers.Dense(3, activation="softmax")(h))
    with pytest.raises(ValueError, match="only a single feature input with one unknown"):
        CodeAdapter(model).fit(np.zeros((4, 6), "float32"), np.arange(4) % 3)


def test_a_code_network_names_a_width_its_base_model_cannot_take():
    from skdc import CodeNetwork

    y, groups = np.arange(8) % 3, np.repeat([0, 1], 4)
    with pytest.raises(ValueError, match=r"X has 10 values per row, but base_model's features "
                                         r"have shape \(None, 4\)"):
        CodeNetwork(base_model=_any_length_lstm(code=False), code_layers=["hidden"]).fit(
            np.zeros((8, 10), "float32"), y, groups=groups)
