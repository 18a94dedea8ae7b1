"""``class_weight`` on CodeAdapter and CodeNetwork, as in scikit-learn's classifiers.

Class weights multiply ``sample_weight``; ``"balanced"`` is computed over the labelled
rows of each group. The oracle is scikit-learn's own ``compute_class_weight`` applied
group by group and passed as ``sample_weight``: the fits must then be the same.
"""

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight

from skdc import CodeAdapter, CodeAdapterRegressor, CodeNetwork, CodeNetworkRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

LBFGS = dict(optimizer="lbfgs", max_iter=40, random_state=0)


@pytest.fixture(scope="module")
def unbalanced(conditions):
    """Rows of conditions 0-2: up to 20 of each one's most frequent class, 2 of the others."""
    X, y, groups, _ = conditions
    rows = []
    for g in range(3):
        mine = np.flatnonzero(groups == g)
        counts = np.bincount(y[mine], minlength=4)
        for c in range(4):
            rows.extend(mine[y[mine] == c][: 20 if c == counts.argmax() else 2])
    rows = np.array(rows)
    return X[rows], y[rows], groups[rows]


def _per_group(groups, weigh):
    """Row weights from ``weigh(rows_of_one_group)``, group by group."""
    weight = np.ones(len(groups))
    for g in np.unique(groups):
        rows = groups == g
        weight[rows] = weigh(rows)
    return weight


def _codes(adapter):
    return np.stack([adapter.codes_[g] for g in sorted(adapter.codes_)])


def test_balanced_changes_the_codes_and_equals_its_sample_weight(teacher, unbalanced):
    X, y, groups = unbalanced
    assert max(np.bincount(y[groups == g]).max() for g in range(3)) >= 10  # unbalanced
    plain = CodeAdapter(teacher, **LBFGS).fit(X, y, groups=groups)
    balanced = CodeAdapter(teacher, class_weight="balanced", **LBFGS).fit(X, y, groups=groups)
    weight = _per_group(groups, lambda rows: compute_sample_weight("balanced", y[rows]))
    equivalent = CodeAdapter(teacher, **LBFGS).fit(X, y, groups=groups, sample_weight=weight)
    np.testing.assert_allclose(_codes(balanced), _codes(equivalent), rtol=0, atol=1e-6)
    assert np.abs(_codes(balanced) - _codes(plain)).max() > 0.05


def test_balanced_uses_the_weighted_class_counts_with_sample_weight(teacher, unbalanced):
    X, y, groups = unbalanced
    sample_weight = np.random.default_rng(0).uniform(0.5, 2.0, len(y))

    def weigh(rows):
        classes = np.unique(y[rows])
        per_class = compute_class_weight("balanced", classes=classes, y=y[rows],
                                         sample_weight=sample_weight[rows])
        return sample_weight[rows] * per_class[np.searchsorted(classes, y[rows])]

    balanced = CodeAdapter(teacher, class_weight="balanced", **LBFGS).fit(
        X, y, groups=groups, sample_weight=sample_weight)
    equivalent = CodeAdapter(teacher, **LBFGS).fit(X, y, groups=groups,
                                                   sample_weight=_per_group(groups, weigh))
    np.testing.assert_allclose(_codes(balanced), _codes(equivalent), rtol=0, atol=1e-6)


def test_dict_weighs_labels_and_leaves_other_classes_at_one(teacher, unbalanced):
    X, y, groups = unbalanced
    names = np.array(["aa", "iy", "uw", "eh"])
    weights = {"aa": 3.0, "uw": 0.5}
    weighted = CodeAdapter(teacher, classes=names, class_weight=weights, **LBFGS).fit(
        X, names[y])
    sample_weight = np.array([weights.get(label, 1.0) for label in names[y]])
    equivalent = CodeAdapter(teacher, classes=names, **LBFGS).fit(
        X, names[y], sample_weight=sample_weight)
    np.testing.assert_allclose(weighted.code_, equivalent.code_, rtol=0, atol=1e-6)
    plain = CodeAdapter(teacher, classes=names, **LBFGS).fit(X, names[y])
    assert np.abs(weighted.code_ - plain.code_).max() > 0.05


