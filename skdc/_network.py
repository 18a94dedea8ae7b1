"""Training side: networks with condition codes and the retrofit of pretrained models.

A condition-code network takes features ``x`` and a small code ``z`` (one vector per
speaker, device, room, ...) and feeds the code into hidden layers through learned
matrices ``B_l``::

    h_l = act(W_l h_{l-1} + b_l + B_l z)

:class:`CodeNetwork` (classification) and :class:`CodeNetworkRegressor` learn the
network, the ``B_l`` and one code per training condition (speaker-adaptive training,
Xue et al. 2014), or, given a pretrained ``base_model``, only the ``B_l`` and the codes
with the pretrained weights frozen. :func:`add_condition_codes` retrofits code inputs
into a pretrained Keras model (in ``_retrofit``). The fitted ``model_`` plugs into
:class:`~skdc.CodeAdapter`, which learns the code of a new condition from a few rows.
"""

from __future__ import annotations

import copy
import warnings
from numbers import Integral, Real

import keras
import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._persist import pop_models, push_models
from ._prior import prior_from_codes
from ._retrofit import CODE, FEATURES, _code_consumers, _rewire

__all__ = ["CodeNetwork", "CodeNetworkRegressor"]

_ACTIVATIONS = {
    "identity": "linear",
    "logistic": "sigmoid",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
    "elu": "elu",
    "gelu": "gelu",
    "swish": "swish",
}

_PREDICT_CHUNK = 8192


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


class _CodeTrainer(keras.Model):
    """Training-only wrapper: a code table indexed by condition feeds the code input.

    The penalty ``alpha * sum ||kernel||^2 + code_l2 * mean_g ||z_g||^2`` over the
    trainable kernels and the code table is added to the mean training loss.
    """

    def __init__(self, core, n_groups, code_size, *, alpha, code_l2, seed, code_dropout=0.0):
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
        self.dropout_seed = keras.random.SeedGenerator(seed + 1)

    def call(self, inputs, training=False):
        features, group = inputs
        codes = self.table(group)
        if training and self.code_dropout > 0:
            # a dropped row sees the mean code, which becomes the zero code after training
            drop = keras.random.uniform((keras.ops.shape(codes)[0], 1), seed=self.dropout_seed)
            mean = keras.ops.mean(self.table.embeddings, axis=0, keepdims=True)
            codes = keras.ops.where(drop < self.code_dropout, mean, codes)
        return self.core([features, codes], training=training)

    def penalty(self):
        codes = self.code_l2 * keras.ops.mean(keras.ops.sum(self.table.embeddings**2, axis=1))
        return codes + _kernel_penalty(self.core, self.alpha)


class _PlainTrainer(keras.Model):
    """Training-only wrapper of a model without codes (the speaker-independent twin)."""

    def __init__(self, core, *, alpha):
        super().__init__(name="plain_trainer")
        self.core = core
        self.alpha = float(alpha)

    def call(self, inputs, training=False):
        return self.core(inputs[0], training=training)

    def penalty(self):
        return _kernel_penalty(self.core, self.alpha)


def _kernel_penalty(core, alpha: float):
    """``alpha * sum ||kernel||^2`` over the trainable Dense kernels of ``core``."""
    kernels = [
        layer.kernel
        for layer in core.layers
        if isinstance(layer, keras.layers.Dense) and layer.trainable
    ]
    if not alpha or not kernels:
        return keras.ops.convert_to_tensor(0.0)
    return alpha * keras.ops.sum(keras.ops.stack([keras.ops.sum(k**2) for k in kernels]))


