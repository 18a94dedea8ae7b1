"""Tests of the training side: CodeNetwork, CodeNetworkRegressor, add_condition_codes.

The workhorse is the synthetic problem of :mod:`skdc._synthetic`: a known teacher
network labels rows of conditions with known true codes. 40 training conditions of
50 rows train a small network; 10 held-out conditions check adaptation.
"""

import copy
import pickle
import subprocess
import sys
import textwrap

import joblib
import keras
import numpy as np
import pytest
import sklearn
from scipy.spatial.distance import pdist, squareform
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from skdc import _training as training
from skdc._network import CodeNetwork, CodeNetworkRegressor
from skdc._persist import model_from_bytes, model_to_bytes
from skdc._retrofit import add_condition_codes, rewire
from skdc._synthetic import make_conditions
from skdc._task import Classification, Regression
from skdc._training import (
    Architecture,
    CodeTrainer,
    EpochRunner,
    Rows,
    Schedule,
    Seeds,
    joint_network,
    normalise_codes,
    predict_in_chunks,
    si_twin,
)
from skdc._training import train as run_training

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N_TRAIN, N_HELD_OUT, ROWS, SHOTS = 40, 10, 50, 10
SMALL = dict(hidden_layer_sizes=(32, 32), code_size=4, random_state=0)


@pytest.fixture(scope="module")
def train(teacher):
    return make_conditions(teacher, N_TRAIN, ROWS, random_state=1)


@pytest.fixture(scope="module")
def held_out(teacher):
    """Unseen conditions (groups 100..109): SHOTS labelled rows each, then the rest."""
    X, y, groups, true_codes = make_conditions(teacher, N_HELD_OUT, ROWS, random_state=2)
    shot = np.zeros(len(y), dtype=bool)
    rng = np.random.default_rng(0)
    for g in np.unique(groups):
        shot[rng.choice(np.flatnonzero(groups == g), SHOTS, replace=False)] = True
    return X, y, groups + 100, shot


@pytest.fixture(scope="module")
def net(train):
    X, y, groups, _ = train
    return CodeNetwork(**SMALL, learning_rate_init=3e-3, max_iter=40).fit(X, y, groups=groups)


def _si_model(n_features=6, n_classes=4, seed=0):
    init = keras.initializers.GlorotUniform
    return keras.Sequential(
        [
            keras.Input((n_features,)),
            keras.layers.Dense(16, activation="relu", kernel_initializer=init(seed)),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(16, activation="tanh", kernel_initializer=init(seed + 1)),
            keras.layers.Dense(n_classes, activation="softmax", kernel_initializer=init(seed + 2)),
        ],
        name="si",
    )


@pytest.fixture(scope="module")
def si_model(train):
    """A speaker-independent classifier trained (briefly) on the training conditions."""
    X, y, _, _ = train
    model = _si_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    model.fit(X, y, epochs=10, batch_size=200, verbose=0, shuffle=False)
    return model


def _snapshot(model):
    return [w.tobytes() for w in model.get_weights()], [layer.trainable for layer in model.layers]


# --------------------------------------------------------------------------------------
# Joint training (mode b)
# --------------------------------------------------------------------------------------


@pytest.mark.backend
def test_fit_learns_one_code_per_condition(net, train):
    X, y, groups, _ = train
    assert set(net.codes_) == set(range(N_TRAIN))
    assert all(code.shape == (4,) for code in net.codes_.values())
    assert [t.name for t in net.model_.inputs] == ["features", "code"]
    assert net.model_.outputs[0].shape[-1] == 4
    np.testing.assert_array_equal(net.classes_, np.arange(4))
    assert net.n_features_in_ == 6 and net.n_iter_ == len(net.loss_curve_) == 40
    assert net.loss_curve_[-1] < net.loss_curve_[0]
    # normalised codes: centred, unit RMS spread; the prior is their mean and covariance
    codes = np.array(list(net.codes_.values()))
    np.testing.assert_allclose(codes.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.mean(codes**2)), 1, rtol=1e-4)
    np.testing.assert_allclose(net.code_prior_.mean, codes.mean(axis=0))
    assert net.code_prior_.covariance.shape == (4, 4)


