"""Tests of the command line: ``skdc evaluate`` and ``skdc demo``."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from skdc._synthetic import make_conditions, make_teacher
from skdc.cli import main

FAST = ["--folds", "2", "--repeats", "1", "--shots", "0,2", "--hidden", "16",
        "--max-epochs", "100", "--no-tune", "--quiet", "--jobs", "1", "--code-start",
        "scratch"]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A tiny synthetic CSV: 8 conditions x 12 rows, 6 features, 4 classes."""
    teacher = make_teacher(shift=True, random_state=0)
    X, y, groups, _ = make_conditions(teacher, n_conditions=8, rows_per_condition=12,
                                      shift=True, random_state=1)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame["label"] = np.array(list("abcd"))[y]
    frame["speaker"] = [f"s{g}" for g in groups]
    path = tmp_path_factory.mktemp("data") / "table.csv"
    frame.to_csv(path, index=False)
    return path


def test_evaluate_writes_json_and_plot(table, tmp_path, capsys):
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    code = main(["evaluate", str(table), "--label", "label", "--group", "speaker",
                 "--methods", "codes,si,lobanov", "--json", str(out_json),
                 "--plot", str(out_png), *FAST])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "codes" in stdout and "k=2" in stdout and "96 rows, 8 conditions" in stdout
    results = json.loads(out_json.read_text())
    assert results["n_conditions"] == 8 and results["n_rows"] == 96 and results["folds"] == 2
    assert set(results["methods"]) == {"codes", "si", "lobanov"}
    for entry in results["methods"].values():
        for k in ("0", "2"):
            assert set(entry["k"][k]) >= {"accuracy", "ci95"}
    assert results["data"]["features"] == [f"f{i}" for i in range(6)]
    assert out_png.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.png"]


@pytest.fixture(scope="module")
def utterances(tmp_path_factory):
    """The table's kind with units: 8 speakers x 4 utterances x 3 frames, one label each."""
    teacher = make_teacher(shift=True, random_state=0)
    X, y, groups, _ = make_conditions(teacher, n_conditions=8, rows_per_condition=12,
                                      shift=True, random_state=1)
    unit = np.arange(len(y)) // 3
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    frame["label"] = np.array(list("abcd"))[y[unit * 3]]
    frame["speaker"] = [f"s{g}" for g in groups]
    frame["utterance"] = [f"u{u}" for u in unit]
    path = tmp_path_factory.mktemp("data") / "utterances.csv"
    frame.to_csv(path, index=False)
    return path


def test_evaluate_normalized_per_speaker(table, tmp_path, capsys):
    out_json = tmp_path / "out.json"
    code = main(["evaluate", str(table), "--label", "label", "--group", "speaker",
                 "--methods", "si,shift", "--normalize", "speaker", "--json", str(out_json),
                 *FAST])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "features normalised per speaker (kind mean, tau auto)" in stdout
    assert "paired-bootstrap interval" in stdout
    results = json.loads(out_json.read_text())
    assert results["normalize"] == "speaker"
    assert results["settings"]["normalizer"] == {"kind": "mean", "tau": "auto"}
    item = results["methods"]["shift"]["k"]["2"]
    low, high = item["error_reduction_vs_si_interval"]
    assert low <= item["error_reduction_vs_si"] <= high


def test_evaluate_units_normalized_per_utterance(utterances, tmp_path, capsys):
    out_json = tmp_path / "out.json"
    code = main(["evaluate", str(utterances), "--label", "label", "--group", "speaker",
                 "--unit", "utterance", "--methods", "si,codes", "--normalize", "utterance",
                 "--normalize-kind", "meanvar", "--json", str(out_json), *FAST])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "96 rows, 32 units, 8 conditions" in stdout and "other units (utterance)" in stdout
    results = json.loads(out_json.read_text())
    assert results["n_units"] == 32 and results["normalize"] == "utterance"
    assert results["settings"]["normalizer"] == {"kind": "meanvar", "tau": 0.0}
    assert results["data"]["unit"] == "utterance"
    assert results["data"]["features"] == [f"f{i}" for i in range(6)]  # not the unit column


