"""Safe persistence: safe_mode, opt-in for Lambda layers, corruption, skops, old files."""

import io
import pickle
from pathlib import Path

import joblib
import keras
import numpy as np
import pytest

import skdc
from skdc import CodeAdapter

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def lambda_adapter():
    x, z = keras.Input((3,), name="features"), keras.Input((2,), name="code")
    h = keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.Concatenate()([x, z]))
    model = keras.Model([x, z], keras.layers.Dense(2, activation="softmax")(h))
    X = np.random.default_rng(0).normal(size=(8, 3))
    return CodeAdapter(model, max_iter=3, tol=0.0).fit(X, [0, 1] * 4), X


def test_lambda_model_refused_unless_allowed(lambda_adapter):
    adapter, X = lambda_adapter
    data = pickle.dumps(adapter)
    with pytest.raises(ValueError, match="allow_unsafe_models"):
        pickle.loads(data)
    with skdc.allow_unsafe_models():
        loaded = pickle.loads(data)
    np.testing.assert_array_equal(loaded.predict_proba(X), adapter.predict_proba(X))
    with pytest.raises(ValueError, match="safe_mode"):  # the opt-in ends with the block
        pickle.loads(data)


def _state_with_model_bytes(adapter, edit):
    state = adapter.__getstate__()
    tag, key, archive = state["model"]
    state["model"] = (tag, key, edit(archive))
    return state


@pytest.mark.parametrize("edit, match", [
    (lambda b: b[: len(b) // 2], "corrupted or truncated"),
    (lambda b: b[:200] + bytes(100) + b[300:], "corrupted"),
])
def test_corrupted_model_bytes_give_a_clear_error(teacher, one_condition, edit, match,
                                                  monkeypatch):
    from collections import OrderedDict

    from skdc import _persist

    # an intact copy of this model loaded earlier in the process would be reused
    monkeypatch.setattr(_persist, "_LOADED", OrderedDict())
    Xa, ya, *_ = one_condition
    adapter = CodeAdapter(teacher, max_iter=3, tol=0.0).fit(Xa, ya)
    state = _state_with_model_bytes(adapter, edit)
    with pytest.raises(ValueError, match=match):
        CodeAdapter.__new__(CodeAdapter).__setstate__(state)


def test_truncated_file_gives_an_error(teacher, one_condition, tmp_path):
    Xa, ya, *_ = one_condition
    path = tmp_path / "a.joblib"
    joblib.dump(CodeAdapter(teacher, max_iter=3, tol=0.0).fit(Xa, ya), path)
    path.write_bytes(path.read_bytes()[:-4000])
    with pytest.raises((ValueError, EOFError, pickle.UnpicklingError)):
        joblib.load(path)


def test_skops_round_trip(teacher, one_condition, tmp_path):
    sio = pytest.importorskip("skops.io", reason="optional extra 'skops'")
    Xa, ya, Xt, _, _ = one_condition
    adapter = CodeAdapter(teacher, random_state=0).fit(Xa, ya, groups=[0, 1] * 5)
    path = tmp_path / "a.skops"
    sio.dump(adapter, path)
    untrusted = sio.get_untrusted_types(file=path)
    assert set(untrusted) <= set(skdc.SKOPS_TRUSTED_TYPES), untrusted
    loaded = sio.load(path, trusted=skdc.SKOPS_TRUSTED_TYPES)
    np.testing.assert_array_equal(loaded.predict_proba(Xt, groups=[0] * len(Xt)),
                                  adapter.predict_proba(Xt, groups=[0] * len(Xt)))


def test_fixture_from_version_0_1_0_still_loads():
    adapter = joblib.load(FIXTURES / "code_adapter_0.1.0.joblib")
    expected = np.load(FIXTURES / "code_adapter_0.1.0_expected.npz")
    np.testing.assert_allclose(adapter.predict_proba(expected["X"]), expected["proba"],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(adapter.code_, expected["code"])


def test_in_memory_round_trip_keeps_fitted_state(teacher, one_condition):
    Xa, ya, *_ = one_condition
    adapter = CodeAdapter(teacher, max_iter=5, tol=0.0).fit(Xa, ya)
    buffer = io.BytesIO()
    joblib.dump(adapter, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    assert loaded.n_iter_ == 5 and loaded.loss_curve_ == adapter.loss_curve_
    assert loaded.model is not teacher  # a model of its own, loaded with safe_mode


def test_network_pickled_before_new_parameters_loads_with_their_defaults():
    from skdc import CodeNetwork

    net = CodeNetwork(hidden_layer_sizes=(4,), code_size=2, max_iter=1)
    state = net.__getstate__()
    for name in ("training", "support_size", "inner_steps", "input_shift", "prior_shrinkage"):
        del state[name]
    loaded = CodeNetwork.__new__(CodeNetwork)
    loaded.__setstate__(state)
    assert loaded.get_params() == net.get_params()