def test_codes_carry_the_conditions(net, train, teacher):
    """Fresh rows of a training condition are classified much better with its code, and
    conditions with similar true codes get similar learned codes."""
    _, _, groups, true_codes = train
    X_new = np.random.default_rng(5).normal(size=(len(groups), 6))
    y_new = teacher.predict([X_new, true_codes[groups]], verbose=0).argmax(axis=1)
    with_codes, prior_mean = net.score(X_new, y_new, groups=groups), net.score(X_new, y_new)
    assert with_codes > prior_mean + 0.2
    codes = np.array([net.codes_[g] for g in range(N_TRAIN)])
    # rank correlation of pairwise distances, learned vs true (about 0.3-0.4 over seeds)
    assert spearmanr(pdist(codes), pdist(true_codes)).statistic > 0.15
    # the nearest learned code belongs to a condition with a closer-than-average true code
    learned = squareform(pdist(codes)) + np.diag(np.full(N_TRAIN, np.inf))
    true = squareform(pdist(true_codes))
    nearest = true[np.arange(N_TRAIN), learned.argmin(axis=1)].mean()
    assert nearest < 0.85 * true[~np.eye(N_TRAIN, dtype=bool)].mean()  # 0.6-0.7 over seeds


def test_predict_uses_prior_mean_for_unseen_or_missing_groups(net, held_out):
    X, _, groups, _ = held_out
    proba = net.predict_proba(X, groups=groups)
    np.testing.assert_array_equal(proba, net.predict_proba(X))
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-5)
    mixed = np.where(np.arange(len(X)) % 2, groups, 0)  # group 0 is known
    assert not np.allclose(net.predict_proba(X, groups=mixed), proba)


@pytest.mark.backend
def test_adapter_beats_prior_mean_on_unseen_conditions(net, held_out):
    X, y, groups, shot = held_out
    prior_mean = net.score(X[~shot], y[~shot])
    adapter = net.adapter().fit(X[shot], y[shot], groups=groups[shot])
    adapted = adapter.score(X[~shot], y[~shot], groups=groups[~shot])
    assert adapted > prior_mean + 0.15, (prior_mean, adapted)


def test_code_adapter_works_on_model_directly(net, held_out):
    from skdc._adapter import CodeAdapter

    X, y, groups, shot = held_out
    adapter = CodeAdapter(net.model_, code_input="code", classes=net.classes_, random_state=0)
    adapter.fit(X[shot], y[shot], groups=groups[shot])
    assert adapter.score(X[~shot], y[~shot], groups=groups[~shot]) > net.score(X[~shot], y[~shot])


def test_adapter_defaults_and_overrides(net):
    adapter = net.adapter()
    assert adapter.model is net.model_
    assert adapter.code_input == "code"
    assert adapter.code_init is net.code_prior_
    np.testing.assert_array_equal(adapter.classes, net.classes_)
    assert net.adapter(alpha=2.0, code_init="zeros").get_params()["alpha"] == 2.0
    assert net.adapter(code_init="zeros").code_init == "zeros"


@pytest.mark.backend
def test_random_state_reproducible(train):
    """Two fits with the same seed agree exactly; unit sample weights change nothing."""
    X, y, groups, _ = train
    kw = dict(hidden_layer_sizes=(8,), code_size=2, max_iter=3, random_state=7)
    first = CodeNetwork(**kw).fit(X, y, groups=groups)
    second = CodeNetwork(**kw).fit(X, y, groups=groups, sample_weight=np.ones(len(y)))
    for g in first.codes_:
        np.testing.assert_array_equal(first.codes_[g], second.codes_[g])
    np.testing.assert_array_equal(
        first.predict_proba(X, groups=groups), second.predict_proba(X, groups=groups)
    )


def _overfitting(**params):
    """Settings under which the validation loss falls, then rises: the best epoch is
    not the last, so restoring it matters."""
    return dict(
        hidden_layer_sizes=(32,), code_size=2, learning_rate_init=0.03, batch_size=16,
        early_stopping=True, n_iter_no_change=30, tol=0.0, random_state=0, **params,
    )


def test_training_validates_on_the_held_out_rows_and_keeps_the_best_epoch(conditions):
    """The validation loss of each epoch is the loss on the held-out rows, and training
    ends with the weights of the epoch where it was smallest."""
    X, y, groups, _ = conditions
    rows_of = np.flatnonzero(groups < 4)
    X, y, groups = X[rows_of].astype("float32"), y[rows_of], groups[rows_of]
    task = Classification.from_targets(y)
    seeds = Seeds(0)
    core, _ = joint_network(6, Architecture((32,)), task, 2, "all", seeds.generator("weights"))
    trainer = CodeTrainer(core, 4, 2, alpha=0.0, code_l2=0.0, seed=seeds.seed("codes"))
    held = np.arange(len(X)) % 3 == 0
    rows = Rows(X, groups, task.encode(y), np.ones(len(X), "float32"))
    schedule = Schedule.from_params(_overfitting(max_iter=25))
    history = run_training(trainer, rows, held, task.keras_loss(), schedule,
                           seeds.generator("shuffle"))
    best = int(np.argmin(history.val_loss))
    assert 0 < best < len(history.val_loss) - 1  # the loss rose after the best epoch
    recomputed = task.keras_loss()(y[held], trainer((X[held], groups[held])))
    np.testing.assert_allclose(float(recomputed), history.val_loss[best], rtol=1e-6)
    on_training_rows = task.keras_loss()(y[~held], trainer((X[~held], groups[~held])))
    assert abs(float(on_training_rows) - history.val_loss[best]) > 1e-3