class _EpochRunner:
    """One compiled function per fit that runs a whole epoch of minibatch Adam steps.

    Keras' ``fit`` costs milliseconds per step and tens of milliseconds per epoch on
    the small tabular problems codes are for; one graph call per epoch is several
    times faster. The row order of each epoch comes from a seeded numpy generator.
    """

    def __init__(self, trainer, loss, optimizer, data, batch_size):
        self.trainer, self.loss, self.optimizer = trainer, loss, optimizer
        self.data = [tf.constant(a) for a in data]
        self.n_rows = len(data[0])
        self.batch_size = int(batch_size)
        self.n_batches = -(-self.n_rows // self.batch_size)
        trainer((self.data[0][:1], self.data[1][:1]))  # builds the code table
        optimizer.build(trainer.trainable_variables)
        self._epoch = tf.function(self._epoch_impl)
        self._evaluate = tf.function(self._evaluate_impl)

    def _epoch_impl(self, order):
        X, g, y, w = self.data
        variables = self.trainer.trainable_variables
        total = tf.constant(0.0)
        for i in tf.range(self.n_batches):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            with tf.GradientTape() as tape:
                pred = self.trainer((tf.gather(X, idx), tf.gather(g, idx)), training=True)
                value = self.loss(tf.gather(y, idx), pred, sample_weight=tf.gather(w, idx))
                value = value + self.trainer.penalty()
            self.optimizer.apply(tape.gradient(value, variables), variables)
            total += value * tf.cast(tf.shape(idx)[0], tf.float32)
        return total / self.n_rows

    def _evaluate_impl(self, X, g, y, w):
        return self.loss(y, self.trainer((X, g), training=False), sample_weight=w)

    def epoch(self, rng) -> float:
        order = tf.constant(rng.permutation(self.n_rows).astype(np.int32))
        return float(self._epoch(order))

    def evaluate(self, data) -> float:
        return float(self._evaluate(*[tf.constant(a) for a in data]))


class _Stopper:
    """Keras' ``EarlyStopping`` rule: stop after ``patience`` epochs without a gain of
    more than ``min_delta``; remember the best weights when asked to."""

    def __init__(self, min_delta, patience, keep_best):
        self.min_delta, self.patience, self.keep_best = min_delta, patience, keep_best
        self.best, self.wait, self.best_weights = np.inf, 0, None

    def stop(self, epoch, value, model) -> bool:
        self.wait += 1
        if value - self.min_delta < self.best:
            self.best, self.wait = value, 0
            if self.keep_best:
                self.best_weights = model.get_weights()
        return self.wait >= self.patience and epoch > 0


def _validation_split(group_idx, fraction, rng) -> np.ndarray:
    """Boolean mask of held-out rows: ``fraction`` of each condition's rows, at least one
    row of every condition staying in training."""
    held = np.zeros(len(group_idx), dtype=bool)
    for g in np.unique(group_idx):
        rows = np.flatnonzero(group_idx == g)
        n_val = min(int(round(fraction * len(rows))), len(rows) - 1)
        held[rng.permutation(rows)[:n_val]] = True
    if not held.any():
        raise ValueError(
            f"validation_fraction={fraction} holds out no rows (conditions are too small); "
            "raise validation_fraction or set early_stopping=False."
        )
    return held


class _Seeds:
    """Integer seeds for Keras initialisers and row shuffling, drawn from a RandomState."""

    def __init__(self, rng):
        self.rng = rng

    def next(self) -> int:
        return int(self.rng.randint(0, 2**31 - 1))


def _build_mlp(n_features, hidden, activation, n_out, out_activation, seeds) -> keras.Model:
    x = inputs = keras.Input((n_features,), name=FEATURES)
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(
            units,
            activation=activation,
            kernel_initializer=keras.initializers.GlorotUniform(seed=seeds.next()),
            name=f"hidden_{i}",
        )(x)
    out = keras.layers.Dense(
        n_out,
        activation=out_activation,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds.next()),
        name="output",
    )(x)
    return keras.Model(inputs, out, name="si_network")


def _clone_coded(model) -> keras.Model:
    """A copy of a model that already has a code input (weights and trainable flags)."""
    new = keras.models.clone_model(model)
    new.set_weights(model.get_weights())
    for old_layer, new_layer in zip(model.layers, new.layers, strict=True):
        new_layer.trainable = old_layer.trainable
    return new


def _input_names(model) -> list[str]:
    return [getattr(t, "name", None) for t in getattr(model, "inputs", None) or []]


def _predict_model(model, X, Z) -> np.ndarray:
    chunks = [
        keras.ops.convert_to_numpy(
            model([X[i : i + _PREDICT_CHUNK], Z[i : i + _PREDICT_CHUNK]], training=False)
        )
        for i in range(0, len(X), _PREDICT_CHUNK)
    ]
    return np.concatenate(chunks, axis=0)


# --------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------


