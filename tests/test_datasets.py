"""Tests for skdc.datasets: data home, loaders on the shared data, and checked downloads."""

import io
import os
import sys
import urllib.error
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from skdc.datasets import (
    ChecksumError,
    _arabic,
    _audio,
    _base,
    _digits,
    get_data_home,
    load_arabic_speech_commands,
    load_hillenbrand,
    load_peterson_barney,
    load_spoken_digits,
)
from skdc.datasets._vowels import HILLENBRAND

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def shared_home() -> Path:
    """The shared data folder: $SKDC_DATA_HOME, else ../shared/data beside the repo."""
    home = Path(os.environ.get("SKDC_DATA_HOME") or SHARED_DATA)
    if not home.is_dir():
        pytest.skip(f"shared data not found at {home}; set SKDC_DATA_HOME")
    return home


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path}; set SKDC_DATA_HOME")
    return path


@pytest.fixture(scope="module")
def vowdata(shared_home) -> Path:
    return _require(shared_home / "hillenbrand_1995" / "vowdata.dat")


@pytest.fixture(scope="module")
def recordings(shared_home) -> Path:
    return _require(shared_home / "fsdd" / "recordings")


@pytest.fixture(scope="module")
def asc_dataset(shared_home) -> Path:
    return _require(shared_home / "arabic_speech_commands" / "dataset")


def _serve(payloads: dict, calls: list):
    """A fake urlopen: serves bytes per URL, raises URLError for unknown URLs."""

    def urlopen(request, timeout=None):
        url = getattr(request, "full_url", request)
        calls.append(url)
        if url not in payloads:
            raise urllib.error.URLError("no network in tests")
        return io.BytesIO(payloads[url])

    return urlopen


# --------------------------------------------------------------------------- data home


