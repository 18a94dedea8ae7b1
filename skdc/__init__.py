"""skdc: scikit-learn estimators for fast adaptation of Keras models with condition codes."""

import os
import sys


def _import_tensorflow_quietly() -> None:
    # TensorFlow's C++ start-up lines (oneDNN, CUDA probing) bypass every logging setting;
    # send file descriptor 2 to /dev/null while it loads. Python errors still propagate.
    if "tensorflow" in sys.modules or os.environ.get("SKDC_TF_STARTUP_LOG") == "1":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def _match_tensorflow_threads_to_joblib() -> None:
    # joblib's loky workers get OMP_NUM_THREADS = cores // n_jobs; TensorFlow ignores it and
    # would start one thread per core in every worker. Its own variables take the same limit.
    limit = os.environ.get("OMP_NUM_THREADS")
    if limit and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", limit)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", limit)


_match_tensorflow_threads_to_joblib()
_import_tensorflow_quietly()

from . import datasets  # noqa: E402
from ._adapter import CodeAdapter, CodeAdapterRegressor  # noqa: E402
from ._network import CodeNetwork, CodeNetworkRegressor  # noqa: E402
from ._persist import allow_unsafe_models  # noqa: E402
from ._prior import CodePrior  # noqa: E402
from ._retrofit import add_condition_codes  # noqa: E402

__version__ = "0.1.0"

#: Types to pass as ``trusted=`` to ``skops.io.load`` for skdc estimators; their Keras
#: models travel as ``.keras`` bytes and load with ``safe_mode=True``.
SKOPS_TRUSTED_TYPES = [
    "skdc._adapter.CodeAdapter",
    "skdc._adapter.CodeAdapterRegressor",
    "skdc._network.CodeNetwork",
    "skdc._network.CodeNetworkRegressor",
    "skdc._prior.CodePrior",
]

__all__ = [
    "CodeAdapter",
    "CodeAdapterRegressor",
    "CodeNetwork",
    "CodeNetworkRegressor",
    "CodePrior",
    "SKOPS_TRUSTED_TYPES",
    "add_condition_codes",
    "allow_unsafe_models",
    "datasets",
    "__version__",
]
