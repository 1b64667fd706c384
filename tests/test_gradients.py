"""Tests of mollify.gradients: closed forms, agreement and unbiasedness of the three estimators,
invariances (eps → 0, generator, chunking) and argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from mollify.gradients import ESTIMATORS, smoothed_grad
from mollify.kernels import KERNELS, kernel
from mollify.montecarlo import Estimate

F64 = torch.float64
SCORE_KERNELS = [name for name in KERNELS if kernel(name).has_score]
NO_SCORE_KERNELS = [name for name in KERNELS if not kernel(name).has_score]


pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


W = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
B = 0.3
X = torch.tensor([[0.2, 0.1, -0.3], [1.0, 0.2, 0.0]], dtype=F64)


def relu_unit(p: torch.Tensor) -> torch.Tensor:
    """f(x) = relu(w·x + b), row-wise (no matmul, so rows do not depend on the batch)."""
    return torch.relu((p * W).sum(-1) + B)


def relu_unit_grad(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Gaussian smoothing: ∇f_ε(x) = w Φ((w·x + b)/(ε‖w‖))."""
    z = ((x * W).sum(-1, keepdim=True) + B) / (eps * W.norm())
    return W * torch.special.ndtr(z)


def smooth(p: torch.Tensor) -> torch.Tensor:
    return torch.sin(p[:, 0] + 2 * p[:, 1]) + 0.5 * (p * p).sum(-1)


def smooth_grad_exact(x: torch.Tensor) -> torch.Tensor:
    c = torch.cos(x[..., 0] + 2 * x[..., 1])
    g = x.clone()
    g[..., 0] += c
    g[..., 1] += 2 * c
    return g


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("sampler", ["mc", "antithetic", "rqmc"])
def test_gaussian_relu_unit_matches_closed_form(estimator, sampler):
    eps = 0.5
    est = smoothed_grad(
        relu_unit, X, "gaussian", eps, 4096, estimator=estimator, sampler=sampler, generator=gen(1)
    )
    assert isinstance(est, Estimate) and est.n == 4096
    assert est.mean.shape == X.shape and est.mean.dtype == F64
    truth = relu_unit_grad(X, eps)
    assert bool(((est.mean - truth).abs() <= 4 * est.stderr).all()), (est.mean, truth)


def test_three_estimators_agree_with_each_other():
    eps = 0.4
    ests = [
        smoothed_grad(relu_unit, X, "gaussian", eps, 8192, estimator=e, generator=gen(i))
        for i, e in enumerate(ESTIMATORS)
    ]
    for a in ests:
        for b in ests:
            tol = 4 * torch.sqrt(a.stderr**2 + b.stderr**2)
            assert bool(((a.mean - b.mean).abs() <= tol).all())


@pytest.mark.parametrize("name", KERNELS)
def test_1d_relu_gradient_is_the_kernel_cdf(name):
    """f = relu in 1-D: ∇f_ε(x) = P(x − εu > 0) = F(x/ε), for every kernel and estimator."""
    eps = 0.7
    x = torch.tensor([[-0.5], [0.0], [0.3], [1.2]], dtype=F64)
    truth = kernel(name).cdf(x / eps)
    estimators = ESTIMATORS if kernel(name).has_score else ("pathwise",)
    for i, estimator in enumerate(estimators):
        est = smoothed_grad(
            lambda p: torch.relu(p[:, 0]), x, name, eps, 4096, estimator=estimator,
            sampler="antithetic", generator=gen(10 + i),
        )
        assert bool(((est.mean - truth).abs() <= 4 * est.stderr + 1e-12).all()), (
            estimator, est.mean.flatten(), truth.flatten()
        )


def test_qmc_has_nan_stderr_and_is_accurate():
    est = smoothed_grad(relu_unit, X, "gaussian", 0.5, 4096, sampler="qmc")
    assert bool(torch.isnan(est.stderr).all())
    assert torch.allclose(est.mean, relu_unit_grad(X, 0.5), atol=5e-3)


# ----------------------------------------------------------------------------- unbiasedness


@pytest.mark.parametrize(
    "estimator, name", [("pathwise", "gaussian"), ("score", "gaussian"), ("zeroth", "gaussian"),
                        ("score", "laplace"), ("zeroth", "bump"), ("pathwise", "epanechnikov")]
)
def test_unbiased_at_tiny_n_over_seeds(estimator, name):
    """The average of many n = 2 estimates converges to the truth: no O(1/n) bias."""
    eps, seeds = 0.6, 400
    x = torch.tensor([[0.1], [-0.4]], dtype=F64)
    truth = kernel(name).cdf(x / eps)
    runs = torch.stack([
        smoothed_grad(lambda p: torch.relu(p[:, 0]), x, name, eps, 2, estimator=estimator,
                      generator=gen(s)).mean
        for s in range(seeds)
    ])
    mean, sd = runs.mean(0), runs.std(0)
    assert bool(((mean - truth).abs() <= 4 * sd / math.sqrt(seeds)).all()), (mean, truth)


def test_score_baseline_reduces_variance_and_keeps_the_mean():
    """A large constant added to f changes nothing with the baseline, a lot without it."""
    eps = 0.5

    def shifted(p):
        return relu_unit(p) + 10.0

    with_b = smoothed_grad(shifted, X, "gaussian", eps, 4096, estimator="score", generator=gen(3))
    without = smoothed_grad(
        shifted, X, "gaussian", eps, 4096, estimator="score", generator=gen(3), baseline=False
    )
    truth = relu_unit_grad(X, eps)
    assert bool(((with_b.mean - truth).abs() <= 4 * with_b.stderr).all())
    assert bool(((without.mean - truth).abs() <= 4 * without.stderr).all())
    assert bool((without.stderr > 5 * with_b.stderr).all())


