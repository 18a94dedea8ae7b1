"""What a model predicts: class labels or real-valued targets.

A task object holds everything that differs between a classifier and a regressor,
so that estimators choose a task instead of overriding hooks:

=====================  ==============================  ===========================
                       :class:`Classification`         :class:`Regression`
=====================  ==============================  ===========================
``encode(y)``          labels -> output-unit indices   floats ``(n, n_outputs)``
``loss``               ``"softmax"``, ``"sigmoid"``    ``"mse"``
                       or ``"logits"``
``keras_loss()``       (sparse/binary) cross-entropy   mean squared error
``output_activation``  ``"softmax"`` / ``"sigmoid"``   ``"linear"``
                       / ``"linear"``
``convert(outputs)``   outputs -> probabilities        outputs -> predictions
``keras_convert(t)``   the same on a Keras tensor      identity (2-D)
``predict(outputs)``   most probable label             same as ``convert``
``weigh(...)``         sample weight x class weight    (no class weights)
=====================  ==============================  ===========================

``loss`` is the name the adaptation engine knows the output by. Build a task from
training targets (``from_targets``, what a network trained from scratch does) or
from a model's output layer (``from_output``, what an adapter of a given model
does). Tasks hold only labels and sizes: estimators keep their fitted attributes
(``classes_``, ``n_outputs_``) and rebuild the task from them when needed.
"""

from __future__ import annotations

from numbers import Real

import keras
import numpy as np
from keras import ops
from sklearn.utils import column_or_1d
from sklearn.utils.multiclass import check_classification_targets, type_of_target

from ._groups import distinct

__all__ = ["UNLABELLED", "Classification", "Regression"]

#: Label of a row without a label (scikit-learn's convention, as in SelfTrainingClassifier).
UNLABELLED = -1

_CLASSIFICATION_LOSSES = ("softmax", "sigmoid", "logits")


