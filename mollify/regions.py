"""Linear regions of ReLU networks.

A ReLU network is affine on each set of inputs that share one *activation pattern* — which
ReLU units are active (output > 0). Comparing patterns tells whether two inputs lie in the
same linear region, where the network has the same gradient.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["activation_pattern"]


@torch.no_grad()
def activation_pattern(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Return which ReLU units of ``model`` are active for each input.

    Every ``nn.ReLU`` submodule is observed with a forward hook during one forward pass; ReLUs
    called functionally (``torch.relu`` inside ``forward``) are invisible to it.

    Args:
        model: a network with ``nn.ReLU`` modules.
        inputs: a batch ``(B, ...)``.

    Returns:
        A bool tensor ``(B, U)``: entry ``[b, j]`` is ``True`` when unit ``j`` (all ReLU modules'
        outputs, flattened and concatenated in call order) is positive for input ``b``.

    Raises:
        ValueError: if ``model`` has no ``nn.ReLU`` module or ``inputs`` has no batch dimension.

    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> activation_pattern(net, torch.zeros(4, 2)).shape
    torch.Size([4, 3])
    """
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1:
        raise ValueError("inputs must be a tensor with a leading batch dimension")
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("model has no nn.ReLU module whose activations could be observed")
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out > 0)) for m in relus]
    try:
        model(inputs)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat([o.flatten(1) for o in outputs], dim=1)
