"""Loaders for real multi-speaker speech data sets, returning scikit-learn Bunches.

Every loader returns ``data``, ``target`` and ``groups`` (the speaker of each row, for
speaker-disjoint splits such as :class:`~sklearn.model_selection.GroupKFold`), plus
``feature_names``, ``frame`` and ``DESCR``. Files live in the data home
(:func:`get_data_home`): the ``data_home`` argument, else ``$SKDC_DATA_HOME``, else
``~/skdc_data``; missing files are downloaded from their public source and verified
against a SHA-256 checksum.
"""

from ._arabic import load_arabic_speech_commands
from ._base import ChecksumError, get_data_home
from ._digits import load_spoken_digits
from ._speech_commands import load_speech_commands
from ._vowels import load_hillenbrand, load_peterson_barney

__all__ = [
    "ChecksumError",
    "get_data_home",
    "load_arabic_speech_commands",
    "load_hillenbrand",
    "load_peterson_barney",
    "load_speech_commands",
    "load_spoken_digits",
]
