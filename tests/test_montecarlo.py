"""Tests of mollify.montecarlo: closed-form integrals, coverage, variance reduction, invariances."""

from __future__ import annotations

import math

import pytest
import torch

from mollify.kernels import KERNELS, kernel
from mollify.montecarlo import SAMPLERS, Estimate, PointStream, _TreeSum, integrate, sample_points

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def square(u: torch.Tensor) -> torch.Tensor:
    return u[:, 0] ** 2


def exp_sum(u: torch.Tensor) -> torch.Tensor:
    """exp(0.3 Σ u_i): Gaussian mean exp(0.045 d)."""
    return torch.exp(0.3 * u.sum(1))


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("name", KERNELS)
def test_second_moment_is_one_for_every_kernel(name):
    est = integrate(square, name, 20000, generator=gen(0))
    assert est.n == 20000
    assert est.mean.shape == ()
    assert abs(float(est.mean) - 1.0) < 4 * float(est.stderr)
    est = integrate(square, name, 4096, sampler="rqmc", replicates=8, generator=gen(1))
    assert abs(float(est.mean) - 1.0) < 5 * float(est.stderr) + 1e-12


@pytest.mark.parametrize("a", [0.5, 1.0, 2.0])
def test_gaussian_characteristic_function(a):
    est = integrate(lambda u: torch.cos(a * u[:, 0]), "gaussian", 20000, generator=gen(int(10 * a)))
    assert abs(float(est.mean) - math.exp(-a * a / 2)) < 4 * float(est.stderr)


@pytest.mark.parametrize("sampler", ["mc", "antithetic", "rqmc"])
def test_five_dimensional_integrals(sampler):
    est = integrate(exp_sum, "gaussian", 8192, dim=5, sampler=sampler, generator=gen(3))
    assert abs(float(est.mean) - math.exp(0.045 * 5)) < 4 * float(est.stderr)
    # uniform kernel on [-√3, √3]: E cos(u) = sin(√3)/√3 per coordinate
    truth = (math.sin(math.sqrt(3)) / math.sqrt(3)) ** 5
    est = integrate(
        lambda u: torch.cos(u).prod(1), "uniform", 8192, dim=5, sampler=sampler, generator=gen(4)
    )
    assert abs(float(est.mean) - truth) < 4 * float(est.stderr)


def test_qmc_is_accurate_and_has_no_error_bar():
    est = integrate(exp_sum, "gaussian", 2**14, dim=5, sampler="qmc")
    assert math.isnan(float(est.stderr))
    assert abs(float(est.mean) - math.exp(0.225)) < 1e-3
    again = integrate(exp_sum, "gaussian", 2**14, dim=5, sampler="qmc", generator=gen(99))
    assert torch.equal(est.mean, again.mean)  # deterministic, the generator is not used


def test_vector_valued_integrand():
    def f(u):
        return torch.stack([u[:, 0], u[:, 0] ** 2, torch.cos(u[:, 1])], dim=1)

    est = integrate(f, "gaussian", 20000, dim=2, generator=gen(5))
    truth = torch.tensor([0.0, 1.0, math.exp(-0.5)], dtype=F64)
    assert est.mean.shape == (3,) and est.stderr.shape == (3,)
    assert torch.all((est.mean - truth).abs() < 4 * est.stderr)


def test_boolean_integrand_gives_probabilities():
    est = integrate(lambda u: u[:, 0] < 0, "logistic", 20000, generator=gen(6))
    assert est.mean.dtype == F64
    assert abs(float(est.mean) - 0.5) < 4 * float(est.stderr)


# ------------------------------------------------------------------------- error bars honest


@pytest.mark.parametrize("sampler", ["mc", "antithetic"])
def test_confidence_intervals_cover_the_truth(sampler):
    truth = math.exp(-0.5)
    hits = 0
    reps = 200
    for seed in range(reps):
        est = integrate(
            lambda u: torch.cos(u[:, 0]) + u[:, 0] ** 3, "gaussian", 200, sampler=sampler,
            generator=gen(1000 + seed),
        )
        lo, hi = est.ci(0.95)
        hits += int(float(lo) <= truth <= float(hi))
    assert 0.90 <= hits / reps <= 0.99


