"""Vowel formant tables: Peterson & Barney (1952) and Hillenbrand et al. (1995)."""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ._base import (
    INSTALL_HINT,
    RemoteFile,
    fetch_file,
    get_data_home,
    not_found,
    tabular_bunch,
)

# --------------------------------------------------------------------------------------
# Peterson & Barney (1952)
# --------------------------------------------------------------------------------------

_PB_FEATURES = ["F0", "F1", "F2", "F3"]

_PB_DESCR = """\
Peterson & Barney (1952) vowel formant data
===========================================

F0, F1, F2 and F3 (Hz) of 10 American-English vowels in /hVd/ words (heed, hid, head,
had, hod, hawed, hood, who'd, hud, heard), each said twice by 76 speakers: 33 men
(speakers 1-33), 28 women (34-61) and 15 children (62-76). Real speech, measured by hand
from spectrograms at Bell Labs.

=================  ===========================================
Rows               1520 (20 per speaker: 10 vowels x 2 tokens)
Speakers (groups)  76
Classes            10 vowels (iy ih eh ae ah aa ao uh uw er)
Features           F0, F1, F2, F3 in Hz
=================  ===========================================

``frame`` holds the table exactly as Praat builds it, with columns Type (m/w/c), Sex
(m/f), Speaker (1-76), Vowel, IPA (Praat backslash codes) and F0-F3. Rows come in pairs
(first and second repetition of a vowel by the same speaker).

Source: the table bundled with Praat, read through the PyPI package praat-parselmouth:
``parselmouth.praat.call("Create formant table (Peterson & Barney 1952)")``. Praat's copy
is the digitised table of Watrous (1991).

References
----------
Peterson, G. E. & Barney, H. L. (1952). Control methods used in a study of the vowels.
Journal of the Acoustical Society of America 24, 175-184.
Watrous, R. L. (1991). Current status of Peterson-Barney vowel formant data. Journal of
the Acoustical Society of America 89, 2459-2460.
Boersma, P. & Weenink, D. Praat: doing phonetics by computer. https://www.praat.org

Terms
-----
The 1952 measurements carry no data licence from their authors. They are redistributed
inside Praat (GPL) and praat-parselmouth (GPL-3.0); skdc itself does not ship them. Cite
Peterson & Barney (1952), and Watrous (1991) / Praat for the digital table.
"""


def _praat_table_rows() -> list[list[str]]:
    """Rows (header first) of Praat's built-in Peterson & Barney table."""
    try:
        import parselmouth
    except ImportError as exc:
        raise ImportError(
            "load_peterson_barney needs the optional dependency praat-parselmouth; "
            f"install it with: {INSTALL_HINT}"
        ) from exc
    table = parselmouth.praat.call("Create formant table (Peterson & Barney 1952)")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "peterson_barney.csv")
        parselmouth.praat.call(table, "Save as comma-separated file", path)
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))


