"""The adaptation methods compared by :func:`skdc.evaluation.evaluate`.

Every method sees the same fold (training conditions), the same networks and, for a
held-out condition, the same ``k`` labelled rows; it predicts the condition's other
rows. A method has at most one hyperparameter: ``grid`` lists its candidates, from the
strongest prior to the weakest, which nested validation chooses from (``_tuning``);
``default`` is used without tuning; ``check_param`` validates a value given by the user
(``evaluate(method_params=...)``).
"""

from __future__ import annotations

import math
import textwrap
import warnings
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._method_names import METHOD_NAMES
from .._prior import CodePrior
from .._training import predict_in_chunks
from ._episodes import Episode
from ._fold import (
    CODE_REGULARISATION,
    FoldContext,
    lobanov,
)

__all__ = ["METHODS", "Method", "describe_candidates", "get_method", "registry"]


class Method:
    """An adaptation method: ``log_proba(ctx, episode, param)`` of the scored rows.

    Columns follow ``ctx.classes`` (the training classes of the fold).
    """

    name = ""
    transductive = False  # uses the held-out condition's unlabelled rows
    coded = False  # adapts the fold's coded networks (their start: settings.code_start)
    grid: tuple = ()
    default = None
    description = ""
    hyperparameter = ""  # what ``grid`` varies, for the documentation

    def log_proba(self, ctx: FoldContext, ep: Episode, param) -> np.ndarray:
        raise NotImplementedError

    def check_param(self, value):
        """``value`` as this method uses it; ``ValueError`` (the reason) if it is not one."""
        raise ValueError("this method has no hyperparameter")

    def format_param(self, value) -> str:
        return f"``{value!r}``"

    def describe_grid(self) -> str:
        return ", ".join(self.format_param(p) for p in self.grid)


def _positive(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a positive finite number")
    return float(value)


def _number(value: float) -> str:
    return f"{value:g}"


def _log(proba) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, np.float64), 1e-30, None))


def _network_log_proba(model, X) -> np.ndarray:
    return _log(predict_in_chunks(model, np.asarray(X, np.float32)))


class SI(Method):
    name = "si"
    description = "no adaptation: the same network trained without codes"

    def log_proba(self, ctx, ep, param):
        return _network_log_proba(ctx.si_network, ep.X_score)


class Shift(Method):
    name = "shift"
    grid = ("si", "sat")
    default = "sat"
    description = ("feature shift from the k labelled rows (empirical-Bayes shrinkage) on the "
                   "SI network or one trained on shift-normalised conditions")
    hyperparameter = ('the network it feeds: the SI twin (``"si"``) or the twin trained on '
                      'shift-normalised conditions (``"sat"``); its shrinkage is not tuned but '
                      "empirical Bayes (within- over between-condition variance of the "
                      "training conditions' residuals, per unit: the frames of an utterance "
                      "count as one)")

    def check_param(self, value):
        if value not in ("si", "sat"):
            raise ValueError('expected "si" or "sat"')
        return value

    def log_proba(self, ctx, ep, param):
        if not ctx.label_index(ep.y_adapt)[1].any():
            return SI().log_proba(ctx, ep, param)
        shift = ctx.episode_shifts(ep)
        network = ctx.shift_network if param == "sat" else ctx.si_network
        return _network_log_proba(network, ep.X_score - shift[ep.g_score])


class Lobanov(Method):
    name = "lobanov"
    transductive = True
    description = "each condition z-scored with all its rows (unlabelled); transductive ceiling"

    def log_proba(self, ctx, ep, param):
        X = np.concatenate([ep.X_adapt, ep.X_score])
        g = np.concatenate([ep.g_adapt, ep.g_score])
        Xn = lobanov(X, g)[len(ep.X_adapt) :]
        return _network_log_proba(ctx.lobanov_network, Xn)


def _alpha(value) -> str:
    return repr(value) if isinstance(value, str) else _number(value)


def _pairs(alphas) -> tuple:
    """Candidates (training-code regularisation, prior strength alpha)."""
    return tuple((r, a) for r in CODE_REGULARISATION for a in alphas)


def _code_size(value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"code_size must be a positive int, got {value!r}")
    return int(value)


def _code_layers(value):
    if value in ("all", "input"):
        return value
    if (isinstance(value, tuple | list) and value
            and all(isinstance(i, Integral) and not isinstance(i, bool) and i >= 0
                    for i in value)):
        return tuple(int(i) for i in value)
    raise ValueError(f'code_layers must be "all", "input" or a non-empty tuple of hidden-layer '
                     f"indices, got {value!r}")


def _network(param) -> tuple:
    """The ``FoldContext.code_network`` arguments of a codes candidate."""
    return (param[0], *param[2:])


