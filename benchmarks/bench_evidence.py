"""The evidence's prior strength: time of a fit with ``alpha="evidence"``, side by side.

A known teacher network (143 features, a hidden layer of 256 units, a 16-d code, 10
classes; ``skdc._synthetic``, as ``bench_load.py``) labels 6 conditions, each with its own
code; an adapter fits their codes from k units of 98 rows each (``units``). Two evidence
loops run interleaved in one process: skdc's (one MacKay update per refit) and, as the
reference, the default loop from 3b677d2 until it was dropped, kept here as a subclass:
MacKay's fixed point run to convergence on the local quadratic model, one refit a
round. It was faster (2-4 fits instead of 5-11) and was dropped because along
directions where the likelihood is flat its fixed point runs to a bound (normalised
Arabic digits lost 27% of the error at k=5; README). Prints seconds per fit (median of
``--repeats``, after one untimed compile), the fits each loop ran, the strengths
reached and how far apart the two loops' codes end (largest difference over all code
entries).

    python benchmarks/bench_evidence.py
"""

import argparse
import os
import time
import warnings

import _common  # first: path and import order
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeAdapter
from skdc._laplace import code_posteriors, evidence_alpha, rows_per_unit, whitened
from skdc._synthetic import make_conditions, make_teacher


def local_evidence(alpha: float, u: np.ndarray, cov_u: np.ndarray,
                   tempering: float = 1.0) -> float:
    """MacKay's fixed point run to convergence on the local quadratic model of the
    likelihood at whitened MAP codes ``u`` (prior strength ``alpha``, posterior
    covariances ``cov_u``): the strength it settles at.

    With ``H`` the likelihood's Hessian (the posterior precision less ``alpha I``), a
    strength ``a`` moves the MAP code to ``(H + a I)^-1 (H + alpha I) u`` and its
    covariance to ``(H + a I)^-1``: the fixed point needs no refit and no further
    Hessian. The model is exact at ``a = alpha`` (its first step is MacKay's update);
    where ``H + a I`` is not positive (a non-convex likelihood, ``a`` below ``alpha``)
    its eigenvalues are floored at ``1e-3 a``. ``tempering`` (:func:`rows_per_unit`)
    counts a unit's rows once.
    """
    d = u.shape[1]
    precision = np.linalg.inv(cov_u)
    values, vectors = np.linalg.eigh((precision + np.transpose(precision, (0, 2, 1))) / 2
                                     - alpha * np.eye(d))
    pulled = np.einsum("gij,gj->gi", precision, u)  # (H + alpha I) u, fixed
    r, a = float(tempering), float(alpha)
    for _ in range(100):
        inverse = 1.0 / np.maximum(values + a, 1e-3 * a)  # eigenvalues of (H + a I)^-1
        u_a = np.einsum("gij,gj,gkj,gk->gi", vectors, inverse, vectors, pulled)
        cov_a = np.einsum("gij,gj,gkj->gik", vectors, inverse, vectors)
        new = r * evidence_alpha(a / r, u_a, r * cov_a)
        done = abs(np.log(new / a)) < 1e-4
        a = new
        if done:
            break
    return a


class LocalModelLoop(CodeAdapter):
    """The reference: each refit at the strength where MacKay's fixed point settles on
    the local quadratic model at the current codes; the exact update decides when it
    has settled (at most 10 fits)."""

    def _maximise_evidence(self, problem, result, settings, validation):
        r = rows_per_unit(problem)
        for _ in range(10):
            _, cov_u = code_posteriors(self._engine, problem, settings, result.codes)
            u = whitened(problem, result.codes)
            update = r * evidence_alpha(settings.alpha / r, u, r * cov_u)
            if abs(np.log(update / settings.alpha)) < 0.01:
                settings.alpha = update
                break
            settings.alpha = local_evidence(settings.alpha, u, cov_u, r)
            result = self._run(problem, result.codes, settings, validation=validation)
        self.alpha_ = settings.alpha
        return result


def _fit(cls, teacher, X, y, groups, units, fits):
    fits.clear()
    adapter = cls(teacher, alpha="evidence", optimizer="lbfgs", max_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        adapter.fit(X, y, groups=groups, units=units)
        seconds = time.perf_counter() - start
    return seconds, len(fits), adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    teacher = make_teacher(n_features=143, code_dim=16, n_classes=10, hidden=256)
    X, y, groups, _ = make_conditions(teacher, n_conditions=6, rows_per_condition=10 * 98,
                                      random_state=1)
    fits = []
    real_run = CodeAdapter._run

    def counted(self, *a, **k):
        fits.append(1)
        return real_run(self, *a, **k)

    with warnings.catch_warnings():  # compile once, untimed
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cls in (CodeAdapter, LocalModelLoop):
            cls(teacher, alpha="evidence", optimizer="lbfgs", max_iter=5).fit(
                X[:600], y[:600], groups=groups[:600])
    CodeAdapter._run = counted
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    rows = []
    for k in (1, 5, 10):
        keep = np.concatenate([np.flatnonzero(groups == g)[: k * 98] for g in range(6)])
        args_k = (teacher, X[keep], y[keep], groups[keep], np.repeat(np.arange(6 * k), 98))
        times = {CodeAdapter: [], LocalModelLoop: []}
        for _ in range(args.repeats):  # round-robin
            for cls in times:
                seconds, n, fitted = _fit(cls, *args_k, fits)
                times[cls].append(seconds)
                if cls is CodeAdapter:
                    ours, n_ours = fitted, n
                else:
                    ref, n_ref = fitted, n
        t_ours, t_ref = np.median(times[CodeAdapter]), np.median(times[LocalModelLoop])
        dz = max(np.abs(ours.codes_[g] - ref.codes_[g]).max() for g in range(6))
        rows.append([k, float(t_ours), float(t_ref), float(t_ref / t_ours), n_ours, n_ref,
                     float(ours.alpha_), float(ref.alpha_), float(dz)])
    print(_common.table(["k", "skdc s", "reference s", "reference / skdc", "fits",
                         "reference fits", "alpha_", "reference alpha_", "max |dz|"], rows))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
