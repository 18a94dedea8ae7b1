"""Data home, checksum-verified downloads and helpers shared by the loaders."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sklearn.utils import Bunch

DATA_HOME_ENV = "SKDC_DATA_HOME"
INSTALL_HINT = 'pip install "skdc[datasets]"'
_TIMEOUT = 60  # seconds per connection attempt
_USER_AGENT = "skdc-datasets (+https://pypi.org/project/skdc/)"

# Indirection so that tests can serve bytes without a network.
_urlopen = urllib.request.urlopen

T = TypeVar("T")


class ChecksumError(OSError):
    """Downloaded content does not match the SHA-256 checksum recorded in skdc."""


@dataclass(frozen=True)
class RemoteFile:
    """A file with its download locations (tried in order) and SHA-256 checksum."""

    filename: str
    urls: tuple[str, ...]
    sha256: str


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder where skdc looks for (and downloads) data sets.

    The folder is chosen in this order: the ``data_home`` argument, the environment
    variable ``SKDC_DATA_HOME``, then ``~/skdc_data``. A leading ``~`` is expanded.
    Unlike :func:`sklearn.datasets.get_data_home`, the folder is not created here; the
    loaders create it only when they download something.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Folder to use. ``None`` falls back to ``SKDC_DATA_HOME``, then ``~/skdc_data``.

    Returns
    -------
    data_home : pathlib.Path
        The data folder (which may not exist yet).

    Examples
    --------
    >>> from skdc.datasets import get_data_home
    >>> str(get_data_home("/tmp/my_skdc_data"))
    '/tmp/my_skdc_data'
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or "~/skdc_data"
    return Path(data_home).expanduser()


def sha256sum(path: Path) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_digest(paths: Sequence[Path]) -> str:
    """SHA-256 over the sorted file names and the SHA-256 of each file's bytes.

    Independent of how the files were packed (archives are not byte-stable), and
    computable from a ``sha256sum`` listing without the files.
    """
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def download(url: str, folder: Path) -> Path:
    """Download ``url`` into a temporary ``*.part`` file in ``folder`` and return its path."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    fd, tmp_name = tempfile.mkstemp(dir=folder, suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _urlopen(request, timeout=_TIMEOUT) as response:
            shutil.copyfileobj(response, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def try_urls(urls: Iterable[str], attempt: Callable[[str], T], *, what: str, dest: Path) -> T:
    """Return ``attempt(url)`` for the first URL that works; raise a summary otherwise.

    ``attempt`` signals failure with :class:`OSError` (which covers network errors and
    :class:`ChecksumError`). When every URL fails, a :class:`ChecksumError` is raised if
    any attempt failed its checksum, else an :class:`OSError`.
    """
    errors: list[str] = []
    checksum_failed = False
    for url in urls:
        try:
            return attempt(url)
        except OSError as exc:
            checksum_failed |= isinstance(exc, ChecksumError)
            errors.append(f"  {url}: {exc}")
    error = ChecksumError if checksum_failed else OSError
    raise error(
        f"Could not download {what} to {dest}. Tried:\n" + "\n".join(errors) + "\n"
        f"Download it by hand and place it at {dest}, or point data_home / "
        f"{DATA_HOME_ENV} at a folder that already holds it."
    )


def fetch_file(remote: RemoteFile, folder: Path) -> Path:
    """Download ``remote`` into ``folder``, verifying its checksum; return the final path.

    A download whose checksum does not match is deleted, and the next URL is tried.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / remote.filename

    def attempt(url: str) -> Path:
        tmp = download(url, folder)
        digest = sha256sum(tmp)
        if digest != remote.sha256:
            tmp.unlink()
            raise ChecksumError(
                f"SHA-256 checksum mismatch (expected {remote.sha256}, got {digest}); "
                "the download was deleted"
            )
        return tmp.replace(dest)

    return try_urls(remote.urls, attempt, what=remote.filename, dest=dest)


def not_found(what: str, path: Path, how: str) -> FileNotFoundError:
    """A :class:`FileNotFoundError` naming the missing path and how to get the data."""
    return FileNotFoundError(f"{what} not found: {path} does not exist. {how}")


def import_pandas(*, required: bool) -> Any:
    """Import pandas lazily; return ``None`` when it is missing and not ``required``."""
    try:
        import pandas
    except ImportError as exc:
        if required:
            raise ImportError(
                f"as_frame=True needs pandas; install it with: {INSTALL_HINT}"
            ) from exc
        return None
    return pandas


def tabular_bunch(
    data: np.ndarray,
    target: np.ndarray,
    groups: np.ndarray,
    *,
    feature_names: Sequence[str],
    target_column: str,
    group_column: str,
    extra_columns: dict[str, np.ndarray],
    descr: str,
    as_frame: bool,
) -> Bunch:
    """Assemble the Bunch returned by the table loaders (data, target, groups, frame...)."""
    feature_names = list(feature_names)
    pd = import_pandas(required=as_frame)
    frame = None
    if pd is not None:
        frame = pd.DataFrame(data, columns=feature_names)
        frame[target_column] = target
        frame[group_column] = groups
        for name, values in extra_columns.items():
            frame[name] = values
    bunch = Bunch(
        data=data,
        target=target,
        groups=groups,
        feature_names=feature_names,
        target_names=np.unique(target),
        frame=frame,
        DESCR=descr,
    )
    if as_frame:
        bunch.data = frame[feature_names]
        bunch.target = frame[target_column]
        bunch.groups = frame[group_column]
    return bunch
