"""Tests for skdc.datasets.load_speech_commands: the shared copy of the test set, fake
archives served without a network, and a tiny fake full release."""

import io
import tarfile
import urllib.error
import wave
from pathlib import Path

import numpy as np
import pytest

from skdc.datasets import ChecksumError, _base, _speech_commands, load_speech_commands
from skdc.datasets._base import RemoteFile, folder_digest

SC = _speech_commands
SPEAKERS = ("0c40e715", "0cb74144")  # 17 and 49 files in the test set


@pytest.fixture(scope="module")
def test_set(data_home) -> Path:
    root = data_home / "speech_commands_test"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}; set SKDC_DATA_HOME")
    return root


def _serve(payloads: dict, calls: list):
    """A fake urlopen: serves bytes per URL, raises URLError for unknown URLs."""

    def urlopen(request, timeout=None):
        url = getattr(request, "full_url", request)
        calls.append(url)
        if url not in payloads:
            raise urllib.error.URLError("no network in tests")
        return io.BytesIO(payloads[url])

    return urlopen


def _wav(seed: int, n_samples: int = 1600) -> bytes:
    """A short 16 kHz mono 16-bit WAV of noise."""
    samples = np.random.default_rng(seed).integers(-3000, 3000, n_samples, dtype=np.int16)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def _write(tree: dict[str, bytes], root: Path) -> None:
    for name, payload in tree.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(payload)


