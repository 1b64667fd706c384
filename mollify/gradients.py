"""The gradient of a mollified function, ∇(f * η_ε)(x), by three unbiased Monte Carlo estimators.

With f_ε(x) = E_{u~η^d}[f(x − εu)] = ∫ f(y) η_ε(x − y) dy, η_ε(t) = ε^{-d} η(t/ε) (product kernel,
unit variance per coordinate, so ε is the noise standard deviation), the gradient can be moved
onto either factor of the convolution:

* **pathwise** (reparametrization): ∇f_ε(x) = E[∇f(x − εu)]. Needs ∇f (autograd); works with
  every kernel. This is SmoothGrad / Monte Carlo Gradient Mollification (arXiv 2407.00371).
* **score** (likelihood ratio): differentiating η_ε instead,
  ∇_x η_ε(x − y) = η_ε(x − y)·s((x − y)/ε)/ε with s(u) = ∇ log η(u) (coordinate i:
  ``kernel.score(u_i)``), hence
  ∇f_ε(x) = E[f(x − εu)·s(u)]/ε = E[(f(x − εu) − f(x))·s(u)]/ε.
  For the Gaussian s(u) = −u, so ∇f_ε(x) = −E[f(x − εu)·u]/ε. Subtracting the baseline f(x) is a
  control variate: E[s(u)] = ∫ ∇η = 0, so the term f(x)·s(u) has mean zero; f(x) is computed
  exactly, not estimated from the same samples, so the estimator stays exactly unbiased, and the
  O(f(x)²/ε²) part of the variance disappears (without it the variance blows up as ε → 0).
* **zeroth** (antithetic finite differences, Nesterov–Spokoiny): the score identity applied to u
  and to −u (η is symmetric, so s is odd) and averaged gives
  ∇f_ε(x) = E[(f(x − εu) − f(x + εu))·s(u)]/(2ε),
  for the Gaussian E[(f(x + εu) − f(x − εu))·u]/(2ε). Two evaluations of f per sample, no ∇f;
  its variance stays bounded as ε → 0 for smooth f (the difference quotient tends to ∇f·u).

The score and zeroth estimators need two properties of η: it is absolutely continuous and vanishes
at the ends of its support (then integration by parts leaves no boundary term and the score
identity, hence unbiasedness, holds), and its Fisher information E[s(u)²] is finite (then the
estimators have finite variance). ``kernel.has_score`` marks the kernels with both: gaussian,
laplace, logistic, biweight, triweight, bump. The uniform kernel fails the first (η jumps at ±√3;
its score is 0 inside, so the estimator would miss the whole boundary term), the triangular,
Epanechnikov and cosine kernels the second (infinite variance); use ``"pathwise"`` with them.

Noise points come from :class:`~mollify.montecarlo.PointStream` through
:func:`~mollify.montecarlo.integrate` (samplers ``"mc"``, ``"antithetic"``, ``"qmc"``, ``"rqmc"``),
so results carry standard errors, use memory independent of n, and are bitwise independent of
``chunk_size`` for a row-wise f. All query points of one call share the same noise samples.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mollify._validation import (
    check_choice,
    check_finite_tensor,
    check_generator,
    check_int,
    check_real,
)
from mollify.kernels import KERNELS, Kernel, kernel as _get_kernel
from mollify.montecarlo import SAMPLERS, Estimate, _check_sampler_size, integrate

__all__ = ["ESTIMATORS", "smoothed_grad"]

#: Estimators accepted by :func:`smoothed_grad`.
ESTIMATORS: tuple[str, ...] = ("pathwise", "score", "zeroth")

_DEFAULT_CHUNK = 2**16  # evaluations of f per call


def _score_kernels() -> str:
    return ", ".join(name for name in KERNELS if _get_kernel(name).has_score)


def _as_points(x: object) -> tuple[Tensor, tuple[int, ...]]:
    """x as finite float points of shape (M, d); returns them and the shape of x."""
    x = check_finite_tensor("x", x).detach()
    shape = tuple(x.shape)
    if x.dim() == 0:
        return x.reshape(1, 1), shape
    if x.numel() == 0:
        raise ValueError(f"x must hold at least one point, got shape {shape}")
    return x.reshape(-1, x.shape[-1]), shape


def _call_f(f: Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
    """f on points (N, d): checked to return finite values of shape (N,) (or (N, 1))."""
    out = f(y)
    if not isinstance(out, Tensor):
        raise TypeError(f"f must return a tensor, got {type(out).__name__}")
    rows = y.shape[0]
    if out.dim() == 2 and out.shape == (rows, 1):
        out = out[:, 0]
    if out.shape != (rows,):
        raise ValueError(
            f"f must map points of shape (N, d) = {tuple(y.shape)} to values of shape (N,) = "
            f"({rows},); got {tuple(out.shape)}. f must be scalar-valued and vectorized over the "
            "first axis (e.g. use points[:, 0], not points[0]; reduce vector outputs to a scalar)."
        )
    if out.is_complex():
        raise TypeError(f"f must return real values, got dtype {out.dtype}")
    if not bool(torch.isfinite(out.detach()).all()):
        raise ValueError("f returned NaN or inf; f must be finite on the smoothing neighbourhood")
    return out


def smoothed_grad(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    kernel: str | Kernel,
    eps: float,
    n: int,
    *,
    estimator: str = "pathwise",
    sampler: str = "mc",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    replicates: int = 16,
    baseline: bool = True,
) -> Estimate:
    """Monte Carlo estimate of ∇f_ε(x), the gradient of f_ε = f * η_ε, with standard errors.

    Estimators (u_i ~ η^d from ``sampler``, s = ``kernel.score`` coordinatewise):

    * ``"pathwise"``: (1/n) Σ_i ∇f(x − ε u_i) (autograd through f; any kernel).
    * ``"score"``: (1/n) Σ_i (f(x − ε u_i) − b)·s(u_i)/ε, with b = f(x) if ``baseline`` else 0;
      Gaussian: −(1/n) Σ_i (f(x − ε u_i) − b)·u_i/ε.
    * ``"zeroth"``: (1/n) Σ_i (f(x − ε u_i) − f(x + ε u_i))·s(u_i)/(2ε);
      Gaussian: (1/n) Σ_i (f(x + ε u_i) − f(x − ε u_i))·u_i/(2ε) (Nesterov–Spokoiny).

    All three are unbiased for ∇f_ε(x) (see the module docstring for the derivation); ``"score"``
    and ``"zeroth"`` need no gradient of f but a kernel with ``has_score`` (gaussian, laplace,
    logistic, biweight, triweight, bump). All points of ``x`` share the same noise samples.

    Args:
        f: scalar function, vectorized: ``f(points)`` with ``points`` of shape ``(N, d)`` returns
            ``(N,)`` (or ``(N, 1)``); differentiable by autograd for ``"pathwise"``.
        x: query points of shape ``(*batch, d)``; a 0-d tensor is a point of R¹. Integer tensors
            become the default float dtype; the computation runs in x's dtype and device.
        kernel: a :class:`~mollify.kernels.Kernel` or a name from ``KERNELS``.
        eps: noise standard deviation ε > 0 per coordinate.
        n: number of noise samples u_i (>= 1; even for ``"antithetic"``; a multiple of
            ``replicates`` for ``"rqmc"``).
        estimator: one of :data:`ESTIMATORS`.
        sampler: one of ``SAMPLERS`` (``"mc"``, ``"antithetic"``, ``"qmc"``, ``"rqmc"``).
        generator: source of randomness (torch's global RNG if None); same state → same result.
        chunk_size: maximum number of evaluations of f per call (default 65536); results do not
            depend on it when f computes each row independently of the others.
        replicates: scrambled replicates for ``"rqmc"`` (>= 2).
        baseline: subtract f(x) in the ``"score"`` estimator (one extra evaluation per point).

    Returns:
        :class:`~mollify.montecarlo.Estimate` whose ``mean`` and ``stderr`` have the shape of
        ``x`` and whose ``n`` is the number of noise samples. The cost is n evaluations of f (and
        of ∇f for ``"pathwise"``) per point, 2n for ``"zeroth"``, n + 1 for ``"score"`` with
        a baseline.

    Raises:
        ValueError: on eps <= 0, n < 1, an unknown estimator, sampler or kernel, a kernel without
            a usable score for ``"score"``/``"zeroth"``, NaN/inf in x, n incompatible with the
            sampler, an f of the wrong output shape or returning NaN/inf, or an f that autograd
            cannot differentiate (``"pathwise"``).
        TypeError: on arguments of the wrong type.

    >>> w = torch.tensor([1.0, -2.0], dtype=torch.float64)
    >>> f = lambda p: torch.relu(p @ w)
    >>> x = torch.tensor([0.5, 0.0], dtype=torch.float64)
    >>> g = torch.Generator().manual_seed(0)
    >>> est = smoothed_grad(f, x, "gaussian", 0.3, 4096, generator=g)
    >>> truth = w * torch.special.ndtr(x @ w / (0.3 * w.norm()))  # w Φ((w·x)/(ε‖w‖))
    >>> bool(((est.mean - truth).abs() < 4 * est.stderr).all())
    True
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    k = _get_kernel(kernel)
    eps = check_real("eps", eps, low=0, low_open=True)
    n = check_int("n", n, minimum=1)
    estimator = check_choice("estimator", estimator, ESTIMATORS)
    sampler = check_choice("sampler", sampler, SAMPLERS)
    replicates = check_int("replicates", replicates, minimum=2)
    check_generator(generator)
    chunk = _DEFAULT_CHUNK if chunk_size is None else check_int("chunk_size", chunk_size, minimum=1)
    if not isinstance(baseline, bool):
        raise TypeError(f"baseline must be a bool, got {type(baseline).__name__}")
    if estimator != "pathwise" and not k.has_score:
        raise ValueError(
            f"estimator={estimator!r} needs a kernel with a usable score function "
            f"(has_score=True: {_score_kernels()}); kernel {k.name!r} has none. Use "
            "estimator='pathwise', which works with every kernel."
        )
    _check_sampler_size(n, sampler, replicates)
    pts, shape = _as_points(x)
    m, d = pts.shape
    evals = 2 * m if estimator == "zeroth" else m

    if estimator == "pathwise":

        def integrand(u: Tensor) -> Tensor:
            y = (pts[None] - eps * u[:, None]).reshape(-1, d).requires_grad_(True)
            with torch.enable_grad():
                v = _call_f(f, y)
                if not v.requires_grad:
                    raise ValueError(
                        "f's output does not depend differentiably on its input (autograd "
                        "found no graph), so estimator='pathwise' cannot be used; use "
                        "estimator='zeroth' or 'score', which need no gradient of f"
                    )
                (grad,) = torch.autograd.grad(v.sum(), y, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(y)
            return grad.detach().reshape(u.shape[0], m, d)

    elif estimator == "score":
        with torch.no_grad():
            base = _call_f(f, pts).to(pts.dtype) if baseline else None

        def integrand(u: Tensor) -> Tensor:
            y = (pts[None] - eps * u[:, None]).reshape(-1, d)
            with torch.no_grad():
                v = _call_f(f, y).to(pts.dtype).reshape(u.shape[0], m)
            if base is not None:
                v = v - base
            return v[:, :, None] * (k.score(u) / eps)[:, None, :]

    else:  # zeroth

        def integrand(u: Tensor) -> Tensor:
            step = eps * u[:, None]
            y = torch.cat([pts[None] - step, pts[None] + step]).reshape(-1, d)
            with torch.no_grad():
                v = _call_f(f, y).to(pts.dtype).reshape(2, u.shape[0], m)
            diff = (v[0] - v[1]) / (2 * eps)
            return diff[:, :, None] * k.score(u)[:, None, :]

    est = integrate(
        integrand,
        k,
        n,
        dim=d,
        sampler=sampler,
        generator=generator,
        chunk_size=max(2, chunk // evals),
        replicates=replicates,
        device=pts.device,
        dtype=pts.dtype,
    )
    return Estimate(est.mean.reshape(shape), est.stderr.reshape(shape), est.n)
