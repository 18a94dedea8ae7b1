"""The evidence's prior strength: time of a fit with ``alpha="evidence"``, side by side.

A known teacher network (143 features, a hidden layer of 256 units, a 16-d code, 10
classes; ``skdc._synthetic``, as ``bench_load.py``) labels 6 conditions, each with its own
code; an adapter fits their codes from k units of 98 rows each (``units``). Two evidence
loops run interleaved in one process: skdc's (MacKay's fixed point run to convergence on
the local quadratic model, one refit per round) and the reference it replaced (one MacKay
update per refit, kept here as a subclass). Prints seconds per fit (median of
``--repeats``, after one untimed compile), the fits each loop ran, the strengths reached
and how far apart the two loops' codes end (largest difference over all code entries).

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


class OneUpdatePerRefit(CodeAdapter):
    """The reference: one MacKay update of ``alpha`` per refit, at most 10 fits."""

    def _maximise_evidence(self, problem, result, settings, validation):
        r = rows_per_unit(problem)
        for _ in range(10):
            _, cov_u = code_posteriors(self._engine, problem, settings, result.codes)
            u = whitened(problem, result.codes)
            alpha = r * evidence_alpha(settings.alpha / r, u, r * cov_u)
            settled = abs(np.log(alpha / settings.alpha)) < 0.01
            settings.alpha = alpha
            if settled:
                break
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
        for cls in (CodeAdapter, OneUpdatePerRefit):
            cls(teacher, alpha="evidence", optimizer="lbfgs", max_iter=5).fit(
                X[:600], y[:600], groups=groups[:600])
    CodeAdapter._run = counted
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    rows = []
    for k in (1, 5, 10):
        keep = np.concatenate([np.flatnonzero(groups == g)[: k * 98] for g in range(6)])
        args_k = (teacher, X[keep], y[keep], groups[keep], np.repeat(np.arange(6 * k), 98))
        times = {CodeAdapter: [], OneUpdatePerRefit: []}
        for _ in range(args.repeats):  # round-robin
            for cls in times:
                seconds, n, fitted = _fit(cls, *args_k, fits)
                times[cls].append(seconds)
                if cls is CodeAdapter:
                    ours, n_ours = fitted, n
                else:
                    ref, n_ref = fitted, n
        t_ours, t_ref = np.median(times[CodeAdapter]), np.median(times[OneUpdatePerRefit])
        dz = max(np.abs(ours.codes_[g] - ref.codes_[g]).max() for g in range(6))
        rows.append([k, float(t_ours), float(t_ref), float(t_ref / t_ours), n_ours, n_ref,
                     float(ours.alpha_), float(ref.alpha_), float(dz)])
    print(_common.table(["k", "skdc s", "reference s", "reference / skdc", "fits",
                         "reference fits", "alpha_", "reference alpha_", "max |dz|"], rows))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