@pytest.mark.backend
def test_early_stopping_restores_the_best_epoch(conditions):
    """A fit that stops right after the best epoch ends with the same weights and codes
    as a fit that ran on and restored that epoch."""
    X, y, groups, _ = conditions
    long = CodeNetwork(**_overfitting(max_iter=20, validation_fraction=0.3))
    long.fit(X, y, groups=groups)
    curve = long.validation_loss_curve_
    best = int(np.argmin(curve))
    assert 0 < best < len(curve) - 1 and long.n_iter_ == len(curve) == len(long.loss_curve_)
    assert long.best_validation_loss_ == curve[best]
    short = CodeNetwork(**_overfitting(max_iter=best + 1, validation_fraction=0.3))
    short.fit(X, y, groups=groups)
    assert short.validation_loss_curve_ == curve[: best + 1]
    for a, b in zip(long.model_.get_weights(), short.model_.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert set(long.codes_) == set(range(10))  # every condition keeps training rows
    for g in long.codes_:
        np.testing.assert_array_equal(long.codes_[g], short.codes_[g])


def _code_trainer(task, seeds, **params):
    core, _ = joint_network(6, Architecture((8,)), task, 2, "all", seeds.generator("weights"))
    params = {"alpha": 1e-3, "code_l2": 1e-2, **params}
    return CodeTrainer(core, 10, 2, seed=seeds.seed("codes"), **params)


@pytest.mark.backend
def test_epoch_loss_is_the_row_mean_with_a_short_last_batch(conditions):
    """With a vanishing step size, an epoch's loss is the penalised weighted mean loss over
    the rows, whatever the minibatch split: the short last minibatch (filled up with rows of
    weight zero) counts its own rows only."""
    X, y, groups, _ = conditions
    X, task = X.astype("float32"), Classification.from_targets(y)
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(X)).astype("float32")
    rows = Rows(X, groups, task.encode(y), weight)
    for batch_size in (64, len(X)):  # 600 rows: 9 minibatches of 64 and one of 24; one of 600
        seeds = Seeds(0)
        trainer = _code_trainer(task, seeds)
        schedule = Schedule(learning_rate_init=1e-12, batch_size=batch_size, max_iter=1)
        history = run_training(trainer, rows, np.zeros(len(X), bool), task.keras_loss(),
                               schedule, seeds.generator("shuffle"))
        loss = task.keras_loss()(y, trainer((X, groups)), sample_weight=weight)
        expected = float(loss) + float(trainer.penalty())
        np.testing.assert_allclose(history.loss[0], expected, rtol=1e-5)


@pytest.mark.backend
def test_code_dropout_is_seeded_and_redrawn_every_step(conditions):
    """The dropout's seed state is carried through the compiled steps (one draw per
    minibatch), the same seed gives the same fit, and dropping changes the fit."""
    X, y, groups, _ = conditions
    task = Classification.from_targets(y)
    rows = Rows(X.astype("float32"), groups, task.encode(y), np.ones(len(X), "float32"))

    def fit(code_dropout):
        seeds = Seeds(0)
        trainer = _code_trainer(task, seeds, code_dropout=code_dropout)
        start = np.asarray(trainer.dropout_seed.state).astype(np.int64)
        schedule = Schedule(batch_size=64, max_iter=3)
        history = run_training(trainer, rows, np.zeros(len(X), bool), task.keras_loss(),
                               schedule, seeds.generator("shuffle"))
        drawn = np.asarray(trainer.dropout_seed.state).astype(np.int64) - start
        return history.loss, drawn, trainer.codes()

    loss, drawn, codes = fit(0.5)
    assert drawn.tolist() == [0, 3 * 10]  # 3 epochs of 10 minibatches (600 rows)
    again = fit(0.5)
    assert loss == again[0]
    np.testing.assert_array_equal(codes, again[2])
    assert not np.allclose(loss, fit(0.0)[0], rtol=1e-4)


