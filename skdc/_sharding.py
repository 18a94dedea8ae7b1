"""A table of codes fitted in shards of groups, one shard per joblib worker.

Groups are independent in the objective, so each shard of consecutive groups is a fit
of its own; the results are put back together in group order. Any joblib backend works
(processes, threads, ``dask.distributed``): a worker rebuilds the engine from an
:class:`~skdc._engine.EngineSpec`, which pickles the model as ``.keras`` bytes.
"""

from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs

from ._engine import EngineSpec, Problem, Result, Settings

__all__ = ["fit_sharded"]


def fit_sharded(spec: EngineSpec, problem: Problem, init: np.ndarray, settings: Settings, *,
                validation: Problem | None, state: list | None, seed: int, report,
                n_jobs) -> Result:
    """Fit the code table of ``problem``, in up to ``n_jobs`` shards of groups."""
    n_shards = min(problem.n_groups, effective_n_jobs(n_jobs))
    if n_shards <= 1:
        return _fit_shard(spec, problem, init, settings, validation, state, seed, report)
    bounds = np.linspace(0, problem.n_groups, n_shards + 1).astype(int)
    results = Parallel(n_jobs=n_jobs)(
        delayed(_fit_shard)(
            spec, problem.groups(a, b), init[a:b], settings,
            None if validation is None else validation.groups(a, b),
            None if state is None else state[a:b], seed, None,
        )
        for a, b in zip(bounds[:-1], bounds[1:])
    )
    return merge(results)


def _fit_shard(spec: EngineSpec, problem, init, settings, validation, state, seed, report):
    return spec.engine().fit(problem, init, settings, validation=validation, state=state,
                             rng=np.random.default_rng(seed), report=report)


def merge(results: list[Result]) -> Result:
    """One result from the results of consecutive group shards."""
    sizes = np.array([len(r.codes) for r in results], dtype=float)
    n_iter = max(r.n_iter for r in results)
    curve = []
    for i in range(n_iter):
        live = [(r.loss_curve[i], n) for r, n in zip(results, sizes) if i < len(r.loss_curve)]
        curve.append(float(np.average([v for v, _ in live], weights=[n for _, n in live])))
    states = [r.state for r in results]
    return Result(
        codes=np.concatenate([r.codes for r in results]),
        best_loss=np.concatenate([r.best_loss for r in results]),
        loss_curve=curve,
        n_iter=n_iter,
        converged=all(r.converged for r in results),
        interrupted=any(r.interrupted for r in results),
        diverged=np.concatenate([r.diverged for r in results]),
        state=None if any(s is None for s in states) else [s for r in states for s in r],
    )
