"""Load: memory over 100+ consecutive fits in one process (no retrace per fit).

Fits a ``CodeAdapter`` 120 times on the same model with a different row count, learning
rate and prior strength each time (a grid search's pattern), and prints the process's
resident memory after fits 10, 20, ..., 120, the growth from fit 10 to fit 120, and the
number of traces of the compiled step. Target (issue 7): growth ≤ 50 MB.

Run: python benchmarks/bench_load.py [--fits 120]
"""

import argparse

import _common  # noqa: F401  (path and import order)
import numpy as np
import psutil

from skdc import CodeAdapter
from skdc._engine import engine_for
from skdc._synthetic import make_conditions, make_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=120)
    args = parser.parse_args()
    teacher = make_teacher(n_features=40, code_dim=8, n_classes=10, hidden=256)
    X, y, _, _ = make_conditions(teacher, n_conditions=1, rows_per_condition=600)
    process = psutil.Process()
    rss, rng = {}, np.random.default_rng(0)
    for i in range(1, args.fits + 1):
        n = int(rng.integers(20, 600))
        CodeAdapter(teacher, learning_rate=float(rng.uniform(0.01, 0.3)),
                    alpha=float(rng.uniform(0, 3)), max_iter=20, tol=0.0).fit(X[:n], y[:n])
        if i % 10 == 0:
            rss[i] = process.memory_info().rss / 2**20
    step = engine_for(teacher, 1, "softmax")._step.functions[0]
    print(f"{'fits':>5} {'RSS MB':>8}")
    for i, mb in rss.items():
        print(f"{i:>5} {mb:>8.1f}")
    growth = rss[max(rss)] - rss[10]
    print(f"growth from fit 10 to fit {max(rss)}: {growth:.1f} MB (target <= 50 MB: "
          f"{'met' if growth <= 50 else 'NOT met'}); traces of the step: "
          f"{step.experimental_get_tracing_count()}")


if __name__ == "__main__":
    main()
