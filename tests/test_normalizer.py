"""Tests of skdc.ConditionNormalizer: per-condition mean / mean-and-variance normalisation."""

import numpy as np
import pytest
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdc import ConditionNormalizer
from skdc._normalizer import Moments, global_moments, group_moments, shrink


@parametrize_with_checks([ConditionNormalizer(),
                          ConditionNormalizer(kind="meanvar", tau=3.0, statistics="fit")])
def test_scikit_learn_checks(estimator, check):
    """Every check passes (they transform without ``groups``: the global statistics)."""
    check(estimator)


@pytest.fixture()
def speakers():
    """Three speakers whose features are the same pattern shifted and scaled."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 2))
    offsets, spreads = np.array([[0.0, 5.0], [10.0, -3.0], [-4.0, 1.0]]), [1.0, 3.0, 0.5]
    X = np.concatenate([o + s * base[i::3] for i, (o, s) in enumerate(zip(offsets, spreads))])
    groups = np.repeat(["a", "b", "c"], 10)
    return X, groups


@pytest.mark.parametrize("kind", ["mean", "meanvar"])
def test_each_condition_with_its_own_statistics(speakers, kind):
    X, groups = speakers
    Z = ConditionNormalizer(kind=kind).fit_transform(X, groups=groups)
    for g in "abc":
        rows = groups == g
        np.testing.assert_allclose(Z[rows].mean(axis=0), 0, atol=1e-12)
        expected = 1 if kind == "meanvar" else X[rows].std(axis=0)
        np.testing.assert_allclose(Z[rows].std(axis=0), expected)


def test_shrinkage_pools_tau_rows_of_the_global_statistics():
    """(N xbar + tau mu) / (N + tau), and the variance of the pooled rows."""
    train = np.array([[0.0], [2.0], [4.0], [6.0]])  # mean 3, variance 5
    new = np.array([[10.0], [12.0]])  # N = 2, mean 11, variance 1
    norm = ConditionNormalizer(kind="meanvar", tau=2.0).fit(train)
    mean = (2 * 11 + 2 * 3) / 4
    var = (2 * (1 + (11 - mean) ** 2) + 2 * (5 + (3 - mean) ** 2)) / 4
    out = norm.transform(new, groups=["x", "x"])
    np.testing.assert_allclose(out[:, 0], (new[:, 0] - mean) / np.sqrt(var))
    # many rows of the condition outweigh tau
    many = np.repeat(new, 1000, axis=0)
    np.testing.assert_allclose(np.abs(norm.transform(many, groups=["x"] * 2000)), 1, rtol=0.05)


def test_shrink_without_rows_or_tau_gives_the_global_statistics():
    overall = Moments(np.float64(4), np.array([3.0]), np.array([5.0]))
    empty = Moments(np.array([0.0]), np.array([[0.0]]), np.array([[0.0]]))
    for tau in (0.0, 2.0):
        shrunk = shrink(empty, overall, tau)
        np.testing.assert_array_equal(shrunk.mean, [[3.0]])
        np.testing.assert_array_equal(shrunk.var, [[5.0]])


def test_auto_tau_is_the_within_over_between_variance():
    """Condition means with variance 1, rows with variance 9 around them: tau near 9 rows;
    a feature whose conditions do not differ gets the largest tau (1000 rows)."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(300), 20)
    X = np.column_stack([rng.normal(size=300)[groups] + rng.normal(scale=3, size=6000),
                         rng.normal(scale=3, size=6000)])
    norm = ConditionNormalizer(tau="auto").fit(X, groups=groups)
    np.testing.assert_allclose(norm.tau_[0], 9, rtol=0.25)
    assert norm.tau_[1] > 100
    np.testing.assert_array_equal(ConditionNormalizer(tau=2).fit(X).tau_, [2.0, 2.0])
    with pytest.raises(ValueError, match="tau='auto' needs groups"):
        ConditionNormalizer(tau="auto").fit(X)
    with pytest.raises(ValueError, match="at least 2 conditions"):
        ConditionNormalizer(tau="auto").fit(X, groups=np.zeros(len(X)))


def test_group_moments_match_numpy(speakers):
    X, groups = speakers
    index = np.unique(groups, return_inverse=True)[1]
    moments = group_moments(X + 1e8, index, 4)  # large offsets: two passes keep precision
    for g in range(3):
        np.testing.assert_allclose(moments.mean[g], X[index == g].mean(axis=0) + 1e8)
        np.testing.assert_allclose(moments.var[g], X[index == g].var(axis=0), rtol=1e-6)
    assert moments.count.tolist() == [10, 10, 10, 0]
    np.testing.assert_allclose(global_moments(X).var, X.var(axis=0))


