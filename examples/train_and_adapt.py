"""Train a condition-code network on many conditions, then adapt it to new ones.

A known teacher network labels rows of synthetic conditions (speakers, devices, ...),
each with its own true code. ``CodeNetwork`` learns a network and one code per
training condition (40 conditions); a new condition is then adapted by learning only
its code from k labelled rows, everything else frozen (``net.adapter()``).

The table compares, on the other rows of 10 unseen conditions:

* prior mean: the network with the average training code (what it predicts for a
  condition it knows nothing about);
* adapted:    the code learned from k rows of the condition (MAP under the prior of the
  training codes);
* best code:  the code fitted to the scored rows themselves (the best this network can do
  with any code; a ceiling for the adapted column).

Run with ``python examples/train_and_adapt.py`` (under a minute on 2 CPU cores).
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from skdc import CodeNetwork
from skdc._synthetic import make_conditions, make_teacher

SHOTS = (0, 1, 2, 5, 10)
N_TRAIN, N_NEW, ROWS, REPEATS = 40, 10, 60, 3


def main() -> None:
    warnings.simplefilter("ignore", ConvergenceWarning)  # few epochs / steps on purpose
    teacher = make_teacher(random_state=0)
    X, y, groups, _ = make_conditions(teacher, N_TRAIN, ROWS, random_state=1)
    net = CodeNetwork(
        hidden_layer_sizes=(64, 64),
        code_size=4,
        learning_rate_init=3e-3,
        max_iter=100,
        early_stopping=True,
        random_state=0,
    )
    net.fit(X, y, groups=groups)
    print(
        f"Trained on {N_TRAIN} conditions x {ROWS} rows: {len(net.codes_)} codes of size "
        f"{net.model_.inputs[1].shape[-1]}, {net.n_iter_} epochs."
    )
    print(f"Accuracy on the training rows with their own codes: {net.score(X, y, groups):.3f}\n")

    X_new, y_new, g_new, _ = make_conditions(teacher, N_NEW, ROWS, random_state=2)
    g_new = g_new + 1000  # names the training conditions do not use
    test = np.concatenate([np.flatnonzero(g_new == g)[10:] for g in np.unique(g_new)])
    best = net.adapter().fit(X_new[test], y_new[test], groups=g_new[test])
    ceiling = best.score(X_new[test], y_new[test], groups=g_new[test])
    print(f"{N_NEW} new conditions; k adaptation rows drawn from the first 10 rows of each,")
    print(f"accuracy on its other {ROWS - 10} rows (adapted: mean of {REPEATS} draws).\n")
    print(f"{'k':>3}  {'prior mean':>10}  {'adapted':>8}  {'best code':>9}")
    for k in SHOTS:
        before, after = _evaluate(net, X_new, y_new, g_new, test, k)
        print(f"{k:>3}  {before:>10.3f}  {after:>8.3f}  {ceiling:>9.3f}")


def _evaluate(net, X, y, groups, test, k):
    before = net.score(X[test], y[test])  # unseen groups: the prior mean code
    if k == 0:
        return before, before
    scores = []
    for seed in range(REPEATS):
        rng = np.random.default_rng(seed)
        rows = np.concatenate(
            [
                rng.choice(np.flatnonzero(groups == g)[:10], k, replace=False)
                for g in np.unique(groups)
            ]
        )
        adapter = net.adapter(random_state=seed).fit(X[rows], y[rows], groups=groups[rows])
        scores.append(adapter.score(X[test], y[test], groups=groups[test]))
    return before, float(np.mean(scores))


if __name__ == "__main__":
    main()
