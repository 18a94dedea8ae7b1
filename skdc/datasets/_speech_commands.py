"""Speech Commands v0.02: frame-level log-mel / MFCC features with context."""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Sequence
from functools import partial
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
from ._base import (
    ChecksumError,
    RemoteFile,
    download,
    fetch_file,
    folder_digest,
    get_data_home,
    not_found,
    try_urls,
)

_HOST = "download.tensorflow.org/data"
TEST_SET_URLS = (
    f"https://storage.googleapis.com/{_HOST}/speech_commands_test_set_v0.02.tar.gz",
    f"http://{_HOST}/speech_commands_test_set_v0.02.tar.gz",
)
RELEASE = RemoteFile(
    filename="speech_commands_v0.02.tar.gz",
    urls=(
        f"https://storage.googleapis.com/{_HOST}/speech_commands_v0.02.tar.gz",
        f"http://{_HOST}/speech_commands_v0.02.tar.gz",
    ),
    # as recorded by TensorFlow Datasets (url_checksums/speech_commands.txt)
    sha256="af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
)
TEST_FOLDER = "speech_commands_test"
RELEASE_FOLDER = "speech_commands_v0.02"
SPLIT_LISTS = ("validation_list.txt", "testing_list.txt")
SAMPLE_RATE = 16000
SUBSETS = ("test", "train", "validation", "full")
CLASS_SETS = ("keywords", "words")

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward", "four",
    "happy", "house", "learn", "marvin", "nine", "one", "seven", "sheila", "six", "three",
    "tree", "two", "visual", "wow", "zero",
)  # fmt: skip
WORDS = KEYWORDS + UNKNOWN_WORDS
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
# Each class folder of the test set: its number of files and its folder_digest (over the
# SHA-256 of every file), computed from the SHA-256 of the 4,890 files of the test set.
TEST_SET_FOLDERS = {
    "_silence_": (408, "e42a5e167d30e7d483ccfc3d4097df18d5ee1e293f1c099c3cf9e9048f44a938"),
    "_unknown_": (408, "8382b0a3393f9f9e380e8dce1b79547121c4b9a9a00306fbc1f6553ac6e4d54c"),
    "down": (406, "267a14b43a41ff3c4e3e6740e2ab30a69017f8d98a6c2364f1d9c6a3ee687ea5"),
    "go": (402, "231916218f5d981f5445d2a8ffe7cf591e242fd25b1336e27fcb24b4b6883dae"),
    "left": (412, "fb3a654d76eeec0267c0b485b7f7a1e0a3eddf9bb40e9ed1bb6d89e2e347bf1a"),
    "no": (405, "d7ad8c5916bc9e917198f55b3a28175a6156a9c4db5952e1eedc0755c187c35e"),
    "off": (402, "73aa8b9e6ac6b2979d154fa52bea6d05d05523596d761a452b69af65c44cbb8c"),
    "on": (396, "cdb06e97a4b73d6a506966e3bddd2f3106482ba68699c2cc05b9b8257cb6dd2b"),
    "right": (396, "d9304cada1b14e5ec4d329d4bb748c57ce1fee0234847b131ad64fc8402582dc"),
    "stop": (411, "5ccca5d6dfcece2d46183c947a78c04f335356433ca95057b73e33516640e2cc"),
    "up": (425, "4ecc2af59ce407e3199aa421619404a4c856bc34792f28ff3f7e1055128feaf5"),
    "yes": (419, "874704bf91234cf75e04e05d622a379e3079fb3638a10429af1e6171982dc658"),
}
# <word>_ only in the test set's _unknown_ folder; ".wav.wav" there as in the archive
_SPOKEN = re.compile(
    r"^(?:(?P<word>[a-z]+)_)?(?P<speaker>[0-9a-f]{8})_nohash_(?P<take>\d+)\.wav(?:\.wav)?$"
)
_NOISE = re.compile(r"^\d+\.wav$")