class Classification:
    """Class labels predicted by a softmax, one sigmoid unit or raw logits.

    Parameters
    ----------
    classes : array-like of shape (n_classes,)
        Distinct labels, in the order of the model's output units (for one sigmoid
        unit: the label of output 0, then of output 1).
    loss : {"softmax", "sigmoid", "logits"}, default="softmax"
        What the model outputs: probabilities from a softmax, the probability of
        ``classes[1]`` from one sigmoid unit, or unnormalised log-probabilities.
    """

    def __init__(self, classes, loss: str = "softmax"):
        if loss not in _CLASSIFICATION_LOSSES:
            raise ValueError(f"loss must be one of {_CLASSIFICATION_LOSSES}, got {loss!r}.")
        classes = np.asarray(classes)
        if classes.ndim != 1:
            raise ValueError(f"classes must be 1-D, got shape {classes.shape}.")
        if len(distinct(classes)[0]) != len(classes):
            raise ValueError("classes contains duplicate labels.")
        if loss == "sigmoid" and len(classes) != 2:
            raise ValueError(f"One sigmoid unit outputs 2 classes; got {len(classes)} labels.")
        self.classes, self.loss = classes, loss

    @classmethod
    def from_targets(cls, y) -> Classification:
        """The task of training a softmax network on labels ``y`` (sorted distinct labels).

        ``ValueError`` if ``y`` is not class labels (e.g. continuous) or has fewer than
        2 classes.
        """
        check_classification_targets(y)
        try:
            classes = np.unique(y)
        except TypeError as exc:
            raise TypeError(f"y must be labels of one comparable type: {exc}") from None
        if len(classes) < 2:
            raise ValueError(f"y has {len(classes)} class; a classifier needs at least 2 classes.")
        return cls(classes)

    @classmethod
    def from_output(cls, activation: str, n_units: int, classes=None) -> Classification:
        """The task of a given model whose output layer has ``activation`` and ``n_units``.

        ``activation`` is ``"softmax"``, ``"sigmoid"`` (one unit, binary) or anything
        else (logits). ``classes`` names the output units; default ``0 .. n_classes-1``.
        """
        loss = activation if activation in ("softmax", "sigmoid") else "logits"
        if loss == "sigmoid" and n_units != 1:
            raise ValueError(
                f"The model's sigmoid output has {n_units} units; a classifier supports one "
                "sigmoid unit (binary) or a softmax/logit output (multi-class)."
            )
        n_classes = 2 if loss == "sigmoid" else int(n_units)
        classes = np.arange(n_classes) if classes is None else np.asarray(classes)
        if classes.ndim != 1 or len(classes) != n_classes:
            raise ValueError(
                f"classes has {classes.size} labels but the model outputs {n_classes} classes."
            )
        return cls(classes, loss)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_outputs(self) -> int:
        """Number of model output units."""
        return 1 if self.loss == "sigmoid" else self.n_classes

    @property
    def output_activation(self) -> str:
        """Keras activation of the output layer of a network built for this task."""
        return {"softmax": "softmax", "sigmoid": "sigmoid", "logits": "linear"}[self.loss]

    def encode(self, y, n_rows: int | None = None, *, unlabelled: bool = False) -> np.ndarray:
        """Output-unit index (int32) of each label of ``y``.

        With ``unlabelled=True``, :data:`UNLABELLED` (-1) marks a row without a label
        (unless it is one of the classes) and encodes to -1, and ``y=None`` means that
        no row (of ``n_rows``) has a label. ``ValueError`` names the labels that are
        not among the classes.
        """
        if y is None and unlabelled and n_rows is not None:
            return np.full(n_rows, UNLABELLED, dtype=np.int32)
        if y is None:
            raise ValueError("y is None; this estimator needs class labels.")
        y = column_or_1d(y, warn=True)
        if n_rows is not None and len(y) != n_rows:
            raise ValueError(f"y has {len(y)} entries but X has {n_rows} rows.")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinity.")
        position = {_scalar(label): i for i, label in enumerate(self.classes)}
        if unlabelled:
            position.setdefault(UNLABELLED, UNLABELLED)
        labels, index = distinct(y)
        missing = [label for label in labels if label not in position]
        if missing and y.dtype.kind == "f" and type_of_target(y) == "continuous":
            raise ValueError(
                "Unknown label type: continuous. y must be class labels; use a regressor "
                "for real-valued targets."
            )
        if missing:
            raise ValueError(
                f"y contains label(s) {missing[:5]} that are not among the classes "
                f"{self.classes.tolist()}."
            )
        return np.array([position[label] for label in labels], dtype=np.int32)[index]

    def keras_loss(self) -> keras.losses.Loss:
        """Training loss on encoded labels and the model's outputs."""
        if self.loss == "sigmoid":
            return keras.losses.BinaryCrossentropy()
        return keras.losses.SparseCategoricalCrossentropy(from_logits=self.loss == "logits")

    def convert(self, outputs) -> np.ndarray:
        """Class probabilities (float64, columns in the order of ``classes``)."""
        out = np.asarray(outputs, dtype=np.float64)
        if self.loss == "sigmoid":
            p = out.reshape(-1, 1)
            return np.hstack([1.0 - p, p])
        if self.loss == "logits":
            e = np.exp(out - out.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return out

    def keras_convert(self, outputs: keras.KerasTensor) -> keras.KerasTensor:
        """:meth:`convert` on a symbolic output, with built-in Keras layers and ops.

        The result is what :meth:`convert` returns, shape ``(batch, n_classes)``: a
        softmax output as it is, logits through a softmax, one sigmoid unit ``p`` as the
        two columns ``[1 - p, p]``.
        """
        outputs = _two_d(outputs)
        if self.loss == "sigmoid":
            return keras.layers.Concatenate()([ops.subtract(1.0, outputs), outputs])
        if self.loss == "logits":
            return keras.layers.Softmax()(outputs)
        return outputs

    def predict(self, outputs) -> np.ndarray:
        """Most probable label of each row."""
        return self.classes[np.argmax(self.convert(outputs), axis=1)]

    def weigh(self, sample_weight: np.ndarray, target: np.ndarray, group: np.ndarray,
              class_weight) -> np.ndarray:
        """``sample_weight`` times the class weight of each labelled row.

        ``target`` holds encoded labels (:meth:`encode`; -1 marks an unlabelled row,
        whose weight is kept). ``class_weight`` is None, a dict from class label to
        weight (classes not in it weigh 1), or ``"balanced"``: within each group of
        ``group``, a row of class ``c`` weighs ``W / (k * W_c)``, with ``W_c`` the
        sample weight of the group's labelled rows of class ``c``, ``W`` their total and
        ``k`` the number of classes among them (scikit-learn's ``compute_class_weight``
        with ``sample_weight``, per group). "balanced" leaves each group's labelled
        weight ``W`` unchanged. ``ValueError`` for a dict key that is not a class or a
        weight that is negative or not finite.
        """
        weight = np.asarray(sample_weight, dtype=np.float64)
        if class_weight is None:
            return weight
        target = np.asarray(target)
        labelled = target >= 0
        factor = np.ones(len(target))
        if isinstance(class_weight, str):  # "balanced" (validated by the estimator)
            group = np.asarray(group)
            for g in np.unique(group[labelled]):
                rows = labelled & (group == g)
                counts = np.bincount(target[rows], weights=weight[rows],
                                     minlength=self.n_classes)
                present = counts > 0
                per_class = np.zeros(self.n_classes)
                per_class[present] = counts.sum() / (present.sum() * counts[present])
                factor[rows] = per_class[target[rows]]
        else:
            factor[labelled] = self._class_weight_vector(class_weight)[target[labelled]]
        return weight * factor

    def _class_weight_vector(self, class_weight: dict) -> np.ndarray:
        position = {_scalar(label): i for i, label in enumerate(self.classes)}
        missing = [key for key in class_weight if _scalar(key) not in position]
        if missing:
            raise ValueError(
                f"class_weight has label(s) {missing[:5]} that are not among the classes "
                f"{self.classes.tolist()}."
            )
        vector = np.ones(self.n_classes)
        for key, value in class_weight.items():
            if (isinstance(value, bool) or not isinstance(value, Real)
                    or not np.isfinite(value) or value < 0):
                raise ValueError(
                    f"class_weight[{key!r}] must be a finite non-negative number, got "
                    f"{value!r}."
                )
            vector[position[_scalar(key)]] = float(value)
        return vector

    def check_outputs(self, outputs, name: str = "the model") -> None:
        """``ValueError`` unless ``outputs`` look like what ``loss`` says the model outputs."""
        out = np.asarray(outputs, dtype=np.float64)
        if self.loss == "softmax" and (
            np.any(out < 0) or not np.allclose(out.sum(axis=1), 1.0, atol=1e-3)
        ):
            raise ValueError(
                f"{name} must output class probabilities (a softmax output layer)."
            )
        if self.loss == "sigmoid" and np.any((out < 0) | (out > 1)):
            raise ValueError(f"{name} must output a probability (a sigmoid output unit).")

    def describe(self) -> str:
        """The model outputs this task needs, in words."""
        return f"one per class, {self.n_classes} classes"

    def __repr__(self) -> str:
        return f"Classification({self.n_classes} classes, loss={self.loss!r})"


class Regression:
    """Real-valued targets predicted by linear output units, with squared error.

    Parameters
    ----------
    n_outputs : int
        Number of targets (model output units).
    one_d : bool, default=False
        Predictions come back 1-D, shape ``(n,)``; needs ``n_outputs == 1``.
    """

    loss = "mse"
    output_activation = "linear"

    def __init__(self, n_outputs: int, one_d: bool = False):
        if int(n_outputs) < 1:
            raise ValueError(f"n_outputs must be at least 1, got {n_outputs}.")
        if one_d and n_outputs != 1:
            raise ValueError(f"one_d predictions need one output, not {n_outputs}.")
        self.n_outputs, self.one_d = int(n_outputs), bool(one_d)

    @classmethod
    def from_targets(cls, y) -> Regression:
        """The task of training on targets ``y``, shape ``(n,)`` or ``(n, n_outputs)``."""
        y = np.asarray(y)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}.")
        return cls(1 if y.ndim == 1 else y.shape[1], one_d=y.ndim == 1)

    @classmethod
    def from_output(cls, activation: str, n_units: int) -> Regression:
        """The task of a given model whose output layer has ``activation`` and ``n_units``;
        predictions are 1-D when the model has one output unit."""
        if activation != "linear":
            raise ValueError(
                f"The model ends in a {activation} activation; regression needs a linear "
                "output (use a classifier for softmax/sigmoid outputs)."
            )
        return cls(n_units, one_d=n_units == 1)

    def encode(self, y, n_rows: int | None = None) -> np.ndarray:
        """Targets as float64, shape ``(n, n_outputs)``; ``ValueError`` for a wrong shape,
        NaN or infinity."""
        if y is None:
            raise ValueError("y is None; regression needs targets.")
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"y must be numeric: {exc}") from None
        if y.ndim == 1:
            y = y[:, None]
        n = len(y) if n_rows is None else n_rows
        if y.ndim != 2 or y.shape != (n, self.n_outputs):
            raise ValueError(
                f"y has shape {y.shape}; expected ({n},) or ({n}, {self.n_outputs}) to match "
                "X and the model's outputs."
            )
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or infinity.")
        return y

    def keras_loss(self) -> keras.losses.Loss:
        """Training loss: mean squared error."""
        return keras.losses.MeanSquaredError()

    def convert(self, outputs) -> np.ndarray:
        """Predictions (float64), 1-D with ``one_d``."""
        out = np.asarray(outputs, dtype=np.float64)
        return out.ravel() if self.one_d else out

    predict = convert

    def keras_convert(self, outputs: keras.KerasTensor) -> keras.KerasTensor:
        """:meth:`convert` on a symbolic output: the outputs, shape ``(batch, n_outputs)``
        (also with ``one_d``: a Keras model keeps the column)."""
        return _two_d(outputs)

    def check_outputs(self, outputs, name: str = "the model") -> None:
        """Any real output is a valid prediction: nothing to check."""

    def describe(self) -> str:
        """The model outputs this task needs, in words."""
        return f"one per target, {self.n_outputs} targets"

    def __repr__(self) -> str:
        return f"Regression({self.n_outputs} outputs)"


def _two_d(outputs):
    """``(batch, units)``, as the engine returns outputs (flattened per row)."""
    return outputs if len(outputs.shape) == 2 else keras.layers.Flatten()(outputs)


def _scalar(value):
    return value.item() if isinstance(value, np.generic) else value
