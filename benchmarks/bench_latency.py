"""Latency of adaptation per Keras backend: cold start, per-step overhead, refit.

Every figure comes from fresh processes (one per backend and case, run one after
the other), the seed model (440 -> 3 x 512 + 50-d code -> 183) and 20 labelled rows:

* ``import``: ``import keras`` with the backend (wall seconds), and ``import skdc``
  (which must load no backend) and ``skdc --help``;
* ``first fit``: ``CodeAdapter(model, max_iter=10, tol=0).fit`` right after import and
  model build, i.e. compilation included; ``import + first fit`` adds both; with JAX
  also the same in a second process with skdc's persistent compilation cache warm
  (``SKDC_COMPILATION_CACHE``), and after ``skdc.warmup`` (what an app pays on its
  first request);
* ``per step``: the cost of one more iteration (a 110-iteration fit minus a
  10-iteration fit, divided by 100), against a bare compiled value-and-gradient of the
  same model with respect to a tied code on the same backend (``tf.function`` +
  ``GradientTape`` / ``jax.jit(jax.value_and_grad)``), median of interleaved runs;
* ``refit``: a warm one-iteration fit (validation, tensors, one step, scoring);
* ``seed 100 steps``: 2,000 rows, 100 ``rms_sgd`` steps (the original recipe's rule)
  against the eager recipe on the same backend (an uncompiled loop of the backend's own
  autodiff), ratio of wall times after a warm-up of each;
* ``jit_compile``: on TensorFlow, ``"auto"`` against ``True`` and ``False`` on the
  20-row fit and the seed workload, compilation included (fresh process each).

    python benchmarks/bench_latency.py            # tensorflow and jax
    python benchmarks/bench_latency.py --backends jax --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

_CASE = r'''
import json, os, sys, time
t0 = time.perf_counter()
import keras
t_import = time.perf_counter() - t0
sys.path.insert(0, {here!r}); sys.path.insert(0, {root!r})
import numpy as np
from _common import code_model
import skdc
from skdc import CodeAdapter
case = {case!r}
model = code_model()
rng = np.random.default_rng(0)
X = rng.normal(size=(20, 440)).astype("float32"); y = rng.integers(0, 183, 20)
out = {{"import": t_import}}
kw = dict(tol=0.0, learning_rate=0.1, random_state=0)

def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t

if case == "cold":
    out["first_fit"] = timed(lambda: CodeAdapter(model, max_iter=10, **kw).fit(X, y))
    out["import_plus_first_fit"] = time.perf_counter() - t0
elif case == "warmup":
    out["warmup"] = skdc.warmup(CodeAdapter(model, max_iter=10, **kw), rows=(20,))
    out["first_fit"] = timed(lambda: CodeAdapter(model, max_iter=10, **kw).fit(X, y))
elif case.startswith("jit_"):
    jit = {{"jit_True": True, "jit_False": False, "jit_auto": "auto"}}[case]
    Xs = rng.normal(size=(2000, 440)).astype("float32"); ys = rng.integers(0, 183, 2000)
    out["small"] = timed(lambda: CodeAdapter(model, max_iter=10, jit_compile=jit, **kw).fit(X, y))
    out["seed"] = timed(lambda: CodeAdapter(model, optimizer="rms_sgd", max_iter=100,
                                            jit_compile=jit, **kw).fit(Xs, ys))
elif case == "steady":
    from _backend_refs import bare_value_and_grad, eager_recipe
    a10 = CodeAdapter(model, max_iter=10, **kw); a110 = CodeAdapter(model, max_iter=110, **kw)
    a1 = CodeAdapter(model, max_iter=1, **kw)
    bare = bare_value_and_grad(model, X, y)
    for f in (lambda: a10.fit(X, y), lambda: a110.fit(X, y), lambda: a1.fit(X, y), bare):
        f()
    rows = {{"10": [], "110": [], "1": [], "bare": []}}
    for _ in range({repeats}):
        rows["10"].append(timed(lambda: a10.fit(X, y)))
        rows["110"].append(timed(lambda: a110.fit(X, y)))
        rows["1"].append(timed(lambda: a1.fit(X, y)))
        rows["bare"].append(timed(lambda: [bare() for _ in range(100)]) / 100)
    med = {{k: sorted(v)[len(v) // 2] for k, v in rows.items()}}
    out["per_step"] = (med["110"] - med["10"]) / 100
    out["bare_step"] = med["bare"]
    out["refit"] = med["1"]
    Xs = rng.normal(size=(2000, 440)).astype("float32"); ys = rng.integers(0, 183, 2000)
    seed = CodeAdapter(model, optimizer="rms_sgd", max_iter=100, alpha=0.0, tol=0.0,
                       learning_rate=0.1)
    recipe = eager_recipe(model, Xs, ys)
    seed.fit(Xs, ys); recipe(2)
    s, r = [], []
    for _ in range(max(1, {repeats} // 2)):
        s.append(timed(lambda: seed.fit(Xs, ys))); r.append(timed(lambda: recipe(100)))
    out["seed_skdc"] = sorted(s)[len(s) // 2]; out["seed_recipe"] = sorted(r)[len(r) // 2]
print("RESULT " + json.dumps(out))
'''


def _run(backend: str, case: str, repeats: int, env_extra=None) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           **(env_extra or {})}
    code = _CASE.format(here=str(HERE), root=str(ROOT), case=case, repeats=repeats)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{backend} {case} failed:\n{proc.stderr[-3000:]}")


def _wall(cmd, env) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, capture_output=True, check=True)
    return time.perf_counter() - t


def _import_skdc(backend: str) -> tuple[float, bool]:
    env = {**os.environ, "KERAS_BACKEND": backend}
    code = ("import sys, time; t = time.perf_counter(); import skdc; "
            "print(time.perf_counter() - t, any(m in sys.modules for m in "
            "('keras', 'tensorflow', 'jax', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT).stdout.split()
    return float(out[0]), out[1] == "True"


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh processes per cold case")
    args = parser.parse_args()
    print(f"load average at start: {_load()}")
    rows: dict[str, dict[str, str]] = {}

    def put(name, backend, text):
        rows.setdefault(name, {})[backend] = text

    for backend in args.backends:
        env = {**os.environ, "KERAS_BACKEND": backend}
        keras_import = [_wall([sys.executable, "-c", "import keras"], env) for _ in range(3)]
        put("import keras (s)", backend, f"{statistics.median(keras_import):.2f}")
        t, loaded = _import_skdc(backend)
        put("import skdc (s; backend loaded?)", backend, f"{t:.2f} ({'yes' if loaded else 'no'})")
        helps = [_wall([sys.executable, "-m", "skdc", "--help"], env) for _ in range(3)]
        put("skdc --help (s)", backend, f"{statistics.median(helps):.2f}")
        cold = [_run(backend, "cold", args.repeats) for _ in range(args.cold_runs)]
        put("first fit, fresh process (s)", backend,
            f"{statistics.median(c['first_fit'] for c in cold):.3f}")
        put("import + first fit (s)", backend,
            f"{statistics.median(c['import_plus_first_fit'] for c in cold):.2f}")
        if backend == "jax":
            with tempfile.TemporaryDirectory() as cache:
                extra = {"SKDC_COMPILATION_CACHE": cache}
                _run(backend, "cold", args.repeats, extra)  # fills the cache
                warm = [_run(backend, "cold", args.repeats, extra)["first_fit"]
                        for _ in range(args.cold_runs)]
            put("first fit, warm compilation cache (s)", backend,
                f"{statistics.median(warm):.3f}")
        w = _run(backend, "warmup", args.repeats)
        put("skdc.warmup, then first fit (s)", backend, f"{w['warmup']:.2f}, {w['first_fit']:.3f}")
        s = _run(backend, "steady", args.repeats)
        put("per step: skdc / bare value+grad (ms)", backend,
            f"{1e3 * s['per_step']:.2f} / {1e3 * s['bare_step']:.2f} = "
            f"{s['per_step'] / s['bare_step']:.2f}x")
        put("refit, 1 iteration (ms)", backend, f"{1e3 * s['refit']:.1f}")
        put("seed 100 steps / eager recipe", backend,
            f"{s['seed_skdc']:.2f} s / {s['seed_recipe']:.2f} s = "
            f"{s['seed_skdc'] / s['seed_recipe']:.3f}x")
        if backend == "tensorflow":
            jit = {c: _run(backend, c, args.repeats)
                   for c in ("jit_auto", "jit_True", "jit_False")}
            for work in ("small", "seed"):
                best = min(jit["jit_True"][work], jit["jit_False"][work])
                auto = jit["jit_auto"][work]
                put(f"jit_compile auto / best of True, False: {work} (s)", backend,
                    f"{auto:.2f} / {best:.2f} = {auto / best:.2f}x (True "
                    f"{jit['jit_True'][work]:.2f}, False {jit['jit_False'][work]:.2f})")
    width = max(len(k) for k in rows)
    print(f"{'':<{width}}  " + "  ".join(f"{b:<28}" for b in args.backends))
    for name, cells in rows.items():
        print(f"{name:<{width}}  " + "  ".join(f"{cells.get(b, '-'):<28}" for b in args.backends))
    print(f"load average at end: {_load()}")


if __name__ == "__main__":
    main()