def load_peterson_barney(*, as_frame: bool = False) -> Bunch:
    """Load the Peterson & Barney (1952) vowel formant data (classification).

    1520 vowel tokens from 76 speakers (men, women, children), 10 vowels, with F0-F3 in
    Hz as features and the speaker as group. The table comes from Praat, through the
    optional dependency ``praat-parselmouth`` (``pip install "skdc[datasets]"``); nothing
    is downloaded.

    Parameters
    ----------
    as_frame : bool, default=False
        If True, ``data`` is a pandas DataFrame and ``target`` and ``groups`` are pandas
        Series (columns of ``frame``). Needs pandas.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (1520, 4)
            F0, F1, F2, F3 in Hz (float).
        target : ndarray of shape (1520,)
            Vowel labels (str): ``iy ih eh ae ah aa ao uh uw er``.
        groups : ndarray of shape (1520,)
            Speaker ids 1-76 (int); use them for speaker-disjoint splits.
        feature_names : list of str
            ``["F0", "F1", "F2", "F3"]``.
        target_names : ndarray of str
            The 10 vowel labels, sorted.
        frame : pandas.DataFrame of shape (1520, 9) or None
            The Praat table: Type, Sex, Speaker, Vowel, IPA, F0-F3. ``None`` when pandas
            is not installed.
        DESCR : str
            Description, references and terms of use.

    Raises
    ------
    ImportError
        If praat-parselmouth is not installed (or pandas, with ``as_frame=True``).

    Examples
    --------
    >>> from skdc.datasets import load_peterson_barney
    >>> pb = load_peterson_barney()
    >>> pb.data.shape, len(set(pb.groups)), len(pb.target_names)
    ((1520, 4), 76, 10)
    """
    header, *rows = _praat_table_rows()
    columns = {name: np.array(values) for name, values in zip(header, zip(*rows))}
    data = np.column_stack([columns[name].astype(np.float64) for name in _PB_FEATURES])
    return tabular_bunch(
        data,
        columns["Vowel"].astype(object),
        columns["Speaker"].astype(np.int64),
        feature_names=_PB_FEATURES,
        target_column="Vowel",
        group_column="Speaker",
        extra_columns={
            "Type": columns["Type"].astype(object),
            "Sex": columns["Sex"].astype(object),
            "IPA": columns["IPA"].astype(object),
        },
        descr=_PB_DESCR,
        as_frame=as_frame,
    )


# --------------------------------------------------------------------------------------
# Hillenbrand, Getty, Clark & Wheeler (1995)
# --------------------------------------------------------------------------------------

_HILLENBRAND_URL = "https://homepages.wmich.edu/~hillenbr/voweldata/vowdata.dat"
HILLENBRAND = RemoteFile(
    filename="vowdata.dat",
    urls=(
        _HILLENBRAND_URL,
        # Copy committed in 2010; byte-identical to the author's file.
        "https://raw.githubusercontent.com/kleinschmidt/hdp-bayes-vowels/"
        "0787a1ab4007217f0ad2a756e0d1c4385f676fd2/hillenbrand-data/vowdata.dat",
        # The author's host stopped serving around 2023; the Internet Archive kept it.
        f"https://web.archive.org/web/2023id_/{_HILLENBRAND_URL}",
    ),
    sha256="05a4a69e2c6b0f444077245b1427d12bc86f8d7a32ae7a4b63f7e06e5712e4b1",
)
_HILLENBRAND_FOLDER = "hillenbrand_1995"

# Columns 2-16 of vowdata.dat; F0-F4 without suffix are the steady-state values.
HILLENBRAND_COLUMNS = (
    "dur", "F0", "F1", "F2", "F3", "F4",
    "F1_20", "F2_20", "F3_20", "F1_50", "F2_50", "F3_50", "F1_80", "F2_80", "F3_80",
)  # fmt: skip
_FILENAME = re.compile(r"^([mwbg])(\d\d)([a-z]{2})$")

