"""The input-level part of a condition code: a feature offset per condition."""

import warnings

import keras
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeNetwork, CodeNetworkRegressor, add_condition_codes
from skdc._input_shift import condition_offsets
from skdc._synthetic import make_conditions, make_teacher


def _mlp(n_features=12):
    return keras.Sequential([keras.Input((n_features,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(3, activation="softmax")])


def test_shift_part_adds_a_tiled_offset_and_zero_reproduces_the_model(tmp_path):
    si = _mlp(12)
    coded = add_condition_codes(si, 2, input_shift=4)
    assert coded.inputs[1].shape[-1] == 4 + 2
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 12)).astype("float32")
    zero = np.zeros((7, 6), "float32")
    np.testing.assert_array_equal(coded([X, zero]), si(X))
    shift = np.concatenate([np.full((7, 4), [1.0, -2.0, 0.5, 3.0]), np.zeros((7, 2))], axis=1)
    moved = X + np.tile([1.0, -2.0, 0.5, 3.0], 3)  # offset-major: the same shift every 4 columns
    np.testing.assert_allclose(coded([X, shift.astype("float32")]), si(moved), atol=1e-6)
    coded.save(tmp_path / "coded.keras")  # keras.ops nodes only: loads in safe mode
    loaded = keras.models.load_model(tmp_path / "coded.keras", safe_mode=True)
    np.testing.assert_allclose(loaded([X, shift.astype("float32")]), si(moved), atol=1e-6)


@pytest.mark.parametrize("value, error, match", [
    (5, ValueError, "divisor of the number of features \\(12\\)"),
    (0, ValueError, "positive divisor"),
    (True, TypeError, "input_shift must be None"),
    ("half", TypeError, "input_shift must be None"),
])
def test_bad_input_shift(value, error, match):
    with pytest.raises(error, match=match):
        add_condition_codes(_mlp(12), 2, input_shift=value)


def test_full_shift_has_one_offset_per_feature():
    coded = add_condition_codes(_mlp(5), 3, input_shift="full")
    assert coded.inputs[1].shape[-1] == 5 + 3


def test_condition_offsets_remove_each_conditions_offset():
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(3), 200)
    label = np.tile(np.arange(4), 150)
    offset = np.array([[1.0, 2.0], [-1.0, 0.0], [0.0, -2.0]])
    X = rng.normal(size=(600, 2)) * 0.1 + 3.0 * label[:, None] + offset[group]
    X = np.tile(X, 3)  # three context frames, offset-major
    shift = condition_offsets(X, group, 3, 2, label)
    np.testing.assert_allclose(shift, -(offset - offset.mean(axis=0)), atol=0.05)
    moved = X + np.tile(shift, 3)[group]
    means = np.stack([moved[group == g].mean(axis=0) for g in range(3)])
    np.testing.assert_allclose(means, means.mean(axis=0)[None].repeat(3, 0), atol=0.05)


@pytest.fixture(scope="module")
def shifted():
    """Conditions that differ by a feature offset (the features are observed moved)."""
    teacher = make_teacher(shift=True, random_state=0)
    return make_conditions(teacher, n_conditions=12, rows_per_condition=60, shift=True,
                           random_state=1)


def _fit(cls, X, y, groups, **params):
    net = cls((16,), code_size=2, random_state=0, **{"max_iter": 30, **params})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return net.fit(X, y, groups=groups)


def test_code_network_learns_each_conditions_shift(shifted):
    X, y, groups, true = shifted
    net = _fit(CodeNetwork, X, y, groups, input_shift="full")
    assert net.input_shift_ == 6
    codes = np.stack([net.codes_[g] for g in range(12)])
    assert codes.shape == (12, 6 + 2)
    learned = codes[:, :6] - codes[:, :6].mean(axis=0)
    truth = -(true - true.mean(axis=0))
    assert np.corrcoef(learned.ravel(), truth.ravel())[0, 1] > 0.9
    assert len(net.code_prior_.mean) == 8
    plain = _fit(CodeNetwork, X, y, groups)  # hidden codes must learn the shift themselves
    assert net.score(X, y, groups=groups) > plain.score(X, y, groups=groups) + 0.05


