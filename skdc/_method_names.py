"""Names of the adaptation methods of :mod:`skdc.evaluation` and of where its coded
networks start, importable without a backend.

The command line builds its choices from these without importing Keras;
``skdc.evaluation.METHODS`` is built from them, in this order, and refuses to import
when a name has no implementation or an implementation no name.
"""

METHOD_NAMES = ("codes", "codes_unsup", "si", "shift", "lobanov", "lhuc", "finetune_last",
                "finetune_all")

#: evaluate(code_start=...): where the coded networks start (see skdc.evaluation._fold)
CODE_STARTS = ("scratch", "si", "frozen_si", "shift_sat")
