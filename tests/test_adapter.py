"""CodeAdapter: adaptation behaviour, tied codes, sklearn protocol, bad input."""

import pickle
import subprocess
import sys
import warnings

import joblib
import keras
import numpy as np
import pytest
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skdc import CodeAdapter, CodeAdapterRegressor, CodePrior


def _accuracy_with_code(model, X, y, code):
    proba = model.predict([X, np.tile(code, (len(X), 1))], verbose=0)
    return float(np.mean(proba.argmax(axis=1) == y))


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rms_sgd", "lbfgs"])
def test_adaptation_moves_code_toward_truth_and_raises_accuracy(teacher, conditions, optimizer):
    X, y, groups, true_codes = conditions
    before, after, dist_before, dist_after = [], [], [], []
    for g in range(6):
        rows = np.flatnonzero(groups == g)
        adapt, test = rows[:10], rows[10:]
        a = CodeAdapter(teacher, optimizer=optimizer, learning_rate=0.1, random_state=0)
        a.fit(X[adapt], y[adapt])
        before.append(_accuracy_with_code(teacher, X[test], y[test], np.zeros(3)))
        after.append(a.score(X[test], y[test]))
        dist_before.append(np.linalg.norm(true_codes[g]))
        dist_after.append(np.linalg.norm(a.code_ - true_codes[g]))
    assert np.mean(after) > np.mean(before) + 0.1
    assert np.mean(dist_after) < 0.75 * np.mean(dist_before)


def test_one_tied_code_used_for_every_row(teacher, one_condition):
    Xa, ya, Xt, _, _ = one_condition
    a = CodeAdapter(teacher, random_state=0).fit(Xa, ya)
    assert a.code_.shape == (3,)
    assert a.codes_ == {}
    expected = teacher.predict([Xt, np.tile(a.code_, (len(Xt), 1))], verbose=0)
    np.testing.assert_allclose(a.predict_proba(Xt), expected, rtol=1e-5, atol=1e-6)


def test_tied_code_objective_is_the_mean_over_rows(teacher, one_condition):
    # Without a prior, repeating every row leaves the mean loss, hence the code, unchanged;
    # one code per row (the copied recipe) would not even be a single vector.
    Xa, ya, *_ = one_condition
    params = dict(alpha=0.0, optimizer="lbfgs", tol=0.0, max_iter=30)
    once = CodeAdapter(teacher, **params).fit(Xa, ya).code_
    twice = CodeAdapter(teacher, **params).fit(np.vstack([Xa, Xa]), np.r_[ya, ya]).code_
    np.testing.assert_allclose(once, twice, atol=1e-3)


def test_model_weights_and_flags_unchanged(teacher, conditions):
    X, y, groups, _ = conditions
    weights = [w.copy() for w in teacher.get_weights()]
    flags = [layer.trainable for layer in teacher.layers]
    CodeAdapter(teacher, max_iter=20).fit(X[:30], y[:30], groups=groups[:30])
    CodeAdapter(teacher, optimizer="lbfgs", max_iter=5).fit(X[:30], y[:30])
    for old, new in zip(weights, teacher.get_weights()):
        assert old.tobytes() == new.tobytes()
    assert flags == [layer.trainable for layer in teacher.layers]


def test_classes_come_from_model_and_map_to_labels(teacher, one_condition):
    Xa, ya, Xt, yt, _ = one_condition
    names = np.array(["aa", "iy", "uw", "eh"])
    a = CodeAdapter(teacher, classes=names, random_state=0).fit(Xa, names[ya])
    np.testing.assert_array_equal(a.classes_, names)
    assert set(a.predict(Xt)) <= set(names)
    assert a.score(Xt, names[yt]) == CodeAdapter(teacher, random_state=0).fit(Xa, ya).score(Xt, yt)
    # adaptation data covering one class still yields every class of the model
    one_class = CodeAdapter(teacher, max_iter=5).fit(Xa[ya == ya[0]], ya[ya == ya[0]])
    assert one_class.predict_proba(Xt).shape == (len(Xt), 4)


