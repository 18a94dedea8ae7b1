"""Speaker codes in a frame-level acoustic model: Arabic Speech Commands digits.

The paper's setting on real audio with many speakers. An MLP classifies every 10 ms
frame (13 MFCCs with +/- 5 frames of context, 16 kHz) into the digit being said, and a
recording's decision sums its frames' log-posteriors. 30 speakers in 5 speaker-disjoint
folds: each fold trains on 24 speakers (one code each) and every held-out speaker adapts
from k labelled recordings (all their frames), scored on its other recordings, against
no adaptation (si), a feature shift, per-speaker normalisation (lobanov, transductive),
LHUC, output-layer fine-tuning and unsupervised codes (codes_unsup, transductive).

Run (about 22 minutes per seed on 2 CPU cores with the folds in parallel; several seeds
are pooled, ``--normalize utterance`` normalises every recording's features first)::

    SKDC_DATA_HOME=../shared/data python examples/arabic_digits.py --json asc.json --plot asc.png
    python examples/arabic_digits.py --seed 0,1,2 --normalize utterance --json asc_utt.json

How many training speakers do codes need? ``--train-speakers 4,8,16,24`` trains each
fold's networks on that many of its training speakers (nested draws, same folds and
test speakers) and reports the error cut of ``codes`` and ``shift`` against ``si`` at
the chosen ``--shots``, for every ``--seed`` (each seed draws other folds, speakers,
recordings and networks) and their mean (about 4 minutes per number of speakers and
seed with these methods)::

    python examples/arabic_digits.py --train-speakers 4,8,16,24 --shots 1,5 \\
        --methods codes,shift,si --seed 0,1,2 --json curve.json --plot curve.png

Settings: the fixed defaults of ``skdc.evaluation`` (chosen on Hillenbrand, never on
these test folds; ``--tune`` runs the nested validation inside each fold's training
speakers instead; ``--code-sizes 16,32,64 --code-layers all,input`` lets it choose the
coded network too); two hidden layers of 256 units, codes of 16, 15 epochs of
minibatches of 512 frames, as in the FSDD example but fewer epochs (ten times the
training frames). The recordings are downloaded (checksum-verified) into the data home
if missing.
"""

import argparse
import json

from speaker_curve import (
    add_augment_arguments,
    add_code_arguments,
    augment_options,
    code_options,
    plot_curve,
    pooled_seeds,
    speaker_curve,
    with_alpha,
)

from skdc.datasets import load_arabic_speech_commands
from skdc.evaluation import METHODS as ALL_METHODS
from skdc.evaluation import evaluate, plot_results

METHODS = ",".join(m for m in ALL_METHODS if m != "finetune_all")  # not every layer fine-tuned


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--shots", default="0,1,2,5,10", help="labelled recordings per speaker")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--keywords", default="digits",
                        help="'digits', 'all', or comma-separated keywords")
    parser.add_argument("--per-keyword", type=int, default=None,
                        help="takes per speaker and keyword (default: all 10)")
    add_code_arguments(parser)
    add_augment_arguments(parser)
    parser.add_argument("--train-speakers", default=None,
                        help="comma-separated numbers of training speakers per fold")
    parser.add_argument("--normalize", choices=["none", "utterance", "speaker"], default="none",
                        help="features normalised per recording, or per speaker from its "
                             "k adaptation recordings, before every method")
    parser.add_argument("--tune", action="store_true", help="nested validation of priors")
    parser.add_argument("--code-sizes", default="16",
                        help="comma-separated code sizes; more than one (or than one of "
                             "--code-layers) are chosen per fold by nested validation")
    parser.add_argument("--code-layers", default="all",
                        help="comma-separated: all, input, or hidden-layer indices joined "
                             "by '+' (e.g. 1)")
    parser.add_argument("--seed", default="0",
                        help="comma-separated random_state values: folds, draws of speakers "
                             "and recordings, networks; several are pooled (intervals over "
                             "speakers and seeds)")
    parser.add_argument("--jobs", type=int, default=-1,
                        help="folds in parallel processes (default: all cores)")
    parser.add_argument("--json", help="save the results as JSON")
    parser.add_argument("--plot", help="save a PNG plot")
    return parser.parse_args()


