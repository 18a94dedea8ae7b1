"""Results of several seeds of one evaluation, summarised together."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ._report import ConditionTable, summarise
from ._significance import PairedBootstrap

__all__ = ["pool_seeds"]

# what may differ between the runs being pooled
_PER_RUN = ("seconds", "per_condition", "methods")


def pool_seeds(runs: Sequence[dict], *, shots: Sequence[int] | None = None,
               n_resamples: int = 1000, random_state: int = 0) -> dict:
    """Pool runs of :func:`~skdc.evaluation.evaluate` that differ only in ``random_state``.

    Each seed draws other folds, adaptation units and networks; pooled, every
    condition's accuracy is its mean over seeds (and repeats), and the interval of the
    error reduction versus ``si`` comes from a paired bootstrap over held-out
    conditions *and* seeds (:mod:`skdc.evaluation._significance`), so it includes the
    spread between networks trained from other seeds.

    Parameters
    ----------
    runs : sequence of dict
        Results of :func:`~skdc.evaluation.evaluate` (or of ``pool_seeds``, or loaded
        from their JSON) on the same data, methods, shots and settings.
    n_resamples : int, default=1000
        Bootstrap resamples.
    random_state : int, default=0
        Seeds the resampling.

    Returns
    -------
    results : dict
        The results of the first run, with ``methods`` summarised over all seeds
        (``chosen``: one entry per run), ``per_condition`` holding every seed's row,
        ``settings["random_state"]`` the list of seeds and ``seconds`` the total.

    Examples
    --------
    >>> from skdc.evaluation import evaluate, pool_seeds
    >>> runs = [evaluate(X, y, groups, random_state=seed) for seed in (0, 1, 2)]  # doctest: +SKIP
    >>> pooled = pool_seeds(runs)  # doctest: +SKIP
    >>> pooled["methods"]["codes"]["k"]["5"]["error_reduction_vs_si_interval"]  # doctest: +SKIP
    [0.08, 0.21]
    """
    runs = list(runs)
    if not runs:
        raise ValueError("pool_seeds needs at least one run.")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive int, got {n_resamples!r}.")
    if shots is not None:
        runs = [_at_shots(run, shots, i) for i, run in enumerate(runs)]
    _check_same_evaluation(runs)
    table = ConditionTable.stack([ConditionTable.from_json(run["per_condition"])
                                  for run in runs])
    bootstrap = PairedBootstrap(len(table.conditions), len(table.seeds), n_resamples,
                                random_state)
    first = runs[0]
    methods = {name: {"transductive": entry["transductive"],
                      "description": entry["description"],
                      "chosen": _chosen([run["methods"][name]["chosen"] for run in runs])}
               for name, entry in first["methods"].items()}
    return {
        **first,
        "methods": summarise(table, methods, bootstrap),
        "per_condition": table.to_json(),
        "settings": {**first["settings"], "random_state": table.seeds,
                     "n_resamples": n_resamples},
        "seconds": round(sum(run["seconds"] for run in runs), 1),
    }


def _at_shots(run: dict, shots: Sequence[int], index: int) -> dict:
    """The run restricted to ``shots``; ``ValueError`` if it did not measure one of them."""
    keys = [str(k) for k in shots]
    missing = [k for k in keys if k not in {str(s) for s in run["shots"]}]
    if not keys or missing:
        raise ValueError(f"shots must be a non-empty subset of every run's shots; run {index} "
                         f"measured k = {run['shots']}, not {', '.join(missing) or 'nothing'}.")
    restricted = {**run, "shots": [int(k) for k in keys]}
    if "per_condition" in run:
        accuracy = {method: {k: by_k[k] for k in keys}
                    for method, by_k in run["per_condition"]["accuracy"].items()}
        restricted["per_condition"] = {**run["per_condition"], "accuracy": accuracy}
    return restricted


# Settings that runs record since they were added, with the value that runs stored
# before had: such a run pools with a newer one of that value.
_ADDED_SETTINGS = {"shift_covariance": "diag"}


def _check_same_evaluation(runs: list[dict]) -> None:
    """``ValueError`` naming the first entry in which two runs differ (but the seed)."""
    for run in runs:
        if "per_condition" not in run:
            raise ValueError("a run has no 'per_condition' entry (written by an older skdc); "
                             "rerun it to pool it.")
    reference = _comparable(runs[0])
    for i, run in enumerate(runs[1:], start=1):
        other = _comparable(run)
        for key in sorted(set(reference) | set(other)):
            if reference.get(key) != other.get(key):
                raise ValueError(f"run {i} differs from run 0 in {key!r}; pool runs that "
                                 "differ only in random_state.")


def _comparable(run: dict) -> dict:
    """A run's entries that must agree, JSON-normalised (tuples as lists), by name."""
    out = {key: value for key, value in run.items() if key not in _PER_RUN}
    settings = {**_ADDED_SETTINGS, **{k: v for k, v in run["settings"].items()
                                      if k not in ("random_state", "n_resamples")}}
    out["settings"] = settings
    out["methods"] = sorted(run["methods"])
    return {key: _as_json(value) for key, value in out.items()}


def _as_json(value):
    return json.loads(json.dumps(value))


def _chosen(per_run: list):
    return None if all(c is None for c in per_run) else per_run