def test_label_the_model_cannot_output(teacher, one_condition):
    Xa, ya, *_ = one_condition
    with pytest.raises(ValueError, match=r"label\(s\) \[7\]"):
        CodeAdapter(teacher).fit(Xa, np.r_[ya[:-1], 7])
    with pytest.raises(ValueError, match="classes has 2 labels"):
        CodeAdapter(teacher, classes=["a", "b"]).fit(Xa, ya)


def test_prior_strength_and_covariance(teacher, one_condition):
    Xa, ya, *_ = one_condition
    start = np.array([0.5, -0.5, 0.2])
    stiff = CodeAdapter(teacher, code_init=start, alpha=1e6, max_iter=50).fit(Xa, ya)
    np.testing.assert_allclose(stiff.code_, start, atol=1e-2)
    # a prior with tiny variance on the first axis pins that axis only
    prior = CodePrior(np.zeros(3), np.diag([1e-6, 1.0, 1.0]))
    a = CodeAdapter(teacher, code_init=prior, optimizer="lbfgs").fit(Xa, ya)
    assert abs(a.code_[0]) < 1e-3
    assert np.abs(a.code_[1:]).max() > 0.05


def test_tol_zero_runs_exactly_max_iter_and_convergence_warning(teacher, one_condition):
    Xa, ya, *_ = one_condition
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        a = CodeAdapter(teacher, tol=0.0, max_iter=37).fit(Xa, ya)
    assert a.n_iter_ == 37 and len(a.loss_curve_) == 37
    with pytest.warns(ConvergenceWarning):
        CodeAdapter(teacher, max_iter=3, learning_rate=1e-4).fit(Xa, ya)


def test_warm_start_and_partial_fit(teacher, one_condition):
    Xa, ya, *_ = one_condition
    a = CodeAdapter(teacher, max_iter=5, tol=0.0, warm_start=True).fit(Xa, ya)
    first = a.code_.copy()
    a.fit(Xa, ya)
    assert not np.allclose(a.code_, first)
    b = CodeAdapter(teacher, tol=0.0)
    for i in range(4):
        b.partial_fit(Xa, ya)
        assert b.n_iter_ == i + 1
    c = CodeAdapter(teacher, tol=0.0, max_iter=4).fit(Xa, ya)
    # 4 partial_fit calls make the same Adam steps as one 4-iteration fit (up to best-code choice)
    assert len(b.loss_curve_) == 4
    np.testing.assert_allclose(b.loss_curve_, c.loss_curve_, rtol=1e-5)


def test_random_state_makes_fit_deterministic(teacher, conditions):
    X, y, _, _ = conditions
    kw = dict(early_stopping=True, batch_size=16, max_iter=10, random_state=3)
    a = CodeAdapter(teacher, **kw).fit(X[:80], y[:80])
    b = CodeAdapter(teacher, **kw).fit(X[:80], y[:80])
    np.testing.assert_array_equal(a.code_, b.code_)


def test_minibatches_reach_the_full_batch_solution(teacher, conditions):
    X, y, _, _ = conditions
    full = CodeAdapter(teacher, optimizer="lbfgs").fit(X[:60], y[:60])
    mini = CodeAdapter(teacher, batch_size=16, learning_rate=0.02, max_iter=150,
                       random_state=0).fit(X[:60], y[:60])
    np.testing.assert_allclose(mini.code_, full.code_, atol=0.1)


def test_verbose(teacher, one_condition, capsys):
    Xa, ya, *_ = one_condition
    CodeAdapter(teacher, max_iter=3, tol=0.0).fit(Xa, ya)
    assert capsys.readouterr().out == ""
    CodeAdapter(teacher, max_iter=3, tol=0.0, verbose=1).fit(Xa, ya)
    out = capsys.readouterr().out
    assert "Iteration 3, loss = " in out and "best = " in out


