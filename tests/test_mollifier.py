"""Tests of mollify.mollifier: closed-form smoothed functions, limits, grids, validation."""

from __future__ import annotations

import math

import pytest
import torch

from mollify.kernels import KERNELS, kernel
from mollify.mollifier import BOUNDARIES, Mollified, convolve, mollify
from mollify.montecarlo import Estimate

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def Phi(z: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.erfc(-z / math.sqrt(2))


def phi(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def smoothed_abs(x: torch.Tensor, eps: float) -> torch.Tensor:
    bump = eps * math.sqrt(2 / math.pi) * torch.exp(-(x**2) / (2 * eps**2))
    return bump + x * (1 - 2 * Phi(-x / eps))


def smoothed_relu(x: torch.Tensor, eps: float) -> torch.Tensor:
    return x * Phi(x / eps) + eps * phi(x / eps)


X = torch.linspace(-2.0, 2.0, 81, dtype=F64)


# --------------------------------------------------------------------------- exact quadrature


@pytest.mark.parametrize("eps", [0.05, 0.3, 1.0, 2.0])
def test_gaussian_smoothing_of_abs_and_relu_closed_forms(eps):
    f_abs = mollify(torch.abs, "gaussian", eps)
    f_relu = mollify(torch.relu, "gaussian", eps, method="exact")
    assert isinstance(f_abs, Mollified)
    # a kink inside a panel: documented error ~3e-7·eps per unit slope jump (2 for |x|)
    torch.testing.assert_close(f_abs(X), smoothed_abs(X, eps), rtol=0, atol=1e-6 * eps)
    torch.testing.assert_close(f_relu(X), smoothed_relu(X, eps), rtol=0, atol=5e-7 * eps)
    # telling the rule where the kink is makes it exact to rounding
    sharp = mollify(torch.abs, "gaussian", eps, breakpoints=[0.0])
    torch.testing.assert_close(sharp(X), smoothed_abs(X, eps), rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", KERNELS)
def test_quadratic_gains_exactly_eps_squared(name):
    eps = 0.7
    f_eps = mollify(lambda p: p[:, 0] ** 2, name, eps)
    torch.testing.assert_close(f_eps(X), X**2 + eps**2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", KERNELS)
def test_mollification_converges_to_f_as_eps_goes_to_zero(name):
    x = torch.linspace(-3, 3, 31, dtype=F64)
    errors = []
    for eps in (0.1, 0.01, 0.001):
        f_eps = mollify(torch.sin, name, eps)
        errors.append(float((f_eps(x) - torch.sin(x)).abs().max()))
    # sin * η_ε = sin · E cos(ε u) = sin · (1 − ε²/2 + …): second order in ε
    assert errors[2] < 1e-6
    assert errors[0] > errors[1] > errors[2]
    assert errors[1] < 0.02 * errors[0]


def test_gradient_of_exact_mollification():
    eps = 0.4
    x = torch.linspace(-1.5, 1.5, 13, dtype=F64, requires_grad=True)
    mollify(torch.abs, "gaussian", eps, breakpoints=[0.0])(x).sum().backward()
    expected = torch.erf(x.detach() / (eps * math.sqrt(2)))
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=1e-12)


def test_exact_two_dimensional_smoothing():
    eps = 0.3

    def f(p):
        return torch.relu(p[:, 0]) + p[:, 1].abs()

    pts = torch.stack([X[::8], X[::8].flip(0)], 1)
    got = mollify(f, "gaussian", eps, method="exact")(pts)
    expected = smoothed_relu(pts[:, 0], eps) + smoothed_abs(pts[:, 1], eps)
    assert got.shape == (pts.shape[0],)
    torch.testing.assert_close(got, expected, rtol=0, atol=3e-5 * eps)


# -------------------------------------------------------------------------------- Monte Carlo


@pytest.mark.parametrize("sampler", ["mc", "antithetic", "rqmc"])
def test_monte_carlo_mollification_within_error_bars(sampler):
    eps = 0.5
    x = torch.tensor([-1.0, -0.2, 0.0, 0.3, 1.5], dtype=F64)
    f_eps = mollify(torch.abs, "gaussian", eps, method="mc", n=8192, sampler=sampler,
                    generator=gen(1))
    est = f_eps.estimate(x)
    assert isinstance(est, Estimate) and est.mean.shape == (5,) and est.n == 8192
    z = (est.mean - smoothed_abs(x, eps)) / est.stderr
    assert float(z.abs().max()) < 4.5


def test_auto_uses_monte_carlo_in_higher_dimensions():
    eps = 0.2
    x = torch.zeros(4, 3, dtype=F64)
    x[:, 0] = torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=F64)
    f_eps = mollify(lambda p: torch.relu(p[:, 0]), "gaussian", eps, n=20000, generator=gen(2))
    est = f_eps.estimate(x)
    assert torch.isfinite(est.stderr).all()
    # at x = -1 every sample gives relu(...) = 0, so the stderr is 0 and the truth is 1e-8
    err = (est.mean - smoothed_relu(x[:, 0], eps)).abs()
    assert bool((err < 4.5 * est.stderr + 1e-7).all())
    # the callable returns a tensor; same generator state → same values
    a = mollify(lambda p: torch.relu(p[:, 0]), "gaussian", eps, n=500, generator=gen(3))(x)
    b = mollify(lambda p: torch.relu(p[:, 0]), "gaussian", eps, n=500, generator=gen(3))(x)
    assert isinstance(a, torch.Tensor) and torch.equal(a, b)


def test_exact_estimate_reports_nan_stderr():
    est = mollify(torch.abs, "laplace", 0.1).estimate(X)
    assert torch.isnan(est.stderr).all() and est.mean.shape == X.shape


# ------------------------------------------------------------------------------ input shapes


def test_input_and_output_shapes():
    f_eps = mollify(torch.relu, "epanechnikov", 0.1)
    assert f_eps(torch.tensor(0.5, dtype=F64)).shape == ()
    assert f_eps(torch.zeros(7, dtype=F64)).shape == (7,)
    # for (..., d) inputs an (N, 1) output is a vector output of length 1 and is kept
    assert f_eps(torch.zeros(2, 5, 1, dtype=F64)).shape == (2, 5, 1)
    vec = mollify(lambda p: torch.stack([p[:, 0], p[:, 0] ** 2], 1), "gaussian", 0.5)
    out = vec(torch.tensor([1.0, 2.0], dtype=F64))
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.25], [2.0, 4.25]], dtype=F64))
    batch = mollify(lambda p: (p**2).sum(1), "gaussian", 0.1, method="mc", n=64, generator=gen(0))
    assert batch(torch.zeros(3, 4, 2, dtype=F64)).shape == (3, 4)
    assert f_eps(torch.zeros(3, dtype=torch.float32)).dtype == torch.float32
    assert "gaussian" in repr(vec)


