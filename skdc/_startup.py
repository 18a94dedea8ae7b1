"""What ``import skdc`` does before any Keras backend is imported (kept cheap)."""

import importlib.abc
import importlib.util
import os
import sys

__all__ = ["prepare"]


def _match_tensorflow_threads_to_joblib() -> None:
    # joblib's loky workers get OMP_NUM_THREADS = cores // n_jobs; TensorFlow ignores it and
    # would start one thread per core in every worker. Its own variables take the same limit.
    limit = os.environ.get("OMP_NUM_THREADS")
    if limit and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", limit)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", limit)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Silence TensorFlow's C++ start-up lines when Keras or TensorFlow is first imported.

    Those lines (oneDNN, CUDA probing) are written before TensorFlow's logging is set up
    and ignore every setting; file descriptor 2 goes to /dev/null while the module (and
    what it imports) loads. Python errors still propagate. Keras imports TensorFlow with
    itself on the TensorFlow backend, and on the first model save on other backends
    where TensorFlow is installed. Installed by ``import skdc`` for whichever of the two
    is not imported yet; ``SKDC_TF_STARTUP_LOG=1`` keeps the lines.
    """

    def __init__(self):
        self.pending: set[str] = set()
        self.quiet = False  # fd 2 is redirected now

    def find_spec(self, name, path=None, target=None):
        if name not in self.pending:
            return None
        self.pending.discard(name)
        if not self.pending:
            _remove_hook()
        if self.quiet:  # imported by the other one, already quiet
            return None
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # from here on the module shows its own loader (resources, reload)
        module.__loader__ = module.__spec__.loader = self._loader
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        sys.stderr.flush()
        os.dup2(devnull, 2)
        _HOOK.quiet = True
        try:
            self._loader.exec_module(module)
            tf = sys.modules.get("tensorflow")
            if tf is not None and hasattr(tf, "config"):
                tf.config.list_physical_devices()  # CUDA probing prints here
        finally:
            _HOOK.quiet = False
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(devnull)
            os.close(saved)


_HOOK = _QuietImport()


def _remove_hook() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def prepare() -> None:
    """Thread limits and quiet start-up for the backend, without importing it."""
    _match_tensorflow_threads_to_joblib()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("SKDC_TF_STARTUP_LOG") == "1":
        return
    _HOOK.pending = {name for name in ("keras", "tensorflow") if name not in sys.modules}
    if _HOOK.pending and _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)