class _BaseCodeNetwork(BaseEstimator):
    """Shared machinery of :class:`CodeNetwork` and :class:`CodeNetworkRegressor`."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "code_size": [Interval(Integral, 1, None, closed="left")],
        "code_layers": [StrOptions({"all", "input"}), "array-like"],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "code_l2": [Interval(Real, 0, None, closed="left")],
        "code_dropout": [Interval(Real, 0, 1, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "base_model": [keras.Model, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(256, 256),
        *,
        code_size=16,
        code_layers="all",
        activation="relu",
        code_l2=1e-3,
        code_dropout=0.0,
        alpha=1e-5,
        learning_rate_init=1e-3,
        batch_size="auto",
        max_iter=200,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        base_model=None,
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.code_size = code_size
        self.code_layers = code_layers
        self.activation = activation
        self.code_l2 = code_l2
        self.code_dropout = code_dropout
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.base_model = base_model
        self.random_state = random_state
        self.verbose = verbose

    # Subclasses define: _validate_Xy(X, y); _encode_targets(y), which also sets classes_
    # or n_outputs_; _n_model_outputs(); _what_outputs(); _loss(); _output_activation;
    # _check_base_output(model, X).

    # --- fit -----------------------------------------------------------------------------

    def _fit(self, X, y, groups, sample_weight):
        if groups is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs groups: one condition label per row "
                "(speaker, device, ...), to learn one code per condition. Inside a Pipeline or "
                "GridSearchCV, enable metadata routing and call set_fit_request(groups=True)."
            )
        X, y = self._validate_Xy(X, y)
        X = np.asarray(X, dtype=np.float32)
        group_values, group_idx = _encode_groups(groups, len(X))
        sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float32)
        targets = self._encode_targets(y)
        seeds = _Seeds(check_random_state(self.random_state))

        core, pairs = self._initial_model(X, seeds)
        trainer = _CodeTrainer(
            core,
            len(group_values),
            core.inputs[1].shape[-1],
            alpha=self.alpha,
            code_l2=self.code_l2,
            code_dropout=self.code_dropout,
            seed=seeds.next(),
        )
        history, stopped = self._train(trainer, X, group_idx, targets, sample_weight, seeds)
        codes = keras.ops.convert_to_numpy(trainer.table.embeddings).astype(np.float64)
        codes = _normalise_codes(core, codes, pairs)
        self._store(core, group_values, codes, history)
        if not stopped:
            warnings.warn(
                f"{type(self).__name__}: the maximum number of epochs ({self.max_iter}) was "
                "reached before the loss stopped improving.",
                ConvergenceWarning,
                stacklevel=4,
            )
        return self

    def _store(self, core, group_values, codes, history) -> None:
        self.model_ = core
        self.codes_ = {g: code for g, code in zip(group_values.tolist(), codes, strict=True)}
        self.code_prior_ = prior_from_codes(codes)
        self.loss_curve_ = [float(v) for v in history["loss"]]
        if "val_loss" in history:
            self.validation_loss_curve_ = [float(v) for v in history["val_loss"]]
            self.best_validation_loss_ = float(np.min(history["val_loss"]))
        self.n_iter_ = len(self.loss_curve_)

    def _fit_without_codes(self, X, y, groups=None) -> keras.Model:
        """Train the network of this estimator *without* codes, by the same procedure.

        Same architecture (minus the ``B_l``), same initial weights, penalty, optimizer,
        minibatches, epochs and stopping rule as :meth:`fit`: the speaker-independent
        twin that adaptation methods are compared against. ``groups`` (optional) only
        shapes the validation split of ``early_stopping``. Returns the Keras model
        (input ``"features"``, the output of ``model_``); sets no fitted attribute.
        """
        if self.base_model is not None:
            raise ValueError("_fit_without_codes builds its own network; base_model must be None.")
        net = clone(self)
        X, y = net._validate_Xy(X, y)
        X = np.asarray(X, dtype=np.float32)
        group_idx = (
            np.zeros(len(X), dtype=np.int32)
            if groups is None
            else _encode_groups(groups, len(X), fitting=False)[1]
        )
        targets = net._encode_targets(y)
        seeds = _Seeds(check_random_state(net.random_state))
        core = _build_mlp(
            X.shape[1],
            net._hidden_sizes(),
            _ACTIVATIONS[net.activation],
            net._n_model_outputs(),
            net._output_activation,
            seeds,
        )
        seeds.next()  # the code table's seed in fit: keeps the shuffling order the same
        trainer = _PlainTrainer(core, alpha=net.alpha)
        net._train(trainer, X, group_idx, targets, np.ones(len(X), np.float32), seeds)
        return core

    def _hidden_sizes(self) -> list[int]:
        sizes = np.atleast_1d(np.asarray(self.hidden_layer_sizes, dtype=object)).tolist()
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
                raise ValueError(
                    f"hidden_layer_sizes must hold positive ints, got {self.hidden_layer_sizes!r}."
                )
        if not sizes:
            raise ValueError("hidden_layer_sizes must hold at least one layer size.")
        return [int(s) for s in sizes]

    def _initial_model(self, X, seeds) -> tuple[keras.Model, list | None]:
        """The code network to train and, for joint training, its (Dense, B) pairs."""
        if self.base_model is None:
            si = _build_mlp(
                X.shape[1],
                self._hidden_sizes(),
                _ACTIVATIONS[self.activation],
                self._n_model_outputs(),
                self._output_activation,
                seeds,
            )
            core, pairs = _rewire(si, int(self.code_size), self.code_layers)
            for layer in core.layers:
                layer.trainable = True
            return core, pairs
        if _input_names(self.base_model) == [FEATURES, CODE]:
            core = _clone_coded(self.base_model)
        elif len(self.base_model.inputs) == 1:
            core, _ = _rewire(self.base_model, int(self.code_size), self.code_layers)
        else:
            raise ValueError(
                "base_model must have either one input (it is then retrofitted with "
                f"add_condition_codes) or inputs named {[FEATURES, CODE]}; got inputs "
                f"{_input_names(self.base_model)}."
            )
        if core.inputs[0].shape[-1] != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but base_model takes {core.inputs[0].shape[-1]}."
            )
        n_out = core.outputs[0].shape[-1]
        if n_out != self._n_model_outputs():
            raise ValueError(
                f"base_model has {n_out} output units; the targets need "
                f"{self._n_model_outputs()} ({self._what_outputs()})."
            )
        if not core.trainable_weights:
            raise ValueError("base_model has no trainable weights to learn the codes with.")
        self._check_base_output(core, X)
        return core, None

    def _train(self, trainer, X, group_idx, targets, sample_weight, seeds):
        held = (
            _validation_split(group_idx, self.validation_fraction, seeds.rng)
            if self.early_stopping
            else np.zeros(len(X), dtype=bool)
        )
        train = ~held
        n_train = int(train.sum())
        batch = min(200 if self.batch_size == "auto" else int(self.batch_size), n_train)
        rng = np.random.default_rng(seeds.next())
        runner = _EpochRunner(
            trainer,
            self._loss(),
            keras.optimizers.Adam(self.learning_rate_init),
            [X[train], group_idx[train], targets[train], sample_weight[train]],
            batch,
        )
        validation = [X[held], group_idx[held], targets[held], sample_weight[held]]
        stopper = _Stopper(self.tol, self.n_iter_no_change, keep_best=bool(held.any()))
        progress = _progress(self.verbose, self.max_iter)
        history: dict = {"loss": []}
        stopped = False
        for epoch in range(self.max_iter):
            logs = {"loss": runner.epoch(rng)}
            if held.any():
                logs["val_loss"] = runner.evaluate(validation)
            for name, value in logs.items():
                history.setdefault(name, []).append(value)
            progress(epoch, logs)
            if stopper.stop(epoch, logs.get("val_loss", logs["loss"]), trainer):
                stopped = True
                break
        if stopper.best_weights is not None:
            trainer.set_weights(stopper.best_weights)
        return history, stopped

    # --- prediction ----------------------------------------------------------------------

    def _codes_for(self, groups, n_rows: int) -> np.ndarray:
        """One code per row: the condition's learned code, or the prior mean."""
        mean = np.asarray(self.code_prior_.mean, dtype=np.float32)
        Z = np.tile(mean, (n_rows, 1))
        if groups is None:
            return Z
        values, idx = _encode_groups(groups, n_rows, fitting=False)
        for k, value in enumerate(values.tolist()):
            code = self.codes_.get(value)
            if code is not None:
                Z[idx == k] = code
        return Z

    def _forward(self, X, groups) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False)
        X = np.asarray(X, dtype=np.float32)
        return _predict_model(self.model_, X, self._codes_for(groups, len(X)))

    # --- adaptation ----------------------------------------------------------------------

    def _adapter(self, cls, defaults, params):
        check_is_fitted(self, "model_")
        return cls(
            self.model_,
            **{"code_input": CODE, "code_init": self.code_prior_, **defaults, **params},
        )

    # --- sklearn plumbing ----------------------------------------------------------------

    def __sklearn_clone__(self):
        # The base model is shared, not deep-copied: fit never writes to it.
        params = {
            name: value if name == "base_model" else clone(value, safe=False)
            for name, value in self.get_params(deep=False).items()
        }
        new = type(self)(**params)
        if hasattr(self, "_metadata_request"):
            new._metadata_request = copy.deepcopy(self._metadata_request)
        return new

    def __getstate__(self):
        return pop_models(super().__getstate__())

    def __setstate__(self, state):
        super().__setstate__(push_models(state))