_HILLENBRAND_DESCR = """\
Hillenbrand, Getty, Clark & Wheeler (1995) American-English vowel data
=====================================================================

Acoustic measurements of 12 vowels in /hVd/ words (heed, hid, hayed, head, had, hod,
hawed, hoed, hood, who'd, hud, heard), one token of each vowel from each of 139 talkers:
45 men, 48 women, 27 boys and 19 girls (Michigan dialect). Real recordings (16 kHz);
formants from LPC with hand editing. This is the raw ``vowdata.dat`` from the author's
page.

=================  ===========================================
Rows               1668 (12 per speaker, one per vowel)
Speakers (groups)  139, ids like ``m01`` (type letter + talker number)
Classes            12 vowels (ae ah aw eh ei er ih iy oa oo uh uw)
Features           chosen with ``features=``; by default steady-state F0, F1, F2, F3 (Hz)
=================  ===========================================

Available features: ``dur`` (vowel duration, ms); ``F0``-``F4`` at the steady state;
``F1_20`` ... ``F3_80``: F1-F3 at 20%, 50% and 80% of the vowel duration (Hz).
``frame`` adds the columns ``vowel``, ``speaker``, ``type`` (m/w/b/g) and ``file``.

Missing values: the file writes 0 where a formant could not be measured; these are NaN
here. Counts in the file: F2 10, F3 41, F4 243, F2_20 10, F3_20 39, F2_50 13, F3_50 46,
F2_80 3, F3_80 41. With ``dropna=True`` (default) rows with a missing chosen feature are
dropped: 51 of 1668 rows for F0-F3 (all 139 speakers keep at least one row).

Reference
---------
Hillenbrand, J., Getty, L. A., Clark, M. J. & Wheeler, K. (1995). Acoustic
characteristics of American English vowels. Journal of the Acoustical Society of America
97, 3099-3111.

Source and terms
----------------
James Hillenbrand's vowel data page (homepages.wmich.edu/~hillenbr/voweldata.html), with
a copy in GitHub kleinschmidt/hdp-bayes-vowels (folder hillenbrand-data/) and the Internet
Archive; verified by SHA-256. The file says "(c) 1995 James Hillenbrand" and states no
licence: it is offered for free download for research. Cite Hillenbrand et al. (1995);
do not assume a licence to redistribute it.
"""


def _parse_vowdata(path: Path) -> dict[str, np.ndarray]:
    """Parse vowdata.dat into columns: file, type, speaker, vowel and HILLENBRAND_COLUMNS."""
    records = []
    with open(path, encoding="latin-1") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.split()
            match = _FILENAME.match(fields[0]) if fields else None
            if match is None:
                continue  # header text
            if len(fields) != len(HILLENBRAND_COLUMNS) + 1:
                raise ValueError(
                    f"{path}, line {line_number}: expected {len(HILLENBRAND_COLUMNS) + 1} "
                    f"fields, found {len(fields)}"
                )
            records.append((fields[0], *match.groups(), fields[1:]))
    if not records:
        raise ValueError(f"{path} holds no measurement rows; is it Hillenbrand's vowdata.dat?")
    files, types, numbers, vowels, values = zip(*records)
    measurements = np.array(values, dtype=np.float64)
    measurements[measurements == 0] = np.nan  # 0 = not measurable
    columns = {
        "file": np.array(files, dtype=object),
        "type": np.array(types, dtype=object),
        "speaker": np.array([t + n for t, n in zip(types, numbers)], dtype=object),
        "vowel": np.array(vowels, dtype=object),
    }
    columns.update(zip(HILLENBRAND_COLUMNS, measurements.T))
    return columns


def _resolve_features(features: str | Sequence[str]) -> list[str]:
    """Canonical column names for ``features`` (matched case-insensitively)."""
    features = [features] if isinstance(features, str) else list(features)
    lookup = {name.lower(): name for name in HILLENBRAND_COLUMNS}
    unknown = [name for name in features if str(name).lower() not in lookup]
    if unknown or not features:
        raise ValueError(
            f"Unknown Hillenbrand feature(s) {unknown}; choose one or more of "
            f"{list(HILLENBRAND_COLUMNS)}."
        )
    return [lookup[str(name).lower()] for name in features]


def _hillenbrand_path(data_home, download_if_missing: bool) -> Path:
    folder = get_data_home(data_home) / _HILLENBRAND_FOLDER
    path = folder / HILLENBRAND.filename
    if path.exists():
        return path
    if not download_if_missing:
        raise not_found(
            "Hillenbrand (1995) vowel data",
            path,
            "Call load_hillenbrand(download_if_missing=True) to download vowdata.dat from "
            f"{HILLENBRAND.urls[0]} (or its mirrors), or copy that file there by hand.",
        )
    return fetch_file(HILLENBRAND, folder)


