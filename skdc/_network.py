"""Code networks: classifier and regressor with one learned code per training condition.

A condition-code network takes features ``x`` and a small code ``z`` (one vector per
speaker, device, room, ...) and feeds the code into hidden layers through learned
matrices ``B_l``::

    h_l = act(W_l h_{l-1} + b_l + B_l z)

:class:`CodeNetwork` (classification) and :class:`CodeNetworkRegressor` learn the
network, the ``B_l`` and one code per training condition (speaker-adaptive training,
Xue et al. 2014), or, given a pretrained ``base_model``, only the ``B_l`` and the codes
with the pretrained weights frozen. This module holds the estimators: they validate
inputs, choose the task (:mod:`skdc._task`) and store the fitted attributes; networks,
trainers and the training loop are in :mod:`skdc._training`. The fitted ``model_``
plugs into :class:`~skdc.CodeAdapter`, which learns the code of a new condition from a
few rows.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import keras
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)

from ._clone import clone_sharing
from ._episodic import train_episodic
from ._feature_shift import ShiftPrior
from ._groups import encode_groups, encode_units
from ._input_shift import check_input_shift, condition_offsets
from ._inputs import flat_rows, shaped_rows, with_flat_features, without_flat_features
from ._model_copy import clone_with_weights
from ._persist import pop_models, push_models, with_new_params
from ._prior import SHRINKAGE_ESTIMATORS, CodePrior, prior_from_codes
from ._retrofit import CODE, FEATURES, is_dense_chain, rewire
from ._retrofit_graph import retrofit_graph
from ._task import Classification, Regression
from ._training import (
    Architecture,
    CodeTrainer,
    Rows,
    Schedule,
    Seeds,
    as_training_target,
    joint_network,
    normalise_codes,
    predict_in_chunks,
    train,
    train_without_codes,
    warn_unless_stopped,
)

__all__ = ["CodeNetwork", "CodeNetworkRegressor"]


class _BaseCodeNetwork(BaseEstimator):
    """Shared machinery of :class:`CodeNetwork` and :class:`CodeNetworkRegressor`.

    A subclass chooses its task: ``_y_checks`` (how ``validate_data`` checks ``y``),
    ``_new_task(y)`` (the task of the training targets, recorded in fitted attributes)
    and ``_task()`` (the task rebuilt from those attributes).
    """

    _parameter_constraints: dict = {
        **Architecture.constraints,
        **Schedule.constraints,
        "code_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "code_layers": [StrOptions({"all", "input"}), "array-like"],
        "code_l2": [Interval(Real, 0, None, closed="left")],
        "code_dropout": [Interval(Real, 0, 1, closed="left")],
        "input_shift": [None, StrOptions({"full"}), Interval(Integral, 1, None, closed="left")],
        "shift_estimate": [StrOptions({"learned", "empirical_bayes"})],
        "shift_covariance": [StrOptions({"diag", "full"})],
        "prior_shrinkage": [Interval(Real, 0, 1, closed="both"),
                            StrOptions(set(SHRINKAGE_ESTIMATORS))],
        "training": [StrOptions({"joint", "staged", "episodic"})],
        "support_size": [Interval(Integral, 1, None, closed="left")],
        "support_units": [Interval(Integral, 1, None, closed="left")],
        "inner_steps": [Interval(Integral, 1, None, closed="left")],
        "base_model": [keras.Model, None],
        "random_state": ["random_state"],
    }
    _y_checks: dict = {}

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
        input_shift=None,
        shift_estimate="learned",
        shift_covariance="diag",
        prior_shrinkage=1e-3,
        training="joint",
        support_size=32,
        support_units=5,
        inner_steps=5,
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
        self.input_shift = input_shift
        self.shift_estimate = shift_estimate
        self.shift_covariance = shift_covariance
        self.prior_shrinkage = prior_shrinkage
        self.training = training
        self.support_size = support_size
        self.support_units = support_units
        self.inner_steps = inner_steps
        self.base_model = base_model
        self.random_state = random_state
        self.verbose = verbose

    # --- fit -----------------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, groups=None, sample_weight=None, units=None):
        """Learn the network and one code per condition.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels (:class:`CodeNetwork`, 1-D) or targets
            (:class:`CodeNetworkRegressor`).
        groups : array-like of shape (n_samples,)
            Condition of each row (speaker, device, ...); required, at least 2 distinct.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights; :class:`CodeNetwork` multiplies them by the class weights of
            ``class_weight``.
        units : array-like of shape (n_samples,), default=None
            Unit of each row (e.g. its utterance) for ``shift_estimate="empirical_bayes"``:
            the frames of one utterance count as one observation of its condition's
            shift, and under ``training="episodic"`` support sets are a few whole units
            (``support_units``). None: every row is a unit.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit(X, y, groups, sample_weight, units)

    def _fit(self, X, y, groups, sample_weight, units=None):
        X, y = validate_data(self, flat_rows(X), y, dtype=(np.float64, np.float32),
                             **self._y_checks)
        X = np.asarray(X, dtype=np.float32)
        task = self._new_task(y)
        keys, group = self._training_groups(groups, len(X))
        weight = _check_sample_weight(sample_weight, X, dtype=np.float32)
        target = task.encode(y)
        weight = self._weigh(task, weight, target, group)
        rows = Rows(X, group, as_training_target(target), weight)
        schedule = Schedule.from_params(self.get_params(deep=False))
        seeds = Seeds(self.random_state)

        shift = self._shift_period(X.shape[1])
        self.shift_prior_ = self._shift_prior(X, target, group, units, shift, task)
        self.code_size_ = auto_code_size(len(keys)) if self.code_size == "auto" else int(
            self.code_size)
        base = self.base_model
        if self.training == "staged":
            base = self._first_stage(rows, task, schedule, seeds, units)
        core, pairs = self._initial_model(X, task, seeds.generator("weights"), shift, base)
        self.input_shift_ = shift
        if self.training == "episodic":
            self._fit_episodic(core, keys, rows, y, task, schedule, seeds, shift,
                               encode_units(units, group))
            return self
        joint = base is None
        trainer = CodeTrainer(
            core,
            len(keys),
            core.inputs[1].shape[-1],
            alpha=self.alpha,
            code_l2=self.code_l2,
            code_dropout=self.code_dropout,
            seed=seeds.seed("codes"),
            input_shift=shift,
            shift_init=self._shift_start(X, target, group, len(keys), shift, task, units,
                                         pretrained=not joint),
            fixed_shift=self.shift_prior_ is not None,
        )
        held = schedule.held_out(group, weight, seeds.generator("split"))
        history = train(trainer, rows, held, task.keras_loss(), schedule,
                        seeds.generator("shuffle"))
        codes = normalise_codes(core, trainer.codes(), pairs, centre=joint, input_shift=shift)
        self._store(core, keys, codes, history)
        self.code_prior_ = prior_from_codes(codes, self.prior_shrinkage)
        warn_unless_stopped(history, type(self).__name__, self.max_iter)
        return self

    def _fit_episodic(self, core, keys, rows, y, task, schedule, seeds, shift: int,
                      units: np.ndarray | None) -> None:
        """Episodic training (:mod:`skdc._episodic`); each training condition's code is
        then the inner procedure run on all its rows."""
        if self.early_stopping:
            raise ValueError("early_stopping is not available with training='episodic': "
                             "the stopping rule watches the query loss of the episodes.")
        z0 = np.zeros(core.inputs[1].shape[-1])
        z0[shift:] = seeds.generator("codes").normal(size=len(z0) - shift)
        history, z0, step = train_episodic(
            core, rows, task.keras_loss(), schedule, seeds.generator("shuffle"),
            support=int(self.support_size), inner_steps=int(self.inner_steps),
            alpha=self.alpha, z0=z0.astype(np.float32), units=units,
            support_units=int(self.support_units))
        self.model_ = core
        self.code_prior_ = CodePrior(z0, np.diag(step))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            adapter = self.adapter().fit(rows.features, y, groups=rows.group)
        codes = np.stack([adapter.codes_[g] for g in range(len(keys))])
        self._store(core, keys, codes, history)
        warn_unless_stopped(history, type(self).__name__, self.max_iter)

    def _first_stage(self, rows: Rows, task, schedule: Schedule, seeds: Seeds,
                     units) -> keras.Model:
        """``training="staged"``: the network without codes, trained on the training
        conditions (each with its own feature shift removed under
        ``shift_estimate="empirical_bayes"``), to be frozen under the codes."""
        if self.base_model is not None:
            raise ValueError('training="staged" trains the network without codes first; '
                             "with a base_model that network is given: use the default "
                             'training="joint".')
        if self.shift_prior_ is not None:
            label = rows.target if isinstance(task, Classification) else None
            n_groups = int(rows.group.max()) + 1
            shifts = self.shift_prior_.shifts(rows.features, label, rows.group, n_groups,
                                              encode_units(units, rows.group))
            rows = rows._replace(features=rows.features - shifts[rows.group].astype(np.float32))
        architecture = Architecture.from_params(self.get_params(deep=False))
        return train_without_codes(rows, task, architecture, schedule, seeds,
                                   type(self).__name__)

    def _weigh(self, task, weight, target, group) -> np.ndarray:
        """Row weights of the fit: ``sample_weight`` (the classifier adds class weights)."""
        return weight

    def _shift_period(self, n_features: int) -> int:
        """Entries of feature shift at the start of the code (0: none)."""
        if self.input_shift is not None and self.base_model is not None and len(
                _input_names(self.base_model)) > 1:
            raise ValueError("input_shift applies when the code input is added by fit; "
                             "base_model already has one, shift part included or not.")
        return check_input_shift(self.input_shift, n_features)

    def _shift_prior(self, X, target, group, units, shift: int, task) -> ShiftPrior | None:
        """The empirical-Bayes prior of the conditions' feature shifts (None unless
        ``shift_estimate="empirical_bayes"``)."""
        if self.shift_estimate == "learned":
            return None
        if not shift:
            raise ValueError('shift_estimate="empirical_bayes" estimates the shift part of '
                             "the codes; set input_shift too (e.g. \"full\").")
        if self.training == "episodic":
            raise ValueError('shift_estimate="empirical_bayes" is not available with '
                             'training="episodic".')
        label = target if isinstance(task, Classification) else None
        return ShiftPrior.fit(X, label, group, encode_units(units, group), shift,
                              covariance=self.shift_covariance)

    def _shift_start(self, X, target, group, n_groups: int, shift: int, task,
                     units, pretrained: bool) -> np.ndarray | None:
        """Each condition's shift part at the start of training: its estimated shift
        removed (empirical Bayes, kept there), else in joint training its mean offset
        (class residuals for a classifier), else (a pretrained model, trained on the
        features as they are) zero."""
        if not shift or (self.shift_prior_ is None and pretrained):
            return None
        label = target if isinstance(task, Classification) else None
        if self.shift_prior_ is None:
            return condition_offsets(X, group, n_groups, shift, label)
        return self.shift_prior_.code_shifts(X, label, group, n_groups,
                                             encode_units(units, group))

    def _training_groups(self, groups, n_rows: int) -> tuple[list, np.ndarray]:
        """The distinct training conditions and each row's index into them (at least 2)."""
        if groups is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs groups: one condition label per row "
                "(speaker, device, ...), to learn one code per condition. Inside a Pipeline or "
                "GridSearchCV, enable metadata routing and call set_fit_request(groups=True)."
            )
        keys, group = encode_groups(groups, n_rows)
        if len(keys) < 2:
            raise ValueError(
                f"fit needs at least 2 conditions (distinct groups) to learn codes and their "
                f"prior; got {len(keys)}."
            )
        return keys, group

    def _store(self, core, keys, codes, history) -> None:
        self.model_ = without_flat_features(core)  # the features in the model's own shape
        self.codes_ = dict(zip(keys, codes, strict=True))
        self.loss_curve_ = list(history.loss)
        if history.val_loss is not None:
            self.validation_loss_curve_ = list(history.val_loss)
            self.best_validation_loss_ = float(np.min(history.val_loss))
        self.n_iter_ = len(self.loss_curve_)

    def _initial_model(self, X, task, rng, shift: int,
                       base: keras.Model | None) -> tuple[keras.Model, list | None]:
        """The code network to train (initial weights drawn with ``rng``; or ``base``
        with codes) and its (Dense, B) pairs when fit added the code input (None: found
        in the model)."""
        if base is None:
            architecture = Architecture.from_params(self.get_params(deep=False))
            return joint_network(
                X.shape[1], architecture, task, self.code_size_, self.code_layers, rng, shift
            )
        features = (getattr(base, "inputs", None) or [None])[0]
        shape = None if features is None else tuple(features.shape[1:])
        if shape is None or not _takes_width(shape, X.shape[1]):
            raise ValueError(f"X has {X.shape[1]} values per row, but base_model's features "
                             f"have shape {shape} (X may also be given as (n, *shape)).")
        core, pairs = self._coded_base_model(base, shift)
        core = with_flat_features(core)
        n_out = core.outputs[0].shape[-1]
        if n_out != task.n_outputs:
            raise ValueError(
                f"base_model has {n_out} output units; the targets in y need {task.n_outputs} "
                f"({task.describe()})."
            )
        if not core.trainable_weights:
            raise ValueError("base_model has no trainable weights to learn the codes with.")
        rows = X[:16]
        zeros = np.zeros((len(rows), core.inputs[1].shape[-1]), np.float32)
        task.check_outputs(predict_in_chunks(core, [rows, zeros]), "base_model")
        return core, pairs

    def _coded_base_model(self, base: keras.Model,
                          shift: int) -> tuple[keras.Model, list | None]:
        """A trainable copy of ``base`` with a code input (retrofitted if needed), and
        the (Dense, B) pairs of a retrofit."""
        names = _input_names(base)
        if names == [FEATURES, CODE]:
            return clone_with_weights(base), None
        if len(names) == 1 and is_dense_chain(base):
            return rewire(base, self.code_size_, self.code_layers, shift)
        if len(names) == 1 and not shift:
            layers = self.code_layers
            layers = layers if isinstance(layers, str) else [str(x) for x in layers]
            return retrofit_graph(base, self.code_size_, layers), None
        raise ValueError(
            "base_model must have either one input (it is then retrofitted with "
            f"add_condition_codes) or inputs named {[FEATURES, CODE]}; got inputs {names}."
        )

    # --- prediction ----------------------------------------------------------------------

    def predict(self, X, groups=None) -> np.ndarray:
        """Predictions with each known group's code and the prior mean code otherwise.

        :class:`CodeNetwork`: the most probable class of each row (see
        ``predict_proba``); :class:`CodeNetworkRegressor`: the predicted targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        groups : array-like of shape (n_samples,), default=None
            Condition of each row; unseen groups and None use ``code_prior_.mean``.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predicted class labels, or targets.
        """
        outputs = self._forward(X, groups)  # checks first that the network is fitted
        return self._task().predict(outputs)

    def _codes_for(self, groups, n_rows: int) -> np.ndarray:
        """One code per row: the condition's learned code, or the prior mean."""
        mean = np.asarray(self.code_prior_.mean, dtype=np.float32)
        Z = np.tile(mean, (n_rows, 1))
        if groups is None:
            return Z
        keys, index = encode_groups(groups, n_rows)
        for k, key in enumerate(keys):
            code = self.codes_.get(key)
            if code is not None:
                Z[index == k] = code
        return Z

    def _forward(self, X, groups) -> np.ndarray:
        check_is_fitted(self, "model_")
        shape = tuple(self.model_.inputs[0].shape[1:])
        if len(shape) > 1 and None in shape:  # utterances of any length
            X = check_array(flat_rows(X), dtype=(np.float64, np.float32))
        else:
            X = validate_data(self, flat_rows(X), dtype=(np.float64, np.float32),
                              reset=False)
        X = np.asarray(X, dtype=np.float32)
        return predict_in_chunks(self.model_, [shaped_rows(X, self.model_),
                                               self._codes_for(groups, len(X))])

    # --- adaptation ----------------------------------------------------------------------

    def _adapter(self, cls, defaults, params):
        check_is_fitted(self, "model_")
        if self.training == "episodic":  # the inner procedure the network was trained for
            defaults = {"optimizer": "gd", "learning_rate": 1.0, "alpha": 0.0, "tol": 0.0,
                        "max_iter": int(self.inner_steps), **defaults}
        if getattr(self, "shift_prior_", None) is not None:
            defaults = {"shift_prior": self.shift_prior_, **defaults}
        return cls(
            self.model_,
            **{"code_input": CODE, "code_init": self.code_prior_, **defaults, **params},
        )

    # --- sklearn plumbing ----------------------------------------------------------------

    def __sklearn_clone__(self):
        # The base model is shared, not deep-copied: fit never writes to it. Metadata
        # requests (set_fit_request...) are copied.
        return clone_sharing(self, "base_model")

    def __getstate__(self):
        return pop_models(super().__getstate__())

    def __setstate__(self, state):
        super().__setstate__(push_models(with_new_params(self, state)))