def _progress(verbose, n_epochs):
    """Per-epoch reporter: silent (0), one line per epoch (1) or a progress bar (2+)."""
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


def _encode_groups(groups, n_rows: int, fitting: bool = True) -> tuple[np.ndarray, np.ndarray]:
    try:
        groups = column_or_1d(np.asarray(groups), warn=False)
    except ValueError as exc:
        raise ValueError(f"groups must be 1-D, one label per row: {exc}") from exc
    if len(groups) != n_rows:
        raise ValueError(f"groups has {len(groups)} entries; X has {n_rows} rows.")
    if groups.dtype.kind == "f" and not np.all(np.isfinite(groups)):
        raise ValueError("groups contains NaN or infinity.")
    try:
        values, idx = np.unique(groups, return_inverse=True)
    except TypeError as exc:
        raise TypeError(f"groups must be labels of one comparable type: {exc}") from exc
    if fitting and len(values) < 2:
        raise ValueError(
            f"fit needs at least 2 conditions (distinct groups) to learn codes and their "
            f"prior; got {len(values)}."
        )
    return values, idx.astype(np.int32)


def _normalise_codes(core, codes: np.ndarray, pairs) -> np.ndarray:
    """Remove the scale (and, for joint training, the offset) ambiguity of the codes.

    ``B z`` is unchanged by ``z -> z / s``, ``B -> s B``; with a bias next to ``B`` it is
    also unchanged by ``z -> z - m``, ``b -> b + B m``. Codes are rescaled to unit RMS
    spread per dimension; with ``pairs`` (joint training, where every B sits next to a
    trainable bias) they are also centred, so the zero code is the average condition.
    The model's output is the same before and after, up to float rounding.
    """
    mean = codes.mean(axis=0)
    spread = float(np.sqrt(np.mean((codes - mean) ** 2)))
    if not np.isfinite(spread) or spread < 1e-8:
        return codes.astype(np.float32).astype(np.float64)
    if pairs is not None:
        for dense, b_layer in pairs:
            kernel = keras.ops.convert_to_numpy(b_layer.kernel).astype(np.float64)
            bias = keras.ops.convert_to_numpy(dense.bias).astype(np.float64)
            dense.bias.assign((bias + mean @ kernel).astype(np.float32))
        codes = codes - mean
        consumers = [b_layer for _, b_layer in pairs]
    else:
        consumers = _code_consumers(core)
        if consumers is None:
            return codes.astype(np.float32).astype(np.float64)
    for layer in consumers:
        kernel = keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
        layer.kernel.assign((kernel * spread).astype(np.float32))
    return (codes / spread).astype(np.float32).astype(np.float64)


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(256, 256)
        Units of each hidden Dense layer. Ignored with ``base_model``.
    code_size : int, default=16
        Length of a condition code. Ignored when ``base_model`` already has a code input.
    code_layers : {"all", "input"} or list of int, default="all"
        Hidden layers the code feeds into (see :func:`add_condition_codes`). ``"all"``:
        every hidden layer, as in Xue et al. (2014), who found that connecting the code
        to more hidden layers gave larger gains on TIMIT; ``"input"``: the first hidden
        layer only, the same as concatenating the code to the features; a list of
        hidden-layer indices. On the synthetic problem of the tests, whose true codes
        act on one layer, the choices adapt equally well (10-shot accuracy on unseen
        conditions 0.79-0.80 for ``(32, 32)``, 0.76-0.77 for ``(64, 64, 64)``, within
        seed noise), so the default follows the paper.
    activation : {"relu", "tanh", "logistic", "identity", "elu", "gelu", "swish"}, \
