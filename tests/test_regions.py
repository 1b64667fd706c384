"""mollify.activation_pattern: which ReLUs are active."""

import pytest
import torch
from torch import nn

from mollify import activation_pattern, small_cnn


def test_pattern_matches_manual_computation():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 1))
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    h1 = net[0](x)
    h2 = net[2](torch.relu(h1))
    expected = torch.cat([h1 > 0, h2 > 0], dim=1)
    assert torch.equal(activation_pattern(net, x), expected)


def test_pattern_counts_every_unit_of_the_cnn():
    net = small_cnn(seed=0)
    pattern = activation_pattern(net, torch.rand(2, 1, 8, 8))
    assert pattern.shape == (2, 16 * 64 + 32 * 64 + 64) and pattern.dtype == torch.bool


def test_hooks_are_removed_even_when_forward_raises():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 1))  # shape bug after the ReLU
    with pytest.raises(RuntimeError):
        activation_pattern(net, torch.randn(2, 3))
    assert not net[1]._forward_hooks


def test_bad_input():
    with pytest.raises(ValueError, match="nn.ReLU"):
        activation_pattern(nn.Linear(2, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="inputs"):
        activation_pattern(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.tensor(1.0))
