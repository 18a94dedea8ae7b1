"""Many conditions at once: per-group fits, routing, streaming, unsupervised, scale-out."""

import warnings

import numpy as np
import pytest
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_validate

from skdc import CodeAdapter
from skdc._synthetic import make_conditions, make_teacher


def _first_rows(groups, n, which=range(10)):
    return np.concatenate([np.flatnonzero(groups == g)[:n] for g in which])


def test_metadata_routing_of_groups(teacher, conditions):
    X, y, groups, _ = conditions
    with sklearn.config_context(enable_metadata_routing=True):
        adapter = CodeAdapter(teacher, optimizer="lbfgs", random_state=0)
        adapter.set_fit_request(groups=True).set_score_request(groups=True)
        # within-condition folds: every test row's group has a learned code
        folds = StratifiedKFold(3, shuffle=True, random_state=0)
        with_groups = cross_validate(adapter, X, y, cv=folds,
                                     params={"groups": groups})["test_score"]
        plain = CodeAdapter(teacher, optimizer="lbfgs", random_state=0)
        tied = cross_validate(plain, X, y, cv=folds)["test_score"]
        assert with_groups.mean() > tied.mean() + 0.05
        # condition-disjoint folds: GroupKFold splits on the routed groups too
        scores = cross_validate(adapter, X, y, cv=GroupKFold(3), params={"groups": groups},
                                return_estimator=True)
        for est in scores["estimator"]:
            assert len(est.codes_) in (6, 7)  # the training folds hold 6 or 7 of 10 groups


def test_partial_fit_streams_per_group(teacher, conditions):
    X, y, groups, true_codes = conditions
    a = CodeAdapter(teacher, learning_rate=0.1)
    for start in range(0, 40, 4):  # utterance by utterance: 4 rows of groups 0 and 1 per call
        rows = np.r_[np.flatnonzero(groups == 0)[start:start + 4],
                     np.flatnonzero(groups == 1)[start:start + 4]]
        a.partial_fit(X[rows], y[rows], groups=groups[rows])
    assert sorted(a.codes_) == [0, 1] and a.n_iter_ == 10
    # a new group starts from the prior, and the others keep their codes
    before = {g: c.copy() for g, c in a.codes_.items()}
    rows = np.flatnonzero(groups == 2)[:4]
    a.partial_fit(X[rows], y[rows], groups=groups[rows])
    for g in (0, 1):
        np.testing.assert_array_equal(a.codes_[g], before[g])
    assert np.linalg.norm(a.codes_[2]) < 0.2  # one step of 0.1 from zero
    for g in (0, 1):
        assert np.linalg.norm(a.codes_[g] - true_codes[g]) < np.linalg.norm(true_codes[g])


def test_unsupervised_adaptation_raises_accuracy():
    # conditions observed as a feature shift: unlabelled rows carry their condition
    teacher = make_teacher(shift=True, random_state=0)
    X, y, groups, true_codes = make_conditions(teacher, 10, 40, random_state=1, shift=True)
    unadapted = np.mean(teacher.predict([X, np.zeros((len(X), 6))], verbose=0).argmax(1) == y)
    a = CodeAdapter(teacher, random_state=0).fit(X, groups=groups)
    assert len(a.codes_) == 10
    assert a.score(X, y, groups=groups) > unadapted + 0.05
    moved = [np.linalg.norm(a.codes_[g] - true_codes[g]) for g in range(10)]
    assert np.mean(moved) < np.mean(np.linalg.norm(true_codes, axis=1))
    # semi-supervised: -1 marks unlabelled rows; a few labels help further
    y_semi = np.where(np.arange(len(y)) % 40 < 3, y, -1)
    semi = CodeAdapter(teacher, random_state=0).fit(X, y_semi, groups=groups)
    assert semi.score(X, y, groups=groups) >= a.score(X, y, groups=groups) - 0.02


def test_regressor_needs_labels():
    import keras

    from skdc import CodeAdapterRegressor

    x, z = keras.Input((2,), name="features"), keras.Input((1,), name="code")
    model = keras.Model([x, z], keras.layers.Dense(1)(keras.layers.Concatenate()([x, z])))
    with pytest.raises(ValueError, match="requires y"):
        CodeAdapterRegressor(model).fit(np.zeros((3, 2)))


def test_n_jobs_shards_give_the_single_process_codes(teacher, conditions):
    X, y, groups, _ = conditions
    rows = _first_rows(groups, 10)
    single = CodeAdapter(teacher, random_state=0).fit(X[rows], y[rows], groups=groups[rows])
    sharded = CodeAdapter(teacher, random_state=0, n_jobs=2)
    sharded.fit(X[rows], y[rows], groups=groups[rows])
    for g in range(10):
        np.testing.assert_allclose(sharded.codes_[g], single.codes_[g], atol=1e-5)


def test_dask_local_cluster_gives_the_single_process_codes(teacher, conditions):
    distributed = pytest.importorskip("distributed", reason="optional extra 'distributed'")
    import joblib

    X, y, groups, _ = conditions
    rows = _first_rows(groups, 10, range(4))
    single = CodeAdapter(teacher, random_state=0).fit(X[rows], y[rows], groups=groups[rows])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=None) as cluster, \
                distributed.Client(cluster), joblib.parallel_backend("dask"):
            sharded = CodeAdapter(teacher, random_state=0, n_jobs=-1)
            sharded.fit(X[rows], y[rows], groups=groups[rows])
    for g in range(4):
        np.testing.assert_allclose(sharded.codes_[g], single.codes_[g], atol=1e-5)
