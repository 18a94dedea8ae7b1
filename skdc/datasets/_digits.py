"""Free Spoken Digit Dataset (FSDD): frame-level log-mel / MFCC features with context."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from sklearn.utils import Bunch

from ._audio import (
    check_framing,
    check_layout,
    check_max_per,
    framing_documented,
    speech_bunch,
)
from ._base import ChecksumError, download, folder_digest, get_data_home, not_found, try_urls

_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
FSDD_URLS = (
    f"https://codeload.github.com/Jakobovski/free-spoken-digit-dataset/zip/{_COMMIT}",
    f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{_COMMIT}.zip",
)
# GitHub does not promise byte-stable archives, so the checksum covers the extracted
# recordings instead of the zip: see folder_digest.
FSDD_RECORDINGS_SHA256 = "a2e8a660492f28d9eed6270b290d26cbc5c81d6077ce87d3c0ad5adf4d4ee696"
_FOLDER = "fsdd"
SAMPLE_RATE = 8000
_STEM = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)$")

_DESCR = """\
Free Spoken Digit Dataset (FSDD)
================================

Recordings of the spoken digits 0-9 in English: 8 kHz mono 16-bit WAV, trimmed of
silence, 0.14-2.28 s long. 6 speakers (all male: george, jackson, lucas, nicolas, theo,
yweweler), 50 recordings of each digit per speaker: 3000 files. Files are named
``{digit}_{speaker}_{index}.wav`` with index 0-49 (the repository's own split, index 0-4
test and 5-49 train, is within-speaker, not speaker-independent).

This loader turns every recording into frames (25 ms windows every 10 ms by default,
Hann window), computes log-mel energies (magnitude spectrum, mel filters from 20 Hz to
4 kHz, natural log with a 1e-6 floor) and optionally MFCCs from them with ``tf.signal``.
Each row of ``data`` is one frame with its +/- ``context`` neighbours stacked (edge
frames repeated at the ends of a recording), labelled with the recording's digit and
speaker. Features are recomputed on every call (about a second for all 3000 files after
TensorFlow is imported), so nothing is cached on disk.

Source: GitHub Jakobovski/free-spoken-digit-dataset, folder recordings/, commit
26eb9aaf76e81b692f806f9140c2d2777410d7a1 (2024-05-02); the download is verified by a
SHA-256 checksum over the 3000 extracted recordings.

Citation: Jackson, Z. et al. Free Spoken Digit Dataset (FSDD). GitHub repository
Jakobovski/free-spoken-digit-dataset; cite the repository or its Zenodo record (DOI badge
in its README).

