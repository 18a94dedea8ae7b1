"""Load: memory over many fits in one process, on one model and on many models.

1. Fits a ``CodeAdapter`` 120 times on the same model with a different row count,
   learning rate and prior strength each time (a grid search's pattern), and prints
   the process's resident memory after fits 10, 20, ..., 120, the growth from fit 10
   to the last, and the number of traces of the compiled step. Target: ≤ 50 MB.
2. Builds, adapts (fit + predict) and drops 100 distinct models (an app serving many
   users' models, a grid search over ``CodeNetwork``), and prints the growth of
   resident memory from model 10 to model 100 and how many of the dropped models are
   still alive. Target: ≤ 50 MB, none alive.

Run: python benchmarks/bench_load.py [--fits 120] [--models 100]
"""

import argparse
import gc
import weakref

import _common  # noqa: F401  (path and import order)
import numpy as np
import psutil

from skdc import CodeAdapter
from skdc._engine import engine_for
from skdc._synthetic import make_conditions, make_teacher


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def same_model(n_fits: int) -> None:
    teacher = make_teacher(n_features=40, code_dim=8, n_classes=10, hidden=256)
    X, y, _, _ = make_conditions(teacher, n_conditions=1, rows_per_condition=600)
    rss, rng = {}, np.random.default_rng(0)
    for i in range(1, n_fits + 1):
        n = int(rng.integers(20, 600))
        CodeAdapter(teacher, learning_rate=float(rng.uniform(0.01, 0.3)),
                    alpha=float(rng.uniform(0, 3)), max_iter=20, tol=0.0).fit(X[:n], y[:n])
        if i % 10 == 0:
            rss[i] = _rss_mb()
    engine = engine_for(teacher, 1, "softmax")
    print(f"{'fits':>5} {'RSS MB':>8}")
    for i, mb in rss.items():
        print(f"{i:>5} {mb:>8.1f}")
    growth = rss[max(rss)] - rss[10]
    print(f"one model: growth from fit 10 to fit {max(rss)}: {growth:.1f} MB (target <= 50 MB: "
          f"{'met' if growth <= 50 else 'NOT met'}); traces of the engine: "
          f"{engine.traces()}")


def many_models(n_models: int) -> None:
    # one data set for every model: Keras' own predict (used to label it) is not measured
    first = make_teacher(n_features=40, code_dim=8, n_classes=10, hidden=256)
    X, y, _, _ = make_conditions(first, n_conditions=1, rows_per_condition=100)
    del first
    rss, refs = {}, []
    for i in range(1, n_models + 1):
        teacher = make_teacher(n_features=40, code_dim=8, n_classes=10, hidden=256,
                               random_state=i)
        adapter = CodeAdapter(teacher, max_iter=20, tol=0.0).fit(X, y)
        adapter.predict(X)
        refs.append(weakref.ref(teacher))
        del teacher, adapter
        if i % 10 == 0:
            gc.collect()
            rss[i] = _rss_mb()
    gc.collect()
    alive = sum(r() is not None for r in refs)
    print(f"{'models':>6} {'RSS MB':>8}")
    for i, mb in rss.items():
        print(f"{i:>6} {mb:>8.1f}")
    last = max(rss)
    growth = rss[last] - rss[10]
    half = min(rss, key=lambda i: abs(i - last / 2))
    slope = (rss[last] - rss[half]) / max(last - half, 1)
    print(f"distinct models: growth from model 10 to model {last}: {growth:.1f} MB "
          f"(target <= 50 MB: {'met' if growth <= 50 else 'NOT met'}); from model {half} on: "
          f"{slope:.2f} MB per model; dropped models still alive: {alive} of {n_models}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=120)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--only", choices=["same", "many"], default=None)
    args = parser.parse_args()
    if args.only != "many":
        same_model(args.fits)
    if args.only != "same":
        many_models(args.models)


if __name__ == "__main__":
    main()
