import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from skdc._synthetic import make_conditions, make_teacher  # noqa: E402

#: Test modules whose every test is marked ``backend``: they run again under each Keras
#: backend in CI (``KERAS_BACKEND=jax python -m pytest -m backend``). A test elsewhere
#: joins with ``@pytest.mark.backend``; ``test_backends.py`` checks that these exist.
# (test_network marks its own backend subset)
BACKEND_MODULES = ("test_adapter.py", "test_architectures.py", "test_backends.py",
                   "test_class_weight.py",
                   "test_defects.py", "test_embedding.py", "test_episodic.py", "test_export.py",
                   "test_input_shift.py", "test_laplace.py", "test_mixed_precision.py",
                   "test_persistence.py", "test_shapes.py", "test_units.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in BACKEND_MODULES:
            item.add_marker(pytest.mark.backend)


def pytest_report_header(config):
    import keras

    return f"Keras {keras.__version__}, backend {keras.backend.backend()}"


@pytest.fixture(scope="session")
def teacher():
    """A known network: features (6) + code (3) -> 4 classes."""
    return make_teacher(random_state=0)


@pytest.fixture(scope="session")
def conditions(teacher):
    """10 conditions x 60 rows labelled by the teacher with known true codes."""
    return make_conditions(teacher, n_conditions=10, rows_per_condition=60, random_state=1)


@pytest.fixture()
def one_condition(conditions):
    """Adaptation rows (10) and test rows (50) of condition 0, and its true code."""
    X, y, groups, true_codes = conditions
    rows = np.flatnonzero(groups == 0)
    return X[rows[:10]], y[rows[:10]], X[rows[10:]], y[rows[10:]], true_codes[0]


@pytest.fixture(scope="session")
def data_home():
    """The shared real data (SKDC_DATA_HOME, or ../shared/data beside the checkout)."""
    candidates = [os.environ.get("SKDC_DATA_HOME"),
                  Path(__file__).resolve().parents[2] / "shared" / "data"]
    for path in candidates:
        if path and Path(path).is_dir():
            return Path(path)
    pytest.skip("shared speech data not found; set SKDC_DATA_HOME to a folder holding it")


@pytest.fixture(scope="module")
def shifted():
    """The evaluation's synthetic *shift* problem: 12 conditions x 30 rows, each seeing
    the teacher's features shifted by its own code (``X, y, groups``)."""
    teacher = make_teacher(shift=True, random_state=0)
    return make_conditions(teacher, n_conditions=12, rows_per_condition=30, shift=True,
                           random_state=1)[:3]


@pytest.fixture(scope="session")
def fast():
    """Small, quick settings of ``evaluate`` for the shift problem. The coded networks
    start from scratch, what most tests look at (``code_start="auto"`` trains the nested
    validation's networks of both starts; its own tests in test_nested_validation.py)."""
    return dict(hidden_layer_sizes=(32,), max_epochs=40, batch_size=64,
                learning_rate_init=1e-2, adapt_max_iter=50, code_start="scratch",
                inner_folds=1)
