"""Training side of the code networks: networks, trainers, the epoch loop and stopping.

:class:`~skdc.CodeNetwork` and :class:`~skdc.CodeNetworkRegressor` validate their
inputs and turn the result into fitted attributes; everything in between is here:

* the networks: :class:`Architecture` (the MLP without codes: hidden layers,
  activation, kernel penalty), :func:`joint_network` (the MLP with code inputs) and
  :func:`normalise_codes`, which fixes the scale (and offset) of the codes after
  training;
* the trainers wrapped around a network for training only: :class:`CodeTrainer` (a code
  table indexed by condition feeds the code input) and :class:`PlainTrainer` (no codes);
* the procedure: :class:`Schedule` (optimizer, minibatches, epochs, stopping rule),
  :func:`train` (minibatch :class:`Adam` epochs through :class:`EpochRunner`, one
  compiled, stateless ``keras.ops`` function per fit that runs on every Keras backend,
  stopped by :class:`Stopper`), :class:`Seeds` (independent random streams by name);
* :func:`si_twin`: the same network trained by the same procedure without codes, the
  speaker-independent baseline that adaptation methods are compared against;
* :func:`predict_in_chunks`: the forward pass used for every prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
from typing import ClassVar, NamedTuple

import keras
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state, check_X_y
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints

from . import _backend
from ._backend import Spec
from ._chunks import CHUNK, forward_in_chunks
from ._groups import encode_groups, validation_split
from ._retrofit import FEATURES, code_consumers, rewire
from ._stopping import Patience
from ._task import Classification, Regression
from ._warn import warn_caller

__all__ = [
    "ACTIVATIONS",
    "Adam",
    "Architecture",
    "CodeTrainer",
    "EpochRunner",
    "History",
    "PlainTrainer",
    "Rows",
    "Schedule",
    "Seeds",
    "Stopper",
    "as_training_target",
    "hidden_sizes",
    "joint_network",
    "kernel_penalty",
    "normalise_codes",
    "predict_in_chunks",
    "progress",
    "si_twin",
    "spec_of",
    "train",
    "train_without_codes",
    "warn_unless_stopped",
]

#: scikit-learn's activation names (as in MLPClassifier) -> Keras activations.
ACTIVATIONS = {
    "identity": "linear",
    "logistic": "sigmoid",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "elu": "elu",
    "gelu": "gelu",
    "swish": "swish",
}

_AUTO_BATCH = 200


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------


class Seeds:
    """Independent random streams of one training run, one per purpose, by name.

    ``"weights"`` (the initial kernels), ``"codes"`` (the code table and its dropout),
    ``"split"`` (the validation rows) and ``"shuffle"`` (the row order of the epochs).
    Every stream is seeded by one draw from ``random_state`` and its own name, so that
    drawing from one never moves another: a network trained without codes gets the
    same initial weights, split and shuffling as the code network of the same
    ``random_state``.
    """

    STREAMS = ("weights", "codes", "split", "shuffle")

    def __init__(self, random_state=None):
        self.entropy = int(check_random_state(random_state).randint(0, 2**31 - 1))

    def generator(self, name: str) -> np.random.Generator:
        """A fresh generator of stream ``name`` (the same draws every time it is asked)."""
        return np.random.default_rng([self.entropy, self.STREAMS.index(name)])

    def seed(self, name: str) -> int:
        """An int seed (for a Keras initialiser or seed generator) from stream ``name``."""
        return _draw_seed(self.generator(name))


def _draw_seed(rng: np.random.Generator) -> int:
    """An int seed in ``[0, 2**31 - 1)`` for Keras, drawn from ``rng``."""
    return int(rng.integers(0, 2**31 - 1))


def hidden_sizes(value) -> list[int]:
    """``hidden_layer_sizes`` as a list of positive ints (``ValueError`` otherwise)."""
    sizes = np.atleast_1d(np.asarray(value, dtype=object)).tolist()
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
            raise ValueError(f"hidden_layer_sizes must hold positive ints, got {value!r}.")
    if not sizes:
        raise ValueError("hidden_layer_sizes must hold at least one layer size.")
    return [int(s) for s in sizes]


class _Parameters:
    """Base of frozen dataclasses whose fields are code-network parameters: checked
    against ``constraints`` (scikit-learn's ``_parameter_constraints`` form, which the
    estimators include) when made."""

    constraints: ClassVar[dict] = {}

    def __post_init__(self):
        validate_parameter_constraints(self.constraints, asdict(self), type(self).__name__)

    @classmethod
    def from_params(cls, params: dict):
        """The value set by an estimator's ``get_params()`` (other keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in params.items() if name in names})


