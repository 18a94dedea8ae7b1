"""Start-up helpers for apps: compile ahead of the first request, cache compilations.

An app that adapts on request pays the compilation of skdc's step on its first fit
(tenths of a second to seconds, by backend and model). :func:`warmup` pays it at
start-up instead; :func:`enable_compilation_cache` keeps JAX's compiled code on disk,
so that the next process loads it instead of compiling again.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from ._backend.compilation_cache import default_cache_dir, enable_compilation_cache

__all__ = ["default_cache_dir", "enable_compilation_cache", "warmup"]


def warmup(estimator, rows=(20,), groups: int = 1, n_features: int | None = None) -> float:
    """Compile what ``estimator`` will need, on dummy data, before the first request.

    Parameters
    ----------
    estimator : CodeAdapter, CodeAdapterRegressor or keras.Model
        An adapter configured as the app will use it (optimizer, ``jit_compile``,
        ``early_stopping``...), or a model (then ``CodeAdapter(model)``). It is not
        fitted: a clone is.
    rows : sequence of int, default=(20,)
        Row counts the app expects. TensorFlow compiles once for any count; JAX once
        per bucket (4 sizes per octave), so give the typical sizes.
    groups : int, default=1
        Groups per fit (1: a tied code).
    n_features : int, default=None
        Feature columns, for a model whose feature input has no fixed width.

    Returns
    -------
    seconds : float
        Time spent.
    """
    import keras
    from sklearn.base import clone

    from ._adapter import CodeAdapter, CodeAdapterRegressor
    from ._graph import CodeGraph, resolve_code_input

    start = time.perf_counter()
    if isinstance(estimator, keras.Model):
        estimator = CodeAdapter(estimator)
    adapter = clone(estimator).set_params(max_iter=2, tol=0.0, verbose=0)
    graph = CodeGraph(adapter.model, resolve_code_input(adapter.model, adapter.code_input))
    width = graph.n_features if graph.n_features is not None else n_features
    if width is None:
        raise ValueError("The model's feature input has no fixed width: pass n_features.")
    for n in rows:
        n = max(int(n), 2)
        X = np.zeros((n, width), np.float32)
        if isinstance(adapter, CodeAdapterRegressor):
            y = np.zeros((n, graph.n_outputs))
        else:  # any label the model can output
            y = np.repeat(np.asarray([0] if adapter.classes is None else adapter.classes)[:1], n)
        g = None if groups <= 1 else np.arange(n) % groups
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adapter.fit(X, y, groups=g)
        adapter.predict(X, groups=g)
    return time.perf_counter() - start
