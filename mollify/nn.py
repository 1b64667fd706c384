"""Closed-form Gaussian-smoothed activations and layers.

Smoothing an activation ``act`` with Gaussian noise of standard deviation ``sigma`` means

    act_sigma(x) = E_Z[act(x + sigma * Z)],   Z ~ N(0, 1),

elementwise. For piecewise-linear activations this expectation has a closed form in the standard
normal cdf Φ and pdf φ, so a smoothed network is an ordinary network: autodiff, ``torch.func``
transforms and any optimizer apply unchanged, and no Monte Carlo sampling is needed (Starnes &
Webster, arXiv 2311.00531). With ``t = x / sigma``:

=================  ==========================================  ==================================
activation         smoothed form                               derivative in x
=================  ==========================================  ==================================
ReLU               ``x Φ(t) + σ φ(t)``                         ``Φ(t)``
abs                ``x (2Φ(t) − 1) + 2σ φ(t)``                 ``2Φ(t) − 1``
step (Heaviside)   ``Φ(t)``                                    ``φ(t) / σ``
sign               ``2Φ(t) − 1 = erf(t / √2)``                 ``2 φ(t) / σ``
leaky ReLU (a)     ``a x + (1 − a)·relu_σ(x)``                 ``a + (1 − a) Φ(t)``
hardtanh [lo, hi]  ``lo + relu_σ(x − lo) − relu_σ(x − hi)``    ``Φ((x−lo)/σ) − Φ((x−hi)/σ)``
GELU (exact)       ``x Φ(x/s) + σ² φ(x/s) / s``, s = √(1+σ²)   —
=================  ==========================================  ==================================

``sigma = 0`` is handled explicitly and returns the plain activation bit for bit (``torch.relu``,
``F.leaky_relu``, ...), so there is no division by zero. For ``sigma > 0`` the ratio ``t`` is
clamped to [−40, 40]: beyond that Φ(t) is exactly 0 or 1 and φ(t) exactly 0 even in float64, so
the clamp changes no value, but it keeps ``t²`` finite in every dtype and makes first and second
derivatives (double backward included) finite for all finite inputs, e.g. ``x`` in [−1e4, 1e4]
and ``sigma`` in [1e-8, 1e4].

Smoothing every activation of a deep network separately is exact only for the first layer: there
``E[relu(Wx + b + σZ)]`` is what a :class:`SmoothedReLU` after ``nn.Linear`` computes. Deeper
layers receive the smoothed *mean* of the previous layer, not a random input, which is the
paper's construction (a moment-matching approximation of noise injected at every layer), not the
expectation of the whole network under noise.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from mollify._validation import check_real

__all__ = [
    "smoothed_relu",
    "smoothed_leaky_relu",
    "smoothed_abs",
    "smoothed_step",
    "smoothed_sign",
    "smoothed_hardtanh",
    "smoothed_gelu",
    "SmoothedReLU",
    "SmoothedLeakyReLU",
    "SmoothedAbs",
    "SmoothedStep",
    "SmoothedSign",
    "SmoothedHardtanh",
    "SmoothedGELU",
    "smooth_activations",
]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
# Beyond |t| = 40, Φ(t) is exactly 0 or 1 and φ(t) exactly 0 in float64 (φ(40) ~ 1e-348).
_T_MAX = 40.0


def _check_sigma(sigma: object) -> float:
    return check_real("sigma", sigma, low=0)


def _check_input(x: object) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    return x


def _ratio(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x / sigma`` clamped to [−40, 40] (no value changes; see the module docstring)."""
    return (x / sigma).clamp(-_T_MAX, _T_MAX)


def _pdf(t: torch.Tensor) -> torch.Tensor:
    """Standard normal density φ(t) = exp(−t²/2) / √(2π)."""
    return torch.exp(-0.5 * t * t) * _INV_SQRT_2PI


def _relu_sigma(x: torch.Tensor, sigma: float) -> torch.Tensor:
    t = _ratio(x, sigma)
    return x * torch.special.ndtr(t) + sigma * _pdf(t)


# --- functional forms ---------------------------------------------------------------------------