def test_early_stopping_split_needs_two_rows_per_condition(conditions):
    """Conditions of one row cannot give a validation row; with 2 rows they give one."""
    X, y, _, _ = conditions
    params = dict(hidden_layer_sizes=(4,), code_size=2, max_iter=1, early_stopping=True,
                  validation_fraction=0.01, random_state=0)
    with pytest.raises(ValueError, match="holds out no rows"):
        CodeNetwork(**params).fit(X[:20], y[:20], groups=np.arange(20))
    net = CodeNetwork(**params).fit(X[:20], y[:20], groups=np.arange(20) // 2)
    assert len(net.codes_) == 10 and len(net.validation_loss_curve_) == 1


def test_string_groups_and_labels(train):
    X, y, groups, _ = train
    labels = np.array(["a", "b", "c", "d"])[y]
    names = np.array([f"spk{g:02d}" for g in groups])
    net = CodeNetwork((8,), code_size=2, max_iter=2, random_state=0).fit(X, labels, groups=names)
    assert set(net.codes_) == set(names.tolist())
    assert set(net.predict(X[:20], groups=names[:20])) <= {"a", "b", "c", "d"}
    assert list(net.adapter().classes) == ["a", "b", "c", "d"]


def test_verbose_and_convergence_warning(train, capsys):
    X, y, groups, _ = train
    with pytest.warns(ConvergenceWarning, match="maximum number of epochs"):
        CodeNetwork((4,), code_size=2, max_iter=1, random_state=0).fit(X, y, groups=groups)
    assert capsys.readouterr().out == ""
    CodeNetwork((4,), code_size=2, max_iter=2, verbose=1, random_state=0).fit(X, y, groups=groups)
    assert "Epoch 2/2" in capsys.readouterr().out


def test_regressor(teacher, train):
    X, _, groups, true_codes = train
    target = 10 * teacher.predict([X, true_codes[groups]], verbose=0)[:, :2]
    reg = CodeNetworkRegressor(**SMALL, learning_rate_init=3e-3, max_iter=25)
    reg.fit(X, target[:, 0], groups=groups)
    assert reg.predict(X, groups=groups).shape == (len(X),)
    assert reg.score(X, target[:, 0], groups=groups) > reg.score(X, target[:, 0]) + 0.1
    adapter = reg.adapter(max_iter=20).fit(X[:30], target[:30, 0])
    assert adapter.predict(X[:5]).shape == (5,)
    two = CodeNetworkRegressor((4,), code_size=2, max_iter=1, random_state=0)
    assert two.fit(X, target, groups=groups).predict(X[:7]).shape == (7, 2)
    assert two.n_outputs_ == 2


# --------------------------------------------------------------------------------------
# The speaker-independent twin
# --------------------------------------------------------------------------------------


def _spy_on_split_and_row_order(monkeypatch) -> dict:
    """Record every validation split and every epoch's row order of the training runs."""
    seen = {"split": [], "order": []}
    split, epoch = training.validation_split, EpochRunner.epoch

    def spy_split(*args, **kwargs):
        seen["split"].append(split(*args, **kwargs))
        return seen["split"][-1]

    def spy_epoch(runner, rng):
        seen["order"].append(copy.deepcopy(rng).permutation(runner.n_rows))
        return epoch(runner, rng)

    monkeypatch.setattr(training, "validation_split", spy_split)
    monkeypatch.setattr(EpochRunner, "epoch", spy_epoch)
    return seen


@pytest.mark.backend
def test_si_twin_starts_from_the_code_networks_weights_split_and_row_order(conditions,
                                                                          monkeypatch):
    """With a vanishing learning rate both stay at their initial weights: the twin's are
    those of the code network's W_l, b_l and output layer. Both hold out the same
    validation rows and visit the rows in the same order every epoch, although the code
    network also draws its code table."""
    X, y, groups, _ = conditions
    params = dict(hidden_layer_sizes=(8, 6), code_size=2, learning_rate_init=1e-12,
                  max_iter=2, early_stopping=True, random_state=3)
    seen = _spy_on_split_and_row_order(monkeypatch)
    twin = si_twin(X, y, groups, architecture=Architecture.from_params(params),
                   schedule=Schedule.from_params(params), random_state=3)
    twin_seen = {name: list(values) for name, values in seen.items()}
    for values in seen.values():
        values.clear()
    coded = CodeNetwork(**params).fit(X, y, groups=groups).model_
    assert [t.name for t in twin.inputs] == ["features"]
    for name in ("hidden_0", "hidden_1", "output"):
        for a, b in zip(twin.get_layer(name).get_weights(), coded.get_layer(name).get_weights(),
                        strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)
    (twin_held,), (coded_held,) = twin_seen["split"], seen["split"]
    assert 0 < twin_held.sum() < len(X)
    np.testing.assert_array_equal(twin_held, coded_held)
    assert len(twin_seen["order"]) == len(seen["order"]) == 2
    assert not np.array_equal(*twin_seen["order"])  # every epoch is shuffled anew
    for a, b in zip(twin_seen["order"], seen["order"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_other_random_states_draw_other_weights_split_and_row_order(conditions, monkeypatch):
    """The guarantee above is not one fixed draw: another random_state changes all three."""
    X, y, groups, _ = conditions
    schedule = Schedule(max_iter=1, early_stopping=True, learning_rate_init=1e-12)
    seen = _spy_on_split_and_row_order(monkeypatch)
    first, second = (si_twin(X, y, groups, architecture=Architecture((8,)), schedule=schedule,
                             random_state=seed) for seed in (3, 4))
    assert not np.array_equal(*seen["split"]) and not np.array_equal(*seen["order"])
    assert not np.allclose(first.get_weights()[0], second.get_weights()[0])


@pytest.mark.parametrize("regression", [False, True])
def test_si_twin_is_reproducible(regression, conditions):
    X, y, groups, _ = conditions
    target = X[:, :2] + y[:, None] if regression else y
    kw = dict(architecture=Architecture((8,)), random_state=1, regression=regression,
              schedule=Schedule(max_iter=3, early_stopping=True))
    first = si_twin(X, target, groups, **kw)
    again = si_twin(X, target, groups, **kw)
    for a, b in zip(first.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    out = predict_in_chunks(first, X[:5])
    assert out.shape == (5, 2 if regression else 4)
    if not regression:
        np.testing.assert_allclose(out.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Schedule(max_iter=0), "'max_iter' parameter of Schedule"),
        (lambda: Schedule(batch_size="big"), "'batch_size' parameter of Schedule"),
        (lambda: Architecture(activation="softplus"), "'activation' parameter of Architecture"),
        (lambda: Architecture((8, 0)), "hidden_layer_sizes must hold positive ints"),
    ],
)
def test_schedule_and_architecture_refuse_bad_values(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# --------------------------------------------------------------------------------------
# Building blocks: chunked prediction and the task objects
# --------------------------------------------------------------------------------------


def test_predict_in_chunks(net, held_out):
    X, _, groups, _ = held_out
    X, Z = X.astype("float32"), net._codes_for(groups, len(X))
    whole = keras.ops.convert_to_numpy(net.model_([X, Z]))
    np.testing.assert_allclose(predict_in_chunks(net.model_, [X, Z], chunk=7), whole, atol=1e-6)
    assert predict_in_chunks(net.model_, [X[:0], Z[:0]]).shape == (0, 4)
    with pytest.raises(ValueError, match="different numbers of rows"):
        predict_in_chunks(net.model_, [X, Z[:3]])


def test_classification_task():
    task = Classification(["a", "b", "c"])
    np.testing.assert_array_equal(task.encode(["c", "a", "c"]), [2, 0, 2])
    assert task.encode(np.array(["b", -1], object), unlabelled=True).tolist() == [1, -1]
    assert task.encode(None, 3, unlabelled=True).tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match=r"\['z'\]"):
        task.encode(["a", "z"])
    with pytest.raises(ValueError, match="-1"):
        task.encode(np.array(["a", -1], object))  # -1 is a label unless unlabelled=True
    assert task.n_outputs == 3 and task.output_activation == "softmax"
    assert isinstance(task.keras_loss(), keras.losses.SparseCategoricalCrossentropy)
    with pytest.raises(ValueError, match="probabilities"):
        task.check_outputs([[0.5, 0.2, 0.1]], "base_model")
    sigmoid = Classification.from_output("sigmoid", 1, classes=["no", "yes"])
    assert sigmoid.loss == "sigmoid" and sigmoid.n_outputs == 1
    np.testing.assert_allclose(sigmoid.convert([[0.25]]), [[0.75, 0.25]])
    assert sigmoid.predict([[0.25], [0.75]]).tolist() == ["no", "yes"]
    logits = Classification.from_output("linear", 2)
    np.testing.assert_allclose(logits.convert([[0.0, np.log(3)]]), [[0.25, 0.75]])
    assert logits.keras_loss().get_config()["from_logits"]
    with pytest.raises(ValueError, match="sigmoid output has 3 units"):
        Classification.from_output("sigmoid", 3)
    with pytest.raises(ValueError, match="2 labels but the model outputs 3"):
        Classification.from_output("softmax", 3, classes=[0, 1])
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        Classification.from_targets([0.5, 1.7, 2.2])
    with pytest.raises(ValueError, match="at least 2 classes"):
        Classification.from_targets([1, 1])


def test_regression_task():
    task = Regression.from_targets(np.arange(4.0))
    assert (task.n_outputs, task.one_d, task.loss) == (1, True, "mse")
    assert task.encode([1, 2]).shape == (2, 1)
    assert task.predict([[1.0], [2.0]]).shape == (2,)
    two = Regression.from_output("linear", 2)
    assert two.predict(np.ones((3, 2))).shape == (3, 2)
    with pytest.raises(ValueError, match=r"expected \(3,\) or \(3, 2\)"):
        two.encode(np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        task.encode([np.nan])
    with pytest.raises(ValueError, match="linear output"):
        Regression.from_output("softmax", 3)


# --------------------------------------------------------------------------------------
# Code normalisation
# --------------------------------------------------------------------------------------


@pytest.mark.backend
@pytest.mark.parametrize("centre", [True, False])
def test_normalising_codes_keeps_the_outputs(centre):
    si = _si_model(seed=11)
    model, pairs = rewire(si, 3, "all")
    rng = np.random.default_rng(0)
    for _, b_layer in pairs:
        b_layer.set_weights([rng.normal(size=b_layer.kernel.shape)])
    codes = rng.normal(loc=2.0, scale=5.0, size=(5, 3))
    X = rng.normal(size=(5, 6)).astype("float32")
    before = keras.ops.convert_to_numpy(model([X, codes.astype("float32")]))
    new_codes = normalise_codes(model, codes, pairs if centre else None, centre=centre)
    after = keras.ops.convert_to_numpy(model([X, new_codes.astype("float32")]))
    np.testing.assert_allclose(after, before, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.mean((new_codes - new_codes.mean(0)) ** 2)), 1, 1e-5)
    assert np.allclose(new_codes.mean(0), 0, atol=1e-6) == centre


# --------------------------------------------------------------------------------------
# Retrofit (mode a)
# --------------------------------------------------------------------------------------


def _functional_si(seed=0):
    init = keras.initializers.GlorotUniform
    x = inputs = keras.Input((6,), name="mfcc")
    x = keras.layers.Normalization(mean=0.5, variance=2.0)(x)
    x = keras.layers.Dense(16, kernel_initializer=init(seed), name="d1")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Dense(8, activation="elu", kernel_initializer=init(seed + 1))(x)
    x = keras.layers.Dense(3, kernel_initializer=init(seed + 2), name="logits")(x)
    outputs = keras.layers.Softmax()(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("build", [_si_model, _functional_si])
@pytest.mark.parametrize("layers", ["all", "input", [1], [-1, 0]])
def test_retrofit_with_zero_code_is_the_original(build, layers):
    si = build()
    before = _snapshot(si)
    coded = add_condition_codes(si, code_size=5, layers=layers)
    assert _snapshot(si) == before  # weights byte-identical, trainable flags unchanged
    assert [t.name for t in coded.inputs] == ["features", "code"]
    X = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    np.testing.assert_allclose(
        coded([X, np.zeros((64, 5), "float32")]), si(X, training=False), rtol=0, atol=1e-6
    )
    b_layers = [
        layer
        for layer in coded.layers
        if isinstance(layer, keras.layers.Dense) and layer.name.endswith("_code")
    ]
    n_coded = {"all": 2, "input": 1}.get(layers if isinstance(layers, str) else "", len(layers))
    assert len(b_layers) == n_coded
    assert all(not np.any(layer.get_weights()[0]) for layer in b_layers)
    trainable = {id(w) for w in coded.trainable_weights}
    assert trainable == {id(layer.kernel) for layer in b_layers}


def test_retrofit_code_changes_output_and_round_trips_safely():
    si = _functional_si()
    coded = add_condition_codes(si, code_size=2)
    for layer in coded.layers:
        if isinstance(layer, keras.layers.Dense) and layer.name.endswith("_code"):
            layer.set_weights([np.ones(layer.kernel.shape)])
    X = np.ones((4, 6), "float32")
    code = np.full((4, 2), 0.5, "float32")
    out = coded([X, code])
    assert not np.allclose(out, si(X))
    loaded = model_from_bytes(model_to_bytes(coded))
    np.testing.assert_allclose(loaded([X, code]), out, atol=1e-6)


def _conv_model():
    return keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Reshape((6, 1), name="to_frames"),
            keras.layers.Conv1D(4, 3, name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def _skip_model():
    inputs = keras.Input((6,))
    h = keras.layers.Dense(6, name="inner")(inputs)
    merged = keras.layers.Add(name="skip")([inputs, h])
    return keras.Model(inputs, keras.layers.Dense(3, name="out")(merged))


def _nested_model():
    inputs = keras.Input((6,))
    inner = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(3)], name="inner_mlp")
    return keras.Model(inputs, keras.layers.Dense(2)(inner(inputs)))


def _rnn_model():
    return keras.Sequential([keras.Input((5, 6)), keras.layers.SimpleRNN(4, name="rnn")])


@pytest.mark.parametrize(
    ("build", "kwargs", "error", "match"),
    [
        (_nested_model, {}, ValueError, "layer 'inner_mlp' is a nested model"),
        (lambda: keras.Sequential([keras.layers.Dense(2)]), {}, ValueError, "not built"),
        (_si_model, {"layers": [2]}, ValueError, "out of range"),
        (_si_model, {"layers": []}, ValueError, "empty"),
        (_si_model, {"layers": "middle"}, ValueError, "not understood"),
        (_si_model, {"layers": [0.5]}, TypeError, "int"),
        (_si_model, {"code_size": 0}, ValueError, "code_size"),
        (
            lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]),
            {},
            ValueError,
            "no hidden Dense",
        ),
        (lambda: "not a model", {}, TypeError, "keras.Model"),
    ],
)
def test_retrofit_errors(build, kwargs, error, match):
    with pytest.raises(error, match=match):
        add_condition_codes(build(), **{"code_size": 2, **kwargs})