def test_regressor(teacher):
    x = keras.Input((2,), name="features")
    z = keras.Input((1,), name="code")
    out = keras.layers.Dense(1, name="out")(keras.layers.Concatenate()([x, z]))
    model = keras.Model([x, z], out)
    model.layers[-1].set_weights([np.array([[1.0], [2.0], [3.0]]), np.zeros(1)])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = X[:, 0] + 2 * X[:, 1] + 3 * 0.7  # true code 0.7
    r = CodeAdapterRegressor(model, alpha=0.0, optimizer="lbfgs").fit(X, y)
    np.testing.assert_allclose(r.code_, [0.7], atol=1e-3)
    assert r.score(X, y) > 0.999
    assert r.predict(X).shape == (40,)
    with pytest.raises(ValueError, match="use CodeAdapter for classifiers"):
        CodeAdapterRegressor(teacher).fit(X, y)


def test_estimator_types():
    assert is_classifier(CodeAdapter(None))
    assert is_regressor(CodeAdapterRegressor(None))


def test_clone_shares_the_model(teacher):
    a = CodeAdapter(teacher, learning_rate=0.3)
    b = clone(a)
    assert b.model is teacher and b.learning_rate == 0.3 and not hasattr(b, "code_")


def test_pipeline_and_grid_search(teacher, conditions):
    X, y, groups, _ = conditions
    rows = np.flatnonzero(groups == 1)[:30]
    pipe = make_pipeline(FunctionTransformer(), CodeAdapter(teacher, random_state=0))
    assert pipe.fit(X[rows], y[rows]).score(X[rows], y[rows]) > 0.5
    grid = {"learning_rate": [0.01, 0.1], "max_iter": [5, 50]}
    scores = []
    for n_jobs in (1, 2):  # 2: loky workers, one TensorFlow thread each
        search = GridSearchCV(CodeAdapter(teacher, random_state=0), grid, cv=3, n_jobs=n_jobs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X[rows], y[rows])
        assert set(search.best_params_) == {"learning_rate", "max_iter"}
        scores.append(search.cv_results_["mean_test_score"])
    assert scores[0].shape == (4,)
    np.testing.assert_allclose(scores[1], scores[0])


