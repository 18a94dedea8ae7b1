"""Training cost per epoch: episodic against joint training of a ``CodeNetwork``.

The Arabic digits workload (143 features: 13 MFCCs with +/- 5 frames, 24 training
speakers of 500 frames, 10 classes; two hidden layers of 256 units, 16-d codes, batches
of 512 rows). One epoch visits about every row once in both: joint training in
minibatches, episodic training in episodes of ``support_size`` support and as many query
rows per condition, each running ``inner_steps`` code steps first. The per-epoch time is
``(t(1 + E epochs) - t(1 epoch)) / E`` (compilation and set-up cancel), the median of
``--repeats`` pairs of fits after one warm-up fit, all measured side by side in this process.
With ``units`` (recordings of 100 rows) support sets are drawn from whole recordings
(``support_units``): the cost of that sampling shows in the last row.

    python benchmarks/bench_episodic.py
    KERAS_BACKEND=jax python benchmarks/bench_episodic.py
"""

import argparse
import statistics
import time
import warnings

import _common  # noqa: F401  (path and import order)
import keras
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeNetwork


def workload(n_conditions=24, rows=500, n_features=143, n_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_conditions * rows, n_features)).astype(np.float32)
    y = rng.integers(0, n_classes, len(X))
    return X, y, np.repeat(np.arange(n_conditions), rows)


def fit_seconds(data, epochs: int, units: bool = False, **params) -> float:
    net = CodeNetwork((256, 256), code_size=16, batch_size=512, max_iter=epochs, tol=0.0,
                      random_state=0, **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net.fit(*data[:2], groups=data[2],
                units=np.arange(len(data[0])) // 100 if units else None)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = workload()
    variants = {
        "joint": {},
        "episodic, 1 inner step": dict(training="episodic", inner_steps=1),
        "episodic, 5 inner steps": dict(training="episodic", inner_steps=5),
        "episodic, 5 steps, units": dict(training="episodic", inner_steps=5, units=True),
    }
    print(f"backend {keras.backend.backend()}; {len(data[0])} rows, {data[0].shape[1]} "
          f"features, {len(set(data[2]))} conditions; median of {args.repeats}\n")
    print(f"{'training':26s} {'s/epoch':>8s} {'vs joint':>9s} {'fit of 1 epoch (s)':>19s}")
    base = None
    for name, params in variants.items():
        per_epoch, first = [], []
        fit_seconds(data, 1, **params)  # warm-up: first compilations, caches
        for _ in range(args.repeats):
            one = fit_seconds(data, 1, **params)
            more = fit_seconds(data, 1 + args.epochs, **params)
            per_epoch.append((more - one) / args.epochs)
            first.append(one)
        epoch = statistics.median(per_epoch)
        base = base or epoch
        print(f"{name:26s} {epoch:8.3f} {epoch / base:8.2f}x {statistics.median(first):19.2f}")


if __name__ == "__main__":
    main()