def test_unlabelled_rows_keep_their_weight(teacher, unbalanced):
    X, y, groups = unbalanced
    y = y.copy()
    y[::3] = -1  # semi-supervised: a third of the rows without a label
    labelled = y >= 0

    def weigh(rows):
        w = np.ones(rows.sum())
        w[labelled[rows]] = compute_sample_weight("balanced", y[rows][labelled[rows]])
        return w

    params = dict(optimizer="lbfgs", max_iter=15, random_state=0)
    balanced = CodeAdapter(teacher, class_weight="balanced", **params).fit(X, y, groups=groups)
    equivalent = CodeAdapter(teacher, **params).fit(X, y, groups=groups,
                                                    sample_weight=_per_group(groups, weigh))
    np.testing.assert_allclose(_codes(balanced), _codes(equivalent), rtol=0, atol=1e-6)


def test_partial_fit_takes_a_dict_and_refuses_balanced(teacher, unbalanced):
    X, y, _ = unbalanced
    weighted = CodeAdapter(teacher, class_weight={0: 4.0}, random_state=0)
    equivalent = CodeAdapter(teacher, random_state=0)
    for _ in range(3):
        weighted.partial_fit(X, y)
        equivalent.partial_fit(X, y, sample_weight=np.where(y == 0, 4.0, 1.0))
    np.testing.assert_allclose(weighted.code_, equivalent.code_, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="'balanced' is not supported by partial_fit"):
        CodeAdapter(teacher, class_weight="balanced").partial_fit(X, y)


def test_bad_class_weight_is_a_clear_error(teacher, unbalanced):
    X, y, _ = unbalanced
    with pytest.raises(ValueError, match=r"class_weight has label\(s\) \[7\] that are not "
                                         r"among the classes \[0, 1, 2, 3\]"):
        CodeAdapter(teacher, class_weight={7: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight\\[1\\] must be a finite non-negative"):
        CodeAdapter(teacher, class_weight={1: -1.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight"):  # InvalidParameterError
        CodeAdapter(teacher, class_weight="even").fit(X, y)
    with pytest.raises(ValueError, match="sample_weight times class_weight is zero"):
        CodeAdapter(teacher, class_weight=dict.fromkeys(range(4), 0.0)).fit(X, y)
    with pytest.raises(ValueError, match="not among the classes"):
        CodeNetwork((4,), code_size=2, max_iter=1, class_weight={"x": 1.0}).fit(
            X, y, groups=np.arange(len(y)) % 2)


def test_code_network_balanced_per_condition_equals_its_sample_weight(unbalanced):
    X, y, groups = unbalanced
    params = dict(hidden_layer_sizes=(8,), code_size=2, max_iter=8, random_state=0)
    weight = _per_group(groups, lambda rows: compute_sample_weight("balanced", y[rows]))
    assert weight.max() > 5 * weight.min()  # far from the unweighted fit (every weight 1)
    balanced = CodeNetwork(class_weight="balanced", **params).fit(X, y, groups=groups)
    equivalent = CodeNetwork(**params).fit(X, y, groups=groups, sample_weight=weight)
    np.testing.assert_allclose(balanced.predict_proba(X, groups=groups),
                               equivalent.predict_proba(X, groups=groups), rtol=0, atol=1e-6)
    for g, code in equivalent.codes_.items():
        np.testing.assert_allclose(balanced.codes_[g], code, rtol=0, atol=1e-6)


def test_regressors_have_no_class_weight():
    assert "class_weight" not in CodeAdapterRegressor(None).get_params()
    assert "class_weight" not in CodeNetworkRegressor().get_params()
