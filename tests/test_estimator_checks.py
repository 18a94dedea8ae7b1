"""scikit-learn's estimator checks, with every expected failure and its reason.

The checks fit on random datasets of many widths, so they run on a model whose
single feature input takes any number of columns (shape ``(None, None)``).
"""

import keras
from sklearn.utils.estimator_checks import parametrize_with_checks

from skdc import CodeAdapter, CodeAdapterRegressor

_UNSTABLE_HASH = (
    "joblib.hash of a Keras model differs between two calls even without a fit; the "
    "weights are checked byte-identical in test_adapter"
)
_FIXED_MODEL = "only the code is learned: a fixed random model cannot fit an arbitrary dataset"
_FLOAT32 = "TensorFlow computes in float32: results agree to ~1e-7, the check asks 1e-9"
_MODEL_CLASSES = "classes_ are the model's output units (named by `classes`), not the labels in y"

EXPECTED = {
    "CodeAdapter": {
        "check_estimators_overwrite_params": _UNSTABLE_HASH,
        "check_classifiers_train": _FIXED_MODEL,
        "check_classifiers_one_label": _MODEL_CLASSES,
        "check_classifiers_classes": _MODEL_CLASSES,
        "check_dtype_object": _MODEL_CLASSES,
        "check_sample_weight_equivalence_on_dense_data": _FLOAT32,
    },
    "CodeAdapterRegressor": {
        "check_estimators_overwrite_params": _UNSTABLE_HASH,
        "check_regressors_train": _FIXED_MODEL,
        "check_regressor_multioutput": "the number of outputs is the model's (here 1)",
        "check_sample_weight_equivalence_on_dense_data": _FLOAT32,
    },
}


def _any_width_model(n_outputs, activation):
    x = keras.Input((None,), name="features")
    z = keras.Input((2,), name="code")
    h = keras.layers.Dense(4, activation="tanh")(keras.layers.Reshape((-1, 1))(x))
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([h, z]))
    return keras.Model([x, z], keras.layers.Dense(n_outputs, activation=activation)(h))


@parametrize_with_checks(
    [
        CodeAdapter(_any_width_model(3, "softmax"), max_iter=5, tol=0.0, random_state=0),
        CodeAdapterRegressor(_any_width_model(1, None), max_iter=5, tol=0.0, random_state=0),
    ],
    expected_failed_checks=lambda est: EXPECTED[type(est).__name__],
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