default="relu"
        Activation of the hidden layers. Ignored with ``base_model``.
    code_l2 : float, default=1e-3
        L2 penalty on the code table, ``code_l2 * mean_g ||z_g||^2``, added to the mean
        training loss. With ``alpha`` it fixes how the product ``B_l z`` is shared
        between the matrices and the codes (see Notes).
    alpha : float, default=1e-5
        L2 penalty on the trainable kernels (``W_l``, ``B_l``, output layer),
        ``alpha * sum ||W||^2``, added to the mean training loss (not divided by the
        number of rows, unlike :class:`~sklearn.neural_network.MLPClassifier`).
    learning_rate_init : float, default=1e-3
        Adam learning rate.
    batch_size : int or "auto", default="auto"
        Minibatch size; ``"auto"`` is ``min(200, n_rows)``. Clipped to the number of rows.
    max_iter : int, default=200
        Maximum number of epochs.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the rows of every training condition (the
        codes of all conditions are still learned), stop when the validation loss has
        not improved by ``tol`` for ``n_iter_no_change`` epochs, and restore the weights
        and codes of the best epoch. Without it, training stops when the training loss
        has not improved by ``tol`` for ``n_iter_no_change`` epochs.
    validation_fraction : float, default=0.1
        Fraction of each condition's rows held out with ``early_stopping``.
    n_iter_no_change : int, default=10
        Patience, in epochs.
    tol : float, default=1e-4
        Smallest loss decrease that counts as an improvement.
    base_model : keras.Model or None, default=None
        ``None``: joint (speaker-adaptive) training of the whole network, the ``B_l``
        and the codes. A pretrained model: its weights are copied, never modified;
        a model with one input is first retrofitted with
        :func:`add_condition_codes` (``code_size``, ``code_layers``), which freezes the
        pretrained weights, and fit then learns only the ``B_l`` and the codes. A model
        that already has inputs ``"features"`` and ``"code"`` is trained as it is
        (its trainable weights are learned).
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights and codes, the shuffling and the validation split.
        With an int, two fits on CPU give identical codes and predictions.
    verbose : int, default=0
        0: silent; 1: one line per epoch; 2: a Keras progress bar.