Licence: Creative Commons Attribution-ShareAlike 4.0 International (CC BY-SA 4.0).
"""


# ---------------------------------------------------------------------------- download


def _extract_recordings(archive: Path, dest: Path) -> None:
    """Extract ``<top>/recordings/*.wav`` from the repository zip into ``dest``."""
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            parts = PurePosixPath(member.filename).parts
            if len(parts) == 3 and parts[1] == "recordings" and parts[2].endswith(".wav"):
                (dest / parts[2]).write_bytes(zf.read(member))


def _download_recordings(url: str, fsdd: Path) -> Path:
    """Download the repository zip from ``url`` and install ``fsdd/recordings``."""
    archive = download(url, fsdd)
    staging = Path(tempfile.mkdtemp(dir=fsdd, prefix="recordings."))
    try:
        try:
            _extract_recordings(archive, staging)
        except zipfile.BadZipFile as exc:
            raise ChecksumError(f"not a valid zip archive ({exc})") from exc
        digest = folder_digest(list(staging.glob("*.wav")))
        if digest != FSDD_RECORDINGS_SHA256:
            raise ChecksumError(
                f"SHA-256 checksum mismatch of the extracted recordings (expected "
                f"{FSDD_RECORDINGS_SHA256}, got {digest}); the download was deleted"
            )
        staging.chmod(0o755)  # mkdtemp makes it private to the user
        return staging.replace(fsdd / "recordings")
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


def _recordings_folder(data_home, download_if_missing: bool) -> Path:
    fsdd = get_data_home(data_home) / _FOLDER
    recordings = fsdd / "recordings"
    if recordings.is_dir():
        return recordings
    if not download_if_missing:
        raise not_found(
            "Free Spoken Digit Dataset",
            recordings,
            "Call load_spoken_digits(download_if_missing=True) to download it from GitHub "
            "(Jakobovski/free-spoken-digit-dataset), or copy the repository's recordings/ "
            "folder there by hand.",
        )
    fsdd.mkdir(parents=True, exist_ok=True)
    return try_urls(
        FSDD_URLS,
        lambda url: _download_recordings(url, fsdd),
        what="the FSDD recordings",
        dest=recordings,
    )


# ------------------------------------------------------------------------ file listing


def _list_utterances(recordings: Path, speakers, max_per_speaker_digit) -> list[tuple]:
    """(path, stem, speaker, digit, index) per chosen recording, sorted."""
    items = []
    for path in recordings.glob("*.wav"):
        match = _STEM.match(path.stem)
        if match is None:
            raise ValueError(f"{path.name}: expected a file name {{digit}}_{{speaker}}_{{index}}")
        digit, speaker, index = match.groups()
        items.append((speaker, int(digit), int(index), path))
    if not items:
        raise FileNotFoundError(f"No .wav files in {recordings}.")
    items.sort(key=lambda item: item[:3])
    available = sorted({item[0] for item in items})
    if speakers is not None:
        speakers = [speakers] if isinstance(speakers, str) else list(speakers)
        unknown = sorted(set(speakers) - set(available))
        if unknown:
            raise ValueError(f"Unknown speaker(s) {unknown}; available: {available}.")
        items = [item for item in items if item[0] in speakers]
    if max_per_speaker_digit is not None:
        items = _first_per_speaker_digit(items, max_per_speaker_digit)
    return [(path, path.stem, speaker, digit, index) for speaker, digit, index, path in items]


def _first_per_speaker_digit(items: list[tuple], n: int) -> list[tuple]:
    counts: dict[tuple, int] = {}
    kept = []
    for item in items:
        key = item[:2]
        counts[key] = counts.get(key, 0) + 1
        if counts[key] <= n:
            kept.append(item)
    return kept


# ------------------------------------------------------------------------------ public


def _utterance_table(chosen: list[tuple]) -> dict[str, np.ndarray]:
    _, stems, speakers, digits, indices = zip(*chosen)
    return {
        "utterance": np.array(stems, dtype=object),
        "speaker": np.array(speakers, dtype=object),
        "digit": np.array(digits, dtype=np.int64),
        "index": np.array(indices, dtype=np.int64),
    }


@framing_documented(SAMPLE_RATE)
def load_spoken_digits(
    data_home: str | os.PathLike[str] | None = None,
    *,
    download_if_missing: bool = True,
    features: str = "mfcc",
    n_mels: int = 40,
    n_mfcc: int = 13,
    context: int = 5,
    frame_length: float = 0.025,
    frame_step: float = 0.010,
    cmvn: str | None = None,
    augment: dict | None = None,
    speakers: str | Sequence[str] | None = None,
    max_per_speaker_digit: int | None = None,
    return_utterances: bool | str = False,
    as_frame: bool = False,
) -> Bunch:
    """Load the Free Spoken Digit Dataset as frame-level features (classification).

    3000 recordings of the digits 0-9 by 6 speakers (50 per digit and speaker), 8 kHz.
    Each recording is cut into frames; each frame gets log-mel energies or MFCCs
    (computed with ``tf.signal``) stacked with its +/- ``context`` neighbours, and is
    labelled with the recording's digit and speaker. Reads
    ``<data_home>/fsdd/recordings/*.wav``, downloading the recordings from GitHub
    (checksum-verified) when that folder is missing.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        Download the recordings when ``<data_home>/fsdd/recordings`` does not exist. If
        False, a missing folder raises :class:`FileNotFoundError`.
{framing}
    speakers : str or sequence of str, default=None
        Load only these speakers (e.g. ``["theo", "lucas"]``); None loads all six.
    max_per_speaker_digit : int, default=None
        Load at most this many recordings of each digit per speaker (the lowest indices),
        e.g. for a quick subset; None loads all.
    return_utterances : bool or "padded", default=False
        If True, ``data`` is a list with one (n_frames_i, n_features) array per recording
        and ``target``, ``groups`` and ``utterance`` have one entry per recording.
        ``"padded"``: ``data`` is one array of shape (n_recordings, n_frames, n_features),
        every recording zero-padded at its end to the longest, ``n_frames`` its lengths
        (for sequence models: ``keras.layers.Masking`` skips the padding).
    as_frame : bool, default=False
        If True, also build ``frame``, a pandas DataFrame with the features and columns
        ``digit``, ``speaker`` and ``utterance`` (off by default: it copies ``data``).
        Not available with ``return_utterances=True``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_frames, (2 * context + 1) * n_per_frame), float32
            One row per frame: the features of frames ``t - context`` ... ``t + context``.
        target : ndarray of shape (n_frames,)
            Digit (int 0-9) of each frame's recording.
        groups : ndarray of shape (n_frames,)
            Speaker name of each frame.
        utterance : ndarray of shape (n_frames,)
            Recording id (file stem such as ``"3_theo_12"``) of each frame.
        feature_names : list of str
            E.g. ``"mfcc0_t-5"`` (coefficient 0 of the frame 5 steps before).
        target_names : ndarray
            The digits present.
        utterances : pandas.DataFrame or Bunch
            One row per recording: ``utterance``, ``speaker``, ``digit``, ``index``,
            ``n_frames``, ``duration`` (s). A Bunch of arrays when pandas is missing.
        frame : pandas.DataFrame or None
            Only with ``as_frame=True``.
        sample_rate : int
            8000.
        DESCR : str
            Description, citation and licence.

    Raises
    ------
    FileNotFoundError
        If the recordings are missing and ``download_if_missing=False``.
    OSError
        If the download fails; :class:`~skdc.datasets.ChecksumError` (a subclass)
        if the recordings do not match the recorded SHA-256 checksum.

    Examples
    --------
    >>> from skdc.datasets import load_spoken_digits
    >>> fsdd = load_spoken_digits(max_per_speaker_digit=2)  # doctest: +SKIP
    >>> fsdd.data.shape[1], len(fsdd.utterances)  # doctest: +SKIP
    (143, 120)
    >>> # speaker-disjoint split: sklearn.model_selection.LeaveOneGroupOut with fsdd.groups
    """
    framing = check_framing(features, n_mels, n_mfcc, context, frame_length, frame_step,
                            SAMPLE_RATE, cmvn, augment)
    check_max_per(max_per_speaker_digit, "max_per_speaker_digit")
    check_layout(return_utterances, as_frame)
    recordings = _recordings_folder(data_home, download_if_missing)
    chosen = _list_utterances(recordings, speakers, max_per_speaker_digit)
    table = _utterance_table(chosen)
    return speech_bunch(
        [item[0] for item in chosen], table, framing, target_column="digit",
        target_names=np.unique(table["digit"]), descr=_DESCR,
        return_utterances=return_utterances, as_frame=as_frame,
    )
