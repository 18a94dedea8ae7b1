"""CodeAdapter: learn condition codes for a frozen Keras model."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral, Real
from typing import TYPE_CHECKING

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)

from ._clone import clone_sharing
from ._codetable import CodeTable
from ._engine import EngineSpec, Problem, Settings
from ._export import export_codes
from ._feature_shift import ShiftPrior
from ._graph import output_activation, output_units, resolve_code_input
from ._groups import encode_groups, encode_units, validation_split
from ._inputs import as_rows
from ._laplace import (
    code_posteriors,
    evidence_alpha,
    posterior_draws,
    rows_per_unit,
    whitened,
)
from ._optimizers import OPTIMIZERS
from ._persist import pop_models, push_models, with_new_params
from ._prior import CodePrior, resolve_code_init
from ._sharding import fit_sharded
from ._task import Classification, Regression
from ._warn import warn_caller

if TYPE_CHECKING:
    import keras

__all__ = ["CodeAdapter", "CodeAdapterRegressor"]

_LEGACY_TIED = "__tied__"  # the tied code's key in pickles of skdc 0.1
_FIXED = 1e-12  # prior variance of a code entry held where it is (the estimated shift)

_FIT_DOC = """Learn the code (or one code per group) with every weight frozen.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features of the adaptation rows, columns in the order of the model's
            feature inputs.
        y : {y}
        groups : array-like of shape (n_samples,), default=None
            Condition of each row. Without it all rows share one tied code
            (``code_``); with it every group gets its own code (``codes_``),
            learned in one vectorized fit.
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights within each group's mean loss.{units}

        Returns
        -------
        self : object
            The fitted adapter.
        """

_PARTIAL_FIT_DOC = """One optimisation step on ``X, y`` (online adaptation as data arrives).

        Codes and optimizer state carry over between calls; a group seen for the
        first time starts from ``code_init``. ``tol`` and ``early_stopping`` do
        not apply. ``optimizer="lbfgs"`` has no single step and is refused.{more}

        Returns
        -------
        self : object
            The updated adapter.
        """


class _BaseCodeAdapter(BaseEstimator):
    """Shared machinery of :class:`CodeAdapter` and :class:`CodeAdapterRegressor`."""

    _parameter_constraints: dict = {
        "model": [object],
        "code_input": [str, Interval(Integral, None, None, closed="neither")],
        "code_init": [StrOptions({"zeros"}), "array-like", CodePrior, Mapping],
        "shift_prior": [None, ShiftPrior],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left"), StrOptions({"evidence"})],
        "posterior": [None, StrOptions({"laplace"})],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "jit_compile": ["boolean", StrOptions({"auto"})],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model,
        *,
        code_input="code",
        code_init="zeros",
        shift_prior=None,
        optimizer="adam",
        learning_rate=0.05,
        max_iter=200,
        alpha=1.0,
        posterior=None,
        tol=1e-4,
        n_iter_no_change=10,
        batch_size=None,
        jit_compile="auto",
        early_stopping=False,
        validation_fraction=0.1,
        warm_start=False,
        random_state=None,
        n_jobs=None,
        verbose=0,
    ):
        self.model = model
        self.code_input = code_input
        self.code_init = code_init
        self.shift_prior = shift_prior
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.alpha = alpha
        self.posterior = posterior
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.batch_size = batch_size
        self.jit_compile = jit_compile
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.warm_start = warm_start
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    # -- scikit-learn protocol -------------------------------------------------
    def __sklearn_clone__(self):
        return clone_sharing(self, "model")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "code_")

    def __getstate__(self):
        # the engine and the resolved priors are rebuilt from the parameters on first use
        state = {k: v for k, v in super().__getstate__().items()
                 if k not in ("_engine", "_spec", "_task", "_prior", "_group_priors")}
        return pop_models(state)

    def __setstate__(self, state):
        state = with_new_params(self, state)
        if "_codes" in state:  # skdc 0.1: plain dicts, the tied code under a string key
            state["_table"] = CodeTable.from_dicts(state.pop("_codes"),
                                                   state.pop("_opt_state", {}), _LEGACY_TIED)
        super().__setstate__(push_models(state))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        tags.input_tags.allow_nan = False
        return tags

    # -- fitting ---------------------------------------------------------------
    def fit(self, X, y=None, groups=None, sample_weight=None):
        return self._fit_anew(X, y, groups, sample_weight)

    fit.__doc__ = _FIT_DOC.format(
        y="array-like of shape (n_samples,) or (n_samples, n_outputs)\n            Targets.",
        units="")

    def _fit_anew(self, X, y, groups, sample_weight, units=None):
        self._validate_params()
        self._setup_engine()
        if not (self.warm_start and hasattr(self, "_table")):
            self._reset()
        return self._fit(X, y, groups, sample_weight, self._settings(), incremental=False,
                         units=units)

    def partial_fit(self, X, y=None, groups=None, sample_weight=None):
        return self._partial_fit(X, y, groups, sample_weight)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC.format(more="")

    def _partial_fit(self, X, y, groups, sample_weight, units=None):
        if not hasattr(self, "_table"):
            self._validate_params()
            self._setup_engine()
            self._reset()
        self._get_engine()  # unpickled adapters rebuild theirs here
        if not OPTIMIZERS[self.optimizer].supports_partial_fit:
            raise ValueError(
                f"optimizer={self.optimizer!r} does not support partial_fit (it has no single "
                "step); use 'adam', 'sgd', 'gd' or 'rms_sgd' for online adaptation."
            )
        if (self.posterior is not None or self.alpha == "evidence"
                or self.shift_prior is not None):
            raise ValueError(
                "posterior='laplace', alpha='evidence' and shift_prior need all of a "
                "condition's rows in one fit; partial_fit sees one batch at a time. Use fit."
            )
        settings = self._settings()
        settings.max_iter, settings.tol = 1, 0.0
        return self._fit(X, y, groups, sample_weight, settings, incremental=True, units=units)

    def _settings(self) -> Settings:
        return Settings(
            optimizer=self.optimizer,
            learning_rate=float(self.learning_rate),
            alpha=1.0 if self.alpha == "evidence" else float(self.alpha),
            max_iter=int(self.max_iter),
            tol=float(self.tol),
            n_iter_no_change=int(self.n_iter_no_change),
            batch_size=self.batch_size,
            jit_compile=self.jit_compile,
        )

    def _setup_engine(self):
        index = resolve_code_input(self.model, self.code_input)
        self._task = self._make_task(self.model)
        self._spec = EngineSpec(self.model, index, self._task.loss)
        self._engine = self._spec.engine()
        graph = self._engine.graph
        self.code_dim_ = graph.code_dim
        self._prior, self._group_priors = resolve_code_init(self.code_init, graph.code_dim)

    def _get_engine(self):
        if getattr(self, "_engine", None) is None or getattr(self, "_spec", None) is None:
            self._setup_engine()
        return self._engine

    def _reset(self):
        self._table = CodeTable()
        for name in ("code_", "codes_", "loss_curve_", "best_loss_", "n_iter_",
                     "code_covariance_", "code_covariances_", "alpha_"):
            self.__dict__.pop(name, None)

    def _fit(self, X, y, groups, sample_weight, settings, incremental, units=None):
        first = not hasattr(self, "n_features_in_")
        X = self._check_X(X, reset=first or not (incremental or self.warm_start))
        weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        if not np.all(np.isfinite(weight)) or np.any(weight < 0):
            raise ValueError("sample_weight must be finite and non-negative.")
        keys, group_idx = self._encode_groups(groups, len(X))
        target = self._encode_targets(y, len(X))
        weight = self._weigh(weight, target, group_idx)
        if not weight.sum() > 0:
            what = "sample_weight" if getattr(self, "class_weight", None) is None else (
                "sample_weight times class_weight")
            raise ValueError(f"{what} is zero for every row: there is nothing to fit.")
        if self._has_unlabelled(target):
            settings.diversity, settings.unlabelled = float(self.diversity), True
        init, mean, cov, state = self._table.start(keys, self._prior, self._group_priors)
        if self.shift_prior is not None:
            init, mean, cov = self._shift_removed(X, target, group_idx, units, init, mean, cov)
        problem = Problem(X, target, weight, group_idx, len(mean), mean, cov,
                          encode_units(units, group_idx))
        if self.alpha == "evidence":  # from a per-unit strength of 1
            settings.alpha = rows_per_unit(problem)
        validation = None
        if (self.early_stopping and not incremental
                and OPTIMIZERS[settings.optimizer].supports_early_stopping):
            held = validation_split(group_idx, self.validation_fraction,
                                    check_random_state(self.random_state), weight)
            problem, validation = problem.subset(~held), problem.subset(held)
        result = self._run(problem, init, settings, validation=validation,
                           state=state if incremental or self.warm_start else None)
        if self.alpha == "evidence":
            result = self._maximise_evidence(problem, result, settings, validation)
        self._store(keys, result, incremental)
        if self.posterior == "laplace":
            self._store_posteriors(keys, problem, settings, result.codes)
        return self

    def _shift_removed(self, X, target, group_idx, units, init, mean, cov):
        """Codes and priors of the groups with the shift part fixed at the shift that
        ``shift_prior`` estimates from each group's rows (a prior variance of
        ``_FIXED`` there, no correlation with the hidden part)."""
        label = target if isinstance(self._task, Classification) else None
        shift = self.shift_prior.code_shifts(X, label, group_idx, len(mean),
                                             encode_units(units, group_idx), unlabelled=True)
        p = shift.shape[1]
        if p > mean.shape[1]:
            raise ValueError(f"shift_prior has a shift part of {p} entries, but the model's "
                             f"code has {mean.shape[1]}.")
        init, mean, cov = init.copy(), mean.copy(), cov.copy()
        init[:, :p] = mean[:, :p] = shift
        cov[:, :p, :] = cov[:, :, :p] = 0.0
        cov[:, np.arange(p), np.arange(p)] = _FIXED
        return init, mean, cov

    def _maximise_evidence(self, problem, result, settings, validation):
        """Refit with MacKay's update of ``alpha`` until it settles (at most 10 fits),
        each unit's rows counted once (:func:`rows_per_unit`). One update per refit: a
        local quadratic model that took many updates per refit (3b677d2) ran away along
        directions where the likelihood is flat (README, normalised Arabic digits)."""
        r = rows_per_unit(problem)
        for _ in range(10):
            _, cov_u = code_posteriors(self._engine, problem, settings, result.codes)
            u = whitened(problem, result.codes)
            alpha = r * evidence_alpha(settings.alpha / r, u, r * cov_u)
            settled = abs(np.log(alpha / settings.alpha)) < 0.01
            settings.alpha = alpha
            if settled:
                break
            result = self._run(problem, result.codes, settings, validation=validation)
        self.alpha_ = settings.alpha
        return result

    def _store_posteriors(self, keys, problem, settings, codes) -> None:
        cov, _ = code_posteriors(self._engine, problem, settings, codes)
        cov = cov * rows_per_unit(problem)  # each unit's rows count once
        if keys is None:
            self.code_covariance_ = cov[0]
            self.code_covariances_ = {}
        else:
            self.code_covariance_ = np.asarray(self._prior.covariance, np.float64)
            self.code_covariances_ = dict(zip(keys, cov))

    def _run(self, problem, init, settings, *, validation=None, state=None):
        """Fit the code table, in shards over ``n_jobs`` workers when there are many groups."""
        return fit_sharded(self._spec, problem, init, settings, validation=validation,
                           state=state, seed=check_random_state(self.random_state).randint(2**31),
                           report=self._report if self.verbose else None, n_jobs=self.n_jobs)

    @staticmethod
    def _has_unlabelled(target) -> bool:
        return False

    def _weigh(self, weight, target, group_idx):
        """Row weights of the fit: ``sample_weight`` (classifiers add class weights)."""
        return weight

    def _store(self, keys, result, incremental):
        self._table.store(keys, result.codes, result.state)
        self.codes_ = dict(self._table.groups)
        self.code_ = self._table.tied(self._prior.mean)
        best = result.best_loss[np.isfinite(result.best_loss)]
        self.best_loss_ = float(best.mean()) if best.size else float("nan")
        if incremental:
            self.loss_curve_ = [*getattr(self, "loss_curve_", []), *result.loss_curve]
            self.n_iter_ = getattr(self, "n_iter_", 0) + result.n_iter
        else:
            self.loss_curve_ = list(result.loss_curve)
            self.n_iter_ = result.n_iter
        self._warn(result, incremental)

    def _warn(self, result, incremental):
        if result.diverged is not None and result.diverged.any():
            warn_caller(
                f"The objective became NaN or infinite for {int(result.diverged.sum())} "
                "code(s) (learning_rate too large?); kept the best finite code.",
                RuntimeWarning,
            )
        if result.interrupted:
            warn_caller("Adaptation interrupted by user; kept the best code so far.",
                        UserWarning)
        elif not incremental and not result.converged and self.tol > 0:
            warn_caller(_not_converged(self.optimizer, self.max_iter, self.tol),
                        ConvergenceWarning)

    def _report(self, iteration, loss, best):
        print(f"Iteration {iteration}, loss = {loss:.6f}, best = {best:.6f}", flush=True)

    # -- export ----------------------------------------------------------------
    def to_keras(self, group=None, *, all_groups: bool = False) -> keras.Model:
        """A plain Keras model with the learned code built in, for serving.

        The new model takes the model's feature inputs only (same names, shapes and
        dtypes, in order, without the code input) and feeds the code input from a
        frozen ``Embedding`` holding the code, so its ``predict`` gives what this
        adapter's ``predict_proba`` (classifier) or ``predict`` (regressor) gives.
        With ``all_groups=True`` it also takes the condition, as an index into the
        codes of all groups.

        Parameters
        ----------
        group : hashable, default=None
            The group whose code to build in, after a fit with ``groups``. ``None``:
            ``code_`` (the tied code; after a fit with groups, the code that
            ``predict`` uses for groups not seen in fit).
        all_groups : bool, default=False
            Build in the codes of all groups. The model then has one more input,
            ``"group"`` (int32, shape ``(None,)``): row ``i`` of ``list(codes_)`` is
            the code of index ``i``, and any other index (use -1 for a condition not
            seen in fit) gets ``code_``, as in ``predict(X, groups=...)``.

        Returns
        -------
        model : keras.Model
            A new model. Its outputs: class probabilities, shape ``(n, n_classes)``,
            columns in the order of ``classes_`` (a softmax output as it is, logits
            through a ``Softmax`` layer, one sigmoid unit ``p`` as ``[1 - p, p]``);
            for a regressor the model's outputs, shape ``(n, n_outputs)`` (also for one
            target, where ``predict`` returns shape ``(n,)``).

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ValueError
            For a ``group`` not seen in fit, a ``group`` after a fit without groups,
            ``all_groups=True`` after a fit without groups, or both arguments.

        Notes
        -----
        The model is cloned and its weights *copied*: the export shares no variables
        with ``model``, which is never modified, and later changes to either do not
        reach the other. The copied layers keep the model's ``trainable`` flags; the
        codes sit in a non-trainable ``Embedding`` (``"condition_code"``, or
        ``"condition_codes"`` with the fallback code as its last row). The export is
        built of built-in Keras layers and ``keras.ops`` only, so
        ``keras.saving.load_model(path)`` loads its ``.keras`` file with the default
        ``safe_mode=True`` and without importing skdc (custom layers of ``model``
        itself need what they always need). On TensorFlow, ``exported.export(path)``
        writes a SavedModel for TensorFlow Serving, whose ``serving_default``
        signature takes the inputs by name.

        Examples
        --------
        >>> import keras, numpy as np
        >>> from skdc import CodeAdapter
        >>> x = keras.Input((3,), name="features"); z = keras.Input((2,), name="code")
        >>> h = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([x, z]))
        >>> model = keras.Model([x, z], keras.layers.Dense(2, activation="softmax")(h))
        >>> X = np.random.default_rng(0).normal(size=(20, 3)); y = (X[:, 0] > 0).astype(int)
        >>> adapter = CodeAdapter(model, max_iter=20, random_state=0).fit(X, y)
        >>> exported = adapter.to_keras()
        >>> [t.name for t in exported.inputs]
        ['features']
        >>> bool(np.allclose(exported.predict(X, verbose=0), adapter.predict_proba(X),
        ...                  atol=1e-6))
        True
        >>> exported.save("adapted.keras")  # doctest: +SKIP
        >>> keras.saving.load_model("adapted.keras")  # safe_mode=True  # doctest: +SKIP
        """
        check_is_fitted(self)
        engine = self._get_engine()  # rebuilds the task of an unpickled adapter
        return export_codes(self.model, engine.graph.code_index, self.code_, self.codes_,
                            group, all_groups, head=self._task.keras_convert)

    # -- validation of inputs --------------------------------------------------
    def _check_X(self, X, reset: bool):
        expected = self._engine.graph.n_features
        rows = as_rows(X, self._engine.graph)
        if self._engine.graph.any_length and not reset:  # not fit's length alone
            return check_array(rows, dtype=[np.float32, np.float64])
        X = validate_data(self, rows, reset=reset, dtype=[np.float32, np.float64])
        if expected is not None and X.shape[1] != expected:
            raise ValueError(
                f"X has {X.shape[1]} features, but the model's feature inputs take {expected}."
            )
        return X

    @staticmethod
    def _encode_groups(groups, n_rows):
        if groups is None:  # the tied code
            return None, np.zeros(n_rows, dtype=np.int32)
        return encode_groups(groups, n_rows)

    def _code_rows(self, groups, n_rows):
        """Code table and row indices for prediction."""
        keys, idx = self._encode_groups(groups, n_rows)
        if keys is None:
            return self.code_[None], idx
        table = np.stack([self.codes_.get(k, self.code_) for k in keys])
        return table, idx

    def _predictions(self, X, groups):
        """The task's predictions (probabilities, targets): with the codes, or averaged
        over draws from their posteriors with ``posterior="laplace"``."""
        check_is_fitted(self)
        engine = self._get_engine()  # rebuilds the task of an unpickled adapter
        X = self._check_X(X, reset=False)
        table, idx = self._code_rows(groups, len(X))
        if self.posterior is None or not hasattr(self, "code_covariance_"):
            return self._task.convert(engine.predict(X, table, idx))
        keys, _ = self._encode_groups(groups, len(X))
        covs = np.stack([self.code_covariance_] if keys is None else
                        [self.code_covariances_.get(k, self.code_covariance_) for k in keys])
        draws = posterior_draws(table, covs, np.random.default_rng(0))  # same draws each call
        shape = []  # of one row's prediction, seen in the first chunk

        def average(outputs: list) -> np.ndarray:
            converted = [self._task.convert(out) for out in outputs]
            shape[:] = converted[0].shape[1:]
            return np.mean([c.reshape(len(c), -1) for c in converted], axis=0)

        return engine.predict_each(X, draws, idx, average).reshape(len(X), *shape)


def _not_converged(optimizer: str, max_iter: int, tol: float) -> str:
    """The convergence warning, worded for the optimizer that ran."""
    if optimizer == "lbfgs":
        return (f"L-BFGS reached max_iter={max_iter} iterations before converging "
                f"(tol={tol}); kept the best code so far. Increase max_iter, or set tol=0 "
                "to run exactly max_iter iterations.")
    return (f"The {optimizer} optimizer reached max_iter={max_iter} iterations before the "
            f"objective stopped improving by tol={tol}; kept the best code so far. Increase "
            "max_iter or learning_rate, or set tol=0 to run exactly max_iter iterations.")


class CodeAdapter(ClassifierMixin, _BaseCodeAdapter):
    """Adapt a frozen Keras classifier to a new condition by learning its code.

    The model takes features and a condition code (Xue et al., 2014). Every
    weight stays frozen; only the code ``z`` is learned, by gradient descent on
    the cross-entropy of the adaptation rows plus a Gaussian prior that keeps
    ``z`` near its initial value (MAP adaptation). All rows share one *tied* code
    whose gradient sums over the rows; with ``groups`` each group gets its own
    code, all learned in one vectorized fit whose per-group result equals a
    separate fit of that group.

    Parameters
    ----------
    model : keras.Model
        Trained model with a code input and one or more feature inputs, one
        output: softmax probabilities (``k`` units), a sigmoid probability
        (1 unit, binary), or linear logits. Never modified. ``clone`` shares it;
        pickling stores it as ``.keras`` bytes that load with ``safe_mode=True``.
    code_input : str or int, default="code"
        Name or position of the code input.
    code_init : "zeros", array-like of shape (code_dim,), CodePrior or dict, default="zeros"
        Initial code and centre of the prior. A code (array, list or tuple of
        numbers) has the identity as prior covariance. ``CodePrior(mean,
        covariance)`` (e.g. ``CodeNetwork.code_prior_``, or a dict with exactly the
        keys ``"mean"`` and ``"covariance"``) also sets the covariance, so the
        penalty becomes the Mahalanobis distance. Any other dict maps group labels
        to a code or ``CodePrior`` each: every group of a grouped fit gets its own
        prior (groups not in it, and ``code_``, use the zero code with identity
        covariance).
    shift_prior : ShiftPrior, default=None
        For a model whose code starts with a feature shift (``input_shift``): each
        group's shift part is set to the shift estimated in closed form from its
        labelled rows (:class:`~skdc.ShiftPrior`: class residuals, shrunk toward
        zero, one recording counted once with ``units``) and held there, and only the
        rest of the code is learned: codes on top of the shift. A
        :class:`~skdc.CodeNetwork` fitted with ``shift_estimate="empirical_bayes"``
        passes its ``shift_prior_`` through ``adapter()``. Rows without a label
        inform the shift too, by their offset from the training rows' mean (each
        unit counted as the prior's ``unlabelled_weight`` of a labelled one): fitted
        on a new group's unlabelled rows alone, the adapter removes that group's
        estimated shift, as a per-speaker mean normalisation would, before its
        code is learned unsupervised. A group without rows in ``fit`` gets a zero
        shift.
    optimizer : {"adam", "sgd", "gd", "rms_sgd", "lbfgs"}, default="adam"
        ``"adam"`` needs no tuning of the gradient's scale; ``"sgd"`` uses
        momentum 0.9; ``"gd"`` is plain gradient descent in the prior's whitened
        coordinates, the inner procedure of an episodically trained
        :class:`~skdc.CodeNetwork` (its ``adapter()`` sets it up); ``"rms_sgd"``
        divides the gradient by its RMS (the original Keras recipe, kept for
        comparison); ``"lbfgs"`` (scipy's
        L-BFGS-B) converges in the fewest steps for the low-dimensional code.
    learning_rate : float, default=0.05
        Step size of the first-order optimizers. Codes live on the unit scale of
        the prior, so 0.05 moves a code by about one standard deviation in 20
        Adam steps.
    max_iter : int, default=200
        Maximum number of iterations (full-batch steps, or epochs with
        ``batch_size``; L-BFGS iterations).
    alpha : float, default=1.0
        Strength of the Gaussian prior. ``alpha=1`` is MAP estimation under the
        prior: the penalty counts like one row's worth of evidence per unit of
        squared Mahalanobis distance, and fades as a condition brings more rows.
        ``alpha=0`` is maximum likelihood. ``"evidence"``: chosen to maximise the
        Laplace evidence of the groups being fitted, by MacKay's fixed point
        (``alpha_ = gamma / sum_g |u_g|^2`` over the whitened codes ``u_g``, ``gamma``
        their well-determined entries): one update per refit, each refit from the
        previous codes, until the update changes ``alpha_`` by less than 1% (at most 10
        refits; 5-11 on typical data), within [1e-4, 1e4]; with many groups the prior
        strength is then learned from them. With ``units``, the rows of a unit count
        once in the evidence and the posterior (their likelihood tempered by ``r``, the
        rows per unit): ``alpha_`` is ``r`` times the per-unit strength, as fixed
        strengths for frames are. Needs ``fit`` (not ``partial_fit``).
    posterior : {None, "laplace"}, default=None
        ``"laplace"``: after fit, each code's posterior is the Gaussian at its MAP
        estimate with the objective's Hessian as precision (``code_covariance_``,
        ``code_covariances_``; central differences of the gradient, ``2 d`` passes
        over the rows), and predictions average over 32 codes drawn from it (the
        same draws at every call); rows of groups not seen in fit draw from the
        prior. Where a code from one or two utterances would over-commit, the
        average stays cautious. With ``units``, a unit's rows count once (the
        covariance of a unit's ``r`` rows is ``r`` times that of ``r`` independent
        rows). Needs ``fit`` (not ``partial_fit``).
    tol : float, default=1e-4
        Stop a code when its objective has not improved by ``tol`` for
        ``n_iter_no_change`` iterations. ``tol=0.0`` runs exactly ``max_iter``
        iterations.
    n_iter_no_change : int, default=10
        Patience of the ``tol`` rule.
    batch_size : int, default=None
        ``None`` uses every row each step (codes are low-dimensional; the feature
        part of the model is then evaluated once per fit). With an int, each
        iteration is one epoch of shuffled mini-batches, for adaptation sets too
        large for memory.
    jit_compile : bool or "auto", default="auto"
        TensorFlow only: run the adaptation step compiled with XLA, rows padded to
        shape buckets (4 per octave) so that few shapes compile. XLA makes a step
        about a third faster but compiles once per bucket (a few seconds for a large
        model); ``"auto"`` uses it from 1,024 rows, where long fits repay the
        compilation. Set ``False`` when fitting many different large row counts only
        a few iterations each; ``True`` for long fits of fewer rows. No effect on
        the other backends: JAX always compiles with XLA (rows padded to the same
        buckets), PyTorch runs eagerly.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of each group's rows (at least one of a
        group with two or more rows of positive weight, and at least one stays in
        training) and keep, per group, the code with the best held-out objective;
        a group stops when that has not improved by ``tol`` for
        ``n_iter_no_change`` iterations. Groups too small to hold a row out are
        scored on their training rows. Ignored with ``"lbfgs"``.
    validation_fraction : float, default=0.1
        Held-out share for ``early_stopping``.
    warm_start : bool, default=False
        Continue from the codes of the previous fit.
    random_state : int, RandomState instance or None, default=None
        Seeds the validation split and mini-batch order; fits are deterministic
        on CPU for a fixed seed.
    n_jobs : int, default=None
        With ``groups``, split the groups into shards fitted in parallel with
        :class:`joblib.Parallel`, so any joblib backend works (e.g.
        ``dask.distributed`` on a cluster, inside ``joblib.parallel_backend("dask")``).
        Each group's code is the same as in a single-process fit (full-batch
        first-order optimizers; L-BFGS optimises each shard jointly, reaching the
        same optimum). ``None`` means 1 unless in a joblib backend context.
    verbose : int, default=0
        ``0`` prints nothing; ``1`` prints each iteration's loss and the best.
    classes : array-like of shape (n_outputs,), default=None
        Label of each output unit of the model, in order (any label type).
        Default: ``0 .. n_outputs - 1`` (``[0, 1]`` for one sigmoid unit).
    diversity : float, default=1.0
        Weight of the diversity term in unsupervised adaptation (see Notes).
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplying ``sample_weight``, as in scikit-learn's
        classifiers. A dict maps class labels (of ``classes_``) to weights; classes
        not in it weigh 1. ``"balanced"`` weighs each group's labelled rows inversely
        to their class frequencies within the group: a row of class ``c`` weighs
        ``W / (k * W_c)``, ``W_c`` the sample weight of the group's rows of class ``c``,
        ``W`` their total and ``k`` the number of classes present (scikit-learn's
        ``compute_class_weight("balanced", ..., sample_weight=...)`` per group). It
        leaves each group's total weight, and so the strength of the prior, as it is.
        Unlabelled rows keep their weight. ``partial_fit`` refuses ``"balanced"``
        (class frequencies of one call are not those of the stream, as in
        :class:`~sklearn.linear_model.SGDClassifier`); pass a dict.

    Attributes
    ----------
    code_ : ndarray of shape (code_dim,)
        The learned tied code; after a fit with ``groups``, the code used for
        rows of groups not seen in fit (the initial code, i.e. the prior mean).
    codes_ : dict
        Learned code of each group (empty after a fit without ``groups``).
    code_covariance_ : ndarray of shape (code_dim, code_dim)
        With ``posterior="laplace"``: posterior covariance of ``code_`` (after a fit
        with ``groups``, the prior's, for unseen groups).
    code_covariances_ : dict
        With ``posterior="laplace"``: posterior covariance of each group's code.
    alpha_ : float
        With ``alpha="evidence"``: the prior strength reached.
    classes_ : ndarray of shape (n_outputs,)
        Labels of the model's output units.
    loss_curve_ : list of float
        Objective (mean over groups) at each iteration.
    best_loss_ : float
        Best objective reached (mean over groups).
    n_iter_ : int
        Iterations run.
    n_features_in_ : int
        Number of feature columns (of ``X`` flattened to rows). For a model with an
        input of unknown length, ``Input((None, F))``, the width seen in fit:
        predictions take any length.
    code_dim_ : int
        Length of a code.

    Notes
    -----
    **Unsupervised adaptation.** ``fit(X)`` (or ``y`` with ``-1`` marking unlabelled
    rows, as in scikit-learn's semi-supervised estimators) learns each condition's
    code by *information maximisation* (Gomes, Krause & Perona, NIPS 2010): labelled
    rows contribute their cross-entropy, unlabelled rows the entropy of their
    prediction, and each condition subtracts ``diversity`` times the entropy of its
    mean prediction, so the code must make the condition's rows confidently *and*
    diversely classified, plus the prior. With ``units`` (the frames of an
    utterance, say), the prediction made confident is each *unit's*: the
    normalised geometric mean of its rows' probabilities, whose largest class is
    the decision of summed log-probabilities; single frames (silence, transitions)
    may stay uncertain. This needs features that carry the condition (a speaker's
    formants, a room's reverberation): it is what lets a code learn speaker
    normalisation from unlabelled speech. It helps when each condition covers many
    classes; lower ``diversity`` when a condition's classes are few or very
    unbalanced. Plain self-training on first-pass labels is a
    fixed point of the initial code (the labels are what that code predicts) and
    measured worse on our synthetic benchmark, so it is not used.

    See Also
    --------
    CodeAdapterRegressor : The same for models with a linear regression output.
    CodeNetwork : Trains a network with condition codes.

    Examples
    --------
    >>> import keras, numpy as np
    >>> from skdc import CodeAdapter
    >>> x = keras.Input((3,), name="features"); z = keras.Input((2,), name="code")
    >>> h = keras.layers.Dense(8, activation="relu")(keras.layers.Concatenate()([x, z]))
    >>> model = keras.Model([x, z], keras.layers.Dense(2, activation="softmax")(h))
    >>> X = np.random.default_rng(0).normal(size=(20, 3)); y = (X[:, 0] > 0).astype(int)
    >>> adapter = CodeAdapter(model, max_iter=20, random_state=0).fit(X, y)
    >>> adapter.code_.shape
    (2,)
    >>> adapter.predict(X[:2]).shape
    (2,)
    """

    _parameter_constraints: dict = {
        **_BaseCodeAdapter._parameter_constraints,
        "classes": ["array-like", None],
        "diversity": [Interval(Real, 0, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(
        self,
        model,
        *,
        code_input="code",
        code_init="zeros",
        shift_prior=None,
        optimizer="adam",
        learning_rate=0.05,
        max_iter=200,
        alpha=1.0,
        posterior=None,
        tol=1e-4,
        n_iter_no_change=10,
        batch_size=None,
        jit_compile="auto",
        early_stopping=False,
        validation_fraction=0.1,
        warm_start=False,
        random_state=None,
        n_jobs=None,
        verbose=0,
        classes=None,
        diversity=1.0,
        class_weight=None,
    ):
        super().__init__(
            model, code_input=code_input, code_init=code_init, shift_prior=shift_prior,
            optimizer=optimizer,
            learning_rate=learning_rate, max_iter=max_iter, alpha=alpha, posterior=posterior,
            tol=tol,
            n_iter_no_change=n_iter_no_change, batch_size=batch_size, jit_compile=jit_compile,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            warm_start=warm_start, random_state=random_state, n_jobs=n_jobs, verbose=verbose,
        )
        self.classes = classes
        self.diversity = diversity
        self.class_weight = class_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False  # fit(X) adapts without labels
        # only the code is learned: a given model scores poorly on an arbitrary dataset
        # (scikit-learn's checks then skip their accuracy thresholds)
        tags.classifier_tags.poor_score = True
        return tags

    def _make_task(self, model) -> Classification:
        task = Classification.from_output(output_activation(model), output_units(model),
                                          self.classes)
        self.classes_ = task.classes
        return task

    @staticmethod
    def _has_unlabelled(target) -> bool:
        return bool(np.any(target < 0))

    def _encode_targets(self, y, n_rows):
        return self._task.encode(y, n_rows, unlabelled=True)

    def _weigh(self, weight, target, group_idx):
        return self._task.weigh(weight, target, group_idx, self.class_weight)

    def fit(self, X, y=None, groups=None, sample_weight=None, units=None):
        return self._fit_anew(X, y, groups, sample_weight, units)

    fit.__doc__ = _FIT_DOC.format(
        y="array-like of shape (n_samples,), default=None\n            Class labels; "
          "``None`` or ``-1`` marks unlabelled rows: unsupervised\n            "
          "(semi-supervised) adaptation, see Notes.",
        units="""
        units : array-like of shape (n_samples,), default=None
            Unit of each row, e.g. the utterance of a frame: unlabelled rows of one
            unit are taken to share one class, and the unit's prediction (the
            normalised geometric mean of its rows' probabilities) is what
            unsupervised adaptation makes confident (see Notes). Units are kept
            apart per group. Default: every row is its own unit. Labelled rows are
            not affected.""")

    def partial_fit(self, X, y=None, groups=None, sample_weight=None, classes=None,
                    units=None):
        if classes is not None and hasattr(self, "classes_"):
            self._encode_targets(np.asarray(classes), len(classes))
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported by partial_fit: the class "
                "frequencies of one call are not those of the whole stream. Pass a dict "
                "of class weights, e.g. from sklearn.utils.class_weight.compute_class_weight "
                "on a large enough sample of labels."
            )
        return self._partial_fit(X, y, groups, sample_weight, units)

    partial_fit.__doc__ = _PARTIAL_FIT_DOC.format(more="""
        ``classes`` is accepted for scikit-learn compatibility: the classes always
        come from the model (see ``classes``), and labels outside them are refused.
        ``class_weight="balanced"`` is refused (a dict applies). ``units`` is as in
        ``fit``, within this call's rows (a unit does not span calls).""")

    def predict_proba(self, X, groups=None) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``.

        Rows of a group seen in ``fit`` use its code; other rows use ``code_``.
        """
        return self._predictions(X, groups)

    def predict_log_proba(self, X, groups=None) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`."""
        return np.log(np.clip(self.predict_proba(X, groups), 1e-300, None))

    def predict(self, X, groups=None) -> np.ndarray:
        """Most probable label of each row (see :meth:`predict_proba`)."""
        proba = self.predict_proba(X, groups)
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X, y, groups=None, sample_weight=None) -> float:
        """Accuracy of :meth:`predict` on ``X, y``."""
        return float(accuracy_score(y, self.predict(X, groups), sample_weight=sample_weight))


class CodeAdapterRegressor(RegressorMixin, _BaseCodeAdapter):
    """Adapt a frozen Keras regressor to a new condition by learning its code.

    The regression twin of :class:`CodeAdapter` (same parameters, minus the
    classification ones): the model's output is linear, the loss is the mean
    squared error, and :meth:`score` is R².

    Examples
    --------
    >>> import keras, numpy as np
    >>> from skdc import CodeAdapterRegressor
    >>> x = keras.Input((3,), name="features"); z = keras.Input((2,), name="code")
    >>> h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([x, z]))
    >>> model = keras.Model([x, z], keras.layers.Dense(1)(h))
    >>> X = np.random.default_rng(0).normal(size=(20, 3)); y = X[:, 0]
    >>> CodeAdapterRegressor(model, max_iter=20).fit(X, y).predict(X[:2]).shape
    (2,)
    """

    @staticmethod
    def _make_task(model) -> Regression:
        if output_activation(model) != "linear":
            raise ValueError(
                "The model ends in a softmax/sigmoid activation; use CodeAdapter for "
                "classifiers. CodeAdapterRegressor needs a linear output."
            )
        return Regression.from_output("linear", output_units(model))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # one target column per model output
        return tags

    def _encode_targets(self, y, n_rows):
        if y is None:
            raise ValueError(
                "CodeAdapterRegressor requires y to be passed, but the target y is None "
                "(unsupervised adaptation is only available for classifiers: CodeAdapter)."
            )
        return self._task.encode(y, n_rows)

    def predict(self, X, groups=None) -> np.ndarray:
        """Model output for each row (rows of unseen groups use ``code_``); with
        ``posterior="laplace"``, its mean over the codes' posterior."""
        return self._predictions(X, groups)

    def score(self, X, y, groups=None, sample_weight=None) -> float:
        """R² of :meth:`predict` on ``X, y``."""
        return float(r2_score(y, self.predict(X, groups), sample_weight=sample_weight))

