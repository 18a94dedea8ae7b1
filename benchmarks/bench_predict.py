"""``predict_proba`` throughput against Keras' ``model.predict`` and a compiled direct call.

All cases compute the seed model's class probabilities for the same float32 rows with one
code: ``CodeAdapter.predict_proba(X)`` (fitted, one tied code); ``model.predict`` with the
code tiled to the rows (batch 32, Keras' default, and batch 2000); and the reference, a
``tf.function`` calling the model on all rows at once with the code tiled inside. Each is
called once untimed, then timed round-robin (3 x ``--repeats`` runs at up to 10,000 rows,
``--repeats`` above; the slow batch-32 ``model.predict`` runs once, without the untimed
call, above 10,000 rows); rows/s from the median.

    python benchmarks/bench_predict.py
    python benchmarks/bench_predict.py --quick      # 2,000 and 20,000 rows
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import banner, code_model, footer, forward_fn, make_data, np, ratio, skdc, table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 100_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats = [2000, 20_000], 3
    model = code_model()
    X_all, y_all, _ = make_data(model, max(args.rows))
    est = skdc.CodeAdapter(model, max_iter=5, tol=0.0).fit(X_all[:500], y_all[:500])
    code = est.code_.astype(np.float32)[None, :]
    forward = forward_fn(model)
    banner("predict_proba throughput",
           "seed model (440 -> 3 x 512 + 50-d code -> 183); float32 rows; one tied code; "
           "median of the runs in the table")

    out_rows = []
    hits = []
    for n in args.rows:
        X = X_all[:n]
        small = n <= 10_000
        reps = args.repeats * 3 if small else args.repeats
        cases = {  # name: (call, timed runs, untimed warm-up first)
            "CodeAdapter.predict_proba": (lambda X=X: est.predict_proba(X), reps, True),
            "model.predict, batch 32": (lambda X=X: model.predict(
                [X, np.repeat(code, len(X), axis=0)], verbose=0), reps if small else 1, small),
            "model.predict, batch 2000": (lambda X=X: model.predict(
                [X, np.repeat(code, len(X), axis=0)], batch_size=2000, verbose=0), reps, True),
            "tf.function direct call (reference)": (lambda X=X: forward(X, code).numpy(), reps,
                                                    True),
        }
        times = {name: [] for name in cases}
        values = {}
        for name, (fn, _, warm) in cases.items():
            if warm:
                values[name] = fn()
        for i in range(max(r for _, r, _ in cases.values())):
            for name, (fn, r, _) in cases.items():  # round-robin
                if i < r:
                    t0 = time.perf_counter()
                    values[name] = fn()
                    times[name].append(time.perf_counter() - t0)
        ref_name = "tf.function direct call (reference)"
        t_ref = statistics.median(times[ref_name])
        for name in cases:
            t = statistics.median(times[name])
            err = float(np.abs(np.asarray(values[name]) - values[ref_name]).max())
            speed = ratio(t_ref, t)
            out_rows.append([f"{n:,}", name, len(times[name]), t * 1e3, n / t, speed,
                             f"{err:.1e}"])
            if name.startswith("CodeAdapter"):
                hits.append((n, speed))
        print(f"rows {n:,} done", flush=True)
    print(table(["rows", "case", "runs", "median ms", "rows/s", "throughput ratio to direct call",
                 "max |p - p_ref|"], out_rows))
    ok = all(s >= 0.8 for _, s in hits)
    figures = ", ".join(f"{s:.2f} x at {n:,} rows" for n, s in hits)
    print(f"\nTarget predict_proba >= 0.8 x the direct call: {'met' if ok else 'NOT met'} "
          f"({figures})")
    footer()


if __name__ == "__main__":
    main()
