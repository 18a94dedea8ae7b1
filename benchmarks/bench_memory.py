"""Peak memory (RSS) of a large fit, against the size of the data itself.

Every case runs in a fresh subprocess so that peaks do not mix. The child builds the seed
model, notes its RSS (the runtime: Python, TensorFlow, the model), makes the data (random
rows, random labels: memory does not depend on them), runs the case, and reports the
process's peak RSS (``resource.getrusage(...).ru_maxrss``). "Over runtime" is that peak
minus the runtime's RSS, i.e. what the data and the fit added; the target compares it with
the data's size plus 1 GB.

    python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --quick          # 100,000 rows
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

GB = 1024**3

CASES = {
    # name: (what it runs, dtype of X, batch_size, max_iter, rows multiplier)
    "data only (no fit)": ("none", "float32", None, 0, 1.0),
    "fit, float32 X, batch_size=8192, max_iter=2": ("fit", "float32", 8192, 2, 1.0),
    "fit, float64 X, batch_size=8192, max_iter=1": ("fit", "float64", 8192, 1, 1.0),
    "predict_proba, float32 X": ("predict", "float32", None, 0, 1.0),
    "fit, float32 X, full batch, max_iter=2 (1/10 of the rows)": ("fit", "float32", None, 2,
                                                                  0.1),
}


def child(spec):
    import resource

    import psutil
    from _common import code_model, np, skdc

    proc = psutil.Process()
    model = code_model()
    runtime = proc.memory_info().rss
    rng = np.random.default_rng(0)
    n = spec["rows"]
    X = rng.standard_normal((n, 440), dtype=np.dtype(spec["dtype"]))
    y = rng.integers(0, 183, n).astype(np.int32)
    with_data = proc.memory_info().rss
    t0 = time.perf_counter()
    if spec["kind"] == "fit":
        est = skdc.CodeAdapter(model, optimizer="adam", max_iter=spec["max_iter"], tol=0.0,
                               batch_size=spec["batch_size"], random_state=0)
        est.fit(X, y)
    elif spec["kind"] == "predict":
        est = skdc.CodeAdapter(model, max_iter=1, tol=0.0).fit(X[:100], y[:100])
        est.predict_proba(X)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"runtime": runtime, "with_data": with_data, "peak": peak,
                      "data": X.nbytes + y.nbytes, "seconds": seconds}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--cases", nargs="+", type=int, default=None,
                        help="indices of the cases to run (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    if args.quick:
        args.rows = 100_000

    from _common import banner, footer, table

    banner("Peak memory of a large fit",
           f"seed model (440 -> 3 x 512 + 50-d code -> 183); {args.rows:,} rows x 440 "
           "features; optimizer adam; each case in a fresh subprocess")
    rows, verdicts = [], []
    for i, (name, (kind, dtype, batch, iters, share)) in enumerate(CASES.items()):
        if args.cases is not None and i not in args.cases:
            continue
        spec = {"kind": kind, "dtype": dtype, "batch_size": batch, "max_iter": iters,
                "rows": int(args.rows * share)}
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                               json.dumps(spec)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", flush=True)
            rows.append([name, f"{spec['rows']:,}", "failed", "", "", "", "", ""])
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        over = r["peak"] - r["runtime"]
        fit_extra = r["peak"] - r["with_data"]
        rows.append([name, f"{spec['rows']:,}", r["data"] / GB, r["runtime"] / GB,
                     r["peak"] / GB, over / GB, fit_extra / GB, r["seconds"]])
        if kind != "none":
            verdicts.append((name, over <= r["data"] + GB, over / GB, (r["data"] + GB) / GB,
                             r["peak"] / GB, batch is not None))
        print(f"{name}: peak {r['peak'] / GB:.2f} GB", flush=True)
    print()
    print(table(["case", "rows", "data GB", "runtime RSS GB", "peak RSS GB",
                 "over runtime GB", "over runtime+data GB", "case s"], rows))
    print()
    for name, ok, over, limit, peak, target in verdicts:
        what = "Target" if target else "For information (the target is for batched fits)"
        print(f"{what}: (peak - runtime) <= data + 1 GB for '{name}': "
              f"{'met' if ok else 'NOT met'} ({over:.2f} GB vs {limit:.2f} GB; "
              f"raw peak RSS {peak:.2f} GB)")
    footer()


if __name__ == "__main__":
    main()
