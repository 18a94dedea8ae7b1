"""``clone`` for estimators that hold a frozen Keras model.

scikit-learn's ``clone`` deep-copies every parameter that is not an estimator,
which would copy the model (slow, and a different object, so its compiled graphs
would be traced again). The estimators of skdc never write to their model, so a
clone shares it. Everything else is as in ``sklearn.base.clone``, including the
metadata requests (``set_fit_request``...) that routing through ``Pipeline`` and
``GridSearchCV`` relies on.
"""

from __future__ import annotations

import copy

from sklearn.base import BaseEstimator, clone

__all__ = ["clone_sharing"]


def clone_sharing(estimator: BaseEstimator, shared: str) -> BaseEstimator:
    """An unfitted copy of ``estimator`` whose parameter ``shared`` is the same object."""
    params = estimator.get_params(deep=False)
    kept = params.pop(shared)
    new = type(estimator)(**{shared: kept, **{k: clone(v, safe=False) for k, v in params.items()}})
    if hasattr(estimator, "_metadata_request"):
        new._metadata_request = copy.deepcopy(estimator._metadata_request)
    return new
