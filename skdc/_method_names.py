"""Names of the adaptation methods of :mod:`skdc.evaluation`, importable without a backend.

The command line builds its choices from these without importing Keras;
``tests/test_cli.py`` checks them against ``skdc.evaluation.METHODS``.
"""

METHOD_NAMES = ("codes", "codes_unsup", "si", "shift", "lobanov", "lhuc", "finetune_last",
                "finetune_all")
