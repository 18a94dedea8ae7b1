"""Speaker codes in a frame-level acoustic model: Free Spoken Digit Dataset (FSDD).

A hybrid-style acoustic model: an MLP classifies every 10 ms frame (13 MFCCs with
+/- 5 frames of context) into the digit being said, and a recording's decision sums
its frames' log-posteriors. Speakers are conditions: leave-one-speaker-out over the 6
speakers; the held-out speaker adapts from k labelled recordings (all their frames)
and is scored on its other recordings. Codes (one per training speaker, then the new
speaker's code from its k recordings, Xue et al. 2014) against no adaptation (si), a
feature shift, per-speaker mean/variance normalisation (lobanov, i.e. CMVN with all
of the speaker's speech: transductive), LHUC and output-layer fine-tuning.

Run (about 11 minutes on 2 CPU cores with the folds in parallel; 27 with ``--tune``)::

    SKDC_DATA_HOME=../shared/data python examples/spoken_digits.py

The recordings are downloaded (checksum-verified) into the data home if missing.
Settings: hyperparameters are the fixed defaults of ``skdc.evaluation`` (``--tune``
runs the nested validation instead, several times slower); 30 epochs of minibatches
of 512 frames, two hidden layers of 256 units, codes of 16.
"""

import argparse
import json

from skdc.datasets import load_spoken_digits
from skdc.evaluation import METHODS as ALL_METHODS
from skdc.evaluation import evaluate, format_table, plot_results

METHODS = ",".join(m for m in ALL_METHODS if m != "finetune_all")  # not every layer fine-tuned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--shots", default="0,1,2,5,10", help="labelled recordings per speaker")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--per-digit", type=int, default=None,
                        help="recordings per speaker and digit (default: all 50)")
    parser.add_argument("--tune", action="store_true", help="nested validation of priors")
    parser.add_argument("--jobs", type=int, default=-1,
                        help="folds in parallel processes (default: all cores)")
    parser.add_argument("--json", help="save the results as JSON")
    parser.add_argument("--plot", help="save a PNG plot of accuracy against k")
    args = parser.parse_args()

    fsdd = load_spoken_digits(args.data_home, features="mfcc", context=5,
                              max_per_speaker_digit=args.per_digit)
    n_speakers = len(set(fsdd.groups))
    print(f"FSDD: {len(fsdd.utterances)} recordings, {len(fsdd.target)} frames of "
          f"{fsdd.data.shape[1]} features, {n_speakers} speakers; leave-one-speaker-out; "
          "accuracy per recording (summed frame log-posteriors)\n")
    results = evaluate(
        fsdd.data, fsdd.target, fsdd.groups, units=fsdd.utterance,
        shots=[int(k) for k in args.shots.split(",")], folds=n_speakers,
        repeats=args.repeats, methods=args.methods.split(","),
        hidden_layer_sizes=(256, 256), max_epochs=args.epochs, batch_size=512,
        tune=args.tune, random_state=0, progress=True, n_jobs=args.jobs,
    )
    print(format_table(results))
    print(f"\nk counts labelled recordings of the new speaker; {results['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if args.plot:
        plot_results(results, args.plot, title="FSDD: k-recording speaker adaptation")


if __name__ == "__main__":
    main()