class Codes(Method):
    name = "codes"
    coded = True
    grid = _pairs((4.0, 2.0, 1.0, 0.5, "evidence"))
    # the prior strength maximising the evidence of the conditions adapted together:
    # as good as the fixed 4.0 on raw features, better on normalised Arabic digits (README)
    default = ("dropout+l2", "evidence")
    description = ("condition code learned from the k labelled rows (MAP; prior: the code's "
                   "posterior given where those rows lie, from the training codes)")
    hyperparameter = ("a pair (how the training codes are regularised, prior strength "
                      "``alpha``: a positive number or ``\"evidence\"``, chosen per episode "
                      "by evidence maximisation over the conditions adapted), optionally "
                      "followed by the coded network's own ``code_size`` and ``code_layers`` "
                      "(default: ``evaluate``'s)")

    def check_param(self, value):
        choices = ", ".join(map(repr, CODE_REGULARISATION))
        if not (isinstance(value, tuple) and 2 <= len(value) <= 4
                and isinstance(value[0], str) and value[0] in CODE_REGULARISATION):
            raise ValueError("expected a tuple (regularisation, alpha), (regularisation, "
                             "alpha, code_size) or (regularisation, alpha, code_size, "
                             f"code_layers) with regularisation one of {choices}")
        alpha = value[1] if value[1] == "evidence" else _positive(value[1], "alpha")
        out = (value[0], alpha)
        if len(value) > 2:
            out += (_code_size(value[2]),)
        if len(value) > 3:
            out += (_code_layers(value[3]),)
        return out

    def format_param(self, value) -> str:
        rest = "".join(f", {v!r}" for v in value[2:])
        return f"``({value[0]!r}, {_alpha(value[1])}{rest})``"

    def describe_grid(self) -> str:
        regs = list(dict.fromkeys(r for r, _ in self.grid))
        alphas = list(dict.fromkeys(a for _, a in self.grid))
        if len(self.grid) != len(regs) * len(alphas):
            return super().describe_grid()
        meaning = "; ".join(
            f"``{r!r}``: code dropout {_number(CODE_REGULARISATION[r]['code_dropout'])}, code "
            f"L2 {_number(CODE_REGULARISATION[r]['code_l2'])}" for r in regs)
        return (f"every regularisation ({meaning}) with every ``alpha`` "
                f"({', '.join(map(_alpha, alphas))})")

    def adapter(self, ctx: FoldContext, param, code_init=None):
        """The fold's ``CodeAdapter`` for ``param``: L-BFGS with the shared settings
        (and ``settings.posterior``), or for an episodically trained network its own
        inner procedure (``alpha`` unused)."""
        alpha = param[1]
        net = ctx.code_network(*_network(param))
        if ctx.settings.training == "episodic":  # the inner procedure it was trained for
            return net.adapter(random_state=ctx.seed)
        # frames of one utterance are not independent evidence: the prior counts per unit
        if alpha != "evidence":
            alpha = alpha * ctx.settings.rows_per_unit
        return net.adapter(
            code_init=net.code_prior_ if code_init is None else code_init,
            optimizer="lbfgs", alpha=alpha, posterior=ctx.settings.posterior,
            max_iter=ctx.settings.adapt_max_iter, tol=ctx.settings.adapt_tol,
            random_state=ctx.seed,
        )

    def log_proba(self, ctx, ep, param):
        # The likelihood of a few labelled rows barely moves a code (they are mostly well
        # classified already); where they lie does: the prior of each condition's MAP fit
        # is the code's posterior given its rows' feature residuals (CodeGivenShift) --
        # unless the shift is removed first (code_start="shift_sat").
        ep = _shifted(ctx, ep)
        index, known = ctx.label_index(ep.y_adapt)
        adapted = np.intersect1d(ep.g_adapt[known], ep.g_score)  # rows to fit and to score
        fitted = np.isin(ep.g_score, adapted)
        out = np.empty((len(ep.X_score), len(ctx.classes)))
        if not fitted.all() and _on_shift_normalised(ctx):
            # no labelled rows, no shift to remove: the coded network expects normalised
            # features, so such conditions get si's predictions (as shift does)
            out[~fitted] = _network_log_proba(ctx.si_network, ep.X_score[~fitted])
        elif not fitted.all():  # conditions without labelled rows: the prior mean code
            net = ctx.code_network(*_network(param))
            out[~fitted] = _log(net.predict_proba(ep.X_score[~fitted]))
        if fitted.any():
            rows = known & np.isin(ep.g_adapt, adapted)
            priors = (None if ctx.settings.training == "episodic"
                      or ctx.settings.code_start == "shift_sat"
                      or ctx.settings.shift_estimate == "empirical_bayes" else
                      self._priors(ctx, param, ep, index, rows))
            units = None if ep.u_adapt is None else ep.u_adapt[rows]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                adapter = self.adapter(ctx, param, priors).fit(
                    ep.X_adapt[rows], ep.y_adapt[rows], groups=ep.g_adapt[rows], units=units)
            out[fitted] = _log(adapter.predict_proba(ep.X_score[fitted],
                                                     groups=ep.g_score[fitted]))
        return out

    @staticmethod
    def _priors(ctx, param, ep, index, rows) -> dict[int, CodePrior]:
        """Each condition's prior: its code's posterior given its labelled ``rows``."""
        link = ctx.code_given_shift(*_network(param))
        priors = {}
        for g in np.unique(ep.g_adapt[rows]):
            mine = rows & (ep.g_adapt == g)
            priors[int(g)] = CodePrior(*link.posterior(
                ep.X_adapt[mine], index[mine], mine.sum() / ctx.settings.rows_per_unit))
        return priors