def test_get_data_home_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SKDC_DATA_HOME", raising=False)
    assert get_data_home() == tmp_path / "home" / "skdc_data"

    monkeypatch.setenv("SKDC_DATA_HOME", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env"
    assert get_data_home(tmp_path / "arg") == tmp_path / "arg"
    assert get_data_home("~/x") == tmp_path / "home" / "x"
    assert not any(tmp_path.iterdir())  # resolving creates nothing


def test_empty_env_var_falls_back_to_default(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SKDC_DATA_HOME", "")
    assert get_data_home() == tmp_path / "skdc_data"


# ------------------------------------------------------------------ Peterson & Barney


def test_peterson_barney_shape_and_labels():
    pytest.importorskip("parselmouth")
    pb = load_peterson_barney()
    assert pb.data.shape == (1520, 4)
    assert pb.data.dtype == np.float64
    assert pb.feature_names == ["F0", "F1", "F2", "F3"]
    assert len(np.unique(pb.groups)) == 76
    assert set(pb.target_names) == {"iy", "ih", "eh", "ae", "ah", "aa", "ao", "uh", "uw", "er"}
    _, per_speaker = np.unique(pb.groups, return_counts=True)
    assert set(per_speaker) == {20}
    assert list(pb.frame.columns) == [*pb.feature_names, "Vowel", "Speaker", "Type", "Sex", "IPA"]
    assert "Peterson" in pb.DESCR and "Terms" in pb.DESCR


def test_peterson_barney_matches_shared_csv(shared_home):
    pytest.importorskip("parselmouth")
    pd = pytest.importorskip("pandas")
    csv = _require(shared_home / "peterson_barney_1952" / "peterson_barney_praat_table.csv")
    expected = pd.read_csv(csv, keep_default_na=False)
    frame = load_peterson_barney().frame
    for column in ["Type", "Sex", "Speaker", "Vowel", "IPA", "F0", "F1", "F2", "F3"]:
        np.testing.assert_array_equal(frame[column], expected[column])


def test_peterson_barney_as_frame():
    pytest.importorskip("parselmouth")
    pytest.importorskip("pandas")
    pb = load_peterson_barney(as_frame=True)
    assert pb.data.shape == (1520, 4)
    assert pb.target.name == "Vowel" and pb.groups.name == "Speaker"


def test_peterson_barney_without_parselmouth(monkeypatch):
    monkeypatch.setitem(sys.modules, "parselmouth", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "skdc\[datasets\]"'):
        load_peterson_barney()


# ------------------------------------------------------------------------ Hillenbrand


def test_hillenbrand_all_rows(shared_home, vowdata):
    h95 = load_hillenbrand(shared_home, download_if_missing=False, dropna=False)
    assert h95.data.shape == (1668, 4)
    assert h95.feature_names == ["F0", "F1", "F2", "F3"]
    speakers, per_speaker = np.unique(h95.groups, return_counts=True)
    assert len(speakers) == 139 and set(per_speaker) == {12}
    assert len(h95.target_names) == 12 and "ei" in h95.target_names
    np.testing.assert_array_equal(np.isnan(h95.data).sum(axis=0), [0, 0, 10, 41])
    types = {t: len({s for s in speakers if s[0] == t}) for t in "mwbg"}
    assert types == {"m": 45, "w": 48, "b": 27, "g": 19}
    assert h95.frame.loc[0, "file"] == "m01ae"
    np.testing.assert_array_equal(h95.data[0], [174, 663, 2012, 2659])


def test_hillenbrand_dropna_default(shared_home, vowdata):
    h95 = load_hillenbrand(shared_home, download_if_missing=False)
    assert h95.data.shape == (1617, 4)
    assert not np.isnan(h95.data).any()
    assert len(np.unique(h95.groups)) == 139
    assert "dropped 51 rows" in h95.DESCR
    assert len(h95.frame) == 1617 and not h95.frame.isna().any().any()


def test_hillenbrand_choose_features(shared_home, vowdata):
    h95 = load_hillenbrand(shared_home, features=("dur", "f1_20", "F4"), dropna=False)
    assert h95.feature_names == ["dur", "F1_20", "F4"]
    assert np.isnan(h95.data[:, 2]).sum() == 243
    assert load_hillenbrand(shared_home, features="F1").data.shape == (1668, 1)
    with pytest.raises(ValueError, match="Unknown Hillenbrand feature"):
        load_hillenbrand(shared_home, features=["F5"])


def test_hillenbrand_as_frame(shared_home, vowdata):
    h95 = load_hillenbrand(shared_home, as_frame=True)
    assert list(h95.data.columns) == ["F0", "F1", "F2", "F3"]
    assert h95.target.name == "vowel" and h95.groups.name == "speaker"


def test_hillenbrand_missing_file_no_download(tmp_path):
    expected = tmp_path / "hillenbrand_1995" / "vowdata.dat"
    with pytest.raises(FileNotFoundError, match="download_if_missing=True") as info:
        load_hillenbrand(tmp_path, download_if_missing=False)
    assert str(expected) in str(info.value)
    assert not (tmp_path / "hillenbrand_1995").exists()


def test_hillenbrand_download_falls_back_to_mirror(monkeypatch, tmp_path, vowdata):
    calls = []
    payloads = {HILLENBRAND.urls[1]: vowdata.read_bytes()}  # primary host is down
    monkeypatch.setattr(_base, "_urlopen", _serve(payloads, calls))
    h95 = load_hillenbrand(tmp_path / "home", dropna=False)
    assert calls == list(HILLENBRAND.urls[:2])
    assert h95.data.shape == (1668, 4)
    folder = tmp_path / "home" / "hillenbrand_1995"
    assert [p.name for p in folder.iterdir()] == ["vowdata.dat"]
    # a second call reads the local copy
    load_hillenbrand(tmp_path / "home")
    assert len(calls) == 2


def test_hillenbrand_download_checksum_mismatch(monkeypatch, tmp_path, vowdata):
    corrupted = vowdata.read_bytes().replace(b"m01ae 323", b"m01ae 324")
    payloads = dict.fromkeys(HILLENBRAND.urls, corrupted)
    monkeypatch.setattr(_base, "_urlopen", _serve(payloads, []))
    with pytest.raises(ChecksumError, match="SHA-256 checksum mismatch"):
        load_hillenbrand(tmp_path)
    assert list((tmp_path / "hillenbrand_1995").iterdir()) == []


def test_hillenbrand_download_all_urls_fail(monkeypatch, tmp_path):
    monkeypatch.setattr(_base, "_urlopen", _serve({}, []))
    with pytest.raises(OSError, match="Could not download vowdata.dat") as info:
        load_hillenbrand(tmp_path)
    assert not isinstance(info.value, ChecksumError)
    assert all(url in str(info.value) for url in HILLENBRAND.urls)


def _speaker_disjoint_accuracy(X, y, groups):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return cross_val_score(model, X, y, groups=groups, cv=GroupKFold(10)).mean()


def test_hillenbrand_reproduces_reference_accuracies(shared_home, vowdata):
    # Reference (shared/data/README.md): speaker-independent 79.4%, Lobanov 88.0%.
    h95 = load_hillenbrand(shared_home)
    X = np.log(h95.data)
    si = _speaker_disjoint_accuracy(X, h95.target, h95.groups)
    assert abs(si - 0.794) <= 0.03, si

    Z = np.empty_like(X)
    for speaker in np.unique(h95.groups):
        rows = h95.groups == speaker
        Z[rows] = (X[rows] - X[rows].mean(axis=0)) / X[rows].std(axis=0)
    lobanov = _speaker_disjoint_accuracy(Z, h95.target, h95.groups)
    assert abs(lobanov - 0.880) <= 0.03, lobanov


# ----------------------------------------------------------------------- spoken digits


def test_spoken_digits_subset(shared_home, recordings):
    fsdd = load_spoken_digits(shared_home, download_if_missing=False, max_per_speaker_digit=2)
    n_frames = fsdd.utterances["n_frames"].sum()
    assert fsdd.data.shape == (n_frames, 11 * 13)
    assert fsdd.data.dtype == np.float32 and np.isfinite(fsdd.data).all()
    assert len(fsdd.utterances) == 6 * 10 * 2
    assert set(fsdd.groups) == {"george", "jackson", "lucas", "nicolas", "theo", "yweweler"}
    np.testing.assert_array_equal(fsdd.target_names, np.arange(10))
    assert fsdd.target.shape == fsdd.groups.shape == fsdd.utterance.shape == (n_frames,)
    first = fsdd.utterance == "3_theo_1"
    assert set(fsdd.target[first]) == {3} and set(fsdd.groups[first]) == {"theo"}
    assert fsdd.feature_names[0] == "mfcc0_t-5" and fsdd.feature_names[-1] == "mfcc12_t+5"
    assert fsdd.frame is None and "CC BY-SA 4.0" in fsdd.DESCR


def test_spoken_digits_logmel_one_speaker(shared_home, recordings):
    fsdd = load_spoken_digits(
        shared_home,
        features="logmel",
        n_mels=24,
        context=0,
        speakers="theo",
        max_per_speaker_digit=1,
        as_frame=True,
    )
    assert fsdd.data.shape[1] == 24 and set(fsdd.groups) == {"theo"}
    assert list(fsdd.utterances["utterance"]) == [f"{d}_theo_0" for d in range(10)]
    assert list(fsdd.frame.columns[-3:]) == ["digit", "speaker", "utterance"]


def test_spoken_digits_features_match_tf_signal_per_recording(shared_home, recordings):
    import tensorflow as tf

    fsdd = load_spoken_digits(
        shared_home, speakers=["lucas"], max_per_speaker_digit=1, context=0,
        return_utterances=True,
    )  # fmt: skip
    stem = fsdd.utterance[7]
    signal = _audio.read_wav(recordings / f"{stem}.wav", 8000)
    spectra = tf.abs(tf.signal.stft(signal, frame_length=200, frame_step=80, fft_length=256))
    mel = tf.signal.linear_to_mel_weight_matrix(40, 129, 8000, 20.0, 4000.0)
    log_mel = tf.math.log(tf.matmul(spectra, mel) + 1e-6)
    mfcc = tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[:, :13].numpy()
    np.testing.assert_allclose(fsdd.data[7], mfcc, rtol=1e-4, atol=1e-4)


def test_spoken_digits_return_utterances(shared_home, recordings):
    fsdd = load_spoken_digits(
        shared_home, speakers=["george", "jackson"], max_per_speaker_digit=1,
        return_utterances=True,
    )  # fmt: skip
    assert len(fsdd.data) == len(fsdd.target) == len(fsdd.groups) == 20
    assert [len(x) for x in fsdd.data] == list(fsdd.utterances["n_frames"])
    assert all(x.shape[1] == 143 for x in fsdd.data)


def test_spoken_digits_padded_utterances(shared_home, recordings):
    kw = dict(speakers=["george"], max_per_speaker_digit=1, features="logmel", context=0)
    listed = load_spoken_digits(shared_home, return_utterances=True, **kw)
    padded = load_spoken_digits(shared_home, return_utterances="padded", **kw)
    lengths = [len(x) for x in listed.data]
    assert padded.data.shape == (10, max(lengths), listed.data[0].shape[1])
    np.testing.assert_array_equal(padded.n_frames, lengths)
    for x, row, n in zip(listed.data, padded.data, lengths):
        np.testing.assert_array_equal(row[:n], x)
        assert not row[n:].any()
    with pytest.raises(ValueError, match="return_utterances must be True, False or 'padded'"):
        load_spoken_digits(shared_home, return_utterances="pad", **kw)


def test_stack_context_repeats_edge_frames():
    features = np.arange(5.0)[:, None]  # two recordings: frames 0-2 and 3-4
    stacked = _audio.stack_context(features, np.array([3, 2]), context=1)
    expected = [[0, 0, 1], [0, 1, 2], [1, 2, 2], [3, 3, 4], [3, 4, 4]]
    np.testing.assert_array_equal(stacked, expected)


def test_normalize_utterances_per_recording():
    rng = np.random.default_rng(0)
    lengths = np.array([4, 7, 1])
    features = (rng.normal(3.0, 5.0, size=(12, 3))).astype(np.float32)
    features[4:11, 2] = 2.5  # constant over the second recording
    assert _audio.normalize_utterances(features, lengths, None) is features
    for cmvn in ("utterance", "utterance-mean"):
        out = _audio.normalize_utterances(features, lengths, cmvn)
        assert out.dtype == np.float32 and out.shape == features.shape
        for rows in np.split(out, np.cumsum(lengths)[:-1]):
            np.testing.assert_allclose(rows.mean(axis=0), 0, atol=1e-6)
    mean_only = _audio.normalize_utterances(features, lengths, "utterance-mean")
    np.testing.assert_allclose(mean_only[:4], features[:4] - features[:4].mean(axis=0),
                               rtol=1e-6)
    full = _audio.normalize_utterances(features, lengths, "utterance")
    np.testing.assert_allclose(full[:4].std(axis=0), 1, rtol=1e-5)
    np.testing.assert_allclose(full[4:11, :2].std(axis=0), 1, rtol=1e-5)
    np.testing.assert_array_equal(full[4:11, 2], 0)  # constant: centred only
    np.testing.assert_array_equal(full[11], 0)  # a one-frame recording
    assert _audio.normalize_utterances(features[:0], lengths[:0], "utterance").shape == (0, 3)


def test_spoken_digits_cmvn_before_context_stacking(shared_home, recordings):
    load = partial(load_spoken_digits, shared_home, speakers="theo", max_per_speaker_digit=1,
                   return_utterances=True)
    raw = load(context=0)
    np.testing.assert_array_equal(np.concatenate(load(context=0, cmvn=None).data),
                                  np.concatenate(raw.data))  # None is the default
    cmvn = load(context=0, cmvn="utterance")
    cmn = load(context=0, cmvn="utterance-mean")
    for x, normed, centred in zip(raw.data, cmvn.data, cmn.data):
        np.testing.assert_allclose(normed.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(normed.std(axis=0), 1, rtol=1e-4)
        np.testing.assert_allclose(centred, x - x.mean(axis=0), rtol=1e-5, atol=1e-4)
    stacked = load(context=2, cmvn="utterance")
    for normed, rows in zip(cmvn.data, stacked.data):
        np.testing.assert_array_equal(rows[:, 2 * 13 : 3 * 13], normed)  # the t+0 block
        np.testing.assert_array_equal(rows[0, :13], normed[0])  # edges repeat normed frames


def test_arabic_cmvn(shared_home, asc_dataset):
    asc = load_arabic_speech_commands(
        shared_home, keywords=["one"], speakers=3, max_per_speaker_keyword=2, context=0,
        features="logmel", cmvn="utterance", return_utterances=True,
    )  # fmt: skip
    for normed in asc.data:
        np.testing.assert_allclose(normed.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(normed.std(axis=0), 1, rtol=1e-4)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"cmvn": "speaker"}, "cmvn must be"),
        ({"features": "spectrogram"}, "features must be"),
        ({"n_mfcc": 50}, "n_mfcc must be"),
        ({"context": -1}, "context must be"),
        ({"max_per_speaker_digit": 0}, "max_per_speaker_digit"),
        ({"speakers": ["alice"]}, "Unknown speaker"),
    ],
)
def test_spoken_digits_bad_parameters(shared_home, recordings, params, message):
    with pytest.raises(ValueError, match=message):
        load_spoken_digits(shared_home, **params)


def test_spoken_digits_missing_no_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download_if_missing=True") as info:
        load_spoken_digits(tmp_path, download_if_missing=False)
    assert str(tmp_path / "fsdd" / "recordings") in str(info.value)


def _repository_zip(recordings: Path, corrupt: str | None = None) -> bytes:
    """The recordings laid out as in GitHub's archive of the pinned commit."""
    top = f"free-spoken-digit-dataset-{_digits._COMMIT}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{top}/README.md", b"FSDD")
        for path in sorted(recordings.glob("*.wav")):
            payload = path.read_bytes()
            if path.name == corrupt:
                payload = payload[:-1] + bytes([payload[-1] ^ 1])
            zf.writestr(f"{top}/recordings/{path.name}", payload)
    return buffer.getvalue()