@dataclass(frozen=True)
class Architecture(_Parameters):
    """The network without codes: hidden Dense layers, their activation (scikit-learn's
    names, :data:`ACTIVATIONS`) and the L2 penalty ``alpha`` on the kernels."""

    hidden_layer_sizes: tuple = (256, 256)
    activation: str = "relu"
    alpha: float = 1e-5

    constraints: ClassVar[dict] = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "alpha": [Interval(Real, 0, None, closed="left")],
    }

    def __post_init__(self):
        super().__post_init__()
        sizes = tuple(hidden_sizes(self.hidden_layer_sizes))
        object.__setattr__(self, "hidden_layer_sizes", sizes)  # frozen: set once, here

    def build(self, n_features: int, task: Classification | Regression,
              rng: np.random.Generator) -> keras.Model:
        """The MLP: input ``"features"``, Dense layers ``hidden_0, ...`` and ``output``.

        Glorot-uniform kernels (one seed per layer from ``rng``, in order), zero biases.
        """
        x = inputs = keras.Input((n_features,), name=FEATURES)
        for i, units in enumerate(self.hidden_layer_sizes):
            x = keras.layers.Dense(
                units,
                activation=ACTIVATIONS[self.activation],
                kernel_initializer=keras.initializers.GlorotUniform(seed=_draw_seed(rng)),
                name=f"hidden_{i}",
            )(x)
        out = keras.layers.Dense(
            task.n_outputs,
            activation=task.output_activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=_draw_seed(rng)),
            name="output",
        )(x)
        return keras.Model(inputs, out, name="si_network")


def joint_network(
    n_features: int,
    architecture: Architecture,
    task: Classification | Regression,
    code_size: int,
    code_layers,
    rng: np.random.Generator,
    input_shift: int = 0,
) -> tuple[keras.Model, list]:
    """The MLP of :meth:`Architecture.build` with a ``"code"`` input into
    ``code_layers`` (after ``input_shift`` entries of feature shift, see
    :func:`~skdc._retrofit.rewire`), every weight trainable, and its (Dense, B) layer
    pairs (the B start at zero)."""
    si = architecture.build(n_features, task, rng)
    core, pairs = rewire(si, int(code_size), code_layers, input_shift)
    for layer in core.layers:
        layer.trainable = True
    return core, pairs


def normalise_codes(core: keras.Model, codes: np.ndarray, pairs: list | None, *,
                    centre: bool, input_shift: int = 0) -> np.ndarray:
    """Remove the scale (and, with ``centre``, the offset) ambiguity of the codes.

    ``B z`` is unchanged by ``z -> z / s``, ``B -> s B``; with a bias next to ``B`` it is
    also unchanged by ``z -> z - m``, ``b -> b + B m``. Codes are rescaled to unit RMS
    spread per dimension; with ``centre`` (joint training, where every B sits next to a
    trainable bias) they are also centred, so the zero code is the average condition.
    ``pairs`` are the (Dense, B) layers of :func:`joint_network` or
    :func:`~skdc._retrofit.rewire`; None: the B are found in ``core``
    (:func:`~skdc._retrofit.code_consumers`; nothing is changed if they cannot be). The
    first ``input_shift`` entries, a feature shift in the features' own units, are
    left as they are. The weights of ``core`` are changed in place so that its output
    is the same before and after, up to float rounding. Returns the new codes (float64
    of float32 values).
    """
    shift, hidden = codes[:, :input_shift], codes[:, input_shift:]
    mean = hidden.mean(axis=0)
    spread = float(np.sqrt(np.mean((hidden - mean) ** 2)))
    consumers = code_consumers(core) if pairs is None else [b for _, b in pairs]
    if not np.isfinite(spread) or spread < 1e-8 or consumers is None:
        return codes.astype(np.float32).astype(np.float64)
    if centre:
        for dense, b_layer in pairs:
            kernel = np.asarray(b_layer.kernel).astype(np.float64)
            bias = np.asarray(dense.bias).astype(np.float64)
            dense.bias.assign((bias + mean @ kernel).astype(np.float32))
        hidden = hidden - mean
    for layer in consumers:
        kernel = np.asarray(layer.kernel).astype(np.float64)
        layer.kernel.assign((kernel * spread).astype(np.float32))
    return np.hstack([shift, hidden / spread]).astype(np.float32).astype(np.float64)