def test_pickle_and_joblib_into_a_fresh_process(teacher, one_condition, tmp_path):
    Xa, ya, Xt, _, _ = one_condition
    a = CodeAdapter(teacher, random_state=0).fit(Xa, ya)
    expected = a.predict_proba(Xt)
    joblib.dump(a, tmp_path / "a.joblib")
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(a))
    np.save(tmp_path / "X.npy", Xt)
    script = (
        "import joblib, pickle, numpy as np, sys\n"
        f"X = np.load(r'{tmp_path / 'X.npy'}')\n"
        f"a = joblib.load(r'{tmp_path / 'a.joblib'}')\n"
        f"b = pickle.loads(open(r'{tmp_path / 'a.pkl'}', 'rb').read())\n"
        f"np.save(r'{tmp_path / 'p1.npy'}', a.predict_proba(X))\n"
        f"np.save(r'{tmp_path / 'p2.npy'}', b.predict_proba(X))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    np.testing.assert_array_equal(np.load(tmp_path / "p1.npy"), expected)
    np.testing.assert_array_equal(np.load(tmp_path / "p2.npy"), expected)


def test_grouped_fit_equals_separate_fits(teacher, conditions):
    X, y, groups, _ = conditions
    rows = np.concatenate([np.flatnonzero(groups == g)[:10] for g in range(10)])
    for optimizer in ("adam", "rms_sgd"):
        joint = CodeAdapter(teacher, optimizer=optimizer, random_state=0)
        joint.fit(X[rows], y[rows], groups=groups[rows])
        assert sorted(joint.codes_) == list(range(10))
        for g in range(10):
            mine = rows[groups[rows] == g]
            alone = CodeAdapter(teacher, optimizer=optimizer, random_state=0).fit(X[mine], y[mine])
            # the same objective; the kept best codes can lie apart along a flat valley
            # (rms_sgd oscillates: 1.1e-3 apart at objectives 1.3e-7 apart, TF 2.21)
            np.testing.assert_allclose(_objective(teacher, X[mine], y[mine], joint.codes_[g]),
                                       _objective(teacher, X[mine], y[mine], alone.code_),
                                       rtol=0, atol=1e-5)
            np.testing.assert_allclose(joint.codes_[g], alone.code_, atol=1e-2)


def _objective(model, X, y, code) -> float:
    """The MAP objective of ``code`` (prior N(0, I), alpha=1) in float64."""
    proba = model.predict([X, np.tile(code, (len(X), 1))], verbose=0).astype(np.float64)
    return -np.mean(np.log(proba[np.arange(len(X)), y])) + 0.5 * code @ code / len(X)


def test_grouped_predict_uses_each_groups_code(teacher, conditions):
    X, y, groups, _ = conditions
    a = CodeAdapter(teacher, random_state=0).fit(X[:120], y[:120], groups=groups[:120])
    proba = a.predict_proba(X[:120], groups=groups[:120])
    for g in (0, 1):
        m = groups[:120] == g
        expected = teacher.predict([X[:120][m], np.tile(a.codes_[g], (m.sum(), 1))], verbose=0)
        np.testing.assert_allclose(proba[m], expected, rtol=1e-5, atol=1e-6)
    # an unseen group falls back to code_, the initial code
    np.testing.assert_array_equal(a.code_, np.zeros(3))
    unseen = a.predict_proba(X[:5], groups=["new"] * 5)
    np.testing.assert_allclose(unseen, a.predict_proba(X[:5]))


def test_split_graph_equals_plain_graph(teacher, conditions):
    from skdc._engine import Engine
    from skdc._graph import CodeGraph

    X, _, _, _ = conditions
    split, plain = CodeGraph(teacher, 1), CodeGraph(teacher, 1, split=False)
    assert split.is_split and not plain.is_split
    codes = np.random.default_rng(0).normal(size=(3, 3))
    idx = np.arange(len(X)) % 3
    out_split = Engine(split, "softmax").predict(X, codes, idx)
    out_plain = Engine(plain, "softmax").predict(X, codes, idx)
    np.testing.assert_allclose(out_split, out_plain, rtol=1e-5, atol=1e-7)


# -- bad input -----------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(code_input="speaker"), r"no input named 'speaker'; its inputs are \['features', "),
        (dict(code_input=5), "out of range"),
        (dict(code_init=np.zeros(4)), r"shape \(4,\).*needs shape \(3,\)"),
        (dict(code_init="random"), "code_init"),
        (dict(code_init=CodePrior(np.zeros(3), np.eye(2))), r"covariance.*\(2, 2\)"),
        (dict(optimizer="newton"), "optimizer"),
        (dict(learning_rate=-1.0), "learning_rate"),
    ],
)
def test_bad_parameters(teacher, one_condition, kwargs, match):
    Xa, ya, *_ = one_condition
    with pytest.raises((ValueError, TypeError), match=match):
        CodeAdapter(teacher, **kwargs).fit(Xa, ya)


def test_model_without_code_input():
    x = keras.Input((3,), name="features")
    model = keras.Model(x, keras.layers.Dense(2, activation="softmax")(x))
    with pytest.raises(ValueError, match=r"at least two inputs.*\['features'\]"):
        CodeAdapter(model).fit(np.zeros((4, 3)), [0, 1, 0, 1])
    with pytest.raises(TypeError, match="keras.Model"):
        CodeAdapter("model.keras").fit(np.zeros((4, 3)), [0, 1, 0, 1])


def test_bad_data(teacher, one_condition):
    Xa, ya, *_ = one_condition
    X_copy, y_copy = Xa.copy(), ya.copy()
    a = CodeAdapter(teacher, max_iter=3)
    bad_x = Xa.copy()
    bad_x[0, 0] = np.nan
    cases = [
        ((Xa[:, :5], ya), "X has 5 features, but the model's feature inputs take 6"),
        ((bad_x, ya), "NaN"),
        ((Xa, np.r_[ya[:-1], np.nan]), r"NaN|label"),
        ((Xa[:0], ya[:0]), "0 sample"),
        ((Xa, ya[:-1]), "inconsistent numbers of samples|y has 9 entries"),
    ]
    for (X, y), match in cases:
        with pytest.raises(ValueError, match=match):
            a.fit(X, y)
    with pytest.raises(ValueError, match="groups has 3 entries"):
        a.fit(Xa, ya, groups=[0, 1, 2])
    np.testing.assert_array_equal(Xa, X_copy)
    np.testing.assert_array_equal(ya, y_copy)