def test_shift_codes_adapt_new_conditions(shifted):
    X, y, groups, _ = shifted
    train = groups < 10
    net = _fit(CodeNetwork, X[train], y[train], groups[train], input_shift="full",
               max_iter=100)
    new = np.flatnonzero(~train)
    adapt = np.concatenate([new[groups[new] == g][:30] for g in (10, 11)])
    test = np.setdiff1d(new, adapt)
    adapter = net.adapter(max_iter=100, optimizer="lbfgs")
    adapter.fit(X[adapt], y[adapt], groups=groups[adapt])
    assert adapter.codes_[10].shape == (8,)
    adapted = adapter.score(X[test], y[test], groups=groups[test])
    assert adapted > net.score(X[test], y[test]) + 0.05  # the prior mean code


def test_regressor_and_retrofit_take_a_shift(shifted):
    X, y, groups, _ = shifted
    reg = _fit(CodeNetworkRegressor, X, y.astype(float), groups, input_shift=3)
    assert reg.input_shift_ == 3 and len(reg.codes_[0]) == 3 + 2
    base = _mlp(6)
    net = _fit(CodeNetwork, X, y % 3, groups, input_shift=2, base_model=base)
    assert len(net.codes_[0]) == 2 + 2
    # a retrofit starts from the pretrained model: zero shift, hidden codes not centred
    assert net.predict_proba(X[:5]).shape == (5, 3)


def test_shift_with_a_coded_base_model_is_refused(shifted):
    X, y, groups, _ = shifted
    coded = add_condition_codes(_mlp(6), 2)
    with pytest.raises(ValueError, match="base_model already has one"):
        _fit(CodeNetwork, X, y % 3, groups, input_shift=2, base_model=coded)



# -- the shift estimated in closed form (empirical Bayes): codes on top of the shift --

def _eb_shifts(prior, X, label, groups, n_groups, units=None):
    """The code's shift part by hand: class residuals, averaged per unit, summed per
    group over (units + ratio), negated."""
    resid = X - prior.class_means[label]
    if units is None:
        units = np.arange(len(X))
    shifts = np.zeros((n_groups, X.shape[1]))
    for g in range(n_groups):
        mine = groups == g
        unit_means = [resid[mine & (units == u)].mean(axis=0) for u in np.unique(units[mine])]
        if unit_means:
            shifts[g] = np.sum(unit_means, axis=0) / (len(unit_means) + prior.ratio)
    return -shifts


@pytest.fixture(scope="module")
def eb_network(shifted):
    X, y, groups, _ = shifted
    train = groups < 10
    return _fit(CodeNetwork, X[train], y[train], groups[train], input_shift="full",
                shift_estimate="empirical_bayes", code_dropout=0.3, max_iter=40)


def test_empirical_bayes_shift_is_estimated_and_held_in_training(shifted, eb_network):
    X, y, groups, true = shifted
    train = groups < 10
    prior = eb_network.shift_prior_
    assert prior.class_means.shape == (len(eb_network.classes_), 6) and prior.ratio.shape == (6,)
    label = np.searchsorted(eb_network.classes_, y[train])
    expected = _eb_shifts(prior, X[train], label, groups[train], 10)
    codes = np.stack([eb_network.codes_[g] for g in range(10)])
    np.testing.assert_allclose(codes[:, :6], expected, atol=1e-5)  # not moved by training
    truth = -(true[:10] - true[:10].mean(axis=0))
    assert np.corrcoef(codes[:, :6].ravel(), truth.ravel())[0, 1] > 0.9
    assert eb_network.code_prior_.mean.shape == (8,)