@pytest.mark.parametrize(("build", "layers"),
                         [(_conv_model, "all"), (_skip_model, "all"), (_rnn_model, ["rnn"])])
def test_models_beyond_dense_chains_are_retrofitted(build, layers):
    # once refused; now coded through their graph (tests/test_architectures.py)
    model = build()
    coded = add_condition_codes(model, code_size=2, layers=layers)
    X = np.random.default_rng(0).normal(size=(4, *model.inputs[0].shape[1:])).astype("float32")
    np.testing.assert_array_equal(coded.predict([X, np.zeros((4, 2), "float32")], verbose=0),
                                  model.predict(X, verbose=0))


@pytest.mark.backend
def test_base_model_trains_only_codes_and_b(si_model, train, held_out):
    X, y, groups, _ = train
    before = _snapshot(si_model)
    net = CodeNetwork(base_model=si_model, code_size=4, learning_rate_init=1e-2, max_iter=20)
    net.set_params(random_state=0).fit(X, y, groups=groups)
    assert _snapshot(si_model) == before
    # the pretrained layers are frozen copies; a zero code still gives the SI model
    model = net.model_
    for old in si_model.layers:
        new = model.get_layer(old.name)
        assert not new.trainable
        for w_old, w_new in zip(old.get_weights(), new.get_weights(), strict=True):
            np.testing.assert_array_equal(w_old, w_new)
    X_held = held_out[0].astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model([X_held, np.zeros((len(X_held), 4), "float32")])),
        keras.ops.convert_to_numpy(si_model(X_held)), atol=1e-6,
    )
    # the codes help on fresh rows of the training conditions
    si_accuracy = np.mean(si_model.predict(X, verbose=0).argmax(axis=1) == y)
    assert net.score(X, y, groups=groups) > si_accuracy + 0.1
    # a model that already has a code input is trained as it is
    again = CodeNetwork(base_model=net.model_, max_iter=2, random_state=0)
    again.fit(X, y, groups=groups)
    assert again.model_ is not net.model_
    assert again.model_.inputs[1].shape[-1] == 4