def predict_in_chunks(model: keras.Model, inputs, chunk: int = CHUNK) -> np.ndarray:
    """Outputs of ``model`` on ``inputs``, ``chunk`` rows at a time, as a numpy array.

    ``inputs`` is one array or a list of arrays with the same number of rows (one per
    model input). Calls ``model(batch, training=False)`` directly: Keras' ``predict``
    retraces a function for every new model and input size. With 0 rows, returns an
    empty array of shape ``(0, n_outputs)``.
    """
    several = isinstance(inputs, (list, tuple))
    arrays = [np.asarray(a) for a in inputs] if several else [np.asarray(inputs)]
    n_rows = len(arrays[0])
    if any(len(a) != n_rows for a in arrays):
        raise ValueError(f"inputs have different numbers of rows: {[len(a) for a in arrays]}.")

    def forward(rows: slice) -> np.ndarray:
        batch = [a[rows] for a in arrays]
        return keras.ops.convert_to_numpy(model(batch if several else batch[0], training=False))

    return forward_in_chunks(forward, n_rows, model.outputs[0].shape[-1], chunk)


# --------------------------------------------------------------------------------------
# Trainers
# --------------------------------------------------------------------------------------


class CodeTrainer(keras.Model):
    """Training-only wrapper: a code table indexed by condition feeds the code input.

    The penalty ``alpha * sum ||kernel||^2 + code_l2 * mean_g ||z_g||^2`` over the
    trainable kernels and the hidden part of the code table is added to the mean
    training loss. With ``code_dropout``, each training row sees the mean code instead
    of its condition's code with that probability. With ``input_shift``, the first
    ``input_shift`` columns of the table are the conditions' feature shifts, starting
    from ``shift_init`` (default zero) and not penalised; with ``fixed_shift`` they stay
    at ``shift_init`` (estimated outside, see :mod:`skdc._feature_shift`) and code
    dropout replaces only the hidden part.
    """

    def __init__(self, core, n_groups, code_size, *, alpha, code_l2, seed, code_dropout=0.0,
                 input_shift=0, shift_init=None, fixed_shift=False):
        super().__init__(name="code_trainer")
        self.core = core
        self.table = keras.layers.Embedding(
            n_groups,
            code_size,
            # random, not zero: with a zero-initialised B (retrofit) zero codes get no gradient
            embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0, seed=seed),
            name="code_table",
        )
        self.alpha = float(alpha)
        self.code_l2 = float(code_l2)
        self.code_dropout = float(code_dropout)
        self.input_shift = int(input_shift)
        self.fixed_shift = bool(fixed_shift)
        self.dropout_seed = keras.random.SeedGenerator(seed + 1)
        if self.input_shift:
            self.table.build((None,))
            start = np.array(keras.ops.convert_to_numpy(self.table.embeddings))  # writable copy
            start[:, : self.input_shift] = 0.0 if shift_init is None else shift_init
            self.table.embeddings.assign(start)

    def call(self, inputs, training=False):
        features, group = inputs
        codes = self.table(group)
        if self.fixed_shift:
            p = self.input_shift
            shift = keras.ops.stop_gradient(codes[:, :p])
            hidden = self._dropped(codes[:, p:], self.table.embeddings[:, p:], training)
            codes = keras.ops.concatenate([shift, hidden], axis=1)
        else:
            codes = self._dropped(codes, self.table.embeddings, training)
        return self.core([features, codes], training=training)

    def _dropped(self, codes, table, training):
        """``codes`` with the rows that code dropout drops replaced by the mean of ``table``
        (which becomes the zero code after training)."""
        if not training or self.code_dropout <= 0:
            return codes
        drop = keras.random.uniform((keras.ops.shape(codes)[0], 1), seed=self.dropout_seed)
        mean = keras.ops.mean(table, axis=0, keepdims=True)
        return keras.ops.where(drop < self.code_dropout, mean, codes)

    def penalty(self):
        hidden = self.table.embeddings[:, self.input_shift :]
        codes = self.code_l2 * keras.ops.mean(keras.ops.sum(hidden**2, axis=1))
        return codes + kernel_penalty(self.core, self.alpha)

    def codes(self) -> np.ndarray:
        """The code table, one row per condition (float64)."""
        return np.asarray(self.table.embeddings).astype(np.float64)


