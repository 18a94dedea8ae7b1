"""Command line: ``skdc demo`` and ``skdc evaluate``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from ._adapter import CodeAdapter
    from ._synthetic import make_conditions, make_teacher

    teacher = make_teacher(random_state=args.random_state)
    X, y, groups, _ = make_conditions(teacher, n_conditions=20, rows_per_condition=60,
                                      random_state=args.random_state + 1)
    print("Synthetic problem: 20 new conditions of a known network (6 features, 4 classes,")
    print("3-d code); each condition adapts from k labelled rows, scored on its last 40 rows.\n")
    print(f"{'k':>3}  {'unadapted':>9}  {'adapted':>8}")
    for k in (1, 2, 5, 10, 20):
        adapt = np.concatenate([np.flatnonzero(groups == g)[:k] for g in range(20)])
        test = np.concatenate([np.flatnonzero(groups == g)[20:] for g in range(20)])
        adapter = CodeAdapter(teacher, optimizer="lbfgs", random_state=args.random_state)
        adapter.fit(X[adapt], y[adapt], groups=groups[adapt])
        before = np.mean(adapter.predict(X[test]) == y[test])  # unseen group: initial code
        after = adapter.score(X[test], y[test], groups=groups[test])
        print(f"{k:>3}  {before:>9.3f}  {after:>8.3f}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skdc", description="Fast adaptation of Keras models with condition codes."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="adapt a known network to new conditions")
    demo.add_argument("--random-state", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skdc`` console script."""
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
