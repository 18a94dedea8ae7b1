"""The one stopping rule (``skdc._stopping.Patience``) with ``tol > 0``, in both loops."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeAdapter, CodeNetwork
from skdc._stopping import Patience
from skdc._training import Stopper


def _replay(curve, tol=1e-4, patience=5):
    """Epoch at which the network's Stopper stops (None: never), and the kept epoch."""
    stopper = Stopper(tol, patience, keep_best=True)
    for epoch, value in enumerate(curve):
        if stopper.stop(epoch, value, lambda e=epoch: e):
            return epoch, stopper.best_weights
    return None, stopper.best_weights


def test_a_flat_loss_stops_after_the_patience():
    stopped, kept = _replay([1.0] * 50)
    assert stopped == 5  # five epochs after the first without a gain of more than tol
    assert kept == 0


def test_a_slowly_rising_loss_keeps_the_first_epoch():
    stopped, kept = _replay([1.0 + 5e-5 * i for i in range(50)])
    assert stopped == 5
    assert kept == 0  # not the last, worse epoch


def test_gains_smaller_than_tol_do_not_reset_the_patience_but_are_kept():
    stopped, kept = _replay([1.0 - 5e-5 * i for i in range(50)])
    assert stopped == 5
    assert kept == 5  # the lowest loss seen


def test_a_gain_larger_than_tol_resets_the_patience():
    curve = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    stopped, kept = _replay(curve, patience=3)
    assert (stopped, kept) == (6, 3)


def test_patience_is_per_series_and_ignores_masked_and_non_finite_values():
    rule = Patience(3, tol=0.1, patience=2)
    rule.update([1.0, 1.0, 1.0])
    rule.update([0.95, 0.5, np.nan], mask=[True, True, True])
    rule.update([0.94, 0.4, 0.3], mask=[True, True, False])
    np.testing.assert_array_equal(rule.best, [0.94, 0.4, 1.0])
    np.testing.assert_array_equal(rule.exhausted(), [True, False, False])


def test_network_training_stops_on_a_flat_loss(conditions):
    X, y, groups, _ = conditions
    net = CodeNetwork(hidden_layer_sizes=(8,), code_size=2, learning_rate_init=1e-12,
                      max_iter=40, n_iter_no_change=3, tol=1e-4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        net.fit(X[:120], y[:120], groups=groups[:120])
    assert net.n_iter_ == 4


@pytest.mark.backend
def test_adaptation_stops_on_a_flat_objective(teacher, one_condition):
    X, y, _, _, _ = one_condition
    adapter = CodeAdapter(teacher, learning_rate=1e-9, max_iter=40, n_iter_no_change=3,
                          tol=1e-4, random_state=0).fit(X, y)
    assert adapter.n_iter_ == 4


def test_the_networks_convergence_warning_points_at_the_call(conditions):
    X, y, groups, _ = conditions
    net = CodeNetwork(hidden_layer_sizes=(8,), code_size=2, max_iter=2, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.fit(X[:120], y[:120], groups=groups[:120])
    files = [w.filename for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert files == [__file__]
