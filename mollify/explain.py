"""Saliency maps of torch models as mollified gradients: the MCGM framework (arXiv 2407.00371).

A saliency map of class c at input x is the input gradient ∇_x f_c(x; θ) of the class score
(logit) f_c. Monte Carlo Gradient Mollification (MCGM) replaces it by the gradient of a mollified
score and estimates that by Monte Carlo. Three places to put the noise (``mode``):

* ``"input"``: ∇(f_c * η_ε)(x) = E_u[∇_x f_c(x − ε u; θ)], estimated by
  (1/n) Σ_i ∇_x f_c(x − ε u_i; θ), u_i ~ η^D. With the Gaussian kernel this is **SmoothGrad**
  (Smilkov et al., arXiv 1706.03825).
* ``"parameter"``: E_z[∇_x f_c(x; θ_z)] over perturbed weights θ_z = θ ⊙ (1 + σ z)
  (``noise="multiplicative"``) or θ + σ z (``"additive"``), z ~ η^P, estimated by
  (1/m) Σ_j ∇_x f_c(x; θ_{z_j}). With multiplicative Gaussian noise this is **NoiseGrad**
  (Bykov et al., arXiv 2106.10185). Multiplicative noise is a mollification in θ with a
  per-weight bandwidth σ|θ_k| (η is symmetric, so θ_k(1 + σ z_k) has the law of θ_k + σ|θ_k| z_k).
* ``"joint"``: both, E_{z,u}[∇_x f_c(x − ε u; θ_z)], estimated with m weight samples and n input
  samples per weight sample (independent input noise for every weight sample):
  (1/(m n)) Σ_j Σ_i ∇_x f_c(x − ε u_{ji}; θ_{z_j}). With Gaussian noise this is **FusionGrad**
  (NoiseGrad++, arXiv 2106.10185).

Any kernel of :mod:`mollify.kernels` can be used; kernels have unit variance, so ``eps`` is the
noise standard deviation per input coordinate whatever the kernel. ``eps_rel`` gives it instead as
a fraction of each example's input range, ε_b = eps_rel·(max x_b − min x_b) (SmoothGrad's
convention; e.g. 0.15).

Design:

* Input noise u_i comes from :class:`~mollify.montecarlo.PointStream` (samplers ``"mc"``,
  ``"antithetic"``, ``"qmc"``, ``"rqmc"``) in dimension D = number of features per example; all
  examples of a batch share the same u_i (scaled by their own ε_b), so an example's attribution
  does not depend on the rest of the batch. Noisy copies are folded into the batch, ``chunk_size``
  samples per forward/backward pass.
* Weight noise z_j (one vector for all parameters) comes from a private generator seeded by
  (key, j), the key being drawn once from ``generator``: standard normal numbers, mapped through
  F_η⁻¹ ∘ Φ for a kernel η other than the Gaussian (common random numbers across kernels);
  ``"antithetic"`` pairs (z, −z). Weight samples are stacked along a new leading axis and
  evaluated all at once, with no copies of the model, no in-place perturbation, buffers
  (BatchNorm statistics) used as they are: for a model built from common layers (read with
  ``torch.fx``) as one m-times-wider model of grouped convolutions and batched matrix products
  (:mod:`mollify.grouped`, about 2× faster than vmap on a CPU), for any other model with
  ``torch.func.functional_call`` + ``torch.func.vmap`` + ``torch.func.grad`` (``batching``).
* Gradients are accumulated with pairwise sums over aligned runs of samples, so memory does not
  grow with n and the result does not depend on ``chunk_size``: bitwise in input mode (for models
  that treat every row of a batch alike), to rounding (~1e-7 relative in float32) in parameter
  and joint modes, where a different number of weight samples shares each kernel call.
* ``chunk_size=None`` (the default) means 256 // B samples per pass on the CPU (512 // B with
  weight noise), and on CUDA as many as fit in half the free GPU memory (``"auto"``; see
  :func:`chunk_for_memory`): a probe pass over two copies of the batch measures the peak bytes per
  copy. Give an int to override.
* ``autocast=torch.bfloat16`` (or ``torch.float16`` on CUDA) runs the model's forward and backward
  under ``torch.autocast`` (with weight noise: through grouped layers only); noise, inputs and the
  accumulated map stay in the inputs' dtype. ``python -m mollify bench`` measures its speed and
  its error against float32.
* The model is put in eval mode for the call and every module's mode is restored afterwards (also
  when the forward raises); parameters and their ``requires_grad`` flags are never modified.
* ``target``: ``None`` (the class the model predicts for the clean input), an int, or one int per
  example. A model returning one score per example, shape (N,), takes ``target=None``.

Post-processing, as Captum's ``Saliency``/``NoiseTunnel``: ``abs=True`` averages |gradient|,
``square=True`` averages gradient² (SmoothGrad², Captum's ``nt_type="smoothgrad_sq"``); both are
applied to every sample before the average. :class:`VarGrad` reports the variance of the samples,
mean(g²) − mean(g)² (Captum's ``nt_type="vargrad"``; Adebayo et al., arXiv 1810.03307).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from mollify._validation import check_choice, check_generator, check_int, check_real
from mollify.grouped import grouped_forward, grouped_plan
from mollify.kernels import Kernel, kernel as _get_kernel
from mollify.montecarlo import (
    SAMPLERS,
    Estimate,
    PointStream,
    _TreeSum,
    _check_sampler_size,
    _draw_key,
    _from_normal,
    _mix,
)

__all__ = [
    "MODES",
    "NOISES",
    "BATCHINGS",
    "Explainer",
    "Gradient",
    "MCGM",
    "SmoothGrad",
    "VarGrad",
    "NoiseGrad",
    "FusionGrad",
    "AUTOCAST_DTYPES",
    "chunk_for_memory",
]

#: Where MCGM puts the noise.
MODES: tuple[str, ...] = ("input", "parameter", "joint")
#: How weight noise is applied: θ + σz or θ ⊙ (1 + σz).
NOISES: tuple[str, ...] = ("additive", "multiplicative")
#: How parameter and joint modes evaluate the stacked weight samples (see :mod:`mollify.grouped`).
BATCHINGS: tuple[str, ...] = ("auto", "grouped", "vmap")
#: Reduced-precision dtypes accepted by ``autocast``.
AUTOCAST_DTYPES: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float16)
#: Share of the free CUDA memory that ``chunk_size="auto"`` fills.
CUDA_MEMORY_FRACTION = 0.5

_DEFAULT_ROWS = 256  # default number of noisy examples per forward/backward pass
# with weight noise: a pass also draws and stacks its weight samples, a fixed cost per pass, so
# passes are twice as big (NoiseGrad's default of 10 weight samples is one pass for B <= 51)
_DEFAULT_ROWS_WEIGHTS = 512


# --------------------------------------------------------------------------------------------
# helpers


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every module in eval mode; restore each module's own flag afterwards, even on error."""
    states = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, flag in states:
            m.training = flag