def test_adapter_removes_the_estimated_shift_and_learns_the_hidden_code(shifted, eb_network):
    """The adapted code's shift part is the closed-form shift of the labelled rows, and
    its hidden part what the same model learns on features with that shift removed."""
    from skdc import CodeAdapter, CodePrior

    X, y, groups, _ = shifted
    new = np.flatnonzero(groups >= 10)
    adapt = np.concatenate([new[groups[new] == g][:6] for g in (10, 11)])
    adapter = eb_network.adapter(optimizer="lbfgs", max_iter=50).fit(
        X[adapt], y[adapt], groups=groups[adapt])
    assert adapter.shift_prior is eb_network.shift_prior_
    label = np.searchsorted(eb_network.classes_, y[adapt])
    local = groups[adapt] - 10
    shift = _eb_shifts(eb_network.shift_prior_, X[adapt], label, local, 2)
    for g in (10, 11):
        np.testing.assert_allclose(adapter.codes_[g][:6], shift[g - 10], atol=1e-5)
    prior = eb_network.code_prior_
    hidden_cov = np.zeros((8, 8))
    hidden_cov[:6, :6] = 1e-12 * np.eye(6)
    hidden_cov[6:, 6:] = prior.covariance[6:, 6:]
    mean = np.r_[np.zeros(6), prior.mean[6:]]
    moved = X[adapt] + shift[local]  # the features with each group's shift removed
    reference = CodeAdapter(eb_network.model_, code_init={g: CodePrior(mean, hidden_cov)
                                                          for g in (10, 11)},
                            optimizer="lbfgs", max_iter=50).fit(moved, y[adapt],
                                                                groups=groups[adapt])
    for g in (10, 11):
        np.testing.assert_allclose(adapter.codes_[g][6:], reference.codes_[g][6:], atol=1e-3)


def test_adapter_counts_an_utterance_once(shifted, eb_network):
    X, y, groups, _ = shifted
    rows = np.flatnonzero(groups == 10)[:3]
    one = eb_network.adapter(max_iter=1, tol=0).fit(X[rows], y[rows], groups=groups[rows])
    copies = np.repeat(rows, 20)
    many = eb_network.adapter(max_iter=1, tol=0).fit(X[copies], y[copies], groups=groups[copies],
                                              units=copies)
    np.testing.assert_allclose(many.codes_[10][:6], one.codes_[10][:6], atol=1e-6)


def test_unlabelled_rows_inform_the_shift_by_their_offset_from_the_mean(shifted, eb_network):
    X, y, groups, true = shifted
    prior = eb_network.shift_prior_
    assert prior.mean.shape == (6,) and np.all((prior.unlabelled_weight > 0)
                                               & (prior.unlabelled_weight <= 1))
    new = groups >= 10
    label = np.searchsorted(eb_network.classes_, y[new])
    local = groups[new] - 10
    unknown = np.full(new.sum(), -1)
    np.testing.assert_array_equal(prior.shifts(X[new], unknown, local, 2), 0.0)
    w = prior.unlabelled_weight
    by_hand = np.stack([(X[new][local == g] - prior.mean).sum(axis=0)
                        * w / ((local == g).sum() * w + prior.ratio) for g in (0, 1)])
    shifts = prior.shifts(X[new], unknown, local, 2, unlabelled=True)
    np.testing.assert_allclose(shifts, by_hand, rtol=1e-10)
    labelled = prior.shifts(X[new], label, local, 2)
    np.testing.assert_array_equal(prior.shifts(X[new], label, local, 2, unlabelled=True),
                                  labelled)  # nothing unlabelled: as before
    truth = true[10:] - true[:10].mean(axis=0)
    assert np.corrcoef(shifts.ravel(), truth.ravel())[0, 1] > 0.9