def smoothed_relu(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smoothed ReLU ``E[relu(x + σZ)] = x Φ(x/σ) + σ φ(x/σ)``, elementwise.

    The paper (arXiv 2311.00531) writes the same function as
    ``(x/2)(1 + erf(x/μ)) + μ/(2√π)·exp(−x²/μ²)`` with ``μ = √2·σ`` (its noise is N(0, μ²/2)).
    The derivative is ``Φ(x/σ)`` (a probit "soft gate"), the second derivative ``φ(x/σ)/σ``.

    Args:
        x: floating-point tensor of any shape.
        sigma: noise standard deviation, ``>= 0``; ``0`` returns ``torch.relu(x)`` exactly.

    Returns:
        A tensor shaped and typed like ``x``.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor or ``sigma`` not a real number.
        ValueError: if ``sigma`` is negative, NaN or infinite.

    >>> smoothed_relu(torch.tensor([-1.0, 0.0, 1.0]), 0.5)
    tensor([0.0042, 0.1995, 1.0042])
    """
    x = _check_input(x)
    sigma = _check_sigma(sigma)
    if sigma == 0.0:
        return torch.relu(x)
    return _relu_sigma(x, sigma)


def smoothed_leaky_relu(
    x: torch.Tensor, sigma: float, negative_slope: float = 0.01
) -> torch.Tensor:
    """Gaussian-smoothed leaky ReLU ``a x + (1 − a)·(x Φ(x/σ) + σ φ(x/σ))``, ``a = negative_slope``.

    Leaky ReLU is ``a·y + (1 − a)·relu(y)``, and expectation is linear.

    Args:
        x: floating-point tensor of any shape.
        sigma: noise standard deviation, ``>= 0``; ``0`` returns ``F.leaky_relu(x, a)`` exactly.
        negative_slope: slope ``a`` for negative inputs (any finite real, as in ``nn.LeakyReLU``).

    Returns:
        A tensor shaped and typed like ``x``.

    Raises:
        TypeError, ValueError: on a non-tensor ``x`` or a bad ``sigma``/``negative_slope``.

    >>> smoothed_leaky_relu(torch.tensor([-1.0, 1.0]), 0.0, 0.1)
    tensor([-0.1000,  1.0000])
    """
    x = _check_input(x)
    sigma = _check_sigma(sigma)
    a = check_real("negative_slope", negative_slope)
    if sigma == 0.0:
        return F.leaky_relu(x, a)
    return a * x + (1.0 - a) * _relu_sigma(x, sigma)


def smoothed_abs(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smoothed absolute value ``E|x + σZ| = x (2Φ(x/σ) − 1) + 2σ φ(x/σ)``.

    ``2Φ(t) − 1`` is computed as ``erf(t/√2)`` (no cancellation near 0). The value at 0 is
    ``σ √(2/π)``, the mean of a half-normal.

    Args:
        x: floating-point tensor of any shape.
        sigma: noise standard deviation, ``>= 0``; ``0`` returns ``torch.abs(x)`` exactly.

    Returns:
        A tensor shaped and typed like ``x``.

    Raises:
        TypeError, ValueError: on a non-tensor ``x`` or a bad ``sigma``.

    >>> smoothed_abs(torch.tensor([0.0, 3.0]), 1.0)
    tensor([0.7979, 3.0008])
    """
    x = _check_input(x)
    sigma = _check_sigma(sigma)
    if sigma == 0.0:
        return torch.abs(x)
    t = _ratio(x, sigma)
    return x * torch.erf(t * _SQRT_HALF) + 2.0 * sigma * _pdf(t)


def smoothed_step(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smoothed Heaviside step ``E[H(x + σZ)] = Φ(x/σ)``.

    For every ``sigma > 0`` the value at ``x = 0`` is 1/2, so the unsmoothed step is taken with
    ``H(0) = 1/2`` (``torch.heaviside(x, 0.5)``), which makes the result continuous in ``sigma``.

    Args:
        x: floating-point tensor of any shape.
        sigma: noise standard deviation, ``>= 0``; ``0`` returns the step (0, 1/2 or 1) with zero
            gradient.

    Returns:
        A tensor shaped and typed like ``x``, values in [0, 1].

    Raises:
        TypeError, ValueError: on a non-tensor ``x`` or a bad ``sigma``.

    >>> smoothed_step(torch.tensor([-1.0, 0.0, 1.0]), 1.0)
    tensor([0.1587, 0.5000, 0.8413])
    """
    x = _check_input(x)
    sigma = _check_sigma(sigma)
    if sigma == 0.0:
        return (torch.sign(x) + 1.0) * 0.5
    return torch.special.ndtr(_ratio(x, sigma))


def smoothed_sign(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smoothed sign ``E[sign(x + σZ)] = 2Φ(x/σ) − 1 = erf(x / (σ√2))``.

    Args:
        x: floating-point tensor of any shape.
        sigma: noise standard deviation, ``>= 0``; ``0`` returns ``torch.sign(x)`` exactly.

    Returns:
        A tensor shaped and typed like ``x``, values in [−1, 1].

    Raises:
        TypeError, ValueError: on a non-tensor ``x`` or a bad ``sigma``.

    >>> smoothed_sign(torch.tensor([-1.0, 0.0, 1.0]), 1.0)
    tensor([-0.6827,  0.0000,  0.6827])
    """
    x = _check_input(x)
    sigma = _check_sigma(sigma)
    if sigma == 0.0:
        return torch.sign(x)
    return torch.erf(_ratio(x, sigma) * _SQRT_HALF)


def smoothed_hardtanh(
    x: torch.Tensor, sigma: float, min_val: float = -1.0, max_val: float = 1.0
) -> torch.Tensor:
    """Gaussian-smoothed hardtanh ``E[clip(x + σZ, lo, hi)] = lo + relu_σ(x−lo) − relu_σ(x−hi)``.

    Uses ``clip(y, lo, hi) = lo + relu(y − lo) − relu(y − hi)``; ``nn.ReLU6`` is the case
    ``lo = 0, hi = 6``.

    Args:
        x: floating-point tensor of any shape.
        sigma: noise standard deviation, ``>= 0``; ``0`` returns ``F.hardtanh(x, lo, hi)`` exactly.
        min_val: lower clip value ``lo``.
        max_val: upper clip value ``hi``, ``> min_val``.

    Returns:
        A tensor shaped and typed like ``x``, values in [lo, hi].

    Raises:
        TypeError, ValueError: on a non-tensor ``x``, a bad ``sigma`` or ``max_val <= min_val``.

    >>> smoothed_hardtanh(torch.tensor([-5.0, 0.5, 5.0]), 0.5)
    tensor([-1.0000,  0.4585,  1.0000])
    """
    x = _check_input(x)
    sigma = _check_sigma(sigma)
    lo = check_real("min_val", min_val)
    hi = check_real("max_val", max_val)
    if not hi > lo:
        raise ValueError(f"max_val must be > min_val, got min_val={lo}, max_val={hi}")
    if sigma == 0.0:
        return F.hardtanh(x, lo, hi)
    return lo + _relu_sigma(x - lo, sigma) - _relu_sigma(x - hi, sigma)


def smoothed_gelu(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smoothed exact GELU ``E[g(x + σZ)]`` with ``g(y) = y Φ(y)``.

    With ``s = √(1 + σ²)`` and ``u = x / s``: ``E[Φ(x + σZ)] = Φ(u)`` and, by Stein's lemma,
    ``E[σZ Φ(x + σZ)] = σ² E[φ(x + σZ)] = σ² φ(u)/s``, so the result is ``x Φ(u) + σ² φ(u) / s``.
    Only the exact GELU (``approximate="none"``) has this closed form.

    Args:
        x: floating-point tensor of any shape.
        sigma: noise standard deviation, ``>= 0``; ``0`` returns ``F.gelu(x)`` exactly.

    Returns:
        A tensor shaped and typed like ``x``.

    Raises:
        TypeError, ValueError: on a non-tensor ``x`` or a bad ``sigma``.

    >>> smoothed_gelu(torch.tensor([0.0]), 1.0)  # σ² φ(0) / √2
    tensor([0.2821])
    """
    x = _check_input(x)
    sigma = _check_sigma(sigma)
    if sigma == 0.0:
        return F.gelu(x)
    s = math.sqrt(1.0 + sigma * sigma)
    u = (x / s).clamp(-_T_MAX, _T_MAX)
    return x * torch.special.ndtr(u) + (sigma * sigma / s) * _pdf(u)


# --- modules ------------------------------------------------------------------------------------


class _SmoothedActivation(nn.Module):
    """Base class: holds a validated ``sigma`` (settable, e.g. to anneal it during training)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    @property
    def sigma(self) -> float:
        """Noise standard deviation (``>= 0``); assigning validates the new value."""
        return self._sigma

    @sigma.setter
    def sigma(self, value: float) -> None:
        self._sigma = _check_sigma(value)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class SmoothedReLU(_SmoothedActivation):
    """Module form of :func:`smoothed_relu`: ``x Φ(x/σ) + σ φ(x/σ)``, shape-preserving.

    Args:
        sigma: noise standard deviation, ``>= 0`` (``0``: plain ReLU). Settable later.

    Raises:
        TypeError, ValueError: on a bad ``sigma``.

    >>> SmoothedReLU(0.5)(torch.tensor([0.0]))
    tensor([0.1995])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return smoothed_relu(x, self.sigma)


class SmoothedLeakyReLU(_SmoothedActivation):
    """Module form of :func:`smoothed_leaky_relu`: ``a x + (1 − a)·relu_σ(x)``.

    Args:
        sigma: noise standard deviation, ``>= 0`` (``0``: plain leaky ReLU).
        negative_slope: slope ``a`` for negative inputs.

    Raises:
        TypeError, ValueError: on a bad ``sigma`` or ``negative_slope``.

    >>> SmoothedLeakyReLU(0.0, 0.2)(torch.tensor([-1.0]))
    tensor([-0.2000])
    """

    def __init__(self, sigma: float, negative_slope: float = 0.01) -> None:
        super().__init__(sigma)
        self.negative_slope = check_real("negative_slope", negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return smoothed_leaky_relu(x, self.sigma, self.negative_slope)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, negative_slope={self.negative_slope}"


class SmoothedAbs(_SmoothedActivation):
    """Module form of :func:`smoothed_abs`: ``x (2Φ(x/σ) − 1) + 2σ φ(x/σ)``.

    Args:
        sigma: noise standard deviation, ``>= 0`` (``0``: ``torch.abs``).

    Raises:
        TypeError, ValueError: on a bad ``sigma``.

    >>> SmoothedAbs(1.0)(torch.tensor([0.0]))
    tensor([0.7979])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return smoothed_abs(x, self.sigma)


class SmoothedStep(_SmoothedActivation):
    """Module form of :func:`smoothed_step`: ``Φ(x/σ)`` (a probit sigmoid of width σ).

    Args:
        sigma: noise standard deviation, ``>= 0`` (``0``: Heaviside step with ``H(0) = 1/2``).

    Raises:
        TypeError, ValueError: on a bad ``sigma``.

    >>> SmoothedStep(1.0)(torch.tensor([0.0]))
    tensor([0.5000])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return smoothed_step(x, self.sigma)


class SmoothedSign(_SmoothedActivation):
    """Module form of :func:`smoothed_sign`: ``erf(x / (σ√2))``.

    Args:
        sigma: noise standard deviation, ``>= 0`` (``0``: ``torch.sign``).

    Raises:
        TypeError, ValueError: on a bad ``sigma``.

    >>> SmoothedSign(1.0)(torch.tensor([1.0]))
    tensor([0.6827])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return smoothed_sign(x, self.sigma)


class SmoothedHardtanh(_SmoothedActivation):
    """Module form of :func:`smoothed_hardtanh` (``nn.ReLU6`` is ``min_val=0, max_val=6``).

    Args:
        sigma: noise standard deviation, ``>= 0`` (``0``: plain hardtanh).
        min_val: lower clip value.
        max_val: upper clip value, ``> min_val``.

    Raises:
        TypeError, ValueError: on a bad ``sigma`` or ``max_val <= min_val``.

    >>> SmoothedHardtanh(0.1, 0.0, 6.0)(torch.tensor([3.0]))
    tensor([3.])
    """

    def __init__(self, sigma: float, min_val: float = -1.0, max_val: float = 1.0) -> None:
        super().__init__(sigma)
        self.min_val = check_real("min_val", min_val)
        self.max_val = check_real("max_val", max_val)
        if not self.max_val > self.min_val:
            raise ValueError(
                f"max_val must be > min_val, got min_val={self.min_val}, max_val={self.max_val}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return smoothed_hardtanh(x, self.sigma, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, min_val={self.min_val}, max_val={self.max_val}"


class SmoothedGELU(_SmoothedActivation):
    """Module form of :func:`smoothed_gelu` (exact GELU): ``x Φ(x/s) + σ² φ(x/s)/s``.

    Args:
        sigma: noise standard deviation, ``>= 0`` (``0``: ``F.gelu``).

    Raises:
        TypeError, ValueError: on a bad ``sigma``.

    >>> SmoothedGELU(0.0)(torch.tensor([1.0]))
    tensor([0.8413])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return smoothed_gelu(x, self.sigma)


# --- model conversion ---------------------------------------------------------------------------


def _counterpart(module: nn.Module, sigma: float) -> nn.Module | None:
    """The smoothed replacement of ``module``, or ``None`` when it has no closed form here.

    Exact types only: a subclass may override ``forward``, so it is left alone.
    """
    kind = type(module)
    new: nn.Module
    if kind is nn.ReLU:
        new = SmoothedReLU(sigma)
    elif kind is nn.LeakyReLU:
        new = SmoothedLeakyReLU(sigma, module.negative_slope)
    elif kind in (nn.Hardtanh, nn.ReLU6):
        new = SmoothedHardtanh(sigma, module.min_val, module.max_val)
    elif kind is nn.GELU and module.approximate == "none":
        new = SmoothedGELU(sigma)
    else:
        return None
    new.train(module.training)
    return new


def _replace_children(module: nn.Module, sigma: float) -> int:
    count = 0
    for name, child in list(module.named_children()):
        new = _counterpart(child, sigma)
        if new is None:
            count += _replace_children(child, sigma)
        else:
            setattr(module, name, new)
            count += 1
    return count


def smooth_activations(model: nn.Module, sigma: float) -> nn.Module:
    """Return a copy of ``model`` whose activation modules are replaced by their smoothed forms.

    Replaced recursively (inside ``nn.Sequential``, ``nn.ModuleList``/``ModuleDict`` and custom
    modules), by exact type: ``nn.ReLU`` → :class:`SmoothedReLU`, ``nn.LeakyReLU`` →
    :class:`SmoothedLeakyReLU` (same slope), ``nn.Hardtanh``/``nn.ReLU6`` →
    :class:`SmoothedHardtanh` (same bounds), ``nn.GELU(approximate="none")`` →
    :class:`SmoothedGELU`. Everything else is kept: activations without a closed form (tanh,
    sigmoid, SiLU, tanh-approximated GELU), subclasses of the types above, and **activations
    called functionally** in a custom ``forward`` (``torch.relu(x)``, ``F.relu(x)``), which are
    not modules and cannot be found. Weights, buffers and train/eval mode are copied; the
    original model is not modified. ``copy.deepcopy`` is used once per call: this is a one-time
    model conversion, not a per-sample operation.

    Each activation ``act`` becomes ``x ↦ E[act(x + σZ)]``: for the first layer this is the exact
    expectation under noise on its pre-activation; deeper layers see smoothed means (see the
    module docstring).

    Args:
        model: any ``nn.Module`` (an activation module itself is replaced too).
        sigma: noise standard deviation, ``>= 0``; ``0`` gives a model that computes exactly what
            ``model`` computes.

    Returns:
        The converted deep copy (an ``nn.Module``), on the device and dtype of ``model``.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module`` or ``sigma`` not a real number.
        ValueError: if ``sigma`` is negative, NaN or infinite.

    Warns:
        UserWarning: if no activation module was found to replace.

    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> smooth_activations(net, 0.1)[1]
    SmoothedReLU(sigma=0.1)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    sigma = _check_sigma(sigma)
    model = copy.deepcopy(model)
    top = _counterpart(model, sigma)
    if top is not None:
        return top
    if _replace_children(model, sigma) == 0:
        warnings.warn(
            "smooth_activations found no nn.ReLU, nn.LeakyReLU, nn.Hardtanh, nn.ReLU6 or exact "
            "nn.GELU module to replace; functional calls such as torch.relu inside forward are "
            "not replaced",
            stacklevel=2,
        )
    return model
