"""Reporting the results of :func:`~skdc.evaluation.evaluate`: summary, table, JSON, plot."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from ._significance import PairedBootstrap

__all__ = ["ConditionTable", "format_table", "plot_results", "summarise", "write_json"]

_Z95 = 1.96


class ConditionTable:
    """Accuracy of every method and ``k`` per seed and held-out condition.

    ``accuracy[name][k]`` is an array of shape ``(n_seeds, n_conditions)``: a cell is a
    condition's accuracy averaged over the repeats of one seed (one run of
    :func:`~skdc.evaluation.evaluate`). Columns follow ``conditions`` (labels), rows
    ``seeds`` (each run's ``random_state``).
    """

    def __init__(self, conditions: list, seeds: list, accuracy: dict):
        self.conditions, self.seeds, self.accuracy = list(conditions), list(seeds), accuracy

    @classmethod
    def from_scores(cls, per_condition: dict, labels, seed) -> ConditionTable:
        """From one run's ``{name: {k: {condition: [accuracy per repeat]}}}``;
        ``labels[condition]`` names a condition."""
        first = next(iter(next(iter(per_condition.values())).values()))
        order = list(first)  # the order in which the folds scored the conditions
        accuracy = {name: {k: np.array([[np.mean(scores[c]) for c in order]])
                           for k, scores in by_k.items()}
                    for name, by_k in per_condition.items()}
        return cls([labels[c] for c in order], [seed], accuracy)

    def to_json(self) -> dict:
        """JSON-ready (cells rounded to 6 decimals)."""
        return {"conditions": self.conditions, "seeds": self.seeds,
                "accuracy": {name: {str(k): np.round(table, 6).tolist()
                                    for k, table in by_k.items()}
                             for name, by_k in self.accuracy.items()}}

    @classmethod
    def from_json(cls, entry: dict) -> ConditionTable:
        accuracy = {name: {int(k): np.asarray(table, dtype=np.float64)
                           for k, table in by_k.items()}
                    for name, by_k in entry["accuracy"].items()}
        return cls(entry["conditions"], entry["seeds"], accuracy)

    @classmethod
    def stack(cls, tables: Sequence[ConditionTable]) -> ConditionTable:
        """The seeds of all ``tables`` in one table, columns aligned by condition label;
        ``ValueError`` unless they hold the same conditions, methods and ``k``."""
        first = tables[0]
        layout = {name: sorted(by_k) for name, by_k in first.accuracy.items()}
        for table in tables[1:]:
            if sorted(map(str, table.conditions)) != sorted(map(str, first.conditions)):
                raise ValueError("the runs held out different conditions; pool runs of the "
                                 "same data only.")
            if {name: sorted(by_k) for name, by_k in table.accuracy.items()} != layout:
                raise ValueError("the runs compare different methods or k; pool runs of the "
                                 "same methods and shots only.")
        columns = [[list(map(str, t.conditions)).index(str(c)) for c in first.conditions]
                   for t in tables]
        accuracy = {name: {k: np.concatenate([t.accuracy[name][k][:, cols]
                                              for t, cols in zip(tables, columns)])
                           for k in by_k}
                    for name, by_k in first.accuracy.items()}
        return cls(first.conditions, [s for t in tables for s in t.seeds], accuracy)


def summarise(table: ConditionTable, methods: dict, bootstrap: PairedBootstrap) -> dict:
    """The ``"methods"`` entry of the results.

    ``methods`` maps every method's name to its ``transductive``, ``description`` and
    ``chosen`` (the hyperparameter per fold, or None). Per method and ``k``: the mean
    over conditions (of each condition's mean over seeds and repeats), a 95% interval
    ``1.96 * sd / sqrt(n_conditions)`` and, with ``si`` among the methods, the relative
    error reduction ``1 - error(method) / error(si)`` with its 95% paired-bootstrap
    interval (:mod:`~skdc.evaluation._significance`).
    """
    si = table.accuracy.get("si")
    out = {}
    for name, info in methods.items():
        by_k = table.accuracy[name]
        out[name] = {
            "k": {str(k): _summary(by_k[k], None if si is None else si[k], bootstrap)
                  for k in sorted(by_k)},
            "transductive": info["transductive"],
            "description": info["description"],
            "chosen": info["chosen"],
        }
    return out


def _summary(cells: np.ndarray, si_cells: np.ndarray | None,
             bootstrap: PairedBootstrap) -> dict:
    acc = cells.mean(axis=0)
    item = {
        "accuracy": round(float(acc.mean()), 4),
        "ci95": round(float(_Z95 * acc.std(ddof=1) / np.sqrt(len(acc)))
                      if len(acc) > 1 else 0.0, 4),
    }
    if si_cells is not None:
        si_acc = np.mean(si_cells.mean(axis=0))
        if si_acc < 1:
            item["error_reduction_vs_si"] = round(float(1 - (1 - acc.mean()) / (1 - si_acc)), 4)
            interval = bootstrap.interval(cells, si_cells)
            item["error_reduction_vs_si_interval"] = (
                None if interval is None else [round(v, 4) for v in interval])
    return item


def format_table(results: dict) -> str:
    """Methods x k: accuracy +/- 95% interval (percent); transductive methods marked ``*``.

    With ``si`` among the methods, a second block gives each method's relative error
    reduction versus ``si`` (percent) and its 95% paired-bootstrap interval.
    """
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
        lines += ["", "relative error reduction vs si (%) [95% paired-bootstrap interval over "
                  "held-out conditions]", *_reduction_rows(results, name_width)]
    if any(e["transductive"] for e in results["methods"].values()):
        lines.append("")
        lines.append("* transductive: also uses all unlabelled rows of the held-out condition")
    return "\n".join(lines)


def _reduction_rows(results: dict, name_width: int) -> list[str]:
    """One line per method but ``si``: error reduction and interval per k."""
    rows = {name: [_reduction_cell(entry["k"][str(k)]) for k in results["shots"]]
            for name, entry in results["methods"].items() if name != "si"}
    width = max([14] + [len(c) + 2 for cells in rows.values() for c in cells])
    head = f"{'':<{name_width}}" + "".join(f"{'k=' + str(k):>{width}}" for k in results["shots"])
    return [head, *(f"{name:<{name_width}}" + "".join(f"{c:>{width}}" for c in cells)
                    for name, cells in rows.items())]


def _reduction_cell(item: dict) -> str:
    value = item.get("error_reduction_vs_si")
    if value is None:
        return ""
    interval = item.get("error_reduction_vs_si_interval")
    if interval is None:
        return f"{100 * value:+.1f}"
    low, high = (100 * v for v in interval)
    return f"{100 * value:+.1f} [{low:+.1f}, {high:+.1f}]"


def write_json(results: dict, path) -> None:
    """Write ``results`` as indented JSON to ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
        f.write("\n")


def plot_results(results: dict, path, title: str | None = None) -> None:
    """Accuracy against k, one line per method with its 95% interval, saved to ``path``.

    With ``si`` among the methods, a second panel shows each other method's relative
    error reduction versus ``si`` against k, with its 95% paired-bootstrap interval.
    Needs matplotlib (``pip install "skdc[plot]"``). Transductive methods are dashed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shots = results["shots"]
    reductions = "si" in results["methods"] and len(results["methods"]) > 1
    fig, axes = plt.subplots(2 if reductions else 1, 1, figsize=(7, 8 if reductions else 4.5),
                             dpi=120, sharex=True, squeeze=False)
    ax = axes[0, 0]
    colours = {}
    for name, entry in results["methods"].items():
        acc = [100 * entry["k"][str(k)]["accuracy"] for k in shots]
        ci = [100 * entry["k"][str(k)]["ci95"] for k in shots]
        line = ax.errorbar(shots, acc, yerr=ci, linestyle=_style(entry), marker="o",
                           markersize=4, capsize=3, label=_label(name, entry))
        colours[name] = line.lines[0].get_color()
    ax.set_ylabel("accuracy on the condition's other rows (%)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or _default_title(results), fontsize=10)
    if reductions:
        _plot_reductions(axes[1, 0], results, colours)
    for ax in axes[:, 0]:
        ax.set_xticks(shots)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("k labelled adaptation rows per held-out condition")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _plot_reductions(ax, results: dict, colours: dict) -> None:
    """Error reduction versus si (%) against k, with the bootstrap intervals as error bars."""
    shots = results["shots"]
    for name, entry in results["methods"].items():
        items = [entry["k"][str(k)] for k in shots]
        shown = [i for i, item in enumerate(items) if "error_reduction_vs_si" in item]
        if name == "si" or not shown:
            continue
        value = np.array([100 * items[i]["error_reduction_vs_si"] for i in shown])
        bounds = np.array([[100 * v for v in items[i].get("error_reduction_vs_si_interval")
                            or [items[i]["error_reduction_vs_si"]] * 2] for i in shown])
        ax.errorbar([shots[i] for i in shown], value, yerr=[value - bounds[:, 0],
                                                            bounds[:, 1] - value],
                    linestyle=_style(entry), marker="o", markersize=4, capsize=3,
                    color=colours[name], label=_label(name, entry))
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylabel("error reduction vs si (%)\n95% paired-bootstrap interval")


def _style(entry: dict) -> str:
    return "--" if entry["transductive"] else "-"


def _label(name: str, entry: dict) -> str:
    return name + (" (transductive)" if entry["transductive"] else "")


def _default_title(results: dict) -> str:
    title = (f"{results['n_conditions']} conditions, {results['folds']} condition-disjoint "
             f"folds, {results['repeats']} repeats")
    if len(results.get("per_condition", {}).get("seeds", [])) > 1:
        title += f", {len(results['per_condition']['seeds'])} seeds"
    if results.get("normalize"):
        title += f"; features normalised per {results['normalize']}"
    return title
