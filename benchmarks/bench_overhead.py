"""Fixed cost of a fit: the 2nd...20th fit on the same model with tiny data.

Fits of 20 rows with ``max_iter=1, tol=0`` cost next to nothing in arithmetic, so their
time is skdc's overhead per fit (validation, tensors, engine look-up, Python). Cases:
refitting the same estimator; a ``sklearn.base.clone`` for each fit (as grid search and
cross-validation do); a different row count for each fit (10..200 rows: a retrace would
show here; the tracing counters of the engine's compiled functions are reported); and a
few fits of 1,100..6,000 rows, each row count new, then the same again (skdc pads rows to
shape buckets above 1,024 rows and compiles the step with XLA per bucket). The
reference is a compiled direct call of the model (``tf.function``) on the same 20 rows,
and a compiled forward-and-gradient step with respect to a tied code.

    python benchmarks/bench_overhead.py
    python benchmarks/bench_overhead.py --quick      # 10 fits per case
    python benchmarks/bench_overhead.py --profile    # also print where a fit's time goes
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

from _common import (
    banner,
    code_model,
    footer,
    forward_fn,
    keras,
    make_data,
    np,
    ratio,
    skdc,
    table,
    tf,
)
from sklearn.base import clone


def _times(fn, args_list):
    out = []
    for a in args_list:
        t0 = time.perf_counter()
        fn(a)
        out.append(time.perf_counter() - t0)
    return out


def _tracing_count(est):
    """Compilations so far of the engine's functions (a read-only look inside)."""
    return est._engine.traces()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fits", type=int, default=20, help="fits per case (first is warm-up)")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--xla-rows", type=int, nargs="+",
                        default=[1100, 1500, 2100, 3000, 4100, 6000],
                        help="row counts of the large varying-rows case")
    parser.add_argument("--quick", action="store_true", help="10 fits per case")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.fits = 10
    model = code_model()
    X, y, _ = make_data(model, 200)
    Xs, ys = X[: args.rows], y[: args.rows]
    banner("Fixed overhead per fit",
           f"seed model (440 -> 3 x 512 + 50-d code -> 183); {args.rows} rows; "
           f"optimizer={args.optimizer}, max_iter=1, tol=0; median over fits 2..{args.fits} "
           "on the same model")

    est = skdc.CodeAdapter(model, optimizer=args.optimizer, max_iter=1, tol=0.0)
    t0 = time.perf_counter()
    est.fit(Xs, ys)
    first = time.perf_counter() - t0
    traced_after_first = _tracing_count(est)
    k = args.fits - 1

    refit = _times(lambda _: est.fit(Xs, ys), range(k))
    cloned = _times(lambda _: clone(est).fit(Xs, ys), range(k))
    before = _tracing_count(est)
    sizes = np.linspace(10, 200, k).astype(int)
    varying = _times(lambda n: est.fit(X[:n], y[:n]), sizes)
    retraces = _tracing_count(est) - before
    # rows above skdc's XLA threshold: a row count in a new shape bucket compiles again
    big_sizes = [int(v) for v in args.xla_rows]
    X_big, y_big, _ = make_data(model, max(big_sizes), labels="random")
    new_shape = _times(lambda n: est.fit(X_big[:n], y_big[:n]), big_sizes)
    traced_big = _tracing_count(est) - before - retraces
    same_shape = _times(lambda n: est.fit(X_big[:n], y_big[:n]), big_sizes)
    longer = clone(est).set_params(max_iter=21)
    longer.fit(Xs, ys)
    t21 = _times(lambda _: longer.fit(Xs, ys), range(k))
    t1 = _times(lambda _: est.fit(Xs, ys), range(k))
    per_iter = (statistics.median(t21) - statistics.median(t1)) / 20

    forward = forward_fn(model)
    xt = tf.constant(Xs)
    code = tf.zeros((1, int(model.inputs[1].shape[-1])))
    yt = tf.constant(ys)

    @tf.function
    def step(code):
        with tf.GradientTape() as tape:
            tape.watch(code)
            p = forward(xt, code)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(yt, p))
        return loss, tape.gradient(loss, code)

    forward(xt, code)
    step(code)
    direct = _times(lambda _: forward(xt, code).numpy(), range(k))
    direct_step = _times(lambda _: [t.numpy() for t in step(code)], range(k))

    ref = statistics.median(direct)
    rows = [
        ["first fit (traces the engine)", first * 1e3, float("nan"), float("nan"),
         traced_after_first],
        ["refit, same estimator", statistics.median(refit) * 1e3, max(refit) * 1e3,
         ratio(statistics.median(refit), ref), 0],
        ["clone(est).fit", statistics.median(cloned) * 1e3, max(cloned) * 1e3,
         ratio(statistics.median(cloned), ref), 0],
        [f"refit, rows {sizes[0]}..{sizes[-1]} varying", statistics.median(varying) * 1e3,
         max(varying) * 1e3, ratio(statistics.median(varying), ref), retraces],
        [f"fit, rows {big_sizes[0]:,}..{big_sizes[-1]:,}, each a new row count",
         statistics.median(new_shape) * 1e3, max(new_shape) * 1e3,
         ratio(statistics.median(new_shape), ref), traced_big],
        ["  the same fits again (same row counts)", statistics.median(same_shape) * 1e3,
         max(same_shape) * 1e3, ratio(statistics.median(same_shape), ref), 0],
        ["per extra iteration: (fit max_iter=21 - fit max_iter=1) / 20", per_iter * 1e3,
         float("nan"), ratio(per_iter, ref), 0],
        ["direct compiled model call (reference)", ref * 1e3, max(direct) * 1e3, 1.0, 0],
        ["direct compiled forward + code gradient", statistics.median(direct_step) * 1e3,
         max(direct_step) * 1e3, ratio(statistics.median(direct_step), ref), 0],
    ]
    print(table(["case", "median ms", "max ms", "ratio to direct call", "traces"], rows))
    worst = max(statistics.median(v) for v in (refit, cloned)) * 1e3
    print(f"\nTarget <= 50 ms per fit ({args.rows} rows, refit and clone): "
          f"{'met' if worst <= 50 else 'NOT met'} (slower median {worst:.1f} ms). The "
          f"varying-rows case fits up to {sizes[-1]} rows, so it includes more arithmetic; "
          f"{retraces} retrace(s) there.")
    extra = statistics.median(np.subtract(new_shape, same_shape))
    print(f"A new row count of {big_sizes[0]:,}..{big_sizes[-1]:,} rows costs "
          f"{extra * 1e3:,.0f} ms more than a repeated one (median over {len(big_sizes)} "
          "sizes): compilation per shape, which the tracing counter does not see.")

    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(10):
            clone(est).fit(Xs, ys)
        prof.disable()
        print("\nWhere 10 clone+fit calls spend their time (cumulative, top 25):")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    footer()


if __name__ == "__main__":
    main()
