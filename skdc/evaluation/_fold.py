"""What one outer (or inner) fold trains once and every method shares."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, replace
from functools import cached_property

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._feature_shift import ShiftPrior, class_residuals, condition_shifts
from .._method_names import CODE_STARTS
from .._network import CodeNetwork
from .._retrofit import add_condition_codes
from .._training import Architecture, Schedule, si_twin
from ._finetune import ParameterAdapter

__all__ = [
    "AUTO_CODE_STARTS",
    "CODE_REGULARISATION",
    "CODE_STARTS",
    "CodeGivenShift",
    "FoldContext",
    "Settings",
    "lobanov",
]

_MIN_STD = 1e-3  # floor of a condition's per-feature spread in Lobanov normalisation


# How strongly the training codes are regularised: ``code_dropout`` (a share of rows
# sees the mean code, so the prior mean is a good speaker-independent model) and
# ``code_l2``. Chosen per fold and method by nested validation.
CODE_REGULARISATION = {
    "none": dict(code_dropout=0.0, code_l2=1e-3),
    "dropout": dict(code_dropout=0.3, code_l2=1e-3),
    "l2": dict(code_dropout=0.0, code_l2=0.1),
    "dropout+l2": dict(code_dropout=0.3, code_l2=0.1),
}


# Where a fold's coded networks start: their own random weights, or the fold's trained
# SI twin retrofitted with zero B_l (a zero code is then the SI network) and trained on
# with every weight ("si") or with only the B_l and codes ("frozen_si", the twin's
# weights fixed, as Abdel-Hamid & Jiang 2013 keep the SI network), or the twin trained
# on shift-normalised conditions, frozen, its codes learned and adapted on features
# with each condition's feature shift removed ("shift_sat": codes on top of the shift).
# The names are in CODE_STARTS. evaluate(code_start="auto"): nested validation chooses,
# per fold and k, between codes from scratch and codes on top of the shift.
AUTO_CODE_STARTS = ("scratch", "shift_sat")


@dataclass
class Settings:
    """Network and adaptation settings shared by every method (see ``evaluate``)."""

    hidden_layer_sizes: tuple = (64, 64)
    code_size: int = 8
    code_layers: str = "all"
    input_shift: int | None = None  # shift entries of the codes (CodeNetwork's input_shift)
    shift_estimate: str = "learned"  # how the shift part is found (CodeNetwork's)
    shift_covariance: str = "diag"  # of the shift's empirical-Bayes prior (ShiftPrior's)
    prior_shrinkage: float | str = 1e-3  # of the codes' prior covariance
    training: str = "joint"  # of the coded networks (CodeNetwork's training)
    code_start: str = "scratch"  # where the coded networks start (see CODE_STARTS)
    posterior: str | None = None  # of the adapted codes (CodeAdapter's posterior)
    alpha: float = 1e-5
    learning_rate_init: float = 1e-3
    batch_size: int = 200
    max_epochs: int = 200
    adapt_max_iter: int = 100
    adapt_tol: float = 1e-5  # L-BFGS' ftol and gtol, the same for every adaptive method
    rows_per_unit: float = 1.0  # rows of one independent unit: the weight of a prior

    def architecture(self) -> Architecture:
        return Architecture(hidden_layer_sizes=self.hidden_layer_sizes, alpha=self.alpha)

    def schedule(self) -> Schedule:
        return Schedule(learning_rate_init=self.learning_rate_init,
                        batch_size=self.batch_size, max_iter=self.max_epochs)

    def network(self, random_state: int) -> CodeNetwork:
        """The coded network: :meth:`architecture` and :meth:`schedule` with codes."""
        return CodeNetwork(**asdict(self.architecture()), **asdict(self.schedule()),
                           code_size=self.code_size, code_layers=self.code_layers,
                           input_shift=self.input_shift, shift_estimate=self.shift_estimate,
                           shift_covariance=self.shift_covariance,
                           prior_shrinkage=self.prior_shrinkage, training=self.training,
                           random_state=random_state)

    def twin(self, X, y, groups, random_state: int):
        """The twin of ``network(random_state)`` without codes (same initial weights,
        split and shuffling), trained on ``X, y``."""
        return si_twin(X, y, groups, architecture=self.architecture(),
                       schedule=self.schedule(), random_state=random_state)


class FoldContext:
    """Training data of a fold (standardised features) and its lazily trained networks.

    The coded network, its twin without codes (for ``si``, ``shift``, ``lhuc`` and
    fine-tuning) and the Lobanov network are trained the first time a method asks.
    All three share architecture, initial weights and training procedure (with
    ``settings.code_start`` other than ``"scratch"``, the coded network starts from
    the trained twin).
    """

    def __init__(self, X, y, groups, settings: Settings, seed: int, units=None):
        self.X, self.y, self.groups = X, y, groups
        self.units = units  # unit of each row (e.g. its utterance); None: one per row
        self.settings = settings
        self.seed = int(seed)
        self.classes = np.unique(y)
        self._twins: dict = {}  # the networks without codes, shared by with_code_start

    def with_code_start(self, start: str) -> FoldContext:
        """This fold with its coded networks started as ``start`` says (``CODE_STARTS``);
        the networks without codes (``si_network``, ``shift_network``,
        ``lobanov_network``) are shared, trained once for both."""
        if start == self.settings.code_start:
            return self
        starts = self.__dict__.setdefault("_starts", {})
        if start not in starts:
            other = FoldContext(self.X, self.y, self.groups,
                                replace(self.settings, code_start=start), self.seed, self.units)
            other._twins = self._twins
            starts[start] = other
        return starts[start]

    def _quiet(self, fit):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return fit()

    def code_network(self, regularisation: str, code_size: int | None = None,
                     code_layers=None) -> CodeNetwork:
        """The coded network with one of the ``CODE_REGULARISATION`` settings (cached).

        ``code_size`` and ``code_layers`` replace the settings' for this network only
        (``None``: the settings').
        """
        cache = self.__dict__.setdefault("_code_networks", {})
        key = self._network_key(regularisation, code_size, code_layers)
        if key not in cache:
            _, size, layers = key
            net = self.settings.network(self.seed).set_params(
                **CODE_REGULARISATION[regularisation], code_size=size, code_layers=layers,
                **self._start(size, layers),
            )
            X = self.X
            if self.settings.code_start == "shift_sat":
                X = X - self.training_shifts[self.conditions[1]]
            cache[key] = self._quiet(lambda: net.fit(X, self.y, groups=self.groups,
                                                     units=self.units))
        return cache[key]

    def _start(self, code_size: int, code_layers) -> dict:
        """``CodeNetwork`` parameters that start a coded network where
        ``settings.code_start`` says (``CODE_STARTS``)."""
        start = self.settings.code_start
        if start == "scratch":
            return {}
        if start == "frozen_si":  # fit retrofits it, frozen, and learns the shift part too
            return {"base_model": self.si_network}
        if start == "shift_sat":
            return {"base_model": self.shift_network}
        layers = code_layers if isinstance(code_layers, str) else list(code_layers)
        coded = add_condition_codes(self.si_network, code_size, layers)
        for layer in coded.layers:  # the retrofit froze the SI layers: "si" trains them on
            layer.trainable = True
        return {"base_model": coded}

    def _network_key(self, regularisation: str, code_size=None, code_layers=None) -> tuple:
        """``code_network``'s arguments with the settings' values filled in: one network
        (and one cache entry) however they are spelt."""
        size = self.settings.code_size if code_size is None else code_size
        layers = self.settings.code_layers if code_layers is None else code_layers
        return regularisation, int(size), layers if isinstance(layers, str) else tuple(layers)

    def _twin(self, name: str, features):
        """The twin without codes trained on ``features()`` (trained once, by name)."""
        if name not in self._twins:
            X = features()
            self._twins[name] = self._quiet(
                lambda: self.settings.twin(X, self.y, self.groups, self.seed))
        return self._twins[name]

    @property
    def si_network(self):
        return self._twin("si", lambda: self.X)

    @property
    def lobanov_network(self):
        return self._twin("lobanov", lambda: lobanov(self.X, self.groups))

    @property
    def shift_network(self):
        """The twin trained on training conditions with their own shifts removed."""
        return self._twin("shift", lambda: self.X - self.training_shifts[self.conditions[1]])

    @cached_property
    def training_shifts(self) -> np.ndarray:
        """Each training condition's feature shift (posterior mean from all its units)."""
        return self.shift_prior.shifts(self.X, self._label, self.conditions[1],
                                       len(self.conditions[0]), self.units)

    def episode_shifts(self, ep) -> np.ndarray:
        """Each held-out condition's feature shift from its labelled adaptation units
        (posterior mean; zero without any), ``(ep.n_groups, n_features)``."""
        index, known = self.label_index(ep.y_adapt)
        return self.shift_prior.shifts(ep.X_adapt, np.where(known, index, -1), ep.g_adapt,
                                       ep.n_groups, ep.u_adapt)

    @cached_property
    def conditions(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct training conditions, and each training row's index into them."""
        return np.unique(self.groups, return_inverse=True)

    @cached_property
    def _label(self) -> np.ndarray:
        """Each training row's class index into ``classes``."""
        return np.searchsorted(self.classes, self.y)

    @cached_property
    def residuals(self) -> np.ndarray:
        """Every training row's :func:`class_residuals`."""
        return class_residuals(self.X, self._label, self.shift_prior.class_means)

    @cached_property
    def shift_prior(self) -> ShiftPrior:
        """Class means and the shrinkage ``sigma^2 / tau^2`` of a condition's feature
        shift (per feature, or the matrix ``S T^-1`` with ``settings.shift_covariance``
        ``"full"``), estimated on the training conditions' units (:class:`ShiftPrior`)."""
        return ShiftPrior.fit(self.X, self._label, self.conditions[1], self.units,
                              covariance=self.settings.shift_covariance)

    def code_given_shift(self, *network) -> CodeGivenShift:
        """The linear-Gaussian link of the codes of ``code_network(*network)`` to feature
        shifts (cached)."""
        cache = self.__dict__.setdefault("_code_given_shift", {})
        key = self._network_key(*network)
        if key not in cache:
            cache[key] = CodeGivenShift.fit(self, self.code_network(*network))
        return cache[key]

    def parameter_adapter(self, mode: str) -> ParameterAdapter:
        """The (compiled once) LHUC / fine-tuning adapter of the SI network."""
        cache = self.__dict__.setdefault("_parameter_adapters", {})
        if mode not in cache:
            cache[mode] = ParameterAdapter(self.si_network, mode)
        return cache[mode]

    def label_index(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output-unit index of each label, and which labels the networks know."""
        known = np.isin(y, self.classes)
        return np.searchsorted(self.classes, y).clip(0, len(self.classes) - 1), known


class CodeGivenShift:
    """Where a condition's labelled rows lie, as evidence about its code.

    The likelihood ``p(y | x, z)`` of a few (mostly well classified) rows says little
    about a condition; where its rows lie says more (speaker variation of vowels is
    mostly a shift of log formants). Model, fitted on the training conditions: a row
    of class ``c`` has residual ``r = x - mu_c`` (``FoldContext.shift_prior``), and a
    condition's mean residual over ``n`` rows is ``N(A (z - m), S_b + S_w / n)`` with
    ``z ~ N(m, C)`` its code (``code_prior_``), ``A`` the least-squares map of the
    training conditions' codes to their mean residuals, ``S_w`` the within-condition
    and ``S_b`` the unexplained between-condition covariance of residuals. The
    posterior of ``z`` given ``n`` labelled rows is Gaussian, in closed form
    (``posterior``).
    """

    def __init__(self, mu, A, S_w, S_b, mean, cov):
        self.mu, self.A, self.S_w, self.S_b, self.mean, self.cov = mu, A, S_w, S_b, mean, cov

    @classmethod
    def fit(cls, ctx: FoldContext, net: CodeNetwork) -> CodeGivenShift:
        resid = ctx.residuals
        keys, idx = ctx.conditions
        counts = np.bincount(idx).astype(float)
        means = condition_shifts(resid, idx, len(keys))
        mean = np.asarray(net.code_prior_.mean, np.float64)
        cov = np.asarray(net.code_prior_.covariance, np.float64)
        codes = np.stack([net.codes_[key] for key in keys.tolist()]) - mean
        A = np.linalg.lstsq(codes, means, rcond=None)[0].T
        within = resid - means[idx]
        S_w = within.T @ within / max(len(resid) - len(keys), 1)
        unexplained = means - codes @ A.T
        S_b = -S_w * np.mean(1.0 / counts)
        if len(keys) > 1:
            S_b = S_b + np.atleast_2d(np.cov(unexplained, rowvar=False))
        w, V = np.linalg.eigh(S_b)  # keep it positive definite
        S_b = (V * np.maximum(w, 1e-3 * np.trace(S_w) / len(S_w))) @ V.T
        return cls(ctx.shift_prior.class_means, A, S_w, S_b, mean, cov)

    def posterior(self, X, y_index, n_units=None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of a condition's code given its labelled rows.

        ``n_units``: how many independent units the rows are (default: one per row).
        """
        if len(X) == 0:
            return self.mean, self.cov
        resid = class_residuals(X, y_index, self.mu)
        n = len(X) if n_units is None else max(float(n_units), 1.0)
        noise = np.linalg.inv(self.S_b + self.S_w / n)
        precision = np.linalg.inv(self.cov) + self.A.T @ noise @ self.A
        cov = np.linalg.inv(precision)
        cov = (cov + cov.T) / 2
        return self.mean + cov @ self.A.T @ noise @ resid.mean(axis=0), cov


def lobanov(X: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Z-score every condition's rows with their own mean and standard deviation."""
    out = np.empty_like(X, dtype=np.float64)
    for g in np.unique(groups):
        rows = groups == g
        mean = X[rows].mean(axis=0)
        std = np.maximum(X[rows].std(axis=0), _MIN_STD)
        out[rows] = (X[rows] - mean) / std
    return out
