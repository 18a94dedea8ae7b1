"""Keyword spotting with a CNN over log-mel spectrograms: codes, a shift and LHUC.

What a keyword-spotting practitioner has: a small convolutional network over whole
one-second utterances (40 log-mel bands every 10 ms, per-utterance mean normalised
unless ``--cmvn none``, zero-padded to one length), trained speaker-independently
(SI) on the Speech Commands test set's speakers with at least 8 recordings (10
keywords + ``_unknown_``), in speaker-disjoint folds. Then, per fold:

* ``codes``: codes retrofitted into its convolutions and dense layer
  (``add_condition_codes`` through ``CodeNetwork(base_model=si)``: the SI weights stay
  frozen, speaker-adaptive training learns the ``B_l`` and one code per training
  speaker), each held-out speaker's code adapted from k labelled utterances
  (``net.adapter()``, the prior of the training codes);
* ``shift``: the SI network on features shifted by the speaker's mean log-mel
  offset from the training mean, estimated on the k utterances' frames;
* ``lhuc``: the SI network with a per-speaker amplitude ``2 sigmoid(r)`` on every
  unit of its dense layer, ``r`` learned from the k utterances (MAP, prior N(0, I))
  -- ``add_condition_codes(kind="scale")`` with ``B`` the identity, frozen.

Each held-out speaker is scored on its other utterances, ``--repeats`` draws of the k
adaptation utterances (all of a fold's held-out speakers in one adapter fit, one code or
LHUC vector per speaker through ``groups``); error cuts against SI carry a 95%
paired-bootstrap interval over held-out speakers and seeds.

Run (``--max-speakers 40 --folds 2 --epochs 3 --seed 0`` for a quick look)::

    SKDC_DATA_HOME=../shared/data python examples/kws_cnn.py --seed 0,1,2 --json kws.json
"""

import argparse
import json
import warnings

import keras
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold

from skdc import CodeAdapter, CodeNetwork, CodePrior, add_condition_codes
from skdc.datasets import load_speech_commands
from skdc.evaluation import compare, format_comparison

METHODS = ("si", "shift", "lhuc", "codes")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--shots", default="1,2,5")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15, help="SI training epochs")
    parser.add_argument("--sat-epochs", type=int, default=10, help="codes training epochs")
    parser.add_argument("--code-size", type=int, default=8)
    parser.add_argument("--cmvn", choices=["none", "utterance-mean"], default="utterance-mean",
                        help="per-utterance mean normalisation of the log-mel bands (with it, "
                             "the speaker's mean offset left for shift is small)")
    parser.add_argument("--max-speakers", type=int, default=None, help="a subset, for a look")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--json", help="save the results as JSON")
    return parser.parse_args()