def test_unsupervised_adapter_removes_a_new_groups_shift(shifted, eb_network):
    """No label at all: the adapter still removes each group's shift (estimated from its
    rows' offset), where the prior mean code leaves the features as they are."""
    X, y, groups, _ = shifted
    new = np.flatnonzero(groups >= 10)
    adapter = eb_network.adapter(optimizer="lbfgs", max_iter=20).fit(X[new], groups=groups[new])
    expected = -eb_network.shift_prior_.shifts(X[new], np.full(len(new), -1), groups[new] - 10,
                                               2, unlabelled=True)
    for g in (10, 11):
        np.testing.assert_allclose(adapter.codes_[g][:6], expected[g - 10], atol=1e-5)
    assert (adapter.score(X[new], y[new], groups=groups[new])
            > eb_network.score(X[new], y[new]) + 0.05)


def test_empirical_bayes_shift_needs_a_shift_part_and_fit(shifted, eb_network):
    X, y, groups, _ = shifted
    with pytest.raises(ValueError, match="set input_shift too"):
        _fit(CodeNetwork, X, y, groups, shift_estimate="empirical_bayes")
    with pytest.raises(ValueError, match='not available with training="episodic"'):
        _fit(CodeNetwork, X, y, groups, input_shift="full", shift_estimate="empirical_bayes",
             training="episodic")
    with pytest.raises(ValueError, match="need all of a condition's rows in one fit"):
        eb_network.adapter().partial_fit(X[:5], y[:5], groups=groups[:5])
    from skdc import CodeAdapter

    small = CodeAdapter(_coded(4), shift_prior=eb_network.shift_prior_)
    with pytest.raises(ValueError, match="shift part of 6 entries"):
        small.fit(X[:5], y[:5] % 3, groups=groups[:5])


def _one_direction_shifts(n_groups=60, rows=8, seed=0, off_direction=0.0):
    """Conditions whose feature shifts lie along one direction (as vocal-tract length
    moves every log formant), plus ``off_direction`` of isotropic spread, observed
    through isotropic noise; 3 classes."""
    rng = np.random.default_rng(seed)
    direction = np.array([1.0, 0.8, 0.6, 0.4])
    true = (rng.normal(size=(n_groups, 1)) * direction
            + rng.normal(scale=off_direction, size=(n_groups, 4)))
    groups = np.repeat(np.arange(n_groups), rows)
    label = rng.integers(0, 3, len(groups))
    X = np.eye(3, 4)[label] * 3 + true[groups] + rng.normal(scale=0.5, size=(len(groups), 4))
    return X, label, groups, true


def test_full_shift_prior_is_the_gaussian_posterior_mean():
    """``covariance="full"``: the shift from n units is ``T (n T + S)^-1 sum(r)``, with
    ``S`` the pooled within-condition and ``T`` the between-condition covariance of
    the residuals; on one feature it is the diagonal prior."""
    from skdc import ShiftPrior

    X, label, groups, _ = _one_direction_shifts(off_direction=0.5)
    prior = ShiftPrior.fit(X, label, groups, covariance="full")
    assert prior.ratio.shape == (4, 4)
    resid = X - prior.class_means[label]
    means = np.stack([resid[groups == g].mean(axis=0) for g in range(60)])
    spread = resid - means[groups]
    within = spread.T @ spread / (len(X) - 60)
    between = np.cov(means, rowvar=False) - within / 8
    rows = np.array([0, 1, 2, 8])  # three units of condition 0, one of condition 1
    got = prior.shifts(X[rows], label[rows], groups[rows], 3)
    for g, n in ((0, 3), (1, 1)):
        expected = between @ np.linalg.solve(n * between + within,
                                             resid[rows][groups[rows] == g].sum(axis=0))
        np.testing.assert_allclose(got[g], expected, rtol=1e-8)
    np.testing.assert_array_equal(got[2], 0.0)  # no rows: the prior mean
    one = [ShiftPrior.fit(X[:, :1], label, groups, covariance=c) for c in ("diag", "full")]
    np.testing.assert_allclose(one[1].ratio, one[0].ratio[None], rtol=1e-10)
    with pytest.raises(ValueError, match="covariance must be 'diag' or 'full'"):
        ShiftPrior.fit(X, label, groups, covariance="tied")