def test_rqmc_stderr_is_honest():
    truth = math.exp(0.225)
    z = []
    for seed in range(40):
        est = integrate(exp_sum, "gaussian", 1024, dim=5, sampler="rqmc", replicates=16,
                        generator=gen(seed))
        z.append((float(est.mean) - truth) / float(est.stderr))
    z = torch.tensor(z)
    assert 0.5 < float(z.std()) < 1.6
    assert float(z.abs().max()) < 6


def test_rqmc_and_antithetic_beat_plain_mc():
    truth = math.exp(0.225)

    def rmse(sampler):
        errs = [
            float(integrate(exp_sum, "gaussian", 4096, dim=5, sampler=sampler,
                            generator=gen(s)).mean) - truth
            for s in range(20)
        ]
        return math.sqrt(sum(e * e for e in errs) / len(errs))

    mc, anti, rqmc = rmse("mc"), rmse("antithetic"), rmse("rqmc")
    assert anti < 0.7 * mc
    assert rqmc < 0.2 * mc
    qmc_err = abs(float(integrate(exp_sum, "gaussian", 4096, dim=5, sampler="qmc").mean) - truth)
    assert qmc_err < 0.2 * mc


def test_control_variate_reduces_stderr():
    f = lambda u: torch.exp(u[:, 0])  # noqa: E731
    plain = integrate(f, "gaussian", 20000, generator=gen(7))
    cv = integrate(f, "gaussian", 20000, generator=gen(7), control_variate=(lambda u: u[:, 0], 0.0))
    assert float(cv.stderr) < 0.85 * float(plain.stderr)
    assert abs(float(cv.mean) - math.exp(0.5)) < 4 * float(cv.stderr)
    # a perfect control variate leaves no error
    exact = integrate(square, "laplace", 1000, generator=gen(8), control_variate=(square, 1.0))
    assert abs(float(exact.mean) - 1.0) < 1e-12
    # works with rqmc and vector outputs
    g = lambda u: torch.stack([u[:, 0], u[:, 0]], 1)  # noqa: E731
    f2 = lambda u: torch.stack([torch.exp(u[:, 0]), torch.sinh(u[:, 0])], 1)  # noqa: E731
    est = integrate(f2, "gaussian", 4096, sampler="rqmc", generator=gen(9),
                    control_variate=(g, 0.0))
    truth = torch.tensor([math.exp(0.5), 0.0], dtype=F64)
    assert torch.all((est.mean - truth).abs() < 5 * est.stderr + 1e-12)


# ------------------------------------------------------------------------------- invariances


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_results_do_not_depend_on_chunk_size(sampler):
    def f(u):
        return torch.stack([torch.cos(u).sum(1), torch.exp(0.2 * u[:, 0])], 1)

    kwargs = dict(dim=3, sampler=sampler, replicates=8)
    ref = integrate(f, "gaussian", 6000, generator=gen(11), **kwargs)
    for chunk in (1, 2, 7, 64, 1000, 4097, 5000, 10**6):
        est = integrate(f, "gaussian", 6000, generator=gen(11), chunk_size=chunk, **kwargs)
        assert torch.equal(est.mean, ref.mean), chunk
        assert torch.equal(est.stderr, ref.stderr, ) or (
            torch.isnan(est.stderr).all() and torch.isnan(ref.stderr).all()
        ), chunk


def test_same_generator_same_result_and_generator_advances():
    a = integrate(square, "bump", 3000, generator=gen(12))
    b = integrate(square, "bump", 3000, generator=gen(12))
    assert torch.equal(a.mean, b.mean) and torch.equal(a.stderr, b.stderr)
    g = gen(12)
    first = integrate(square, "bump", 3000, generator=g)
    second = integrate(square, "bump", 3000, generator=g)
    assert torch.equal(first.mean, a.mean)
    assert not torch.equal(first.mean, second.mean)


def test_global_rng_used_when_no_generator():
    torch.manual_seed(0)
    a = integrate(square, "gaussian", 500)
    torch.manual_seed(0)
    b = integrate(square, "gaussian", 500)
    assert torch.equal(a.mean, b.mean)


def test_float32_accumulation_and_points():
    # float32 streams come from float32 normal numbers, float64 ones from inverted uniforms:
    # other draws, the same law — the estimates agree within their standard errors
    est = integrate(square, "gaussian", 20000, generator=gen(13), dtype=torch.float32)
    assert est.mean.dtype == torch.float32
    ref = integrate(square, "gaussian", 20000, generator=gen(13))
    assert abs(float(est.mean) - float(ref.mean)) < 4 * math.hypot(float(est.stderr),
                                                                    float(ref.stderr))


