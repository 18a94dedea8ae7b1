"""Free Spoken Digit Dataset (FSDD): frame-level log-mel / MFCC features with context."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from sklearn.utils import Bunch

from ._base import ChecksumError, download, get_data_home, import_pandas, not_found, try_urls

_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
FSDD_URLS = (
    f"https://codeload.github.com/Jakobovski/free-spoken-digit-dataset/zip/{_COMMIT}",
    f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{_COMMIT}.zip",
)
# GitHub does not promise byte-stable archives, so the checksum covers the extracted
# recordings instead of the zip: see _recordings_digest.
FSDD_RECORDINGS_SHA256 = "a2e8a660492f28d9eed6270b290d26cbc5c81d6077ce87d3c0ad5adf4d4ee696"
_FOLDER = "fsdd"
SAMPLE_RATE = 8000
_FMIN = 20.0  # Hz; the mel filters span _FMIN to the Nyquist frequency
_LOG_FLOOR = 1e-6
_CHUNK = 16384  # frames per tf.signal call, bounds memory
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


@dataclass(frozen=True)
class _Framing:
    """Framing and feature parameters, in samples."""

    features: str
    frame_length: int
    frame_step: int
    fft_length: int
    n_mels: int
    n_mfcc: int

    @property
    def n_features(self) -> int:
        return self.n_mfcc if self.features == "mfcc" else self.n_mels


# ---------------------------------------------------------------------------- download


def _recordings_digest(paths: Sequence[Path]) -> str:
    """SHA-256 over the sorted file names and the SHA-256 of each file's bytes."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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
        digest = _recordings_digest(list(staging.glob("*.wav")))
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


# ---------------------------------------------------------------------------- features


def _read_wav(path: Path) -> np.ndarray:
    from scipy.io import wavfile

    rate, signal = wavfile.read(path)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: sample rate {rate} Hz, expected {SAMPLE_RATE} Hz")
    if signal.ndim > 1:
        signal = signal.mean(axis=1)
    if np.issubdtype(signal.dtype, np.integer):
        return signal.astype(np.float32) / np.float32(np.iinfo(signal.dtype).max + 1)
    return signal.astype(np.float32)


def _frames(signal: np.ndarray, framing: _Framing) -> np.ndarray:
    """Frames as ``tf.signal.stft`` cuts them (no end padding; short signals padded)."""
    length, step = framing.frame_length, framing.frame_step
    if len(signal) < length:
        signal = np.pad(signal, (0, length - len(signal)))
    n_frames = 1 + (len(signal) - length) // step
    return np.lib.stride_tricks.sliding_window_view(signal, length)[::step][:n_frames]


def _frame_features(frames: np.ndarray, framing: _Framing) -> np.ndarray:
    """Log-mel or MFCC features of a stack of frames of shape (n_frames, frame_length).

    Frames of all recordings go through ``tf.signal`` together: one frame per row, so
    ``tf.signal.stft`` with ``frame_step=frame_length`` gives the same spectra as running
    it on each recording, in a few large batches instead of 3000 small calls.
    """
    import tensorflow as tf

    mel = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=framing.n_mels,
        num_spectrogram_bins=framing.fft_length // 2 + 1,
        sample_rate=SAMPLE_RATE,
        lower_edge_hertz=_FMIN,
        upper_edge_hertz=SAMPLE_RATE / 2,
    )
    out = []
    for start in range(0, len(frames), _CHUNK):
        spectra = tf.signal.stft(
            frames[start : start + _CHUNK],
            frame_length=framing.frame_length,
            frame_step=framing.frame_length,
            fft_length=framing.fft_length,
        )[:, 0, :]
        features = tf.math.log(tf.matmul(tf.abs(spectra), mel) + _LOG_FLOOR)
        if framing.features == "mfcc":
            features = tf.signal.mfccs_from_log_mel_spectrograms(features)[:, : framing.n_mfcc]
        out.append(features.numpy())
    if not out:
        return np.empty((0, framing.n_features), dtype=np.float32)
    return np.concatenate(out)


def _stack_context(features: np.ndarray, lengths: np.ndarray, context: int) -> np.ndarray:
    """Stack each frame with its +/- ``context`` neighbours from the same recording.

    ``features`` holds the frames of consecutive recordings with ``lengths`` frames each;
    neighbours beyond a recording's ends repeat its first or last frame. The result has
    shape (n_frames, (2 * context + 1) * n_features), ordered offset-major.
    """
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    ends = starts + np.repeat(lengths, lengths) - 1
    index = np.arange(len(features))[:, None] + np.arange(-context, context + 1)[None, :]
    index = np.clip(index, starts[:, None], ends[:, None])
    return features[index].reshape(len(features), -1)


def _feature_names(framing: _Framing, context: int) -> list[str]:
    kind = framing.features
    return [
        f"{kind}{j}_t{offset:+d}"
        for offset in range(-context, context + 1)
        for j in range(framing.n_features)
    ]


# ------------------------------------------------------------------------------ public


