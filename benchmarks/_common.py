"""Shared pieces of the benchmarks: the seed model and data, the eager recipe, timers, tables.

Import this module first in a benchmark script: it puts the checkout on ``sys.path`` (so
the scripts measure the ``skdc`` they sit beside; ``SKDC_SRC=/some/dir`` measures the skdc
package in that folder instead, e.g. an exported commit) and imports skdc before TensorFlow.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
import weakref
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SRC = Path(os.environ.get("SKDC_SRC") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(SRC))

import skdc  # noqa: E402, I001  (before tensorflow: skdc silences TF start-up noise)
import keras  # noqa: E402
import numpy as np  # noqa: E402

# TensorFlow only where it is the backend: under JAX or torch, importing it would add
# seconds to every start-up figure
tf = __import__("tensorflow") if keras.backend.backend() == "tensorflow" else None

__all__ = ["skdc", "keras", "np", "tf"]


# -- workload -----------------------------------------------------------------
def code_model(n_features=440, hidden=(512, 512, 512), code_dim=50, n_classes=183, seed=0):
    """The seed network: ``h_l = sigmoid(W_l h_{l-1} + b_l + B_l z)``, softmax output.

    Random weights, scaled like a trained network's (pre-activations of a few units, peaked
    posteriors) so that the code matters and adaptation has something to find.
    """
    seeds = iter(range(1000 * seed, 1000 * seed + 1000))  # no global seeding: it imports TF

    def dense(width, fan_in, gain, **kw):
        init = keras.initializers.RandomNormal(stddev=gain / np.sqrt(fan_in), seed=next(seeds))
        return keras.layers.Dense(width, kernel_initializer=init, **kw)

    x = keras.Input((n_features,), name="features")
    z = keras.Input((code_dim,), name="code")
    h, fan_in, gain = x, n_features, 2.0
    for width in hidden:
        pre = keras.layers.Add()([dense(width, fan_in, gain)(h),
                                  dense(width, code_dim, 1.5, use_bias=False)(z)])
        h = keras.layers.Activation("sigmoid")(pre)
        fan_in, gain = width, 4.0  # sigmoid outputs are in (0, 1): a larger gain
    out = dense(n_classes, fan_in, 6.0, activation="softmax")(h)
    model = keras.Model([x, z], out)
    model.trainable = False
    return model


def fresh_copy(model):
    """Same architecture and weights, but a new object (so skdc's engine cache is cold)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy.trainable = False
    return copy


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def forward_fn(model):
    """A compiled direct call of the model with one code tiled to the rows (cached)."""
    if model not in _FORWARD:
        _FORWARD[model] = _make_forward(model)
    return _FORWARD[model]


def _make_forward(model):
    n_features = int(model.inputs[0].shape[-1])
    d = int(model.inputs[1].shape[-1])

    @tf.function(input_signature=[tf.TensorSpec([None, n_features], tf.float32),
                                  tf.TensorSpec([1, d], tf.float32)])
    def forward(x, code):
        return model([x, tf.tile(code, [tf.shape(x)[0], 1])], training=False)

    return forward


def make_data(model, n_rows, seed=1, code_scale=1.0, chunk=65536, labels="model"):
    """Random float32 ``X``, labels sampled from the model at a random true code.

    ``labels="random"`` draws uniform labels instead (for timings that do not depend on
    them: it saves a forward pass over large data).
    """
    rng = np.random.default_rng(seed)
    n_features = int(model.inputs[0].shape[-1])
    d = int(model.inputs[1].shape[-1])
    X = rng.standard_normal((n_rows, n_features), dtype=np.float32)
    true_code = (code_scale * rng.standard_normal((1, d))).astype(np.float32)
    if labels == "random":
        n_classes = int(model.outputs[0].shape[-1])
        return X, rng.integers(0, n_classes, n_rows).astype(np.int32), true_code[0]
    forward = forward_fn(model)
    y = np.empty(n_rows, dtype=np.int32)
    for start in range(0, n_rows, chunk):
        p = forward(X[start : start + chunk], true_code).numpy().astype(np.float64)
        u = rng.random((len(p), 1))
        y[start : start + chunk] = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), p.shape[1] - 1)
    return X, y, true_code[0]