# ----------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_eps_to_zero_gives_the_plain_gradient(estimator):
    x = torch.tensor([[0.3, -0.2], [1.0, 0.5]], dtype=F64)
    est = smoothed_grad(smooth, x, "gaussian", 1e-5, 2048, estimator=estimator, generator=gen(0))
    exact = smooth_grad_exact(x)
    assert bool(((est.mean - exact).abs() <= 4 * est.stderr + 1e-4).all())
    if estimator == "pathwise":
        assert torch.allclose(est.mean, exact, atol=1e-4)


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("sampler", ["mc", "antithetic", "rqmc"])
def test_chunk_size_does_not_change_the_result(estimator, sampler):
    ref = smoothed_grad(relu_unit, X, "logistic", 0.5, 64, estimator=estimator, sampler=sampler,
                        generator=gen(5))
    for chunk in (1, 7, 50):
        got = smoothed_grad(relu_unit, X, "logistic", 0.5, 64, estimator=estimator,
                            sampler=sampler, generator=gen(5), chunk_size=chunk)
        assert torch.equal(got.mean, ref.mean) and torch.equal(got.stderr, ref.stderr)


def test_same_generator_same_result_and_fresh_seed_differs():
    a = smoothed_grad(relu_unit, X, "gaussian", 0.5, 32, generator=gen(9))
    b = smoothed_grad(relu_unit, X, "gaussian", 0.5, 32, generator=gen(9))
    c = smoothed_grad(relu_unit, X, "gaussian", 0.5, 32, generator=gen(10))
    assert torch.equal(a.mean, b.mean) and torch.equal(a.stderr, b.stderr)
    assert not torch.equal(a.mean, c.mean)


def test_shapes_and_dtypes():
    xb = torch.zeros(2, 4, 3)
    est = smoothed_grad(relu_unit, xb, "gaussian", 0.5, 8, generator=gen(0))
    assert est.mean.shape == (2, 4, 3) and est.mean.dtype == torch.float32
    one = smoothed_grad(relu_unit, X[0], "gaussian", 0.5, 8, generator=gen(0))
    assert one.mean.shape == (3,)
    scalar = smoothed_grad(lambda p: torch.relu(p[:, 0]), torch.tensor(0.2), "gaussian", 0.5, 8,
                           generator=gen(0))
    assert scalar.mean.shape == ()
    ints = smoothed_grad(lambda p: p.sum(1), torch.tensor([1, 2]), "gaussian", 0.5, 8,
                         estimator="zeroth", generator=gen(0))
    assert ints.mean.dtype == torch.get_default_dtype()
    # f may return (N, 1); a query point shared by all samples gets the same noise
    est2 = smoothed_grad(lambda p: relu_unit(p)[:, None], X, "gaussian", 0.5, 8, generator=gen(0))
    assert est2.mean.shape == X.shape


def test_works_inside_no_grad():
    with torch.no_grad():
        est = smoothed_grad(relu_unit, X, "gaussian", 0.5, 16, generator=gen(0))
    assert torch.isfinite(est.mean).all()


# ----------------------------------------------------------------------------- bad input


def test_bad_arguments_raise_clear_errors():
    f = relu_unit
    with pytest.raises(ValueError, match="eps must be > 0"):
        smoothed_grad(f, X, "gaussian", 0.0, 8)
    with pytest.raises(ValueError, match="eps must be > 0"):
        smoothed_grad(f, X, "gaussian", -1, 8)
    with pytest.raises(ValueError, match="n must be >= 1"):
        smoothed_grad(f, X, "gaussian", 0.5, 0)
    with pytest.raises(ValueError, match="estimator must be one of"):
        smoothed_grad(f, X, "gaussian", 0.5, 8, estimator="reinforce")
    with pytest.raises(ValueError, match="sampler must be one of"):
        smoothed_grad(f, X, "gaussian", 0.5, 8, sampler="sobol")
    with pytest.raises(ValueError, match="unknown kernel"):
        smoothed_grad(f, X, "gauss", 0.5, 8)
    with pytest.raises(ValueError, match="finite"):
        smoothed_grad(f, torch.tensor([[0.0, math.nan, 1.0]]), "gaussian", 0.5, 8)
    with pytest.raises(ValueError, match="even"):
        smoothed_grad(f, X, "gaussian", 0.5, 7, sampler="antithetic")
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        smoothed_grad(lambda p: p, X, "gaussian", 0.5, 8)
    with pytest.raises(ValueError, match="NaN or inf"):
        smoothed_grad(lambda p: torch.log(p[:, 0] - 100), X, "gaussian", 0.5, 8,
                      estimator="zeroth")
    with pytest.raises(ValueError, match="zeroth"):
        smoothed_grad(lambda p: (p[:, 0] > 0).to(p.dtype), X, "gaussian", 0.5, 8)
    with pytest.raises(TypeError, match="callable"):
        smoothed_grad("relu", X, "gaussian", 0.5, 8)
    with pytest.raises(TypeError, match="generator"):
        smoothed_grad(f, X, "gaussian", 0.5, 8, generator=0)


@pytest.mark.parametrize("name", NO_SCORE_KERNELS)
@pytest.mark.parametrize("estimator", ["score", "zeroth"])
def test_kernels_without_score_are_refused_with_alternatives(name, estimator):
    with pytest.raises(ValueError) as info:
        smoothed_grad(relu_unit, X, name, 0.5, 8, estimator=estimator)
    msg = str(info.value)
    assert repr(name) in msg and "pathwise" in msg and "gaussian" in msg
