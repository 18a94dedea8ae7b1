"""What the speech examples share: the codes' options (``--input-shift``, ``--shift-estimate``,
``--shift-covariance``, ``--prior-shrinkage``, ``--training``, ``--code-start``,
``--posterior``, ``--alpha``),
augmented training speakers (``--speed``, ``--vtlp``), several seeds pooled (``--seed
0,1,2``) and the training-speaker curve, how many training speakers codes need, per seed
and on average (``--train-speakers``)."""

import argparse

import numpy as np

from skdc.evaluation import METHODS, compare, format_comparison, format_table, pool_seeds


def add_code_arguments(parser: argparse.ArgumentParser) -> None:
    """The codes' options of :func:`skdc.evaluation.evaluate`, for ``code_options``."""
    parser.add_argument("--input-shift", default="none",
                        help="the codes' input-level part: none, full, or the features per "
                             "frame (13 for 13 MFCCs stacked over context frames)")
    parser.add_argument("--shift-estimate", choices=["learned", "empirical_bayes"],
                        default="learned",
                        help="how the shift part of --input-shift is found: by backprop, or "
                             "in closed form from the labelled rows and held there")
    parser.add_argument("--shift-covariance", choices=["diag", "full"], default="diag",
                        help="the feature shift's empirical-Bayes prior (shift, shift_sat): "
                             "a shrinkage per feature, or full covariance matrices")
    parser.add_argument("--prior-shrinkage", default="0.001",
                        help="of the codes' prior covariance: a number, oas or ledoit_wolf")
    parser.add_argument("--training", choices=["joint", "staged", "episodic"],
                        default="joint",
                        help="how the coded networks learn: with the codes, the network "
                             "without codes first then frozen (staged), or episodically")
    parser.add_argument("--code-start", default="auto",
                        help="where the coded networks start: their own weights (scratch), "
                             "the SI network trained on with the codes (si) or kept fixed "
                             "(frozen_si), or the shift method's network, codes on top of "
                             "the feature shift (shift_sat); several, comma-separated, or "
                             "auto (scratch,shift_sat): nested validation chooses per fold")
    parser.add_argument("--inner-folds", type=_inner_folds, default="auto",
                        help="nested validation: 1 holds out a quarter of a fold's training "
                             "speakers; more cross-validates over that many parts, every "
                             "training speaker validating once; auto (the default): 4 when "
                             "that quarter is fewer than 20 speakers, else 1")
    parser.add_argument("--posterior", choices=["map", "laplace"], default="map",
                        help="codes predict with their MAP estimate or average over their "
                             "Laplace posterior")
    parser.add_argument("--alpha", default=None, type=_alpha,
                        help="fix the codes' prior strength (with the default regularisation "
                             "of the training codes): a positive number, or evidence (by "
                             "evidence maximisation, the default's)")