_DESCR = """\
Speech Commands v0.02
=====================

One-second recordings of 35 English words (16 kHz mono 16-bit WAV) by 2,618
crowd-sourced speakers: 105,829 files in the full release. Ten words are the keywords
of the standard task (yes, no, up, down, left, right, on, off, stop, go); the other 25
(backward, bed, bird, ..., zero) form its ``_unknown_`` class. Files are named
``<word>/<speaker>_nohash_<take>.wav``, where ``<speaker>`` is an 8-hex-digit hash of
the speaker; the release's ``validation_list.txt`` and ``testing_list.txt`` assign
whole speakers to a split.

The canonical test set is a separate archive of 4,890 files in 12 folders: the 10
keywords, ``_unknown_`` (``<word>_<speaker>_nohash_<take>.wav.wav``, the double
extension as published) and ``_silence_`` (background noise, no speaker); 239 speakers.

This loader turns every recording into frames (25 ms windows every 10 ms by default,
Hann window), computes log-mel energies (magnitude spectrum, mel filters from 20 Hz to
8 kHz, natural log with a 1e-6 floor) and optionally MFCCs from them with ``tf.signal``,
exactly as :func:`load_arabic_speech_commands` does. Each row of ``data`` is one frame
with its +/- ``context`` neighbours stacked (edge frames repeated at the ends of a
recording), labelled with the recording's class, speaker and utterance.

Source: http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz
(112,563,277 bytes; every file is verified against SHA-256 checksums recorded in skdc)
and speech_commands_v0.02.tar.gz beside it (2,428,923,189 bytes; verified against the
archive's SHA-256 recorded by TensorFlow Datasets).

Citation: Warden, P. "Speech Commands: A Dataset for Limited-Vocabulary Speech
Recognition." arXiv:1804.03209, 2018.

Licence: Creative Commons Attribution 4.0 International (CC BY 4.0).
"""


# ----------------------------------------------------------------------------- arguments


def _check_choice(value, name: str, choices: Sequence[str]) -> None:
    if not (isinstance(value, str) and value in choices):
        quoted = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {quoted}; got {value!r}.")


def _check_speakers(speakers) -> list[str] | None:
    if speakers is None:
        return None
    chosen = [speakers] if isinstance(speakers, str) else list(speakers)
    if not chosen or not all(isinstance(s, str) for s in chosen):
        raise ValueError(
            "speakers must be a speaker hash such as '0a7c2a8d', a non-empty list of them, "
            f"or None; got {speakers!r}."
        )
    return chosen


def _check_download(download_if_missing) -> None:
    if download_if_missing is not None and not isinstance(download_if_missing, bool):
        raise ValueError(
            f"download_if_missing must be a bool or None, got {download_if_missing!r}."
        )


def _check_silence(include_silence, subset: str) -> None:
    if not isinstance(include_silence, bool):
        raise ValueError(f"include_silence must be a bool, got {include_silence!r}.")
    if include_silence and subset != "test":
        raise ValueError(
            "include_silence=True needs subset='test': the full release has no _silence_ "
            "clips (only long _background_noise_ recordings)."
        )


# ---------------------------------------------------------------------------- archives


