"""Keras backends: a cheap ``import skdc``, one clear error for an unsupported backend,
estimators persisted under one backend and loaded under another, and the CI command
that runs the ``backend``-marked tests again under JAX.

Each cross-process check runs a fresh interpreter with its own ``KERAS_BACKEND``.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import joblib
import keras
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import skdc

ROOT = Path(__file__).resolve().parents[1]
#: The backends CI runs (README, .ci/run); torch is tried by hand (README, Backends).
CI_BACKENDS = ("tensorflow", "jax")
CURRENT = keras.backend.backend()


def _python(code: str, backend: str, cwd: Path | None = None, timeout: float = 300):
    """Run ``code`` in a fresh interpreter under ``backend``; its completed process."""
    env = {**os.environ, "KERAS_BACKEND": backend}
    env.pop("SKDC_TF_STARTUP_LOG", None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def _ok(proc) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# -- import skdc ----------------------------------------------------------------------


def test_import_skdc_imports_no_backend_until_an_estimator_needs_one():
    proc = _python("""
        import sys
        import skdc
        heavy = ("keras", "tensorflow", "jax", "torch", "sklearn", "scipy")
        loaded = [m for m in heavy if m in sys.modules]
        assert not loaded, loaded
        assert set(skdc.__all__) <= set(dir(skdc)), set(skdc.__all__) - set(dir(skdc))
        assert skdc.__version__
        import numpy as np
        from skdc._synthetic import make_teacher  # imports Keras
        adapter = skdc.CodeAdapter(make_teacher(), max_iter=2)
        print(adapter.fit(np.zeros((4, 6)), [0, 1, 2, 3]).n_iter_)
        for name in skdc.__all__:
            getattr(skdc, name)
        from skdc import datasets, evaluation
        assert callable(evaluation.evaluate) and callable(datasets.get_data_home)
    """, "tensorflow")
    assert _ok(proc).strip() == "2"
    # TensorFlow's C++ start-up lines ignore logging settings; import skdc silences them
    # whenever Keras is first imported after it, through an estimator or directly.
    assert "oneDNN" not in proc.stderr and "cuda" not in proc.stderr.lower(), proc.stderr


def test_unknown_public_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        skdc.no_such_thing  # noqa: B018


# -- unsupported backend ----------------------------------------------------------------


def test_unsupported_backend_gives_one_clear_error():
    out = _ok(_python("""
        import traceback
        import numpy as np
        import keras
        from skdc import CodeAdapter, CodeNetwork
        assert keras.backend.backend() == "numpy"
        x, z = keras.Input((3,), name="features"), keras.Input((2,), name="code")
        h = keras.layers.Concatenate()([x, z])
        model = keras.Model([x, z], keras.layers.Dense(2, activation="softmax")(h))
        X = np.random.default_rng(0).normal(size=(8, 3))
        for est in (CodeAdapter(model, max_iter=3), CodeNetwork((4,), code_size=2, max_iter=2)):
            try:
                est.fit(X, [0, 1] * 4, groups=[0, 0, 1, 1] * 2)
            except ValueError as exc:
                frames = traceback.extract_tb(exc.__traceback__)
                print(repr((type(est).__name__, str(exc), frames[-1].filename,
                            exc.__cause__ is None and exc.__context__ is None)))
            except Exception as exc:
                print(repr((type(est).__name__, traceback.format_exc(), "", False)))
            else:
                print(repr((type(est).__name__, "no error", "", False)))
    """, "numpy"))
    results = [ast.literal_eval(line) for line in out.strip().splitlines()[-2:]]
    assert [r[0] for r in results] == ["CodeAdapter", "CodeNetwork"], out
    for name, message, raised_in, unchained in results:
        assert "'numpy'" in message and "tensorflow, jax" in message, (name, message)
        # the backend check itself, before anything backend-specific could fail
        assert Path(raised_in).parent.name == "_backend", (name, raised_in)
        assert unchained, name


# -- persistence across backends ------------------------------------------------------

_LOAD_AND_PREDICT = """
    import skdc  # first: then TensorFlow's start-up lines stay quiet
    import json, traceback
    import joblib
    import numpy as np
    import keras

    data = np.load("inputs.npz")
    X, groups = data["X"], data["groups"]
    report = {"backend": keras.backend.backend()}
    loaders = {"joblib": joblib.load}
    try:
        import skops.io as sio
    except ImportError:
        pass
    else:
        loaders["skops"] = lambda p: sio.load(p, trusted=skdc.SKOPS_TRUSTED_TYPES)
    for name in FILES:
        kind = name.rsplit(".", 1)[1]
        try:
            est = loaders[kind](name)
            np.save(name + ".proba.npy", est.predict_proba(X, groups=groups))
            if name.startswith("adapter"):  # the loaded model adapts here too
                est.set_params(max_iter=3).fit(X, data["y"], groups=groups)
                assert np.isfinite(est.loss_curve_).all()
            joblib.dump(est, name + ".again")  # and saves (Keras imports TensorFlow)
            report[name] = "ok"
        except Exception:
            report[name] = traceback.format_exc()
    print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def fitted_estimators(teacher, conditions):
    """A fitted CodeAdapter and CodeNetwork under this process's backend, and their rows."""
    X, y, groups, _ = conditions
    rows = np.flatnonzero(groups < 4)[::3]  # 4 conditions, 80 rows
    X, y, groups = X[rows].astype(np.float32), y[rows], groups[rows]
    adapter = skdc.CodeAdapter(teacher, optimizer="lbfgs", max_iter=20,
                               random_state=0).fit(X, y, groups=groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 20 epochs are enough here
        network = skdc.CodeNetwork((8,), code_size=2, max_iter=20, random_state=0).fit(
            X, y, groups=groups)
    return {"adapter": adapter, "network": network}, X, y, groups


@pytest.mark.backend
@pytest.mark.parametrize("target", [b for b in CI_BACKENDS if b != CURRENT])
def test_estimators_persisted_here_load_and_predict_under(target, fitted_estimators,
                                                          tmp_path):
    estimators, X, y, groups = fitted_estimators
    np.savez(tmp_path / "inputs.npz", X=X, y=y, groups=groups)
    files = {}
    for stem, est in estimators.items():
        joblib.dump(est, tmp_path / f"{stem}.joblib")
        files[f"{stem}.joblib"] = est
        try:
            import skops.io as sio
        except ImportError:
            continue
        sio.dump(est, tmp_path / f"{stem}.skops")
        files[f"{stem}.skops"] = est
    code = f"FILES = {sorted(files)!r}\n" + textwrap.dedent(_LOAD_AND_PREDICT)
    proc = _python(code, target, cwd=tmp_path)
    out = _ok(proc)
    assert "oneDNN" not in proc.stderr, proc.stderr  # TensorFlow's start-up lines stay quiet
    report = json.loads(out.strip().splitlines()[-1])
    assert report.pop("backend") == target
    failed = {name: tb for name, tb in report.items() if tb != "ok"}
    assert not failed, f"under {target}:\n" + "\n".join(f"{n}:\n{tb}" for n, tb in
                                                          failed.items())
    for name, est in files.items():
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.proba.npy"),
                                   est.predict_proba(X, groups=groups), rtol=0, atol=1e-5,
                                   err_msg=f"{name}: fitted under {CURRENT}, loaded under "
                                           f"{target}")


# -- the CI command ---------------------------------------------------------------------


def _readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return block.group(1).strip().splitlines()


def test_ci_runs_the_readme_test_command_on_every_ci_backend():
    demo, tests = _readme_commands()  # exactly two lines
    assert "skdc demo" in demo and "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    # the last line: under `set -e` a failing `a && b` list ends the script only as its
    # last command (a line after it would run and set the exit status instead)
    assert ci.strip().splitlines()[-1] == tests, "the README's test command must end .ci/run"
    assert "set -euo pipefail" in ci
    passes = tests.split(" && ")
    assert passes[0].startswith("pip install") and passes[1] == "python -m pytest -q"
    for backend, command in zip(CI_BACKENDS[1:], passes[2:], strict=True):
        assert command == f"KERAS_BACKEND={backend} python -m pytest -q -m backend"


def test_backend_selection_is_not_empty():
    # An empty selection would exit 5 (and fail CI); this names what went missing.
    from conftest import BACKEND_MODULES

    for name in BACKEND_MODULES:
        tree = ast.parse((ROOT / "tests" / name).read_text())
        tests = [n.name for n in tree.body
                 if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
        assert tests, f"tests/{name} has no tests"
