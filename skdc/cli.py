"""Command line: ``skdc demo`` and ``skdc evaluate``.

``skdc evaluate FILE.csv --label COL --group COL`` runs the protocol of
:mod:`skdc.evaluation` on a CSV table and prints a table of accuracy against the
number ``k`` of labelled adaptation rows (or units, with ``--unit``), and the error
reduction of every method versus ``si`` with its 95% paired-bootstrap interval;
``--normalize`` runs every method on normalised features; ``--json`` and ``--plot``
save the results.
Bad input exits with status 2, one line on stderr and no output file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from ._method_names import CODE_STARTS, METHOD_NAMES

__all__ = ["main"]

PROG = "skdc"
_DEMO_SETTINGS = dict(folds=4, repeats=2, shots=(0, 1, 2, 5, 10), inner_folds=1)


class InputError(Exception):
    """Bad input: reported as one line on stderr with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise InputError(message)


# -- evaluate -----------------------------------------------------------------------------


def _int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise InputError(f"{what} is empty")
    return values


def _read_table(args):
    """Features, labels, groups and units (None without ``--unit``) from the CSV named
    in ``args``, the feature names and how many incomplete rows were dropped."""
    import numpy as np
    import pandas as pd

    path = Path(args.file)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path} as CSV: {reason}") from None
    if frame.empty:
        raise InputError(f"{path} has no data rows")
    named = [("--label", args.label), ("--group", args.group)]
    if args.unit is not None:
        named.append(("--unit", args.unit))
    for option, column in named:
        if column not in frame.columns:
            raise InputError(f"{option} column {column!r} is not in {path.name} "
                             f"(columns: {', '.join(map(str, frame.columns))})")
    if args.features:
        features = [f.strip() for f in args.features.split(",") if f.strip()]
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise InputError(f"--features column(s) {', '.join(map(repr, missing))} not in "
                             f"{path.name}")
    else:
        features = [c for c in frame.columns if c not in [column for _, column in named]]
    if not features:
        raise InputError(f"{path.name} has no feature columns")
    for name in features:
        column = frame[name]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            example = column.dropna()
            example = f" (e.g. {example.iloc[0]!r})" if len(example) else ""
            raise InputError(f"feature column {name!r} is not numeric{example}; choose numeric "
                             "columns with --features")
    used = frame[[*features, *dict.fromkeys(column for _, column in named)]]
    complete = used.notna().all(axis=1).to_numpy()
    X = used[features].to_numpy(dtype=np.float64)[complete]
    if not np.all(np.isfinite(X)):
        raise InputError("feature columns contain infinite values")
    if args.log_features:
        if np.any(X <= 0):
            bad = features[int(np.argwhere(X <= 0)[0, 1])]
            raise InputError(f"--log-features: column {bad!r} has values <= 0")
        X = np.log(X)
    y = used[args.label].to_numpy()[complete]
    groups = used[args.group].to_numpy()[complete]
    units = None if args.unit is None else used[args.unit].to_numpy()[complete]
    return X, y, groups, units, features, int((~complete).sum())


def _check_output(path, option):
    if path is None:
        return None
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{option}: folder {path.parent} does not exist")
    if path.is_dir():
        raise InputError(f"{option}: {path} is a folder")
    return path


def _write_outputs(results, json_path, plot_path, title=None) -> list[str]:
    """Write JSON and PNG to temporary files beside their targets, then rename them into
    place: a failure while writing leaves no output file (and no temporary one)."""
    from .evaluation._report import plot_results, write_json

    notes, pending = [], []
    try:
        if json_path is not None:
            pending.append((_temp_beside(json_path), json_path))
            write_json(results, pending[-1][0])
        if plot_path is not None:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                notes.append(f"note: matplotlib is not installed; no plot written to {plot_path}"
                             ' (pip install "skdc[plot]")')
            else:
                pending.append((_temp_beside(plot_path), plot_path))
                plot_results(results, pending[-1][0], title=title)
        for tmp, final in pending:
            os.replace(tmp, final)
    finally:
        for tmp, _ in pending:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return notes


