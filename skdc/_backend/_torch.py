"""PyTorch: eager calls; gradients with ``torch.autograd.grad`` on the code only."""

from __future__ import annotations

import numpy as np
import torch

NAME = "torch"
WEIGHTS_AS_ARGUMENTS = True


class _Eager:
    def __init__(self, fn):
        self.function = fn

    def __call__(self, *args):
        return self.function(*args)

    def traces(self) -> int:
        return 0


def compile(fn, signature, xla: bool):
    return _Eager(fn)


def pads_rows(xla: bool) -> bool:
    return False


def value_and_grad(fn):
    """``x`` is a tensor or a list of tensors (then the gradient is a list too)."""

    def wrapped(x, *args):
        many = isinstance(x, list | tuple)
        leaves = [t.detach().requires_grad_(True) for t in (x if many else [x])]
        with torch.enable_grad():
            total, aux = fn(leaves if many else leaves[0], *args)
            grads = torch.autograd.grad(total, leaves)
        return total.detach(), _detach(aux), list(grads) if many else grads[0]

    return wrapped


def _detach(tree):
    if isinstance(tree, list | tuple):
        return type(tree)(_detach(t) for t in tree)
    return tree.detach() if isinstance(tree, torch.Tensor) else tree


def tensor(array, dtype: str = "float32"):
    from keras import ops

    return ops.convert_to_tensor(np.asarray(array), dtype=dtype)


def numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy()


def uses_xla(requested: bool) -> bool:
    """PyTorch runs eagerly: no XLA."""
    return False


#: Everything runs eagerly on PyTorch.
EAGER_PREDICT_BELOW = 0
