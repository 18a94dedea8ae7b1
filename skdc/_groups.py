"""Condition groups and units: how skdc reads labels per row and holds rows out.

* :func:`encode_groups`: distinct group labels and each row's index into them (the
  adapters: one code per group; the code networks: one training code per group);
* :func:`encode_units`: each row's unit (the frames of an utterance), kept apart per group;
* :func:`distinct`: distinct values as Python scalars, also for class labels (``_task``);
* :func:`validation_split`: the held-out rows of early stopping, per group (the adapters
  and the code networks).

One reader of each, so that every part of skdc reads ``groups`` the same way and holds
out validation rows by the same rule.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import column_or_1d

__all__ = ["distinct", "encode_groups", "encode_units", "validation_split"]


def encode_groups(groups, n_rows: int) -> tuple[list, np.ndarray]:
    """Distinct group labels and each row's index into them.

    Labels come back as Python scalars, sorted when numpy can sort them and in order
    of first appearance otherwise (mixed types). ``ValueError`` for anything that is
    not one label per row.
    """
    try:
        values = column_or_1d(np.asarray(groups), warn=False)
    except ValueError as exc:
        raise ValueError(f"groups must be 1-D, one label per row: {exc}") from None
    if len(values) != n_rows:
        raise ValueError(f"groups has {len(values)} entries but X has {n_rows} rows.")
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise ValueError("groups contains NaN or infinity.")
    keys, index = distinct(values)
    return keys, np.asarray(index, dtype=np.int32).ravel()


def encode_units(units, group_index: np.ndarray) -> np.ndarray | None:
    """Each row's unit as an integer, units of different groups kept apart (None: None).

    A unit label shared by two groups names two units, one in each: a unit (e.g. an
    utterance) lies within one condition.
    """
    if units is None:
        return None
    try:
        values = column_or_1d(np.asarray(units), warn=False)
    except ValueError as exc:
        raise ValueError(f"units must be 1-D, one label per row: {exc}") from None
    if len(values) != len(group_index):
        raise ValueError(f"units has {len(values)} entries but X has {len(group_index)} rows.")
    _, unit_index = distinct(values)
    pairs = np.stack([np.asarray(group_index, np.int64), unit_index.astype(np.int64)], axis=1)
    return np.unique(pairs, axis=0, return_inverse=True)[1].ravel()


def distinct(values) -> tuple[list, np.ndarray]:
    """Distinct values as Python scalars (sorted when numpy can sort them, else in order
    of first appearance: mixed types) and each entry's index into them."""
    try:
        keys, index = np.unique(values, return_inverse=True)
    except TypeError:  # mixed types that numpy cannot sort
        lookup: dict = {}
        index = np.array([lookup.setdefault(v, len(lookup)) for v in np.asarray(values).tolist()])
        return list(lookup), index.ravel()
    return keys.tolist(), np.asarray(index).ravel()


def validation_split(group_index: np.ndarray, fraction: float, rng,
                     weight: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of held-out rows: ``fraction`` of each group's rows.

    Only rows with positive weight count: a group with at least two of them holds
    out ``round(fraction * n)`` (at least one, and at least one stays in training);
    a group with fewer holds out nothing. ``rng`` is a numpy ``RandomState`` or
    ``Generator``. ``ValueError`` when no row at all is held out.
    """
    group_index = np.asarray(group_index)
    usable = np.ones(len(group_index), bool) if weight is None else np.asarray(weight) > 0
    held = np.zeros(len(group_index), dtype=bool)
    for g in np.unique(group_index):
        rows = np.flatnonzero((group_index == g) & usable)
        if len(rows) < 2:
            continue
        n_val = min(max(int(round(fraction * len(rows))), 1), len(rows) - 1)
        held[rng.permutation(rows)[:n_val]] = True
    if not held.any():
        raise ValueError(
            f"validation_fraction={fraction} holds out no rows: every condition has fewer "
            "than 2 rows of positive weight. Give more rows or set early_stopping=False."
        )
    return held