def _temp_beside(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def _evaluate(args) -> int:
    shots = _int_list(args.shots, "--shots")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if unknown or not methods:
        raise InputError(f"unknown method {unknown[0]!r} in --methods; choose from "
                         f"{', '.join(METHOD_NAMES)}" if unknown else "--methods is empty")
    hidden = _int_list(args.hidden, "--hidden")
    if min(hidden) < 1 or args.max_epochs < 1:
        raise InputError("--hidden sizes and --max-epochs must be positive")
    if args.jobs == 0:
        raise InputError("--jobs must be a positive number of processes, or negative "
                         "(-1: all cores)")
    if args.max_train_conditions is not None and args.max_train_conditions < 2:
        raise InputError("--max-train-conditions must be at least 2")
    _check_normalize_options(args)
    code_start = _code_start(args.code_start)
    json_path = _check_output(args.json, "--json")
    plot_path = _check_output(args.plot, "--plot")
    X, y, groups, units, features, dropped = _read_table(args)
    from .evaluation import evaluate, format_table
    from .evaluation._protocol import check_inputs

    normalizer = _normalizer(args)
    try:
        check_inputs(X, y, groups, shots, args.folds, args.repeats, methods, units,
                     args.normalize, normalizer)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if dropped:
        print(f"note: dropped {dropped} rows with a missing value", file=sys.stderr)
    try:  # what check_inputs cannot see (e.g. --inner-folds against a fold's conditions)
        results = evaluate(X, y, groups, shots=shots, folds=args.folds, repeats=args.repeats,
                           methods=methods, units=units, normalize=args.normalize,
                           normalizer=normalizer, hidden_layer_sizes=hidden,
                           max_epochs=args.max_epochs, tune=not args.no_tune,
                           max_train_conditions=args.max_train_conditions,
                           code_start=code_start, inner_folds=args.inner_folds,
                           random_state=args.random_state, progress=not args.quiet,
                           n_jobs=args.jobs)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    results["data"] = {"file": str(args.file), "label": args.label, "group": args.group,
                       "unit": args.unit, "features": features,
                       "log_features": bool(args.log_features)}
    what = "rows" if units is None else f"units ({args.unit})"
    print(f"{Path(args.file).name}: {results['n_rows']} rows"
          f"{'' if units is None else ', ' + str(results['n_units']) + ' units'}, "
          f"{results['n_conditions']} conditions ({args.group}), {results['n_classes']} "
          f"classes ({args.label}), {len(features)} features"
          f"{' (log)' if args.log_features else ''}")
    if args.normalize:
        setting = results["settings"]["normalizer"]
        tau = setting["tau"] if setting["tau"] == "auto" else f"{setting['tau']:g} rows"
        print(f"features normalised per {args.normalize} (kind {setting['kind']}, tau {tau}) "
              "before every method")
    print(f"{args.folds} condition-disjoint folds, {args.repeats} repeats; accuracy (%) on "
          f"each held-out condition's other {what}, mean ± 95% interval over conditions\n")
    print(format_table(results))
    print(f"\n{results['seconds']:.0f} s")
    for note in _write_outputs(results, json_path, plot_path):
        print(note, file=sys.stderr)
    return 0


def _code_start(value: str) -> str | list[str]:
    """``--code-start``: ``auto``, one start, or several comma-separated."""
    starts = [s.strip() for s in value.split(",")]
    bad = [s for s in starts if s not in CODE_STARTS and not (s == "auto" and len(starts) == 1)]
    if bad:
        raise InputError(f"unknown code start {bad[0]!r} in --code-start; give auto or one or "
                         f"more of {', '.join(CODE_STARTS)}")
    return starts[0] if len(starts) == 1 else starts


def _check_normalize_options(args) -> None:
    """The normalisation options fit together (before any data is read)."""
    if args.normalize is None and (args.normalize_kind or args.normalize_tau is not None):
        raise InputError("--normalize-kind and --normalize-tau need --normalize")
    if args.normalize == "utterance" and args.unit is None:
        raise InputError("--normalize utterance needs --unit (the column of utterances)")


def _inner_folds(text: str):
    """``--inner-folds``: a positive whole number, or ``auto``."""
    if text == "auto":
        return text
    try:
        folds = int(text)
    except ValueError:
        folds = 0
    if folds < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number or 'auto', got "
                                         f"{text!r}")
    return folds


def _tau(text: str):
    """``--normalize-tau``: a non-negative number of rows, or ``auto``."""
    if text == "auto":
        return text
    try:
        tau = float(text)
    except ValueError:
        tau = float("nan")
    if not tau >= 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number of rows or 'auto', "
                                         f"got {text!r}")
    return tau


def _normalizer(args):
    """The ConditionNormalizer of ``--normalize-kind`` and ``--normalize-tau``, or None
    (evaluate's default) when neither is given."""
    if args.normalize is None or (args.normalize_kind is None and args.normalize_tau is None):
        return None
    from .evaluation._normalisation import default_normalizer

    normalizer = default_normalizer(args.normalize)
    if args.normalize_kind is not None:
        normalizer.set_params(kind=args.normalize_kind)
    if args.normalize_tau is not None:
        normalizer.set_params(tau=args.normalize_tau)
    return normalizer


# -- demo ---------------------------------------------------------------------------------


def _synthetic_demo(args: argparse.Namespace) -> int:
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


