"""Speaker-embedding models: from_embedding, and the refusal of an id as a code input."""

import io
import warnings

import joblib
import keras
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeAdapter, from_embedding


def _embedding_model(id_shape=(1,), n_ids=12, seed=0):
    keras.utils.set_random_seed(seed)
    x = keras.Input((4,), name="features")
    spk = keras.Input(id_shape, name="speaker_id", dtype="int32")
    init = keras.initializers.RandomNormal(stddev=1.0)
    e = keras.layers.Embedding(n_ids, 3, embeddings_initializer=init)(spk)
    if id_shape:
        e = keras.layers.Flatten()(e)
    h = keras.layers.Dense(16, activation="tanh")(keras.layers.Concatenate()([x, e]))
    return keras.Model([x, spk], keras.layers.Dense(3, activation="softmax")(h))


@pytest.mark.parametrize("id_shape", [(1,), ()])
def test_known_ids_are_reproduced_exactly_and_the_model_is_untouched(id_shape):
    model = _embedding_model(id_shape)
    before = [w.copy() for w in model.get_weights()]
    conv = from_embedding(model, "speaker_id")
    X = np.random.default_rng(0).normal(size=(24, 4)).astype("float32")
    ids = np.arange(24) % 12
    original = model.predict([X, ids.reshape(-1, *id_shape)], verbose=0)
    np.testing.assert_array_equal(conv.model.predict([X, conv.codes[ids]], verbose=0), original)
    assert [t.name for t in conv.model.inputs] == ["features", "code"]
    assert conv.codes.shape == (12, 3) and conv.prior.mean.shape == (3,)
    np.testing.assert_allclose(conv.prior.mean, conv.codes.mean(axis=0))
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert not conv.model.trainable_weights


def test_an_id_code_input_is_refused_naming_the_helper():
    model = _embedding_model()
    X, y = np.zeros((6, 4), "float32"), np.arange(6) % 3
    with pytest.raises(TypeError, match=r"from_embedding\(model, 'speaker_id'\)"):
        CodeAdapter(model, code_input="speaker_id").fit(X, y)


def test_adapting_the_converted_model_and_round_trips():
    conv = from_embedding(_embedding_model(), "speaker_id")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 4)).astype("float32")
    true_code = conv.codes[7]
    y = conv.model.predict([X, np.tile(true_code, (80, 1))], verbose=0).argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adapter = CodeAdapter(conv.model, code_init=conv.prior, optimizer="lbfgs",
                              alpha=0.1).fit(X, y)
    at_mean = conv.model.predict([X, np.tile(conv.prior.mean, (80, 1))], verbose=0)
    assert adapter.score(X, y) > np.mean(at_mean.argmax(axis=1) == y) + 0.05
    buffer = io.BytesIO()
    joblib.dump(adapter, buffer)
    buffer.seek(0)
    np.testing.assert_allclose(joblib.load(buffer).predict_proba(X), adapter.predict_proba(X),
                               rtol=1e-6, atol=1e-7)
    exported = adapter.to_keras()
    np.testing.assert_allclose(exported.predict(X, verbose=0), adapter.predict_proba(X),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "error", "match"), [
    ("speaker", ValueError, "no input named 'speaker'"),
    ("features", TypeError, "is float32, not an integer id"),
])
def test_bad_id_inputs(name, error, match):
    with pytest.raises(error, match=match):
        from_embedding(_embedding_model(), name)


def test_an_id_read_by_two_layers_is_refused():
    x = keras.Input((4,), name="features")
    spk = keras.Input((1,), name="speaker_id", dtype="int32")
    a = keras.layers.Flatten()(keras.layers.Embedding(5, 2)(spk))
    b = keras.layers.Flatten()(keras.layers.Embedding(5, 2)(spk))
    model = keras.Model([x, spk], keras.layers.Dense(2)(keras.layers.Concatenate()([x, a, b])))
    with pytest.raises(ValueError, match="must feed exactly one Embedding layer"):
        from_embedding(model, "speaker_id")