def si_network(n_frames: int, n_bands: int, n_classes: int, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    x = keras.Input((n_frames, n_bands))
    h = keras.layers.Conv1D(32, 5, activation="relu", name="conv1")(x)
    h = keras.layers.MaxPooling1D(2)(h)
    h = keras.layers.Conv1D(32, 5, activation="relu", name="conv2")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    h = keras.layers.Dense(64, activation="relu", name="dense")(h)
    model = keras.Model(x, keras.layers.Dense(n_classes, activation="softmax", name="output")(h))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    return model


def lhuc_network(si: keras.Model) -> keras.Model:
    """``2 sigmoid(r)`` on every unit of ``dense``: scale codes with ``B`` the identity."""
    units = si.get_layer("dense").units
    coded = add_condition_codes(si, units, layers=["dense"], kind="scale")
    b = next(layer for layer in coded.layers if layer.name.startswith("dense_code"))
    b.set_weights([np.eye(units, dtype="float32")])
    b.trainable = False
    return coded


class Fold:
    """One fold's networks and how each method predicts a held-out speaker."""

    def __init__(self, X, y, groups, frames_mask, args, seed):
        self.mean = X[frames_mask].mean(axis=0)  # training frames' mean log-mel
        self.si = si_network(X.shape[1], X.shape[2], int(y.max()) + 1, seed)
        self.si.fit(X, y, epochs=args.epochs, batch_size=64, verbose=0)
        self.lhuc = lhuc_network(self.si)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.codes = CodeNetwork(base_model=self.si, code_size=args.code_size,
                                     code_layers=["conv1", "conv2", "dense"],
                                     max_iter=args.sat_epochs, batch_size=64,
                                     random_state=seed).fit(X, y, groups=groups)

    def predict_proba(self, method, X_a, y_a, g_a, mask_a, X_s, g_s, mask_s) -> np.ndarray:
        """Every held-out speaker at once: its adaptation rows ``g_a == speaker`` adapt
        its own shift or code, which predicts its rows ``g_s == speaker``."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if method == "si":
                return self.si.predict(X_s, verbose=0)
            if method == "shift":
                speakers, index = np.unique(g_s, return_inverse=True)
                offsets = np.stack([X_a[g_a == spk][mask_a[g_a == spk]].mean(axis=0)
                                    for spk in speakers]) - self.mean
                return self.si.predict(np.where(mask_s[..., None], X_s - offsets[index][:, None],
                                                0.0), verbose=0)
            if method == "lhuc":
                size = self.lhuc.inputs[1].shape[-1]
                adapter = CodeAdapter(self.lhuc, code_init=CodePrior(np.zeros(size), np.eye(size)),
                                      optimizer="lbfgs", max_iter=50)
            else:
                adapter = self.codes.adapter(optimizer="lbfgs", max_iter=50)
            return adapter.fit(X_a, y_a, groups=g_a).predict_proba(X_s, groups=g_s)


def run(data, args, seed: int) -> dict:
    """Accuracy per held-out speaker, method and k (mean over the repeats)."""
    X, y = data.data, np.searchsorted(np.unique(data.target), data.target)
    groups = np.asarray(data.groups)
    mask = np.arange(X.shape[1])[None, :] < np.asarray(data.n_frames)[:, None]
    shots = [int(k) for k in args.shots.split(",")]
    table = {m: {k: {} for k in shots} for m in METHODS}
    folds = GroupKFold(args.folds, shuffle=True, random_state=seed).split(X, y, groups)
    for f, (train, test) in enumerate(folds):
        fold = Fold(X[train], y[train], groups[train], mask[train], args, seed + 1000 * f)
        speakers = np.unique(groups[test])
        rng = np.random.default_rng([seed, f])
        for k in shots:
            scores = {m: {spk: [] for spk in speakers} for m in METHODS}
            for _ in range(args.repeats):
                a, s = adaptation_split(test, groups, k, rng)
                for m in METHODS:
                    correct = fold.predict_proba(m, X[a], y[a], groups[a], mask[a], X[s],
                                                 groups[s], mask[s]).argmax(axis=1) == y[s]
                    for spk in speakers:
                        scores[m][spk].append(float(correct[groups[s] == spk].mean()))
            for m in METHODS:
                for spk in speakers:
                    table[m][k][str(spk)] = float(np.mean(scores[m][spk]))
        print(f"seed {seed} fold {f + 1}/{args.folds} done", flush=True)
    return table


def adaptation_split(rows, groups, k: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """k random rows of each speaker among ``rows`` to adapt on, the others to score."""
    adapt, score = [], []
    for spk in np.unique(groups[rows]):
        pick = rng.permutation(rows[groups[rows] == spk])
        adapt.append(pick[:k])
        score.append(pick[k:])
    return np.concatenate(adapt), np.concatenate(score)


def report(tables: list[dict], shots: list[int], seeds: list[int]) -> dict:
    """Every method against si, and codes against the shift and LHUC, paired over the
    same held-out speakers, draws and seeds; the results in ``evaluate``'s layout."""
    speakers = sorted(tables[0]["si"][shots[0]])
    per_condition = {"conditions": speakers, "seeds": seeds,
                     "accuracy": {m: {str(k): [[t[m][k][s] for s in speakers] for t in tables]
                                      for k in shots}
                                  for m in METHODS}}
    results = {"seeds": seeds, "shots": shots, "methods": {}, "per_condition": per_condition}
    print(f"{'method':8s}" + "".join(f"{'k=' + str(k):>26s}" for k in shots))
    for m in METHODS:
        cells = []
        for k, cut in compare(results, m, "si")["k"].items():
            accuracy = float(np.mean(per_condition["accuracy"][m][k]))
            results["methods"].setdefault(m, {})[k] = {
                "accuracy": accuracy, "error_reduction_vs_si": cut["error_reduction"],
                "error_reduction_vs_si_interval": cut["interval"]}
            low, high = cut["interval"] or (float("nan"), float("nan"))
            cells.append(f"{100 * accuracy:5.1f} {100 * cut['error_reduction']:+5.1f} "
                         f"[{100 * low:+.1f}, {100 * high:+.1f}]")
        print(f"{m:8s}" + "".join(f"{c:>26s}" for c in cells))
    print("\naccuracy per utterance (%), error cut vs si (%) [95% paired-bootstrap interval "
          "over held-out speakers and seeds]")
    for reference in ("shift", "lhuc"):
        print(format_comparison(compare(results, "codes", reference)))
    return results


def main() -> None:
    args = parse_args()
    data = load_speech_commands(args.data_home, features="logmel", context=0,
                                cmvn=None if args.cmvn == "none" else args.cmvn,
                                min_per_speaker=8,
                                return_utterances="padded")
    if args.max_speakers:
        keep = np.isin(data.groups, np.unique(data.groups)[: args.max_speakers])
        data.data, data.target, data.groups = data.data[keep], data.target[keep], \
            np.asarray(data.groups)[keep]
        data.n_frames = np.asarray(data.n_frames)[keep]
    print(f"Speech Commands: {len(data.target)} utterances {data.data.shape[1:]}, "
          f"{len(np.unique(data.groups))} speakers, {args.folds} folds\n")
    seeds = [int(s) for s in args.seed.split(",")]
    tables = [run(data, args, seed) for seed in seeds]
    shots = [int(k) for k in args.shots.split(",")]
    results = report(tables, shots, seeds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
