"""Arabic Speech Commands (ASC) v1.0: frame-level log-mel / MFCC features with context."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from urllib.parse import quote

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

_REPOSITORY = "abdulkaderghandoura/arabic-speech-commands-dataset"
_COMMIT = "72f3438212ff6cf8fbe5ae8068361840646429bd"  # tag v1.0
ASC_BASE_URLS = (
    f"https://raw.githubusercontent.com/{_REPOSITORY}/{_COMMIT}/dataset",
    f"https://github.com/{_REPOSITORY}/raw/{_COMMIT}/dataset",
)
_FOLDER = "arabic_speech_commands"
SAMPLE_RATE = 16000
SPEAKERS = tuple(f"{i:08d}" for i in range(1, 31))
TAKES = tuple(range(1, 11))
_PARALLEL_DOWNLOADS = 8

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# folder_digest of each keyword folder of v1.0 (its 300 files), from the SHA-256 of every file
KEYWORD_SHA256 = {
    "backward": "07b65c5560e9bdafa8012cc8cd87eb6af46913684017da1137d5c1a726308db6",
    "cancel": "11f5b3338fcd481bb92b8b675600b627f983951312712f85cb917574a9102bee",
    "close": "fc51600e172766962a5640a77debad71385c0a5c84a292a4dc65713cf0ca25ec",
    "digit": "2d092a3398fa18656b7f79c177a6758e8021f0e49ead07f4f2eb4886ad6c60f7",
    "direction": "3b90d5c641199a56bd6a82ba8f0133c34ba93eda1c0b3373ecb5e0059281990d",
    "disable": "250916164b16209f6f2598da96269cd206ad001fdd64f4db15bcd7c624a90a82",
    "down": "aff4b9d8dc136b10c53088a4011e9a5b2563a77a751072c11fcb560572723da6",
    "eight": "04137fbd9c28afefda125b08d7dec528b99ab9050e8cbc503fcdf7334d5597de",
    "enable": "f45b1567adae115222cc686ed422d630b1a6204167415c91b7a7ec0b4607d7e9",
    "enter": "fa753e552da64d2def3994e9e99a983563d1d51b18ace39cabc17540e3c84b86",
    "five": "9bbf9533ec2ab47da385295cafd701a64d54b52e0d18d34c365e6bb59927f739",
    "forward": "45557f31b2cd47eaa7f9524b73e859a256c4ce53314f70e07587852fac990239",
    "four": "e34b9acebf332ca9adb284020b6104404ab09a0ca6a019ddd05b64a6e10f9534",
    "left": "90c556f605f00d739fc697e5b98a0cd4f5828992a461f9044781db57855956e4",
    "move": "f073d79fded885c7bdda9f9ff4bff4b4c53fc396ad96059db68bdabbc9b1ddcd",
    "next": "5c52700797426f7a85f7049f81157c255745094ef6e0856863e7dbe4762926e9",
    "nine": "137143231684a702c50e40622dbf470f567052c266d0a270b75aed56aa42dc43",
    "no": "41047b6d8e33ff49fb200508d772233b178d7bab9237a3259fde19e8dce596c2",
    "ok": "60b27e75f1c3a6585d3c5af1d253a10f12399df0837119732f113144b51c7f3e",
    "one": "0f89c16b2d131c52ce5dc08f3a8792e27c5f97119273a44911fb5f1cf611d324",
    "open": "7e3dcc1d3db4dd7e290fc3d403b8ef8aa749a48bb58a4f7a13dcfb8652275f3f",
    "options": "038b6ef9b6a5c785c1f347978092b7ce391811e467d6e569b482843acd46b13c",
    "previous": "a22158cc7877d68e28d519b360c4d68589921565f7d55068d2aef6ef2977deb3",
    "receive": "0972472b165a5907eaaea42c8898ce08b4b6b80d89a0b3616b7b9d8c163cfb64",
    "record": "aef30912d5675fa8a5be825560c254b839b066052e9c729f6d8b6a14f7e08fac",
    "right": "3f8ec7805a140d3f0435ed1cb6844fc9514e4e09850e029f2c0d329818f7c90a",
    "rotate": "3912908c6d5ad6fd223fd896ba144d42ab16c0a16f6d5ed0d8114779636a1646",
    "send": "04a492fd8f986d21abf3ad9196b9b76573d23a50515d2e89436ef7635a59cd5b",
    "seven": "54124db27ef399b71234630b5723cc751dad62b93c7e5c797ce9d9a2334e45d7",
    "six": "71d1d0b42dd915cb9a17ed04d1315c237e1da3a6f23fc33ece56dbbf6d69da8a",
    "start": "89f9b99ba5c77d9f80d70f0688aef852b4bb3e5d3a8be8d4a6daaf488435bc48",
    "stop": "7b9ddcaef4e98c1c3801d60141b6c5249352dd0f77e2f7b50df9dc16c3e9b6ee",
    "three": "a66dea61d8cd1cbdc58a4ccf1d53e81068b6205c9c357dc76695a89ec0264b7e",
    "two": "3e37b077173f10906785de7dd4b2bd6611843a1d9899f9f975c5653fd41a0b0a",
    "undo": "ee37875679f76fb9846d34f18ae0b328a957be8335f0a0a9d1ea8244cbdfdd74",
    "up": "2cff3bed53339c5e673e02f0c05cca91ac747c2340e64e79505c69e416080d9a",
    "yes": "f4372d95d885fbfe89812ac5cee7d7622cd9bfc5d360f43aa27aa4702e20a664",
    "zero": "7c76d583d8bfa582a6d8850b3c90bce8482196c0670fb8150795b45d85d354c1",
    "zoom in": "b516f00a0b781965858940e6afb9bcceb8aecfef7b4ed98fe854a9676f476a99",
    "zoom out": "ce42c52c1ed545bd6641f9ad5ddf08c6fc4dd6436ad9ca7316971aa7d46a6282",
}
KEYWORDS = tuple(sorted(KEYWORD_SHA256))

_DESCR = """\
Arabic Speech Commands (ASC), v1.0
==================================

