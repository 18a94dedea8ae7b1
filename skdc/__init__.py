"""skdc: scikit-learn estimators for fast adaptation of Keras models with condition codes."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter quiet

from ._adapter import CodeAdapter, CodeAdapterRegressor  # noqa: E402
from ._prior import CodePrior  # noqa: E402

__version__ = "0.1.0"

__all__ = ["CodeAdapter", "CodeAdapterRegressor", "CodePrior", "__version__"]
