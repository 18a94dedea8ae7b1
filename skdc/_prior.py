"""Gaussian priors over condition codes.

A prior ``N(mean, covariance)`` turns code adaptation into MAP estimation: the
objective of a condition with rows ``i`` and weights ``w_i`` is

    (sum_i w_i * loss_i + alpha / 2 * (z - mean)^T covariance^-1 (z - mean)) / sum_i w_i

so with ``alpha=1`` the prior counts exactly as a Gaussian prior should, and its
pull fades as the condition brings more data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from sklearn.covariance import ledoit_wolf, oas

__all__ = ["CodePrior", "prior_from_codes", "resolve_code_init"]


class CodePrior(NamedTuple):
    """Mean and covariance of a Gaussian prior over condition codes.

    Pass it as ``code_init`` to :class:`~skdc.CodeAdapter`: adaptation starts at
    ``mean`` and the prior penalty is the Mahalanobis distance to ``mean``.
    """

    mean: np.ndarray
    covariance: np.ndarray


#: Shrinkage estimators of ``prior_from_codes`` by name (scikit-learn's, which return
#: the shrunk covariance and the shrinkage).
SHRINKAGE_ESTIMATORS = {"oas": oas, "ledoit_wolf": ledoit_wolf}


def prior_from_codes(codes: np.ndarray, shrinkage: float | str = 1e-3) -> CodePrior:
    """Fit a Gaussian prior to a table of codes, one row per condition.

    With a number, the covariance is shrunk by that fraction toward a scaled identity,
    so that it stays invertible when there are fewer conditions than code dimensions.
    With ``"oas"`` or ``"ledoit_wolf"`` the fraction is estimated from the codes
    (Chen et al. 2010's oracle approximating shrinkage; Ledoit & Wolf 2004), on codes
    scaled to unit variance per dimension: the correlations are shrunk toward zero,
    each dimension keeping its own variance (the parts of a code, a feature shift and
    a hidden code, have different scales).
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[0] < 1:
        raise ValueError(f"codes must be a non-empty 2-D table, got shape {codes.shape}.")
    mean = codes.mean(axis=0)
    if codes.shape[0] < 2:
        return CodePrior(mean, np.eye(codes.shape[1]))
    if isinstance(shrinkage, str):
        scale = np.maximum(codes.std(axis=0), 1e-12)
        shrunk, _ = SHRINKAGE_ESTIMATORS[shrinkage](codes / scale)
        n = len(codes)  # scikit-learn's estimates divide by n; np.cov's by n - 1
        return CodePrior(mean, shrunk * np.outer(scale, scale) * n / (n - 1))
    cov = np.atleast_2d(np.cov(codes, rowvar=False))
    scale = max(np.trace(cov) / cov.shape[0], 1e-12)
    cov = (1.0 - shrinkage) * cov + shrinkage * scale * np.eye(cov.shape[0])
    return CodePrior(mean, cov)


def resolve_code_init(code_init, code_dim: int) -> tuple[CodePrior, dict]:
    """Turn a ``code_init`` parameter into a default prior and per-group priors.

    * ``"zeros"``: the zero code, identity covariance (a standard normal prior);
    * a code (array, list or tuple of numbers): that code, identity covariance;
    * a :class:`CodePrior` or a mapping ``{"mean": ..., "covariance": ...}``: that prior;
    * any other mapping: ``{group label: one of the above}``, each group's own prior;
      groups not in it get the standard normal prior.

    Returns ``(default, per_group)``: float64 ``CodePrior`` objects, ``per_group`` a
    dict (empty unless ``code_init`` maps groups).
    """
    if isinstance(code_init, Mapping) and not _is_prior_mapping(code_init):
        default = _one_prior("zeros", code_dim, "code_init")
        per_group = {
            key: _one_prior(value, code_dim, f"code_init[{key!r}]")
            for key, value in code_init.items()
        }
        return default, per_group
    return _one_prior(code_init, code_dim, "code_init"), {}


def _is_prior_mapping(value) -> bool:
    return isinstance(value, Mapping) and set(value) == {"mean", "covariance"}


def _one_prior(value, code_dim: int, what: str) -> CodePrior:
    if isinstance(value, str):
        if value != "zeros":
            raise ValueError(
                f"{what}={value!r} is not understood; use 'zeros', an array of "
                f"shape ({code_dim},), or a CodePrior(mean, covariance)."
            )
        return CodePrior(np.zeros(code_dim), np.eye(code_dim))
    if _is_prior_mapping(value):
        value = CodePrior(value["mean"], value["covariance"])
    if isinstance(value, CodePrior):
        mean = _as_code(value.mean, code_dim, f"the prior mean in {what}")
        return CodePrior(mean, _as_covariance(value.covariance, code_dim, what))
    if isinstance(value, Mapping):
        raise TypeError(f"{what} is a mapping of groups inside a mapping of groups.")
    return CodePrior(_as_code(value, code_dim, what), np.eye(code_dim))


def _as_covariance(value, code_dim: int, what: str) -> np.ndarray:
    try:
        cov = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"The prior covariance in {what} must be numeric.") from exc
    if cov.shape != (code_dim, code_dim):
        raise ValueError(
            f"The prior covariance in {what} has shape {cov.shape}; the model's code "
            f"input needs ({code_dim}, {code_dim})."
        )
    if not np.all(np.isfinite(cov)) or not np.allclose(cov, cov.T, atol=1e-8):
        raise ValueError(f"The prior covariance in {what} must be finite and symmetric.")
    eigvals = np.linalg.eigvalsh(cov)
    if eigvals.min() <= 0:
        raise ValueError(
            f"The prior covariance in {what} is not positive definite "
            f"(smallest eigenvalue {eigvals.min():.3g})."
        )
    return cov


def _as_code(value, code_dim: int, what: str) -> np.ndarray:
    try:
        code = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be numeric, got {type(value).__name__}.") from exc
    if code.shape != (code_dim,):
        raise ValueError(
            f"{what} has shape {code.shape}; the model's code input needs shape ({code_dim},)."
        )
    if not np.all(np.isfinite(code)):
        raise ValueError(f"{what} contains NaN or infinity.")
    return code