def test_predict_before_fit(teacher, one_condition):
    with pytest.raises(NotFittedError):
        CodeAdapter(teacher).predict(one_condition[2])


def test_xla_path_with_padded_rows_matches_plain(teacher, conditions):
    from skdc._backend import row_bucket

    X, y, groups, _ = conditions
    rows = slice(0, 100)  # padded to a bucket of 112 rows under XLA
    assert row_bucket(100) == 112
    Xr, yr, gr = X[rows], y[rows], groups[rows]
    kw = dict(tol=0.0, max_iter=15, random_state=0)
    plain = CodeAdapter(teacher, jit_compile=False, **kw).fit(Xr, yr, groups=gr)
    xla = CodeAdapter(teacher, jit_compile=True, **kw).fit(Xr, yr, groups=gr)
    for g in plain.codes_:
        np.testing.assert_allclose(xla.codes_[g], plain.codes_[g], atol=1e-4)
    np.testing.assert_allclose(xla.loss_curve_, plain.loss_curve_, rtol=1e-4)
    lbfgs = dict(optimizer="lbfgs", max_iter=15, random_state=0)
    a = CodeAdapter(teacher, jit_compile=False, **lbfgs).fit(Xr, yr)
    b = CodeAdapter(teacher, jit_compile=True, **lbfgs).fit(Xr, yr)
    np.testing.assert_allclose(a.code_, b.code_, atol=1e-3)


def test_predictions_do_not_depend_on_the_other_rows(teacher, conditions):
    # scikit-learn's check_methods_subset_invariance asks 1e-7, which float32 matmul
    # kernels (a different one for 1 row than for 20) miss by a few ulp on some CPUs;
    # to float32 precision a row's prediction is its own, on the eager and compiled paths.
    from skdc._engine import _XLA_MIN_ROWS

    X, y, groups, _ = conditions
    a = CodeAdapter(teacher, max_iter=20, random_state=0).fit(X, y, groups=groups)
    X_big = np.tile(X, (_XLA_MIN_ROWS // len(X) + 1, 1))
    g_big = np.tile(groups, _XLA_MIN_ROWS // len(X) + 1)
    full = a.predict_proba(X_big, groups=g_big)  # compiled, in padded buckets
    assert len(X_big) >= _XLA_MIN_ROWS
    rows = [0, 7, len(X), len(X_big) - 1]
    one_by_one = np.vstack([a.predict_proba(X_big[[r]], groups=g_big[[r]]) for r in rows])
    np.testing.assert_allclose(one_by_one, full[rows], rtol=1e-5, atol=1e-6)
    part = a.predict_proba(X_big[5:37], groups=g_big[5:37])  # eager
    np.testing.assert_allclose(part, full[5:37], rtol=1e-5, atol=1e-6)


@pytest.mark.backend
def test_no_retracing_across_fits_clones_and_sizes(teacher, conditions):
    import keras

    from skdc._engine import engine_for

    X, y, groups, _ = conditions
    engine = engine_for(teacher, 1, "softmax")
    sizes = [(13, 0.1, 1.0), (40, 0.01, 0.0), (77, 0.3, 5.0)]
    base = CodeAdapter(teacher, max_iter=2, tol=0.0)
    if keras.backend.backend() == "tensorflow":  # one trace for every row count
        base.fit(X[:10], y[:10])
    else:  # JAX compiles once per shape bucket: warm the buckets of these sizes up once
        for n, _, _ in sizes:
            clone(base).fit(X[:n], y[:n])
            clone(base).fit(X[:n], y[:n], groups=groups[:n])
    before = engine.traces()
    for n, lr, alpha in sizes:
        clone(base).set_params(learning_rate=lr, alpha=alpha).fit(X[:n], y[:n])
        clone(base).fit(X[:n], y[:n], groups=groups[:n])
    assert engine.traces() == before