def _extract(archive: Path, dest: Path, keep: Callable[[tuple[str, ...]], bool]) -> None:
    """Extract the regular files of a tar archive whose path parts pass ``keep``.

    Members are read as a stream; paths that are absolute or contain ``..`` are skipped.
    An unreadable archive raises :class:`ChecksumError`.
    """
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or not parts or parts[0] == "/" or ".." in parts:
                    continue
                if keep(parts):
                    target = dest.joinpath(*parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ChecksumError(f"not a valid tar archive ({exc})") from exc


def _is_test_set_file(parts: tuple[str, ...]) -> bool:
    return len(parts) == 2 and parts[0] in TEST_SET_FOLDERS and parts[1].endswith(".wav")


def _wav_count(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*.wav")) if folder.is_dir() else 0


def _incomplete(root: Path, folders) -> list[str]:
    return [f for f in folders if _wav_count(root / f) < TEST_SET_FOLDERS[f][0]]


def _check_test_folder(folder: Path) -> None:
    expected = TEST_SET_FOLDERS[folder.name][1]
    digest = folder_digest(list(folder.glob("*.wav")))
    if digest != expected:
        raise ChecksumError(
            f"SHA-256 checksum mismatch of the test set's folder {folder.name!r} (expected "
            f"{expected}, got {digest}); the download was deleted"
        )


def _install_test_set(url: str, root: Path) -> Path:
    """Download the test-set archive from ``url`` and install its incomplete folders.

    Every folder to install is extracted to a staging folder and checked first; only
    when all match their checksums are the files moved in, so a failure changes nothing.
    """
    archive = download(url, root.parent)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{TEST_FOLDER}."))
    try:
        _extract(archive, staging, _is_test_set_file)
        folders = _incomplete(root, list(TEST_SET_FOLDERS))
        for folder in folders:
            _check_test_folder(staging / folder)
        for folder in folders:
            (root / folder).mkdir(parents=True, exist_ok=True)
            for path in (staging / folder).iterdir():
                path.replace(root / folder / path.name)
        return root
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


def _test_set_root(data_home, folders: list[str], download_if_missing: bool) -> Path:
    """``<data_home>/speech_commands_test``, holding every file of ``folders``."""
    root = get_data_home(data_home) / TEST_FOLDER
    missing = _incomplete(root, folders)
    if not missing:
        return root
    if not download_if_missing:
        expected = TEST_SET_FOLDERS[missing[0]][0]
        raise not_found(
            f"Speech Commands test set folder {missing[0]!r} ({expected} files expected)",
            root / missing[0],
            "Call load_speech_commands(download_if_missing=True) to download "
            f"speech_commands_test_set_v0.02.tar.gz (112 MB) from {TEST_SET_URLS[-1]}, or "
            "extract that archive there by hand.",
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    return try_urls(TEST_SET_URLS, partial(_install_test_set, root=root),
                    what="the Speech Commands test set", dest=root)


def _install_release(root: Path) -> Path:
    """Download the full release (checksum-verified) and extract it to ``root``."""
    root.parent.mkdir(parents=True, exist_ok=True)
    archive = fetch_file(RELEASE, root.parent)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{RELEASE_FOLDER}."))
    try:
        _extract(archive, staging, lambda parts: True)
        absent = [name for name in SPLIT_LISTS if not (staging / name).is_file()]
        if absent:
            raise OSError(f"{RELEASE.filename} holds no {absent[0]}; nothing was installed")
        staging.chmod(0o755)  # mkdtemp makes it private to the user
        return staging.replace(root)
    finally:
        archive.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)


def _release_root(data_home, download: bool) -> Path:
    """``<data_home>/speech_commands_v0.02``: the extracted full release."""
    root = get_data_home(data_home) / RELEASE_FOLDER
    if all((root / name).is_file() for name in SPLIT_LISTS):
        return root
    extract = f"extract {RELEASE.filename} there (mkdir {root}; tar -xzf ... -C {root})"
    if root.exists():
        raise not_found(
            "Speech Commands v0.02 split list", root / SPLIT_LISTS[0],
            f"The folder exists but is not a complete extraction: {extract}, or remove it "
            "and call load_speech_commands(download_if_missing=True).",
        )
    if not download:
        raise not_found(
            "Speech Commands v0.02 (full release)", root,
            "Call load_speech_commands(subset=..., download_if_missing=True) to download "
            f"{RELEASE.filename} (2.4 GB, 105,829 files) from {RELEASE.urls[-1]}, or "
            f"{extract}.",
        )
    return _install_release(root)


# ------------------------------------------------------------------------ file listing


def _spoken(path: Path, folder: str) -> tuple[str, str, int]:
    """(word, speaker, take) from a file name; ``ValueError`` if it does not parse.

    Only the test set's ``_unknown_`` folder names the word in the file name.
    """
    match = _SPOKEN.match(path.name)
    in_unknown = folder == UNKNOWN
    if (match is None or in_unknown != bool(match["word"])
            or (in_unknown and match["word"] not in UNKNOWN_WORDS)):
        pattern = "<word>_<speaker>_nohash_<take>.wav" if in_unknown else (
            "<speaker>_nohash_<take>.wav")
        raise ValueError(f"{path}: expected a file name {pattern} of a Speech Commands word")
    return match["word"] or folder, match["speaker"], int(match["take"])


def _row(path: Path, folder: str) -> tuple:
    """(speaker, word, take, utterance, path) of one recording in ``folder``."""
    utterance = f"{folder}/{path.name.split('.', 1)[0]}"
    if folder == SILENCE:
        if not _NOISE.match(path.name):
            raise ValueError(f"{path}: expected a file name <n>.wav of background noise")
        return SILENCE, SILENCE, -1, utterance, path
    word, speaker, take = _spoken(path, folder)
    return speaker, word, take, utterance, path


def _test_set_rows(root: Path, folders: list[str]) -> list[tuple]:
    return [_row(path, folder) for folder in folders for path in (root / folder).glob("*.wav")]


def _split_list(root: Path, name: str) -> set[str]:
    return set((root / name).read_text().split())


def _release_rows(root: Path, subset: str) -> list[tuple]:
    rows = []
    for word in WORDS:
        if not (root / word).is_dir():
            raise not_found(f"Speech Commands v0.02 word folder {word!r}", root / word,
                            f"Extract {RELEASE.filename} there completely.")
        rows += [_row(path, word) for path in (root / word).glob("*.wav")]
    if subset == "full":
        return rows
    validation = _split_list(root, "validation_list.txt")
    if subset == "validation":
        return [row for row in rows if f"{row[3]}.wav" in validation]
    held_out = validation | _split_list(root, "testing_list.txt")
    return [row for row in rows if f"{row[3]}.wav" not in held_out]


def _select(rows: list[tuple], speakers, max_per_speaker_word, min_per_speaker) -> list[tuple]:
    """Rows of the chosen speakers, sorted, at most ``max_per_speaker_word`` takes of each
    word per speaker (the lowest), then only speakers left with ``min_per_speaker`` rows."""
    rows = sorted(rows, key=lambda row: row[:4])
    if speakers is not None:
        available = {row[0] for row in rows}
        unknown = sorted(set(speakers) - available)
        if unknown:
            raise ValueError(
                f"Unknown speaker(s) {unknown[:5]}; speakers are 8-hex-digit hashes found "
                f"in the chosen subset, e.g. {sorted(available)[:3]}."
            )
        chosen = set(speakers)
        rows = [row for row in rows if row[0] in chosen]
    if max_per_speaker_word is not None:
        rows = _first_per(rows, max_per_speaker_word, key=lambda row: row[:2])
    if min_per_speaker is not None:
        speaker, count = np.unique([row[0] for row in rows], return_counts=True)
        kept = set(speaker[count >= min_per_speaker])
        rows = [row for row in rows if row[0] in kept]
    if not rows:
        raise ValueError("No recording is left after the speaker filters; lower "
                         "min_per_speaker or choose other speakers.")
    return rows


def _first_per(rows: list[tuple], n: int, key: Callable[[tuple], tuple]) -> list[tuple]:
    counts: dict[tuple, int] = {}
    kept = []
    for row in rows:
        counts[key(row)] = counts.get(key(row), 0) + 1
        if counts[key(row)] <= n:
            kept.append(row)
    return kept


# ------------------------------------------------------------------------------ public


def _label(word: str, classes: str) -> str:
    if classes == "words" or word in KEYWORDS or word == SILENCE:
        return word
    return UNKNOWN


def _target_names(classes: str, include_silence: bool) -> np.ndarray:
    names = WORDS if classes == "words" else (*KEYWORDS, UNKNOWN)
    return np.array([*names, *([SILENCE] if include_silence else [])], dtype=object)


def _utterance_table(rows: list[tuple], classes: str) -> dict[str, np.ndarray]:
    speaker, word, take, utterance, _ = zip(*rows)
    return {
        "utterance": np.array(utterance, dtype=object),
        "speaker": np.array(speaker, dtype=object),
        "word": np.array(word, dtype=object),
        "label": np.array([_label(w, classes) for w in word], dtype=object),
        "take": np.array(take, dtype=np.int64),
    }


@framing_documented(SAMPLE_RATE)
def load_speech_commands(
    data_home: str | os.PathLike[str] | None = None,
    *,
    subset: str = "test",
    classes: str = "keywords",
    include_silence: bool = False,
    download_if_missing: bool | None = None,
    features: str = "mfcc",
    n_mels: int = 40,
    n_mfcc: int = 13,
    context: int = 5,
    frame_length: float = 0.025,
    frame_step: float = 0.010,
    cmvn: str | None = None,
    augment: dict | None = None,
    speakers: str | Sequence[str] | None = None,
    max_per_speaker_word: int | None = None,
    min_per_speaker: int | None = None,
    return_utterances: bool | str = False,
    as_frame: bool = False,
) -> Bunch:
    """Load Speech Commands v0.02 as frame-level features (classification).

    One-second English words at 16 kHz (98 frames each with the default framing), by
    speakers identified by a hash. Each recording is cut into frames; each frame gets
    log-mel energies or MFCCs (computed with ``tf.signal``) stacked with its
    +/- ``context`` neighbours, and is labelled with the recording's class and speaker:
    the same features and layout as :func:`load_arabic_speech_commands`.

    ``subset="test"`` reads the canonical test set (4,890 files, 239 speakers) from
    ``<data_home>/speech_commands_test/<class>/``, downloading its archive (112 MB,
    every file checksum-verified) when files are missing. The other subsets read the
    extracted full release at ``<data_home>/speech_commands_v0.02/`` and split it with
    its ``validation_list.txt`` and ``testing_list.txt``; its 2.4 GB archive is
    downloaded only with ``download_if_missing=True``.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    subset : {"test", "train", "validation", "full"}, default="test"
        ``"test"``: the separate test-set archive. From the full release (105,829
        files, 2,618 speakers): ``"train"`` (files in neither list), ``"validation"``
        (files in ``validation_list.txt``) or ``"full"`` (every file of the 35 words:
        about 10 million frames, 6 GB of features with the default framing, so select
        ``speakers`` or ``max_per_speaker_word`` for a first look).
    classes : {"keywords", "words"}, default="keywords"
        ``"keywords"``: the 10 keywords (yes, no, up, down, left, right, on, off, stop,
        go) and ``"_unknown_"`` for the 25 other words; ``"words"``: each of the 35 words
        is its own class.
    include_silence : bool, default=False
        Also load the test set's 408 ``_silence_`` clips (background noise, class
        ``"_silence_"``). They have no speaker: their group is ``"_silence_"``, one
        pseudo-speaker. Only with ``subset="test"``.
    download_if_missing : bool or None, default=None
        Download missing files. None downloads the test set when needed but never the
        full release (2.4 GB), which needs True; False raises
        :class:`FileNotFoundError` instead of downloading.
{framing}
    speakers : str or sequence of str, default=None
        Load only these speakers (8-hex-digit hashes such as ``"0a7c2a8d"``); None loads
        all speakers of the subset.
    max_per_speaker_word : int, default=None
        Load at most this many takes of each word per speaker (the lowest take numbers),
        e.g. for a quick subset; None loads all.
    min_per_speaker : int, default=None
        Keep only speakers with at least this many recordings (counted after the other
        selections), e.g. to have data for per-speaker adaptation; None keeps all.
    return_utterances : bool or "padded", default=False
        If True, ``data`` is a list with one (n_frames_i, n_features) array per recording
        and ``target``, ``groups`` and ``utterance`` have one entry per recording.
        ``"padded"``: ``data`` is one array of shape (n_recordings, n_frames, n_features),
        every recording zero-padded at its end to the longest, ``n_frames`` its lengths
        (for sequence models: ``keras.layers.Masking`` skips the padding).
    as_frame : bool, default=False
        If True, also build ``frame``, a pandas DataFrame with the features and columns
        ``label``, ``speaker`` and ``utterance``. Not available with
        ``return_utterances=True``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_frames, (2 * context + 1) * n_per_frame), float32
            One row per frame: the features of frames ``t - context`` ... ``t + context``.
        target : ndarray of shape (n_frames,)
            Class (str, e.g. ``"yes"`` or ``"_unknown_"``) of each frame's recording.
        groups : ndarray of shape (n_frames,)
            Speaker hash of each frame (``"_silence_"`` for background noise).
        utterance : ndarray of shape (n_frames,)
            Recording id (``"<folder>/<file stem>"``, e.g. ``"yes/0cb74144_nohash_1"``).
        feature_names : list of str
            E.g. ``"mfcc0_t-5"`` (coefficient 0 of the frame 5 steps before).
        target_names : ndarray
            The classes of ``classes`` (and ``"_silence_"`` with ``include_silence``).
        utterances : pandas.DataFrame or Bunch
            One row per recording: ``utterance``, ``speaker``, ``word`` (the word
            spoken), ``label`` (the target), ``take`` (-1 for silence), ``n_frames``,
            ``duration`` (s). A Bunch of arrays when pandas is missing.
        frame : pandas.DataFrame or None
            Only with ``as_frame=True``.
        sample_rate : int
            16000.
        DESCR : str
            Description, citation and licence.

    Raises
    ------
    ValueError
        For an unknown subset, class set or speaker, bad feature parameters, filters
        that leave no recording, or a file name that is not the dataset's.
    FileNotFoundError
        If files are missing and may not be downloaded (see ``download_if_missing``),
        or the full release's folder is an incomplete extraction.
    OSError
        If the download fails; :class:`~skdc.datasets.ChecksumError` (a subclass)
        if it does not match the recorded SHA-256 checksums.

    Examples
    --------
    >>> from skdc.datasets import load_speech_commands
    >>> sc = load_speech_commands(max_per_speaker_word=1, min_per_speaker=10)  # doctest: +SKIP
    >>> sc.target_names  # doctest: +SKIP
    array(['yes', 'no', 'up', 'down', 'left', 'right', 'on', 'off', 'stop', 'go',
           '_unknown_'], dtype=object)
    >>> # speaker-disjoint split: sklearn.model_selection.GroupKFold with sc.groups
    """
    _check_choice(subset, "subset", SUBSETS)
    _check_choice(classes, "classes", CLASS_SETS)
    _check_silence(include_silence, subset)
    _check_download(download_if_missing)
    framing = check_framing(features, n_mels, n_mfcc, context, frame_length, frame_step,
                            SAMPLE_RATE, cmvn, augment)
    chosen_speakers = _check_speakers(speakers)
    check_max_per(max_per_speaker_word, "max_per_speaker_word")
    check_max_per(min_per_speaker, "min_per_speaker")
    check_layout(return_utterances, as_frame)
    if subset == "test":
        folders = [*KEYWORDS, UNKNOWN, *([SILENCE] if include_silence else [])]
        root = _test_set_root(data_home, folders, download_if_missing is not False)
        rows = _test_set_rows(root, folders)
    else:
        rows = _release_rows(_release_root(data_home, download_if_missing is True), subset)
    rows = _select(rows, chosen_speakers, max_per_speaker_word, min_per_speaker)
    return speech_bunch(
        [row[4] for row in rows], _utterance_table(rows, classes), framing,
        target_column="label", target_names=_target_names(classes, include_silence),
        descr=_DESCR, return_utterances=return_utterances, as_frame=as_frame,
    )