class PlainTrainer(keras.Model):
    """Training-only wrapper of a model without codes (the speaker-independent twin);
    it ignores the condition of each row and adds ``alpha * sum ||kernel||^2``."""

    def __init__(self, core, *, alpha):
        super().__init__(name="plain_trainer")
        self.core = core
        self.alpha = float(alpha)

    def call(self, inputs, training=False):
        return self.core(inputs[0], training=training)

    def penalty(self):
        return kernel_penalty(self.core, self.alpha)


def kernel_penalty(core: keras.Model, alpha: float):
    """``alpha * sum ||kernel||^2`` over the trainable Dense kernels of ``core``."""
    kernels = [
        layer.kernel
        for layer in core.layers
        if isinstance(layer, keras.layers.Dense) and layer.trainable
    ]
    if not alpha or not kernels:
        return keras.ops.convert_to_tensor(0.0)
    return alpha * keras.ops.sum(keras.ops.stack([keras.ops.sum(k**2) for k in kernels]))


# --------------------------------------------------------------------------------------
# The procedure
# --------------------------------------------------------------------------------------


class Rows(NamedTuple):
    """Training rows: features (float32), condition index (int32), encoded target, weight."""

    features: np.ndarray
    group: np.ndarray
    target: np.ndarray
    weight: np.ndarray

    def take(self, mask: np.ndarray) -> Rows:
        return Rows(*(a[mask] for a in self))


