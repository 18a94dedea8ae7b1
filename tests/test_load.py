"""Faults and load: divergence, interruption, threads, joblib workers."""

import threading
import warnings

import numpy as np
import pytest
from joblib import Parallel, delayed

from skdc import CodeAdapter


def test_diverging_fit_keeps_best_finite_code_and_warns(teacher, one_condition):
    Xa, ya, Xt, yt, _ = one_condition
    a = CodeAdapter(teacher, optimizer="sgd", learning_rate=1e9, tol=0.0, max_iter=20)
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        a.fit(Xa, ya)
    assert np.all(np.isfinite(a.code_))
    assert np.isfinite(a.best_loss_)
    assert a.predict_proba(Xt).shape == (len(Xt), 4)


def test_keyboard_interrupt_keeps_best_code(teacher, one_condition, monkeypatch):
    Xa, ya, *_ = one_condition
    a = CodeAdapter(teacher, tol=0.0, max_iter=50, verbose=1)
    calls = {"n": 0}

    def interrupt_at_5(iteration, loss, best):
        calls["n"] = iteration
        if iteration == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(a, "_report", interrupt_at_5)
    with pytest.warns(UserWarning, match="interrupted"):
        a.fit(Xa, ya)
    assert calls["n"] == 5 and len(a.loss_curve_) == 5
    assert a.best_loss_ <= min(a.loss_curve_) + 1e-6
    assert np.all(np.isfinite(a.code_)) and np.any(a.code_ != 0)


def test_predict_proba_from_8_threads_equals_single_thread(teacher, conditions):
    X, y, groups, _ = conditions
    a = CodeAdapter(teacher, random_state=0).fit(X[:100], y[:100], groups=groups[:100])
    expected = a.predict_proba(X, groups=groups)
    results = [None] * 8

    def work(i):
        results[i] = a.predict_proba(X, groups=groups)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)


def _worker_tf_threads():
    import os

    import skdc  # noqa: F401  (sets the limit before TensorFlow starts)

    return os.environ.get("OMP_NUM_THREADS"), os.environ.get("TF_NUM_INTRAOP_THREADS")


def test_loky_workers_limit_tensorflow_threads():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = Parallel(n_jobs=2, backend="loky")(delayed(_worker_tf_threads)() for _ in range(2))
    for omp, intra in out:
        assert omp is not None and intra == omp


def test_many_models_in_one_process_do_not_warn_about_retracing(caplog):
    """One engine per model: TensorFlow's 'frequent retracing' warning must not reach users."""
    import keras

    X = np.random.default_rng(0).normal(size=(30, 3)).astype("float32")
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(7):
            x, z = keras.Input((3,), name="features"), keras.Input((2,), name="code")
            h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([x, z]))
            model = keras.Model([x, z], keras.layers.Dense(2, activation="softmax")(h))
            CodeAdapter(model, max_iter=3, tol=0.0).fit(X, y).predict_proba(X)
            CodeAdapter(model, max_iter=3, optimizer="lbfgs").fit(X, y)
    assert "retracing" not in caplog.text
