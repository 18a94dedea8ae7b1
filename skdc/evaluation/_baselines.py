"""The adaptation methods compared by :func:`skdc.evaluation.evaluate`.

Every method sees the same fold (training conditions), the same networks and, for a
held-out condition, the same ``k`` labelled rows; it predicts the condition's other
rows. ``grid`` lists the candidates of its one hyperparameter, from the strongest
prior to the weakest, which nested validation chooses from (see ``_protocol``);
``default`` is used without tuning.
"""

from __future__ import annotations

import warnings

import keras
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .._prior import CodePrior
from ._fold import CODE_REGULARISATION, Episode, FoldContext, lobanov

__all__ = ["METHODS", "Method", "get_method"]


class Method:
    """An adaptation method: ``log_proba(ctx, episode, param)`` of the scored rows.

    Columns follow ``ctx.classes`` (the training classes of the fold).
    """

    name = ""
    transductive = False  # uses the held-out condition's unlabelled rows
    grid: tuple = ()
    default = None
    description = ""

    def log_proba(self, ctx: FoldContext, ep: Episode, param) -> np.ndarray:
        raise NotImplementedError


def _log(proba) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, np.float64), 1e-30, None))


def _network_log_proba(model, X) -> np.ndarray:
    # a direct call: Keras' predict() retraces for every new model and input size
    X = np.asarray(X, np.float32)
    out = [keras.ops.convert_to_numpy(model(X[i : i + _CHUNK], training=False))
           for i in range(0, len(X), _CHUNK)]
    return _log(np.concatenate(out) if out else np.empty((0, model.outputs[0].shape[-1])))


_CHUNK = 16384


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

    def log_proba(self, ctx, ep, param):
        mu, ratio = ctx.shift_prior
        index, known = ctx.label_index(ep.y_adapt)
        if not known.any():
            return SI().log_proba(ctx, ep, param)
        resid = np.zeros((ep.n_groups, ep.X_score.shape[1]))
        np.add.at(resid, ep.g_adapt[known], ep.X_adapt[known] - mu[index[known]])
        counts = np.bincount(ep.g_adapt[known], minlength=ep.n_groups)[:, None]
        shift = resid / (counts + ratio)
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


def _pairs(alphas) -> tuple:
    """Candidates (training-code regularisation, prior strength alpha)."""
    return tuple((r, a) for r in CODE_REGULARISATION for a in alphas)


class Codes(Method):
    name = "codes"
    grid = _pairs((4.0, 2.0, 1.0, 0.5))
    default = ("dropout+l2", 4.0)
    description = ("condition code learned from the k labelled rows (MAP; prior: the code's "
                   "posterior given where those rows lie, from the training codes)")

    def _adapter(self, ctx, param, code_init=None):
        regularisation, alpha = param
        net = ctx.code_network(regularisation)
        # frames of one utterance are not independent evidence: the prior counts per unit
        return net.adapter(
            code_init=net.code_prior_ if code_init is None else code_init,
            optimizer="lbfgs", alpha=alpha * ctx.settings.rows_per_unit,
            max_iter=ctx.settings.adapt_max_iter,
            random_state=ctx.seed,
        )

    def log_proba(self, ctx, ep, param):
        # The likelihood of a few labelled rows barely moves a code (they are mostly well
        # classified already); where they lie does: the prior of each condition's MAP fit
        # is the code's posterior given its rows' feature residuals (CodeGivenShift).
        net = ctx.code_network(param[0])
        link = ctx.code_given_shift(param[0])
        index, known = ctx.label_index(ep.y_adapt)
        out = _log(net.predict_proba(ep.X_score))  # the prior mean code
        for g in np.unique(ep.g_adapt[known]):
            rows, scored = known & (ep.g_adapt == g), ep.g_score == g
            if not scored.any():
                continue
            mean, cov = link.posterior(ep.X_adapt[rows], index[rows],
                                       rows.sum() / ctx.settings.rows_per_unit)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                adapter = self._adapter(ctx, param, CodePrior(mean, cov)).fit(
                    ep.X_adapt[rows], ep.y_adapt[rows]
                )
            out[scored] = _log(adapter.predict_proba(ep.X_score[scored]))
        return out


class CodesUnsupervised(Codes):
    name = "codes_unsup"
    transductive = True
    grid = _pairs((0.3, 0.1, 0.03, 0.01))
    default = ("none", 0.01)
    description = "code from the k labelled rows plus all other rows of the condition unlabelled"

    def log_proba(self, ctx, ep, param):
        _, known = ctx.label_index(ep.y_adapt)
        X = np.concatenate([ep.X_adapt, ep.X_score])
        y = np.concatenate([np.where(known, ep.y_adapt, -1), np.full(len(ep.X_score), -1)])
        g = np.concatenate([ep.g_adapt, ep.g_score])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            adapter = self._adapter(ctx, param).fit(X, y, groups=g)
        return _log(adapter.predict_proba(ep.X_score, groups=ep.g_score))


class _Parameters(Method):
    mode = ""

    def log_proba(self, ctx, ep, param):
        index, known = ctx.label_index(ep.y_adapt)
        if not known.any():
            return SI().log_proba(ctx, ep, param)
        adapter = ctx.parameter_adapter(self.mode)
        u = adapter.fit(ep.X_adapt[known], index[known], ep.g_adapt[known], ep.n_groups, param,
                        ctx.settings.adapt_max_iter, ctx.settings.rows_per_unit)
        return adapter.predict_log_proba(u, param, ep.X_score, ep.g_score).astype(np.float64)


class LHUC(_Parameters):
    name = "lhuc"
    mode = "lhuc"
    grid = (0.03, 0.1, 0.3, 1.0)
    default = 0.03
    description = "hidden-unit amplitudes 2*sigmoid(r) of the SI network, Gaussian prior on r"


class FinetuneLast(_Parameters):
    name = "finetune_last"
    mode = "finetune_last"
    grid = (0.003, 0.01, 0.03, 0.1, 0.3)
    default = 0.003
    description = "output layer of the SI network, Gaussian prior around the SI weights"


class FinetuneAll(_Parameters):
    name = "finetune_all"
    mode = "finetune_all"
    grid = (0.003, 0.01, 0.03, 0.1, 0.3)
    default = 0.003
    description = "every layer of the SI network, Gaussian prior around the SI weights"


METHODS: dict[str, Method] = {
    m.name: m
    for m in (Codes(), CodesUnsupervised(), SI(), Shift(), Lobanov(), LHUC(), FinetuneLast(),
              FinetuneAll())
}


def get_method(name: str) -> Method:
    """The method called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; choose from {', '.join(METHODS)}"
        ) from None