def test_spoken_digits_download(monkeypatch, tmp_path, recordings):
    calls = []
    payloads = {_digits.FSDD_URLS[0]: _repository_zip(recordings)}
    monkeypatch.setattr(_base, "_urlopen", _serve(payloads, calls))
    fsdd = load_spoken_digits(tmp_path, speakers="nicolas", max_per_speaker_digit=1)
    assert calls == [_digits.FSDD_URLS[0]]
    assert len(fsdd.utterances) == 10
    assert [p.name for p in (tmp_path / "fsdd").iterdir()] == ["recordings"]
    assert len(list((tmp_path / "fsdd" / "recordings").glob("*.wav"))) == 3000


def test_spoken_digits_download_checksum_mismatch(monkeypatch, tmp_path, recordings):
    corrupted = _repository_zip(recordings, corrupt="5_theo_7.wav")
    payloads = dict.fromkeys(_digits.FSDD_URLS, corrupted)
    monkeypatch.setattr(_base, "_urlopen", _serve(payloads, []))
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        load_spoken_digits(tmp_path)
    assert list((tmp_path / "fsdd").iterdir()) == []


# ---------------------------------------------------------------- arabic speech commands


def test_arabic_subset_shapes_and_labels(shared_home, asc_dataset):
    asc = load_arabic_speech_commands(
        shared_home, download_if_missing=False, speakers=[1, "00000002"],
        max_per_speaker_keyword=2,
    )  # fmt: skip
    assert len(asc.utterances) == 2 * 10 * 2
    assert (asc.utterances["n_frames"] == 98).all() and (asc.utterances["duration"] == 1).all()
    assert asc.data.shape == (40 * 98, 11 * 13) and asc.data.dtype == np.float32
    assert np.isfinite(asc.data).all() and asc.sample_rate == 16000
    assert list(asc.target_names) == list(_arabic.DIGITS)
    assert set(asc.groups) == {"00000001", "00000002"}
    rows = asc.utterance == "three/00000002_NO_02"
    assert rows.sum() == 98
    assert set(asc.target[rows]) == {"three"} and set(asc.groups[rows]) == {"00000002"}
    assert asc.feature_names[0] == "mfcc0_t-5" and "CC BY 4.0" in asc.DESCR