def _alpha(value: str):
    if value == "evidence":
        return value
    try:
        alpha = float(value)
    except ValueError:
        alpha = float("nan")
    if not (np.isfinite(alpha) and alpha > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number or evidence, got {value!r}")
    return alpha


def _inner_folds(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return _positive_int(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number or auto, got "
                                         f"{value!r}") from None


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {value!r}")
    return number


def add_augment_arguments(parser: argparse.ArgumentParser) -> None:
    """More voices than speakers: the loaders' ``augment`` (see ``augment_options``)."""
    parser.add_argument("--speed", default=None,
                        help="comma-separated speed factors (e.g. 0.9,1.1): a speed-perturbed "
                             "copy of every training speaker per factor, each its own condition")
    parser.add_argument("--vtlp", default=None,
                        help="comma-separated vocal-tract-length warping factors, the same way")


def augment_options(args) -> dict | None:
    """The loaders' ``augment`` from ``--speed`` and ``--vtlp`` (None: neither)."""
    augment = {kind: [float(f) for f in value.split(",")]
               for kind, value in (("speed", args.speed), ("vtlp", args.vtlp)) if value}
    return augment or None


def code_options(args) -> dict:
    """``evaluate`` keywords from the options of :func:`add_code_arguments`."""
    shift = args.input_shift
    shrinkage = args.prior_shrinkage
    return {
        "input_shift": None if shift == "none" else shift if shift == "full" else int(shift),
        "shift_estimate": args.shift_estimate,
        "shift_covariance": args.shift_covariance,
        "prior_shrinkage": shrinkage if shrinkage in ("oas", "ledoit_wolf") else float(shrinkage),
        "training": args.training,
        "code_start": (args.code_start if "," not in args.code_start
                       else args.code_start.split(",")),
        "posterior": None if args.posterior == "map" else args.posterior,
        "inner_folds": args.inner_folds,
    }


def with_alpha(args, method_params: dict | None) -> dict | None:
    """``method_params`` with, under ``--alpha``, the codes' default regularisation and
    that prior strength (fixed: nothing left for nested validation to choose)."""
    if args.alpha is None or args.methods and "codes" not in args.methods.split(","):
        return method_params
    return {**(method_params or {}), "codes": (METHODS["codes"].default[0], args.alpha)}


def pooled_seeds(run, args) -> dict:
    """``run(seed)`` for every ``--seed``, each table printed, and the runs pooled:
    every error cut's interval then comes from a bootstrap over held-out speakers and
    seeds (:func:`skdc.evaluation.pool_seeds`)."""
    runs = []
    for seed in (int(s) for s in args.seed.split(",")):
        runs.append(run(seed))
        print(f"\nseed {seed} ({runs[-1]['seconds']:.0f} s)\n{format_table(runs[-1])}")
        print_codes_against_shift(runs[-1])
    if len(runs) == 1:
        return runs[0]
    pooled = pool_seeds(runs)
    print(f"\npooled over seeds {args.seed}\n{format_table(pooled)}")
    print_codes_against_shift(pooled)
    return pooled


def print_codes_against_shift(results: dict) -> None:
    """Codes against the shift, paired over the same speakers and draws (when both ran)."""
    if {"codes", "shift"} <= set(results["methods"]):
        print("\n" + format_comparison(compare(results, "codes", "shift")))


def _cut(results: dict, method: str, k: int) -> float:
    return 100 * results["methods"][method]["k"][str(k)]["error_reduction_vs_si"]


def speaker_curve(run, args) -> dict:
    """``{seed: {n: results}}``: every method at every k, per seed and number of
    training speakers (a seed draws other folds, speakers and networks).

    ``run(n, seed)`` evaluates with ``n`` training speakers per fold; ``args`` has
    ``seed``, ``train_speakers`` and ``methods`` (comma-separated strings).
    """
    curves = {}
    for seed in (int(s) for s in args.seed.split(",")):
        curves[seed] = {}
        for n in (int(n) for n in args.train_speakers.split(",")):
            results = curves[seed][n] = run(n, seed)
            print(f"\nseed {seed}, {n} training speakers per fold ({results['seconds']:.0f} s)")
            print(format_table(results))
    print("\nerror cut versus si (%) by training speakers per fold: mean over seeds "
          f"{', '.join(map(str, curves))} (each seed)")
    first = next(iter(curves.values()))
    shots = next(iter(first.values()))["shots"]
    for m in (m for m in args.methods.split(",") if m != "si"):
        for k in shots:
            print(f"{m}, k={k}:")
            for n in first:
                cuts = [_cut(curve[n], m, k) for curve in curves.values()]
                each = " / ".join(f"{c:+.1f}" for c in cuts)
                si = " / ".join(f"{100 * c[n]['methods']['si']['k'][str(k)]['accuracy']:.1f}"
                                for c in curves.values())
                print(f"  {n:>3} speakers: {np.mean(cuts):+6.1f}  ({each}; si accuracy {si})")
    return curves


def plot_curve(curves: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(curves.values()))
    speakers = list(first)
    some = first[speakers[0]]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name in some["methods"]:
        if name == "si":
            continue
        for k in some["shots"]:
            cuts = np.array([[_cut(curve[n], name, k) for n in speakers]
                             for curve in curves.values()])
            line, = ax.plot(speakers, cuts.mean(axis=0), marker="o",
                            label=f"{name}, k={k}")
            for row in cuts:  # each seed
                ax.scatter(speakers, row, color=line.get_color(), alpha=0.35, s=12)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("training speakers per fold")
    ax.set_ylabel("error cut versus si (%)")
    ax.set_xticks(speakers)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        title += f" (mean of {len(curves)} seeds; dots: each seed)"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