def _on_shift_normalised(ctx: FoldContext) -> bool:
    """Whether the fold's coded networks learned on conditions with their feature shift
    removed (``code_start="shift_sat"`` or an empirical-Bayes shift part)."""
    return (ctx.settings.code_start == "shift_sat"
            or ctx.settings.shift_estimate == "empirical_bayes")


def _shifted(ctx: FoldContext, ep: Episode) -> Episode:
    """``ep`` with every held-out condition's feature shift (from its labelled rows)
    removed when the coded networks learn on shift-normalised conditions, else ``ep``."""
    if ctx.settings.code_start != "shift_sat":
        return ep
    shift = ctx.episode_shifts(ep)
    return replace(ep, X_adapt=ep.X_adapt - shift[ep.g_adapt],
                   X_score=ep.X_score - shift[ep.g_score])


class CodesUnsupervised(Codes):
    name = "codes_unsup"
    transductive = True
    grid = _pairs((0.3, 0.1, 0.03, 0.01))
    default = ("none", 0.01)
    description = ("code from the k labelled rows plus all other rows of the condition "
                   "unlabelled, one prediction per unit")

    def log_proba(self, ctx, ep, param):
        ep = _shifted(ctx, ep)
        _, known = ctx.label_index(ep.y_adapt)
        X = np.concatenate([ep.X_adapt, ep.X_score])
        y = np.concatenate([np.where(known, ep.y_adapt, -1), np.full(len(ep.X_score), -1)])
        g = np.concatenate([ep.g_adapt, ep.g_score])
        units = np.concatenate([ep.u_adapt, ep.u_score])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            adapter = self.adapter(ctx, param).fit(X, y, groups=g, units=units)
        return _log(adapter.predict_proba(ep.X_score, groups=ep.g_score))


class _Parameters(Method):
    mode = ""

    def check_param(self, value):
        return _positive(value, "the prior standard deviation")

    def format_param(self, value) -> str:
        return _number(value)

    def log_proba(self, ctx, ep, param):
        index, known = ctx.label_index(ep.y_adapt)
        if not known.any():
            return SI().log_proba(ctx, ep, param)
        adapter = ctx.parameter_adapter(self.mode)
        s = ctx.settings
        u = adapter.fit(ep.X_adapt[known], index[known], ep.g_adapt[known], ep.n_groups, param,
                        s.adapt_max_iter, s.rows_per_unit, tol=s.adapt_tol)
        return adapter.predict_log_proba(u, param, ep.X_score, ep.g_score).astype(np.float64)


class LHUC(_Parameters):
    name = "lhuc"
    mode = "lhuc"
    grid = (0.03, 0.1, 0.3, 1.0)
    default = 0.03
    description = "hidden-unit amplitudes 2*sigmoid(r) of the SI network, Gaussian prior on r"
    hyperparameter = "prior standard deviation of the amplitude logits ``r``"


class FinetuneLast(_Parameters):
    name = "finetune_last"
    mode = "finetune_last"
    grid = (0.003, 0.01, 0.03, 0.1, 0.3)
    default = 0.003
    description = "output layer of the SI network, Gaussian prior around the SI weights"
    hyperparameter = "prior standard deviation of the weight changes"


class FinetuneAll(FinetuneLast):
    name = "finetune_all"
    mode = "finetune_all"
    description = "every layer of the SI network, Gaussian prior around the SI weights"


def registry(names, implementations) -> dict[str, Method]:
    """One instance of every implementation, keyed and ordered by ``names``.

    ``ImportError`` when a name has no implementation or an implementation no name:
    the names are the Keras-free list the command line offers, so the two cannot drift.
    """
    by_name = {cls.name: cls for cls in implementations}
    missing = [name for name in names if name not in by_name]
    unnamed = [name for name in by_name if name not in names]
    if missing or unnamed:
        raise ImportError(f"method names without an implementation: {missing}; "
                          f"implementations without a name: {unnamed}.")
    return {name: by_name[name]() for name in names}


METHODS: dict[str, Method] = registry(
    METHOD_NAMES,
    (Codes, CodesUnsupervised, SI, Shift, Lobanov, LHUC, FinetuneLast, FinetuneAll),
)


def get_method(name: str) -> Method:
    """The method called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; choose from {', '.join(METHODS)}"
        ) from None


def describe_candidates() -> str:
    """Bullet list (reST) of every method's candidates and default, from ``METHODS``."""
    items = [f"``{m.name}``: {m.hyperparameter}. Candidates: {m.describe_grid()}. Default: "
             f"{m.format_param(m.default)}." for m in METHODS.values() if m.grid]
    untuned = [f"``{m.name}``" for m in METHODS.values() if not m.grid]
    if untuned:
        items.append(f"{' and '.join(untuned)}: nothing to tune.")
    return "\n".join(textwrap.fill(item, width=88, initial_indent="* ", subsequent_indent="  ",
                                    break_on_hyphens=False, break_long_words=False)
                      for item in items)