def test_arabic_features_match_tf_signal_at_16_khz(shared_home, asc_dataset):
    import tensorflow as tf

    asc = load_arabic_speech_commands(
        shared_home, keywords=["seven"], speakers=5, max_per_speaker_keyword=1,
        context=0, features="logmel", return_utterances=True,
    )  # fmt: skip
    signal = _audio.read_wav(asc_dataset / "seven" / "00000005_NO_01.wav", 16000)
    spectra = tf.abs(tf.signal.stft(signal, frame_length=400, frame_step=160, fft_length=512))
    mel = tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20.0, 8000.0)
    log_mel = tf.math.log(tf.matmul(spectra, mel) + 1e-6).numpy()
    np.testing.assert_allclose(asc.data[0], log_mel, rtol=1e-4, atol=1e-4)
    assert list(asc.target) == ["seven"] and list(asc.groups) == ["00000005"]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"keywords": "colours"}, "Unknown keyword"),
        ({"keywords": ["zero", "eleven"]}, "Unknown keyword"),
        ({"keywords": []}, "keywords is empty"),
        ({"keywords": None}, "keywords must be 'digits', 'all' or a list"),
        ({"keywords": 3}, "keywords must be 'digits', 'all' or a list"),
        ({"speakers": [31]}, "Unknown speaker"),
        ({"max_per_speaker_keyword": 0}, "max_per_speaker_keyword"),
        ({"n_mels": 0}, "n_mels must be"),
        ({"cmvn": True}, "cmvn must be"),
        ({"as_frame": True, "return_utterances": True}, "as_frame=True"),
    ],
)
def test_arabic_bad_parameters(tmp_path, params, message):
    with pytest.raises(ValueError, match=message):
        load_arabic_speech_commands(tmp_path, download_if_missing=False, **params)
    assert list(tmp_path.iterdir()) == []


