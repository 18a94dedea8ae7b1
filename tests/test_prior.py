"""The code prior's shrinkage and the code size chosen from the number of conditions."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeNetwork
from skdc._prior import prior_from_codes
from skdc._synthetic import make_conditions, make_teacher


@pytest.fixture(scope="module")
def shifted():
    teacher = make_teacher(shift=True, random_state=0)
    return make_conditions(teacher, n_conditions=12, rows_per_condition=20, shift=True,
                           random_state=1)


def test_code_size_auto_follows_the_number_of_conditions(shifted):
    X, y, groups, _ = shifted
    net = CodeNetwork((8,), code_size="auto", max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net.fit(X, y, groups=groups)  # 12 conditions: 12 // 4 = 3
        assert net.code_size_ == 3 and len(net.codes_[0]) == 3
        net.set_params(code_size="auto", input_shift=2).fit(X[groups < 5], y[groups < 5],
                                                             groups=groups[groups < 5])
    assert net.code_size_ == 2 and len(net.codes_[0]) == 2 + 2


@pytest.mark.parametrize("shrinkage", ["oas", "ledoit_wolf"])
def test_estimated_shrinkage_keeps_each_dimensions_variance(shrinkage):
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(24, 16)) * np.r_[np.full(8, 0.2), np.ones(8)]
    fixed, shrunk = prior_from_codes(codes), prior_from_codes(codes, shrinkage)
    np.testing.assert_allclose(np.diag(shrunk.covariance), codes.var(axis=0, ddof=1))
    np.testing.assert_allclose(shrunk.mean, codes.mean(axis=0))
    # 24 codes of 16 dimensions: the fixed 1e-3 leaves the covariance near singular
    assert np.linalg.cond(shrunk.covariance) < np.linalg.cond(fixed.covariance) / 5