def test_statistics_from_fit_or_from_the_rows_in_transform(speakers):
    X, groups = speakers
    rows_a = groups == "a"
    by_fit = ConditionNormalizer(statistics="fit").fit(X, groups=groups)
    by_rows = ConditionNormalizer().fit(X, groups=groups)
    few = X[rows_a][:3]
    # "fit": speaker a's fitted mean, whatever rows come; one row at a time is the same
    np.testing.assert_allclose(by_fit.transform(few, groups=["a"] * 3),
                               few - X[rows_a].mean(axis=0))
    np.testing.assert_allclose(by_fit.transform(few[:1], groups=["a"]),
                               by_fit.transform(few, groups=["a"] * 3)[:1])
    # an unseen speaker under "fit": the global mean
    np.testing.assert_allclose(by_fit.transform(few, groups=["z"] * 3), few - X.mean(axis=0))
    # "transform": the mean of the rows in the call
    np.testing.assert_allclose(by_rows.transform(few, groups=["a"] * 3),
                               few - few.mean(axis=0))
    # no groups: the global statistics, in either mode
    for norm in (by_fit, by_rows):
        np.testing.assert_allclose(norm.transform(few), few - X.mean(axis=0))
    assert by_fit.groups_.tolist() == ["a", "b", "c"]
    assert by_fit.group_counts_.tolist() == [10, 10, 10]


def test_one_row_and_constant_features_stay_finite():
    X = np.array([[1.0, 7.0], [3.0, 7.0], [5.0, 7.0]])
    Z = ConditionNormalizer(kind="meanvar").fit(X).transform(X, groups=[0, 1, 1])
    assert np.all(np.isfinite(Z))
    np.testing.assert_array_equal(Z[:, 1], 0)  # constant: centred only
    assert Z[0, 0] == 0  # a single row is its own mean


def test_dtype_is_kept(speakers):
    X, groups = speakers
    out = ConditionNormalizer(kind="meanvar").fit(X).transform(X.astype(np.float32),
                                                                groups=groups)
    assert out.dtype == np.float32


def test_bad_groups(speakers):
    X, groups = speakers
    norm = ConditionNormalizer().fit(X, groups=groups)
    with pytest.raises(ValueError, match="groups has 29 entries but X has 30 rows"):
        norm.transform(X, groups=groups[:-1])
    with pytest.raises(ValueError, match="kind"):
        ConditionNormalizer(kind="median").fit(X)
    with pytest.raises(ValueError, match="tau"):
        ConditionNormalizer(tau=-1).fit(X)


def test_pipeline_routes_groups(speakers):
    """With metadata routing, ``groups`` reaches fit and transform inside a Pipeline, so
    a classifier sees normalised features in fit and in predict."""
    X, groups = speakers
    y = (np.arange(len(X)) % 3 == 0).astype(int)
    with sklearn.config_context(enable_metadata_routing=True):
        norm = ConditionNormalizer().set_fit_request(groups=True)
        norm.set_transform_request(groups=True)
        pipe = make_pipeline(norm, LogisticRegression()).fit(X, y, groups=groups)
        Z = ConditionNormalizer().fit_transform(X, groups=groups)
        direct = LogisticRegression().fit(Z, y)
        np.testing.assert_allclose(pipe[-1].coef_, direct.coef_)
        np.testing.assert_array_equal(pipe.predict(X, groups=groups), direct.predict(Z))
        np.testing.assert_allclose(pipe[0].transform(X, groups=groups), Z)


def test_feature_names_and_pandas_output(speakers):
    pd = pytest.importorskip("pandas")
    X, groups = speakers
    frame = pd.DataFrame(X, columns=["f1", "f2"])
    norm = ConditionNormalizer().set_output(transform="pandas").fit(frame, groups=groups)
    out = norm.transform(frame, groups=groups)
    assert list(out.columns) == ["f1", "f2"]
    assert norm.get_feature_names_out().tolist() == ["f1", "f2"]


def test_skops_round_trip(speakers, tmp_path):
    sio = pytest.importorskip("skops.io")
    import skdc

    X, groups = speakers
    norm = ConditionNormalizer(kind="meanvar", tau=2.0, statistics="fit").fit(X, groups=groups)
    path = tmp_path / "norm.skops"
    sio.dump(norm, path)
    assert set(sio.get_untrusted_types(file=path)) <= set(skdc.SKOPS_TRUSTED_TYPES)
    loaded = sio.load(path, trusted=skdc.SKOPS_TRUSTED_TYPES)
    np.testing.assert_array_equal(loaded.transform(X, groups=groups),
                                  norm.transform(X, groups=groups))