"""

_NOTES_DOC = """
    Notes
    -----
    The ``groups`` of ``fit`` name the training conditions; one code is learned per
    condition through a code table that exists only during training. ``predict``,
    ``predict_proba`` and ``score`` use the learned code of each known group and the
    prior mean ``code_prior_.mean`` for rows of unseen groups or when ``groups`` is
    None, which is the best guess for a condition not seen yet. To do better on a new
    condition, learn its code from a few rows with :meth:`adapter`.

    ``B_l z`` is unchanged when ``z`` is divided by a number and ``B_l`` multiplied by
    it, so the codes' scale is not identifiable. The ``code_l2`` and ``alpha`` penalties
    keep both bounded during training; after training the codes are rescaled (and
    ``B_l`` inversely) to unit root-mean-square spread per dimension, and, in joint
    training, centred with the offset moved into the biases, so that the zero code is
    the average training condition. The output is unchanged by this
    reparametrisation. With ``base_model`` the codes are not centred: the zero code
    keeps reproducing the pretrained model. The prior ``code_prior_`` is the mean and
    (slightly shrunk) covariance of the normalised codes.

    References
    ----------
    O. Abdel-Hamid and H. Jiang, "Fast speaker adaptation of hybrid NN/HMM model for
    speech recognition based on discriminative learning of speaker code", ICASSP 2013.

    S. Xue, O. Abdel-Hamid, H. Jiang, L. Dai and Q. Liu, "Fast adaptation of deep neural
    network based on discriminant codes for speech recognition", IEEE/ACM TASLP 22(12),
    2014.
