"""Gaussian priors over condition codes.

A prior ``N(mean, covariance)`` turns code adaptation into MAP estimation: the
objective of a condition with rows ``i`` and weights ``w_i`` is

    (sum_i w_i * loss_i + alpha / 2 * (z - mean)^T covariance^-1 (z - mean)) / sum_i w_i

so with ``alpha=1`` the prior counts exactly as a Gaussian prior should, and its
pull fades as the condition brings more data.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["CodePrior", "prior_from_codes", "resolve_code_init"]


class CodePrior(NamedTuple):
    """Mean and covariance of a Gaussian prior over condition codes.

    Pass it as ``code_init`` to :class:`~skdc.CodeAdapter`: adaptation starts at
    ``mean`` and the prior penalty is the Mahalanobis distance to ``mean``.
    """

    mean: np.ndarray
    covariance: np.ndarray


def prior_from_codes(codes: np.ndarray, shrinkage: float = 1e-3) -> CodePrior:
    """Fit a Gaussian prior to a table of codes, one row per condition.

    The covariance is shrunk toward a scaled identity (by ``shrinkage``) so that it
    stays invertible when there are fewer conditions than code dimensions.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[0] < 1:
        raise ValueError(f"codes must be a non-empty 2-D table, got shape {codes.shape}.")
    mean = codes.mean(axis=0)
    if codes.shape[0] > 1:
        cov = np.atleast_2d(np.cov(codes, rowvar=False))
    else:
        cov = np.eye(codes.shape[1])
    scale = max(np.trace(cov) / cov.shape[0], 1e-12)
    cov = (1.0 - shrinkage) * cov + shrinkage * scale * np.eye(cov.shape[0])
    return CodePrior(mean, cov)


def resolve_code_init(code_init, code_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn a ``code_init`` parameter into ``(mean, covariance)`` float64 arrays.

    ``"zeros"`` and plain arrays get an identity covariance, i.e. a standard
    normal prior centred on the initial code.
    """
    if isinstance(code_init, str):
        if code_init != "zeros":
            raise ValueError(
                f"code_init={code_init!r} is not understood; use 'zeros', an array of "
                f"shape ({code_dim},), or a CodePrior(mean, covariance)."
            )
        return np.zeros(code_dim), np.eye(code_dim)
    if isinstance(code_init, tuple) and len(code_init) == 2:
        mean, cov = CodePrior(*code_init)
        mean = _as_code(mean, code_dim, "the prior mean in code_init")
        cov = np.asarray(cov, dtype=np.float64)
        if cov.shape != (code_dim, code_dim):
            raise ValueError(
                f"The prior covariance in code_init has shape {cov.shape}; the model's code "
                f"input needs ({code_dim}, {code_dim})."
            )
        if not np.all(np.isfinite(cov)) or not np.allclose(cov, cov.T, atol=1e-8):
            raise ValueError("The prior covariance in code_init must be finite and symmetric.")
        eigvals = np.linalg.eigvalsh(cov)
        if eigvals.min() <= 0:
            raise ValueError(
                "The prior covariance in code_init is not positive definite "
                f"(smallest eigenvalue {eigvals.min():.3g})."
            )
        return mean, cov
    return _as_code(code_init, code_dim, "code_init"), np.eye(code_dim)


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
