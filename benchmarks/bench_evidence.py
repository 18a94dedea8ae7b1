"""The evidence's prior strength: time of a fit with ``alpha="evidence"``.

A known teacher network (143 features, a hidden layer of 256 units, a 16-d code, 10
classes; ``skdc._synthetic``, as ``bench_load.py``) labels 6 conditions, each with its own
code; an adapter fits their codes from k units of 98 rows each (``units``). Prints
seconds per fit (median of ``--repeats``, after one untimed compile), the fits the
evidence loop ran and the strength reached.
``SKDC_SRC=<exported commit>`` measures another skdc (e.g. main's one-update-per-refit
loop) for a side-by-side figure.

    python benchmarks/bench_evidence.py
    SKDC_SRC=/tmp/pin_main python benchmarks/bench_evidence.py
"""

import argparse
import time
import warnings

import _common  # first: path and import order
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeAdapter
from skdc._synthetic import make_conditions, make_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
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
        CodeAdapter(teacher, alpha="evidence", optimizer="lbfgs", max_iter=5).fit(
            X[:600], y[:600], groups=groups[:600])
    CodeAdapter._run = counted
    print(f"skdc from {_common.SRC}")
    print(f"{'k':>3s} {'s per fit':>10s} {'fits':>5s} {'alpha_':>9s}")
    for k in (1, 5, 10):
        keep = np.concatenate([np.flatnonzero(groups == g)[: k * 98] for g in range(6)])
        Xa, ya, ga = X[keep], y[keep], groups[keep]
        ua = np.repeat(np.arange(6 * k), 98)
        times = []
        for _ in range(args.repeats):
            fits.clear()
            adapter = CodeAdapter(teacher, alpha="evidence", optimizer="lbfgs", max_iter=100)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                start = time.perf_counter()
                adapter.fit(Xa, ya, groups=ga, units=ua)
                times.append(time.perf_counter() - start)
        print(f"{k:3d} {np.median(times):10.2f} {len(fits):5d} {adapter.alpha_:9.3g}")


if __name__ == "__main__":
    main()