@pytest.mark.parametrize("sampler", ["mc", "antithetic"])
def test_float32_points_share_normal_numbers_across_kernels(sampler):
    # common random numbers: in float32 every kernel maps the same z ~ N(0, 1) through F⁻¹(Φ(z))
    def points(name):
        return PointStream(name, 5000, 3, sampler=sampler, generator=gen(21),
                           dtype=torch.float32).points()

    z = points("gaussian")
    for name in ("laplace", "uniform", "bump"):
        k = kernel(name)
        u = points(name)
        expected = k.icdf(torch.special.ndtr(z.double()).clamp(1e-17, 1 - 1e-16)).float()
        torch.testing.assert_close(u, expected, rtol=1e-6, atol=1e-6)
        assert abs(float(u.double().var()) - 1.0) < 0.05  # still unit variance
    assert abs(float(z.double().mean())) < 0.05 and abs(float(z.double().var()) - 1) < 0.05


# ----------------------------------------------------------------------------- point streams


def test_point_stream_slices_are_consistent():
    for sampler in SAMPLERS:
        s = PointStream("logistic", 9000, 2, sampler=sampler, replicates=4, generator=gen(14))
        full = s.points(0, 9000)
        assert full.shape == (9000, 2) and torch.isfinite(full).all()
        for lo, hi in [(0, 1), (3, 4100), (4095, 8193), (8999, 9000), (2250, 4500)]:
            assert torch.equal(s.points(lo, hi), full[lo:hi]), (sampler, lo, hi)
        starts = [start for start, _ in s.chunks(1000)]
        assert starts[0] == 0 and starts == sorted(starts)
        assert torch.equal(torch.cat([p for _, p in s.chunks(777)]), full)


