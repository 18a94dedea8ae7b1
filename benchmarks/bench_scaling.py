"""Fit time per iteration vs rows, code size and hidden width, against the eager recipe.

``CodeAdapter(optimizer="rms_sgd", learning_rate=0.1, tol=0, alpha=0)`` (the recipe's
algorithm) and the eager GradientTape recipe run the same number of iterations on the
same data; the table gives the whole fit's time divided by the iterations and the ratio
to the recipe. A skdc fit of ``k`` iterations also evaluates the feature part once and
scores its last code once (a forward and backward pass), which weighs in at few
iterations (1/2 extra at 2 iterations, 1/40 at 40). Both are warmed up per model and row
count (tracing and skdc's per-shape XLA compilation excluded). The eager recipe is
skipped above 100,000 rows (too slow and too large).

    python benchmarks/bench_scaling.py
    python benchmarks/bench_scaling.py --quick     # rows up to 1e5, fewer repeats
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import banner, code_model, eager_recipe, footer, make_data, ratio, skdc, table

# rows -> (iterations, batch_size, most runs): a few seconds of work per run at most sizes.
# 1e6 rows full batch would need ~20 GB (see bench_memory.py), so it runs in batches.
ROWS = {1_000: (40, None, 3), 10_000: (5, None, 3), 100_000: (2, None, 2),
        1_000_000: (1, 100_000, 1)}


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(model, X, y, iters, repeats, eager=True, batch_size=None):
    """Median seconds per iteration of skdc and of the eager recipe (nan when skipped)."""
    est = skdc.CodeAdapter(model, optimizer="rms_sgd", learning_rate=0.1, max_iter=iters,
                           tol=0.0, alpha=0.0, batch_size=batch_size)
    ours, ref = [], []
    for _ in range(repeats):  # interleaved: both see the same machine load
        ours.append(_time(lambda: est.fit(X, y)))
        if eager:
            ref.append(_time(lambda: eager_recipe(model, X, y, iters)))
    assert est.n_iter_ == iters
    t = statistics.median(ours) / iters
    r = statistics.median(ref) / iters if ref else float("nan")
    return t, r


def warm_up(model, X, y, batch_size=None, eager=True):
    """Trace and compile for this shape: skdc compiles its step per row-count bucket."""
    skdc.CodeAdapter(model, optimizer="rms_sgd", max_iter=1, tol=0.0, alpha=0.0,
                     batch_size=batch_size).fit(X, y)
    if eager:
        eager_recipe(model, X[:200], y[:200], 2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="rows up to 1e5; 2 repeats")
    parser.add_argument("--sweep-rows", type=int, default=2000,
                        help="rows of the code-size and width sweeps")
    parser.add_argument("--sweep-iters", type=int, default=10)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 2
    sizes = {k: v for k, v in ROWS.items() if not (args.quick and k > 100_000)}
    banner("Scaling: fit time per iteration",
           "rms_sgd (the recipe's algorithm) vs the eager recipe, same iterations; alpha=0, "
           "tol=0; median of the runs in the table (the two interleaved)")

    # -- rows -------------------------------------------------------------------
    model = code_model()
    X_all, y_all, _ = make_data(model, max(sizes), labels="random")  # time: label-blind
    rows = []
    for n, (iters, batch, most) in sizes.items():
        big = n > 100_000
        if not big:  # at 1e6 the batches of 1e5 rows reuse the shape compiled at 1e5
            warm_up(model, X_all[:n], y_all[:n])
        t, r = measure(model, X_all[:n], y_all[:n], iters, min(most, args.repeats),
                       eager=not big, batch_size=batch)
        setting = f"{iters} it" + (f", batch_size={batch:,}" if batch else ", full batch")
        rows.append([f"{n:,}", setting, min(most, args.repeats), t * 1e3, r * 1e3,
                     ratio(t, r), t / n * 1e6])
        print(f"rows {n:,}: {t * 1e3:.1f} ms/it", flush=True)
    del X_all, y_all
    print("\nSeed model (440 -> 3 x 512 + 50-d code -> 183), varying rows:\n")
    print(table(["rows", "iterations", "runs", "skdc ms/it", "eager ms/it", "ratio",
                 "skdc us/row/it"], rows))

    # -- code size and hidden width -------------------------------------------------
    sweeps = [("code size", {"code_dim": d}) for d in (10, 50, 200)]
    sweeps += [("hidden width", {"hidden": (w,) * 3}) for w in (128, 512, 1024)]
    rows, seen = [], {}
    for what, kw in sweeps:
        value = kw.get("code_dim", kw.get("hidden", (None,))[0])
        key = (kw.get("code_dim", 50), kw.get("hidden", (512,) * 3))
        if key not in seen:  # code 50 and width 512 are the same (seed) model: measure once
            model = code_model(**kw)
            X, y, _ = make_data(model, args.sweep_rows, labels="random")
            warm_up(model, X, y)
            seen[key] = measure(model, X, y, args.sweep_iters, args.repeats)
        t, r = seen[key]
        rows.append([what, value, t * 1e3, r * 1e3, ratio(t, r)])
        print(f"{what} {value}: {t * 1e3:.1f} ms/it", flush=True)
    print(f"\n{args.sweep_rows:,} rows, {args.sweep_iters} iterations; the other dimensions "
          "as in the seed model (code 50, width 512):\n")
    print(table(["varied", "value", "skdc ms/it", "eager ms/it", "ratio"], rows))
    footer()


if __name__ == "__main__":
    main()
