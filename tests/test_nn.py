"""mollify.nn: closed forms against Monte Carlo, derivatives, limits and model conversion."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mollify.nn import (
    SmoothedAbs,
    SmoothedGELU,
    SmoothedHardtanh,
    SmoothedLeakyReLU,
    SmoothedReLU,
    SmoothedSign,
    SmoothedStep,
    smooth_activations,
    smoothed_abs,
    smoothed_gelu,
    smoothed_hardtanh,
    smoothed_leaky_relu,
    smoothed_relu,
    smoothed_sign,
    smoothed_step,
)

DTYPE = torch.float64


def _heaviside(y: torch.Tensor) -> torch.Tensor:
    return torch.heaviside(y, torch.tensor(0.5, dtype=y.dtype))


# name: (smoothed function, plain activation); both take (x) after binding the extra arguments
CASES = {
    "relu": (smoothed_relu, torch.relu),
    "abs": (smoothed_abs, torch.abs),
    "step": (smoothed_step, _heaviside),
    "sign": (smoothed_sign, torch.sign),
    "leaky_relu": (lambda x, s: smoothed_leaky_relu(x, s, 0.2), lambda y: F.leaky_relu(y, 0.2)),
    "hardtanh": (
        lambda x, s: smoothed_hardtanh(x, s, -0.5, 2.0),
        lambda y: F.hardtanh(y, -0.5, 2.0),
    ),
    "relu6": (lambda x, s: smoothed_hardtanh(x, s, 0.0, 6.0), F.relu6),
    "gelu": (smoothed_gelu, F.gelu),
}
X = torch.tensor([-3.0, -0.7, 0.0, 0.4, 1.5, 5.0], dtype=DTYPE)


def _pdf(t: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)


# --- closed forms against Monte Carlo -----------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.3, 1.7])
@pytest.mark.parametrize("name", sorted(CASES))
def test_closed_form_matches_monte_carlo(name, sigma):
    smoothed, plain = CASES[name]
    z = torch.randn(200_000, 1, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    values = plain(X + sigma * z)  # (n, len(X))
    mean, stderr = values.mean(0), values.std(0) / math.sqrt(len(z))
    exact = smoothed(X, sigma)
    # 10/n: the resolution of a mean of bounded samples (a tail event of probability 3e-7 is
    # usually never hit, and then the sample stderr is 0)
    assert ((exact - mean).abs() <= 4 * stderr + 10 / len(z)).all(), (exact, mean, stderr)


@pytest.mark.parametrize("sigma", [0.3, 1.7])
@pytest.mark.parametrize("name", sorted(CASES))
def test_derivative_matches_finite_differences(name, sigma):
    smoothed, _ = CASES[name]
    x = X.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(smoothed(x, sigma).sum(), x)
    h = 1e-6
    fd = (smoothed(X + h, sigma) - smoothed(X - h, sigma)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck_and_gradgradcheck(name):
    smoothed, _ = CASES[name]
    x = torch.tensor([-2.0, -0.3, 0.1, 0.9, 3.0], dtype=DTYPE, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: smoothed(t, 0.6), (x,))
    assert torch.autograd.gradgradcheck(lambda t: smoothed(t, 0.6), (x,))


def test_paper_parametrization_of_smoothed_relu():
    # (x/2)(1 + erf(x/μ)) + μ/(2√π)·exp(−x²/μ²) with μ = √2 σ (arXiv 2311.00531)
    sigma = 0.8
    mu = math.sqrt(2) * sigma
    paper = X / 2 * (1 + torch.erf(X / mu)) + mu / (2 * math.sqrt(math.pi)) * torch.exp(
        -(X**2) / mu**2
    )
    torch.testing.assert_close(smoothed_relu(X, sigma), paper, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("sigma", [1e-3, 0.5, 20.0])
def test_smoothed_relu_derivatives_are_phi_and_density(sigma):
    x = torch.linspace(-6, 6, 41, dtype=DTYPE).mul(sigma).requires_grad_(True)
    (grad,) = torch.autograd.grad(smoothed_relu(x, sigma).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), x)
    t = x.detach() / sigma
    torch.testing.assert_close(grad, torch.special.ndtr(t), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(second, _pdf(t) / sigma, rtol=1e-9, atol=1e-12)


def test_identities_between_forms():
    sigma = 0.9
    r = smoothed_relu(X, sigma)
    torch.testing.assert_close(smoothed_abs(X, sigma), 2 * r - X)  # |y| = 2 relu(y) − y
    torch.testing.assert_close(smoothed_sign(X, sigma), 2 * smoothed_step(X, sigma) - 1)
    torch.testing.assert_close(smoothed_relu(-X, sigma), r - X)  # relu(y) − relu(−y) = y
    assert (r >= torch.relu(X)).all()  # Jensen: relu is convex


# --- sigma = 0 and the limits -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_sigma_zero_is_the_plain_activation_exactly(name, dtype):
    smoothed, plain = CASES[name]
    x = torch.tensor([-2.5, -1.0, 0.0, 0.3, 1.0, 7.0], dtype=dtype)
    assert torch.equal(smoothed(x, 0), plain(x))
    assert torch.equal(smoothed(x, 0.0), plain(x))
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(smoothed(xg, 0.0).sum(), xg)
    assert torch.isfinite(grad).all()


EXTREME_X = [-1e4, -50.0, -1.0, -1e-6, 0.0, 1e-6, 1.0, 50.0, 1e4]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma", [1e-8, 1e-3, 1.0, 1e4])
@pytest.mark.parametrize("name", sorted(CASES))
def test_extremes_are_finite_to_second_order(name, sigma, dtype):
    smoothed, _ = CASES[name]
    x = torch.tensor(EXTREME_X, dtype=dtype, requires_grad=True)
    y = smoothed(x, sigma)
    (grad,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), x)
    for t in (y, grad, second):
        assert torch.isfinite(t).all(), (y, grad, second)
    assert y.dtype == dtype and y.shape == x.shape


@pytest.mark.parametrize("name", sorted(CASES))
def test_tiny_sigma_recovers_the_activation(name):
    smoothed, plain = CASES[name]
    x = torch.tensor([-1e4, -2.0, -0.1, 0.1, 2.0, 1e4], dtype=DTYPE)  # |x| >> σ
    torch.testing.assert_close(smoothed(x, 1e-8), plain(x), rtol=1e-12, atol=1e-7)


def test_huge_sigma_limits():
    sigma = 1e4
    x = torch.tensor([-1.0, 0.0, 1.0], dtype=DTYPE)
    # E relu(σZ) = σ φ(0), E|σZ| = σ √(2/π), E step = E sign/2 + 1/2 = 1/2 (up to O(x/σ))
    torch.testing.assert_close(smoothed_relu(x, sigma), x / 2 + sigma / math.sqrt(2 * math.pi),
                               rtol=1e-8, atol=0)
    half_normal_mean = torch.full_like(x, sigma * math.sqrt(2 / math.pi))
    torch.testing.assert_close(smoothed_abs(x, sigma), half_normal_mean, rtol=1e-8, atol=0)
    torch.testing.assert_close(smoothed_step(x, sigma), torch.full_like(x, 0.5), rtol=0, atol=1e-4)
    torch.testing.assert_close(smoothed_hardtanh(x, sigma), torch.zeros_like(x), rtol=0, atol=1e-4)
    # Far in the tails the smoothed ReLU is exactly 0 or x, with derivative 0 or 1.
    x = torch.tensor([-1e4, 1e4], requires_grad=True)
    y = smoothed_relu(x, 1.0)
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert y.tolist() == [0.0, 1e4] and grad.tolist() == [0.0, 1.0]


def test_works_under_torch_func_vmap_and_grad():
    f = lambda t: smoothed_relu(t, 0.5).sum()  # noqa: E731
    xs = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    grads = torch.func.vmap(torch.func.grad(f))(xs)
    torch.testing.assert_close(grads, torch.special.ndtr(xs / 0.5))


# --- modules ------------------------------------------------------------------------------------


def test_modules_match_functions_and_report_sigma():
    x = X.clone()
    pairs = [
        (SmoothedReLU(0.4), smoothed_relu(x, 0.4)),
        (SmoothedAbs(0.4), smoothed_abs(x, 0.4)),
        (SmoothedStep(0.4), smoothed_step(x, 0.4)),
        (SmoothedSign(0.4), smoothed_sign(x, 0.4)),
        (SmoothedLeakyReLU(0.4, 0.1), smoothed_leaky_relu(x, 0.4, 0.1)),
        (SmoothedHardtanh(0.4, 0.0, 6.0), smoothed_hardtanh(x, 0.4, 0.0, 6.0)),
        (SmoothedGELU(0.4), smoothed_gelu(x, 0.4)),
    ]
    for module, expected in pairs:
        assert torch.equal(module(x), expected)
        assert "sigma=0.4" in repr(module)
    m = SmoothedReLU(0.4)
    m.sigma = 0  # annealing: settable, validated, stored as float
    assert m.sigma == 0.0 and torch.equal(m(x), torch.relu(x))
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        m.sigma = -0.1


# --- smooth_activations -------------------------------------------------------------------------


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 3), nn.LeakyReLU(0.3))
        self.heads = nn.ModuleList([nn.ReLU6(), nn.GELU(), nn.GELU(approximate="tanh")])
        self.extra = nn.ModuleDict({"act": nn.Hardtanh(-2.0, 2.0), "tanh": nn.Tanh()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inner(x)
        for head in self.heads:
            x = head(x)
        return torch.relu(self.extra["tanh"](self.extra["act"](x)))  # functional relu: not replaced


def _net(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(_Block(), nn.ReLU()),
                             nn.Linear(3, 2)).double()


def test_smooth_activations_replaces_recursively():
    model = _net()
    smoothed = smooth_activations(model, 0.25)
    assert type(smoothed[1]) is SmoothedReLU and smoothed[1].sigma == 0.25
    block = smoothed[2][0]
    assert type(block.inner[1]) is SmoothedLeakyReLU and block.inner[1].negative_slope == 0.3
    assert type(block.heads[0]) is SmoothedHardtanh
    assert (block.heads[0].min_val, block.heads[0].max_val) == (0.0, 6.0)
    assert type(block.heads[1]) is SmoothedGELU
    assert type(block.heads[2]) is nn.GELU  # tanh-approximated GELU has no closed form
    assert type(block.extra["act"]) is SmoothedHardtanh and block.extra["act"].min_val == -2.0
    assert type(block.extra["tanh"]) is nn.Tanh
    assert type(smoothed[2][1]) is SmoothedReLU
    # weights are copied, not shared
    assert torch.equal(smoothed[0].weight, model[0].weight)
    assert smoothed[0].weight.data_ptr() != model[0].weight.data_ptr()


def test_smooth_activations_leaves_the_original_unchanged():
    model = _net().eval()
    before = repr(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    smoothed = smooth_activations(model, 0.5)
    assert repr(model) == before
    assert type(model[1]) is nn.ReLU
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])
    assert not smoothed.training and not smoothed[1].training  # train/eval mode is kept


def test_smooth_activations_sigma_zero_computes_the_same():
    model = _net()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    assert torch.equal(smooth_activations(model, 0.0)(x), model(x))
    assert not torch.equal(smooth_activations(model, 0.5)(x), model(x))


def test_smoothed_first_layer_is_the_expectation_under_preactivation_noise():
    model = _net()
    smoothed = smooth_activations(model, 0.6)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    exact = smoothed[1](smoothed[0](x))  # SmoothedReLU(Linear(x)): (2, 4)
    pre = model[0](x).detach()
    z = torch.randn(200_000, 2, 4, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    samples = torch.relu(pre + 0.6 * z)
    mean, stderr = samples.mean(0), samples.std(0) / math.sqrt(len(z))
    assert ((exact - mean).abs() <= 4 * stderr).all()


def test_smooth_activations_on_an_activation_module_and_without_any():
    assert type(smooth_activations(nn.ReLU(), 0.1)) is SmoothedReLU
    with pytest.warns(UserWarning, match="found no"):
        out = smooth_activations(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), 0.1)
    assert type(out[1]) is nn.Tanh


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sigma, error, message",
    [
        (-1.0, ValueError, "sigma must be >= 0, got -1.0"),
        (float("nan"), ValueError, "sigma must be finite"),
        (float("inf"), ValueError, "sigma must be finite"),
        ("0.1", TypeError, "sigma must be a real number"),
        (True, TypeError, "sigma must be a real number"),
        (torch.tensor(0.1), TypeError, "sigma must be a real number"),
    ],
)
def test_bad_sigma(sigma, error, message):
    x = torch.zeros(3)
    for fn in (smoothed_relu, smoothed_abs, smoothed_step, smoothed_sign, smoothed_gelu,
               smoothed_leaky_relu, smoothed_hardtanh):
        with pytest.raises(error, match=message):
            fn(x, sigma)
    for cls in (SmoothedReLU, SmoothedAbs, SmoothedStep, SmoothedSign, SmoothedGELU,
                SmoothedLeakyReLU, SmoothedHardtanh):
        with pytest.raises(error, match=message):
            cls(sigma)
    with pytest.raises(error, match=message):
        smooth_activations(nn.ReLU(), sigma)


def test_bad_other_arguments():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        smoothed_relu([1.0], 0.1)
    with pytest.raises(TypeError, match="floating-point"):
        smoothed_relu(torch.arange(3), 0.1)
    with pytest.raises(ValueError, match="max_val must be > min_val"):
        smoothed_hardtanh(torch.zeros(2), 0.1, 1.0, 1.0)
    with pytest.raises(ValueError, match="max_val must be > min_val"):
        SmoothedHardtanh(0.1, 2.0, 1.0)
    with pytest.raises(ValueError, match="negative_slope must be finite"):
        SmoothedLeakyReLU(0.1, float("nan"))
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        smooth_activations(torch.relu, 0.1)
