"""Serving an adapted condition: ``to_keras`` exports a plain Keras model.

The exported model takes the feature inputs only (or, with ``all_groups=True``, also
a condition index), reproduces the adapter's ``predict_proba``/``predict``, leaves the
user's model untouched, saves to ``.keras`` and loads back with ``safe_mode=True`` in a
fresh process that never imports skdc, and, on TensorFlow, serves as a SavedModel.

Fresh processes cost seconds each, so one loader process per backend loads every
artefact (the ``served`` fixture) and the tests read its results.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from skdc import CodeAdapter, CodeAdapterRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CI_BACKENDS = ("tensorflow", "jax")
CURRENT = keras.backend.backend()
ATOL = 1e-6


# -- models of every output kind, code input not last ------------------------------------


def _model(units, activation, out_shape=None, first=(2, 2)):
    """Inputs ``a`` (shape ``first``), ``code`` (2,) and ``b`` (3,), in that order."""
    a = keras.Input(first, name="a")
    z = keras.Input((2,), name="code")
    b = keras.Input((3,), name="b")
    flat = keras.layers.Flatten()(a) if len(first) > 1 else a
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([flat, z, b]))
    out = keras.layers.Dense(units, activation=activation)(h)
    if out_shape is not None:
        out = keras.layers.Reshape(out_shape)(out)
    return keras.Model([a, z, b], out)


def _any_width_model():
    x = keras.Input((None,), name="features")
    z = keras.Input((2,), name="code")
    h = keras.layers.GlobalAveragePooling1D()(
        keras.layers.Dense(4, activation="tanh")(keras.layers.Reshape((-1, 1))(x)))
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([h, z]))
    return keras.Model([x, z], keras.layers.Dense(3, activation="softmax")(h))


def _split(X):
    return [X[:, :4].reshape(-1, 2, 2), X[:, 4:]]


rng = np.random.default_rng(0)
_X = rng.normal(size=(24, 7)).astype(np.float32)
KINDS = {
    # name: model builder, estimator, y, how X feeds the exported model
    "softmax": (lambda: _model(3, "softmax"), CodeAdapter, rng.integers(0, 3, 24), _split),
    "sigmoid": (lambda: _model(1, "sigmoid"), CodeAdapter, rng.integers(0, 2, 24), _split),
    "logits": (lambda: _model(3, None), CodeAdapter, rng.integers(0, 3, 24), _split),
    "regression": (lambda: _model(1, None), CodeAdapterRegressor, rng.normal(size=24), _split),
    "regression_2x3": (lambda: _model(6, None, out_shape=(2, 3), first=(4,)),
                       CodeAdapterRegressor, rng.normal(size=(24, 6)),
                       lambda X: [X[:, :4], X[:, 4:]]),
    "any_width": (_any_width_model, CodeAdapter, rng.integers(0, 3, 24), lambda X: X),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_export_reproduces_the_adapter_and_copies_the_model(kind):
    build, estimator, y, split = KINDS[kind]
    model = build()
    before = [w.tobytes() for w in model.get_weights()]
    adapter = estimator(model, max_iter=20, learning_rate=0.2, tol=0.0, random_state=0)
    adapter.fit(_X, y)
    exported = adapter.to_keras()

    feature_names = [t.name for t in model.inputs if t.name != "code"]
    assert [t.name for t in exported.inputs] == feature_names
    got = np.asarray(exported.predict(split(_X), verbose=0))
    if estimator is CodeAdapter:
        expected = adapter.predict_proba(_X)
    else:  # the exported regressor keeps its column; predict is 1-D for one target
        expected = adapter.predict(_X).reshape(len(_X), -1)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
    assert not np.allclose(adapter.code_, 0.0), "the learned code must not be the initial one"

    # copied, not shared: zeroing the export's weights leaves the model as it was
    for variable in exported.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    assert [w.tobytes() for w in model.get_weights()] == before
    np.testing.assert_allclose(adapter.predict_proba(_X) if estimator is CodeAdapter
                               else adapter.predict(_X).reshape(len(_X), -1),
                               expected, rtol=0, atol=0)


# -- grouped fits ------------------------------------------------------------------------


SPEAKERS = np.array(["spk-d", "spk-c", "spk-b", "spk-a", "spk-e", "spk-f"])


@pytest.fixture(scope="module")
def grouped(teacher, conditions):
    """An adapter fitted on 4 conditions (12 rows each), and rows of 6 conditions.

    Conditions are named so that ``codes_`` (sorted labels) is not in the order of
    first appearance.
    """
    X, y, groups, _ = conditions
    adapt = np.concatenate([np.flatnonzero(groups == g)[:12] for g in range(4)])
    adapter = CodeAdapter(teacher, optimizer="lbfgs", max_iter=30, random_state=0)
    adapter.fit(X[adapt], y[adapt], groups=SPEAKERS[groups[adapt]])
    rows = np.concatenate([np.flatnonzero(groups == g)[12:20] for g in range(6)])
    return adapter, X[rows].astype(np.float32), SPEAKERS[groups[rows]]


def _index(adapter, groups) -> np.ndarray:
    """The all-groups model's index of each label: its position in codes_, else -1."""
    position = {g: i for i, g in enumerate(adapter.codes_)}
    return np.array([position.get(g, -1) for g in groups.tolist()], dtype=np.int32)