def test_arabic_missing_files_without_download(tmp_path):
    folder = tmp_path / "arabic_speech_commands" / "dataset" / "four"
    folder.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"'four' \(300 of 300 files missing\)") as info:
        load_arabic_speech_commands(tmp_path, keywords=["four"], download_if_missing=False)
    assert "download_if_missing=True" in str(info.value)


def _keyword_payloads(asc_dataset: Path, keyword: str, corrupt: str | None = None) -> dict:
    """The keyword's files as served under the first download URL."""
    payloads = {}
    for path in (asc_dataset / keyword).glob("*.wav"):
        payload = path.read_bytes()
        if path.name == corrupt:
            payload = payload[:-1] + bytes([payload[-1] ^ 1])
        payloads[f"{_arabic.ASC_BASE_URLS[0]}/{keyword}/{path.name}"] = payload
    return payloads


def test_arabic_download_of_a_keyword(monkeypatch, tmp_path, asc_dataset):
    calls = []
    monkeypatch.setattr(_base, "_urlopen", _serve(_keyword_payloads(asc_dataset, "two"), calls))
    asc = load_arabic_speech_commands(tmp_path, keywords=["two"], max_per_speaker_keyword=1)
    assert len(calls) == 300 and all(c.startswith(_arabic.ASC_BASE_URLS[0]) for c in calls)
    assert len(asc.utterances) == 30 and set(asc.target) == {"two"}
    dataset = tmp_path / "arabic_speech_commands" / "dataset"
    assert [p.name for p in dataset.iterdir()] == ["two"]
    assert len(list((dataset / "two").glob("*.wav"))) == 300