def _demo(args: argparse.Namespace) -> int:
    if args.synthetic:
        return _synthetic_demo(args)
    try:
        import parselmouth  # noqa: F401
    except ImportError:
        print('note: the Peterson & Barney demo needs praat-parselmouth (pip install '
              '"skdc[datasets]"); running the synthetic demo instead.', file=sys.stderr)
        return _synthetic_demo(args)
    import numpy as np

    from .datasets import load_peterson_barney
    from .evaluation import evaluate, format_table

    plot_path = _check_output(args.plot, "--plot")
    start = time.perf_counter()
    pb = load_peterson_barney()
    s = _DEMO_SETTINGS
    print("Peterson & Barney (1952): 1520 vowels, 76 speakers, 10 vowels; log F0-F3.")
    print("Each held-out speaker adapts from k labelled vowels; accuracy on its other vowels.")
    print(f"Demo settings (to stay under 3 minutes on 2 cores): {s['folds']} speaker-disjoint "
          f"folds, {s['repeats']} repeats, every method with its fixed default (chosen by "
          "nested validation on Hillenbrand; the codes' prior strength by the evidence), "
          "the codes' start chosen per fold and k by nested validation on one split, "
          "folds in parallel. The full protocol: skdc evaluate (10 folds, 5 repeats, "
          "settings tuned by nested validation).\n")
    results = evaluate(np.log(pb.data), pb.target, pb.groups, shots=s["shots"],
                       folds=s["folds"], repeats=s["repeats"], tune=False,
                       inner_folds=s["inner_folds"],
                       random_state=args.random_state, progress=True, n_jobs=-1)
    print(format_table(results))
    print(f"\n{time.perf_counter() - start:.0f} s")
    for note in _write_outputs(results, None, plot_path,
                               title="Peterson & Barney: k-shot speaker adaptation"):
        print(note, file=sys.stderr)
    if plot_path is not None and plot_path.exists():
        print(f"plot: {plot_path}")
    return 0


# -- entry point --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG,
                     description="Fast adaptation of Keras models with condition codes.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="k-shot speaker adaptation on Peterson & Barney vowels")
    demo.add_argument("--plot", default="skdc_demo.png", help="PNG plot (default: %(default)s)")
    demo.add_argument("--synthetic", action="store_true",
                      help="the quick synthetic demo (a known network) instead")
    demo.add_argument("--random-state", type=int, default=0)
    demo.set_defaults(func=_demo)

    ev = sub.add_parser("evaluate", help="compare adaptation methods on a CSV table")
    ev.add_argument("file", help="CSV file with a header row")
    ev.add_argument("--label", required=True, help="column of class labels")
    ev.add_argument("--group", required=True, help="column of conditions (e.g. speaker)")
    ev.add_argument("--unit", metavar="COL",
                    help="column of units (e.g. utterance): k counts units, a unit is scored "
                         "whole (default: every row is a unit)")
    ev.add_argument("--features", help="comma-separated feature columns (default: all others)")
    ev.add_argument("--log-features", action="store_true", help="take the log of the features")
    ev.add_argument("--shots", default="0,1,2,5,10", help="values of k (default: %(default)s)")
    ev.add_argument("--folds", type=int, default=10, help="condition-disjoint folds")
    ev.add_argument("--repeats", type=int, default=5, help="draws of adaptation rows per k")
    ev.add_argument("--methods", default=",".join(METHOD_NAMES),
                    help="comma-separated methods (default: all)")
    ev.add_argument("--hidden", default="64,64", help="hidden layer sizes (default: 64,64)")
    ev.add_argument("--max-epochs", type=int, default=200,
                    help="training epochs of every network (default: %(default)s)")
    ev.add_argument("--no-tune", action="store_true",
                    help="fixed priors instead of nested validation")
    ev.add_argument("--max-train-conditions", type=int, default=None, metavar="N",
                    help="train each fold's networks on N of its training conditions "
                         "(a nested draw; default: all)")
    ev.add_argument("--normalize", choices=("utterance", "speaker"), default=None,
                    help="normalise features before every method: each unit with its own "
                         "rows, or each condition with its k adaptation units (training "
                         "conditions with k units drawn at random)")
    ev.add_argument("--normalize-kind", choices=("mean", "meanvar"), default=None,
                    help="subtract the mean (default), or also divide by the standard "
                         "deviation")
    ev.add_argument("--normalize-tau", type=_tau, default=None, metavar="ROWS",
                    help="shrink toward the global statistics by this many rows, or 'auto' "
                         "(empirical Bayes; default: auto per speaker, 0 per utterance)")
    ev.add_argument("--code-start", default="auto", metavar="START",
                    help="where the coded networks start: auto (scratch or shift_sat, "
                         "chosen per fold and k by nested validation; the default), or "
                         f"one or more of {', '.join(CODE_STARTS)}, comma-separated")
    ev.add_argument("--inner-folds", type=_inner_folds, default="auto", metavar="N",
                    help="nested validation holds out a quarter of each fold's training "
                         "conditions (1), or cross-validates over N parts, every training "
                         "condition validating once; auto (the default): 4 when that "
                         "quarter is fewer than 20 conditions, else 1")
    ev.add_argument("--json", help="write the results as JSON")
    ev.add_argument("--plot", help="write a PNG plot of accuracy against k")
    ev.add_argument("--random-state", type=int, default=0)
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--jobs", type=int, default=-1,
                    help="folds run in parallel in this many processes (default: all cores)")
    ev.set_defaults(func=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``skdc`` console script."""
    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except InputError as exc:
        command = f"{PROG} {args.command}" if "args" in locals() else PROG
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
