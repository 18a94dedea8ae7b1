"""Load: memory over many fits in one process, on one model and on many models.

1. Fits a ``CodeAdapter`` 120 times on the same model with a different row count,
   learning rate and prior strength each time (a grid search's pattern), and prints
   the process's resident memory after fits 10, 20, ..., 120, the growth from fit 10
   to the last, and the number of traces of the compiled step. Target: ≤ 50 MB.
2. Distinct models, each backend in its own process (as an app serving many users'
   models): one warm-up model, then 100 distinct small models, each adapted
   (``CodeAdapter(model, max_iter=3).fit``, then ``predict``) and dropped, with no
   collection forced. Prints RSS at model 1 and its growth from model 1 to models 10,
   20, 40 and 100; how much of the growth at the last model is malloc's heap in use and
   how much is freed memory malloc keeps (glibc); how many dropped models are not freed
   yet, and still alive after a full collection; Python's full collections (generation
   2, automatic or skdc's); milliseconds per model, and those spent in full collections.
   ``--reference`` runs each backend again with skdc's collection of dropped models'
   compiled functions off (``skdc._backend.memory.COLLECTION.every = 0``: skdc before it);
   ``--collect-every N`` sets how many compilations separate skdc's collections.
   Target: growth ≤ 50 MB from model 1 to model 100 on each backend, none alive.

Run: python benchmarks/bench_load.py [--fits 120] [--models 100] [--only same|many]
         [--backends tensorflow,jax] [--reference] [--collect-every N]
"""

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
import weakref

import _common  # noqa: F401  (path and import order)
import numpy as np
import psutil

from skdc import CodeAdapter
from skdc._engine import engine_for
from skdc._synthetic import make_conditions, make_teacher

CHECKPOINTS = (1, 10, 20, 40, 100)


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


# -- distinct models (one backend per process) ------------------------------------
class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _heap_mb() -> tuple[float, float]:
    """glibc's heap: MB in use (incl. mmapped blocks) and MB free but kept; NaN elsewhere."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError, TypeError):
        return float("nan"), float("nan")
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def many_models_child(n_models: int, collect_every: int | None) -> dict:
    """The distinct-models run in this process; returns its figures."""
    from skdc import _backend
    from skdc._backend import memory

    if collect_every is not None:
        memory.COLLECTION.every = collect_every
    collect_every = memory.COLLECTION.every
    # one data set for every model: Keras' own predict (used to label it) is not measured
    first = make_teacher(n_features=40, code_dim=8, n_classes=10, hidden=256)
    X, y, _, _ = make_conditions(first, n_conditions=1, rows_per_condition=100)
    del first

    def adapt(i):
        model = make_teacher(n_features=40, code_dim=8, n_classes=10, hidden=256,
                             random_state=i)
        CodeAdapter(model, max_iter=3).fit(X, y).predict(X)
        return weakref.ref(model)

    adapt(0)  # warm-up: imports, first traces, the backend's fixed pools
    full = {"n": 0, "seconds": 0.0, "start": 0.0}

    def count_full(phase, info):
        if info["generation"] != 2:
            return
        if phase == "start":
            full["start"] = time.perf_counter()
        else:
            full["n"] += 1
            full["seconds"] += time.perf_counter() - full["start"]

    gc.callbacks.append(count_full)
    rss, refs, start = {}, [], time.perf_counter()
    for i in range(1, n_models + 1):
        refs.append(adapt(i))
        if i in CHECKPOINTS or i == n_models:
            rss[i] = _rss_mb()
            if i == 1:
                heap_first = _heap_mb()
    seconds = time.perf_counter() - start
    heap_last = _heap_mb()
    gc.callbacks.remove(count_full)
    not_freed = sum(r() is not None for r in refs)
    gc.collect()
    gc.collect()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"backend": _backend.current().NAME, "collect_every": collect_every, "rss": rss,
            "load": load,
            "heap_in_use": heap_last[0] - heap_first[0], "heap_free": heap_last[1] - heap_first[1],
            "not_freed": not_freed, "alive": sum(r() is not None for r in refs),
            "full_collections": full["n"], "ms_per_model": 1e3 * seconds / n_models,
            "gc_ms_per_model": 1e3 * full["seconds"] / n_models,
            "n_models": n_models}


def many_models(n_models: int, backends: list[str], reference: bool,
                collect_every: int | None) -> None:
    # each backend's runs one after the other, at about the same load
    runs = [(b, every) for b in backends for every in [collect_every] + [0] * reference]
    results = []
    for backend, every in runs:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        cmd = [sys.executable, __file__, "--child", "--models", str(n_models)]
        cmd += [] if every is None else ["--collect-every", str(every)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            print(f"{backend}: the child failed\n{proc.stderr[-2000:]}")
            continue
        results.append(json.loads(lines[-1][len("RESULT "):]))
    checkpoints = [c for c in CHECKPOINTS if 1 < c < n_models] + [n_models]
    headers = (["backend", "skdc collects every", "RSS at model 1, MB"]
               + [f"+ at {c}" for c in checkpoints]
               + ["of which heap in use", "heap free (kept)", "not freed / alive",
                  "full GCs", "ms per model", "of which full GCs", "load"])
    rows = []
    for r in results:
        rss = {int(k): v for k, v in r["rss"].items()}
        every = r["collect_every"]
        rows.append([r["backend"], f"{every} compilations" if every else "never (reference)",
                     rss[1]]
                    + [rss[c] - rss[1] for c in checkpoints]
                    + [r["heap_in_use"], r["heap_free"], f"{r['not_freed']} / {r['alive']}",
                       r["full_collections"], r["ms_per_model"], r["gc_ms_per_model"],
                       r["load"]])
    print(f"distinct models: one warm-up, then {n_models} small models (40 features, code 8, "
          "256 hidden, 10 classes), each CodeAdapter(max_iter=3).fit + predict on 100 rows "
          "and dropped; no collection forced; growth of RSS from model 1 (MB); heap: glibc's "
          f"malloc at model {n_models} minus at model 1; not freed: dropped models still alive "
          "at the end, alive: after a full collection; load: load average at the run's end")
    print(_common.table(headers, rows))
    for r in results:
        if r["collect_every"]:
            growth = r["rss"][str(n_models)] - r["rss"]["1"]
            print(f"{r['backend']}: growth from model 1 to model {n_models}: {growth:.1f} MB "
                  f"(target <= 50 MB: {'met' if growth <= 50 else 'NOT met'}); alive after a "
                  f"full collection: {r['alive']} of {n_models}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fits", type=int, default=120)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--only", choices=["same", "many"], default=None)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--reference", action="store_true",
                        help="also run each backend with skdc's collection off")
    parser.add_argument("--collect-every", type=int, default=None,
                        help="compilations between skdc's collections (default: the backend's)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = many_models_child(args.models, args.collect_every)
        print("RESULT " + json.dumps(result), flush=True)
        return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"skdc measured: {_common.source()}; load average at start {load:.2f}\n", flush=True)
    if args.only != "many":
        same_model(args.fits)
    if args.only != "same":
        many_models(args.models, args.backends.split(","), args.reference, args.collect_every)
    _common.footer()


if __name__ == "__main__":
    main()