def _tar_gz(tree: dict[str, bytes]) -> bytes:
    """The files of ``tree`` as members ``./<path>`` of a tar.gz, as the archives hold."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in tree.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


# ------------------------------------------------------------- the shared copy (real data)


def test_shipped_checksums_match_the_shared_test_set(test_set):
    for folder, (count, digest) in SC.TEST_SET_FOLDERS.items():
        paths = list((test_set / folder).glob("*.wav"))
        assert (len(paths), folder_digest(paths)) == (count, digest), folder


def test_test_set_two_speakers(data_home, test_set):
    sc = load_speech_commands(data_home, download_if_missing=False, speakers=SPEAKERS,
                              max_per_speaker_word=1)
    assert len(sc.utterances) == 11 + 15  # one take of each word each speaker said
    assert (sc.utterances["n_frames"] == 98).all() and (sc.utterances["duration"] == 1).all()
    assert sc.data.shape == (26 * 98, 11 * 13) and sc.data.dtype == np.float32
    assert np.isfinite(sc.data).all() and sc.sample_rate == 16000
    assert list(sc.target_names) == [*SC.KEYWORDS, "_unknown_"]
    assert sc.target.shape == sc.groups.shape == sc.utterance.shape == (26 * 98,)
    table = sc.utterances.set_index("utterance")
    learn = table.loc["_unknown_/learn_0cb74144_nohash_0"]
    assert learn[["word", "label", "speaker", "take"]].tolist() == [
        "learn", "_unknown_", "0cb74144", 0]
    assert table.loc["_unknown_/tree_0c40e715_nohash_2", "take"] == 2  # its lowest take
    rows = sc.utterance == "off/0c40e715_nohash_0"
    assert rows.sum() == 98 and set(sc.target[rows]) == {"off"}
    assert set(sc.groups[rows]) == {"0c40e715"}
    assert "_silence_" not in set(sc.target) and "CC BY 4.0" in sc.DESCR


def test_test_set_min_per_speaker(data_home, test_set):
    sc = load_speech_commands(data_home, speakers=SPEAKERS, max_per_speaker_word=1,
                              min_per_speaker=12, context=0, return_utterances=True)
    assert set(sc.groups) == {"0cb74144"} and len(sc.data) == 15


def test_test_set_words_and_silence(data_home, test_set):
    sc = load_speech_commands(
        data_home, classes="words", include_silence=True, speakers=["0cb74144", "_silence_"],
        max_per_speaker_word=1, context=0, features="logmel", return_utterances=True,
    )  # fmt: skip
    assert list(sc.target_names) == [*SC.KEYWORDS, *SC.UNKNOWN_WORDS, "_silence_"]
    labels = dict(zip(sc.utterance, sc.target))
    assert labels["_unknown_/learn_0cb74144_nohash_0"] == "learn"
    assert labels["yes/0cb74144_nohash_0"] == "yes"
    silence = sc.utterances[sc.utterances["label"] == "_silence_"]
    assert len(silence) == 1 and silence["take"].tolist() == [-1]
    assert silence["speaker"].tolist() == ["_silence_"]


def test_test_set_cmvn(data_home, test_set):
    sc = load_speech_commands(data_home, speakers="0c40e715", max_per_speaker_word=1,
                              context=0, cmvn="utterance", return_utterances=True)
    for normed in sc.data:
        np.testing.assert_allclose(normed.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(normed.std(axis=0), 1, rtol=1e-4)


# ------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    "params, message",
    [
        ({"subset": "testing"}, "subset must be one of"),
        ({"classes": "digits"}, "classes must be one of"),
        ({"classes": ["yes"]}, "classes must be one of"),
        ({"include_silence": True, "subset": "train"}, "include_silence=True needs"),
        ({"include_silence": "yes"}, "include_silence must be a bool"),
        ({"download_if_missing": "always"}, "download_if_missing must be"),
        ({"speakers": []}, "speakers must be"),
        ({"speakers": [3]}, "speakers must be"),
        ({"max_per_speaker_word": 0}, "max_per_speaker_word"),
        ({"min_per_speaker": 1.5}, "min_per_speaker"),
        ({"cmvn": "speaker"}, "cmvn must be"),
        ({"n_mfcc": 50}, "n_mfcc must be"),
        ({"as_frame": True, "return_utterances": True}, "as_frame=True"),
    ],
)
def test_bad_arguments(tmp_path, params, message):
    with pytest.raises(ValueError, match=message):
        load_speech_commands(tmp_path, **{"download_if_missing": False, **params})
    assert list(tmp_path.iterdir()) == []


def test_unknown_speaker_and_empty_selection(data_home, test_set):
    with pytest.raises(ValueError, match=r"Unknown speaker\(s\) \['ffffffff'\]"):
        load_speech_commands(data_home, speakers=["0c40e715", "ffffffff"])
    with pytest.raises(ValueError, match="No recording is left"):
        load_speech_commands(data_home, speakers="0c40e715", min_per_speaker=18)


def test_missing_files_without_download(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(_base, "_urlopen", _serve({}, calls))
    with pytest.raises(FileNotFoundError, match="download_if_missing=True") as info:
        load_speech_commands(tmp_path, download_if_missing=False)
    assert str(tmp_path / "speech_commands_test" / "yes") in str(info.value)
    for subset in ("train", "validation", "full"):  # the default never fetches 2.4 GB
        with pytest.raises(FileNotFoundError, match="2.4 GB") as info:
            load_speech_commands(tmp_path, subset=subset)
        assert str(tmp_path / "speech_commands_v0.02") in str(info.value)
    assert calls == [] and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ test-set download (fake)


def _fake_test_set() -> dict[str, bytes]:
    tree = {}
    for i, folder in enumerate(SC.TEST_SET_FOLDERS):
        for j, speaker in enumerate(("aaaa0001", "bbbb0002")):
            if folder == "_silence_":
                name = f"{j}.wav"
            elif folder == "_unknown_":
                name = f"{('bed', 'zero')[j]}_{speaker}_nohash_0.wav.wav"
            else:
                name = f"{speaker}_nohash_0.wav"
            tree[f"{folder}/{name}"] = _wav(10 * i + j)
    return tree


@pytest.fixture()
def fake_test_set(monkeypatch, tmp_path_factory) -> dict[str, bytes]:
    """A two-file-per-folder test set whose checksums stand in for the shipped ones."""
    tree = _fake_test_set()
    source = tmp_path_factory.mktemp("fake_test_set")
    _write(tree, source)
    folders = {folder: (2, folder_digest(list((source / folder).glob("*.wav"))))
               for folder in SC.TEST_SET_FOLDERS}
    monkeypatch.setattr(SC, "TEST_SET_FOLDERS", folders)
    return tree


def test_test_set_download_falls_back_to_mirror(monkeypatch, tmp_path, fake_test_set):
    calls = []
    payloads = {SC.TEST_SET_URLS[1]: _tar_gz({**fake_test_set, "README.md": b"readme"})}
    monkeypatch.setattr(_base, "_urlopen", _serve(payloads, calls))
    home = tmp_path / "home"
    sc = load_speech_commands(home, classes="words", context=0)
    assert calls == list(SC.TEST_SET_URLS)
    assert len(sc.utterances) == 22 and set(sc.groups) == {"aaaa0001", "bbbb0002"}
    assert set(sc.target) == {*SC.KEYWORDS, "bed", "zero"}
    assert (sc.utterances["n_frames"] == 8).all()  # 0.1 s
    assert [p.name for p in home.iterdir()] == ["speech_commands_test"]  # nothing left over
    installed = sorted(str(p.relative_to(home / "speech_commands_test"))
                       for p in (home / "speech_commands_test").rglob("*.wav"))
    assert installed == sorted(fake_test_set)  # _silence_ too; README.md not
    load_speech_commands(home, include_silence=True)  # reads the local copy
    assert len(calls) == 2


def test_test_set_download_installs_only_incomplete_folders(monkeypatch, tmp_path,
                                                           fake_test_set):
    root = tmp_path / "speech_commands_test"
    local = {name: payload for name, payload in fake_test_set.items()
             if not name.startswith("yes/")}
    local["no/aaaa0001_nohash_0.wav"] = _wav(99)  # a complete local folder is kept as is
    _write(local, root)
    payloads = {SC.TEST_SET_URLS[0]: _tar_gz(fake_test_set)}
    monkeypatch.setattr(_base, "_urlopen", _serve(payloads, []))
    load_speech_commands(tmp_path, speakers="aaaa0001")
    assert (root / "yes" / "aaaa0001_nohash_0.wav").read_bytes() == fake_test_set[
        "yes/aaaa0001_nohash_0.wav"]
    assert (root / "no" / "aaaa0001_nohash_0.wav").read_bytes() == _wav(99)


@pytest.mark.parametrize("corrupt", ["one file", "not an archive", "truncated", "no silence"])
def test_corrupt_test_set_archive_installs_nothing(monkeypatch, tmp_path, fake_test_set,
                                                   corrupt):
    tree = dict(fake_test_set)
    if corrupt == "one file":
        name = "_unknown_/zero_bbbb0002_nohash_0.wav.wav"
        tree[name] = tree[name][:-1] + bytes([tree[name][-1] ^ 1])
    if corrupt == "no silence":
        tree = {name: payload for name, payload in tree.items() if "_silence_" not in name}
    archive = _tar_gz(tree)
    if corrupt == "not an archive":
        archive = b"<html>Not Found</html>"
    if corrupt == "truncated":
        archive = archive[: len(archive) // 2]
    monkeypatch.setattr(_base, "_urlopen", _serve(dict.fromkeys(SC.TEST_SET_URLS, archive),
                                                  []))
    with pytest.raises(ChecksumError, match="checksum mismatch|not a valid tar archive"):
        load_speech_commands(tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- full release (fake)


def _fake_release() -> dict[str, bytes]:
    """Every word said once by three speakers (twice by the first): the second speaker is
    listed for validation, the third for testing."""
    tree = {}
    lists = {"aaaa0001": [], "bbbb0002": [], "cccc0003": []}
    for i, word in enumerate(SC.WORDS):
        for j, (speaker, takes) in enumerate(zip(lists, (2, 1, 1))):
            for take in range(takes):
                name = f"{word}/{speaker}_nohash_{take}.wav"
                tree[name] = _wav(100 * i + 10 * j + take, n_samples=800)
                lists[speaker].append(name)
    tree["validation_list.txt"] = "\n".join(lists["bbbb0002"]).encode() + b"\n"
    tree["testing_list.txt"] = "\n".join(lists["cccc0003"]).encode() + b"\n"
    tree["_background_noise_/white_noise.wav"] = _wav(7)
    tree["LICENSE"] = b"CC BY 4.0"
    return tree


def test_release_subsets(tmp_path):
    _write(_fake_release(), tmp_path / "speech_commands_v0.02")
    load = dict(data_home=tmp_path, context=0, return_utterances=True)
    train = load_speech_commands(subset="train", **load)
    validation = load_speech_commands(subset="validation", **load)
    full = load_speech_commands(subset="full", classes="words", **load)
    assert set(train.groups) == {"aaaa0001"} and len(train.data) == 70
    assert set(validation.groups) == {"bbbb0002"} and len(validation.data) == 35
    assert len(full.data) == 35 * 4 and set(full.target) == set(SC.WORDS)
    assert list(train.target_names) == [*SC.KEYWORDS, "_unknown_"]
    table = full.utterances.set_index("utterance")
    assert table.loc["bed/cccc0003_nohash_0", "label"] == "bed"
    labels = dict(zip(train.utterance, train.target))
    assert labels["bed/aaaa0001_nohash_1"] == "_unknown_"
    assert labels["go/aaaa0001_nohash_0"] == "go"
    assert train.utterances["n_frames"].tolist() == [3] * 70  # 0.05 s
    first = load_speech_commands(subset="train", max_per_speaker_word=1, **load)
    assert len(first.data) == 35 and set(first.utterances["take"]) == {0}


def test_release_bad_files(tmp_path):
    root = tmp_path / "speech_commands_v0.02"
    tree = _fake_release()
    _write({name: payload for name, payload in tree.items() if not name.startswith("cat/")},
           root)
    with pytest.raises(FileNotFoundError, match="word folder 'cat'"):
        load_speech_commands(tmp_path, subset="full")
    _write({"cat/aaaa0001_nohash_0.wav": _wav(0), "cat/cat.wav": _wav(1)}, root)
    with pytest.raises(ValueError, match=r"cat\.wav: expected a file name"):
        load_speech_commands(tmp_path, subset="full")
    (root / "testing_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="not a complete extraction"):
        load_speech_commands(tmp_path, subset="train", download_if_missing=True)


def test_release_download_on_request(monkeypatch, tmp_path):
    import hashlib

    archive = _tar_gz(_fake_release())
    release = RemoteFile(SC.RELEASE.filename, SC.RELEASE.urls,
                         hashlib.sha256(archive).hexdigest())
    monkeypatch.setattr(SC, "RELEASE", release)
    calls = []
    monkeypatch.setattr(_base, "_urlopen", _serve({release.urls[0]: archive}, calls))
    sc = load_speech_commands(tmp_path, subset="validation", download_if_missing=True,
                              context=0)
    assert calls == [release.urls[0]] and set(sc.groups) == {"bbbb0002"}
    assert [p.name for p in tmp_path.iterdir()] == ["speech_commands_v0.02"]
    assert (tmp_path / "speech_commands_v0.02" / "_background_noise_" / "white_noise.wav"
            ).is_file()
    load_speech_commands(tmp_path, subset="train")  # the extracted copy, no download
    assert len(calls) == 1


def test_release_download_checksum_mismatch_installs_nothing(monkeypatch, tmp_path):
    payloads = dict.fromkeys(SC.RELEASE.urls, _tar_gz(_fake_release()))
    monkeypatch.setattr(_base, "_urlopen", _serve(payloads, []))
    with pytest.raises(ChecksumError, match="SHA-256 checksum mismatch"):
        load_speech_commands(tmp_path, subset="train", download_if_missing=True)
    assert list(tmp_path.iterdir()) == []