def test_arabic_download_completes_a_partial_folder(monkeypatch, tmp_path, asc_dataset):
    folder = tmp_path / "arabic_speech_commands" / "dataset" / "two"
    folder.mkdir(parents=True)
    for path in sorted((asc_dataset / "two").glob("*.wav"))[1:]:
        (folder / path.name).write_bytes(path.read_bytes())
    calls = []
    monkeypatch.setattr(_base, "_urlopen", _serve(_keyword_payloads(asc_dataset, "two"), calls))
    load_arabic_speech_commands(tmp_path, keywords="two", max_per_speaker_keyword=1)
    assert calls == [f"{_arabic.ASC_BASE_URLS[0]}/two/00000001_NO_01.wav"]


def test_arabic_download_checksum_failure_installs_nothing(monkeypatch, tmp_path, asc_dataset):
    payloads = _keyword_payloads(asc_dataset, "nine", corrupt="00000017_NO_04.wav")
    monkeypatch.setattr(_base, "_urlopen", _serve(payloads, []))
    with pytest.raises(ChecksumError, match="checksum mismatch of keyword 'nine'"):
        load_arabic_speech_commands(tmp_path, keywords=["nine"])
    dataset = tmp_path / "arabic_speech_commands" / "dataset"
    assert [p.name for p in dataset.iterdir()] == ["nine"]
    assert list((dataset / "nine").iterdir()) == []


