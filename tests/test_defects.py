"""Regression tests of verified defects (each failed before its fix)."""

import gc
import warnings
import weakref

import keras
import numpy as np
import pytest
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skdc import CodeAdapter
from skdc._groups import validation_split


def _map_objective(model, X, y, code, alpha=1.0):
    """The adapter's objective of one tied code, recomputed with Keras' own predict."""
    proba = model.predict([X, np.tile(code, (len(X), 1))], verbose=0).astype(np.float64)
    ce = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0))
    return ce.mean() + 0.5 * alpha * float(code @ code) / len(X)


def test_groups_route_through_pipeline_and_grid_search(teacher, conditions):
    # the clone inside GridSearchCV used to drop the adapter's metadata requests
    X, y, groups, _ = conditions
    with sklearn.config_context(enable_metadata_routing=True):
        adapter = CodeAdapter(teacher, optimizer="lbfgs", max_iter=20, random_state=0)
        pipe = make_pipeline(FunctionTransformer(),
                             adapter.set_fit_request(groups=True).set_score_request(groups=True))
        search = GridSearchCV(pipe, {"codeadapter__alpha": [0.5, 2.0]}, cv=GroupKFold(2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X, y, groups=groups)
    assert search.best_estimator_[-1].codes_  # groups reached the adapter's fit


def _coded_model(seed):
    x = keras.Input((4,), name="features")
    z = keras.Input((2,), name="code")
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([x, z]))
    return keras.Model([x, z], keras.layers.Dense(3, activation="softmax")(h))


def test_a_dropped_model_is_freed():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 4)), rng.integers(0, 3, 12)
    model = _coded_model(0)
    adapter = CodeAdapter(model, max_iter=3, tol=0.0).fit(X, y)
    adapter.predict(X)
    ref = weakref.ref(model)
    del model, adapter
    gc.collect()
    assert ref() is None, "the engine cache kept the adapted model alive"


def test_keyboard_interrupt_during_lbfgs_keeps_the_progress(teacher, one_condition,
                                                             monkeypatch):
    Xa, ya, *_ = one_condition
    a = CodeAdapter(teacher, optimizer="lbfgs", tol=0.0, max_iter=50, verbose=1)

    def interrupt_at_4(iteration, loss, best):
        if iteration == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(a, "_report", interrupt_at_4)
    with pytest.warns(UserWarning, match="interrupted"):
        a.fit(Xa, ya)
    assert np.any(a.code_ != 0), "the interrupted fit threw its progress away"
    start = _map_objective(teacher, Xa, ya, np.zeros(3))
    reached = _map_objective(teacher, Xa, ya, a.code_)
    assert reached < start
    np.testing.assert_allclose(reached, a.best_loss_, rtol=1e-4)


def test_a_tuple_of_numbers_is_a_code():
    model = _coded_model(0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 4)), rng.integers(0, 3, 12)
    a = CodeAdapter(model, code_init=(0.5, -0.5), alpha=1e6, max_iter=5).fit(X, y)
    np.testing.assert_allclose(a.code_, [0.5, -0.5], atol=1e-3)
    b = CodeAdapter(model, code_init=[0.5, -0.5], alpha=1e6, max_iter=5).fit(X, y)
    np.testing.assert_allclose(b.code_, a.code_)


@pytest.mark.parametrize("optimizer, batch_size", [("adam", None), ("adam", 7), ("sgd", None),
                                                   ("lbfgs", None)])
