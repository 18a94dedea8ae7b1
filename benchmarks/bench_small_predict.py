"""Predicting a few rows with a small recurrent model, against refitting them, per backend.

A small LSTM model (12 features read as 4 steps of 3, LSTM(16), a 4-d code joined after
it, softmax over 5 classes); 20 rows. Per backend, in its own process: the first
``predict_proba`` after a fit (compiles where the backend does), then the median of
``--repeats`` predictions and of ``--repeats`` refits (``CodeAdapter.fit``, 20 rows,
``max_iter=10, tol=0``), interleaved. The figure is predict / refit in the same process
(target: predicting 20 rows takes no longer than a 20-row refit, on JAX above all).

    python benchmarks/bench_small_predict.py
    python benchmarks/bench_small_predict.py --backends jax --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import banner, footer, table

CHILD = r"""
import json, statistics, sys, time, warnings
sys.path.insert(0, sys.argv[1])
import keras, numpy as np
import skdc
repeats = int(sys.argv[2])
x = keras.Input((12,), name="features")
z = keras.Input((4,), name="code")
h = keras.layers.LSTM(16)(keras.layers.Reshape((4, 3))(x))
h = keras.layers.Dense(16, activation="tanh")(keras.layers.Concatenate()([h, z]))
model = keras.Model([x, z], keras.layers.Dense(5, activation="softmax")(h))
rng = np.random.default_rng(0)
X, y = rng.normal(size=(20, 12)).astype("float32"), rng.integers(0, 5, 20)
adapter = skdc.CodeAdapter(model, max_iter=10, tol=0.0, random_state=0)
warnings.simplefilter("ignore")
t0 = time.perf_counter(); adapter.fit(X, y); first_fit = time.perf_counter() - t0
t0 = time.perf_counter(); adapter.predict_proba(X); first_predict = time.perf_counter() - t0
predict, refit = [], []
for _ in range(repeats):
    t0 = time.perf_counter(); adapter.predict_proba(X); predict.append(time.perf_counter() - t0)
    t0 = time.perf_counter(); adapter.fit(X, y); refit.append(time.perf_counter() - t0)
print(json.dumps({"first_fit": first_fit, "first_predict": first_predict,
                  "predict": statistics.median(predict), "refit": statistics.median(refit)}))
"""


def measure(backend: str, repeats: int) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    src = os.environ.get("SKDC_SRC") or os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))
    out = subprocess.run([sys.executable, "-c", CHILD, src, str(repeats)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    banner("predict 20 rows vs refit 20 rows, small LSTM model",
           "LSTM(16) over 4 x 3 features, 4-d code, 5 classes; median of the runs")
    rows, met = [], []
    for backend in args.backends:
        r = measure(backend, args.repeats)
        ratio = r["predict"] / r["refit"]
        met.append((backend, ratio))
        rows.append([backend, r["first_fit"] * 1e3, r["first_predict"] * 1e3,
                     r["predict"] * 1e3, r["refit"] * 1e3, f"{ratio:.2f}"])
    print(table(["backend", "first fit ms", "first predict ms", "predict ms", "refit ms",
                 "predict / refit"], rows))
    figures = ", ".join(f"{b} {x:.2f}" for b, x in met)
    ok = all(x <= 1.0 for _, x in met)
    print(f"\nTarget predict <= refit (20 rows): {'met' if ok else 'NOT met'} ({figures})")
    footer()


if __name__ == "__main__":
    main()
