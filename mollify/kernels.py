"""Mollifier kernels as objects, in the style of ``torch.distributions``.

A kernel is a symmetric probability density η on R. Every kernel here is **standardized to unit
variance**, ∫ t² η(t) dt = 1, so that ``eps`` always means the standard deviation of the noise per
coordinate (SmoothGrad's σ) whatever the kernel. The scaled kernel is η_ε(t) = ε⁻¹ η(t/ε); in d
dimensions the kernel is the product η(t₁)···η(t_d) of the profile over the coordinates.

Each kernel is defined by a *profile* g on its usual domain — R for the unbounded kernels, [-1, 1]
for the compact ones — with variance v; the unit-variance kernel is η(t) = s·g(s·t), s = √v.

=============  ========================  ================  =========  ===================
name           profile g(x)              support of η      has_score  Fisher information
=============  ========================  ================  =========  ===================
gaussian       exp(−x²/2)/√(2π)          R                 yes        1
laplace        exp(−|x|)/2               R                 yes        2
logistic       eˣ/(1 + eˣ)²              R                 yes        π²/9 ≈ 1.0966
uniform        1/2 on [−1, 1]            [−√3, √3]         no         — (η jumps)
triangular     1 − |x|                   [−√6, √6]         no         ∞
epanechnikov   (3/4)(1 − x²)             [−√5, √5]         no         ∞
biweight       (15/16)(1 − x²)²          [−√7, √7]         yes        10/7
triweight      (35/32)(1 − x²)³          [−3, 3]           yes        7/6
cosine         (π/4)cos(πx/2)            ≈ [−2.298, 2.298] no         ∞
bump           exp(−1/(1 − x²))/Z        ≈ [−2.515, 2.515] yes        ≈ 1.9886
=============  ========================  ================  =========  ===================

The score is d/dt log η(t) = s·(log g)'(s·t): −t for the Gaussian, −√2 sign t for Laplace.
The *Fisher information* E[score(u)²] is the variance factor of the score-function gradient
estimator (``mollify.gradients``); :attr:`Kernel.has_score` is True exactly when that estimator is
unbiased (the density is continuous and vanishes at the ends of the support) with finite variance.

The bump kernel's normalizing constant Z ≈ 0.443994 and its variance are computed once, lazily, by
composite Gauss–Legendre quadrature in float64 (accurate to ~1e-15), and so is its CDF.
Inverse CDFs are in closed form where a numerically stable one exists (gaussian, laplace, logistic,
uniform, triangular, cosine); for the polynomial kernels and the bump they are found by a
safeguarded Newton iteration bracketed by a precomputed table, to full float64 accuracy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from mollify._validation import check_real

__all__ = [
    "KERNELS",
    "Kernel",
    "kernel",
    "GaussianKernel",
    "LaplaceKernel",
    "LogisticKernel",
    "UniformKernel",
    "TriangularKernel",
    "EpanechnikovKernel",
    "BiweightKernel",
    "TriweightKernel",
    "CosineKernel",
    "BumpKernel",
]

#: Names accepted by :func:`kernel`, in the book's order.
KERNELS: tuple[str, ...] = (
    "gaussian",
    "laplace",
    "logistic",
    "uniform",
    "triangular",
    "epanechnikov",
    "biweight",
    "triweight",
    "cosine",
    "bump",
)

_TAIL = 1e-16  # tail mass cut off by Kernel.quadrature_radius() for unbounded kernels


# --------------------------------------------------------------------------------------------
# helpers


@functools.lru_cache(maxsize=None)
def _gauss_legendre(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [-1, 1] (float64 numpy arrays)."""
    x, w = np.polynomial.legendre.leggauss(q)
    return x, w


def _as_float(t: object) -> Tensor:
    """``t`` as a floating tensor (ints and Python numbers become the default float dtype)."""
    t = torch.as_tensor(t)
    if not (t.is_floating_point()):
        t = t.to(torch.get_default_dtype())
    return t