"""

_ATTRIBUTES_DOC = """
    model_ : keras.Model
        The code network: inputs ``"features"`` ``(n_features,)`` and ``"code"``
        ``(code_size,)``, one output. It plugs into :class:`~skdc.CodeAdapter` as is.
    codes_ : dict
        Learned code (ndarray of shape ``(code_size,)``) of each training group.
    code_prior_ : CodePrior
        Mean and covariance of the training codes (:func:`skdc._prior.prior_from_codes`).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when X has string column names.
    loss_curve_ : list of float
        Training loss (with penalties) after each epoch.
    validation_loss_curve_ : list of float
        Validation loss after each epoch; only with ``early_stopping=True``.
    best_validation_loss_ : float
        Smallest validation loss; only with ``early_stopping=True``.
    n_iter_ : int
        Number of epochs run.
"""


def _doc(template: str) -> str:
    return (
        template.replace("{parameters}", _PARAMETERS_DOC.strip("\n"))
        .replace("{attributes}", _ATTRIBUTES_DOC.strip("\n"))
        .replace("{notes}", _NOTES_DOC.strip("\n"))
    )


class CodeNetwork(ClassifierMixin, _BaseCodeNetwork):
    _output_activation = "softmax"

    __doc__ = _doc(
        """Classifier network with one learned code per training condition.

    A multilayer perceptron whose hidden layers also receive a condition code,
    ``h_l = act(W_l h_{l-1} + b_l + B_l z)``, trained with one code per condition
    (``groups``) and a softmax output. On a new condition, freeze everything and learn
    only its code from a few rows with :meth:`adapter`.

{parameters}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the order of the model's output units.
{attributes}

    See Also
    --------
    CodeNetworkRegressor : The regression twin.
    add_condition_codes : Retrofit a code input into a pretrained Keras model.
    skdc.CodeAdapter : Learn the code of a new condition.

