"""Frame-level speech features shared by the audio loaders: framing, log-mel / MFCC
(``tf.signal``), per-utterance mean (and variance) normalisation, context stacking, and
the Bunch layout of a frame-level data set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._base import import_pandas

_FMIN = 20.0  # Hz; the mel filters span _FMIN to the Nyquist frequency
_LOG_FLOOR = 1e-6
_CHUNK = 16384  # frames per tf.signal call, bounds memory
_STD_FLOOR = 1e-8  # a coefficient constant over an utterance is only centred
CMVN_MODES = ("utterance", "utterance-mean")
#: Kinds of ``augment``: speed perturbation (the signal resampled, Ko et al. 2015) and
#: vocal-tract-length perturbation (the spectrum's frequency axis scaled, Jaitly &
#: Hinton 2013).
AUGMENTATIONS = ("speed", "vtlp")


@dataclass(frozen=True)
class Framing:
    """Framing and feature parameters, in samples at ``sample_rate``."""

    features: str
    sample_rate: int
    frame_length: int
    frame_step: int
    fft_length: int
    n_mels: int
    n_mfcc: int
    context: int
    cmvn: str | None = None
    augment: tuple = ()  # (kind, factor) pairs: a warped copy of every recording each

    @property
    def n_features(self) -> int:
        """Features per frame, before context stacking."""
        return self.n_mfcc if self.features == "mfcc" else self.n_mels


def _positive_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1


def check_framing(features, n_mels, n_mfcc, context, frame_length, frame_step,
                  sample_rate: int, cmvn=None, augment=None) -> Framing:
    """Validate the feature parameters of a loader; ``ValueError`` naming the bad one."""
    if features not in ("mfcc", "logmel"):
        raise ValueError(f"features must be 'mfcc' or 'logmel', got {features!r}.")
    if not _positive_int(n_mels):
        raise ValueError(f"n_mels must be a positive int, got {n_mels!r}.")
    if not (_positive_int(n_mfcc) and n_mfcc <= n_mels):
        raise ValueError(f"n_mfcc must be an int in [1, n_mels={n_mels}], got {n_mfcc!r}.")
    if not (isinstance(context, int | np.integer) and context >= 0):
        raise ValueError(f"context must be a non-negative int, got {context!r}.")
    if cmvn is not None and cmvn not in CMVN_MODES:
        raise ValueError(
            f"cmvn must be None, 'utterance' or 'utterance-mean', got {cmvn!r}."
        )
    length = round(frame_length * sample_rate)
    step = round(frame_step * sample_rate)
    if length < 2 or step < 1:
        raise ValueError(
            f"frame_length and frame_step (seconds) are too short at {sample_rate} Hz: "
            f"{frame_length!r}, {frame_step!r}."
        )
    fft_length = 1 << (length - 1).bit_length()  # next power of two
    return Framing(features, sample_rate, length, step, fft_length, int(n_mels), int(n_mfcc),
                   int(context), cmvn, _check_augment(augment))


def _check_augment(augment) -> tuple:
    """``augment`` as ``(kind, factor)`` pairs, in the order given."""
    if augment is None:
        return ()
    if not isinstance(augment, dict) or set(augment) - set(AUGMENTATIONS):
        raise ValueError(
            "augment must be None or a dict with keys among "
            f"{', '.join(map(repr, AUGMENTATIONS))} and lists of factors, e.g. "
            f"{{'speed': [0.9, 1.1]}}; got {augment!r}."
        )
    pairs = []
    for kind, factors in augment.items():
        for factor in np.atleast_1d(np.asarray(factors, dtype=object)).tolist():
            if (isinstance(factor, bool) or not isinstance(factor, int | float | np.number)
                    or not 0.5 <= factor <= 2.0):
                raise ValueError(f"augment[{kind!r}] factors must be numbers in [0.5, 2], "
                                 f"got {factor!r}.")
            pairs.append((kind, float(factor)))
    return tuple(pairs)


def framing_documented(sample_rate: int):
    """Decorator: the ``{framing}`` line of a loader's docstring becomes the numpydoc
    entries of the parameters :func:`check_framing` checks, with their numbers of
    samples at ``sample_rate``."""

    def fill(loader):
        if loader.__doc__:  # None under python -OO
            loader.__doc__ = loader.__doc__.replace("{framing}", _framing_doc(sample_rate))
        return loader

    return fill


def _framing_doc(sample_rate: int) -> str:
    khz = sample_rate / 1000
    return f"""\
    features : {{"mfcc", "logmel"}}, default="mfcc"
        Per-frame features: the first ``n_mfcc`` MFCCs, or ``n_mels`` log-mel energies.
    n_mels : int, default=40
        Number of mel bands ({_FMIN:g} Hz to {khz / 2:g} kHz).
    n_mfcc : int, default=13
        Number of MFCCs kept (``features="mfcc"`` only); at most ``n_mels``.
    context : int, default=5
        Neighbouring frames stacked on each side; 0 gives single frames.
    frame_length : float, default=0.025
        Analysis window in seconds ({round(0.025 * sample_rate)} samples at {khz:g} kHz); the FFT
        size is the next power of two.
    frame_step : float, default=0.010
        Hop between frames in seconds ({round(0.010 * sample_rate)} samples at {khz:g} kHz).
    cmvn : {{None, "utterance", "utterance-mean"}}, default=None
        Per-recording normalisation of the frame features, before context stacking:
        ``"utterance"`` gives every coefficient zero mean and unit variance over the
        frames of its recording (CMVN); ``"utterance-mean"`` only subtracts the mean
        (CMN); None leaves the features as computed.
    augment : dict or None, default=None
        More voices than speakers: ``{{"speed": [0.9, 1.1], "vtlp": [0.9, 1.1]}}`` adds,
        for every factor, a warped copy of every recording, each copy of a speaker
        its own condition (speaker ``"<speaker>|speed=0.9"``, utterance
        ``"<utterance>|speed=0.9"``). ``"speed"`` resamples the signal (duration
        divided by the factor, every frequency multiplied by it); ``"vtlp"`` scales
        the frequency axis of each frame's spectrum by the factor (content above the
        Nyquist frequency is lost, silence fills the top when shrinking). A factor
        of 1 gives copies equal to the originals. The Bunch then also has
        ``source_groups`` (each row's original speaker) and the utterance table an
        ``augment`` column (``""`` for originals): keep a speaker's copies on the
        side of its originals when splitting (``GroupKFold`` on ``source_groups``),
        and adapt and score on originals only."""


def check_max_per(value, name: str) -> None:
    """``ValueError`` unless ``value`` is None or a positive int."""
    if value is not None and not _positive_int(value):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}.")


def check_layout(return_utterances: bool | str, as_frame: bool) -> None:
    if not (isinstance(return_utterances, bool) or return_utterances == "padded"):
        raise ValueError("return_utterances must be True, False or 'padded'; got "
                         f"{return_utterances!r}.")
    if as_frame and return_utterances:
        raise ValueError("as_frame=True is not available with return_utterances=True.")


def pad_frames(recordings: Sequence[np.ndarray]) -> np.ndarray:
    """(n_recordings, n_frames, n_features): each recording zero-padded at its end."""
    out = np.zeros((len(recordings), max(len(r) for r in recordings),
                    recordings[0].shape[1]), recordings[0].dtype)
    for i, r in enumerate(recordings):
        out[i, : len(r)] = r
    return out


def read_wav(path: Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples in [-1, 1); ``ValueError`` if the rate is not ``sample_rate``."""
    from scipy.io import wavfile

    rate, signal = wavfile.read(path)
    if rate != sample_rate:
        raise ValueError(f"{path}: sample rate {rate} Hz, expected {sample_rate} Hz")
    if signal.ndim > 1:
        signal = signal.mean(axis=1)
    if np.issubdtype(signal.dtype, np.integer):
        return signal.astype(np.float32) / np.float32(np.iinfo(signal.dtype).max + 1)
    return signal.astype(np.float32)


def frames(signal: np.ndarray, framing: Framing) -> np.ndarray:
    """Frames as ``tf.signal.stft`` cuts them (no end padding; short signals padded)."""
    length, step = framing.frame_length, framing.frame_step
    if len(signal) < length:
        signal = np.pad(signal, (0, length - len(signal)))
    n_frames = 1 + (len(signal) - length) // step
    return np.lib.stride_tricks.sliding_window_view(signal, length)[::step][:n_frames]


def frame_features(stacked_frames: np.ndarray, framing: Framing,
                   warp: float = 1.0) -> np.ndarray:
    """Log-mel or MFCC features of frames of shape (n_frames, frame_length).

    Frames of all recordings go through ``tf.signal`` together: one frame per row, so
    ``tf.signal.stft`` with ``frame_step=frame_length`` gives the same spectra as running
    it on each recording, in a few large batches instead of thousands of small calls.
    ``warp`` scales the frequency axis of the magnitude spectra (VTLP): the energy at
    ``f`` moves to ``warp * f``.
    """
    import tensorflow as tf

    mel = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=framing.n_mels,
        num_spectrogram_bins=framing.fft_length // 2 + 1,
        sample_rate=framing.sample_rate,
        lower_edge_hertz=_FMIN,
        upper_edge_hertz=framing.sample_rate / 2,
    )
    out = []
    for start in range(0, len(stacked_frames), _CHUNK):
        spectra = tf.signal.stft(
            stacked_frames[start : start + _CHUNK],
            frame_length=framing.frame_length,
            frame_step=framing.frame_length,
            fft_length=framing.fft_length,
        )[:, 0, :]
        magnitude = tf.abs(spectra)
        if warp != 1.0:
            magnitude = tf.matmul(magnitude, _warp_matrix(framing.fft_length // 2 + 1, warp))
        features = tf.math.log(tf.matmul(magnitude, mel) + _LOG_FLOOR)
        if framing.features == "mfcc":
            features = tf.signal.mfccs_from_log_mel_spectrograms(features)[:, : framing.n_mfcc]
        out.append(features.numpy())
    if not out:
        return np.empty((0, framing.n_features), dtype=np.float32)
    return np.concatenate(out)


def _warp_matrix(n_bins: int, warp: float) -> np.ndarray:
    """``(n_bins, n_bins)`` linear interpolation: output bin ``k`` reads the spectrum at
    bin ``k / warp`` (zero beyond the last bin)."""
    source = np.arange(n_bins) / warp
    low = np.floor(source).astype(int)
    frac = source - low
    matrix = np.zeros((n_bins, n_bins), np.float32)
    inside = low < n_bins - 1
    k = np.flatnonzero(inside)
    matrix[low[k], k] = 1.0 - frac[k]
    matrix[low[k] + 1, k] = frac[k]
    last = np.flatnonzero(np.isclose(source, n_bins - 1))
    matrix[n_bins - 1, last] = 1.0
    return matrix


def resample_speed(signal: np.ndarray, factor: float) -> np.ndarray:
    """The signal played ``factor`` times faster (speed perturbation)."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    if factor == 1.0:
        return signal
    ratio = Fraction(factor).limit_denominator(100)
    return resample_poly(signal, ratio.denominator, ratio.numerator).astype(np.float32)


def normalize_utterances(features: np.ndarray, lengths: np.ndarray,
                         cmvn: str | None) -> np.ndarray:
    """Per-recording mean (``"utterance-mean"``) or mean and variance (``"utterance"``)
    normalisation of the frames of consecutive recordings with ``lengths`` frames each.

    Statistics are taken in float64; a coefficient whose standard deviation over a
    recording is below 1e-8 is centred only. ``cmvn=None`` returns ``features`` as is.
    """
    if cmvn is None or len(lengths) == 0:
        return features
    starts = np.cumsum(lengths) - lengths
    counts = lengths[:, None]
    centred = features.astype(np.float64)
    centred -= np.repeat(np.add.reduceat(centred, starts, axis=0) / counts, lengths, axis=0)
    if cmvn == "utterance":
        std = np.sqrt(np.add.reduceat(centred**2, starts, axis=0) / counts)
        centred /= np.repeat(np.where(std < _STD_FLOOR, 1.0, std), lengths, axis=0)
    return centred.astype(features.dtype)


def stack_context(features: np.ndarray, lengths: np.ndarray, context: int) -> np.ndarray:
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


def feature_names(framing: Framing) -> list[str]:
    """``"mfcc3_t-2"``: coefficient 3 of the frame two steps before."""
    kind, context = framing.features, framing.context
    return [
        f"{kind}{j}_t{offset:+d}"
        for offset in range(-context, context + 1)
        for j in range(framing.n_features)
    ]


def speech_bunch(paths: Sequence[Path], table: dict[str, np.ndarray], framing: Framing, *,
                 target_column: str, target_names: np.ndarray, descr: str,
                 return_utterances: bool | str, as_frame: bool) -> Bunch:
    """The Bunch of a frame-level speech data set.

    ``table`` has one entry per recording in ``paths`` and must hold ``utterance``,
    ``speaker`` and ``target_column``; ``n_frames`` and ``duration`` are added. Rows of
    ``data`` are frames, labelled with their recording's target, speaker and utterance.
    """
    signals = [read_wav(path, framing.sample_rate) for path in paths]
    versions = [_version(signals, table, framing, "", 1.0)]
    versions += [_version(signals, table, framing, kind, factor)
                 for kind, factor in framing.augment]
    data = np.concatenate([v[0] for v in versions])
    lengths = np.concatenate([v[1] for v in versions])
    table = {key: np.concatenate([v[2][key] for v in versions]) for key in versions[0][2]}
    pd = import_pandas(required=False)
    bunch = Bunch(
        feature_names=feature_names(framing),
        target_names=target_names,
        utterances=Bunch(**table) if pd is None else pd.DataFrame(table),
        frame=None,
        sample_rate=framing.sample_rate,
        DESCR=descr,
    )
    utterance, speaker, target = table["utterance"], table["speaker"], table[target_column]
    if return_utterances:
        recordings = np.split(data, np.cumsum(lengths)[:-1])
        if return_utterances == "padded":
            recordings, bunch.n_frames = pad_frames(recordings), lengths
        bunch.update(data=recordings, target=target, groups=speaker, utterance=utterance)
        if framing.augment:
            bunch.source_groups = table["source_speaker"]
        return bunch
    bunch.update(data=data, target=np.repeat(target, lengths),
                 groups=np.repeat(speaker, lengths), utterance=np.repeat(utterance, lengths))
    if framing.augment:
        bunch.source_groups = np.repeat(table["source_speaker"], lengths)
    if as_frame:
        frame = import_pandas(required=True).DataFrame(data, columns=bunch.feature_names)
        frame[target_column] = bunch.target
        frame["speaker"] = bunch.groups
        frame["utterance"] = bunch.utterance
        bunch.frame = frame
    return bunch


def _version(signals: list, table: dict, framing: Framing, kind: str,
             factor: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Stacked features, frames per recording and the utterance table of the originals
    (``kind=""``) or of one warped copy of every recording."""
    if kind == "speed":
        signals = [resample_speed(s, factor) for s in signals]
    cut = [frames(signal, framing) for signal in signals]
    lengths = np.array([len(f) for f in cut], dtype=np.int64)
    per_frame = frame_features(np.concatenate(cut), framing,
                               warp=factor if kind == "vtlp" else 1.0)
    per_frame = normalize_utterances(per_frame, lengths, framing.cmvn)
    data = stack_context(per_frame, lengths, framing.context)
    table = {**table, "n_frames": lengths,
             "duration": np.array([len(s) for s in signals]) / framing.sample_rate}
    if framing.augment:
        tag = f"{kind}={factor:g}" if kind else ""
        suffix = f"|{tag}" if kind else ""
        table["source_speaker"] = np.asarray(table["speaker"])
        table["speaker"] = np.array([f"{s}{suffix}" for s in table["speaker"]], dtype=object)
        table["utterance"] = np.array([f"{u}{suffix}" for u in table["utterance"]],
                                      dtype=object)
        table["augment"] = np.full(len(lengths), tag, dtype=object)
    return data, lengths, table
