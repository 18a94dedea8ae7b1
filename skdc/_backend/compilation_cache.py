"""JAX's persistent compilation cache: compiled code kept on disk across processes.

Lives with the backends (no Keras import at module level) so that ``_jax`` can apply
``SKDC_COMPILATION_CACHE`` when it is first imported; ``skdc.enable_compilation_cache``
is the public name.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_from_environment", "default_cache_dir",
           "enable_compilation_cache"]

CACHE_ENV = "SKDC_COMPILATION_CACHE"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/skdc/jax``, or ``~/.cache/skdc/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "skdc" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Keep compiled adaptation code on disk across processes (JAX backend).

    With the JAX backend, every compiled function of skdc (and of your own JAX
    code) is written to ``path`` (default :func:`default_cache_dir`) and read back by
    later processes, so their first fit loads instead of compiling. Setting the
    environment variable ``SKDC_COMPILATION_CACHE=1`` (or to a folder) does the same
    when skdc first runs on JAX. TensorFlow and PyTorch have no such cache: returns
    ``None`` there and does nothing.

    Returns
    -------
    path : Path or None
        The cache folder in use.
    """
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    folder = Path(path) if path is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # skdc's functions compile in well under JAX's default threshold of one second
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def cache_from_environment() -> None:
    """Apply ``SKDC_COMPILATION_CACHE`` (``1``/``true``: default folder; else a folder)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if not value or value.lower() in ("0", "false", "no"):
        return
    enable_compilation_cache(None if value.lower() in ("1", "true", "yes") else value)