{notes}

    Examples
    --------
    >>> import numpy as np
    >>> from skdc._network import CodeNetwork
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(6), 20)
    >>> X = rng.normal(size=(120, 3)) + groups[:, None] % 2
    >>> y = (X[:, 0] - groups % 2 > 0).astype(int)
    >>> net = CodeNetwork((8,), code_size=2, max_iter=5, random_state=0)
    >>> net = net.fit(X, y, groups=groups)
    >>> len(net.codes_), net.predict(X[:3], groups=groups[:3]).shape
    (6, (3,))
    >>> adapter = net.adapter(max_iter=50).fit(X[:10], y[:10])
    """
    )

    def _validate_Xy(self, X, y):
        X, y = validate_data(self, X, y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        return X, y

    def _encode_targets(self, y) -> np.ndarray:
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes in y; got {len(self.classes_)}."
            )
        return encoded.astype(np.int32)

    def _n_model_outputs(self) -> int:
        return len(self.classes_)

    def _what_outputs(self) -> str:
        return f"one per class, {len(self.classes_)} classes in y"

    def _loss(self):
        return keras.losses.SparseCategoricalCrossentropy()

    def _check_base_output(self, core, X) -> None:
        rows = X[:16]
        proba = _predict_model(core, rows, np.zeros((len(rows), core.inputs[1].shape[-1]), "f4"))
        if np.any(proba < 0) or not np.allclose(proba.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError(
                "base_model must output class probabilities (a softmax output layer) for "
                f"{type(self).__name__}."
            )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None, sample_weight=None):
        """Learn the network and one code per condition.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,)
            Class labels.
        groups : array-like of shape (n_samples,)
            Condition of each row (speaker, device, ...); required, at least 2 distinct.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        self : CodeNetwork
            Fitted estimator.
        """
        return self._fit(X, y, groups, sample_weight)

    def predict_proba(self, X, groups=None) -> np.ndarray:
        """Class probabilities, with each known group's code and the prior mean otherwise.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        groups : array-like of shape (n_samples,), default=None
            Condition of each row; unseen groups and None use ``code_prior_.mean``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities, columns in the order of ``classes_``.
        """
        return self._forward(X, groups).astype(np.float64)

    def predict(self, X, groups=None) -> np.ndarray:
        """Most probable class of each row (see :meth:`predict_proba`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        groups : array-like of shape (n_samples,), default=None
            Condition of each row; unseen groups and None use ``code_prior_.mean``.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted labels.
        """
        proba = self._forward(X, groups)
        return self.classes_[np.argmax(proba, axis=1)]

    def score(self, X, y, groups=None, sample_weight=None) -> float:
        """Accuracy of :meth:`predict` on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,)
            True labels.
        groups : array-like of shape (n_samples,), default=None
            Condition of each row; unseen groups and None use ``code_prior_.mean``.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        score : float
            Mean accuracy.
        """
        return float(accuracy_score(y, self.predict(X, groups), sample_weight=sample_weight))

    def adapter(self, **params):
        """A :class:`~skdc.CodeAdapter` over ``model_``, starting from the code prior.

        Defaults: ``code_input="code"``, ``code_init=self.code_prior_`` (start at the
        prior mean, Gaussian prior with the training codes' covariance) and
        ``classes=self.classes_``; ``params`` override them and set the rest.

        Returns
        -------
        adapter : skdc.CodeAdapter
            Unfitted adapter; ``model_`` is shared, never written to.
        """
        from ._adapter import CodeAdapter

        check_is_fitted(self, "model_")
        return self._adapter(CodeAdapter, {"classes": self.classes_}, params)


class CodeNetworkRegressor(RegressorMixin, _BaseCodeNetwork):
    _output_activation = "linear"

    __doc__ = _doc(
        """Regression network with one learned code per training condition.

    The regression twin of :class:`CodeNetwork`: linear output units, squared error.

{parameters}

    Attributes
    ----------
    n_outputs_ : int
        Number of targets.
{attributes}

    See Also
    --------
    CodeNetwork : The classifier.
    skdc.CodeAdapterRegressor : Learn the code of a new condition.

{notes}

    Examples
    --------
    >>> import numpy as np
    >>> from skdc._network import CodeNetworkRegressor
    >>> rng = np.random.default_rng(0)
    >>> groups = np.repeat(np.arange(6), 20)
    >>> X = rng.normal(size=(120, 3))
    >>> y = X[:, 0] + groups % 3
    >>> net = CodeNetworkRegressor((8,), code_size=2, max_iter=5, random_state=0)
    >>> net = net.fit(X, y, groups=groups)
    >>> net.predict(X[:3], groups=groups[:3]).shape
    (3,)
    """
    )

    def _validate_Xy(self, X, y):
        return validate_data(
            self, X, y, dtype=(np.float64, np.float32), multi_output=True, y_numeric=True
        )

    def _encode_targets(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float32)
        self._y_1d = y.ndim == 1
        y = y.reshape(len(y), -1)
        self.n_outputs_ = y.shape[1]
        return y

    def _n_model_outputs(self) -> int:
        return self.n_outputs_

    def _what_outputs(self) -> str:
        return f"one per target, {self.n_outputs_} in y"

    def _loss(self):
        return keras.losses.MeanSquaredError()

    def _check_base_output(self, core, X) -> None:
        return None

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None, sample_weight=None):
        """Learn the network and one code per condition.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        groups : array-like of shape (n_samples,)
            Condition of each row (speaker, device, ...); required, at least 2 distinct.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        self : CodeNetworkRegressor
            Fitted estimator.
        """
        return self._fit(X, y, groups, sample_weight)

    def predict(self, X, groups=None) -> np.ndarray:
        """Predicted targets, with each known group's code and the prior mean otherwise.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        groups : array-like of shape (n_samples,), default=None
            Condition of each row; unseen groups and None use ``code_prior_.mean``.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predictions.
        """
        out = self._forward(X, groups).astype(np.float64)
        return out.ravel() if self._y_1d else out

    def score(self, X, y, groups=None, sample_weight=None) -> float:
        """R² of :meth:`predict` on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            True targets.
        groups : array-like of shape (n_samples,), default=None
            Condition of each row; unseen groups and None use ``code_prior_.mean``.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights.

        Returns
        -------
        score : float
            Coefficient of determination.
        """
        return float(r2_score(y, self.predict(X, groups), sample_weight=sample_weight))

    def adapter(self, **params):
        """A :class:`~skdc.CodeAdapterRegressor` over ``model_``, starting from the prior.

        Defaults: ``code_input="code"`` and ``code_init=self.code_prior_``; ``params``
        override them and set the rest.

        Returns
        -------
        adapter : skdc.CodeAdapterRegressor
            Unfitted adapter; ``model_`` is shared, never written to.
        """
        from ._adapter import CodeAdapterRegressor

        return self._adapter(CodeAdapterRegressor, {}, params)
