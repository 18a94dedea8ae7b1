"""The one chunked forward pass: outputs of many rows, a bounded number at a time.

Both the adaptation engine (its compiled forward) and the training side (a Keras model
called directly) predict through :func:`forward_in_chunks`, so memory stays bounded by
one chunk's activations however many rows come in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["CHUNK", "forward_in_chunks", "row_chunks"]

CHUNK = 16384  # rows per call


def row_chunks(n_rows: int, size: int = CHUNK) -> list[slice]:
    """Consecutive slices of at most ``size`` rows covering ``n_rows`` (one, empty, for 0)."""
    size = int(size)
    return [slice(start, start + size) for start in range(0, max(int(n_rows), 1), size)]


def forward_in_chunks(forward: Callable[[slice], np.ndarray], n_rows: int, n_outputs: int,
                      size: int = CHUNK) -> np.ndarray:
    """``(n_rows, n_outputs)`` outputs, ``forward(rows)`` giving those of the slice ``rows``.

    Written in place into one array (no list of chunks to concatenate); its dtype is the
    first chunk's. With 0 rows, an empty float32 array.
    """
    if n_rows == 0:
        return np.zeros((0, n_outputs), np.float32)
    out = None
    for rows in row_chunks(n_rows, size):
        chunk = np.asarray(forward(rows))
        chunk = chunk.reshape(len(chunk), -1)
        if out is None:
            out = np.empty((n_rows, chunk.shape[1]), chunk.dtype)
        out[rows] = chunk
    return out