def mean_ce(model, X, y, code, chunk=65536):
    """Mean cross-entropy of the model at ``code`` over the rows (probabilities clipped 1e-7)."""
    forward = forward_fn(model)
    code = np.asarray(code, np.float32).reshape(1, -1)
    total = 0.0
    for start in range(0, len(X), chunk):
        p = forward(X[start : start + chunk], code).numpy().astype(np.float64)
        py = p[np.arange(len(p)), y[start : start + chunk]]
        total += float(-np.log(np.clip(py, 1e-7, 1.0)).sum())
    return total / len(X)


# -- the reference: the original recipe ported to TF2 -------------------------
def eager_recipe(model, X, y, steps=100, lr=0.1):
    """Eager GradientTape loop, one tied (1, d) code broadcast to the rows, RMS-scaled step."""
    d = int(model.inputs[1].shape[-1])
    Xt = tf.constant(X, tf.float32)
    yt = tf.constant(y, tf.int32)
    n = Xt.shape[0]
    code = tf.Variable(tf.zeros((1, d)))
    for _ in range(steps):
        with tf.GradientTape() as tape:
            p = model([Xt, tf.broadcast_to(code, (n, d))], training=False)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(yt, p))
        g = tape.gradient(loss, code)
        g = g / (tf.sqrt(tf.reduce_mean(tf.square(g))) + 1e-5)
        code.assign_sub(lr * g)
    return code.numpy()[0]


# -- timing -------------------------------------------------------------------
def run_cases(cases, repeats, label_width=0):
    """Time each case: one first (warm-up) call, then ``repeats`` calls round-robin.

    Returns ``{name: {"first": s, "times": [s, ...], "median": s, "cpu": s, "value": ...}}``
    where ``cpu`` is the median CPU time of the process (all threads) per call: less
    sensitive than wall time to other jobs on a shared machine. Round-robin order spreads
    the load over all cases alike.
    """
    out = {}
    for name, fn in cases.items():
        t0 = time.perf_counter()
        value = fn()
        out[name] = {"first": time.perf_counter() - t0, "times": [], "cpus": [], "value": value}
    for _ in range(repeats):
        for name, fn in cases.items():
            t0, c0 = time.perf_counter(), time.process_time()
            out[name]["value"] = fn()
            out[name]["times"].append(time.perf_counter() - t0)
            out[name]["cpus"].append(time.process_time() - c0)
    for entry in out.values():
        entry["median"] = statistics.median(entry["times"]) if entry["times"] else entry["first"]
        entry["cpu"] = statistics.median(entry["cpus"]) if entry["cpus"] else float("nan")
    return out


def median_time(fn, repeats, warmup=True):
    """Median seconds of ``fn()`` over ``repeats`` calls (after one untimed call)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# -- output -------------------------------------------------------------------
def table(headers, rows):
    """A Markdown table (pastes into benchmarks/README.md as it is)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value):
    if isinstance(value, float):
        if value != value:
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    if isinstance(value, int) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def banner(title, workload):
    """Title, workload and machine line printed above each table."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"## {title}\n")
    print(f"Workload: {workload}")
    print(f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"TF {tf.__version__}, Keras {keras.__version__}, skdc {skdc.__version__}; "
          f"load average at start {load:.2f}")
    print(f"skdc measured: {source()}\n", flush=True)


def source():
    """Where the measured skdc comes from, and its commit."""
    where = Path(skdc.__file__).resolve().parents[1]
    commit_file = where / "COMMIT"
    if commit_file.exists():
        return f"{where} (exported commit {commit_file.read_text().strip()[:10]})"
    try:
        head = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "skdc"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return f"{where} (commit {head}{', skdc/ modified' if dirty else ''})"
    except (OSError, subprocess.CalledProcessError):
        return str(where)


def footer():
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n(load average at end {load:.2f})", flush=True)


def ratio(a, b):
    return a / b if b else float("nan")