def test_full_shift_prior_shrinks_one_units_noise_off_the_shifts_direction():
    """Shifts along one direction: from one row of a new condition the full prior's
    estimate is nearer the true shift than the per-feature prior's."""
    from skdc import ShiftPrior

    X, label, groups, _ = _one_direction_shifts()
    new, new_label, new_groups, true = _one_direction_shifts(seed=1)
    first = np.flatnonzero(np.r_[True, np.diff(new_groups) != 0])  # one row per condition
    errors = {}
    for covariance in ("diag", "full"):
        prior = ShiftPrior.fit(X, label, groups, covariance=covariance)
        shifts = prior.shifts(new[first], new_label[first], new_groups[first], 60)
        errors[covariance] = np.mean((shifts - true) ** 2)
    assert errors["full"] < 0.6 * errors["diag"], errors


def test_network_with_a_full_shift_prior_adapts_by_it(shifted):
    """``CodeNetwork(shift_covariance="full")`` fits the full prior, and its adapter
    removes a new condition's shift by it."""
    from skdc import ShiftPrior

    X, y, groups, _ = shifted
    train = groups < 10
    net = _fit(CodeNetwork, X[train], y[train], groups[train], input_shift="full",
               shift_estimate="empirical_bayes", shift_covariance="full", max_iter=10)
    label = np.searchsorted(net.classes_, y[train])
    expected = ShiftPrior.fit(X[train], label, groups[train], covariance="full")
    assert net.shift_prior_.ratio.shape == (6, 6)
    np.testing.assert_allclose(net.shift_prior_.ratio, expected.ratio, rtol=1e-6)
    new = np.flatnonzero(groups == 10)[:3]
    adapted = net.adapter(max_iter=5).fit(X[new], y[new], groups=groups[new])
    shift = expected.shifts(X[new], np.searchsorted(net.classes_, y[new]),
                            np.zeros(3, int), 1)
    np.testing.assert_allclose(adapted.codes_[10][:6], -shift[0], atol=1e-5)
    with pytest.raises(ValueError, match="shift_covariance"):
        _fit(CodeNetwork, X, y, groups, input_shift="full", shift_covariance="tied")


def test_staged_training_is_the_network_on_shift_normalised_conditions_with_codes(shifted):
    """``training="staged"``: first the network without codes on conditions with their
    estimated shift removed, then, frozen, the ``B_l`` and codes: the same model as
    that network given as ``base_model``."""
    from skdc import ShiftPrior
    from skdc._training import Architecture, Schedule, si_twin

    X, y, groups, _ = shifted
    train = groups < 10
    X, y, groups = X[train].astype(np.float32), y[train], groups[train]
    staged = _fit(CodeNetwork, X, y, groups, input_shift="full",
                  shift_estimate="empirical_bayes", training="staged")
    label = np.searchsorted(staged.classes_, y)
    shifts = ShiftPrior.fit(X, label, groups).shifts(X, label, groups, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        base = si_twin(X - shifts[groups].astype(np.float32), y, groups, random_state=0,
                       architecture=Architecture(hidden_layer_sizes=(16,)),
                       schedule=Schedule(max_iter=30))
    given = _fit(CodeNetwork, X, y, groups, input_shift="full",
                 shift_estimate="empirical_bayes", base_model=base)
    np.testing.assert_allclose(staged.predict_proba(X, groups=groups),
                               given.predict_proba(X, groups=groups), atol=1e-5)
    new = np.flatnonzero(shifted[2] >= 10)[:12]
    Xn, yn, gn = shifted[0][new], shifted[1][new], shifted[2][new]
    adapted = [net.adapter(max_iter=20).fit(Xn, yn, groups=gn).predict_proba(Xn, groups=gn)
               for net in (staged, given)]
    np.testing.assert_allclose(adapted[0], adapted[1], atol=1e-5)
    with pytest.raises(ValueError, match='training="staged" trains the network without codes'):
        _fit(CodeNetwork, X, y, groups, training="staged", base_model=base)


def _coded(code_size):
    return add_condition_codes(_mlp(6), code_size)
