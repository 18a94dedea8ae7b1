"""Warnings that point at the caller of skdc, not at a line inside it."""

from __future__ import annotations

import os
import sys
import warnings

import sklearn.base

__all__ = ["warn_caller"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# scikit-learn's ``_fit_context`` decorator wraps ``fit`` transparently: skipped as well
_FIT_CONTEXT = (os.path.abspath(sklearn.base.__file__), "wrapper")


def _inside(frame) -> bool:
    filename = os.path.abspath(frame.f_code.co_filename)
    return filename.startswith(_PACKAGE) or (filename, frame.f_code.co_name) == _FIT_CONTEXT


def warn_caller(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first frame outside skdc: the user's call (or
    the meta-estimator's, e.g. ``GridSearchCV``), so that Python's default filter shows
    it once per calling line, where the user can act on it."""
    frame, level = sys._getframe(1), 2
    while frame is not None and _inside(frame):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
