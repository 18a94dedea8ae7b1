"""Predictions averaged over a Laplace posterior: one conversion of the rows for all draws.

``CodeAdapter(posterior="laplace").predict_proba`` averages the model over ``DRAWS``
codes drawn from each group's posterior. Each chunk of rows becomes tensors once and is
run with every draw's code table; the reference predicts once per draw (the rows become
tensors for every draw), as skdc did before. The workload is the Arabic digits
evaluation's: 143 features, two hidden layers of 256 units, 16-d codes in every layer,
6 held-out speakers, scored on 60,000 frames. Median of ``--repeats`` timings of each,
side by side in this process, after one warm-up call.

    python benchmarks/bench_laplace.py
    KERAS_BACKEND=jax python benchmarks/bench_laplace.py
"""

import argparse
import warnings

import _common  # first: path and import order
import keras
import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeNetwork
from skdc._laplace import posterior_draws  # the draws the adapter itself takes


def fitted_adapter(n_features=143, n_groups=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(24 * 300, n_features)).astype(np.float32)
    y = rng.integers(0, 10, len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net = CodeNetwork((256, 256), code_size=16, max_iter=1, random_state=0).fit(
            X, y, groups=np.repeat(np.arange(24), 300))
        adapter = net.adapter(posterior="laplace", optimizer="lbfgs", max_iter=20).fit(
            X[: n_groups * 100], y[: n_groups * 100], groups=np.repeat(np.arange(n_groups), 100))
    return adapter, rng


def per_draw(adapter, X, groups) -> np.ndarray:
    """The reference: one point prediction per posterior draw, averaged."""
    keys = sorted(adapter.codes_)
    table = np.stack([adapter.codes_[k] for k in keys])
    covs = np.stack([adapter.code_covariances_[k] for k in keys])
    saved, out = dict(adapter.codes_), []
    adapter.set_params(posterior=None)
    for draw in posterior_draws(table, covs, np.random.default_rng(0)):
        adapter.codes_ = dict(zip(keys, draw))
        out.append(adapter.predict_proba(X, groups=groups))
    adapter.codes_ = saved
    adapter.set_params(posterior="laplace")
    return np.mean(out, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    adapter, rng = fitted_adapter()
    X = rng.normal(size=(args.rows, 143))  # float64, as a user's array often is
    groups = rng.integers(0, 6, args.rows)
    gap = np.abs(adapter.predict_proba(X, groups=groups) - per_draw(adapter, X, groups)).max()
    shared = _common.median_time(lambda: adapter.predict_proba(X, groups=groups), args.repeats)
    reference = _common.median_time(lambda: per_draw(adapter, X, groups), args.repeats)
    print(f"backend {keras.backend.backend()}; {args.rows} rows x 143 features, 6 groups, "
          f"32 draws; median of {args.repeats}; largest difference {gap:.1e}\n")
    print(f"{'predict_proba over the posterior':38s} {'s':>7s} {'vs per draw':>12s}")
    print(f"{'one predict per draw (reference)':38s} {reference:7.2f} {1.0:11.2f}x")
    print(f"{'rows converted once (skdc)':38s} {shared:7.2f} {shared / reference:11.2f}x")


if __name__ == "__main__":
    main()
