"""Evaluate fast adaptation on held-out conditions: condition codes against baselines.

:func:`evaluate` runs the protocol below on any table of features, labels and
conditions, and returns a JSON-ready dict; ``skdc evaluate FILE.csv`` wraps it.
:func:`pool_seeds` summarises runs of several seeds together; :func:`compare` sets
any two methods of the same results against each other, with a paired interval.

Methods
-------
``codes``
    :class:`~skdc.CodeNetwork` trained with one code per training condition; a
    held-out condition's code is learned from its ``k`` labelled rows by
    :class:`~skdc.CodeAdapter` (MAP, L-BFGS), every held-out condition of an episode
    in one grouped fit with its own prior (``code_init={condition: CodePrior}``). That
    Gaussian prior is the code's posterior given where the condition's rows lie: the
    training codes' prior updated by the rows' mean residual ``x - mean of its class``
    through a linear-Gaussian map of codes to feature shifts, fitted on the training
    conditions (a few rows' likelihood alone says little about the condition).
    ``k = 0`` uses the prior mean code.
``codes_unsup``
    The same, with the condition's other rows added unlabelled (information
    maximisation, ``y = -1``) and the training codes' prior for every condition:
    transductive. With ``units``, each unlabelled unit (utterance) is one
    prediction, the normalised geometric mean of its rows' (``CodeAdapter.fit(...,
    units=)``). ``k = 0`` is purely unsupervised.
``si``
    No adaptation: the same network trained without codes.
``shift``
    A feature-space shift of the condition, posterior mean from the ``k`` labelled
    rows (``x - mean of its class``), shrunk by empirical Bayes; SI network.
``lobanov``
    Every condition z-scored with all its own rows (labels unused), network trained on
    Lobanov-normalised training conditions: a transductive ceiling.
``lhuc``
    Hidden-unit amplitudes ``2 sigmoid(r)`` of the SI network, learned from the ``k``
    rows with a Gaussian prior on ``r`` (Swietojanski & Renals, 2014).
``finetune_last``, ``finetune_all``
    The SI network's output layer, or all its layers, fine-tuned from the ``k`` rows
    with a Gaussian prior (weight decay) toward the SI weights.

Methods that adapt parameters share one MAP objective, one L-BFGS wrapper around
scipy's L-BFGS-B (the one behind ``CodeAdapter(optimizer="lbfgs")``), one iteration
budget (``adapt_max_iter``) and one tolerance (``adapt_tol``).
Transductive methods see unlabelled rows that the others do not, and are flagged in
every table.
"""

from ._baselines import METHODS
from ._comparison import compare, format_comparison
from ._pooling import pool_seeds
from ._protocol import DEFAULT_SHOTS, evaluate
from ._protocol import __doc__ as _protocol_doc
from ._report import format_table, plot_results
from ._significance import PairedBootstrap, error_reduction

_protocol_body = _protocol_doc.split("\n", 2)[2]  # without its title line
__doc__ = f"{__doc__}\n{_protocol_body}"

__all__ = ["DEFAULT_SHOTS", "METHODS", "PairedBootstrap", "compare", "error_reduction",
           "evaluate", "format_comparison", "format_table", "plot_results", "pool_seeds"]