def test_group_export_uses_that_groups_code(grouped):
    adapter, X, _ = grouped
    outputs = {}
    for g in ("spk-a", "spk-d"):
        outputs[g] = adapter.to_keras(group=g).predict(X, verbose=0)
        np.testing.assert_allclose(outputs[g], adapter.predict_proba(X, groups=[g] * len(X)),
                                   rtol=0, atol=ATOL)
    assert np.abs(outputs["spk-a"] - outputs["spk-d"]).max() > 1e-2  # two different codes
    # no group: code_, the code predict uses for groups not seen in fit
    np.testing.assert_allclose(adapter.to_keras().predict(X, verbose=0),
                               adapter.predict_proba(X, groups=["nobody"] * len(X)),
                               rtol=0, atol=ATOL)


def test_all_groups_export_reproduces_predict_with_groups_and_unknown_ones(grouped):
    adapter, X, groups = grouped
    exported = adapter.to_keras(all_groups=True)
    assert [t.name for t in exported.inputs] == ["features", "group"]
    assert list(adapter.codes_) == ["spk-a", "spk-b", "spk-c", "spk-d"]  # the index order
    assert set(groups) - set(adapter.codes_) == {"spk-e", "spk-f"}  # two unseen conditions
    index = _index(adapter, groups)
    # any index outside [0, n_groups) is an unknown condition, not only -1
    unknown = np.flatnonzero(index < 0)
    index[unknown[::3]] = len(adapter.codes_)
    index[unknown[1::3]] = 10_000
    index[unknown[2::3]] = -5
    got = exported.predict([X, index], verbose=0)
    np.testing.assert_allclose(got, adapter.predict_proba(X, groups=groups), rtol=0, atol=ATOL)
    known = index >= 0
    np.testing.assert_allclose(got[~known], adapter.to_keras().predict(X[~known], verbose=0),
                               rtol=0, atol=ATOL)


# -- bad input ---------------------------------------------------------------------------


def test_export_refuses_what_it_cannot_export(teacher, grouped, one_condition):
    adapter, _, _ = grouped
    with pytest.raises(NotFittedError):
        CodeAdapter(teacher).to_keras()
    with pytest.raises(ValueError, match=r"group 'nobody' was not seen in fit; the adapter's "
                                         r"groups are \['spk-a', 'spk-b', 'spk-c', 'spk-d'\]"):
        adapter.to_keras(group="nobody")
    with pytest.raises(ValueError, match="not both"):
        adapter.to_keras(group="spk-a", all_groups=True)
    with pytest.raises(TypeError, match="one group label"):
        adapter.to_keras(group=["spk-a"])
    with pytest.raises(TypeError, match="all_groups must be True or False"):
        adapter.to_keras(all_groups="yes")
    Xa, ya, *_ = one_condition
    tied = CodeAdapter(teacher, max_iter=3).fit(Xa, ya)
    with pytest.raises(ValueError, match="fitted without groups.*to_keras\\(\\) without group"):
        tied.to_keras(group=0)
    with pytest.raises(ValueError, match="all_groups=True needs a fit with groups"):
        tied.to_keras(all_groups=True)


# -- saved, reloaded and served in fresh processes ----------------------------------------
#
# This process saves the exports; a fresh process per CI backend loads them (both at
# once: each costs seconds of imports). Under JAX (the CI's second pass) the exports are
# saved by JAX and loaded by a fresh JAX process: the JAX round trip; under TensorFlow,
# the TensorFlow round trip, SavedModel serving, and a JAX service loading a TensorFlow
# export.