def _takes_width(shape: tuple, width: int) -> bool:
    """A feature input of ``shape`` takes rows of ``width`` values (any multiple of its
    known sizes when one dimension is unknown)."""
    known = int(np.prod([d for d in shape if d is not None], dtype=int))
    return width % known == 0 if None in shape else width == known


def auto_code_size(n_conditions: int) -> int:
    """``code_size="auto"``: four training conditions per code dimension, 2 to 16."""
    return int(np.clip(n_conditions // 4, 2, 16))


def _input_names(model) -> list[str]:
    return [getattr(t, "name", None) for t in getattr(model, "inputs", None) or []]


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of int, default=(256, 256)
        Units of each hidden Dense layer. Ignored with ``base_model``.
    code_size : int or "auto", default=16
        Length of the hidden part of a condition code (the part fed to the hidden
        layers). ``"auto"``: from the number ``N`` of training conditions,
        ``clip(N // 4, 2, 16)``, at least four conditions per dimension of the codes'
        covariance. Ignored when ``base_model`` already has a code input.
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
        Fraction of each condition's rows held out with ``early_stopping``, rounded;
        only rows of positive weight are held out, at least one of every condition
        that has two or more, and at least one stays in training.
    n_iter_no_change : int, default=10
        Patience, in epochs.
    tol : float, default=1e-4
        Smallest loss decrease that counts as an improvement.
    input_shift : None, "full" or int, default=None
        An input-level part of the code: each condition's code starts with ``p``
        offsets added to its features before the first layer, tiled with period ``p``
        (``"full"``: ``p = n_features``, one offset per feature; an int ``p`` dividing
        ``n_features``: e.g. the features per frame of frames stacked with their
        context, offset-major as :mod:`skdc.datasets` stacks them, so that every
        context frame gets the same offset). Codes then hold what a per-condition
        feature shift removes, and the hidden part what a shift cannot express. In
        joint training each condition's shift starts at the offset of its mean
        (class-mean residual for a classifier) from the mean of all rows, so training
        starts on shift-normalised conditions; with a one-input ``base_model`` it
        starts at zero. The shift part is neither penalised by ``code_l2`` nor
        rescaled. None: no shift part.
    shift_estimate : {"learned", "empirical_bayes"}, default="learned"
        How the shift part of the codes (``input_shift``) is found. ``"learned"``: by
        backpropagation, like the hidden code, in training and in adaptation.
        ``"empirical_bayes"``: in closed form from where a condition's rows lie, the
        mean of their class residuals shrunk toward zero (:class:`~skdc.ShiftPrior`,
        its variances estimated over the training conditions, counted per ``units``
        passed to ``fit``), fixed in training (the network and hidden codes learn on
        shift-normalised conditions) and in adaptation (``adapter()`` passes
        ``shift_prior_``): codes on top of a per-condition feature shift. Not with
        ``training="episodic"``. A condition without labelled rows (``predict`` for
        a group not seen in ``fit``) gets the prior mean code, whose zero shift leaves
        its features as they are, although the network learned on shift-normalised
        ones: on Hillenbrand's vowels that costs 119% more errors than a network
        without codes (README); adapt on at least one labelled recording, or on the
        condition's unlabelled rows (``adapter().fit(X, groups=...)`` without
        labels estimates the shift from their offset, see ``CodeAdapter``'s
        ``shift_prior``), or keep the SI network for such conditions.
    shift_covariance : {"diag", "full"}, default="diag"
        The prior of ``shift_estimate="empirical_bayes"``: a shrinkage toward zero
        per feature, or between- and within-condition covariance matrices
        (:class:`~skdc.ShiftPrior`), which shrink a few recordings' evidence toward
        the directions in which the training conditions' shifts differ. It needs many
        more training conditions than features: directions in which they do not
        differ get no shift at all (README, "A shift prior with covariance"). Unused
        otherwise.
    prior_shrinkage : float in [0, 1], "oas" or "ledoit_wolf", default=1e-3
        How the covariance of ``code_prior_`` is shrunk: a fixed fraction toward a
        scaled identity, or the fraction estimated from the codes (OAS, Ledoit-Wolf)
        toward their own variances, see :func:`~skdc._prior.prior_from_codes`.
    training : {"joint", "staged", "episodic"}, default="joint"
        ``"joint"``: one code per training condition learned with the network from
        all of the condition's rows (speaker-adaptive training). ``"staged"``: the
        network is first trained without codes (the speaker-independent network; under
        ``shift_estimate="empirical_bayes"`` on conditions with their own feature shift
        removed), then frozen, and only the ``B_l`` and the codes are learned, as with
        a ``base_model`` (Abdel-Hamid & Jiang, 2013); not with a ``base_model``.
        ``"episodic"``:
        trained the way a new condition's code is learned (first-order CAVIA, see
        :mod:`skdc._episodic`): every step takes ``batch_size // (2 *
        support_size)`` conditions, runs ``inner_steps`` gradient steps on the code
        from a learned initial code over ``support_size`` of each one's rows, with
        learned per-entry step sizes, and trains the network, the ``B_l``, the
        initial code and the step sizes on the loss of ``support_size`` other rows.
        ``code_prior_`` is then that initial code and the step sizes as a diagonal
        covariance, :meth:`adapter` runs the same inner procedure
        (``optimizer="gd"``, ``learning_rate=1``, ``max_iter=inner_steps``,
        ``alpha=0``), and ``codes_`` are its result on each training condition's
        rows. ``early_stopping`` is refused; ``code_l2``, ``code_dropout`` and
        ``prior_shrinkage`` do not apply.
    support_size : int, default=32
        Rows of a condition in an episode's support set (and in its query set),
        drawn at random from the condition's rows (with ``units``, from the rows of
        the recordings drawn for the set); only with ``"episodic"``.
    support_units : int, default=5
        With ``units`` given to :meth:`fit`: an episode's support set is drawn from
        the rows of 1 to ``support_units`` of the condition's units (recordings),
        drawn at random, as a new condition's code is learned from a few recordings,
        and its query set from the condition's other units (units of one row each
        are as no units: ``support_size`` rows); only with ``"episodic"``.
    inner_steps : int, default=5
        Gradient steps on the code per episode; only with ``"episodic"``.
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
        With an int, two fits on CPU give identical codes and predictions under the
        same Keras backend (each backend draws its own initial weights from a seed).
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
    covariance of the normalised codes, shrunk by ``prior_shrinkage``.

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
        ``(input_shift_ + code_size,)``, one output. It plugs into
        :class:`~skdc.CodeAdapter` as is.
    codes_ : dict
        Learned code (ndarray of shape ``(input_shift_ + code_size,)``, the shift part
        first) of each training group.
    input_shift_ : int
        Entries of feature shift at the start of every code (0: none).
    shift_prior_ : ShiftPrior or None
        With ``shift_estimate="empirical_bayes"``, the prior of the conditions'
        feature shifts (class means, shrinkage per feature); else None.
    code_size_ : int
        Entries of hidden code after them (``code_size``, or its ``"auto"`` value).
    code_prior_ : CodePrior
        Mean and covariance of the training codes, the covariance shrunk by
        ``prior_shrinkage`` so that it stays invertible with few conditions.
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
    __doc__ = _doc(
        """Classifier network with one learned code per training condition.

    A multilayer perceptron whose hidden layers also receive a condition code,
    ``h_l = act(W_l h_{l-1} + b_l + B_l z)``, trained with one code per condition
    (``groups``) and a softmax output. On a new condition, freeze everything and learn
    only its code from a few rows with :meth:`adapter`.

{parameters}
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplying ``sample_weight``, as in scikit-learn's
        classifiers. A dict maps class labels to weights; classes not in it weigh 1.
        ``"balanced"`` weighs each training condition's rows inversely to the class
        frequencies within that condition: a row of class ``c`` weighs
        ``W / (k * W_c)``, ``W_c`` the sample weight of the condition's rows of class
        ``c``, ``W`` their total and ``k`` the number of classes present
        (scikit-learn's ``compute_class_weight("balanced", ..., sample_weight=...)``
        per condition).

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
    >>> from skdc import CodeNetwork
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

    _parameter_constraints: dict = {
        **_BaseCodeNetwork._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
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
        input_shift=None,
        shift_estimate="learned",
        shift_covariance="diag",
        prior_shrinkage=1e-3,
        training="joint",
        support_size=32,
        support_units=5,
        inner_steps=5,
        base_model=None,
        random_state=None,
        verbose=0,
        class_weight=None,
    ):
        super().__init__(
            hidden_layer_sizes, code_size=code_size, code_layers=code_layers,
            activation=activation, code_l2=code_l2, code_dropout=code_dropout, alpha=alpha,
            learning_rate_init=learning_rate_init, batch_size=batch_size, max_iter=max_iter,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, tol=tol, input_shift=input_shift,
            shift_estimate=shift_estimate, shift_covariance=shift_covariance,
            prior_shrinkage=prior_shrinkage,
            training=training, support_size=support_size, support_units=support_units,
            inner_steps=inner_steps, base_model=base_model,
            random_state=random_state, verbose=verbose,
        )
        self.class_weight = class_weight

    def _new_task(self, y) -> Classification:
        task = Classification.from_targets(y)
        self.classes_ = task.classes
        return task

    def _weigh(self, task, weight, target, group) -> np.ndarray:
        return task.weigh(weight, target, group, self.class_weight).astype(np.float32)

    def _task(self) -> Classification:
        return Classification(self.classes_)

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
        outputs = self._forward(X, groups)
        return self._task().convert(outputs)

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
    >>> from skdc import CodeNetworkRegressor
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

    _y_checks = {"multi_output": True, "y_numeric": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y of shape (n, n_outputs): one unit per target
        return tags

    def _new_task(self, y) -> Regression:
        task = Regression.from_targets(y)
        self.n_outputs_, self._y_1d = task.n_outputs, task.one_d
        return task

    def _task(self) -> Regression:
        return Regression(self.n_outputs_, self._y_1d)

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
