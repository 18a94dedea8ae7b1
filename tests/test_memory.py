"""Memory of compiled functions: freed with their models, and caches that stay bounded.

RSS figures live in ``benchmarks/bench_load.py``; these tests check the mechanisms.
"""

import gc
import threading
import time
import weakref
from collections import OrderedDict

import numpy as np
import pytest

from skdc import CodeAdapter, _backend
from skdc._backend import memory
from skdc.evaluation import _finetune


def _small_model(seed):
    import keras

    x, z = keras.Input((3,), name="features"), keras.Input((2,), name="code")
    h = keras.layers.Dense(8, activation="tanh")(keras.layers.Concatenate()([x, z]))
    model = keras.Model([x, z], keras.layers.Dense(2, activation="softmax")(h))
    model.set_weights([np.random.default_rng(seed).normal(size=w.shape) for w in
                       model.get_weights()])
    return model


@pytest.mark.backend
def test_compiled_functions_of_dropped_models_are_freed(monkeypatch):
    """Keras models are reference cycles, so a dropped model's compiled functions are freed
    only by a full collection, which Python schedules by counting objects, blind to their
    native memory; the backend runs one every few compilations. Automatic collection is
    held off here (a huge threshold), as it is for 10-40 models in a real process."""
    backend = _backend.current()
    if backend.NAME == "torch":
        pytest.skip("PyTorch runs eagerly: nothing compiled")
    compiled = []
    real_compile = backend.compile

    def tracked(*args):
        fn = real_compile(*args)
        compiled.append(weakref.ref(fn))
        return fn

    monkeypatch.setattr(backend, "compile", tracked)
    # A fresh counter: earlier tests' compilations would shift where the collections fall.
    monkeypatch.setattr(memory, "COLLECTION", type(memory.COLLECTION)(every=4))
    X = np.random.default_rng(0).normal(size=(30, 3)).astype("float32")
    y = (X[:, 0] > 0).astype(int)
    models = []
    threshold = gc.get_threshold()
    gc.collect()
    gc.set_threshold(10**9)
    try:
        for seed in range(12):
            model = _small_model(seed)
            CodeAdapter(model, max_iter=3, tol=0.0).fit(X, y)
            models.append(weakref.ref(model))
            del model
        alive_models = [m() is not None for m in models]
        alive_compiled = [c() is not None for c in compiled]
    finally:
        gc.set_threshold(*threshold)
    assert len(compiled) >= 12
    assert not any(alive_models[:4]), alive_models
    assert not any(alive_compiled[:4]), alive_compiled
    assert sum(alive_compiled) <= len(compiled) // 2, alive_compiled


class _SlowGraph:
    built = 0

    def __init__(self, mode, shapes, activations):
        type(self).built += 1
        time.sleep(0.05)
        self.key = (mode, shapes, activations)


def test_parameter_adapter_graphs_are_bounded_and_least_recently_used(monkeypatch):
    monkeypatch.setattr(_finetune, "_GRAPHS", OrderedDict())
    monkeypatch.setattr(_finetune, "_Graph", _SlowGraph)
    limit = getattr(_finetune, "_GRAPHS_MAX", 8)
    first = _finetune._graph_for("lhuc", ((1,),), ("tanh",))
    for width in range(2, limit + 4):
        _finetune._graph_for("lhuc", ((width,),), ("tanh",))
        assert _finetune._graph_for("lhuc", ((1,),), ("tanh",)) is first  # recently used
    assert len(_finetune._GRAPHS) <= limit
    assert ("lhuc", ((2,),), ("tanh",)) not in _finetune._GRAPHS  # the least recently used


def test_parameter_adapter_graph_is_built_once_for_threads_asking_at_once(monkeypatch):
    monkeypatch.setattr(_finetune, "_GRAPHS", OrderedDict())
    monkeypatch.setattr(_finetune, "_Graph", _SlowGraph)
    _SlowGraph.built = 0
    barrier = threading.Barrier(8)
    got = [None] * 8

    def work(i):
        barrier.wait()
        got[i] = _finetune._graph_for("finetune_last", ((4, 2), (2,)), ())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _SlowGraph.built == 1
    assert all(g is got[0] for g in got)
