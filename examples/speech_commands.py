"""Speaker codes on hundreds of speakers: the Speech Commands v0.02 test set.

The realistic setting of speaker adaptation: many training speakers, and features that
may already be normalised. An MLP classifies every 10 ms frame (13 MFCCs with +/- 5
frames of context, 16 kHz) into one of 10 keywords or ``_unknown_``, and a recording's
decision sums its frames' log-posteriors. The speakers with at least ``--min-per-speaker``
recordings (194 with 8) in 5 speaker-disjoint folds (about 155 training speakers each);
every held-out speaker adapts from k labelled recordings, scored on its other ones,
against no adaptation (si), a feature shift, Lobanov normalisation and unsupervised
codes (both transductive), LHUC and output-layer fine-tuning. Every error cut against
si carries a 95% paired-bootstrap interval over the held-out speakers (and the seeds,
pooled, with several ``--seed``).

``--normalize utterance`` normalises the features per recording first, ``--normalize
speaker`` per speaker from its k adaptation recordings (training speakers from k random
recordings each): the table then says what each method adds *on top of* normalisation.

Run::

    SKDC_DATA_HOME=../shared/data python examples/speech_commands.py --seed 0,1,2 \\
        --json sc.json --plot sc.png
    python examples/speech_commands.py --seed 0,1,2 --normalize utterance --json sc_utt.json
    python examples/speech_commands.py --train-speakers 8,32,64,128,155 --shots 1,5 \\
        --methods codes,shift,si --seed 0 --json curve.json --plot curve.png

Settings: the fixed defaults of ``skdc.evaluation`` (chosen on Hillenbrand, never on
these folds); two hidden layers of 256 units, 15 epochs of minibatches of 512 frames.
The test set is downloaded (checksum-verified, 112 MB) into the data home if missing.
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

from skdc.datasets import load_speech_commands
from skdc.evaluation import METHODS as ALL_METHODS
from skdc.evaluation import evaluate, plot_results

METHODS = ",".join(m for m in ALL_METHODS if m != "finetune_all")  # not every layer fine-tuned


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--shots", default="0,1,2,5", help="labelled recordings per speaker")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--min-per-speaker", type=int, default=8)
    parser.add_argument("--normalize", choices=["none", "utterance", "speaker"], default="none")
    add_code_arguments(parser)
    add_augment_arguments(parser)
    parser.add_argument("--train-speakers", default=None,
                        help="comma-separated numbers of training speakers per fold")
    parser.add_argument("--seed", default="0",
                        help="comma-separated random_state values: folds, draws, networks; "
                             "several are pooled (intervals over speakers and seeds)")
    parser.add_argument("--jobs", type=int, default=-1,
                        help="folds in parallel processes (default: all cores)")
    parser.add_argument("--json", help="save the results as JSON")
    parser.add_argument("--plot", help="save a PNG plot")
    return parser.parse_args()


def run(data, args, seed: int, max_train_conditions=None) -> dict:
    methods = args.methods.split(",")
    return evaluate(
        data.data, data.target, data.groups, units=data.utterance,
        sources=getattr(data, "source_groups", None),
        shots=[int(k) for k in args.shots.split(",")], folds=args.folds,
        repeats=args.repeats, methods=methods,
        normalize=None if args.normalize == "none" else args.normalize,
        hidden_layer_sizes=(256, 256), max_epochs=args.epochs, batch_size=512, tune=False,
        method_params=with_alpha(args, {m: ALL_METHODS[m].default for m in methods
                                        if ALL_METHODS[m].grid}),
        max_train_conditions=max_train_conditions, random_state=seed, progress=True,
        **code_options(args),
        n_jobs=args.jobs,
    )


def main() -> None:
    args = parse_args()
    if args.train_speakers and "si" not in args.methods.split(","):
        raise SystemExit("--train-speakers reports error cuts versus si: include si in --methods")
    data = load_speech_commands(args.data_home, min_per_speaker=args.min_per_speaker,
                                augment=augment_options(args))
    speakers = len(set(getattr(data, "source_groups", data.groups)))  # copies are not speakers
    print(f"Speech Commands test set: {len(set(data.utterance))} recordings, "
          f"{len(data.target)} frames of {data.data.shape[1]} features, "
          f"{speakers} speakers, {args.folds} speaker-disjoint folds, "
          f"normalize={args.normalize}; accuracy per recording\n")
    if args.train_speakers:
        output = speaker_curve(lambda n, seed: run(data, args, seed, n), args)
        if args.plot:
            plot_curve(output, args.plot, "Speech Commands: how many training speakers "
                                          "codes need")
    else:
        output = pooled_seeds(lambda seed: run(data, args, seed), args)
        if args.plot:
            plot_results(output, args.plot, title="Speech Commands: k-recording adaptation "
                                                  f"(normalize={args.normalize})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(output, f, indent=2)


if __name__ == "__main__":
    main()
