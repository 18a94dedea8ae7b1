"""The optimizers of code adaptation, as small objects (cf. scikit-learn's
``neural_network/_stochastic_optimizers.py``).

Each optimizer says what it is: its update rule (traced into the engine's compiled
step), the names of its per-code state slots, and what it supports. The engine
keeps one table of them, :data:`OPTIMIZERS`; estimators read that table and never
build optimizer state themselves.

All updates act on a table of codes in whitened coordinates, one row per group,
and are row-wise: every group follows the path it would follow alone.
"""

from __future__ import annotations

from keras import ops

__all__ = ["OPTIMIZERS", "Adam", "GradientDescent", "Lbfgs", "Optimizer", "RmsSgd", "Sgd"]


class Optimizer:
    """What every optimizer declares.

    Attributes
    ----------
    name : str
        The ``optimizer=`` spelling.
    slots : tuple of str
        Per-code state, each slot a ``(n_groups, code_dim)`` table.
    first_order : bool
        Driven by the engine's step loop (``update``); otherwise by scipy (L-BFGS).
    supports_partial_fit, supports_early_stopping : bool
        Whether one step at a time, and a held-out stopping rule, make sense.
    """

    name = ""
    slots: tuple[str, ...] = ()
    first_order = True
    supports_partial_fit = True
    supports_early_stopping = True

    def update(self, grad, slots, t, learning_rate):
        """The step ``delta`` and the new slots, given the gradient and step counts ``t``
        (``(n_groups, 1)``, counting this step)."""
        raise NotImplementedError


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction per code."""

    name = "adam"
    slots = ("m", "v")
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-8

    def update(self, grad, slots, t, learning_rate):
        m, v = slots
        m = self.beta_1 * m + (1 - self.beta_1) * grad
        v = self.beta_2 * v + (1 - self.beta_2) * grad * grad
        m_hat = m / (1 - self.beta_1**t)
        v_hat = v / (1 - self.beta_2**t)
        return -learning_rate * m_hat / (ops.sqrt(v_hat) + self.epsilon), (m, v)


class Sgd(Optimizer):
    """Gradient descent with momentum 0.9."""

    name = "sgd"
    slots = ("velocity",)
    momentum = 0.9

    def update(self, grad, slots, t, learning_rate):
        velocity = self.momentum * slots[0] - learning_rate * grad
        return velocity, (velocity,)


class GradientDescent(Optimizer):
    """Plain gradient descent: the inner procedure of episodic training
    (:mod:`skdc._episodic`), which learns its step sizes into the prior's whitening."""

    name = "gd"

    def update(self, grad, slots, t, learning_rate):
        return -learning_rate * grad, ()


class RmsSgd(Optimizer):
    """The gradient divided by its root mean square (the original Keras recipe)."""

    name = "rms_sgd"

    def update(self, grad, slots, t, learning_rate):
        rms = ops.sqrt(ops.mean(grad * grad, axis=1, keepdims=True))
        return -learning_rate * grad / (rms + 1e-5), ()


class Lbfgs(Optimizer):
    """scipy's L-BFGS-B over all codes at once: fewest steps for low-dimensional codes."""

    name = "lbfgs"
    first_order = False
    supports_partial_fit = False
    supports_early_stopping = False


OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o for o in (Adam(), Sgd(), GradientDescent(), RmsSgd(), Lbfgs())}