def _autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` on ``device`` for a reduced-precision ``dtype``; no-op for None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def chunk_for_memory(
    free_bytes: int, bytes_per_sample: float, limit: int, *, fraction: float = CUDA_MEMORY_FRACTION
) -> int:
    """Samples per pass that fit in ``fraction`` of ``free_bytes``: ⌊fraction·free / per sample⌋,
    clamped to [1, limit]. Used by ``chunk_size="auto"``.

    >>> chunk_for_memory(8 * 2**30, 100 * 2**20, limit=1000)   # 4 GiB / 100 MiB
    40
    >>> chunk_for_memory(2**20, 2**30, limit=50), chunk_for_memory(2**40, 1, limit=50)
    (1, 50)
    """
    limit = check_int("limit", limit, minimum=1)
    fraction = check_real("fraction", fraction, low=0, high=1, low_open=True)
    fits = int(fraction * free_bytes // max(float(bytes_per_sample), 1.0))
    return max(1, min(limit, fits))


def _check_inputs(inputs: object) -> Tensor:
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.is_complex() or not inputs.is_floating_point():
        raise TypeError(
            f"inputs must be a floating-point tensor (gradients are taken with respect to it), "
            f"got dtype {inputs.dtype}; convert it first, e.g. inputs.float()"
        )
    if inputs.dim() == 0 or inputs.shape[0] == 0:
        raise ValueError(
            f"inputs must have a leading batch axis with at least one example, got shape "
            f"{tuple(inputs.shape)}"
        )
    x = inputs.detach()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("inputs must be finite (no NaN or inf)")
    return x


def _check_generators(generator: object, batch: int) -> torch.Generator | list | None:
    """``generator``: None, a ``torch.Generator``, or a sequence of one per example."""
    if isinstance(generator, Sequence) and not isinstance(generator, (str, bytes)):
        gens = list(generator)
        if len(gens) != batch:
            raise ValueError(
                f"generator must be one torch.Generator or one per example ({batch}), got a "
                f"sequence of {len(gens)}"
            )
        for k, g in enumerate(gens):
            if not isinstance(g, torch.Generator):
                raise TypeError(
                    f"generator[{k}] must be a torch.Generator, got {type(g).__name__}"
                )
        return gens
    return check_generator(generator)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _check_target(target: object, batch: int, device: torch.device) -> Tensor | None:
    """None, or a (batch,) int64 tensor of class indices (range checked later against the model)."""
    if target is None:
        return None
    if isinstance(target, bool):
        raise TypeError("target must be None, an int or a tensor of ints, got bool")
    if isinstance(target, numbers.Integral):
        t = torch.full((batch,), target, dtype=torch.long, device=device)
    else:
        if isinstance(target, (list, tuple)):
            if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                       for v in target):
                raise TypeError("target must be None, an int, or a sequence/tensor of ints")
            target = torch.tensor([int(v) for v in target], dtype=torch.long)
        if not isinstance(target, Tensor):
            raise TypeError(
                f"target must be None, an int, or a tensor of ints, got {type(target).__name__}"
            )
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target must hold integers, got dtype {target.dtype}")
        if target.dim() == 0:
            t = target.reshape(1).expand(batch)
        elif target.shape == (batch,):
            t = target
        else:
            raise ValueError(
                f"target must be None, an int, or a tensor of shape ({batch},) (one class per "
                f"example); got shape {tuple(target.shape)}"
            )
        t = t.to(device=device, dtype=torch.long)
    if bool((t < 0).any()):
        raise ValueError(f"target must hold class indices >= 0, got {t.tolist()}")
    return t.contiguous()


def _select(out: Tensor, tgt: Tensor | None, hi: int) -> Tensor:
    """Scores f_c of every row: out[:, tgt] for logits (N, C), out itself for scores (N,)."""
    if not isinstance(out, Tensor):
        raise TypeError(f"the model must return a tensor, got {type(out).__name__}")
    if tgt is None:
        if out.dim() == 1:
            return out
        raise ValueError(
            f"the model returned shape {tuple(out.shape)}; target=None needs logits (N, C) or "
            "scores (N,)"
        )
    if out.dim() != 2:
        raise ValueError(
            f"the model must return logits of shape (N, classes) to take a target, got "
            f"{tuple(out.shape)}" + ("; use target=None for one score per example"
                                     if out.dim() == 1 else "")
        )
    if hi >= out.shape[1]:
        raise ValueError(
            f"target must be < the number of classes {out.shape[1]}, got a target of {hi}"
        )
    return out.gather(1, tgt[:, None])[:, 0]


def _unit_sums(rows: Tensor, unit: int) -> Tensor:
    """Sums over consecutive runs of ``unit`` rows, exactly as :class:`_TreeSum` adds them.

    ``rows`` has k·unit rows; returns (k, ...) whose entries equal, bitwise, ``_TreeSum`` fed with
    the rows of one run in any chunking (aligned power-of-two pieces, pairwise trees, merged from
    the right).
    """
    k = rows.shape[0] // unit
    x = rows.reshape(k, unit, *rows.shape[1:])
    pieces, off, left = [], 0, unit
    while left:
        size = 1 << (left.bit_length() - 1)
        p = x[:, off : off + size]
        while p.shape[1] > 1:
            p = p[:, 0::2] + p[:, 1::2]
        pieces.append(p[:, 0])
        off += size
        left -= size
    acc = pieces[-1]
    for p in reversed(pieces[:-1]):
        acc = p + acc
    return acc


class _Accumulator:
    """Running statistics of gradient samples that arrive in chunks, in a fixed order.

    Samples are grouped into independent *units* of ``unit`` consecutive samples (1 for plain MC,
    2 for antithetic pairs, a replicate for RQMC, a weight sample's block in joint mode). The
    estimate is the mean of unit means; its standard error is their standard deviation / √units.
    With ``moments=True`` the sample mean and (population) variance of the samples themselves are
    kept as well (VarGrad). All sums are pairwise tree sums: the result is the same for every
    chunking. Memory: O(log n) tensors of one sample's shape. With ``spread=False`` only the sums
    of unit means are kept (no squares): the mean is the same, bit for bit, and the standard
    error is NaN — what :meth:`MCGM.attribute` needs, at a fraction of the accumulation cost.
    """

    def __init__(self, unit: int, moments: bool, spread: bool = True) -> None:
        self.unit = unit
        self.spread = spread
        self.count = 0
        self._part: _TreeSum | None = None
        self._filled = 0
        self._units = _TreeSum()
        self._ushift: Tensor | None = None
        self._rows = _TreeSum() if moments else None
        self._rshift: Tensor | None = None

    def add(self, g: Tensor) -> None:
        r = g.shape[0]
        self.count += r
        if self._rows is not None:
            if self._rshift is None:
                self._rshift = g[0].clone()
            d = g - self._rshift
            self._rows.add(torch.stack([d, d * d], 1))
        off = 0
        if self._filled:
            take = min(self.unit - self._filled, r)
            self._part.add(g[:take])
            self._filled += take
            off = take
            if self._filled == self.unit:
                self._push(self._part.total().unsqueeze(0))
                self._part, self._filled = None, 0
        full = (r - off) // self.unit
        if full:
            self._push(_unit_sums(g[off : off + full * self.unit], self.unit))
            off += full * self.unit
        if off < r:
            self._part = _TreeSum()
            self._part.add(g[off:])
            self._filled = r - off

    def _push(self, sums: Tensor) -> None:
        means = sums / self.unit
        if self._ushift is None:
            self._ushift = means[0].clone()
        d = means - self._ushift
        self._units.add(torch.stack([d, d * d], 1) if self.spread else d.unsqueeze(1))

    def mean(self) -> tuple[Tensor, Tensor]:
        """(mean, stderr) from the unit means (stderr NaN with a single unit)."""
        if self._ushift is None or self._filled:
            raise RuntimeError("mean() needs at least one complete unit of samples")
        s = self._units.total()
        units = self._units.count
        mean = self._ushift + s[0] / units
        if units < 2 or not self.spread:
            return mean, torch.full_like(mean, math.nan)
        ss = torch.clamp(s[1] - s[0] * s[0] / units, min=0.0)
        return mean, torch.sqrt(ss / (units - 1) / units)

    def variance(self) -> Tensor:
        """Population variance of the samples, mean(g²) − mean(g)² (Captum's VarGrad)."""
        if self._rows is None:
            raise RuntimeError("variance() needs the per-sample moments (moments=True)")
        s = self._rows.total()
        m = s[0] / self.count
        return torch.clamp(s[1] / self.count - m * m, min=0.0)


@dataclass(frozen=True)
class _Config:
    mode: str
    kernel: Kernel
    kernel_param: Kernel
    noise: str
    eps: float | None
    eps_rel: float | None
    eps_param: float
    n: int
    n_param: int
    sampler: str
    replicates: int
    chunk_size: int | str | None
    abs: bool
    square: bool
    autocast: torch.dtype | None
    batching: str


# --------------------------------------------------------------------------------------------
# explainers


class Explainer:
    """Base class: holds the model and the plumbing shared by all explainers.

    Subclasses implement :meth:`attribute`. After each call, ``last_evaluations`` holds the number
    of (noisy) example gradients computed — batch size × samples — and ``last_model_calls`` the
    number of forward passes (a vmapped pass over many weight samples counts once), for
    benchmarking.

    Args:
        model: an ``nn.Module`` mapping a batch ``(N, *S)`` to logits ``(N, C)`` or scores ``(N,)``.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module``.
    """

    _options: dict[str, Any]

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._options = {}
        self.last_evaluations = 0
        self.last_model_calls = 0

    def __repr__(self) -> str:
        opts = ", ".join(
            f"{k}={v.name if isinstance(v, Kernel) else v!r}"
            for k, v in self._options.items()
            if v is not None
        )
        head = f"{type(self).__name__}({type(self.model).__name__}"
        return head + (f", {opts})" if opts else ")")

    # ----- shared steps
    def _forward(self, x: Tensor) -> Tensor:
        self.last_model_calls += 1
        return self.model(x)

    def _targets(self, target: object, x: Tensor) -> tuple[Tensor | None, int]:
        """Target classes (B,) (predicted ones for None) and the largest index, for range checks."""
        tgt = _check_target(target, x.shape[0], x.device)
        if tgt is None:
            with torch.no_grad():
                out = self._forward(x)
            if not isinstance(out, Tensor):
                raise TypeError(f"the model must return a tensor, got {type(out).__name__}")
            if out.dim() == 1:
                return None, -1
            if out.dim() != 2:
                raise ValueError(
                    f"the model must return logits (N, C) or scores (N,), got {tuple(out.shape)}"
                )
            tgt = out.argmax(1)
        return tgt, int(tgt.max())

    def _input_grad(self, x: Tensor, tgt: Tensor | None, hi: int) -> Tensor:
        """∇_x Σ_rows f_c(x_row) for a batch, by autograd through the model as it is."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            score = _select(self._forward(x), tgt, hi)
            if not score.requires_grad:
                raise ValueError(
                    "the model's output does not depend differentiably on its input "
                    "(no autograd graph); saliency needs a differentiable model"
                )
            (g,) = torch.autograd.grad(score.sum(), x, allow_unused=True)
        return torch.zeros_like(x) if g is None else g.detach()

    @staticmethod
    def _transform(g: Tensor, cfg_abs: bool, cfg_square: bool) -> Tensor:
        if cfg_square:
            return g * g
        if cfg_abs:
            return g.abs()
        return g

    def attribute(
        self,
        inputs: Tensor,
        target: int | Sequence[int] | Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **overrides: Any,
    ) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Gradient(Explainer):
    """Plain saliency: the input gradient ∇_x f_c(x) of the target's logit.

    Args:
        model: an ``nn.Module`` returning logits ``(N, C)`` (or scores ``(N,)``).
        abs: return |∇_x f_c(x)|.
        square: return (∇_x f_c(x))².

    >>> from mollify.data import small_cnn
    >>> model = small_cnn(width=2, seed=0)
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> Gradient(model).attribute(x, target=3).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(self, model: nn.Module, *, abs: bool = False, square: bool = False) -> None:
        super().__init__(model)
        self._options = {"abs": _check_bool("abs", abs), "square": _check_bool("square", square)}

    def attribute(
        self,
        inputs: Tensor,
        target: int | Sequence[int] | Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        **overrides: Any,
    ) -> Tensor:
        """Gradient of the target logit with respect to the inputs.

        Args:
            inputs: a batch ``(B, *S)`` of floating-point inputs (need not require grad).
            target: ``None`` (predicted class), an int, or ``B`` ints (tensor or sequence).
            generator: unused (accepted for a uniform interface).
            **overrides: ``abs`` or ``square`` for this call.

        Returns:
            Tensor shaped like ``inputs``.

        Raises:
            TypeError: on non-floating inputs, a malformed target or an unknown override.
            ValueError: on NaN/inf inputs or a target of the wrong shape or range.
        """
        unknown = set(overrides) - set(self._options)
        if unknown:
            raise TypeError(
                f"Gradient.attribute() got unexpected option(s) {sorted(unknown)}; valid: abs, "
                "square"
            )
        opts = {**self._options, **overrides}
        use_abs, use_square = _check_bool("abs", opts["abs"]), _check_bool("square", opts["square"])
        x = _check_inputs(inputs)
        self.last_model_calls = 0
        with _eval_mode(self.model):
            tgt, hi = self._targets(target, x)
            g = self._input_grad(x, tgt, hi)
        self.last_evaluations = x.shape[0]
        return self._transform(g, use_abs, use_square)


_MCGM_DEFAULTS: dict[str, Any] = {
    "kernel": "gaussian",
    "mode": "input",
    "noise": "multiplicative",
    "eps": None,
    "eps_rel": None,
    "eps_param": 0.2,
    "n": 50,
    "n_param": 10,
    "sampler": "mc",
    "replicates": 16,
    "chunk_size": None,
    "abs": False,
    "square": False,
    "kernel_param": None,
    "autocast": None,
    "batching": "auto",
}


class MCGM(Explainer):
    """Monte Carlo Gradient Mollification: saliency as an MC estimate of a mollified gradient.

    Estimates (see the module docstring; u ~ η^D input noise, z ~ η^P weight noise):

    * ``mode="input"``: (1/n) Σ_i ∇_x f_c(x − ε u_i; θ).
    * ``mode="parameter"``: (1/m) Σ_j ∇_x f_c(x; θ_j), θ_j = θ ⊙ (1 + σ z_j) or θ + σ z_j.
    * ``mode="joint"``: (1/(m n)) Σ_j Σ_i ∇_x f_c(x − ε u_{ji}; θ_j).

    with n = ``n``, m = ``n_param``, ε = ``eps`` (or ``eps_rel`` × each example's input range),
    σ = ``eps_param``. Unbiased for E[∇_x f_c] under the respective noise (arXiv 2407.00371).

    Args:
        model: an ``nn.Module`` returning logits ``(N, C)`` (or scores ``(N,)``).
        kernel: kernel of the noise (name or :class:`~mollify.kernels.Kernel`).
        mode: one of :data:`MODES`.
        noise: weight noise, one of :data:`NOISES` (parameter and joint modes).
        eps: absolute input-noise standard deviation ε > 0 (input and joint modes).
        eps_rel: input-noise std as a fraction of each example's range max − min (> 0). Exactly
            one of ``eps`` and ``eps_rel`` is required in input and joint modes; both are ignored
            in parameter mode.
        eps_param: weight-noise standard deviation σ > 0 (relative for multiplicative noise).
        n: input-noise samples (per weight sample in joint mode), >= 1.
        n_param: weight samples m (parameter and joint modes), >= 1.
        sampler: one of ``SAMPLERS``. Input noise uses it as it is; weight noise supports
            ``"mc"`` and ``"antithetic"`` only (Sobol points stop at 21201 dimensions), so
            ``"qmc"``/``"rqmc"`` are refused in parameter mode and give Monte Carlo weight samples
            in joint mode. In joint mode ``"rqmc"`` gives every weight sample its own scrambled
            replicate of n points. ``"antithetic"`` needs even ``n`` (input/joint) and even
            ``n_param`` (parameter/joint).
        replicates: scrambled replicates for ``"rqmc"`` in input mode (n a multiple of it).
        chunk_size: noisy samples per example and forward/backward pass (bounds memory: the pass
            holds ``chunk_size × B`` examples); an int, ``"auto"`` (fill half the free CUDA
            memory; off CUDA 256 // B, or 512 // B with weight noise) or None (the same as
            ``"auto"``). Does not change the result (bitwise in input mode, to rounding with
            weight noise).
        abs: average |gradient| instead of the gradient.
        square: average gradient² (SmoothGrad²); implies ``abs``.
        kernel_param: kernel of the weight noise (default: ``kernel``).
        autocast: None, or ``torch.bfloat16``/``torch.float16`` to run the model's passes under
            ``torch.autocast`` (faster on GPUs; the map stays in the inputs' dtype). With weight
            noise only through grouped layers (``batching`` not ``"vmap"``): vmap's batching
            rules do not accept mixed dtypes.
        batching: how parameter and joint modes evaluate the m weight samples at once, one of
            :data:`BATCHINGS`: ``"grouped"`` runs the model m times wider with grouped
            convolutions and batched matrix products (:mod:`mollify.grouped`; models built from
            common layers only), ``"vmap"`` uses ``torch.func.vmap`` (any model), ``"auto"``
            (default) the first when the model allows it. Both give the same map to rounding.
            ``"grouped"`` reads ``forward`` once with ``torch.fx``: use ``"vmap"`` for a model
            whose ``forward`` has Python side effects (counters, stored activations).

    Raises:
        TypeError: if ``model`` is not an ``nn.Module`` or an option has the wrong type.
        ValueError: on an invalid option (n < 1, eps <= 0, both or neither of eps/eps_rel, an
            unknown kernel/mode/noise/sampler, n incompatible with the sampler).

    >>> from mollify.data import small_cnn
    >>> model = small_cnn(width=2, seed=0)
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> expl = MCGM(model, kernel="laplace", mode="joint", eps_rel=0.2, n=4, n_param=2)
    >>> expl.attribute(x, target=1, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([2, 1, 8, 8])
    >>> expl.estimate(x, target=1, generator=torch.Generator().manual_seed(0)).n
    8
    """

    _reduce = "mean"

    def __init__(
        self,
        model: nn.Module,
        *,
        kernel: str | Kernel = "gaussian",
        mode: str = "input",
        noise: str = "multiplicative",
        eps: float | None = None,
        eps_rel: float | None = None,
        eps_param: float = 0.2,
        n: int = 50,
        n_param: int = 10,
        sampler: str = "mc",
        replicates: int = 16,
        chunk_size: int | str | None = None,
        abs: bool = False,
        square: bool = False,
        kernel_param: str | Kernel | None = None,
        autocast: torch.dtype | None = None,
        batching: str = "auto",
    ) -> None:
        super().__init__(model)
        self._options = dict(
            kernel=kernel, mode=mode, noise=noise, eps=eps, eps_rel=eps_rel, eps_param=eps_param,
            n=n, n_param=n_param, sampler=sampler, replicates=replicates, chunk_size=chunk_size,
            abs=abs, square=square, kernel_param=kernel_param, autocast=autocast,
            batching=batching,
        )
        self._config({})

    # ----- options
    def _full(self, opts: dict[str, Any]) -> dict[str, Any]:
        """Map this class's public options onto MCGM's full set (subclasses fix some)."""
        return opts

    def _config(self, overrides: dict[str, Any]) -> _Config:
        unknown = set(overrides) - set(self._options)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.attribute() got unexpected option(s) {sorted(unknown)}; "
                f"valid: {', '.join(self._options)}"
            )
        opts = dict(self._options)
        if "eps" in overrides or "eps_rel" in overrides:  # the pair is replaced as a whole
            opts["eps"] = overrides.get("eps")
            opts["eps_rel"] = overrides.get("eps_rel")
        opts.update({k: v for k, v in overrides.items() if k not in ("eps", "eps_rel")})
        full = {**_MCGM_DEFAULTS, **self._full(opts)}
        return self._validate(full)

    @staticmethod
    def _validate(o: dict[str, Any]) -> _Config:
        mode = check_choice("mode", o["mode"], MODES)
        noise = check_choice("noise", o["noise"], NOISES)
        k = _get_kernel(o["kernel"])
        kp = k if o["kernel_param"] is None else _get_kernel(o["kernel_param"])
        n = check_int("n", o["n"], minimum=1)
        n_param = check_int("n_param", o["n_param"], minimum=1)
        sampler = check_choice("sampler", o["sampler"], SAMPLERS)
        replicates = check_int("replicates", o["replicates"], minimum=2)
        eps_param = check_real("eps_param", o["eps_param"], low=0, low_open=True)
        chunk = o["chunk_size"]
        if isinstance(chunk, str) and chunk != "auto":
            raise ValueError(f"chunk_size must be an int >= 1, 'auto' or None, got {chunk!r}")
        if chunk is not None and chunk != "auto":
            chunk = check_int("chunk_size", chunk, minimum=1)
        batching = check_choice("batching", o["batching"], BATCHINGS)
        autocast = o["autocast"]
        if autocast is not None and autocast not in AUTOCAST_DTYPES:
            raise TypeError(
                f"autocast must be None, torch.bfloat16 or torch.float16, got {autocast!r}"
            )
        if autocast is not None and mode != "input" and batching == "vmap":
            raise ValueError(
                f"autocast with weight noise (mode={mode!r}) needs batching='grouped' or 'auto': "
                "vmap's batching rules for stacked weights, e.g. BatchNorm's, do not accept "
                "mixed dtypes"
            )
        use_abs, use_square = _check_bool("abs", o["abs"]), _check_bool("square", o["square"])
        eps, eps_rel = o["eps"], o["eps_rel"]
        if mode == "parameter":
            eps = eps_rel = None
        else:
            if (eps is None) == (eps_rel is None):
                raise ValueError(
                    f"exactly one of eps (absolute input-noise std) and eps_rel (fraction of each "
                    f"example's input range) must be given for mode={mode!r}; got "
                    + ("both" if eps is not None else "neither")
                )
            if eps is not None:
                eps = check_real("eps", eps, low=0, low_open=True)
            else:
                eps_rel = check_real("eps_rel", eps_rel, low=0, low_open=True)
        if mode == "input":
            _check_sampler_size(n, sampler, replicates)
        elif sampler in ("qmc", "rqmc") and mode == "parameter":
            raise ValueError(
                f"sampler={sampler!r} is for input noise; weight noise (mode='parameter') supports "
                "sampler='mc' or 'antithetic'"
            )
        if mode != "input" and sampler == "antithetic" and n_param % 2:
            raise ValueError(
                f"n_param must be even for sampler='antithetic' (weight pairs z, -z), got {n_param}"
            )
        if mode == "joint":
            if sampler == "antithetic" and n % 2:
                raise ValueError(
                    f"n must be even for sampler='antithetic' (pairs u, -u), got n={n}"
                )
            if sampler == "rqmc" and n_param < 2:
                raise ValueError(
                    "sampler='rqmc' in joint mode uses one scrambled replicate per weight sample "
                    f"and needs n_param >= 2, got {n_param}"
                )
        return _Config(
            mode=mode, kernel=k, kernel_param=kp, noise=noise, eps=eps, eps_rel=eps_rel,
            eps_param=eps_param, n=n, n_param=n_param, sampler=sampler, replicates=replicates,
            chunk_size=chunk, abs=use_abs, square=use_square, autocast=autocast,
            batching=batching,
        )

    # ----- public
    def attribute(
        self,
        inputs: Tensor,
        target: int | Sequence[int] | Tensor | None = None,
        *,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        **overrides: Any,
    ) -> Tensor:
        """The smoothed saliency map: :meth:`estimate`'s mean.

        Args:
            inputs: a batch ``(B, *S)`` of floating-point inputs (need not require grad).
            target: ``None`` (class predicted for the clean input by the unperturbed model), an
                int, or ``B`` ints (tensor of shape ``(B,)`` or a sequence).
            generator: source of randomness (torch's global RNG if None); the same generator
                state gives the same result, for every ``chunk_size``. Or a sequence of ``B``
                generators, one per example: example i's noise then comes from generator i
                alone, and its map is the one that explaining it alone with that generator
                gives (bitwise in input mode for models that treat every row of a batch alike;
                with weight noise the examples are explained one by one).
            **overrides: any constructor option for this call only (e.g. ``n=200``). Giving
                ``eps`` or ``eps_rel`` replaces both.

        Returns:
            Tensor shaped like ``inputs`` (its dtype and device).

        Raises:
            TypeError: on non-floating inputs, a malformed target or an unknown override.
            ValueError: on NaN/inf inputs, a target of the wrong shape or range, or an invalid
                option.
        """
        return self._estimate(inputs, target, generator, overrides, spread=False).mean

    def estimate(
        self,
        inputs: Tensor,
        target: int | Sequence[int] | Tensor | None = None,
        *,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        **overrides: Any,
    ) -> Estimate:
        """The smoothed saliency map with Monte Carlo standard errors.

        Same arguments as :meth:`attribute`. The standard error comes from the spread of
        independent units: single samples (``"mc"``), antithetic pairs, RQMC replicates, or (joint
        mode) the blocks of n input samples of one weight sample (a pair of them for
        ``"antithetic"``). It is NaN for ``"qmc"``, with a single unit, and for :class:`VarGrad`.

        Returns:
            :class:`~mollify.montecarlo.Estimate` with ``mean``/``stderr`` shaped like ``inputs``
            and ``n`` = gradient samples per example (n, n_param, or n·n_param).
        """
        return self._estimate(inputs, target, generator, overrides, spread=True)

    def _estimate(
        self, inputs: Tensor, target: object, generator: object,
        overrides: dict[str, Any], spread: bool,
    ) -> Estimate:
        """:meth:`estimate`; without the standard error (NaN, cheaper) for ``spread=False``."""
        cfg = self._config(overrides)
        x = _check_inputs(inputs)
        generator = _check_generators(generator, x.shape[0])
        self.last_model_calls = 0
        with _eval_mode(self.model):
            tgt, hi = self._targets(target, x)
            if isinstance(generator, list) and cfg.mode != "input":
                return self._one_by_one(x, tgt, generator, overrides, spread)
            if cfg.mode == "input":
                acc = self._run_input(x, tgt, hi, cfg, generator, spread)
            else:
                acc = self._run_param(x, tgt, hi, cfg, generator, spread)
        self.last_evaluations = acc.count * x.shape[0]
        if self._reduce == "var":
            var = acc.variance()
            return Estimate(var, torch.full_like(var, math.nan), acc.count)
        mean, stderr = acc.mean()
        if cfg.sampler == "qmc":
            stderr = torch.full_like(mean, math.nan)
        return Estimate(mean, stderr, acc.count)

    def _one_by_one(
        self, x: Tensor, tgt: Tensor | None, generators: list[torch.Generator],
        overrides: dict[str, Any], spread: bool,
    ) -> Estimate:
        """Weight noise with one generator per example: every example explained on its own
        (each needs its own weight samples, which one batched pass cannot share)."""
        parts, calls = [], 0
        for i, g in enumerate(generators):
            t = None if tgt is None else tgt[i : i + 1]
            parts.append(self._estimate(x[i : i + 1], t, g, overrides, spread))
            calls += self.last_model_calls
        self.last_model_calls = calls
        self.last_evaluations = sum(p.n for p in parts)
        return Estimate(torch.cat([p.mean for p in parts]), torch.cat([p.stderr for p in parts]),
                        parts[0].n)

    # ----- noise
    @staticmethod
    def _sigma(x: Tensor, cfg: _Config) -> Tensor | float:
        """ε per example, shaped (1, B, 1, …, 1) for eps_rel, a float for eps."""
        if cfg.eps is not None:
            return cfg.eps
        flat = x.reshape(x.shape[0], -1)
        span = flat.amax(1) - flat.amin(1)
        return (cfg.eps_rel * span).reshape(1, -1, *([1] * (x.dim() - 1)))

    def _chunk(self, cfg: _Config, x: Tensor, tgt: Tensor | None, hi: int, limit: int) -> int:
        """Samples per pass: the given int; on CUDA for None/"auto", what fits in memory."""
        if isinstance(cfg.chunk_size, int):
            return cfg.chunk_size
        if x.device.type != "cuda":
            rows = _DEFAULT_ROWS if cfg.mode == "input" else _DEFAULT_ROWS_WEIGHTS
            return max(1, rows // x.shape[0])
        return self._cuda_chunk(cfg, x, tgt, hi, limit)

    def _cuda_chunk(self, cfg: _Config, x: Tensor, tgt: Tensor | None, hi: int, limit: int) -> int:
        """Probe one pass over two copies of the batch; fit copies into the free memory."""
        dev = x.device
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        free, _ = torch.cuda.mem_get_info(dev)
        free += torch.cuda.memory_reserved(dev) - base  # the caching allocator's spare blocks
        torch.cuda.reset_peak_memory_stats(dev)
        probe = torch.cat([x, x])
        with _autocast(dev, cfg.autocast):
            self._input_grad(probe, None if tgt is None else tgt.repeat(2), hi)
        per_copy = (torch.cuda.max_memory_allocated(dev) - base) / 2
        if cfg.mode != "input":  # a weight sample also holds its noisy weights and their noise
            per_copy += 2 * sum(p.numel() * p.element_size() for p in self.model.parameters())
        return chunk_for_memory(free, per_copy, limit)

    def _run_input(
        self, x: Tensor, tgt: Tensor | None, hi: int, cfg: _Config, generator, spread: bool
    ) -> _Accumulator:
        b, shape = x.shape[0], tuple(x.shape[1:])
        # one stream shared by the batch, or one per example (a list of generators)
        streams = [
            PointStream(
                cfg.kernel, cfg.n, math.prod(shape), sampler=cfg.sampler,
                replicates=cfg.replicates, generator=g, device=x.device, dtype=x.dtype,
            )
            for g in (generator if isinstance(generator, list) else [generator])
        ]
        unit = {"antithetic": 2, "rqmc": streams[0].group_size}.get(cfg.sampler, 1)
        acc = _Accumulator(unit, moments=self._reduce == "var", spread=spread)
        sigma = self._sigma(x, cfg)
        size = self._chunk(cfg, x, tgt, hi, cfg.n)
        for parts in zip(*(stream.chunks(size) for stream in streams)):
            u = torch.stack([points for _, points in parts], 1)  # (c, 1 or B, D)
            c = u.shape[0]
            noisy = (x.unsqueeze(0) - sigma * u.reshape(c, -1, *shape)).reshape(c * b, *shape)
            rep = None if tgt is None else tgt.repeat(c)
            with _autocast(x.device, cfg.autocast):
                g = self._input_grad(noisy, rep, hi)
            g = g.reshape(c, b, *shape)
            acc.add(self._transform(g, cfg.abs, cfg.square))
        return acc

    def _weights(
        self, key: int, start: int, count: int, params: list[tuple[str, Tensor]], cfg: _Config
    ) -> dict[str, Tensor]:
        """Weight samples start … start+count−1, stacked: {name: (count, *shape)}.

        Sample j is drawn from its own generator, seeded from (key, j), so it does not depend on
        the chunking. Every kernel starts from the same standard normal numbers z ~ N(0, I)
        (``torch.randn`` in the parameters' dtype): the Gaussian uses z itself, any other kernel
        η its quantile of the same probability, F_η⁻¹(Φ(z)) (in float64). So kernels compared
        with one seed see *common random numbers*, and Gaussian noise costs one ``randn``, 5×
        less than inversion: for a model of millions of weights drawing the noise would
        otherwise cost more than the forward and backward passes.
        """
        device, dtype = params[0][1].device, params[0][1].dtype
        if dtype not in (torch.float32, torch.float64):
            dtype = torch.float32
        work = torch.float32 if device.type == "mps" else torch.float64
        total = sum(p.numel() for _, p in params)
        z = torch.empty((count, total), device=device, dtype=dtype)
        for row, j in enumerate(range(start, start + count)):
            if cfg.sampler != "antithetic":
                self._normal(key, j, cfg, work, out=z[row])
            elif j % 2 == 0:  # antithetic pairs (z, −z) are samples 2k and 2k + 1
                self._normal(key, j // 2, cfg, work, out=z[row])
            elif row:  # the partner of the row before
                torch.neg(z[row - 1], out=z[row])
            else:
                self._normal(key, j // 2, cfg, work, out=z[row]).neg_()
        out, off = {}, 0
        for name, p in params:
            zp = z[:, off : off + p.numel()].reshape(count, *p.shape).to(p.dtype)
            off += p.numel()
            # θ ⊙ (1 + σz) = θ + σ θ ⊙ z, or θ + σz: one fused kernel per parameter
            out[name] = torch.addcmul(p, p, zp, value=cfg.eps_param) if (
                cfg.noise == "multiplicative") else torch.add(p, zp, alpha=cfg.eps_param)
        return out

    @staticmethod
    def _normal(key: int, index: int, cfg: _Config, work: torch.dtype, out: Tensor) -> Tensor:
        """Weight-noise vector number ``index`` into ``out``: ``randn`` from a generator seeded
        by (key, index), mapped to ``cfg.kernel_param``'s law (:func:`_from_normal`)."""
        g = torch.Generator(device=out.device).manual_seed(_mix(key, index))
        torch.randn(out.shape, generator=g, out=out)
        if cfg.kernel_param.name != "gaussian":
            out.copy_(_from_normal(cfg.kernel_param, out, work))
        return out

    def _run_param(
        self, x: Tensor, tgt: Tensor | None, hi: int, cfg: _Config, generator, spread: bool
    ) -> _Accumulator:
        params = [(name, p.detach()) for name, p in self.model.named_parameters()]
        if not params:
            raise ValueError("the model has no parameters to perturb; use mode='input'")
        buffers = {name: b.detach() for name, b in self.model.named_buffers()}
        model = self.model
        b, shape = x.shape[0], tuple(x.shape[1:])
        m, n = cfg.n_param, cfg.n
        joint = cfg.mode == "joint"
        per = self._chunk(cfg, x, tgt, hi, m * n if joint else m)
        key = _draw_key(generator)
        pairs = 2 if cfg.sampler == "antithetic" else 1
        acc = _Accumulator(pairs * (n if joint else 1), moments=self._reduce == "var",
                           spread=spread)

        plan = None
        if cfg.batching != "vmap":
            plan = grouped_plan(model, x.dim() - 1)
            if not plan and cfg.batching == "grouped":
                raise ValueError(f"batching='grouped' cannot evaluate this model: {plan.reason}; "
                                 "use batching='vmap' or 'auto'")
            if not plan and cfg.autocast is not None:
                raise ValueError(
                    f"autocast with weight noise needs the grouped evaluation, which cannot read "
                    f"this model: {plan.reason} (vmap does not accept mixed dtypes)"
                )

        def grads(weights: dict[str, Tensor], inp: Tensor, batched_input: bool) -> Tensor:
            """Input gradients (k, rows, *S) under k weight samples; ``inp`` is (rows, *S), or
            (k, rows, *S) with one batch per weight sample when ``batched_input``."""
            rows = inp.shape[1] if batched_input else inp.shape[0]
            rep = None if tgt is None else tgt.repeat(rows // b)
            self.last_model_calls += 1
            if plan:
                k = next(iter(weights.values())).shape[0]
                leaf = (inp if batched_input else inp.expand(k, *inp.shape)).detach()
                leaf.requires_grad_(True)
                with torch.enable_grad(), _autocast(x.device, cfg.autocast):
                    out = grouped_forward(plan, weights, leaf)
                    rep_k = None if rep is None else rep.repeat(k)
                    score = _select(out.reshape(k * rows, *out.shape[2:]), rep_k, hi).sum()
                    return torch.autograd.grad(score, leaf)[0]

            def score(w: dict[str, Tensor], xx: Tensor) -> Tensor:
                return _select(functional_call(model, (w, buffers), (xx,)), rep, hi).sum()

            fn = vmap(grad(score, argnums=1), in_dims=(0, 0 if batched_input else None))
            return fn(weights, inp)

        if not joint:
            for j in range(0, m, per):
                k = min(per, m - j)
                g = grads(self._weights(key, j, k, params, cfg), x, False)  # (k, B, *S)
                acc.add(self._transform(g, cfg.abs, cfg.square))
            return acc

        stream = PointStream(
            cfg.kernel, m * n, math.prod(shape), sampler=cfg.sampler,
            replicates=m if cfg.sampler == "rqmc" else 16, generator=generator, device=x.device,
            dtype=x.dtype,
        )
        sigma = self._sigma(x, cfg)
        sig = sigma if isinstance(sigma, float) else sigma.unsqueeze(0)  # (1, 1, B, 1, …)

        def noisy(lo: int, hi_: int, k: int) -> Tensor:
            u = stream.points(lo, hi_).reshape(k, -1, 1, *shape)
            return (x[None, None] - sig * u).reshape(k, -1, *shape)  # (k, c·B, *S)

        j = 0
        while j < m:
            if n <= per:
                k = min(per // n, m - j)
                g = grads(self._weights(key, j, k, params, cfg), noisy(j * n, (j + k) * n, k), True)
                acc.add(self._transform(g.reshape(k * n, b, *shape), cfg.abs, cfg.square))
                j += k
                continue
            w = self._weights(key, j, 1, params, cfg)
            for i in range(0, n, per):
                c = min(per, n - i)
                g = grads(w, noisy(j * n + i, j * n + i + c, 1), True)
                acc.add(self._transform(g.reshape(c, b, *shape), cfg.abs, cfg.square))
            j += 1
        return acc


class SmoothGrad(MCGM):
    """SmoothGrad (Smilkov et al., arXiv 1706.03825): (1/n) Σ_i ∇_x f_c(x − ε u_i), u_i ~ N(0, I).

    :class:`MCGM` with ``mode="input"``. Defaults follow the paper: ε = 0.15 × each example's
    input range (``eps_rel``), n = 50. Other kernels give the MCGM variants of arXiv 2407.00371.
    ``square=True`` gives SmoothGrad² (mean of squared gradients).

    Args:
        model: an ``nn.Module`` returning logits ``(N, C)`` (or scores ``(N,)``).
        kernel, eps, eps_rel, n, sampler, replicates, chunk_size, abs, square: as in
            :class:`MCGM`; ``eps_rel`` defaults to 0.15 when neither ``eps`` nor ``eps_rel`` is
            given.

    >>> from mollify.data import small_cnn
    >>> model = small_cnn(width=2, seed=0)
    >>> x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> sg = SmoothGrad(model, n=16)
    >>> sg.attribute(x, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 1, 8, 8])
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        kernel: str | Kernel = "gaussian",
        eps: float | None = None,
        eps_rel: float | None = None,
        n: int = 50,
        sampler: str = "mc",
        replicates: int = 16,
        chunk_size: int | str | None = None,
        abs: bool = False,
        square: bool = False,
        autocast: torch.dtype | None = None,
    ) -> None:
        if eps is None and eps_rel is None:
            eps_rel = 0.15
        Explainer.__init__(self, model)
        self._options = dict(
            kernel=kernel, eps=eps, eps_rel=eps_rel, n=n, sampler=sampler, replicates=replicates,
            chunk_size=chunk_size, abs=abs, square=square, autocast=autocast,
        )
        self._config({})

    def _full(self, opts: dict[str, Any]) -> dict[str, Any]:
        return {**opts, "mode": "input"}


class VarGrad(MCGM):
    """VarGrad (Adebayo et al., arXiv 1810.03307): the variance of the noisy gradients.

    (1/n) Σ_i g_i² − ((1/n) Σ_i g_i)², g_i = ∇_x f_c(x − ε u_i) — the population variance, as
    Captum's ``NoiseTunnel(nt_type="vargrad")`` (multiply by n/(n − 1) for the unbiased one).
    Same sampling as :class:`SmoothGrad` by default (``mode="input"``, ``eps_rel=0.15``, n = 50);
    every :class:`MCGM` option works, e.g. ``mode="parameter"`` for the variance over weight
    samples. ``abs``/``square`` transform each sample before the variance. :meth:`estimate`
    returns the variance with a NaN standard error.

    >>> from mollify.data import small_cnn
    >>> model = small_cnn(width=2, seed=0)
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> v = VarGrad(model, n=8).attribute(x, target=0, generator=torch.Generator().manual_seed(0))
    >>> bool((v >= 0).all())
    True
    """

    _reduce = "var"

    def __init__(
        self, model: nn.Module, *, eps: float | None = None, eps_rel: float | None = None,
        **options: Any,
    ) -> None:
        """Same arguments as :class:`MCGM`; with neither ``eps`` nor ``eps_rel``, SmoothGrad's
        ``eps_rel=0.15`` (ignored in parameter mode)."""
        if eps is None and eps_rel is None:
            eps_rel = 0.15
        super().__init__(model, eps=eps, eps_rel=eps_rel, **options)


class NoiseGrad(MCGM):
    """NoiseGrad (Bykov et al., arXiv 2106.10185): average input gradient over noisy weights.

    (1/n) Σ_j ∇_x f_c(x; θ ⊙ (1 + σ z_j)), z_j ~ N(0, I) over all parameters: :class:`MCGM` with
    ``mode="parameter"``. Here ``n`` counts weight samples (there is no input noise). Defaults
    σ = ``eps_param`` = 0.2, n = 10, multiplicative noise.

    Args:
        model: an ``nn.Module`` returning logits ``(N, C)`` (or scores ``(N,)``).
        kernel: kernel of the weight noise.
        noise: ``"multiplicative"`` (default) or ``"additive"`` (θ + σ z).
        eps_param: weight-noise standard deviation σ > 0.
        n: number of weight samples (even for ``"antithetic"``).
        sampler: ``"mc"`` or ``"antithetic"``.
        chunk_size: weight samples per pass (default 512 // B off CUDA).
        abs, square, batching: as in :class:`MCGM`.

    >>> from mollify.data import small_cnn
    >>> model = small_cnn(width=2, seed=0)
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> NoiseGrad(model, n=4).attribute(x, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        kernel: str | Kernel = "gaussian",
        noise: str = "multiplicative",
        eps_param: float = 0.2,
        n: int = 10,
        sampler: str = "mc",
        chunk_size: int | str | None = None,
        abs: bool = False,
        square: bool = False,
        autocast: torch.dtype | None = None,
        batching: str = "auto",
    ) -> None:
        Explainer.__init__(self, model)
        self._options = dict(
            kernel=kernel, noise=noise, eps_param=eps_param, n=n, sampler=sampler,
            chunk_size=chunk_size, abs=abs, square=square, autocast=autocast, batching=batching,
        )
        self._config({})

    def _full(self, opts: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in opts.items() if k != "n"}
        return {**out, "mode": "parameter", "n_param": opts["n"], "n": 1}

    def _config(self, overrides: dict[str, Any]) -> _Config:
        n = check_int("n", overrides.get("n", self._options["n"]), minimum=1)  # name it "n"
        if overrides.get("sampler", self._options["sampler"]) == "antithetic" and n % 2:
            raise ValueError(
                f"n must be even for sampler='antithetic' (weight pairs z, -z), got {n}"
            )
        return super()._config(overrides)


class FusionGrad(MCGM):
    """FusionGrad / NoiseGrad++ (Bykov et al., arXiv 2106.10185): noise on weights and inputs.

    (1/(m n)) Σ_j Σ_i ∇_x f_c(x − ε u_{ji}; θ ⊙ (1 + σ z_j)): :class:`MCGM` with ``mode="joint"``.
    Defaults: σ = ``eps_param`` = 0.2, ε = 0.4 × input range (``eps_rel``), n = m = 10.

    Args:
        model: an ``nn.Module`` returning logits ``(N, C)`` (or scores ``(N,)``).
        kernel, noise, eps, eps_rel, eps_param, n, n_param, sampler, chunk_size, abs, square,
            batching: as in :class:`MCGM` (``n`` input samples per weight sample, ``n_param`` weight
            samples); ``eps_rel`` defaults to 0.4 when neither ``eps`` nor ``eps_rel`` is given.

    >>> from mollify.data import small_cnn
    >>> model = small_cnn(width=2, seed=0)
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> fg = FusionGrad(model, n=2, n_param=2)
    >>> fg.attribute(x, target=[0, 1], generator=torch.Generator().manual_seed(0)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        kernel: str | Kernel = "gaussian",
        noise: str = "multiplicative",
        eps: float | None = None,
        eps_rel: float | None = None,
        eps_param: float = 0.2,
        n: int = 10,
        n_param: int = 10,
        sampler: str = "mc",
        chunk_size: int | str | None = None,
        abs: bool = False,
        square: bool = False,
        autocast: torch.dtype | None = None,
        batching: str = "auto",
    ) -> None:
        if eps is None and eps_rel is None:
            eps_rel = 0.4
        Explainer.__init__(self, model)
        self._options = dict(
            kernel=kernel, noise=noise, eps=eps, eps_rel=eps_rel, eps_param=eps_param, n=n,
            n_param=n_param, sampler=sampler, chunk_size=chunk_size, abs=abs, square=square,
            autocast=autocast, batching=batching,
        )
        self._config({})

    def _full(self, opts: dict[str, Any]) -> dict[str, Any]:
        return {**opts, "mode": "joint"}