def test_arabic_keyword_with_a_space_is_quoted_in_urls(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(_base, "_urlopen", _serve({}, calls))
    with pytest.raises(OSError, match="Could not download the Arabic Speech Commands keyword"):
        load_arabic_speech_commands(tmp_path, keywords=["zoom in"])
    assert f"{_arabic.ASC_BASE_URLS[0]}/zoom%20in/00000001_NO_01.wav" in calls


def test_arabic_small_protocol_run(shared_home, asc_dataset):
    from skdc.evaluation import evaluate

    asc = load_arabic_speech_commands(
        shared_home, keywords=["zero", "one", "five"], speakers=range(1, 9),
        max_per_speaker_keyword=3, context=2,
    )  # fmt: skip
    results = evaluate(
        asc.data, asc.target, asc.groups, units=asc.utterance, shots=[0, 1], folds=2,
        repeats=1, methods=["codes", "si"], hidden_layer_sizes=(32,), max_epochs=5,
        batch_size=256, adapt_max_iter=10, tune=False, max_train_conditions=3,
        inner_folds=1,  # a smoke test: one inner split (inner CV is tested on synthetic data)
    )  # fmt: skip
    assert results["n_units"] == 8 * 3 * 3 and results["n_conditions"] == 8
    assert results["settings"]["max_train_conditions"] == 3
    for method in ("codes", "si"):
        for k in ("0", "1"):
            assert 1 / 3 < results["methods"][method]["k"][k]["accuracy"] <= 1


def test_augment_factor_one_reproduces_the_originals(shared_home, recordings):
    load = partial(load_spoken_digits, shared_home, speakers="theo", max_per_speaker_digit=1)
    plain = load()
    same = load(augment={"speed": [1.0], "vtlp": [1.0]})
    n = len(plain.data)
    assert len(same.data) == 3 * n
    np.testing.assert_array_equal(same.data[:n], plain.data)
    for copy in (same.data[n : 2 * n], same.data[2 * n :]):
        np.testing.assert_array_equal(copy, plain.data)
    np.testing.assert_array_equal(same.groups[:n], plain.groups)
    assert set(same.groups[n:]) == {"theo|speed=1", "theo|vtlp=1"}
    np.testing.assert_array_equal(same.source_groups, np.tile(plain.groups, 3))
    assert list(same.utterances["augment"][:1]) == [""]
    assert len(set(same.utterance)) == 3 * len(set(plain.utterance))  # copies their own units


def test_augment_speed_and_vtlp_warp_the_voice(shared_home, recordings):
    load = partial(load_spoken_digits, shared_home, speakers="theo", max_per_speaker_digit=1,
                   features="logmel", context=0, return_utterances=True)
    out = load(augment={"speed": [0.8, 1.25], "vtlp": [0.8]})
    n = len(out.data) // 4
    original, slow, fast, vtlp = (out.data[i * n : (i + 1) * n] for i in range(4))
    duration = np.asarray(out.utterances["duration"])
    np.testing.assert_allclose(duration[n : 2 * n] / duration[:n], 1.25, rtol=0.02)
    np.testing.assert_allclose(duration[2 * n : 3 * n] / duration[:n], 0.8, rtol=0.02)
    assert all(len(v) == len(o) for v, o in zip(vtlp, original))  # vtlp keeps the frames
    # energy moves down the mel bands when frequencies are scaled by 0.8
    def centroid(x):
        energy = np.exp(np.concatenate(x))
        return float((energy * np.arange(energy.shape[1])).sum() / energy.sum())
    assert centroid(vtlp) < centroid(original) - 1 and centroid(slow) < centroid(original) - 1
    assert centroid(fast) > centroid(original)


def test_speed_perturbation_scales_every_frequency():
    t = np.arange(8000) / 8000
    tone = np.sin(2 * np.pi * 500 * t).astype(np.float32)
    for factor in (0.9, 1.1):
        out = _audio.resample_speed(tone, factor)
        assert abs(len(out) - 8000 / factor) <= 1
        peak = np.argmax(np.abs(np.fft.rfft(out))) * 8000 / len(out)
        assert abs(peak - 500 * factor) < 2
    assert _audio.resample_speed(tone, 1.0) is tone


def test_warp_matrix_moves_a_bin():
    matrix = _audio._warp_matrix(9, 2.0)  # output bin k reads input bin k / 2
    spectrum = np.zeros(9, np.float32)
    spectrum[2] = 1.0
    np.testing.assert_allclose(spectrum @ matrix, np.eye(9)[4] + 0.5 * (np.eye(9)[3]
                                                                          + np.eye(9)[5]))
    np.testing.assert_array_equal(_audio._warp_matrix(5, 1.0), np.eye(5))


@pytest.mark.parametrize("augment, message", [
    ({"pitch": [1.1]}, "augment must be None or a dict with keys among 'speed', 'vtlp'"),
    ({"speed": [3.0]}, "factors must be numbers in \\[0.5, 2\\]"),
    ({"vtlp": ["x"]}, "factors must be numbers"),
    ([0.9], "augment must be None or a dict"),
])
def test_bad_augment(augment, message):
    with pytest.raises(ValueError, match=message):
        _audio.check_framing("mfcc", 40, 13, 5, 0.025, 0.01, 16000, augment=augment)