def test_chunk_size_does_not_change_results():
    x = torch.linspace(-1, 1, 9, dtype=F64)
    ref = mollify(torch.abs, "biweight", 0.3)(x)
    small = mollify(torch.abs, "biweight", 0.3, chunk_size=100)(x)
    torch.testing.assert_close(small, ref, rtol=0, atol=1e-15)
    mc = mollify(torch.abs, "biweight", 0.3, method="mc", n=1000, generator=gen(4))(x)
    mc2 = mollify(torch.abs, "biweight", 0.3, method="mc", n=1000, generator=gen(4),
                  chunk_size=37)(x)
    assert torch.equal(mc, mc2)


# -------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_bad_eps_raises_value_error(bad):
    with pytest.raises(ValueError, match="eps"):
        mollify(torch.abs, "gaussian", bad)
    with pytest.raises(ValueError, match="eps"):
        convolve(torch.ones(5), torch.arange(5.0), "gaussian", bad)


def test_mollify_argument_errors():
    with pytest.raises(TypeError, match="eps"):
        mollify(torch.abs, "gaussian", "0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        mollify(3, "gaussian", 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        mollify(torch.abs, "gaussian", 0.1, method="quad")
    with pytest.raises(ValueError, match="sampler"):
        mollify(torch.abs, "gaussian", 0.1, sampler="halton")
    with pytest.raises(ValueError, match="n must be"):
        mollify(torch.abs, "gaussian", 0.1, n=0)
    with pytest.raises(ValueError, match="unknown kernel"):
        mollify(torch.abs, "box", 0.1)
    with pytest.raises(ValueError, match="even"):
        mollify(torch.abs, "gaussian", 0.1, method="mc", n=101, sampler="antithetic")
    with pytest.raises(ValueError, match="breakpoints"):
        mollify(torch.abs, "gaussian", 0.1, breakpoints=[math.nan])
    with pytest.raises(ValueError, match="d <= 2"):
        mollify(lambda p: p.sum(1), "gaussian", 0.1, method="exact")(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="vectorized"):
        mollify(lambda p: p.sum(), "gaussian", 0.1)(torch.zeros(4))
    with pytest.raises(ValueError, match="finite"):
        mollify(torch.abs, "gaussian", 0.1)(torch.tensor([0.0, math.nan]))
    with pytest.raises(ValueError, match="NaN or inf"):
        mollify(torch.log, "gaussian", 0.1)(torch.tensor([0.0]))


# ----------------------------------------------------------------------------------- convolve


GRID = torch.linspace(0.0, 10.0, 201, dtype=F64)  # h = 0.05


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_convolve_keeps_constants(name, boundary):
    values = torch.full((201,), 3.5, dtype=F64)
    out = convolve(values, GRID, name, 0.4, boundary=boundary, fill=3.5)
    torch.testing.assert_close(out, values, rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", KERNELS)
def test_convolve_keeps_linear_ramps_away_from_boundaries(name):
    k = kernel(name)
    eps = 0.3 if k.is_compact else 0.1  # the reach R·eps must leave an interior
    values = 2.0 * GRID - 1.0
    out = convolve(values, GRID, k, eps)
    reach = k.quadrature_radius() * eps
    inside = (GRID > reach + 0.1) & (GRID < 10 - reach - 0.1)
    assert inside.sum() > 50
    torch.testing.assert_close(out[inside], values[inside], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", KERNELS)
def test_convolve_of_delta_is_normalized_sampled_kernel(name):
    k = kernel(name)
    eps, h = 0.4, 0.05
    values = torch.zeros(201, dtype=F64)
    values[100] = 1.0
    out = convolve(values, GRID, k, eps, boundary="constant")
    reach = int(math.floor(k.quadrature_radius() * eps / h + 1e-9))  # documented truncation
    offsets = torch.arange(-reach, reach + 1, dtype=F64) * h
    weights = k.pdf(offsets / eps)
    weights = weights / weights.sum()
    expected = torch.zeros(201 + 2 * reach, dtype=F64)
    expected[100 : 100 + 2 * reach + 1] = weights
    torch.testing.assert_close(out, expected[reach : reach + 201], rtol=1e-12, atol=1e-15)
    if k.is_compact:
        assert float(out.sum()) == pytest.approx(1.0, abs=1e-14)


def test_convolve_matches_exact_mollification_of_smooth_data():
    values = torch.sin(GRID)
    out = convolve(values, GRID, "gaussian", 0.2, boundary="periodic")
    # the grid is not a period of sin, so compare well inside
    mid = slice(60, 141)
    torch.testing.assert_close(out[mid], torch.sin(GRID[mid]) * math.exp(-0.02), rtol=0, atol=1e-10)


def test_convolve_boundaries():
    v = torch.arange(5, dtype=F64)
    grid = torch.arange(5, dtype=F64)
    delta = torch.tensor([0, 0, 1.0, 0, 0], dtype=F64)
    w = convolve(delta, grid, "triangular", 0.5, boundary="constant")
    # reflect mirrors about the end sample: values beyond are 1, 2 on the left
    left = convolve(v, grid, "triangular", 0.5, boundary="reflect")[0]
    assert float(left) == pytest.approx(float(w[1] * 1 + w[2] * 0 + w[3] * 1))
    near = convolve(v, grid, "triangular", 0.5, boundary="nearest")[0]
    assert float(near) == pytest.approx(float(w[3] * 1))
    periodic = convolve(v, grid, "triangular", 0.5, boundary="periodic")
    assert float(periodic.sum()) == pytest.approx(float(v.sum()))  # mass is conserved
    assert float(periodic[0]) == pytest.approx(float(w[1] * 4 + w[3] * 1))
    trunc = convolve(v, grid, "triangular", 0.5, boundary="truncate")[0]
    assert float(trunc) == pytest.approx(float(w[3] * 1 / (w[2] + w[3])))
    fill = convolve(v, grid, "triangular", 0.5, boundary="constant", fill=10.0)[0]
    assert float(fill) == pytest.approx(float(w[1] * 10 + w[3] * 1))


def test_convolve_narrow_kernel_is_identity_and_wide_kernel_uses_fft():
    values = torch.randn(201, dtype=F64, generator=gen(5))
    torch.testing.assert_close(convolve(values, GRID, "bump", 1e-3), values, rtol=0, atol=0)
    # a kernel wider than the data (FFT path) agrees with a direct sum
    eps = 3.0
    out = convolve(values, GRID, "gaussian", eps, boundary="periodic")
    k = kernel("gaussian")
    radius = int(math.floor(k.quadrature_radius() * eps / 0.05 + 1e-9))
    offsets = torch.arange(-radius, radius + 1)
    weights = k.pdf(offsets.to(F64) * 0.05 / eps)
    weights = weights / weights.sum()
    index = (torch.arange(201)[:, None] - offsets[None, :]) % 201
    direct = (values[index] * weights).sum(1)
    torch.testing.assert_close(out, direct, rtol=0, atol=1e-12)


def test_convolve_two_dimensional():
    gx = torch.linspace(-1, 1, 41, dtype=F64)
    gy = torch.linspace(0, 3, 61, dtype=F64)
    delta = torch.zeros(41, 61, dtype=F64)
    delta[20, 30] = 1.0
    out = convolve(delta, (gx, gy), "epanechnikov", 0.2, boundary="constant")
    wx = convolve(torch.eye(41, dtype=F64)[20], gx, "epanechnikov", 0.2, boundary="constant")
    wy = convolve(torch.eye(61, dtype=F64)[30], gy, "epanechnikov", 0.2, boundary="constant")
    torch.testing.assert_close(out, wx[:, None] * wy[None, :], rtol=1e-12, atol=1e-15)
    const = torch.full((41, 61), 2.0, dtype=F64)
    smoothed = convolve(const, [gx, gy], "gaussian", 0.3)
    torch.testing.assert_close(smoothed, const, rtol=0, atol=1e-13)
    plane = gx[:, None] + 2 * gy[None, :]
    smooth = convolve(plane, (gx, gy), "biweight", 0.1)
    torch.testing.assert_close(smooth[10:31, 15:46], plane[10:31, 15:46], rtol=0, atol=1e-12)
    # batched: leading axes are left alone
    batch = torch.stack([delta, 2 * delta])
    out2 = convolve(batch, (gx, gy), "epanechnikov", 0.2, boundary="constant")
    torch.testing.assert_close(out2[1], 2 * out, rtol=1e-12, atol=1e-15)
    # one grid smooths only the last axis
    rows = convolve(delta, gy, "epanechnikov", 0.2, boundary="constant")
    torch.testing.assert_close(rows[20], wy, rtol=1e-12, atol=1e-15)
    assert float(rows[19].abs().sum()) == 0.0


def test_convolve_validation():
    grid = torch.arange(5, dtype=F64)
    with pytest.raises(ValueError, match="uniformly spaced"):
        convolve(torch.ones(5), torch.tensor([0.0, 1.0, 2.0, 4.0, 5.0]), "gaussian", 1.0)
    with pytest.raises(ValueError, match="4 points"):
        convolve(torch.ones(5), grid[:4], "gaussian", 1.0)
    with pytest.raises(ValueError, match="boundary"):
        convolve(torch.ones(5), grid, "gaussian", 1.0, boundary="wrap")
    with pytest.raises(ValueError, match="finite"):
        convolve(torch.tensor([1.0, math.nan, 1.0, 1.0, 1.0]), grid, "gaussian", 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        convolve(torch.ones(1), torch.zeros(1), "gaussian", 1.0)
    with pytest.raises(TypeError, match="grid"):
        convolve(torch.ones(5), "grid", "gaussian", 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 dimension"):
        convolve(torch.ones(5), (grid, grid), "gaussian", 1.0)
    out = convolve(torch.ones(5, dtype=torch.float32), grid.float(), "gaussian", 1.0)
    assert out.dtype == torch.float32 and out.shape == (5,)