@dataclass(frozen=True)
class Schedule(_Parameters):
    """How a network is trained: Adam, minibatches, epochs and the stopping rule.

    The field names are the code networks' parameter names (``batch_size`` may be
    ``"auto"``: ``min(200, n_rows)``).
    """

    learning_rate_init: float = 1e-3
    batch_size: int | str = "auto"
    max_iter: int = 200
    early_stopping: bool = False
    validation_fraction: float = 0.1
    n_iter_no_change: int = 10
    tol: float = 1e-4
    verbose: int = 0

    constraints: ClassVar[dict] = {
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
    }

    def held_out(self, group: np.ndarray, weight: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
        """Mask of the validation rows: with ``early_stopping``, ``validation_fraction``
        of each condition's rows of positive weight, drawn with ``rng``
        (:func:`skdc._groups.validation_split`); otherwise none."""
        if not self.early_stopping:
            return np.zeros(len(group), dtype=bool)
        return validation_split(group, self.validation_fraction, rng, weight=weight)

    def batch_rows(self, n_rows: int) -> int:
        size = _AUTO_BATCH if self.batch_size == "auto" else int(self.batch_size)
        return max(1, min(size, n_rows))


@dataclass
class History:
    """Per-epoch losses of :func:`train`; ``stopped`` is False when ``max_iter`` ran out
    before the stopping rule fired."""

    loss: list = field(default_factory=list)
    val_loss: list | None = None
    stopped: bool = False


class Adam:
    """Keras' Adam update (same formula and defaults), stateless: the parameters and the
    moments are values passed in and returned, never variables written in place.

    Keras' optimizers on TensorFlow refuse ``stateless_apply``, which a training step
    compiled for every backend (``jax.jit`` above all) needs.
    """

    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-7

    def __init__(self, learning_rate: float):
        self.learning_rate = float(learning_rate)

    def slots(self, params: list) -> list:
        """Initial state: first and second moments (zeros) and the step count."""
        zeros = [keras.ops.zeros_like(p) for p in params]
        return [zeros, [keras.ops.zeros_like(p) for p in params], keras.ops.zeros((), "float32")]

    def apply(self, params: list, grads: list, slots: list) -> tuple[list, list]:
        """The parameters after one step, and the new state."""
        m, v, t = slots
        t = t + 1.0
        b1, b2 = self.beta_1, self.beta_2
        alpha = self.learning_rate * keras.ops.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        grads = [keras.ops.convert_to_tensor(g) for g in grads]  # TF: IndexedSlices -> dense
        m = [mi + (g - mi) * (1.0 - b1) for mi, g in zip(m, grads, strict=True)]
        v = [vi + (g * g - vi) * (1.0 - b2) for vi, g in zip(v, grads, strict=True)]
        params = [
            p - alpha * mi / (keras.ops.sqrt(vi) + self.epsilon)
            for p, mi, vi in zip(params, m, v, strict=True)
        ]
        return params, [m, v, t]


class EpochRunner:
    """One compiled function per fit that runs a whole epoch of minibatch Adam steps.

    Keras' ``fit`` costs milliseconds per step and tens of milliseconds per epoch on
    the small tabular problems codes are for; one compiled call per epoch is several
    times faster. The step is stateless and written with ``keras.ops``: the trainer's
    weights (trainable, and the rest: frozen weights, the code dropout's seed state)
    and Adam's moments are values carried from step to step by ``keras.ops.fori_loop``,
    and the trainer is called in a ``keras.StatelessScope``. Per backend, only
    compilation and the gradient differ (:func:`skdc._backend.current`). The trainer's
    variables are written only by :meth:`write`.

    The row order of each epoch comes from a seeded numpy generator. Every minibatch
    has ``batch_size`` rows, so that one step is compiled once: the last, short one is
    filled up with rows of weight zero and its loss rescaled to the mean over its own
    rows.
    """

    def __init__(self, trainer, loss, optimizer: Adam, rows: Rows, batch_size: int,
                 validation: Rows | None = None):
        if loss.reduction != "sum_over_batch_size":
            raise ValueError(f"EpochRunner needs a mean loss, not reduction={loss.reduction!r}.")
        self.trainer, self.loss, self.optimizer = trainer, loss, optimizer
        self.backend = _backend.current()
        trainer((rows.features[:1], rows.group[:1]))  # builds the code table
        self.params = list(trainer.trainable_variables)
        self.other = list(trainer.non_trainable_variables)  # frozen weights, seed states
        self.n_rows = len(rows.features)
        self.batch_size = int(batch_size)
        self.n_batches = -(-self.n_rows // self.batch_size)
        self.data = self._tensors(rows)
        self.validation = None if validation is None else self._tensors(validation)
        params = [keras.ops.stop_gradient(v) for v in self.params]  # values, not variables
        other = [keras.ops.stop_gradient(v) for v in self.other]
        self.state = [params, other, optimizer.slots(params)]
        self._value_and_grad = self.backend.value_and_grad(self._objective)
        # Row counts are left unknown (None) to TensorFlow: with static shapes its
        # oneDNN graph rewrite breaks on the coded layers' MatMul+BiasAdd+Add+Relu and
        # the whole function then runs unoptimised (JAX specialises on shapes anyway).
        signature = [
            spec_of(self.state),
            spec_of(self.data, rows=True),
            Spec((None, None), "int32"),
            Spec((None, None), "float32"),
            spec_of(self.validation or [], rows=True),
        ]
        self._epoch = self.backend.compile(self._epoch_impl, signature, False)
        self.val_loss: float | None = None

    def _tensors(self, rows: Rows) -> list:
        """Rows as tensors: int32 indices and labels, float32 values."""
        return [self.backend.tensor(a, "int32" if a.dtype.kind in "iu" else "float32")
                for a in rows]

    def _call(self, params, other, inputs, training: bool):
        """The trainer's outputs (and penalty, when training) with the given weights."""
        mapping = [*zip(self.params, params), *zip(self.other, other)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            pred = self.trainer(inputs, training=training)
            penalty = self.trainer.penalty() if training else None
        return pred, penalty, [scope.get_current_value(v) for v in self.other]

    def _objective(self, params, other, X, g, y, w, scale):
        pred, penalty, other = self._call(params, other, (X, g), training=True)
        return self.loss(y, pred, sample_weight=w) * scale + penalty, other

    def _step(self, state, data, index, keep):
        """One Adam step on the rows ``index`` (weights multiplied by ``keep``)."""
        params, other, slots = state
        X, g, y, w = (keras.ops.take(a, index, axis=0) for a in data)
        n_kept = keras.ops.sum(keep)
        scale = self.batch_size / n_kept  # mean over the kept rows
        value, other, grads = self._value_and_grad(params, other, X, g, y, w * keep, scale)
        params, slots = self.optimizer.apply(params, grads, slots)
        return [params, other, slots], value, n_kept

    def _epoch_impl(self, state, data, batches, keep, validation):
        def body(i, carry):
            state, total = carry
            state, value, n_kept = self._step(state, data, batches[i], keep[i])
            return state, total + value * n_kept

        state, total = keras.ops.fori_loop(
            0, self.n_batches, body, (state, keras.ops.zeros((), "float32"))
        )
        if not validation:
            return state, total / self.n_rows, keras.ops.zeros((), "float32")
        X, g, y, w = validation
        pred, _, _ = self._call(*state[:2], (X, g), training=False)
        return state, total / self.n_rows, self.loss(y, pred, sample_weight=w)

    def epoch(self, rng: np.random.Generator) -> float:
        """One pass over the rows in a random order; the mean penalised minibatch loss.

        With validation rows, their (weighted, unpenalised) loss after the epoch is
        left in :attr:`val_loss`.
        """
        order = rng.permutation(self.n_rows).astype(np.int32)
        size = self.n_batches * self.batch_size
        keep = (np.arange(size) < self.n_rows).astype(np.float32)
        batches = np.resize(order, size).reshape(self.n_batches, self.batch_size)
        self.state, value, val_loss = self._epoch(
            self.state,
            self.data,
            self.backend.tensor(batches, "int32"),
            self.backend.tensor(keep.reshape(batches.shape), "float32"),
            self.validation or [],
        )
        if self.validation is not None:
            self.val_loss = float(self.backend.numpy(val_loss))
        return float(self.backend.numpy(value))

    def weights(self) -> list[np.ndarray]:
        """A copy of the current weights (trainable, then the rest) as numpy arrays."""
        return [np.array(self.backend.numpy(t)) for t in (*self.state[0], *self.state[1])]

    def write(self, weights: list | None = None) -> None:
        """Assign ``weights`` (default: the current ones) to the trainer's variables."""
        values = (*self.state[0], *self.state[1]) if weights is None else weights
        for variable, value in zip((*self.params, *self.other), values, strict=True):
            variable.assign(value)


def spec_of(tree, rows: bool = False):
    """The :class:`~skdc._backend.Spec` tree of a tree of tensors (with ``rows``, the
    first dimension is left unknown)."""
    if isinstance(tree, list | tuple):
        return [spec_of(t, rows) for t in tree]
    shape = tuple(tree.shape)
    return Spec((None, *shape[1:]) if rows else shape, keras.backend.standardize_dtype(tree.dtype))


class Stopper:
    """Stop after ``patience`` epochs without a gain of more than ``min_delta`` (the rule
    of :class:`skdc._stopping.Patience`, shared with the adaptation loop); remember the
    weights of the lowest loss when asked to."""

    def __init__(self, min_delta, patience, keep_best):
        self.rule = Patience(1, min_delta, patience)
        self.keep_best = keep_best
        self.best_weights = None

    def stop(self, epoch: int, value: float, weights) -> bool:
        """Whether to stop after ``epoch`` with loss ``value``; ``weights()`` gives the
        weights to keep if this epoch is the best so far."""
        if self.rule.update([value])[0] and self.keep_best:
            self.best_weights = weights()
        return bool(self.rule.exhausted()[0]) and epoch > 0


def train(trainer, rows: Rows, held: np.ndarray, loss, schedule: Schedule,
          shuffle: np.random.Generator) -> History:
    """Train ``trainer`` on the rows not ``held`` by minibatch Adam epochs.

    Each epoch shuffles the training rows with ``shuffle``.
    With held-out rows, the stopping rule watches their loss after each epoch and the
    trainer ends with the weights of the best epoch; without, it watches the training
    loss and the trainer keeps the last weights.
    """
    fit_rows, validation = rows.take(~held), rows.take(held)
    validate = bool(held.any())
    runner = EpochRunner(
        trainer,
        loss,
        Adam(schedule.learning_rate_init),
        fit_rows,
        schedule.batch_rows(len(fit_rows.features)),
        validation if validate else None,
    )
    stopper = Stopper(schedule.tol, schedule.n_iter_no_change, keep_best=validate)
    report = progress(schedule.verbose, schedule.max_iter)
    history = History(val_loss=[] if validate else None)
    for epoch in range(schedule.max_iter):
        logs = {"loss": runner.epoch(shuffle)}
        if validate:
            logs["val_loss"] = runner.val_loss
            history.val_loss.append(logs["val_loss"])
        history.loss.append(logs["loss"])
        report(epoch, logs)
        if stopper.stop(epoch, logs.get("val_loss", logs["loss"]), runner.weights):
            history.stopped = True
            break
    runner.write(stopper.best_weights)
    return history


def progress(verbose: int, n_epochs: int):
    """Per-epoch reporter ``f(epoch, logs)``: silent (0), one line per epoch (1) or a
    progress bar (2+)."""
    verbose = int(verbose)
    if verbose <= 0:
        return lambda epoch, logs: None
    if verbose == 1:

        def line(epoch, logs):
            values = " - ".join(f"{name}: {value:.4f}" for name, value in logs.items())
            print(f"Epoch {epoch + 1}/{n_epochs} - {values}", flush=True)

        return line
    bar = keras.utils.Progbar(n_epochs, unit_name="epoch")
    return lambda epoch, logs: bar.update(epoch + 1, list(logs.items()))


def warn_unless_stopped(history: History, who: str, max_iter: int) -> None:
    """The ``ConvergenceWarning`` of a training run that used up ``max_iter`` epochs,
    attributed to the caller of skdc."""
    if not history.stopped:
        warn_caller(
            f"{who}: the maximum number of epochs ({max_iter}) was reached before the loss "
            "stopped improving.",
            ConvergenceWarning,
        )


# --------------------------------------------------------------------------------------
# The speaker-independent twin
# --------------------------------------------------------------------------------------


def si_twin(
    X,
    y,
    groups=None,
    *,
    architecture: Architecture,
    schedule: Schedule,
    random_state=None,
    regression: bool = False,
) -> keras.Model:
    """Train the network of ``architecture`` *without* codes, by ``schedule``.

    With the same ``architecture``, ``schedule`` and ``random_state`` (an int) as a
    code network without ``base_model``, the twin has the code network's layers minus
    the ``B_l``, starts from the same initial weights, and is trained with the same
    penalty, optimizer, validation split, row order of the epochs and stopping rule
    (see :class:`Seeds`): the speaker-independent baseline that adaptation methods are
    compared against. Rows are unweighted.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Features.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Class labels, or targets with ``regression=True``.
    groups : array-like of shape (n_samples,), default=None
        Condition of each row; it only shapes the validation split of
        ``early_stopping`` (None: one condition).
    architecture : Architecture
        Hidden layers, activation and kernel penalty.
    schedule : Schedule
        Optimizer, minibatches, epochs and stopping rule.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the validation split and the shuffling.
    regression : bool, default=False
        Linear outputs and squared error instead of a softmax classifier.

    Returns
    -------
    model : keras.Model
        The trained network: input ``"features"``, the same output as the code
        network's (for a classifier, one unit per class in sorted order of the labels).
    """
    X, y = check_X_y(
        X, y, dtype=(np.float64, np.float32), multi_output=regression, y_numeric=regression
    )
    task = Regression.from_targets(y) if regression else Classification.from_targets(y)
    X = np.asarray(X, dtype=np.float32)
    group = np.zeros(len(X), np.int32) if groups is None else encode_groups(groups, len(X))[1]
    rows = Rows(X, group, as_training_target(task.encode(y)), np.ones(len(X), np.float32))
    return train_without_codes(rows, task, architecture, schedule, Seeds(random_state),
                               "si_twin")


def train_without_codes(rows: Rows, task, architecture: Architecture, schedule: Schedule,
                        seeds: Seeds, who: str) -> keras.Model:
    """The network of ``architecture`` without codes, trained on ``rows`` by ``schedule``
    (``who`` names it in the warning of a run that did not stop)."""
    core = architecture.build(rows.features.shape[1], task, seeds.generator("weights"))
    trainer = PlainTrainer(core, alpha=architecture.alpha)
    held = schedule.held_out(rows.group, rows.weight, seeds.generator("split"))
    history = train(trainer, rows, held, task.keras_loss(), schedule, seeds.generator("shuffle"))
    warn_unless_stopped(history, who, schedule.max_iter)
    return core


def as_training_target(target: np.ndarray) -> np.ndarray:
    """Encoded targets in the dtype training uses (int32 labels, float32 values)."""
    return target if target.dtype.kind == "i" else target.astype(np.float32)