@pytest.mark.parametrize(
    ("base", "match"),
    [
        (lambda: _si_model(n_classes=3), "3 output units"),
        (
            lambda: keras.Sequential(
                [
                    keras.Input((6,)),
                    keras.layers.Dense(4, activation="relu"),
                    keras.layers.Dense(4),
                ]
            ),
            "probabilities",
        ),
        (lambda: _si_model(n_features=5), "5"),
    ],
)
def test_base_model_errors(base, match, train):
    X, y, groups, _ = train
    with pytest.raises(ValueError, match=match):
        CodeNetwork(base_model=base(), max_iter=1).fit(X, y, groups=groups)


# --------------------------------------------------------------------------------------
# scikit-learn citizenship
# --------------------------------------------------------------------------------------


def test_clone_shares_base_model(si_model):
    with sklearn.config_context(enable_metadata_routing=True):
        net = CodeNetwork(base_model=si_model, code_size=3).set_fit_request(groups=True)
        copy = clone(net)
    assert copy.base_model is si_model
    assert copy.get_params()["code_size"] == 3
    assert copy.get_metadata_routing().fit.requests["groups"] is True
    unpickled = pickle.loads(pickle.dumps(net))  # the base model travels as .keras bytes
    assert isinstance(unpickled.base_model, keras.Model)
    assert len(unpickled.base_model.get_weights()) == len(si_model.get_weights())


