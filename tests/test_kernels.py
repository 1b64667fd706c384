"""Tests of mollify.kernels: normalization, unit variance, CDF/quantile, score, sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mollify.kernels import KERNELS, BumpKernel, Kernel, kernel

F64 = torch.float64
HAS_SCORE = {"gaussian", "laplace", "logistic", "biweight", "triweight", "bump"}
KINKS_AT_ZERO = {"laplace", "triangular"}


def gl_rule(lo: float, hi: float, panels: int = 400, q: int = 20):
    """Composite Gauss–Legendre nodes and weights on [lo, hi] (float64); 0 is an edge if inside."""
    x, w = np.polynomial.legendre.leggauss(q)
    if lo < 0 < hi:
        half = panels // 2 + 1
        edges = np.concatenate([np.linspace(lo, 0, half), np.linspace(0, hi, half)[1:]])
    else:
        edges = np.linspace(lo, hi, panels + 1)
    a, b = edges[:-1, None], edges[1:, None]
    t = (0.5 * (a + b) + 0.5 * (b - a) * x).ravel()
    wt = (0.5 * (b - a) * w).ravel()
    return torch.tensor(t, dtype=F64), torch.tensor(wt, dtype=F64)


def integration_range(k: Kernel) -> tuple[float, float]:
    return k.support if k.is_compact else (-45.0, 45.0)


# ------------------------------------------------------------------------------------ factory


def test_names_in_book_order():
    assert tuple(KERNELS) == (
        "gaussian", "laplace", "logistic", "uniform", "triangular",
        "epanechnikov", "biweight", "triweight", "cosine", "bump",
    )


@pytest.mark.parametrize("name", KERNELS)
def test_factory_returns_named_kernel(name):
    k = kernel(name)
    assert isinstance(k, Kernel)
    assert k.name == name
    assert k.variance == 1.0
    assert kernel(k) is k
    assert kernel(name.upper()) == k
    assert name in repr(k)
    assert hash(k) == hash(kernel(name))


def test_unknown_kernel_lists_valid_names():
    with pytest.raises(ValueError) as err:
        kernel("gauss")
    for name in KERNELS:
        assert name in str(err.value)


def test_factory_type_errors():
    with pytest.raises(TypeError):
        kernel(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        kernel("gaussian", scale=2.0)


# ------------------------------------------------------------------------- densities and moments


@pytest.mark.parametrize("name", KERNELS)
def test_pdf_integrates_to_one_with_unit_variance(name):
    k = kernel(name)
    t, w = gl_rule(*integration_range(k))
    p = k.pdf(t)
    assert p.dtype == F64
    assert torch.all(p >= 0)
    assert abs(float((w * p).sum()) - 1) < 1e-8
    assert abs(float((w * p * t).sum())) < 1e-8
    assert abs(float((w * p * t * t).sum()) - 1) < 1e-8


@pytest.mark.parametrize("name", KERNELS)
def test_log_prob_pdf_consistent_and_symmetric(name):
    k = kernel(name)
    lo, hi = integration_range(k)
    t = torch.linspace(0.999 * lo, 0.999 * hi, 1001, dtype=F64)
    torch.testing.assert_close(k.log_prob(t).exp(), k.pdf(t), rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(k.pdf(-t), k.pdf(t), rtol=1e-13, atol=0)
    torch.testing.assert_close(k.cdf(-t), 1 - k.cdf(t), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", KERNELS)
def test_cdf_is_integral_of_pdf(name):
    k = kernel(name)
    lo, _ = integration_range(k)
    for x in [-1.7, -0.6, 0.0, 0.4, 1.3]:
        t, w = gl_rule(lo, x, panels=200)
        assert abs(float((w * k.pdf(t)).sum()) - float(k.cdf(torch.tensor(x, dtype=F64)))) < 1e-12


@pytest.mark.parametrize("name", KERNELS)
def test_outside_support(name):
    k = kernel(name)
    lo, hi = k.support
    assert k.is_compact == math.isfinite(hi)
    assert float(k.icdf(torch.tensor(0.0, dtype=F64))) == lo
    assert float(k.icdf(torch.tensor(1.0, dtype=F64))) == hi
    assert torch.isnan(k.icdf(torch.tensor([-0.1, 1.1], dtype=F64))).all()
    if k.is_compact:
        out = torch.tensor([lo - 0.1, hi + 0.1], dtype=F64)
        assert torch.equal(k.pdf(out), torch.zeros(2, dtype=F64))
        assert torch.equal(k.log_prob(out), torch.full((2,), -math.inf, dtype=F64))
        assert torch.equal(k.cdf(out), torch.tensor([0.0, 1.0], dtype=F64))
        assert torch.isnan(k.score(out)).all()


# ---------------------------------------------------------------------------- quantile function


@pytest.mark.parametrize("name", KERNELS)
def test_icdf_inverts_cdf(name):
    k = kernel(name)
    lo = k.support[0] if k.is_compact else (-8.0 if name == "gaussian" else -30.0)
    t = torch.linspace(lo, 0.0, 4001, dtype=F64)[1:]
    u = k.cdf(t)
    keep = u > 1e-12  # below that, t itself is not resolved by its float64 CDF near ±support
    torch.testing.assert_close(k.icdf(u[keep]), t[keep], rtol=0, atol=1e-12)
    # upper half by symmetry, F⁻¹(1 − u) = −F⁻¹(u) and round trips in u
    uu = torch.linspace(1e-6, 1 - 1e-6, 2001, dtype=F64)
    torch.testing.assert_close(k.cdf(k.icdf(uu)), uu, rtol=1e-12, atol=1e-15)
    upper = 1 - uu  # 1 − upper is exact, so the symmetry must hold to rounding
    torch.testing.assert_close(k.icdf(upper), -k.icdf(1 - upper), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("name", KERNELS)
def test_icdf_relative_accuracy_in_lower_tail(name):
    k = kernel(name)
    u = torch.logspace(-10, math.log10(0.5), 200, dtype=F64)
    # The uniform quantile -√3 + 2√3u sits next to -√3, where float64 resolves t only to ~2e-16
    # absolutely, i.e. u to ~1e-6 relatively at u = 1e-10; the other kernels' quantiles move away.
    rtol = 1e-5 if name == "uniform" else 1e-9
    torch.testing.assert_close(k.cdf(k.icdf(u)), u, rtol=rtol, atol=0)


def test_gaussian_quantiles_match_known_values():
    k = kernel("gaussian")
    u = torch.tensor([0.025, 0.5, 0.84134474606854293, 0.975], dtype=F64)
    expected = torch.tensor([-1.959963984540054, 0.0, 1.0, 1.959963984540054], dtype=F64)
    torch.testing.assert_close(k.icdf(u), expected, rtol=0, atol=1e-14)


# --------------------------------------------------------------------------------------- score


@pytest.mark.parametrize("name", KERNELS)
def test_score_equals_autograd_derivative_of_log_prob(name):
    k = kernel(name)
    lo, hi = integration_range(k)
    t = torch.linspace(0.98 * max(lo, -6.0), 0.98 * min(hi, 6.0), 400, dtype=F64)
    if name in KINKS_AT_ZERO:
        t = t[t.abs() > 1e-6]
    t.requires_grad_(True)
    k.log_prob(t).sum().backward()
    torch.testing.assert_close(k.score(t.detach()), t.grad, rtol=1e-10, atol=1e-12)


def test_closed_form_scores():
    t = torch.tensor([-1.2, 0.3, 2.0], dtype=F64)
    torch.testing.assert_close(kernel("gaussian").score(t), -t)
    torch.testing.assert_close(kernel("laplace").score(t), -math.sqrt(2) * torch.sign(t))


@pytest.mark.parametrize("name", KERNELS)
def test_fisher_information_and_has_score(name):
    k = kernel(name)
    assert k.has_score == (name in HAS_SCORE)
    if name in HAS_SCORE:
        lo, hi = integration_range(k)
        t, w = gl_rule(lo, hi, panels=800, q=24)
        p, s = k.pdf(t), k.score(t)
        fisher = float((w * torch.where(p > 0, p * s * s, torch.zeros_like(p))).sum())
        assert abs(fisher - k.fisher_information) < 1e-7 * max(1, fisher)
        # the score has mean zero (integration by parts works)
        assert abs(float((w * torch.where(p > 0, p * s, torch.zeros_like(p))).sum())) < 1e-9
    else:
        assert not math.isfinite(k.fisher_information)


# --------------------------------------------------------------------------------------- bump


def test_bump_constants_against_brute_force_quadrature():
    # Trapezoid rule on a C-infinity function whose derivatives all vanish at ±1 converges
    # faster than any power of the step: an independent brute-force check.
    x = np.linspace(-1.0, 1.0, 20001)
    inner = x[1:-1]
    g = np.zeros_like(x)
    g[1:-1] = np.exp(-1.0 / ((1 - inner) * (1 + inner)))
    h = x[1] - x[0]
    z = h * g.sum()
    var = h * (x * x * g).sum() / z
    assert abs(BumpKernel.normalizing_constant() - z) < 1e-13
    assert abs(BumpKernel.profile_variance() - var) < 1e-13
    assert abs(BumpKernel.normalizing_constant() - 0.443993816168079437823) < 1e-14
    assert abs(BumpKernel.profile_variance() - 0.158113636263798230228) < 1e-14


def test_bump_support_and_pdf_peak():
    k = kernel("bump")
    s = math.sqrt(BumpKernel.profile_variance())
    assert k.support == pytest.approx((-1 / s, 1 / s), rel=1e-15)
    expected_peak = s * math.exp(-1.0) / BumpKernel.normalizing_constant()
    assert float(k.pdf(torch.tensor(0.0, dtype=F64))) == pytest.approx(expected_peak, rel=1e-14)


# ------------------------------------------------------------------------------------ sampling


def ks_statistic(samples: torch.Tensor, cdf) -> float:
    x, _ = torch.sort(samples.reshape(-1).to(F64))
    n = x.numel()
    c = cdf(x)
    i = torch.arange(1, n + 1, dtype=F64)
    return float(torch.maximum(i / n - c, c - (i - 1) / n).max())


@pytest.mark.parametrize("name", KERNELS)
def test_samples_pass_kolmogorov_smirnov(name):
    k = kernel(name)
    n = 20000
    x = k.sample((n,), generator=torch.Generator().manual_seed(1234), dtype=F64)
    assert torch.isfinite(x).all()
    assert ks_statistic(x, k.cdf) < 1.63 / math.sqrt(n)  # alpha ~ 0.01


@pytest.mark.parametrize("name", KERNELS)
def test_sampling_is_reproducible(name):
    k = kernel(name)
    a = k.sample((50, 3), generator=torch.Generator().manual_seed(7), dtype=F64)
    b = k.sample((50, 3), generator=torch.Generator().manual_seed(7), dtype=F64)
    c = k.sample((50, 3), generator=torch.Generator().manual_seed(8), dtype=F64)
    assert a.shape == (50, 3)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    lo, hi = k.support
    assert bool(((a >= lo) & (a <= hi)).all())


def test_sample_dtype_device_and_shape_handling():
    k = kernel("epanechnikov")
    g = torch.Generator().manual_seed(0)
    assert k.sample(5, generator=g).dtype == torch.get_default_dtype()
    assert k.sample((), generator=g).shape == ()
    x = k.sample((4, 2), generator=g, device="cpu", dtype=torch.float32)
    assert x.dtype == torch.float32 and x.device.type == "cpu"
    with pytest.raises(TypeError):
        k.sample((3,), dtype=torch.int64)
    with pytest.raises(TypeError):
        k.sample((3,), generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        k.sample((-1,))


# ------------------------------------------------------------------------ dtype and helpers


@pytest.mark.parametrize("name", KERNELS)
def test_methods_follow_input_dtype(name):
    k = kernel(name)
    t32 = torch.linspace(-1.0, 1.0, 9, dtype=torch.float32)
    for fn in (k.pdf, k.log_prob, k.cdf):
        assert fn(t32).dtype == torch.float32
        torch.testing.assert_close(fn(t32).double(), fn(t32.double()), rtol=1e-5, atol=1e-6)
    u32 = torch.linspace(0.05, 0.95, 9, dtype=torch.float32)
    assert k.icdf(u32).dtype == torch.float32
    assert k.pdf(0).dtype == torch.get_default_dtype()  # Python numbers → default dtype


def test_product_kernel_helpers():
    k = kernel("uniform")
    t = torch.zeros(3, 2, dtype=F64)
    torch.testing.assert_close(k.pdf_nd(t), torch.full((3,), 1 / 12, dtype=F64))
    g = kernel("gaussian")
    t = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    expected = -0.5 * (t * t).sum(-1) - 2 * math.log(2 * math.pi)
    torch.testing.assert_close(g.log_prob_nd(t), expected)


def test_scaled_pdf():
    k = kernel("gaussian")
    t = torch.linspace(-1, 1, 5, dtype=F64)
    eps = 0.3
    expected = torch.exp(-0.5 * (t / eps) ** 2) / (eps * math.sqrt(2 * math.pi))
    torch.testing.assert_close(k.scaled_pdf(t, eps), expected)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="eps"):
            k.scaled_pdf(t, bad)


def test_quadrature_radius():
    assert kernel("triweight").quadrature_radius() == 3.0
    r = kernel("laplace").quadrature_radius(1e-10)
    assert float(2 * kernel("laplace").cdf(torch.tensor(-r, dtype=F64))) == pytest.approx(1e-10)
    with pytest.raises(ValueError):
        kernel("gaussian").quadrature_radius(0.0)
