"""The original scenario: your own Keras model with a code input, adapted with CodeAdapter.

1. Build a Keras model with inputs "features" and "code" (the code enters both hidden
   layers) and train it on 30 conditions, learning one code per condition through an
   Embedding table, in plain Keras.
2. Adapt it to 10 unseen conditions from 10 labelled rows each, inside a Pipeline, with
   the step size and iterations chosen by GridSearchCV(n_jobs=2).
3. Save the adapter with joblib, load it in a fresh Python process, check the
   predictions are identical and the model's weights unchanged.

Run: python examples/adapt_user_model.py   (about a minute on 2 cores)
"""

import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import joblib
import keras
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skdc import CodeAdapter
from skdc._synthetic import make_conditions, make_teacher

CODE_DIM = 3


def build_model(n_features: int, n_classes: int) -> keras.Model:
    x = keras.Input((n_features,), name="features")
    z = keras.Input((CODE_DIM,), name="code")
    h = x
    for units in (64, 64):
        h = keras.layers.Add()([keras.layers.Dense(units)(h),
                                keras.layers.Dense(units, use_bias=False)(z)])
        h = keras.layers.Activation("relu")(h)
    return keras.Model([x, z], keras.layers.Dense(n_classes, activation="softmax")(h))


def train_with_codes(model, X, y, groups, n_groups):
    """Speaker-adaptive training: the network and a code per condition, jointly."""
    gid = keras.Input((), dtype="int32", name="condition")
    table = keras.layers.Embedding(n_groups, CODE_DIM, name="codes",
                                   embeddings_regularizer=keras.regularizers.L2(1e-2))
    x = keras.Input(model.inputs[0].shape[1:], name="x")
    trainer = keras.Model([x, gid], model([x, table(gid)]))
    trainer.compile(optimizer=keras.optimizers.Adam(3e-3),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    trainer.fit([X, groups], y, epochs=40, batch_size=64, verbose=0)
    return table.get_weights()[0]


def main():
    warnings.simplefilter("ignore", ConvergenceWarning)  # grid candidates with few iterations
    keras.utils.set_random_seed(0)
    teacher = make_teacher(code_strength=2.5, random_state=3)
    X, y, groups, _ = make_conditions(teacher, n_conditions=40, rows_per_condition=80,
                                      random_state=4)
    train = groups < 30
    scaler = StandardScaler().fit(X[train])
    model = build_model(X.shape[1], 4)
    codes = train_with_codes(model, scaler.transform(X[train]), y[train], groups[train], 30)
    mean_code = codes.mean(axis=0)
    weights = [w.copy() for w in model.get_weights()]

    # the scaler keeps the statistics of the training conditions: freeze it in the pipeline
    pipe = make_pipeline(FrozenEstimator(scaler),
                         CodeAdapter(model, code_init=mean_code, random_state=0))
    search = GridSearchCV(pipe, {"codeadapter__learning_rate": [0.02, 0.1, 0.3],
                                 "codeadapter__max_iter": [20, 100]}, cv=3, n_jobs=2)
    before, after = [], []
    for g in range(30, 40):
        rows = np.flatnonzero(groups == g)
        adapt, test = rows[:10], rows[10:]
        search.fit(X[adapt], y[adapt])
        before.append(np.mean(model.predict([scaler.transform(X[test]),
                                             np.tile(mean_code, (len(test), 1))],
                                            verbose=0).argmax(1) == y[test]))
        after.append(search.score(X[test], y[test]))
    print(f"10 unseen conditions, 10 labelled rows each: accuracy {np.mean(before):.3f} "
          f"unadapted (mean training code) -> {np.mean(after):.3f} adapted "
          f"(last grid choice: {search.best_params_})")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "adapter.joblib"
        joblib.dump(search.best_estimator_, path)
        np.save(Path(tmp) / "X.npy", X[test])
        code = (f"import joblib, numpy as np; p = joblib.load(r'{path}'); "
                f"np.save(r'{tmp}/p.npy', p.predict_proba(np.load(r'{tmp}/X.npy')))")
        subprocess.run([sys.executable, "-c", code], check=True)
        same = np.array_equal(np.load(Path(tmp) / "p.npy"),
                              search.best_estimator_.predict_proba(X[test]))
    unchanged = all(a.tobytes() == b.tobytes() for a, b in zip(weights, model.get_weights()))
    print(f"joblib round trip into a new process: identical predictions = {same}; "
          f"model weights unchanged = {unchanged}")


if __name__ == "__main__":
    main()