_SERVE = """
    # Load every artefact as a server would: no skdc, .keras with safe_mode=True, and
    # on TensorFlow the SavedModels through their serving_default signature.
    import json, sys
    import numpy as np
    import keras
    outputs = {}
    for entry in json.load(open("manifest.json")):
        data = np.load(entry["data"])
        if entry["format"] == "keras":
            model = keras.saving.load_model(entry["path"], safe_mode=True)
            args = [data[t.name] for t in model.inputs]
            outputs[entry["name"]] = model.predict(args if len(args) > 1 else args[0],
                                                   verbose=0)
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf
            serve = tf.saved_model.load(entry["path"]).signatures["serving_default"]
            names = serve.structured_input_signature[1]
            (result,) = serve(**{k: tf.constant(data[k]) for k in names}).values()
            outputs[entry["name"]] = result.numpy()
    np.savez(f"served_{keras.backend.backend()}.npz", **outputs)
    print(json.dumps({"backend": keras.backend.backend(), "skdc": "skdc" in sys.modules}))
"""


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory, teacher, conditions):
    """Exports saved by this process, with their inputs and the adapters' outputs.

    A new condition (5) is adapted from 10 rows and exported with its code built in;
    four conditions are adapted together and exported with all their codes, served on
    rows of a known and of an unknown condition.
    """
    folder = tmp_path_factory.mktemp("export")
    X, y, groups, _ = conditions
    new = np.flatnonzero(groups == 5)
    tied = CodeAdapter(teacher, optimizer="lbfgs", max_iter=30).fit(X[new[:10]], y[new[:10]])
    rows = np.flatnonzero(groups < 4)[::4]
    several = CodeAdapter(teacher, optimizer="lbfgs", max_iter=30).fit(
        X[rows], y[rows], groups=groups[rows])
    serve_rows = np.concatenate([new[10:30], rows[::3]])
    Xs, gs = X[serve_rows].astype(np.float32), groups[serve_rows]
    np.savez(folder / "inputs.npz", features=Xs, group=_index(several, gs))
    expected = {"tied": tied.predict_proba(Xs), "groups": several.predict_proba(Xs, groups=gs)}
    manifest = []
    for name, exported in (("tied", tied.to_keras()),
                           ("groups", several.to_keras(all_groups=True))):
        exported.save(folder / f"{name}.keras")
        manifest.append({"name": name, "format": "keras", "path": f"{name}.keras",
                         "data": "inputs.npz"})
        if CURRENT == "tensorflow":
            exported.export(str(folder / f"{name}_savedmodel"), verbose=False)
            manifest.append({"name": f"{name}_savedmodel", "format": "savedmodel",
                             "path": f"{name}_savedmodel", "data": "inputs.npz"})
            expected[f"{name}_savedmodel"] = expected[name]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, expected


@pytest.fixture(scope="module")
def served(artefacts):
    """``served(backend)``: the report and outputs of a fresh process under ``backend``."""
    folder, _ = artefacts
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    running = {
        backend: subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_SERVE)], cwd=folder, text=True,
            env={**env, "KERAS_BACKEND": backend},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for backend in CI_BACKENDS
    }
    done = {}

    def result(backend):
        if backend not in done:
            out, err = running[backend].communicate(timeout=300)
            code = running[backend].returncode
            assert code == 0, f"{backend}: exit {code}\n{out}\n{err}"
            report = json.loads(out.strip().splitlines()[-1])
            done[backend] = report, dict(np.load(folder / f"served_{backend}.npz"))
        return done[backend]

    yield result
    for proc in running.values():  # a failed test may leave one unread
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.parametrize("target", CI_BACKENDS)
def test_exports_load_with_safe_mode_in_a_fresh_process_without_skdc(target, artefacts,
                                                                       served):
    _, expected = artefacts
    report, outputs = served(target)
    assert report == {"backend": target, "skdc": False}
    for name in ("tied", "groups"):
        np.testing.assert_allclose(outputs[name], expected[name], rtol=0, atol=ATOL,
                                   err_msg=f"{name}.keras saved under {CURRENT}, loaded "
                                           f"under {target}")


@pytest.mark.skipif(CURRENT != "tensorflow",
                    reason=f"SavedModel export is tested under TensorFlow; this run uses "
                           f"{CURRENT}")
def test_savedmodel_export_serves_identical_outputs_in_a_fresh_process(artefacts, served):
    _, expected = artefacts
    _, outputs = served("tensorflow")
    for name in ("tied_savedmodel", "groups_savedmodel"):
        np.testing.assert_allclose(outputs[name], expected[name], rtol=0, atol=ATOL,
                                   err_msg=name)


def test_export_after_unpickling(grouped):
    # the task and engine of an unpickled adapter are rebuilt on first use
    adapter, X, groups = grouped
    loaded = pickle.loads(pickle.dumps(adapter))
    np.testing.assert_allclose(
        loaded.to_keras(all_groups=True).predict([X, _index(adapter, groups)], verbose=0),
        adapter.predict_proba(X, groups=groups), rtol=0, atol=ATOL)