def _work_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device supports it (everywhere but Apple's MPS), else float32."""
    return torch.float32 if device.type == "mps" else torch.float64


def _sample_shape(sample_shape: int | Sequence[int] | torch.Size) -> torch.Size:
    if isinstance(sample_shape, int) and not isinstance(sample_shape, bool):
        sample_shape = (sample_shape,)
    try:
        shape = torch.Size(sample_shape)
    except TypeError:
        raise TypeError(
            f"sample_shape must be an int or a sequence of ints, got {sample_shape!r}"
        ) from None
    if any(s < 0 for s in shape):
        raise ValueError(f"sample_shape must have non-negative sizes, got {tuple(shape)}")
    return shape


def _solve_increasing(
    fun, dfun, u: Tensor, lo: Tensor, hi: Tensor, x0: Tensor, max_iter: int = 100
) -> Tensor:
    """Solve fun(x) = u for x in [lo, hi] (fun increasing) by safeguarded Newton, elementwise.

    Newton steps that leave the current bracket fall back to bisection. Each element stops as soon
    as its own step is below ~4 ulp, so its result does not depend on the other elements.
    """
    tol = 4 * torch.finfo(u.dtype).eps
    shape = u.shape
    u, x, lo, hi = u.reshape(-1), x0.reshape(-1).clone(), lo.reshape(-1), hi.reshape(-1)
    idx = torch.arange(u.numel(), device=u.device)
    # work on the still-active elements only (compacted), writing results back into x
    ua, xa, la, ha = u, x.clone(), lo.clone(), hi.clone()
    for _ in range(max_iter):
        if idx.numel() == 0:
            break
        r = fun(xa) - ua
        la = torch.where(r <= 0, xa, la)
        ha = torch.where(r >= 0, xa, ha)
        step = r / dfun(xa)
        xn = xa - step
        scale = torch.clamp(xa.abs(), min=1.0)
        small = step.abs() <= tol * scale  # Newton has converged: accept its last step
        bad = ~((xn >= la) & (xn <= ha))  # left the bracket, or NaN from a zero density
        xn = torch.where(bad, 0.5 * (la + ha), xn)
        xn = torch.where(r == 0, xa, xn)
        done = (small & ~bad) | ((ha - la) <= tol * scale) | (r == 0)
        x[idx] = xn
        keep = ~done
        idx, ua, xa, la, ha = idx[keep], ua[keep], xn[keep], la[keep], ha[keep]
    return x.reshape(shape)


# --------------------------------------------------------------------------------------------
# base class


class Kernel:
    """A symmetric, unit-variance mollifier kernel η on R (base class).

    Methods act elementwise on tensors of any shape and follow the input's device and dtype
    (Python numbers and integer tensors become the default float dtype). They follow
    ``torch.distributions`` semantics: no data-dependent checks, NaN in → NaN out.

    Attributes:
        name: the kernel's name, one of :data:`KERNELS`.
        support: ``(lo, hi)``, the closed support of η; ``±inf`` for unbounded kernels.
        variance: always ``1.0``.
        has_score: whether the score-function estimator E[f(x − εu)·score(u)]/ε of ∇(f * η_ε)
            is usable: unbiased (η continuous and zero at the ends of its support) with finite
            variance (finite :attr:`fisher_information`).
        fisher_information: E[score(u)²] for u ~ η; ``inf`` where the score is defined but not
            square-integrable, NaN for the uniform kernel.

    Subclasses define the profile g on [-1, 1] (compact) or R through ``_g``, ``_log_g``,
    ``_lower`` (the CDF for x ≤ 0), ``_lower_inv`` (its inverse on [0, 1/2]) and ``_dlog_g``.
    """

    name: ClassVar[str] = ""
    has_score: ClassVar[bool] = False
    variance: ClassVar[float] = 1.0
    _s: ClassVar[float] = 1.0  # sqrt of the profile's variance: x = s·t
    _compact: ClassVar[bool] = False
    _fisher: ClassVar[float] = math.nan

    # ----- profile interface (x in standard coordinates, tensors in the working dtype)
    def _g(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_g(self, x: Tensor) -> Tensor:
        return torch.log(self._g(x))

    def _lower(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _lower_inv(self, u: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _dlog_g(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ----- properties
    @property
    def support(self) -> tuple[float, float]:
        """``(lo, hi)``: the closed support of η (``±inf`` for unbounded kernels)."""
        if self._compact:
            return (-1.0 / self._s, 1.0 / self._s)
        return (-math.inf, math.inf)

    @property
    def is_compact(self) -> bool:
        """Whether η has bounded support."""
        return self._compact

    @property
    def fisher_information(self) -> float:
        """E[score(u)²] for u ~ η (``inf``/NaN where the score estimator is unusable)."""
        return self._fisher

    def quadrature_radius(self, tail: float = _TAIL) -> float:
        """Half-width R of an interval [-R, R] holding all but ``tail`` of η's mass.

        For compact kernels it is the end of the support; for unbounded ones the quantile
        R = -icdf(tail/2). Used to place quadrature nodes (``mollify.mollifier``).

        Args:
            tail: mass allowed outside [-R, R], in (0, 1).

        Returns:
            R as a float.

        >>> round(kernel("gaussian").quadrature_radius(1e-16), 3)
        8.305
        """
        tail = check_real("tail", tail, low=0, high=1, low_open=True, high_open=True)
        if self._compact:
            return 1.0 / self._s
        u = torch.tensor(tail / 2, dtype=torch.float64)
        return float(-self.icdf(u))

    # ----- elementwise methods
    def _x(self, t: object) -> tuple[Tensor, Tensor]:
        t = _as_float(t)
        return t, t * self._s

    def _inside(self, x: Tensor, closed: bool) -> Tensor:
        if not self._compact:
            return torch.ones_like(x, dtype=torch.bool)
        return x.abs() <= 1 if closed else x.abs() < 1

    def _clamp(self, x: Tensor) -> Tensor:
        return x.clamp(-1.0, 1.0) if self._compact else x

    def pdf(self, t: Tensor | float) -> Tensor:
        """Density η(t) = s·g(s·t); zero outside the support.

        Args:
            t: points, any shape.

        Returns:
            Tensor shaped like ``t``.

        >>> kernel("uniform").pdf(torch.tensor([0.0, 2.0]))
        tensor([0.2887, 0.0000])
        """
        t, x = self._x(t)
        val = self._s * self._g(self._clamp(x))
        return torch.where(self._inside(x, closed=True), val, torch.zeros_like(val))

    def log_prob(self, t: Tensor | float) -> Tensor:
        """log η(t); ``-inf`` outside the support.

        Args:
            t: points, any shape.

        Returns:
            Tensor shaped like ``t``.

        >>> kernel("gaussian").log_prob(torch.tensor(0.0))
        tensor(-0.9189)
        """
        t, x = self._x(t)
        val = math.log(self._s) + self._log_g(self._clamp(x))
        return torch.where(self._inside(x, closed=True), val, torch.full_like(val, -math.inf))

    def cdf(self, t: Tensor | float) -> Tensor:
        """Distribution function F(t) = ∫_{-∞}^t η; 0 left and 1 right of the support.

        Computed as the lower-tail formula for t ≤ 0 and 1 − F(−t) for t > 0, so the lower tail
        keeps full relative accuracy.

        Args:
            t: points, any shape.

        Returns:
            Tensor shaped like ``t``, values in [0, 1].

        >>> kernel("laplace").cdf(torch.tensor([0.0]))
        tensor([0.5000])
        """
        t, x = self._x(t)
        xc = self._clamp(x)
        low = self._lower(-xc.abs())  # F(−|x|), the smaller of the two tails
        return torch.where(xc <= 0, low, 1.0 - low)

    def icdf(self, u: Tensor | float) -> Tensor:
        """Quantile function F⁻¹(u), the inverse of :meth:`cdf`.

        ``icdf(0)``/``icdf(1)`` are the ends of the support (``∓inf`` for unbounded kernels);
        ``u`` outside [0, 1] gives NaN. Upper quantiles use symmetry, F⁻¹(u) = −F⁻¹(1 − u).

        Args:
            u: probabilities, any shape.

        Returns:
            Tensor shaped like ``u``.

        >>> kernel("gaussian").icdf(torch.tensor([0.5, 0.975], dtype=torch.float64))
        tensor([0.0000, 1.9600], dtype=torch.float64)
        """
        u = _as_float(u)
        tail = torch.where(u <= 0.5, u, 1.0 - u).clamp(0.0, 0.5)  # 1 − u is exact for u ≥ 1/2
        x = self._lower_inv(tail)
        x = torch.where(u <= 0.5, x, -x)
        valid = (u >= 0) & (u <= 1)
        return torch.where(valid, x / self._s, torch.full_like(x, math.nan))

    def score(self, t: Tensor | float) -> Tensor:
        """Score d/dt log η(t) inside the (open) support; NaN outside it and at its ends.

        Where η has a kink (t = 0 for laplace and triangular) the value 0 is returned. For the
        uniform kernel the score is 0 inside, but the score-function estimator is biased (η jumps
        at ±√3): see :attr:`has_score`.

        Args:
            t: points, any shape.

        Returns:
            Tensor shaped like ``t``.

        >>> kernel("gaussian").score(torch.tensor([1.5]))
        tensor([-1.5000])
        """
        t, x = self._x(t)
        val = self._s * self._dlog_g(self._clamp(x) if self._compact else x)
        return torch.where(self._inside(x, closed=False), val, torch.full_like(val, math.nan))

    def scaled_pdf(self, t: Tensor | float, eps: float) -> Tensor:
        """The scaled kernel η_ε(t) = η(t/ε)/ε (one coordinate), a density with std ``eps``.

        Args:
            t: points, any shape.
            eps: scale ε > 0.

        Returns:
            Tensor shaped like ``t``.

        Raises:
            ValueError: if ``eps`` is not a finite number > 0.

        >>> kernel("gaussian").scaled_pdf(torch.tensor(0.0), 0.5) / kernel("gaussian").pdf(0.0)
        tensor(2.)
        """
        eps = check_real("eps", eps, low=0, low_open=True)
        return self.pdf(_as_float(t) / eps) / eps

    def log_prob_nd(self, t: Tensor) -> Tensor:
        """Log-density of the product kernel in d dimensions: Σ_i log η(t_i) over the last axis.

        Args:
            t: points of shape ``(..., d)``.

        Returns:
            Tensor of shape ``(...)``.

        >>> kernel("gaussian").log_prob_nd(torch.zeros(2, 3)).shape
        torch.Size([2])
        """
        return self.log_prob(t).sum(-1)

    def pdf_nd(self, t: Tensor) -> Tensor:
        """Density of the product kernel in d dimensions: Π_i η(t_i) over the last axis.

        Args:
            t: points of shape ``(..., d)``.

        Returns:
            Tensor of shape ``(...)``.

        >>> kernel("uniform").pdf_nd(torch.zeros(1, 2)) * 12
        tensor([1.0000])
        """
        return self.pdf(t).prod(-1)

    def sample(
        self,
        sample_shape: int | Sequence[int] | torch.Size = (),
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw independent samples u ~ η by inversion, u = F⁻¹(U), U uniform on (0, 1).

        For the product kernel in d dimensions ask for ``sample_shape=(n, d)``: its coordinates
        are independent. Uniforms are drawn in float64 (float32 on MPS) with ``torch.rand``; an
        exact 0 is replaced by half the smallest positive value ``torch.rand`` yields, so no
        sample is infinite. The same generator state gives the same samples.

        Args:
            sample_shape: shape of the result.
            generator: source of randomness (torch's global RNG if None).
            device: device of the result (default: the generator's device, else CPU).
            dtype: floating dtype of the result (default: ``torch.get_default_dtype()``).

        Returns:
            Tensor of shape ``sample_shape``.

        Raises:
            TypeError: on a non-floating ``dtype`` or a malformed ``sample_shape``.

        >>> g = torch.Generator().manual_seed(0)
        >>> kernel("epanechnikov").sample((2, 3), generator=g).shape
        torch.Size([2, 3])
        """
        shape = _sample_shape(sample_shape)
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        gen_device = generator.device if generator is not None else torch.device(device or "cpu")
        out_device = torch.device(device) if device is not None else gen_device
        work = _work_dtype(out_device) if gen_device.type != "mps" else torch.float32
        u = torch.rand(shape, generator=generator, device=gen_device, dtype=work)
        u = u.clamp_min(torch.finfo(work).eps / 4)  # 2**-54 in float64: no exact 0
        return self.icdf(u).to(device=out_device, dtype=dtype)

    # ----- dunder
    def __repr__(self) -> str:
        lo, hi = self.support
        return (
            f"Kernel({self.name!r}, support=({lo:.6g}, {hi:.6g}), variance=1, "
            f"has_score={self.has_score})"
        )

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash((Kernel, self.name))


class _SymmetricCompact(Kernel):
    """Helpers for compact kernels whose lower tail is solved numerically via a table."""

    _compact = True
    _TABLE = 256  # grid cells on [-1, 0]

    def _table(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(x_k, F(x_k)) on a uniform grid of [-1, 0]; F(0) = 1/2 exactly."""
        key = (type(self), str(device), dtype)
        tab = _TABLES.get(key)
        if tab is None:
            x = torch.linspace(-1.0, 0.0, self._TABLE + 1, dtype=torch.float64)
            u = self._lower(x)
            u[-1] = 0.5
            u[0] = 0.0
            tab = (x.to(device=device, dtype=dtype), u.to(device=device, dtype=dtype))
            _TABLES[key] = tab
        return tab

    def _lower_inv(self, u: Tensor) -> Tensor:
        work = _work_dtype(u.device)
        uw = u.to(work)
        xs, us = self._table(u.device, work)
        j = torch.searchsorted(us, uw.contiguous(), right=True).clamp(1, len(us) - 1)
        lo, hi = xs[j - 1], xs[j]
        ulo, uhi = us[j - 1], us[j]
        frac = torch.where(uhi > ulo, (uw - ulo) / (uhi - ulo), torch.zeros_like(uw))
        x0 = lo + frac.clamp(0.0, 1.0) * (hi - lo)
        x = _solve_increasing(self._lower, self._g, uw, lo, hi, x0)
        return x.to(u.dtype)


_TABLES: dict[tuple, tuple[Tensor, Tensor]] = {}


# --------------------------------------------------------------------------------------------
# concrete kernels

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class GaussianKernel(Kernel):
    """Standard normal kernel η(t) = exp(−t²/2)/√(2π); score −t.

    >>> GaussianKernel().pdf(torch.tensor(0.0))
    tensor(0.3989)
    """

    name = "gaussian"
    has_score = True
    _fisher = 1.0

    def _g(self, x: Tensor) -> Tensor:
        return torch.exp(-0.5 * x * x - _LOG_SQRT_2PI)

    def _log_g(self, x: Tensor) -> Tensor:
        return -0.5 * x * x - _LOG_SQRT_2PI

    def _lower(self, x: Tensor) -> Tensor:
        return 0.5 * torch.special.erfc(-x / math.sqrt(2.0))  # ndtr loses the lower tail

    def _lower_inv(self, u: Tensor) -> Tensor:
        return torch.special.ndtri(u)

    def icdf(self, u: Tensor | float) -> Tensor:
        """Φ⁻¹(u) in one pass of ``torch.special.ndtri`` (accurate in both tails; NaN outside
        [0, 1]): the hot path of every Gaussian Monte Carlo sample, so no symmetry fold here.

        >>> GaussianKernel().icdf(torch.tensor([0.5, 0.975], dtype=torch.float64))
        tensor([0.0000, 1.9600], dtype=torch.float64)
        """
        return torch.special.ndtri(_as_float(u))

    def _dlog_g(self, x: Tensor) -> Tensor:
        return -x


class LaplaceKernel(Kernel):
    """Laplace kernel η(t) = exp(−√2|t|)/√2 (profile e^{−|x|}/2, variance 2); score −√2·sign t.

    >>> LaplaceKernel().score(torch.tensor([-1.0, 2.0]))
    tensor([ 1.4142, -1.4142])
    """

    name = "laplace"
    has_score = True
    _s = math.sqrt(2.0)
    _fisher = 2.0

    def _g(self, x: Tensor) -> Tensor:
        return 0.5 * torch.exp(-x.abs())

    def _log_g(self, x: Tensor) -> Tensor:
        return -x.abs() - math.log(2.0)

    def _lower(self, x: Tensor) -> Tensor:
        return 0.5 * torch.exp(x)

    def _lower_inv(self, u: Tensor) -> Tensor:
        return torch.log(2.0 * u)

    def _dlog_g(self, x: Tensor) -> Tensor:
        return -torch.sign(x)


class LogisticKernel(Kernel):
    """Logistic kernel (profile eˣ/(1+eˣ)², variance π²/3, so s = π/√3).

    >>> round(float(LogisticKernel().cdf(torch.tensor(0.0))), 3)
    0.5
    """

    name = "logistic"
    has_score = True
    _s = math.pi / math.sqrt(3.0)
    _fisher = math.pi**2 / 9.0

    def _g(self, x: Tensor) -> Tensor:
        return torch.exp(self._log_g(x))

    def _log_g(self, x: Tensor) -> Tensor:
        a = x.abs()
        return -a - 2.0 * torch.log1p(torch.exp(-a))

    def _lower(self, x: Tensor) -> Tensor:
        return torch.exp(x - torch.log1p(torch.exp(x)))

    def _lower_inv(self, u: Tensor) -> Tensor:
        return torch.log(u) - torch.log1p(-u)

    def _dlog_g(self, x: Tensor) -> Tensor:
        return -torch.tanh(0.5 * x)


class UniformKernel(Kernel):
    """Uniform kernel on [−√3, √3]. Its score is 0 inside but the score estimator is biased.

    >>> [round(end**2, 12) for end in UniformKernel().support]
    [3.0, 3.0]
    """

    name = "uniform"
    has_score = False
    _s = 1.0 / math.sqrt(3.0)
    _compact = True
    _fisher = math.nan

    def _g(self, x: Tensor) -> Tensor:
        return 0.0 * x + 0.5  # keeps the autograd graph: d/dt log η = 0 inside

    def _log_g(self, x: Tensor) -> Tensor:
        return 0.0 * x - math.log(2.0)

    def _lower(self, x: Tensor) -> Tensor:
        return 0.5 * (1.0 + x)

    def _lower_inv(self, u: Tensor) -> Tensor:
        return 2.0 * u - 1.0

    def _dlog_g(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)


class TriangularKernel(Kernel):
    """Triangular kernel (profile 1 − |x|, variance 1/6) on [−√6, √6].

    >>> TriangularKernel().icdf(torch.tensor(0.5))
    tensor(0.)
    """

    name = "triangular"
    has_score = False
    _s = 1.0 / math.sqrt(6.0)
    _compact = True
    _fisher = math.inf

    def _g(self, x: Tensor) -> Tensor:
        return 1.0 - x.abs()

    def _log_g(self, x: Tensor) -> Tensor:
        return torch.log1p(-x.abs())

    def _lower(self, x: Tensor) -> Tensor:
        return 0.5 * (1.0 + x) ** 2

    def _lower_inv(self, u: Tensor) -> Tensor:
        return torch.sqrt(2.0 * u) - 1.0

    def _dlog_g(self, x: Tensor) -> Tensor:
        return -torch.sign(x) / (1.0 - x.abs())


class EpanechnikovKernel(_SymmetricCompact):
    """Epanechnikov kernel (profile (3/4)(1 − x²), variance 1/5) on [−√5, √5].

    F(x) = (1 + x)²(2 − x)/4 on [−1, 0]. The closed-form inverse 2 sin(asin(2u − 1)/3) loses
    relative accuracy in the tails, so the quantile is found by bracketed Newton instead.

    >>> round(float(EpanechnikovKernel().support[1] ** 2), 12)
    5.0
    """

    name = "epanechnikov"
    has_score = False
    _s = 1.0 / math.sqrt(5.0)
    _fisher = math.inf

    def _g(self, x: Tensor) -> Tensor:
        return 0.75 * (1.0 - x) * (1.0 + x)

    def _log_g(self, x: Tensor) -> Tensor:
        return math.log(0.75) + torch.log1p(-x) + torch.log1p(x)

    def _lower(self, x: Tensor) -> Tensor:
        return 0.25 * (1.0 + x) ** 2 * (2.0 - x)

    def _dlog_g(self, x: Tensor) -> Tensor:
        return -2.0 * x / ((1.0 - x) * (1.0 + x))


class BiweightKernel(_SymmetricCompact):
    """Biweight (quartic) kernel (profile (15/16)(1 − x²)², variance 1/7) on [−√7, √7].

    >>> BiweightKernel().has_score
    True
    """

    name = "biweight"
    has_score = True
    _s = 1.0 / math.sqrt(7.0)
    _fisher = 10.0 / 7.0

    def _g(self, x: Tensor) -> Tensor:
        return (15.0 / 16.0) * ((1.0 - x) * (1.0 + x)) ** 2

    def _log_g(self, x: Tensor) -> Tensor:
        return math.log(15.0 / 16.0) + 2.0 * (torch.log1p(-x) + torch.log1p(x))

    def _lower(self, x: Tensor) -> Tensor:
        return (1.0 + x) ** 3 * ((3.0 * x - 9.0) * x + 8.0) / 16.0

    def _dlog_g(self, x: Tensor) -> Tensor:
        return -4.0 * x / ((1.0 - x) * (1.0 + x))


class TriweightKernel(_SymmetricCompact):
    """Triweight kernel (profile (35/32)(1 − x²)³, variance 1/9) on [−3, 3].

    >>> TriweightKernel().support
    (-3.0, 3.0)
    """

    name = "triweight"
    has_score = True
    _s = 1.0 / 3.0
    _fisher = 7.0 / 6.0

    def _g(self, x: Tensor) -> Tensor:
        return (35.0 / 32.0) * ((1.0 - x) * (1.0 + x)) ** 3

    def _log_g(self, x: Tensor) -> Tensor:
        return math.log(35.0 / 32.0) + 3.0 * (torch.log1p(-x) + torch.log1p(x))

    def _lower(self, x: Tensor) -> Tensor:
        return (1.0 + x) ** 4 * (((-5.0 * x + 20.0) * x - 29.0) * x + 16.0) / 32.0

    def _dlog_g(self, x: Tensor) -> Tensor:
        return -6.0 * x / ((1.0 - x) * (1.0 + x))


class CosineKernel(Kernel):
    """Cosine kernel (profile (π/4)cos(πx/2), variance 1 − 8/π²).

    F(x) = sin²(π(1 + x)/4) on [−1, 0], inverted in closed form.

    >>> round(CosineKernel().support[1], 6)
    2.297603
    """

    name = "cosine"
    has_score = False
    _s = math.sqrt(1.0 - 8.0 / math.pi**2)
    _compact = True
    _fisher = math.inf

    def _g(self, x: Tensor) -> Tensor:
        return (math.pi / 4.0) * torch.cos((math.pi / 2.0) * x)

    def _log_g(self, x: Tensor) -> Tensor:
        # cos(πx/2) = sin(π(1 − |x|)/2), accurate near the ends of the support
        return math.log(math.pi / 4.0) + torch.log(torch.sin((math.pi / 2.0) * (1.0 - x.abs())))

    def _lower(self, x: Tensor) -> Tensor:
        return torch.sin((math.pi / 4.0) * (1.0 + x)) ** 2

    def _lower_inv(self, u: Tensor) -> Tensor:
        return (4.0 / math.pi) * torch.asin(torch.sqrt(u)) - 1.0

    def _dlog_g(self, x: Tensor) -> Tensor:
        return -(math.pi / 2.0) * torch.tan((math.pi / 2.0) * x)


# ----- the bump: constants and CDF table by composite Gauss–Legendre quadrature

_BUMP_CELLS = 128  # cells on [-1, 0]
_BUMP_NODES = 16  # Gauss–Legendre nodes per cell


def _bump_unnormalized(x: Tensor) -> Tensor:
    """exp(−1/(1 − x²)) for |x| < 1, computed with (1 − x)(1 + x); 0 at and beyond ±1."""
    d = (1.0 - x) * (1.0 + x)
    safe = torch.where(d > 0, d, torch.ones_like(d))
    return torch.where(d > 0, torch.exp(-1.0 / safe), torch.zeros_like(d))


@functools.lru_cache(maxsize=1)
def _bump_constants() -> dict[str, object]:
    """Normalizing constant, variance, Fisher information and lower-half CDF table (float64)."""
    q, w = _gauss_legendre(_BUMP_NODES)
    q = torch.tensor(q, dtype=torch.float64)
    w = torch.tensor(w, dtype=torch.float64)
    edges = torch.linspace(-1.0, 0.0, _BUMP_CELLS + 1, dtype=torch.float64)
    a, b = edges[:-1, None], edges[1:, None]
    x = 0.5 * (a + b) + 0.5 * (b - a) * q  # (cells, nodes)
    wx = 0.5 * (b - a) * w
    g = _bump_unnormalized(x)
    cell = (wx * g).sum(1)
    cum = torch.zeros(_BUMP_CELLS + 1, dtype=torch.float64)
    acc = 0.0
    for k in range(_BUMP_CELLS):  # sequential, small first: full relative accuracy in the tail
        acc = acc + float(cell[k])
        cum[k + 1] = acc
    half = float(cum[-1])
    z = 2.0 * half
    second = 2.0 * float((wx * g * x * x).sum()) / z
    d = (1.0 - x) * (1.0 + x)
    dlog = torch.where(d > 0, -2.0 * x / torch.where(d > 0, d, torch.ones_like(d)) ** 2, 0.0)
    fisher_x = 2.0 * float((wx * g * dlog * dlog).sum()) / z
    return {
        "Z": z,
        "variance": second,
        "fisher": fisher_x * second,  # Fisher information of the unit-variance kernel
        "edges": edges,
        "cum": cum / z,
    }


class BumpKernel(_SymmetricCompact):
    """The C∞ bump exp(−1/(1 − x²))/Z on (−1, 1), rescaled to unit variance.

    Z ≈ 0.4439938162 and the profile's variance ≈ 0.1581136363 are computed once by composite
    Gauss–Legendre quadrature (128 cells × 16 nodes on [−1, 0], float64, error < 1e-15). The CDF
    is that table plus a 16-node Gauss–Legendre rule over the last partial cell.

    >>> round(BumpKernel.normalizing_constant(), 10)
    0.4439938162
    """

    name = "bump"
    has_score = True

    @staticmethod
    def normalizing_constant() -> float:
        """Z = ∫_{−1}^{1} exp(−1/(1 − x²)) dx."""
        return float(_bump_constants()["Z"])  # type: ignore[arg-type]

    @staticmethod
    def profile_variance() -> float:
        """Variance of the unscaled profile exp(−1/(1 − x²))/Z on (−1, 1)."""
        return float(_bump_constants()["variance"])  # type: ignore[arg-type]

    @property
    def _s(self) -> float:  # type: ignore[override]
        return math.sqrt(self.profile_variance())

    @property
    def _fisher(self) -> float:  # type: ignore[override]
        return float(_bump_constants()["fisher"])  # type: ignore[arg-type]

    def _numeric(self, x: Tensor) -> Tensor:
        return x.to(_work_dtype(x.device))

    def _g(self, x: Tensor) -> Tensor:
        xw = self._numeric(x)
        return (_bump_unnormalized(xw) / self.normalizing_constant()).to(x.dtype)

    def _log_g(self, x: Tensor) -> Tensor:
        d = (1.0 - x) * (1.0 + x)
        return -1.0 / d - math.log(self.normalizing_constant())

    def _lower(self, x: Tensor) -> Tensor:
        c = _bump_constants()
        xw = self._numeric(x)
        work = xw.dtype
        key = ("bump-cum", str(x.device), work)
        tab = _TABLES.get(key)
        if tab is None:
            edges = c["edges"].to(x.device, work)  # type: ignore[union-attr]
            tab = (edges, c["cum"].to(x.device, work))  # type: ignore[union-attr]
            _TABLES[key] = tab
        edges, cum = tab
        k = torch.floor((xw + 1.0) * _BUMP_CELLS).clamp(0, _BUMP_CELLS - 1).long()
        a = edges[k]
        q, w = _gauss_legendre(_BUMP_NODES)
        q = torch.as_tensor(q, device=x.device, dtype=work)
        w = torch.as_tensor(w, device=x.device, dtype=work)
        half = 0.5 * (xw - a)
        nodes = (a + half).unsqueeze(-1) + half.unsqueeze(-1) * q
        part = half * (w * _bump_unnormalized(nodes)).sum(-1)
        return (cum[k] + part / self.normalizing_constant()).to(x.dtype)

    def _dlog_g(self, x: Tensor) -> Tensor:
        d = (1.0 - x) * (1.0 + x)
        return -2.0 * x / (d * d)


_CLASSES: dict[str, type[Kernel]] = {
    cls.name: cls
    for cls in (
        GaussianKernel,
        LaplaceKernel,
        LogisticKernel,
        UniformKernel,
        TriangularKernel,
        EpanechnikovKernel,
        BiweightKernel,
        TriweightKernel,
        CosineKernel,
        BumpKernel,
    )
}


def kernel(name: str | Kernel, **kwargs: object) -> Kernel:
    """Return the unit-variance kernel called ``name`` (or ``name`` itself if it is a Kernel).

    Args:
        name: one of :data:`KERNELS` (case-insensitive), or a :class:`Kernel` instance.
        **kwargs: reserved for parameterized kernels; none of the built-in kernels takes any.

    Returns:
        A :class:`Kernel`.

    Raises:
        ValueError: on an unknown name (the message lists the valid ones).
        TypeError: if ``name`` is neither a string nor a Kernel, or on unexpected ``kwargs``.

    >>> kernel("epanechnikov")
    Kernel('epanechnikov', support=(-2.23607, 2.23607), variance=1, has_score=False)
    >>> float(kernel("bump").variance)
    1.0
    """
    if isinstance(name, Kernel):
        if kwargs:
            raise TypeError(f"kernel() got parameters {sorted(kwargs)} for a Kernel instance")
        return name
    if not isinstance(name, str):
        raise TypeError(f"kernel name must be a str or a Kernel, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in _CLASSES:
        raise ValueError(f"unknown kernel {name!r}; valid names are: {', '.join(KERNELS)}")
    if kwargs:
        raise TypeError(f"kernel {key!r} takes no parameters, got {sorted(kwargs)}")
    return _CLASSES[key]()