def code_networks(args) -> list[tuple]:
    """(code_size, code_layers) candidates of the coded network, from the arguments."""
    layers = [value if value in ("all", "input") else tuple(int(i) for i in value.split("+"))
              for value in args.code_layers.split(",")]
    return [(int(size), where) for size in args.code_sizes.split(",") for where in layers]


def method_params(args) -> tuple[dict, bool]:
    """``evaluate``'s ``method_params`` and ``tune`` for the arguments.

    ``codes`` gets one candidate per coded network (with its default regularisation and
    prior; with ``--tune``, every one of its candidates per network); several are chosen
    among per fold by nested validation. Every other method keeps its fixed default
    unless ``--tune``.
    """
    networks = code_networks(args)
    methods = args.methods.split(",")
    codes = ALL_METHODS["codes"]
    pairs = codes.grid if args.tune else (codes.default,)
    params = {"codes": [(*pair, *net) for pair in pairs for net in networks]}
    if not args.tune:
        params.update({m: ALL_METHODS[m].default for m in methods
                       if m != "codes" and ALL_METHODS[m].grid})
    return ({m: v for m, v in params.items() if m in methods},
            args.tune or len(networks) > 1)


def run(asc, args, seed: int, max_train_conditions=None) -> dict:
    params, tune = method_params(args)
    return evaluate(
        asc.data, asc.target, asc.groups, units=asc.utterance,
        sources=getattr(asc, "source_groups", None),
        shots=[int(k) for k in args.shots.split(",")], folds=args.folds,
        repeats=args.repeats, methods=args.methods.split(","),
        normalize=None if args.normalize == "none" else args.normalize,
        hidden_layer_sizes=(256, 256), max_epochs=args.epochs, batch_size=512,
        tune=tune, method_params=with_alpha(args, params),
        max_train_conditions=max_train_conditions,
        random_state=seed, progress=True, **code_options(args),
        n_jobs=args.jobs,
    )


def main() -> None:
    args = parse_args()
    if args.train_speakers and "si" not in args.methods.split(","):
        raise SystemExit("--train-speakers reports error cuts versus si: include si in --methods")
    keywords = args.keywords if args.keywords in ("digits", "all") else args.keywords.split(",")
    asc = load_arabic_speech_commands(args.data_home, keywords=keywords,
                                      max_per_speaker_keyword=args.per_keyword,
                                      augment=augment_options(args))
    speakers = len(set(getattr(asc, "source_groups", asc.groups)))  # copies are not speakers
    print(f"Arabic Speech Commands: {len(asc.utterances)} recordings, {len(asc.target)} "
          f"frames of {asc.data.shape[1]} features, {speakers} speakers, "
          f"{args.folds} speaker-disjoint folds, normalize={args.normalize}; accuracy per "
          "recording (summed frame log-posteriors)\n")
    if args.train_speakers:
        output = speaker_curve(lambda n, seed: run(asc, args, seed, n), args)
        if args.plot:
            plot_curve(output, args.plot, "Arabic digits: how many training speakers codes need")
    else:
        output = pooled_seeds(lambda seed: run(asc, args, seed), args)
        for name, candidates in output["settings"]["candidates"].items():
            if len(candidates) > 1:
                print(f"{name} chose, per fold: {output['methods'][name]['chosen']}")
        print(f"\nk counts labelled recordings of the new speaker; {output['seconds']:.0f} s")
        if args.plot:
            plot_results(output, args.plot, title="Arabic digits: k-recording speaker "
                                                  f"adaptation (normalize={args.normalize})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(output, f, indent=2)


if __name__ == "__main__":
    main()
