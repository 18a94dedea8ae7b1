"""Start-up helpers: warmup compiles ahead, the JAX compilation cache persists."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from skdc import CodeAdapter
from skdc._engine import engine_for
from skdc._synthetic import make_teacher
from skdc._warmup import warmup


@pytest.mark.backend
def test_warmup_compiles_what_the_first_fit_needs(conditions):
    teacher = make_teacher(random_state=5)  # a model no other test compiled
    X, y, groups, _ = conditions
    adapter = CodeAdapter(teacher, optimizer="lbfgs", random_state=0)
    seconds = warmup(adapter, rows=(30,), groups=3)
    assert seconds > 0 and not hasattr(adapter, "code_")  # a clone was fitted
    engine = engine_for(teacher, 1, "softmax")
    before = engine.traces()
    assert before > 0 or keras.backend.backend() == "torch"  # torch runs eagerly
    g = np.arange(30) % 3
    adapter.fit(X[:30], y[:30], groups=g).predict(X[:30], groups=g)
    assert engine.traces() == before  # nothing left to compile


def test_jax_compilation_cache_is_written_and_reused(tmp_path):
    script = (
        "import numpy as np, keras\n"
        "from skdc import CodeAdapter\n"
        "from skdc._synthetic import make_teacher\n"
        "m = make_teacher()\n"
        "X = np.random.default_rng(0).normal(size=(20, 6)); y = np.arange(20) % 4\n"
        "print(CodeAdapter(m, max_iter=3, tol=0.0).fit(X, y).code_.tolist())\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "SKDC_COMPILATION_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True)
    entries = set(os.listdir(tmp_path))
    assert entries, "nothing was written to the compilation cache"
    again = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True)
    assert again.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]
    assert set(os.listdir(tmp_path)) == entries  # the second process compiled nothing new


def test_compilation_cache_is_a_no_op_off_jax(tmp_path):
    from skdc._warmup import enable_compilation_cache

    if keras.backend.backend() == "jax":
        pytest.skip("checks the other backends")
    assert enable_compilation_cache(tmp_path) is None
    assert not any(tmp_path.iterdir())
