"""Speaker adaptation of a vowel classifier: Hillenbrand et al. (1995), log F0-F3.

Every speaker of the test fold is new: the classifier adapts to it from k labelled
vowels (k = 0, 1, 2, 5, 8) and is scored on the speaker's other vowels. The full
protocol of :func:`skdc.evaluation.evaluate`: 10 speaker-disjoint folds, 5 draws of
the adaptation vowels, all methods, hyperparameters by nested validation inside each
fold's training speakers. Hillenbrand has one token of each of 12 vowels per speaker
(9-12 after rows with an unmeasurable formant are dropped), so k stops at 8.

Run (about 4 minutes on 2 CPU cores with the folds in parallel)::

    SKDC_DATA_HOME=../shared/data python examples/vowels_hillenbrand.py --plot h95.png

The data file is downloaded (checksum-verified) into the data home if it is missing.
"""

import argparse
import json

import numpy as np
from speaker_curve import add_code_arguments, code_options, pooled_seeds, with_alpha

from skdc.datasets import load_hillenbrand
from skdc.evaluation import evaluate, plot_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shots", default="0,1,2,5,8")
    parser.add_argument("--methods", default=None, help="comma-separated (default: all)")
    add_code_arguments(parser)
    parser.add_argument("--seed", default="0",
                        help="comma-separated random_state values; several are pooled")
    parser.add_argument("--jobs", type=int, default=-1,
                        help="folds in parallel processes (default: all cores)")
    parser.add_argument("--json", help="save the results as JSON")
    parser.add_argument("--plot", help="save a PNG plot of accuracy against k")
    args = parser.parse_args()

    h95 = load_hillenbrand(args.data_home, features=["F0", "F1", "F2", "F3"])
    print(f"Hillenbrand (1995): {len(h95.target)} vowels, {len(set(h95.groups))} speakers, "
          f"{len(h95.target_names)} vowels; features log F0-F3\n")
    results = pooled_seeds(lambda seed: evaluate(
        np.log(h95.data), h95.target, h95.groups,
        shots=[int(k) for k in args.shots.split(",")], folds=args.folds,
        repeats=args.repeats, methods=args.methods.split(",") if args.methods else None,
        method_params=with_alpha(args, None), random_state=seed, progress=True,
        n_jobs=args.jobs, **code_options(args),
    ), args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.plot:
        plot_results(results, args.plot, title="Hillenbrand (1995): k-shot speaker adaptation")


if __name__ == "__main__":
    main()