@pytest.mark.backend
def test_pickle_round_trip(net, held_out):
    X, _, groups, _ = held_out
    loaded = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(loaded.predict_proba(X, groups), net.predict_proba(X, groups))
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    assert loaded.codes_.keys() == net.codes_.keys()


def test_joblib_into_fresh_process(net, train, tmp_path):
    X, _, groups, _ = train
    joblib.dump(net, tmp_path / "net.joblib")
    np.save(tmp_path / "X.npy", X[:50])
    np.save(tmp_path / "groups.npy", groups[:50])
    script = textwrap.dedent(
        f"""
        import joblib, numpy as np
        net = joblib.load({str(tmp_path / "net.joblib")!r})
        X = np.load({str(tmp_path / "X.npy")!r}); g = np.load({str(tmp_path / "groups.npy")!r})
        np.save({str(tmp_path / "out.npy")!r}, net.predict_proba(X, groups=g))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    np.testing.assert_array_equal(
        np.load(tmp_path / "out.npy"), net.predict_proba(X[:50], groups=groups[:50])
    )


def test_grid_search_routes_groups_through_a_pipeline(conditions):
    """groups reach GroupKFold, CodeNetwork.fit (which raises without them) and score,
    through a Pipeline and clones of it; the routing config is reset afterwards."""
    X, y, groups, _ = conditions
    grid = {"codenetwork__hidden_layer_sizes": [(8,), (8, 8)], "codenetwork__code_size": [2]}
    with sklearn.config_context(enable_metadata_routing=True):
        net = CodeNetwork(max_iter=2, random_state=0)
        net.set_fit_request(groups=True).set_score_request(groups=True)
        search = GridSearchCV(
            make_pipeline(FunctionTransformer(), net),
            grid,
            cv=GroupKFold(n_splits=2),
            error_score="raise",
        )
        search.fit(X, y, groups=groups)
        fitted = search.best_estimator_[-1]
        assert set(fitted.codes_) == set(range(10))  # refit on every group
        assert search.score(X, y, groups=groups) == fitted.score(X, y, groups=groups)
    assert not sklearn.get_config()["enable_metadata_routing"]
    assert len(search.cv_results_["params"]) == 2
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def _bad_inputs(X, y, groups):
    nan_X = X.copy()
    nan_X[3, 2] = np.nan
    return [
        ({"X": X, "y": y, "groups": None}, ValueError, "needs groups"),
        ({"X": nan_X, "y": y, "groups": groups}, ValueError, "NaN"),
        ({"X": X, "y": y[:-1], "groups": groups}, ValueError, "inconsistent"),
        ({"X": X, "y": y, "groups": groups[:-1]}, ValueError, "groups has"),
        ({"X": X, "y": y, "groups": np.zeros(len(y))}, ValueError, "at least 2 conditions"),
        ({"X": X, "y": np.zeros(len(y)), "groups": groups}, ValueError, "2 classes"),
        ({"X": X, "y": y, "groups": np.where(groups == 1, np.nan, groups)}, ValueError, "NaN"),
        ({"X": X[:, 0], "y": y, "groups": groups}, ValueError, "2D array"),
        ({"X": X, "y": y + 0.5, "groups": groups}, ValueError, "Unknown label type"),
    ]


def test_bad_input_raises_clear_errors_and_leaves_arrays_alone(train):
    X, y, groups, _ = train
    copies = [X.copy(), y.copy(), groups.copy()]
    for kwargs, error, match in _bad_inputs(X, y, groups):
        with pytest.raises(error, match=match):
            CodeNetwork((4,), code_size=2, max_iter=1).fit(**kwargs)
    CodeNetwork((4,), code_size=2, max_iter=1, random_state=0).fit(X, y, groups=groups)
    for before, after in zip(copies, (X, y, groups), strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"hidden_layer_sizes": (8, 0)}, "hidden_layer_sizes"),
        ({"hidden_layer_sizes": ()}, "hidden_layer_sizes"),
        ({"code_layers": "middle"}, "code_layers"),
        ({"code_layers": [3]}, "out of range"),
        ({"code_size": 0}, "code_size"),
        ({"activation": "softplus"}, "activation"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"base_model": "model.keras"}, "base_model"),
    ],
)
def test_bad_parameters(params, match, train):
    X, y, groups, _ = train
    with pytest.raises(ValueError, match=match):
        CodeNetwork(**{"hidden_layer_sizes": (4,), "max_iter": 1, **params}).fit(
            X, y, groups=groups
        )


def test_predict_errors(net, held_out):
    X, _, groups, _ = held_out
    with pytest.raises(ValueError, match="features"):
        net.predict(X[:, :5])
    with pytest.raises(ValueError, match="groups has"):
        net.predict(X, groups=groups[:3])
    with pytest.raises(sklearn.exceptions.NotFittedError):
        CodeNetwork().predict(X)
    with pytest.raises(sklearn.exceptions.NotFittedError):
        CodeNetwork().adapter()
