"""Property-based bad input: every failure is a ValueError/TypeError in words, never a
TensorFlow error, and nothing the user passed is modified."""

import warnings

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skdc import CodeAdapter, CodeNetwork, add_condition_codes

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

values = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.integers(-10, 10).map(float))
def _cast(array, dtype):
    if dtype in (np.int64, np.bool_):
        array = np.nan_to_num(array, posinf=1, neginf=-1)
    return array.astype(dtype)


arrays = st.builds(
    _cast,
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=8),
               elements=values),
    st.sampled_from([np.float64, np.float32, np.int64, np.bool_, np.object_]),
)
labels = st.lists(st.one_of(st.integers(-2, 6), st.sampled_from(["a", "iy"]),
                            st.just(float("nan"))), min_size=0, max_size=9)


def _unchanged(after, before):
    assert after.dtype == before.dtype and after.shape == before.shape
    assert (after.astype(str) == before.astype(str)).all()


def _fails_in_words(fn):
    """Run ``fn``; it may succeed or raise ValueError/TypeError with a sentence."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
    except (ValueError, TypeError) as exc:
        assert not isinstance(exc, tf.errors.OpError)
        assert len(str(exc)) > 15, str(exc)
    except tf.errors.OpError as exc:  # pragma: no cover - the property under test
        pytest.fail(f"TensorFlow error reached the user: {exc}")


@SETTINGS
@given(X=arrays, y=labels)
def test_adapter_fit_on_arbitrary_input(teacher, X, y):
    X_before, y_before = X.copy(), list(y)
    _fails_in_words(lambda: CodeAdapter(teacher, max_iter=2).fit(X, y))
    _unchanged(X, X_before)
    assert [str(v) for v in y] == [str(v) for v in y_before]


@SETTINGS
@given(X=arrays, groups=st.lists(st.integers(0, 3), max_size=9))
def test_adapter_predict_on_arbitrary_input(teacher, one_condition, X, groups):
    Xa, ya, *_ = one_condition
    a = CodeAdapter(teacher, max_iter=2, tol=0.0).fit(Xa, ya)
    X_before = X.copy()
    _fails_in_words(lambda: a.predict_proba(X, groups=groups or None))
    _unchanged(X, X_before)


@SETTINGS
@given(code_init=st.one_of(st.sampled_from(["zeros", "ones", ""]),
                           hnp.arrays(np.float64, st.integers(0, 5), elements=values),
                           st.tuples(hnp.arrays(np.float64, 3, elements=values),
                                     hnp.arrays(np.float64, (3, 3), elements=values))),
       alpha=st.floats(-1, 10), learning_rate=st.floats(-1, 1),
       max_iter=st.integers(-1, 3))
def test_adapter_parameters(teacher, one_condition, code_init, alpha, learning_rate, max_iter):
    Xa, ya, *_ = one_condition
    _fails_in_words(lambda: CodeAdapter(teacher, code_init=code_init, alpha=alpha,
                                        learning_rate=learning_rate,
                                        max_iter=max_iter).fit(Xa, ya))


@settings(max_examples=10, deadline=None)
@given(X=arrays, y=labels, groups=st.lists(st.integers(0, 2), max_size=9))
def test_network_fit_on_arbitrary_input(X, y, groups):
    X_before = X.copy()
    _fails_in_words(lambda: CodeNetwork(hidden_layer_sizes=(4,), code_size=2,
                                        max_iter=1).fit(X, y, groups=groups))
    _unchanged(X, X_before)


@settings(max_examples=15, deadline=None)
@given(code_size=st.one_of(st.integers(-2, 3), st.floats(-1, 3), st.just("4")),
       layers=st.one_of(st.sampled_from(["all", "input", "none", ""]),
                        st.lists(st.integers(-3, 4), max_size=3)))
def test_add_condition_codes_parameters(teacher, code_size, layers):
    import keras

    x = keras.Input((3,))
    h = keras.layers.Dense(4, activation="relu")(x)
    model = keras.Model(x, keras.layers.Dense(2, activation="softmax")(h))
    weights = [w.copy() for w in model.get_weights()]
    _fails_in_words(lambda: add_condition_codes(model, code_size, layers=layers))
    for old, new in zip(weights, model.get_weights()):
        assert old.tobytes() == new.tobytes()


@SETTINGS
@given(X=arrays, y=labels, groups=st.lists(st.integers(0, 3), max_size=9),
       shots=st.lists(st.integers(-2, 12), max_size=3), folds=st.integers(-1, 5))
def test_evaluate_inputs(X, y, groups, shots, folds):
    from skdc.evaluation._protocol import check_inputs

    X_before = X.copy()
    _fails_in_words(lambda: check_inputs(X, y, groups, shots, folds, 1, None))
    _unchanged(X, X_before)


text = st.text(alphabet="F0123abc ,-", max_size=6)


@SETTINGS
@given(features=st.one_of(text, st.lists(text, max_size=3)), dropna=st.booleans())
def test_hillenbrand_parameters(data_home, features, dropna):
    from skdc.datasets import load_hillenbrand

    _fails_in_words(lambda: load_hillenbrand(data_home, features=features, dropna=dropna))


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(features=st.sampled_from(["mfcc", "logmel", "", "MFCC"]), n_mels=st.integers(-1, 50),
       n_mfcc=st.integers(-1, 45), context=st.integers(-2, 3),
       frame_length=st.floats(-0.01, 0.05), frame_step=st.floats(-0.01, 0.03),
       speakers=st.one_of(st.just("jackson"), st.lists(st.sampled_from(["theo", "x", ""]),
                                                       max_size=2)))
def test_spoken_digits_parameters(data_home, features, n_mels, n_mfcc, context, frame_length,
                                  frame_step, speakers):
    from skdc.datasets import load_spoken_digits

    _fails_in_words(lambda: load_spoken_digits(
        data_home, features=features, n_mels=n_mels, n_mfcc=n_mfcc, context=context,
        frame_length=frame_length, frame_step=frame_step, speakers=speakers,
        max_per_speaker_digit=1, download_if_missing=False))