def test_the_kept_code_attains_best_loss(teacher, one_condition, optimizer, batch_size):
    # minibatch fits used to pair the end-of-epoch code with the epoch's average loss
    Xa, ya, *_ = one_condition
    lr = 3.0 if optimizer == "sgd" else 0.3  # sgd oscillates: its last code is not its best
    a = CodeAdapter(teacher, optimizer=optimizer, batch_size=batch_size, learning_rate=lr,
                    tol=0.0, max_iter=12, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.fit(Xa, ya)
    np.testing.assert_allclose(_map_objective(teacher, Xa, ya, a.code_), a.best_loss_,
                               rtol=1e-4)
    assert a.best_loss_ <= min(a.loss_curve_) + 1e-6


def test_early_stopping_keeps_the_best_code_on_the_held_out_rows(teacher, conditions):
    X, y, _, _ = conditions
    X, y = X[:60], y[:60]
    a = CodeAdapter(teacher, early_stopping=True, validation_fraction=0.3, random_state=0,
                    learning_rate=0.3).fit(X, y)
    held = validation_split(np.zeros(len(X), np.int32), 0.3, np.random.RandomState(0),
                            np.ones(len(X)))
    assert a.n_iter_ < 200
    # best_loss_ is the objective of the kept code on the held-out rows, not the others
    on_held = _map_objective(teacher, X[held], y[held], a.code_)
    np.testing.assert_allclose(a.best_loss_, on_held, rtol=1e-4)
    assert abs(_map_objective(teacher, X[~held], y[~held], a.code_) - on_held) > 1e-3


def test_validation_split_keeps_a_groups_only_weighted_row():
    groups = np.array([0, 0, 0, 1, 1, 1, 1])
    weight = np.array([1.0, 0.0, 0.0, 1, 1, 1, 1])  # group 0 has one row that counts
    for seed in range(20):
        held = validation_split(groups, 0.5, np.random.default_rng(seed), weight)
        assert not held[0], "held out the only weighted row of group 0"
        assert held[3:].sum() == 2


def test_partial_fit_refuses_lbfgs(teacher, one_condition):
    Xa, ya, *_ = one_condition
    with pytest.raises(ValueError, match="lbfgs.*partial_fit"):
        CodeAdapter(teacher, optimizer="lbfgs").partial_fit(Xa, ya)


@pytest.mark.parametrize("optimizer, wording", [("adam", "adam"), ("sgd", "sgd"),
                                                ("lbfgs", "L-BFGS")])
def test_the_convergence_warning_names_the_optimizer_and_points_at_the_call(
        teacher, one_condition, optimizer, wording):
    Xa, ya, *_ = one_condition
    adapter = CodeAdapter(teacher, optimizer=optimizer, max_iter=2, tol=1e-12,
                          random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adapter.fit(Xa, ya)
    convergence = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(convergence) == 1
    message = str(convergence[0].message)
    assert wording in message and "max_iter=2" in message
    if optimizer == "lbfgs":
        assert "Stochastic" not in message
    assert convergence[0].filename == __file__  # the user's line, not one inside skdc


def test_the_convergence_warning_points_at_the_user_through_grid_search(teacher,
                                                                        one_condition):
    # a meta-estimator's own frame is outside skdc: the warning points there, not inside
    Xa, ya, *_ = one_condition
    search = GridSearchCV(CodeAdapter(teacher, max_iter=2, tol=1e-12),
                          {"alpha": [1.0]}, cv=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(Xa, ya)
    files = {w.filename for w in caught if issubclass(w.category, ConvergenceWarning)}
    assert files and not any("/skdc/" in f for f in files)


def test_a_group_named_like_the_tied_code_is_kept(teacher, conditions):
    X, y, groups, _ = conditions
    rows = np.flatnonzero(groups < 2)
    labels = np.where(groups[rows] == 0, "__tied__", "b")
    adapter = CodeAdapter(teacher, optimizer="lbfgs", max_iter=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        adapter.fit(X[rows], y[rows], groups=labels)
    assert sorted(adapter.codes_) == ["__tied__", "b"]
    np.testing.assert_array_equal(adapter.code_, np.zeros(3))  # unseen groups: prior mean
    assert np.any(adapter.codes_["__tied__"] != 0)
    np.testing.assert_allclose(adapter.to_keras("__tied__").predict(X[rows[:3]], verbose=0),
                               adapter.predict_proba(X[rows[:3]], groups=labels[:3]),
                               atol=1e-6)


def test_small_predictions_compile_once_per_row_bucket():
    # JAX ran predictions below 1,024 rows op by op: an LSTM paid that per time step
    x = keras.Input((12,), name="features")
    z = keras.Input((2,), name="code")
    seq = keras.layers.Reshape((4, 3))(x)
    h = keras.layers.LSTM(5)(seq)
    h = keras.layers.Concatenate()([h, z])
    model = keras.Model([x, z], keras.layers.Dense(3, activation="softmax")(h))
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 12)).astype(np.float32), rng.integers(0, 3, 40)
    adapter = CodeAdapter(model, max_iter=2, tol=0.0).fit(X[:20], y[:20])
    engine = adapter._get_engine()
    before = engine.traces()
    first = adapter.predict_proba(X[:20])
    after_first = engine.traces()
    again = [adapter.predict_proba(X[:n]) for n in (20, 21, 22)]
    assert engine.traces() == after_first  # reused for every row count of its bucket
    if keras.backend.backend() == "jax":
        assert after_first == before + 1
    np.testing.assert_allclose(again[0], first, rtol=1e-6, atol=1e-7)
    code = np.tile(adapter.code_, (22, 1)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model([X[:22], code]))
    np.testing.assert_allclose(again[2], expected, rtol=1e-5, atol=1e-6)


def test_no_prior_raises_no_numpy_warning(teacher, conditions):
    # alpha=0 used to leak "invalid value encountered in divide" from the prior scaling
    X, y, groups, _ = conditions
    rows = np.flatnonzero(groups < 3)
    rows = np.tile(rows, -(-2000 // len(rows)))  # XLA: 3 groups padded to 4, one without rows
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        adapter = CodeAdapter(teacher, alpha=0.0, optimizer="lbfgs", max_iter=5,
                              jit_compile=True)
        adapter.fit(X[rows], y[rows], groups=groups[rows])
    assert len(adapter.codes_) == 3
