"""Reporting the results of :func:`~skdc.evaluation.evaluate`: summary, table, JSON, plot."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

__all__ = ["format_table", "plot_results", "summarise", "write_json"]

_Z95 = 1.96


def summarise(per_condition: dict, methods: Sequence, shots: Sequence[int],
              chosen: dict) -> dict:
    """The ``"methods"`` entry of the results, from the accuracies of every condition.

    ``per_condition`` is ``{name: {k: {condition: [accuracy per repeat]}}}``; ``methods``
    the :class:`~skdc.evaluation._baselines.Method` objects; ``chosen`` the
    hyperparameter of every method per fold. Per method and ``k``: the mean over
    conditions (of each condition's mean over repeats), a 95% interval
    ``1.96 * sd / sqrt(n_conditions)`` and, with ``si`` among the methods, the relative
    error reduction ``1 - error(method) / error(si)``.
    """
    si = per_condition.get("si")
    out = {}
    for method in methods:
        name = method.name
        out[name] = {
            "k": {str(k): _summary(per_condition[name][k], None if si is None else si[k])
                  for k in shots},
            "transductive": method.transductive,
            "description": method.description,
            "chosen": chosen[name] if method.grid else None,
        }
    return out


def _summary(scores: dict, si_scores: dict | None) -> dict:
    acc = np.array([np.mean(v) for v in scores.values()])
    item = {
        "accuracy": round(float(acc.mean()), 4),
        "ci95": round(float(_Z95 * acc.std(ddof=1) / np.sqrt(len(acc)))
                      if len(acc) > 1 else 0.0, 4),
    }
    if si_scores is not None:
        si_acc = np.mean([np.mean(v) for v in si_scores.values()])
        if si_acc < 1:
            item["error_reduction_vs_si"] = round(float(1 - (1 - acc.mean()) / (1 - si_acc)), 4)
    return item


def format_table(results: dict) -> str:
    """Methods x k: accuracy +/- 95% interval (percent); transductive methods marked ``*``."""
    shots = results["shots"]
    name_width = max(len(name) + 2 for name in results["methods"])
    head = f"{'method':<{name_width}}" + "".join(f"{'k=' + str(k):>14}" for k in shots)
    lines = [head, "-" * len(head)]
    for name, entry in results["methods"].items():
        label = name + (" *" if entry["transductive"] else "")
        cells = []
        for k in shots:
            item = entry["k"][str(k)]
            cells.append(f"{100 * item['accuracy']:>7.1f} ± {100 * item['ci95']:<4.1f}")
        lines.append(f"{label:<{name_width}}" + "".join(f"{c:>14}" for c in cells))
    if "si" in results["methods"]:
        lines.append("")
        lines.append("relative error reduction vs si (%)")
        for name, entry in results["methods"].items():
            if name == "si":
                continue
            cells = [entry["k"][str(k)].get("error_reduction_vs_si") for k in shots]
            text = "".join(f"{'' if c is None else f'{100 * c:+.1f}':>14}" for c in cells)
            lines.append(f"{name:<{name_width}}" + text)
    if any(e["transductive"] for e in results["methods"].values()):
        lines.append("")
        lines.append("* transductive: also uses all unlabelled rows of the held-out condition")
    return "\n".join(lines)


def write_json(results: dict, path) -> None:
    """Write ``results`` as indented JSON to ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


def plot_results(results: dict, path, title: str | None = None) -> None:
    """Accuracy against k, one line per method with its 95% interval, saved to ``path``.

    Needs matplotlib (``pip install "skdc[plot]"``). Transductive methods are dashed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = results["shots"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, entry in results["methods"].items():
        acc = [100 * entry["k"][str(k)]["accuracy"] for k in shots]
        ci = [100 * entry["k"][str(k)]["ci95"] for k in shots]
        style = "--" if entry["transductive"] else "-"
        label = name + (" (transductive)" if entry["transductive"] else "")
        ax.errorbar(shots, acc, yerr=ci, linestyle=style, marker="o", markersize=4,
                    capsize=3, label=label)
    ax.set_xlabel("k labelled adaptation rows per held-out condition")
    ax.set_ylabel("accuracy on the condition's other rows (%)")
    ax.set_xticks(shots)
    ax.grid(alpha=0.3)
    ax.set_title(title or (f"{results['n_conditions']} conditions, {results['folds']} "
                           f"condition-disjoint folds, {results['repeats']} repeats"),
                 fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