Isolated spoken keywords in Modern Standard Arabic: 16 kHz mono 16-bit WAV, exactly
1 s each. 40 keywords (the digits zero ... nine and 30 commands such as "open",
"zoom in"), each said 10 times by each of 30 contributors: 12,000 files. Files are
named ``dataset/<keyword>/<8-digit contributor id>_NO_<take 01-10>.wav``; the
contributor is the speaker. The authors' own split (train/val/test CSVs, 18/6/6
speakers) is speaker-disjoint.

This loader turns every recording into frames (25 ms windows every 10 ms by default,
Hann window), computes log-mel energies (magnitude spectrum, mel filters from 20 Hz to
8 kHz, natural log with a 1e-6 floor) and optionally MFCCs from them with ``tf.signal``,
exactly as :func:`load_spoken_digits` does at 8 kHz. Each row of ``data`` is one frame
with its +/- ``context`` neighbours stacked (edge frames repeated at the ends of a
recording), labelled with the recording's keyword, speaker and utterance.

Source: GitHub abdulkaderghandoura/arabic-speech-commands-dataset, tag v1.0 (commit
72f3438212ff6cf8fbe5ae8068361840646429bd, 2021-04-05); missing keyword folders are
downloaded file by file and verified against SHA-256 checksums of every file.

Citation: Ghandoura, A., Hjabo, F., Al Dakkak, O. "Building and Benchmarking an Arabic
Speech Commands Dataset for Small-Footprint Keyword Spotting." Engineering Applications
of Artificial Intelligence, 2021.

