"""An adapter's learned codes: one per group, the tied code apart, optimizer states.

The tied code (a fit without groups) is kept apart from the groups' codes, not under
a reserved key, so a group may be called anything (``"__tied__"`` included). A fit
names what it learns by ``keys``: the list of its group labels, or ``None`` for the
tied code.
"""

from __future__ import annotations

import numpy as np

from ._prior import CodePrior

__all__ = ["CodeTable"]


class CodeTable:
    """Learned codes and optimizer states of the groups, and of the tied code."""

    def __init__(self):
        self.groups: dict = {}  # group label -> code
        self.group_states: dict = {}  # group label -> optimizer state
        self.tied_code: np.ndarray | None = None
        self.tied_state = None

    @classmethod
    def from_dicts(cls, codes: dict, states: dict, tied_key) -> CodeTable:
        """A table from dicts holding the tied code under ``tied_key`` (skdc 0.1)."""
        table = cls()
        table.groups = {k: v for k, v in codes.items() if k != tied_key}
        table.group_states = {k: v for k, v in states.items() if k != tied_key}
        table.tied_code, table.tied_state = codes.get(tied_key), states.get(tied_key)
        return table

    def start(self, keys: list | None, prior: CodePrior, group_priors: dict):
        """Initial codes (the learned ones where there are, else the prior mean), prior
        means and covariances, and optimizer states (or None) of ``keys``, stacked."""
        if keys is None:
            if group_priors:
                raise ValueError(
                    "code_init maps groups to priors, but fit was called without groups; "
                    "pass groups=..., or give code_init as one code or CodePrior."
                )
            code = prior.mean if self.tied_code is None else self.tied_code
            return (code[None], prior.mean[None], prior.covariance[None], [self.tied_state])
        priors = [group_priors.get(key, prior) for key in keys]
        mean = np.stack([p.mean for p in priors])
        cov = np.stack([p.covariance for p in priors])
        init = np.stack([self.groups.get(key, m) for key, m in zip(keys, mean)])
        return init, mean, cov, [self.group_states.get(key) for key in keys]

    def store(self, keys: list | None, codes: np.ndarray, states: list | None) -> None:
        """Keep the codes (and optimizer states) learned for ``keys``."""
        if keys is None:
            self.tied_code = codes[0].copy()
            if states is not None:
                self.tied_state = states[0]
            return
        for i, key in enumerate(keys):
            self.groups[key] = codes[i].copy()
            if states is not None:
                self.group_states[key] = states[i]

    def tied(self, default: np.ndarray) -> np.ndarray:
        """The tied code, or ``default`` before any fit without groups."""
        return (default if self.tied_code is None else self.tied_code).copy()
