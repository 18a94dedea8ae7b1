"""skdc: scikit-learn estimators for fast adaptation of Keras models with condition codes.

``import skdc`` is cheap: it imports no Keras backend (TensorFlow, JAX, PyTorch). The
public names are loaded on first use (PEP 562), and Keras, with the backend chosen by
``KERAS_BACKEND`` or ``~/.keras/keras.json``, is imported by the first estimator.
"""

import importlib

from . import _startup

__version__ = "0.1.0"

_startup.prepare()

#: Types to pass as ``trusted=`` to ``skops.io.load`` for skdc estimators; their Keras
#: models travel as ``.keras`` bytes and load with ``safe_mode=True``.
SKOPS_TRUSTED_TYPES = [
    "skdc._adapter.CodeAdapter",
    "skdc._adapter.CodeAdapterRegressor",
    "skdc._codetable.CodeTable",
    "skdc._normalizer.ConditionNormalizer",
    "skdc._network.CodeNetwork",
    "skdc._network.CodeNetworkRegressor",
    "skdc._prior.CodePrior",
    "skdc._feature_shift.ShiftPrior",
]

# public name -> module that defines it (imported on first access)
_LAZY = {
    "CodeAdapter": "._adapter",
    "CodeAdapterRegressor": "._adapter",
    "CodeNetwork": "._network",
    "CodeNetworkRegressor": "._network",
    "CodePrior": "._prior",
    "ConditionNormalizer": "._normalizer",
    "ShiftPrior": "._feature_shift",
    "add_condition_codes": "._retrofit",
    "allow_unsafe_models": "._persist",
    "enable_compilation_cache": "._warmup",
    "from_embedding": "._embedding",
    "warmup": "._warmup",
}
_SUBPACKAGES = ("datasets", "evaluation")

__all__ = [
    "CodeAdapter",
    "CodeAdapterRegressor",
    "CodeNetwork",
    "CodeNetworkRegressor",
    "CodePrior",
    "ConditionNormalizer",
    "SKOPS_TRUSTED_TYPES",
    "ShiftPrior",
    "add_condition_codes",
    "allow_unsafe_models",
    "datasets",
    "enable_compilation_cache",
    "evaluation",
    "from_embedding",
    "warmup",
    "__version__",
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
