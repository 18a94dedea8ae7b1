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

from ._fold import Episode, FoldContext, lobanov

__all__ = ["METHODS", "Method", "get_method"]


class Method:
    """An adaptation method: ``predict(ctx, episode, param)`` -> labels of scored rows."""

    name = ""
    transductive = False  # uses the held-out condition's unlabelled rows
    grid: tuple = ()
    default = None
    description = ""

    def predict(self, ctx: FoldContext, ep: Episode, param) -> np.ndarray:
        raise NotImplementedError


def _si_predict(model, X) -> np.ndarray:
    # a direct call: Keras' predict() retraces for every new model and input size
    return keras.ops.convert_to_numpy(model(np.asarray(X, np.float32), training=False))


class SI(Method):
    name = "si"
    description = "no adaptation: the same network trained without codes"

    def predict(self, ctx, ep, param):
        return ctx.classes[_si_predict(ctx.si_network, ep.X_score).argmax(axis=1)]


class Shift(Method):
    name = "shift"
    description = "feature shift from the k labelled rows (empirical-Bayes shrinkage), SI network"

    def predict(self, ctx, ep, param):
        mu, ratio = ctx.shift_prior
        index, known = ctx.label_index(ep.y_adapt)
        resid = np.zeros((ep.n_groups, ep.X_score.shape[1]))
        np.add.at(resid, ep.g_adapt[known], ep.X_adapt[known] - mu[index[known]])
        counts = np.bincount(ep.g_adapt[known], minlength=ep.n_groups)[:, None]
        shift = resid / (counts + ratio)
        X = ep.X_score - shift[ep.g_score]
        return ctx.classes[_si_predict(ctx.si_network, X).argmax(axis=1)]


class Lobanov(Method):
    name = "lobanov"
    transductive = True
    description = "each condition z-scored with all its rows (unlabelled); transductive ceiling"

    def predict(self, ctx, ep, param):
        X = np.concatenate([ep.X_adapt, ep.X_score])
        g = np.concatenate([ep.g_adapt, ep.g_score])
        Xn = lobanov(X, g)[len(ep.X_adapt) :]
        return ctx.classes[_si_predict(ctx.lobanov_network, Xn).argmax(axis=1)]


class Codes(Method):
    name = "codes"
    grid = (4.0, 2.0, 1.0, 0.5)
    default = 1.0
    description = "condition code learned from the k labelled rows (MAP, prior of training codes)"

    def _adapter(self, ctx, param):
        return ctx.code_network.adapter(
            optimizer="lbfgs", alpha=param, max_iter=ctx.settings.adapt_max_iter,
            random_state=ctx.seed,
        )

    def predict(self, ctx, ep, param):
        net = ctx.code_network
        _, known = ctx.label_index(ep.y_adapt)
        if not known.any():
            return net.predict(ep.X_score)  # prior mean code
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            adapter = self._adapter(ctx, param).fit(
                ep.X_adapt[known], ep.y_adapt[known], groups=ep.g_adapt[known]
            )
        return adapter.predict(ep.X_score, groups=ep.g_score)


class CodesUnsupervised(Codes):
    name = "codes_unsup"
    transductive = True
    description = "code from the k labelled rows plus all other rows of the condition unlabelled"

    def predict(self, ctx, ep, param):
        _, known = ctx.label_index(ep.y_adapt)
        X = np.concatenate([ep.X_adapt, ep.X_score])
        y = np.concatenate([np.where(known, ep.y_adapt, -1), np.full(len(ep.X_score), -1)])
        g = np.concatenate([ep.g_adapt, ep.g_score])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            adapter = self._adapter(ctx, param).fit(X, y, groups=g)
        return adapter.predict(ep.X_score, groups=ep.g_score)


class _Parameters(Method):
    mode = ""

    def predict(self, ctx, ep, param):
        index, known = ctx.label_index(ep.y_adapt)
        if not known.any():
            return SI().predict(ctx, ep, param)
        adapter = ctx.parameter_adapter(self.mode)
        u = adapter.fit(ep.X_adapt[known], index[known], ep.g_adapt[known], ep.n_groups, param,
                        ctx.settings.adapt_max_iter)
        log_p = adapter.predict_log_proba(u, param, ep.X_score, ep.g_score)
        return ctx.classes[log_p.argmax(axis=1)]


class LHUC(_Parameters):
    name = "lhuc"
    mode = "lhuc"
    grid = (0.1, 0.3, 1.0, 3.0)
    default = 1.0
    description = "hidden-unit amplitudes 2*sigmoid(r) of the SI network, Gaussian prior on r"


class FinetuneLast(_Parameters):
    name = "finetune_last"
    mode = "finetune_last"
    grid = (0.01, 0.03, 0.1, 0.3)
    default = 0.1
    description = "output layer of the SI network, Gaussian prior around the SI weights"


class FinetuneAll(_Parameters):
    name = "finetune_all"
    mode = "finetune_all"
    grid = (0.01, 0.03, 0.1, 0.3)
    default = 0.03
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