def test_antithetic_and_rqmc_layout():
    p = sample_points("cosine", 10, 3, sampler="antithetic", generator=gen(15))
    assert torch.equal(p[0::2], -p[1::2])
    s = PointStream("gaussian", 64, 2, sampler="rqmc", replicates=4, generator=gen(16))
    assert s.replicates == 4 and s.group_size == 16
    chunks = list(s.chunks(10))
    assert all(start // 16 == (start + len(pts) - 1) // 16 for start, pts in chunks)
    full = s.points()
    # each replicate is a scrambled (0, m, 2)-net: its 1-D projections are stratified
    u = kernel("gaussian").cdf(full[:16, 0])
    assert torch.equal(torch.sort((u * 16).floor()).values, torch.arange(16, dtype=F64))
    assert not torch.equal(full[:16], full[16:32])


def test_qmc_points_are_centred_sobol():
    p = sample_points("uniform", 8, 1, sampler="qmc")
    u = torch.sort(p[:, 0]).values / (2 * math.sqrt(3)) + 0.5
    torch.testing.assert_close(u, (torch.arange(8, dtype=F64) + 0.5) / 8)
    g = sample_points("gaussian", 1000, 4, sampler="qmc")
    assert torch.isfinite(g).all()


def test_tree_sum_is_chunk_invariant():
    x = torch.randn(1000, 3, dtype=F64, generator=gen(17)) * 1e3 + 1e6
    ref = _TreeSum()
    ref.add(x)
    for sizes in ([1] * 1000, [3, 997], [511, 1, 488], [999, 1], [100] * 10):
        acc, start = _TreeSum(), 0
        for s in sizes:
            acc.add(x[start : start + s])
            start += s
        assert acc.count == 1000
        assert torch.equal(acc.total(), ref.total())
    torch.testing.assert_close(ref.total(), x.sum(0), rtol=1e-15, atol=0)


# ------------------------------------------------------------------------------ bad inputs


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n must be >= 1"):
        integrate(square, "gaussian", 0)
    with pytest.raises(TypeError, match="n must be an int"):
        integrate(square, "gaussian", 10.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim must be >= 1"):
        integrate(square, "gaussian", 10, dim=0)
    with pytest.raises(ValueError) as err:
        integrate(square, "gaussian", 10, sampler="sobol")
    for name in SAMPLERS:
        assert repr(name) in str(err.value)
    with pytest.raises(ValueError, match="unknown kernel"):
        integrate(square, "gauss", 10)
    with pytest.raises(ValueError, match="even"):
        integrate(square, "gaussian", 11, sampler="antithetic")
    with pytest.raises(ValueError, match="multiple of replicates"):
        integrate(square, "gaussian", 100, sampler="rqmc", replicates=16)
    with pytest.raises(ValueError, match="replicates"):
        integrate(square, "gaussian", 100, sampler="rqmc", replicates=1)
    with pytest.raises(ValueError, match="chunk_size"):
        integrate(square, "gaussian", 10, chunk_size=0)
    with pytest.raises(TypeError, match="generator"):
        integrate(square, "gaussian", 10, generator=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        integrate(3, "gaussian", 10)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dtype"):
        integrate(square, "gaussian", 10, dtype=torch.int32)
    with pytest.raises(TypeError, match="control_variate"):
        integrate(square, "gaussian", 10, control_variate=square)  # type: ignore[arg-type]


def test_non_vectorized_integrand_is_explained():
    with pytest.raises(ValueError, match=r"must be vectorized.*\(N, \.\.\.\)"):
        integrate(lambda u: u.sum(), "gaussian", 10)
    with pytest.raises(ValueError, match="vectorized"):
        integrate(lambda u: u[0], "gaussian", 10, dim=3)
    with pytest.raises(ValueError, match="vectorized"):
        integrate(lambda u: 1.0, "gaussian", 10)
    with pytest.raises(TypeError, match="must return a tensor"):
        integrate(lambda u: object(), "gaussian", 10)


def test_nan_or_inf_integrand_is_rejected():
    with pytest.raises(ValueError, match="NaN or inf"):
        integrate(lambda u: torch.log(u[:, 0]), "gaussian", 100, generator=gen(0))
    with pytest.raises(ValueError, match="NaN or inf"):
        integrate(lambda u: 1 / (u[:, 0] * 0), "uniform", 100, generator=gen(0))


# ---------------------------------------------------------------------------------- Estimate


def test_estimate_repr_and_ci():
    e = Estimate(torch.tensor(0.998713, dtype=F64), torch.tensor(0.00423, dtype=F64), 1000)
    assert repr(e) == "Estimate(0.9987 ± 0.0042, n=1000)"
    lo, hi = e.ci(0.95)
    assert float(hi - lo) == pytest.approx(2 * 1.959963984540054 * 0.00423)
    assert "nan" in repr(Estimate(torch.tensor(1.0), torch.tensor(math.nan), 5))
    v = Estimate(torch.zeros(3), torch.ones(3), 10)
    assert repr(v).count("±") == 3
    big = Estimate(torch.zeros(4, 4), torch.full((4, 4), 0.5), 10)
    assert "shape (4, 4)" in repr(big) and "0.5" in repr(big)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="level"):
            e.ci(bad)
    with pytest.raises(ValueError, match="shape"):
        Estimate(torch.zeros(2), torch.zeros(3), 1)
    with pytest.raises(dataclasses_frozen_error()):
        e.n = 3  # type: ignore[misc]


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_single_sample_has_nan_stderr():
    est = integrate(square, "gaussian", 1, generator=gen(0))
    assert math.isnan(float(est.stderr)) and math.isfinite(float(est.mean))


@pytest.mark.parametrize("sampler", ["mc", "antithetic"])
def test_point_stream_of_a_large_image_draws_small_blocks(sampler):
    # a 224×224×3 image: a 4096-row block would hold 617 M numbers (4.9 GB in float64)
    dim = 3 * 224 * 224
    stream = PointStream("gaussian", 12, dim, sampler=sampler, replicates=2,
                         generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    assert stream.block_rows == 4
    whole = stream.points()
    assert whole.shape == (12, dim) and bool(torch.isfinite(whole).all())
    parts = torch.cat([p for _, p in stream.chunks(2)])
    assert torch.equal(parts, whole)
    assert abs(float(whole.std()) - 1.0) < 0.01
    with pytest.raises(ValueError, match="dim must be <= 21201"):  # Sobol's limit, said clearly
        PointStream("gaussian", 12, dim, sampler="rqmc", replicates=2)


def test_short_streams_equal_the_first_rows_of_a_full_block():
    # only the rows used are drawn; on the CPU they equal the first rows of the full block, so
    # streams of n < 4096 points are what they were when whole blocks were drawn
    long = PointStream("laplace", 5000, 3, generator=torch.Generator().manual_seed(7))
    short = PointStream("laplace", 50, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(short.points(), long.points(0, 50))
