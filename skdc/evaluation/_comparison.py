"""One method against another in the same results: the paired error cut per ``k``.

The error cuts of :func:`~skdc.evaluation.evaluate` are all against ``si``. Whether
codes beat a feature shift is another question, answered from the same held-out
conditions (and seeds): both methods saw the same speakers, draws and folds, so their
scores are paired and the bootstrap resamples them together.
"""

from __future__ import annotations

from ._report import ConditionTable
from ._significance import PairedBootstrap, error_reduction

__all__ = ["compare", "format_comparison"]


def compare(results: dict, method: str, reference: str = "si", *,
            reference_results: dict | None = None, n_resamples: int = 1000,
            random_state: int = 0) -> dict:
    """The relative error cut of ``method`` against ``reference``, per ``k``.

    Parameters
    ----------
    results : dict
        Results of :func:`~skdc.evaluation.evaluate` or of
        :func:`~skdc.evaluation.pool_seeds` (or their JSON): they hold the accuracy per
        held-out condition (``per_condition``).
    method, reference : str
        Two of the methods in ``results`` (``reference`` in ``reference_results`` when
        given).
    reference_results : dict, default=None
        Results of another run of the same evaluation (the same held-out conditions,
        seeds and ``k``; e.g. another option) to take ``reference`` from: the same
        method under two settings, paired speaker by speaker. The pairing is closest
        when the runs share the networks that the option does not change (``si``
        identical in both).
    n_resamples : int, default=1000
        Bootstrap resamples (over held-out conditions, and seeds when pooled).
    random_state : int, default=0
        Seeds the resampling.

    Returns
    -------
    comparison : dict
        ``method``, ``reference``, ``seeds`` and, per ``k`` (a string key),
        ``error_reduction`` (``1 - error(method) / error(reference)``), ``interval``
        (95% paired bootstrap, ``[low, high]``, None when the reference makes no error)
        and ``per_seed`` (the cut of each seed alone, NaN where the reference makes no
        error). With ``reference="si"`` the cut and, with the same resamples, the
        interval are those of ``error_reduction_vs_si``.

    Examples
    --------
    >>> from skdc.evaluation import compare, evaluate, format_comparison
    >>> results = evaluate(X, y, groups, methods=["codes", "shift", "si"])  # doctest: +SKIP
    >>> print(format_comparison(compare(results, "codes", "shift")))  # doctest: +SKIP
    codes against shift: relative error reduction (%) [95% paired-bootstrap interval]
      k=1   +6.2 [+1.3, +10.3]
    >>> print(format_comparison(compare(full, "shift", "shift",
    ...                                 reference_results=diag)))  # doctest: +SKIP
    shift against shift (reference run): relative error reduction (%) [...]
    """
    table = _table(results, method)
    other = table if reference_results is None else _table(reference_results, reference)
    if other.conditions != table.conditions or other.seeds != table.seeds:
        raise ValueError("reference_results must hold the same held-out conditions and "
                         "seeds as results (another run of the same evaluation).")
    if reference not in other.accuracy:
        raise ValueError(f"{reference!r} is not among the methods of these results: "
                         f"{', '.join(other.accuracy)}.")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive int, got {n_resamples!r}.")
    bootstrap = PairedBootstrap(len(table.conditions), len(table.seeds), n_resamples,
                                random_state)
    by_k = {}
    for k in sorted(table.accuracy[method]):
        if k not in other.accuracy[reference]:
            raise ValueError(f"reference_results have no k={k}.")
        cells, reference_cells = table.accuracy[method][k], other.accuracy[reference][k]
        interval = bootstrap.interval(cells, reference_cells)
        by_k[str(k)] = {
            "error_reduction": round(error_reduction(cells, reference_cells), 4),
            "interval": None if interval is None else [round(v, 4) for v in interval],
            "per_seed": [round(error_reduction(row, reference_row), 4)
                         for row, reference_row in zip(cells, reference_cells)],
        }
    name = reference if reference_results is None else f"{reference} (reference run)"
    return {"method": method, "reference": name, "seeds": table.seeds, "k": by_k}


def _table(results: dict, method: str) -> ConditionTable:
    """The per-condition table of ``results``, which must hold ``method``."""
    if "per_condition" not in results:
        raise ValueError("results have no 'per_condition' (written by an older skdc): "
                         "run evaluate again to compare methods.")
    table = ConditionTable.from_json(results["per_condition"])
    if method not in table.accuracy:
        raise ValueError(f"{method!r} is not among the methods of these results: "
                         f"{', '.join(table.accuracy)}.")
    return table


def format_comparison(comparison: dict) -> str:
    """The comparison as lines of text: per ``k`` the cut, its interval and, with several
    seeds, each seed's cut (percent)."""
    lines = [f"{comparison['method']} against {comparison['reference']}: relative error "
             "reduction (%) [95% paired-bootstrap interval]"]
    for k, item in comparison["k"].items():
        interval = item["interval"]
        text = (f"  k={k:<3} {100 * item['error_reduction']:+6.1f} "
                + ("[no reference error]" if interval is None
                   else f"[{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]"))
        if len(item["per_seed"]) > 1:
            text += "  seeds " + " / ".join(f"{100 * c:+.1f}" for c in item["per_seed"])
        lines.append(text)
    return "\n".join(lines)
