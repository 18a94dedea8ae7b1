"""Time of ``evaluate``'s ``codes`` method: the demo's workload, one process.

Peterson & Barney (log F0-F3, 76 speakers), the demo's settings (4 folds, 2 repeats,
k = 0, 1, 2, 5, 10, fixed defaults, codes from scratch), methods ``si`` and ``codes``,
folds in this process. Prints wall seconds and the accuracy table. Both methods train their
networks on first use; the ``codes`` row is the run with both minus the ``si``-only run,
i.e. the code network, its adaptation and scoring.

To compare two versions, run the same script against each (``SKDC_SRC`` points
``_common`` at another checkout):

    python benchmarks/bench_evaluate.py
    SKDC_SRC=/tmp/old python benchmarks/bench_evaluate.py

Needs praat-parselmouth (Peterson & Barney ships with it).
"""

import time

import _common  # noqa: F401  (path and import order)
import numpy as np

from skdc.datasets import load_peterson_barney
from skdc.evaluation import evaluate, format_table

# codes from scratch: the same work in every version (the default code_start="auto" adds
# nested validation's networks of both starts)
SETTINGS = dict(shots=(0, 1, 2, 5, 10), folds=4, repeats=2, tune=False, random_state=0,
                code_start="scratch")


def main() -> None:
    pb = load_peterson_barney()
    X = np.log(pb.data)
    seconds = {}
    for methods in (["si"], ["si", "codes"]):
        start = time.perf_counter()
        results = evaluate(X, pb.target, pb.groups, methods=methods, **SETTINGS)
        seconds[len(methods)] = time.perf_counter() - start
    print(format_table(results))
    print(f"\nsi alone: {seconds[1]:.1f} s; si + codes: {seconds[2]:.1f} s; "
          f"codes: {seconds[2] - seconds[1]:.1f} s")


if __name__ == "__main__":
    main()