Licence: Creative Commons Attribution 4.0 International (CC BY 4.0).
"""


def _file_names() -> list[str]:
    return [f"{speaker}_NO_{take:02d}.wav" for speaker in SPEAKERS for take in TAKES]


def _check_keywords(keywords) -> list[str]:
    if isinstance(keywords, str) and keywords in ("digits", "all"):
        return list(DIGITS if keywords == "digits" else KEYWORDS)
    if not isinstance(keywords, str | list | tuple | np.ndarray):
        raise ValueError("keywords must be 'digits', 'all' or a list of the dataset's "
                         f"keywords; got {keywords!r}.")
    chosen = [keywords] if isinstance(keywords, str) else list(keywords)
    unknown = [k for k in chosen if k not in KEYWORD_SHA256]
    if unknown or not chosen:
        raise ValueError(
            f"Unknown keyword(s) {unknown}; keywords must be 'digits', 'all' or a list of "
            f"the dataset's keywords: {', '.join(KEYWORDS)}." if unknown else
            "keywords is empty; give 'digits', 'all' or a list of keywords."
        )
    return list(dict.fromkeys(chosen))


def _check_speakers(speakers) -> list[str]:
    if speakers is None:
        return list(SPEAKERS)
    chosen = [speakers] if isinstance(speakers, str | int) else list(speakers)
    names = [f"{s:08d}" if isinstance(s, int | np.integer) else str(s) for s in chosen]
    unknown = sorted(set(names) - set(SPEAKERS))
    if unknown:
        raise ValueError(
            f"Unknown speaker(s) {unknown}; speakers are contributor ids "
            f"{SPEAKERS[0]} ... {SPEAKERS[-1]} (or the ints 1 ... 30)."
        )
    return sorted(set(names))


# ---------------------------------------------------------------------------- download


def _fetch_keyword(base: str, keyword: str, folder: Path, missing: list[str]) -> None:
    """Download the ``missing`` files of ``keyword`` from ``base`` into ``folder``.

    They are staged first; only when the folder's digest (files already there plus the
    downloaded ones) matches are they moved in, so a failed download changes nothing.
    """
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{keyword}."))
    try:
        def fetch(name: str) -> None:
            download(f"{base}/{quote(keyword)}/{name}", staging).replace(staging / name)

        with ThreadPoolExecutor(_PARALLEL_DOWNLOADS) as pool:
            list(pool.map(fetch, missing))
        present = [folder / n for n in _file_names() if n not in missing]
        digest = folder_digest(present + [staging / n for n in missing])
        if digest != KEYWORD_SHA256[keyword]:
            raise ChecksumError(
                f"SHA-256 checksum mismatch of keyword {keyword!r} (expected "
                f"{KEYWORD_SHA256[keyword]}, got {digest}); the download was deleted"
            )
        for name in missing:
            (staging / name).replace(folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _keyword_folders(data_home, keywords: list[str], download_if_missing: bool) -> Path:
    """``<data_home>/arabic_speech_commands/dataset``, holding every file of ``keywords``."""
    dataset = get_data_home(data_home) / _FOLDER / "dataset"
    for keyword in keywords:
        folder = dataset / keyword
        missing = [n for n in _file_names() if not (folder / n).is_file()]
        if not missing:
            continue
        if not download_if_missing:
            raise not_found(
                f"Arabic Speech Commands keyword {keyword!r} ({len(missing)} of 300 files "
                "missing)",
                folder / missing[0],
                "Call load_arabic_speech_commands(download_if_missing=True) to download it "
                f"from GitHub ({_REPOSITORY}, tag v1.0), or copy the repository's "
                f"dataset/{keyword}/ folder there by hand.",
            )
        fetch = partial(_fetch_keyword, keyword=keyword, folder=folder, missing=missing)
        try_urls(ASC_BASE_URLS, fetch, what=f"the Arabic Speech Commands keyword {keyword!r}",
                 dest=folder)
    return dataset


# ------------------------------------------------------------------------------ public


def _utterances(dataset: Path, keywords, speakers, max_per_speaker_keyword) -> dict:
    takes = TAKES[:max_per_speaker_keyword]
    rows = [(keyword, speaker, take) for speaker in speakers for keyword in keywords
            for take in takes]
    keyword, speaker, take = (np.array(column, dtype=object) for column in zip(*rows))
    return {
        "path": [dataset / k / f"{s}_NO_{t:02d}.wav" for k, s, t in rows],
        "utterance": np.array([f"{k}/{s}_NO_{t:02d}" for k, s, t in rows], dtype=object),
        "speaker": speaker,
        "keyword": keyword,
        "take": take.astype(np.int64),
    }


@framing_documented(SAMPLE_RATE)
def load_arabic_speech_commands(
    data_home: str | os.PathLike[str] | None = None,
    *,
    keywords: str | Sequence[str] = "digits",
    download_if_missing: bool = True,
    features: str = "mfcc",
    n_mels: int = 40,
    n_mfcc: int = 13,
    context: int = 5,
    frame_length: float = 0.025,
    frame_step: float = 0.010,
    cmvn: str | None = None,
    augment: dict | None = None,
    speakers: str | int | Sequence[str | int] | None = None,
    max_per_speaker_keyword: int | None = None,
    return_utterances: bool | str = False,
    as_frame: bool = False,
) -> Bunch:
    """Load Arabic Speech Commands v1.0 as frame-level features (classification).

    30 speakers each say every keyword 10 times (1 s at 16 kHz: 98 frames with the
    default framing). Each recording is cut into frames; each frame gets log-mel
    energies or MFCCs (computed with ``tf.signal``) stacked with its +/- ``context``
    neighbours, and is labelled with the recording's keyword and speaker: the same
    features and layout as
    :func:`load_spoken_digits`. Reads ``<data_home>/arabic_speech_commands/dataset/
    <keyword>/*.wav``, downloading missing files of the chosen keywords from GitHub
    (checksum-verified).

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    keywords : "digits", "all" or sequence of str, default="digits"
        ``"digits"``: the 10 digits ``"zero"`` ... ``"nine"`` (3,000 recordings);
        ``"all"``: all 40 keywords (12,000); or a list of keyword names such as
        ``["open", "zoom in"]``.
    download_if_missing : bool, default=True
        Download the missing files of the chosen keywords (about 32 kB each). If
        False, a missing file raises :class:`FileNotFoundError`.
{framing}
    speakers : str, int or sequence of them, default=None
        Load only these contributors (ids ``"00000001"`` ... ``"00000030"``, or the ints
        1 ... 30); None loads all 30.
    max_per_speaker_keyword : int, default=None
        Load at most this many takes of each keyword per speaker (the first ones), e.g.
        for a quick subset; None loads all 10.
    return_utterances : bool or "padded", default=False
        If True, ``data`` is a list with one (n_frames_i, n_features) array per recording
        and ``target``, ``groups`` and ``utterance`` have one entry per recording.
        ``"padded"``: ``data`` is one array of shape (n_recordings, n_frames, n_features),
        every recording zero-padded at its end to the longest, ``n_frames`` its lengths
        (for sequence models: ``keras.layers.Masking`` skips the padding).
    as_frame : bool, default=False
        If True, also build ``frame``, a pandas DataFrame with the features and columns
        ``keyword``, ``speaker`` and ``utterance``. Not available with
        ``return_utterances=True``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_frames, (2 * context + 1) * n_per_frame), float32
            One row per frame: the features of frames ``t - context`` ... ``t + context``.
        target : ndarray of shape (n_frames,)
            Keyword (str, e.g. ``"three"``) of each frame's recording.
        groups : ndarray of shape (n_frames,)
            Speaker (contributor id, e.g. ``"00000007"``) of each frame.
        utterance : ndarray of shape (n_frames,)
            Recording id (``"<keyword>/<file stem>"``) of each frame.
        feature_names : list of str
            E.g. ``"mfcc0_t-5"`` (coefficient 0 of the frame 5 steps before).
        target_names : ndarray
            The chosen keywords, in the order of ``keywords``.
        utterances : pandas.DataFrame or Bunch
            One row per recording: ``utterance``, ``speaker``, ``keyword``, ``take``,
            ``n_frames``, ``duration`` (s). A Bunch of arrays when pandas is missing.
        frame : pandas.DataFrame or None
            Only with ``as_frame=True``.
        sample_rate : int
            16000.
        DESCR : str
            Description, citation and licence.

    Raises
    ------
    ValueError
        For a keyword or speaker that is not in the dataset, or bad feature parameters.
    FileNotFoundError
        If files are missing and ``download_if_missing=False``.
    OSError
        If the download fails; :class:`~skdc.datasets.ChecksumError` (a subclass)
        if a keyword's files do not match the recorded SHA-256 checksums.

    Examples
    --------
    >>> from skdc.datasets import load_arabic_speech_commands
    >>> asc = load_arabic_speech_commands(max_per_speaker_keyword=1)  # doctest: +SKIP
    >>> asc.data.shape, len(asc.utterances)  # doctest: +SKIP
    ((29400, 143), 300)
    >>> # speaker-disjoint split: sklearn.model_selection.GroupKFold with asc.groups
    """
    framing = check_framing(features, n_mels, n_mfcc, context, frame_length, frame_step,
                            SAMPLE_RATE, cmvn, augment)
    chosen = _check_keywords(keywords)
    chosen_speakers = _check_speakers(speakers)
    check_max_per(max_per_speaker_keyword, "max_per_speaker_keyword")
    check_layout(return_utterances, as_frame)
    dataset = _keyword_folders(data_home, chosen, download_if_missing)
    table = _utterances(dataset, chosen, chosen_speakers, max_per_speaker_keyword)
    paths = table.pop("path")
    return speech_bunch(
        paths, table, framing, target_column="keyword",
        target_names=np.array(chosen, dtype=object), descr=_DESCR,
        return_utterances=return_utterances, as_frame=as_frame,
    )
