"""Why codes do not adapt: what the trained codes carry, on one speaker-disjoint split.

For one split of a speech data set (the first of ``--folds`` speaker-disjoint folds held
out), trains the coded network of ``evaluate``'s ``codes`` method for each training-code
regularisation and reports:

* **use**: frame accuracy of the *training* speakers with their own code against the
  prior mean code: how much the network relies on the codes at all;
* **offset explained**: how much of the between-speaker feature offset (each training
  speaker's mean of ``x - mean of its class``) a linear map of the codes explains,
  leave-one-speaker-out R^2 (the link the ``codes`` method's prior relies on);
* the same for codes with an input-level part (``input_shift``: a feature offset per
  speaker, the same for every context frame, learned with the hidden code);
* **reach**: recording accuracy of the held-out speakers with the prior mean code and
  with an oracle code fitted on *all* their recordings and scored on the same ones (no
  prior): an upper bound of what a code can do for a new speaker, against the same
  bound for a per-speaker feature shift (every speaker's own mean offset removed,
  network trained on shift-normalised speakers).

Run::

    SKDC_DATA_HOME=../shared/data python examples/diagnose_codes.py --data arabic
    python examples/diagnose_codes.py --data speech_commands
"""

import argparse
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold
from sklearn.preprocessing import StandardScaler

from skdc import CodeNetwork
from skdc.datasets import load_arabic_speech_commands, load_speech_commands

REGULARISATION = {  # evaluate's CODE_REGULARISATION candidates
    "none": dict(code_dropout=0.0, code_l2=1e-3),
    "dropout+l2": dict(code_dropout=0.3, code_l2=0.1),
}
CONTEXT_FRAMES = 11  # the loaders' frames: 13 MFCCs stacked with +/- 5 frames


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["arabic", "speech_commands"], default="arabic")
    parser.add_argument("--data-home", default=None)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--code-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def load(args):
    if args.data == "arabic":
        return load_arabic_speech_commands(args.data_home)
    return load_speech_commands(args.data_home, min_per_speaker=8)


def utterance_accuracy(log_p, y_index, units) -> float:
    """Accuracy per recording: the class of the largest sum of its frames' log-posteriors
    (``y_index``: each frame's class as a column of ``log_p``)."""
    keys, index = np.unique(units, return_inverse=True)
    totals = np.zeros((len(keys), log_p.shape[1]))
    np.add.at(totals, index, log_p)
    truth = np.zeros(len(keys), dtype=int)
    truth[index] = y_index
    return float(np.mean(totals.argmax(axis=1) == truth))


def speaker_offsets(X, y_index, groups):
    """Each speaker's mean residual ``x - mean of its class`` (class means over all rows)."""
    means = np.stack([X[y_index == c].mean(axis=0) for c in range(y_index.max() + 1)])
    resid = X - means[y_index]
    keys, index = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(keys), X.shape[1]))
    np.add.at(sums, index, resid)
    return keys, sums / np.bincount(index)[:, None], index


def loo_r2(codes, offsets) -> float:
    """Leave-one-speaker-out R^2 of ``offsets`` from ``codes`` by least squares (with bias)."""
    A = np.hstack([codes, np.ones((len(codes), 1))])
    errors = []
    for i in range(len(codes)):
        keep = np.arange(len(codes)) != i
        coef = np.linalg.lstsq(A[keep], offsets[keep], rcond=None)[0]
        errors.append(offsets[i] - A[i] @ coef)
    errors = np.asarray(errors)
    total = ((offsets - offsets.mean(axis=0)) ** 2).sum()
    return float(1 - (errors**2).sum() / total)


def main() -> None:
    args = parse_args()
    data = load(args)
    X, y, groups, units = data.data, data.target, np.asarray(data.groups), data.utterance
    train, test = next(GroupKFold(args.folds).split(X, y, groups))
    scaler = StandardScaler().fit(X[train])
    X = scaler.transform(X).astype(np.float32)
    classes, y_index = np.unique(y, return_inverse=True)
    print(f"{args.data}: {len(np.unique(groups[train]))} training and "
          f"{len(np.unique(groups[test]))} held-out speakers, {X.shape[1]} features\n")

    keys, offsets, index = speaker_offsets(X[train], y_index[train], groups[train])
    _, test_offsets, test_index = speaker_offsets(X[test], y_index[test], groups[test])
    between = offsets.var(axis=0).sum()
    within = ((X[train] - offsets[index]) ** 2).mean(axis=0).sum()
    print(f"between-speaker offset variance {between:.3f} of {within + between:.3f} "
          f"(feature variance per frame, summed over features)\n")

    def fit(X_fit, **params):
        net = CodeNetwork((256, 256), code_size=args.code_size, max_iter=args.epochs,
                          batch_size=512, random_state=args.seed, **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return net.fit(X_fit, y[train], groups=groups[train])

    shifted = X[train] - offsets[index]
    sat = fit(shifted, code_dropout=1.0 - 1e-6, code_l2=1.0)  # every row sees the mean code
    X_test_shifted = X[test] - test_offsets[test_index]
    oracle_shift = utterance_accuracy(np.log(sat.predict_proba(X_test_shifted) + 1e-12),
                                      y_index[test], units[test])
    print(f"oracle shift (own offset removed, network trained on shifted speakers): "
          f"held-out recording accuracy {100 * oracle_shift:.1f}%\n")

    print(f"{'training codes':<20} {'own code':>9} {'mean code':>10} {'offset R2':>10} "
          f"{'prior mean':>11} {'oracle code':>12}")
    shift = X.shape[1] // CONTEXT_FRAMES
    variants = [(name, params) for name, params in REGULARISATION.items()]
    variants += [(f"{name}+shift", {**params, "input_shift": shift})
                 for name, params in REGULARISATION.items()]
    for name, params in variants:
        net = fit(X[train], **params)
        own = net.score(X[train], y[train], groups=groups[train])
        mean = net.score(X[train], y[train])
        codes = np.stack([net.codes_[k] for k in keys.tolist()])[:, net.input_shift_:]
        r2 = loo_r2(codes, offsets)
        prior = utterance_accuracy(np.log(net.predict_proba(X[test]) + 1e-12),
                                   y_index[test], units[test])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            adapter = net.adapter(alpha=1e-6, optimizer="lbfgs", max_iter=200).fit(
                X[test], y[test], groups=groups[test])
        oracle = utterance_accuracy(
            np.log(adapter.predict_proba(X[test], groups=groups[test]) + 1e-12),
            y_index[test], units[test])
        print(f"{name:<20} {100 * own:>8.1f}% {100 * mean:>9.1f}% {r2:>10.2f} "
              f"{100 * prior:>10.1f}% {100 * oracle:>11.1f}%")
    print("\nown/mean code: frame accuracy on the training speakers' own rows; offset R2: "
          "of the training speakers' offsets from their hidden codes; prior mean and oracle "
          "code: recording accuracy of the held-out speakers")


if __name__ == "__main__":
    main()
