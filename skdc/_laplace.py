"""A Laplace posterior over each condition's code, and the prior strength it implies.

A code has a few dozen entries at most, so the Hessian of a condition's objective at
its MAP code is cheap: ``2 d`` gradients of the whole code table, by central
differences (the groups are independent, so one perturbed table gives one column of
every group's Hessian at once), on every backend without second-order autodiff. In
the whitened coordinates ``u`` of the engine (``z = m + u U``, ``U^T U`` the prior
covariance), a condition with total row weight ``N`` has the negative log posterior
``N f(u) = sum_i w_i loss_i + alpha / 2 |u|^2``, so its posterior precision is
``N`` times the Hessian of ``f``.

With a code's posterior ``N(z_MAP, S)``, predictions average over it (where a MAP
code from one utterance over-commits), and the prior strength ``alpha`` maximises
the evidence of the conditions being fitted by MacKay's fixed point (MacKay 1992;
Bayesian LHUC, Xie et al. 2019, reports its gain at one utterance).
"""

from __future__ import annotations

import numpy as np

from ._engine import Engine, Problem, Settings, whitening

__all__ = ["DRAWS", "code_posteriors", "evidence_alpha", "posterior_draws",
           "rows_per_unit", "whitened"]

#: Codes drawn from each posterior to average a prediction over.
DRAWS = 32
_STEP = 1e-3  # central-difference step in whitened units (the prior's scale is 1)
# bounds of MacKay's update: past them the float32 loss overflows, or the prior vanishes
_MIN_ALPHA, _MAX_ALPHA = 1e-4, 1e4


def code_posteriors(engine: Engine, problem: Problem, settings: Settings,
                    codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each group's posterior covariance of its code at ``codes`` ``(n_groups, d)``,
    ``(n_groups, d, d)``, and of its whitened code ``u``, the same shape."""
    factor = whitening(problem.prior_mean, problem.prior_covariance)
    u = whitened(problem, codes)
    batch = engine.batch(problem, settings)
    n_groups, d = u.shape
    hessian = np.empty((n_groups, d, d))
    for i in range(d):
        step = np.zeros_like(u)
        step[:, i] = _STEP
        _, above = engine.value_and_grad(batch, u + step)
        _, below = engine.value_and_grad(batch, u - step)
        hessian[:, :, i] = (above - below) / (2 * _STEP)
    total = np.bincount(problem.group, problem.weight, n_groups)
    precision = total[:, None, None] * (hessian + np.transpose(hessian, (0, 2, 1))) / 2
    # at a MAP code the precision holds at least the prior's; rounding may say less
    floor = max(settings.alpha, 1e-6)
    values, vectors = np.linalg.eigh(precision)
    cov_u = np.einsum("gij,gj,gkj->gik", vectors, 1.0 / np.maximum(values, floor), vectors)
    cov = np.einsum("gji,gjk,gkl->gil", factor, cov_u, factor)
    return (cov + np.transpose(cov, (0, 2, 1))) / 2, cov_u


def rows_per_unit(problem: Problem) -> float:
    """Rows (of positive weight) per unit, 1 without units. The frames of one utterance
    are not independent evidence about its condition: the evidence and the posterior
    temper the likelihood by this factor, so that a unit counts once (the MAP code is
    unchanged with the prior strength scaled by the same factor)."""
    if problem.unit is None:
        return 1.0
    used = problem.weight > 0
    return float(used.sum() / max(len(np.unique(problem.unit[used])), 1))


def whitened(problem: Problem, codes: np.ndarray) -> np.ndarray:
    """The engine's whitened coordinates ``u`` of ``codes`` under each group's prior."""
    factor = whitening(problem.prior_mean, problem.prior_covariance)
    return np.linalg.solve(np.transpose(factor, (0, 2, 1)),
                           (codes - problem.prior_mean)[..., None])[..., 0]


def evidence_alpha(alpha: float, u: np.ndarray, cov_u: np.ndarray) -> float:
    """MacKay's update of the prior strength from whitened MAP codes ``u`` and their
    posterior covariances: ``gamma / sum_g |u_g|^2``, with ``gamma = sum_g (d - alpha
    tr S_g)`` the number of well-determined code entries, kept within [1e-4, 1e4] (tenfold
    the strength, to that bound, when every code sits at its prior mean)."""
    d = u.shape[1]
    gamma = np.sum(d - alpha * np.trace(cov_u, axis1=1, axis2=2))
    spread = float(np.sum(u * u))
    if spread <= 1e-12:  # every code at the prior mean: the data ask for nothing
        return float(min(alpha * 10.0, _MAX_ALPHA))
    return float(np.clip(gamma / spread, _MIN_ALPHA, _MAX_ALPHA))


def posterior_draws(codes: np.ndarray, covariances: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """``DRAWS`` code tables ``(DRAWS, n_codes, d)`` from ``N(codes[g], covariances[g])``."""
    values, vectors = np.linalg.eigh(covariances)
    roots = vectors * np.sqrt(np.maximum(values, 0.0))[:, None, :]
    noise = rng.standard_normal((DRAWS, *codes.shape))
    return codes[None] + np.einsum("gij,sgj->sgi", roots, noise)
