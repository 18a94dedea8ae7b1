"""Wall time of ``evaluate`` with inner cross-validation on 2 workers, side by side.

Arabic digits' layout on synthetic data (``skdc._synthetic``): 30 conditions in 5
folds, so 24 training conditions a fold and ``inner_folds="auto"`` takes 4 inner folds;
methods ``codes``, ``si`` and ``shift`` with the fixed defaults (nested validation
chooses the codes' start per fold and k). skdc runs nested validation as one task per
(fold, inner fold), then the folds; the reference, as before 8d54b35, gives each fold
task its own nested validation (here: ``evaluate`` with no separate nested-validation
tasks, so each fold trains its inner folds lazily, one after another). The two
alternate, ``--repeats`` times each, in one process; the script prints each run's wall
seconds, the ratio of the medians, and whether both gave the same results.

    python benchmarks/bench_inner_cv.py
"""

import argparse
import statistics
import time
import warnings
from contextlib import nullcontext
from unittest import mock

import _common  # noqa: F401  (path and import order)

from skdc._synthetic import make_conditions, make_teacher
from skdc.evaluation import _protocol, evaluate


def _run(X, y, g, args, whole_folds: bool) -> tuple[float, dict]:
    no_inner_tasks = mock.patch.object(_protocol, "_inner_tasks", lambda splits, job: [])
    with warnings.catch_warnings(), (no_inner_tasks if whole_folds else nullcontext()):
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        out = evaluate(X, y, g, methods=["codes", "si", "shift"], shots=(0, 1, 2, 5),
                       folds=5, repeats=2, hidden_layer_sizes=(64, 64), max_epochs=args.epochs,
                       tune=False, n_jobs=args.jobs, random_state=0)
        return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--conditions", type=int, default=30)
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    teacher = make_teacher(n_features=args.features, shift=True, random_state=0)
    X, y, g = make_conditions(teacher, n_conditions=args.conditions,
                              rows_per_condition=args.rows, shift=True, random_state=1)[:3]
    names = {False: "tasks per inner fold", True: "whole folds (reference)"}
    seconds: dict = {name: [] for name in names.values()}
    results: dict = {name: [] for name in names.values()}
    for _ in range(args.repeats):
        for whole_folds, name in names.items():
            s, out = _run(X, y, g, args, whole_folds)
            seconds[name].append(s)
            results[name].append(out["methods"])
    print(f"{args.conditions} conditions of {args.rows} rows, 5 folds, inner_folds="
          f"{out['settings']['inner_folds']}, {args.jobs} workers, {args.epochs} epochs")
    print(f"{'scheduling':<26} {'seconds per run':<24} median")
    for name, values in seconds.items():
        print(f"{name:<26} {', '.join(f'{s:.1f}' for s in values):<24} "
              f"{statistics.median(values):.1f}")
    ratio = statistics.median(seconds[names[True]]) / statistics.median(seconds[names[False]])
    same = all(a == b for a, b in zip(*results.values(), strict=True))
    print(f"reference / tasks per inner fold: {ratio:.2f}x; same results: {same}")


if __name__ == "__main__":
    main()
