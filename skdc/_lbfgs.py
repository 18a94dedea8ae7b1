"""One L-BFGS wrapper for every fit in skdc (codes, LHUC, fine-tuning).

``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` with one tolerance rule,
and Ctrl-C handled the same way everywhere: the best point evaluated so far is
returned, never the starting point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

__all__ = ["LbfgsResult", "minimize_lbfgs"]


@dataclass
class LbfgsResult:
    """Where L-BFGS stopped: the point, iterations run, and how it ended."""

    x: np.ndarray
    n_iter: int
    converged: bool
    interrupted: bool


def minimize_lbfgs(fun, x0: np.ndarray, *, max_iter: int, tol: float,
                   callback=None) -> LbfgsResult:
    """Minimise ``fun(x) -> (value, gradient)`` from ``x0`` (float64, flat).

    ``tol`` is both the relative decrease (``ftol``) and the projected gradient
    (``gtol``) at which L-BFGS stops. ``callback(value)`` runs after every
    iteration. A non-finite value makes the line search back off. On
    ``KeyboardInterrupt`` the best point evaluated so far is returned with
    ``interrupted=True``.
    """
    best = {"value": np.inf, "x": np.asarray(x0, np.float64).copy(), "nit": 0}

    def wrapped(x):
        value, grad = fun(x)
        if not np.isfinite(value):
            return np.inf, np.zeros_like(x)
        if value < best["value"]:
            best["value"], best["x"] = value, x.copy()
        return value, grad

    def on_iteration(intermediate_result):
        best["nit"] += 1
        if callback is not None:
            callback(float(intermediate_result.fun))

    try:
        res = minimize(wrapped, best["x"], jac=True, method="L-BFGS-B", callback=on_iteration,
                       options={"maxiter": int(max_iter), "ftol": tol, "gtol": tol})
    except KeyboardInterrupt:
        return LbfgsResult(best["x"], best["nit"], False, True)
    converged = bool(res.success) and int(res.nit) < int(max_iter)
    return LbfgsResult(np.asarray(res.x), int(res.nit), converged, False)