def _check_params(
    features, n_mels, n_mfcc, context, frame_length, frame_step, max_per_speaker_digit
) -> _Framing:
    if features not in ("mfcc", "logmel"):
        raise ValueError(f"features must be 'mfcc' or 'logmel', got {features!r}.")
    if not (isinstance(n_mels, int | np.integer) and n_mels >= 1):
        raise ValueError(f"n_mels must be a positive int, got {n_mels!r}.")
    if not (isinstance(n_mfcc, int | np.integer) and 1 <= n_mfcc <= n_mels):
        raise ValueError(f"n_mfcc must be an int in [1, n_mels={n_mels}], got {n_mfcc!r}.")
    if not (isinstance(context, int | np.integer) and context >= 0):
        raise ValueError(f"context must be a non-negative int, got {context!r}.")
    if max_per_speaker_digit is not None and not (
        isinstance(max_per_speaker_digit, int | np.integer) and max_per_speaker_digit >= 1
    ):
        raise ValueError(
            f"max_per_speaker_digit must be a positive int or None, got {max_per_speaker_digit!r}."
        )
    length = round(frame_length * SAMPLE_RATE)
    step = round(frame_step * SAMPLE_RATE)
    if length < 2 or step < 1:
        raise ValueError(
            f"frame_length and frame_step (seconds) are too short at {SAMPLE_RATE} Hz: "
            f"{frame_length!r}, {frame_step!r}."
        )
    fft_length = 1 << (length - 1).bit_length()  # next power of two
    return _Framing(features, length, step, fft_length, int(n_mels), int(n_mfcc))


def _utterance_table(chosen: list[tuple], lengths: np.ndarray, n_samples: np.ndarray):
    """Per-recording info: a DataFrame if pandas is installed, else a Bunch of arrays."""
    _, stems, speakers, digits, indices = zip(*chosen)
    table = {
        "utterance": np.array(stems, dtype=object),
        "speaker": np.array(speakers, dtype=object),
        "digit": np.array(digits, dtype=np.int64),
        "index": np.array(indices, dtype=np.int64),
        "n_frames": lengths,
        "duration": n_samples / SAMPLE_RATE,
    }
    pd = import_pandas(required=False)
    return Bunch(**table) if pd is None else pd.DataFrame(table)


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
    speakers: str | Sequence[str] | None = None,
    max_per_speaker_digit: int | None = None,
    return_utterances: bool = False,
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
    features : {"mfcc", "logmel"}, default="mfcc"
        Per-frame features: the first ``n_mfcc`` MFCCs, or ``n_mels`` log-mel energies.
    n_mels : int, default=40
        Number of mel bands (20 Hz to 4 kHz).
    n_mfcc : int, default=13
        Number of MFCCs kept (``features="mfcc"`` only); at most ``n_mels``.
    context : int, default=5
        Neighbouring frames stacked on each side; 0 gives single frames.
    frame_length : float, default=0.025
        Analysis window in seconds (200 samples at 8 kHz; the FFT size is the next power
        of two).
    frame_step : float, default=0.010
        Hop between frames in seconds (80 samples at 8 kHz).
    speakers : str or sequence of str, default=None
        Load only these speakers (e.g. ``["theo", "lucas"]``); None loads all six.
    max_per_speaker_digit : int, default=None
        Load at most this many recordings of each digit per speaker (the lowest indices),
        e.g. for a quick subset; None loads all.
    return_utterances : bool, default=False
        If True, ``data`` is a list with one (n_frames_i, n_features) array per recording
        and ``target``, ``groups`` and ``utterance`` have one entry per recording.
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
    framing = _check_params(
        features, n_mels, n_mfcc, context, frame_length, frame_step, max_per_speaker_digit
    )
    if as_frame and return_utterances:
        raise ValueError("as_frame=True is not available with return_utterances=True.")
    recordings = _recordings_folder(data_home, download_if_missing)
    chosen = _list_utterances(recordings, speakers, max_per_speaker_digit)
    signals = [_read_wav(item[0]) for item in chosen]
    frames = [_frames(signal, framing) for signal in signals]
    lengths = np.array([len(f) for f in frames], dtype=np.int64)
    per_frame = _frame_features(np.concatenate(frames), framing)
    data = _stack_context(per_frame, lengths, context)
    table = _utterance_table(chosen, lengths, np.array([len(s) for s in signals]))
    bunch = Bunch(
        feature_names=_feature_names(framing, context),
        target_names=np.unique(table["digit"]),
        utterances=table,
        frame=None,
        sample_rate=SAMPLE_RATE,
        DESCR=_DESCR,
    )
    utterance = np.asarray(table["utterance"])
    speaker = np.asarray(table["speaker"])
    digit = np.asarray(table["digit"])
    if return_utterances:
        bunch.update(
            data=np.split(data, np.cumsum(lengths)[:-1]),
            target=digit,
            groups=speaker,
            utterance=utterance,
        )
        return bunch
    bunch.update(
        data=data,
        target=np.repeat(digit, lengths),
        groups=np.repeat(speaker, lengths),
        utterance=np.repeat(utterance, lengths),
    )
    if as_frame:
        bunch.frame = _digits_frame(bunch)
    return bunch


def _digits_frame(bunch: Bunch):
    pd = import_pandas(required=True)
    frame = pd.DataFrame(bunch.data, columns=bunch.feature_names)
    frame["digit"] = bunch.target
    frame["speaker"] = bunch.groups
    frame["utterance"] = bunch.utterance
    return frame
