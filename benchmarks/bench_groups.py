"""One vectorized ``fit(X, y, groups=g)`` against a Python loop of single-group fits.

A smaller model (40 features -> 2 x 128 sigmoid + 8-d code -> 10 softmax) and many small
conditions: every group has its own true code and 10 rows labelled by the model at that
code. Both sides use the same settings (adam, ``max_iter=50``, ``tol=0``, alpha=1), and
the loop fits a ``clone`` per group as a user would. The 1,000-group loop is timed on its
first ``--loop-sample`` groups and extrapolated linearly (said so in the table); the
200-group check times the whole loop. Peak memory of the grouped fit is the largest RSS
seen by a sampling thread (every 5 ms) above the RSS before the fit.

    python benchmarks/bench_groups.py
    python benchmarks/bench_groups.py --quick      # 200 groups, loop sample 20
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import psutil
from _common import banner, code_model, footer, np, ratio, skdc, table
from sklearn.base import clone


def grouped_data(model, n_groups, rows_per_group, seed=0):
    rng = np.random.default_rng(seed)
    n_features = int(model.inputs[0].shape[-1])
    d = int(model.inputs[1].shape[-1])
    codes = rng.standard_normal((n_groups, d)).astype(np.float32)
    groups = np.repeat(np.arange(n_groups), rows_per_group)
    X = rng.standard_normal((len(groups), n_features), dtype=np.float32)
    p = np.asarray(model([X, codes[groups]], training=False), dtype=np.float64)
    u = rng.random((len(p), 1))
    y = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), p.shape[1] - 1).astype(np.int32)
    return X, y, groups


class PeakRSS:
    """Largest RSS above the starting RSS, sampled in a thread while the block runs."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.done.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.extra = self.peak - self.start


def time_loop(base, X, y, groups, which):
    t0 = time.perf_counter()
    codes = {}
    for g in which:
        rows = groups == g
        codes[g] = clone(base).fit(X[rows], y[rows]).code_
    return time.perf_counter() - t0, codes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--rows-per-group", type=int, default=10)
    parser.add_argument("--loop-sample", type=int, default=50)
    parser.add_argument("--check-groups", type=int, default=200)
    parser.add_argument("--max-iter", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 groups, loop sample 20")
    args = parser.parse_args(argv)
    if args.quick:
        args.groups, args.loop_sample, args.check_groups = 200, 20, 50
    model = code_model(n_features=40, hidden=(128, 128), code_dim=8, n_classes=10)
    X, y, groups = grouped_data(model, args.groups, args.rows_per_group)
    base = skdc.CodeAdapter(model, optimizer="adam", max_iter=args.max_iter, tol=0.0)
    banner("Many groups: one vectorized fit vs a loop of single fits",
           f"40 features -> 2 x 128 sigmoid + 8-d code -> 10 softmax; {args.groups:,} groups "
           f"x {args.rows_per_group} rows; adam, max_iter={args.max_iter}, tol=0, alpha=1; "
           f"median of {args.repeats} runs after a warm-up on the same shape")

    # warm-up: trace the engine (shared by the model's every estimator); the grouped fits
    # warm up again on their own row count (skdc compiles per shape bucket above 1,024 rows)
    clone(base).fit(X[:10], y[:10])

    def grouped(n_groups):
        rows = groups < n_groups
        clone(base).fit(X[rows], y[rows], groups=groups[rows])  # warm-up: this shape
        times, peak, est = [], 0, None
        for _ in range(args.repeats):
            est = clone(base)
            with PeakRSS() as mem:
                t0 = time.perf_counter()
                est.fit(X[rows], y[rows], groups=groups[rows])
                times.append(time.perf_counter() - t0)
            peak = max(peak, mem.extra)
        return statistics.median(times), peak, est, int(rows.sum())

    out = []
    # -- all groups vs an extrapolated loop ---------------------------------------
    t_all, peak_all, est_all, n_all = grouped(args.groups)
    sample = np.arange(args.loop_sample)
    loops = [time_loop(base, X, y, groups, sample) for _ in range(args.repeats)]
    t_sample = statistics.median(t for t, _ in loops)
    t_loop = t_sample * args.groups / args.loop_sample
    codes = loops[-1][1]
    diff = max(float(np.abs(est_all.codes_[g] - codes[g]).max()) for g in sample)
    out.append([f"{args.groups:,} groups, one fit(groups=g)", t_all, n_all / t_all,
                peak_all / 2**20, ratio(t_all, t_loop)])
    out.append([f"{args.groups:,} groups, loop of single fits (EXTRAPOLATED from "
                f"{args.loop_sample} groups x {args.groups // args.loop_sample})", t_loop,
                n_all / t_loop, float("nan"), 1.0])
    print(f"{args.groups} groups done", flush=True)

    # -- the check: 200 groups, whole loop -------------------------------------
    t_chk, peak_chk, _, n_chk = grouped(args.check_groups)
    loop_times = [time_loop(base, X, y, groups, np.arange(args.check_groups))[0]
                  for _ in range(max(1, args.repeats - 2))]
    t_chk_loop = statistics.median(loop_times)
    out.append([f"{args.check_groups} groups, one fit(groups=g)", t_chk, n_chk / t_chk,
                peak_chk / 2**20, ratio(t_chk, t_chk_loop)])
    out.append([f"{args.check_groups} groups, loop of {args.check_groups} single fits "
                f"(measured, {len(loop_times)} run{'s' * (len(loop_times) > 1)})", t_chk_loop,
                n_chk / t_chk_loop, float("nan"), 1.0])

    print()
    print(table(["case", "time (s)", "rows/s", "peak extra RSS (MiB)", "ratio to loop"], out))
    r = ratio(t_chk, t_chk_loop)
    print(f"\nGrouped codes equal the single fits' codes: max |difference| {diff:.1e} over "
          f"{args.loop_sample} groups.")
    print(f"Target {args.check_groups} groups in one fit <= 0.1 x the loop: "
          f"{'met' if r <= 0.1 else 'NOT met'} ({r:.3f} x)")
    footer()


if __name__ == "__main__":
    main()