def load_hillenbrand(
    data_home: str | os.PathLike[str] | None = None,
    *,
    download_if_missing: bool = True,
    features: str | Sequence[str] = ("F0", "F1", "F2", "F3"),
    dropna: bool = True,
    as_frame: bool = False,
) -> Bunch:
    """Load the Hillenbrand et al. (1995) vowel data (classification).

    1668 vowel tokens from 139 speakers (men, women, boys, girls), 12 vowels, one token
    of each vowel per speaker. Reads ``<data_home>/hillenbrand_1995/vowdata.dat``,
    downloading it (checksum-verified) when it is missing.

    Parameters
    ----------
    data_home : str or path-like, default=None
        Data folder; see :func:`get_data_home`.
    download_if_missing : bool, default=True
        Download ``vowdata.dat`` when it is not in ``data_home``. If False, a missing
        file raises :class:`FileNotFoundError`.
    features : str or sequence of str, default=("F0", "F1", "F2", "F3")
        Columns to use as ``data``, matched case-insensitively, from ``dur``, ``F0``-``F4``
        (steady state) and ``F1_20``, ``F2_20``, ``F3_20``, ``F1_50``, ..., ``F3_80``
        (formants at 20, 50 and 80% of the vowel duration).
    dropna : bool, default=True
        Drop the rows with a missing (unmeasurable) value in a chosen feature: 51 rows for
        the default features, 281 if F4 is chosen. If False, all 1668 rows are kept and
        missing values are NaN.
    as_frame : bool, default=False
        If True, ``data`` is a pandas DataFrame and ``target`` and ``groups`` are pandas
        Series (columns of ``frame``). Needs pandas.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the following attributes.

        data : ndarray of shape (n_samples, n_features)
            The chosen features (float; Hz, or ms for ``dur``).
        target : ndarray of shape (n_samples,)
            Vowel codes (str): ``ae ah aw eh ei er ih iy oa oo uh uw``.
        groups : ndarray of shape (n_samples,)
            Speaker ids such as ``"m01"`` or ``"g21"``; use them for speaker-disjoint
            splits.
        feature_names : list of str
            Canonical names of the chosen features.
        target_names : ndarray of str
            The 12 vowel codes, sorted.
        frame : pandas.DataFrame or None
            The chosen features plus ``vowel``, ``speaker``, ``type`` (m/w/b/g) and
            ``file``. ``None`` when pandas is not installed.
        DESCR : str
            Description, reference and terms of use, with the number of dropped rows.

    Raises
    ------
    FileNotFoundError
        If the file is missing and ``download_if_missing=False``.
    OSError
        If the download fails; :class:`~skdc.datasets.ChecksumError` (a subclass)
        if the downloaded file does not match the recorded SHA-256 checksum.

    Examples
    --------
    >>> from skdc.datasets import load_hillenbrand
    >>> h95 = load_hillenbrand(dropna=False)  # doctest: +SKIP
    >>> h95.data.shape, len(set(h95.groups))  # doctest: +SKIP
    ((1668, 4), 139)
    >>> load_hillenbrand(features=["dur", "F1_20", "F1_80"]).feature_names  # doctest: +SKIP
    ['dur', 'F1_20', 'F1_80']
    """
    feature_names = _resolve_features(features)
    columns = _parse_vowdata(_hillenbrand_path(data_home, download_if_missing))
    data = np.column_stack([columns[name] for name in feature_names])
    keep = ~np.isnan(data).any(axis=1) if dropna else np.ones(len(data), dtype=bool)
    n_dropped = int((~keep).sum())
    descr = _HILLENBRAND_DESCR + (
        f"\nThis copy: features {feature_names}, {int(keep.sum())} rows; dropna={dropna} "
        f"dropped {n_dropped} rows with a missing value in these features.\n"
    )
    return tabular_bunch(
        data[keep],
        columns["vowel"][keep],
        columns["speaker"][keep],
        feature_names=feature_names,
        target_column="vowel",
        group_column="speaker",
        extra_columns={"type": columns["type"][keep], "file": columns["file"][keep]},
        descr=descr,
        as_frame=as_frame,
    )