def test_evaluate_with_fewer_training_conditions(table, tmp_path, capsys):
    out_json = tmp_path / "out.json"
    code = main(["evaluate", str(table), "--label", "label", "--group", "speaker",
                 "--methods", "si", "--max-train-conditions", "3", "--json", str(out_json),
                 *FAST[:-2], "--code-start", "scratch,shift_sat"])
    assert code == 0
    settings = json.loads(out_json.read_text())["settings"]
    assert settings["max_train_conditions"] == 3
    assert settings["code_start"] == ["scratch", "shift_sat"]


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def _bad_cases(table, tmp_path):
    ok = ["--label", "label", "--group", "speaker"]
    words = pd.read_csv(table).assign(f0=lambda d: d["label"])
    words.to_csv(tmp_path / "words.csv", index=False)
    negative = pd.read_csv(table)
    negative.to_csv(tmp_path / "negative.csv", index=False)
    return {
        "missing file": [str(tmp_path / "nope.csv"), *ok],
        "malformed csv": [str(_write(tmp_path, "bad.csv", 'a,b\n1,2\n3,4,5,6\n"x')), *ok],
        "empty csv": [str(_write(tmp_path, "empty.csv", "")), *ok],
        "header only": [str(_write(tmp_path, "header.csv", "f0,label,speaker\n")), *ok],
        "missing label column": [str(table), "--label", "vowel", "--group", "speaker"],
        "missing feature column": [str(table), *ok, "--features", "f0,zz"],
        "non-numeric feature": [str(tmp_path / "words.csv"), *ok],
        "log of negative": [str(tmp_path / "negative.csv"), *ok, "--log-features"],
        "too few rows for k": [str(table), *ok, "--shots", "0,12"],
        "unknown method": [str(table), *ok, "--methods", "codes,telepathy"],
        "bad shots": [str(table), *ok, "--shots", "1,two"],
        "bad folds": [str(table), *ok, "--folds", "many"],
        "too many folds": [str(table), *ok, "--folds", "9"],
        "zero jobs": [str(table), *ok, "--jobs", "0"],
        "one training condition": [str(table), *ok, "--max-train-conditions", "1"],
        "missing output folder": [str(table), *ok, "--json", str(tmp_path / "no" / "x.json")],
        "utterance normalisation without units": [str(table), *ok, "--normalize", "utterance"],
        "normalisation kind alone": [str(table), *ok, "--normalize-kind", "meanvar"],
        "negative tau": [str(table), *ok, "--normalize", "speaker", "--normalize-tau", "-1"],
        "tau neither number nor auto": [str(table), *ok, "--normalize", "speaker",
                                        "--normalize-tau", "many"],
        "unknown normalisation": [str(table), *ok, "--normalize", "frame"],
        "missing unit column": [str(table), *ok, "--unit", "utterance"],
        "unit with two labels": [str(table), *ok, "--unit", "speaker"],
        "unknown code start": [str(table), *ok, "--code-start", "scratch,warm"],
        "zero inner folds": [str(table), *ok, "--inner-folds", "0"],
        "inner folds neither number nor auto": [str(table), *ok, "--inner-folds", "many"],
        "more inner folds than conditions": [str(table), *ok, "--inner-folds", "99"],
    }


CASES = ["missing file", "malformed csv", "empty csv", "header only", "missing label column",
         "missing feature column", "non-numeric feature", "log of negative",
         "too few rows for k", "unknown method", "bad shots", "bad folds", "too many folds",
         "zero jobs", "one training condition", "missing output folder",
         "utterance normalisation without units", "normalisation kind alone", "negative tau",
         "tau neither number nor auto",
         "unknown normalisation", "missing unit column", "unit with two labels",
         "unknown code start", "zero inner folds", "inner folds neither number nor auto",
         "more inner folds than conditions"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line(case, table, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    argv = _bad_cases(table, work)[case]
    before = set(work.iterdir())
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    outputs = ["--json", str(out_json), "--plot", str(out_png)]
    code = main(["evaluate", *FAST, *(outputs if case != "missing output folder" else []), *argv])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], captured.err
    assert not out_json.exists() and not out_png.exists()
    assert set(work.iterdir()) == before  # no temporary files left either


def test_demo_falls_back_without_parselmouth(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "parselmouth", None)  # import fails
    assert main(["demo", "--plot", str(tmp_path / "demo.png")]) == 0
    captured = capsys.readouterr()
    assert "praat-parselmouth" in captured.err and "synthetic" in captured.err
    assert "unadapted" in captured.out
    assert not (tmp_path / "demo.png").exists()


def test_help_and_argument_errors_import_no_backend():
    # `skdc --help` stays fast: the parser and its checks never import Keras.
    code = textwrap.dedent("""
        import contextlib, io, sys
        from skdc.cli import main
        for argv in (["--help"], ["evaluate", "--help"], ["demo", "--help"]):
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:
                    main(argv)
                except SystemExit as exit:
                    assert exit.code == 0, argv
            assert "usage: skdc" in out.getvalue(), argv
        assert main(["evaluate", "no.csv", "--label", "a", "--group", "b",
                     "--methods", "codes,telepathy"]) == 2
        assert main(["evaluate", "no.csv", "--label", "a", "--group", "b"]) == 2
        assert main(["evaluate", "no.csv", "--label", "a", "--group", "b",
                     "--normalize", "utterance"]) == 2
        assert main(["frobnicate"]) == 2
        loaded = [m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules]
        assert not loaded, loaded
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "telepathy" in proc.stderr and "no such file" in proc.stderr
