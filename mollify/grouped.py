"""Evaluating a model under m weight samples at once, as one m-times-wider grouped model.

NoiseGrad and FusionGrad (``MCGM(mode="parameter"|"joint")``) need the input gradients of the
same network under m perturbed weight vectors θ_1 … θ_m. ``torch.func.vmap`` does this for any
model, but on a CPU its batching rules for convolutions and pooling move the sample axis around
with copies. For the layer types that make up most small vision and tabular networks there is a
direct formulation: put the m samples side by side in the **channel** axis and every layer becomes
one ordinary layer, m times wider and block-diagonal:

* a convolution with weights W_1 … W_m on inputs x_1 … x_m (each C_in channels, g groups) is one
  convolution with ``groups = m·g`` over the channel concatenation [x_1; …; x_m] with the weights
  [W_1; …; W_m] stacked along the output channels: output channels j·C_out … (j+1)·C_out − 1 are
  conv(x_j, W_j);
* a linear layer is a batched matrix product, y_j = x_j W_jᵀ + b_j (``torch.baddbmm`` over j);
* element-wise activations, dropout (eval) and per-channel pooling act on the wide tensor as it is;
* batch norm in eval mode is per channel: its stacked affine weights and m copies of its running
  statistics make it one wide batch norm;
* max-pooling commutes with a non-decreasing activation f, max(f(a), f(b)) = f(max(a, b)), so
  "activation, max-pool" is evaluated as "max-pool, activation": the activation and its backward
  then touch a quarter of the values (for 2×2 pools), with the same outputs and gradients.

Values flow in one of two layouts: *spatial* ``(R, m·C, *spatial)`` (samples side by side in the
channels) and *flat* ``(m, R, F)`` (sample axis first, for the batched matrix products); ``Flatten``
turns the first into the second. The result equals ``vmap(functional_call)`` up to floating-point
rounding (tests compare them) and is 2–3× faster on a CPU for the book's digits CNN; ``python -m
mollify bench`` measures it.

Supported: ``nn.Sequential`` (nested too) of ``Conv1d/2d/3d`` (zero padding), ``Linear``,
``BatchNorm1d/2d/3d`` with running statistics, ``LayerNorm`` over the last axis (flat layout),
``Flatten()``, the pooling layers, ``Softmax``/``LogSoftmax`` over the classes, ``Dropout`` and
parameter-free element-wise activations (torch's and :mod:`mollify.nn`'s). :func:`grouped_plan`
says why a model is not supported (e.g. a residual block, a hook), and MCGM then uses vmap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mollify.nn import _SmoothedActivation

__all__ = ["GroupedPlan", "grouped_plan", "grouped_forward"]

_CONVS = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_POOLS = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d,
)
_ELEMENTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Softsign, nn.Hardtanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Tanhshrink, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout,
)
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
              nn.AdaptiveMaxPool3d)
_SPATIAL, _FLAT = "spatial", "flat"
CHANNELS_LAST = True


@dataclass(frozen=True)
class GroupedPlan:
    """The outcome of :func:`grouped_plan`: ``layers`` (qualified name, module) in call order
    when the model is supported, else ``layers`` is empty and ``reason`` says why not."""

    layers: tuple[tuple[str, nn.Module], ...]
    reason: str = ""

    def __bool__(self) -> bool:
        return bool(self.layers)


def _leaves(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    if type(module) is nn.Sequential:  # every child in call order (named_children() would
        for name, child in module._modules.items():  # skip a module that appears twice)
            if child is not None:
                yield from _leaves(child, f"{prefix}{name}.")
    else:
        yield prefix[:-1], module


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or getattr(module, "_backward_pre_hooks", None))


def _step(module: nn.Module, layout: str) -> str | None:
    """The layout after ``module`` given the layout before it; None if unsupported."""
    kind = type(module)
    if kind in _CONVS:
        ok = layout == _SPATIAL and module.padding_mode == "zeros"
        return _SPATIAL if ok else None
    if kind is nn.Linear:
        return _FLAT if layout == _FLAT else None
    if kind in _BATCHNORMS:
        return layout if module.running_mean is not None else None
    if kind is nn.LayerNorm:
        return _FLAT if layout == _FLAT and len(module.normalized_shape) == 1 else None
    if kind is nn.Flatten:
        return _FLAT if (module.start_dim, module.end_dim) == (1, -1) else None
    if kind in _POOLS:
        return _SPATIAL if layout == _SPATIAL and not getattr(module, "return_indices",
                                                             False) else None
    if kind in (nn.Softmax, nn.LogSoftmax):
        return _FLAT if layout == _FLAT and module.dim in (1, -1) else None
    if kind in _ELEMENTWISE or isinstance(module, _SmoothedActivation):
        return layout if not any(True for _ in module.parameters()) else None
    return None


def grouped_plan(model: nn.Module, input_dims: int) -> GroupedPlan:
    """Whether :func:`grouped_forward` can evaluate ``model`` on inputs ``(R, *S)`` with
    ``len(S) == input_dims``, and the layers it will call.

    >>> from mollify.data import small_cnn
    >>> bool(grouped_plan(small_cnn(width=2, seed=0), 3))
    True
    >>> grouped_plan(nn.Sequential(nn.Linear(4, 4), nn.PReLU()), 1).reason
    "layer '1' (PReLU) is not supported in the flat layout"
    """
    if type(model) is not nn.Sequential:
        return GroupedPlan((), f"the model is a {type(model).__name__}, not an nn.Sequential")
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return GroupedPlan((), "global module hooks are registered")
    if input_dims < 1:
        return GroupedPlan((), "inputs have no feature axis")
    layout = _SPATIAL if input_dims >= 2 else _FLAT
    layers = tuple(_leaves(model, ""))
    for name, module in layers:
        if _has_hooks(module):
            return GroupedPlan((), f"layer {name!r} has hooks")
        after = _step(module, layout)
        if after is None:
            return GroupedPlan(
                (), f"layer {name!r} ({type(module).__name__}) is not supported in the {layout} "
                "layout")
        layout = after
    if any(_has_hooks(m) for m in model.modules()):
        return GroupedPlan((), "the model has hooks")
    names = {name for name, _ in model.named_parameters()}
    for name, module in layers:
        for pname, _ in module.named_parameters():
            if f"{name}.{pname}" not in names:
                return GroupedPlan((), f"layer {name!r} shares its {pname} with another layer")
    if layout != _FLAT:
        return GroupedPlan((), "the model's output is not flat (N, classes)")
    return GroupedPlan(_pool_first(layers))


def _non_decreasing(module: nn.Module) -> bool:
    """Whether ``module`` is an element-wise non-decreasing function (commutes with max)."""
    if type(module) is nn.LeakyReLU:
        return module.negative_slope >= 0
    return type(module) in (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Sigmoid, nn.Tanh)


def _pool_first(layers: tuple[tuple[str, nn.Module], ...]) -> tuple[tuple[str, nn.Module], ...]:
    """Swap every (non-decreasing activation, max-pool) pair into (max-pool, activation)."""
    out = list(layers)
    for i in range(len(out) - 1):
        if _non_decreasing(out[i][1]) and type(out[i + 1][1]) in _MAX_POOLS:
            out[i], out[i + 1] = out[i + 1], out[i]
    return tuple(out)


def _stacked(weights: dict[str, Tensor], name: str, attr: str) -> Tensor | None:
    return weights.get(f"{name}.{attr}" if name else attr)


def grouped_forward(plan: GroupedPlan, weights: dict[str, Tensor], inputs: Tensor) -> Tensor:
    """Outputs of the model under every weight sample: ``(m, R, K)`` with row j, r equal to
    ``functional_call(model, θ_j, inputs[j])[r]``.

    Args:
        plan: :func:`grouped_plan` of the model (must be truthy).
        weights: {parameter name: ``(m, *shape)``}, every parameter of the model stacked over the
            m samples (as ``MCGM`` draws them).
        inputs: ``(m, R, *S)``, one batch per weight sample (an expanded view is fine).
    """
    if not plan:
        raise ValueError(f"the model cannot be evaluated grouped: {plan.reason}")
    m, rows = inputs.shape[0], inputs.shape[1]
    if inputs.dim() >= 4:  # (m, R, C, *sp) -> (R, m·C, *sp): samples side by side in channels
        h = inputs.movedim(0, 1).reshape(rows, m * inputs.shape[2], *inputs.shape[3:])
        layout = _SPATIAL
        if h.dim() == 4 and CHANNELS_LAST:
            h = h.contiguous(memory_format=torch.channels_last)
    else:
        h, layout = inputs, _FLAT
    for name, module in plan.layers:
        kind = type(module)
        w, b = _stacked(weights, name, "weight"), _stacked(weights, name, "bias")
        if kind in _CONVS:
            wf = w.flatten(0, 1)
            if h.dim() == 4 and CHANNELS_LAST:
                wf = wf.contiguous(memory_format=torch.channels_last)
            h = _CONVS[kind](h, wf, None if b is None else b.flatten(),
                             module.stride, module.padding, module.dilation, module.groups * m)
        elif kind is nn.Linear:
            wt = w.transpose(1, 2)
            h = torch.bmm(h, wt) if b is None else torch.baddbmm(b.unsqueeze(1), h, wt)
        elif kind in _BATCHNORMS:
            h = _batch_norm(module, h, layout, m, w, b)
        elif kind is nn.LayerNorm:
            h = F.layer_norm(h, module.normalized_shape, None, None, module.eps)
            if w is not None:
                h = h * w.unsqueeze(1)
            if b is not None:
                h = h + b.unsqueeze(1)
        elif kind is nn.Flatten:
            if layout == _SPATIAL:
                if h.dim() == 4 and CHANNELS_LAST:
                    h = _ChannelsLastGrad.apply(h)
                h = h.reshape(rows, m, -1).transpose(0, 1)
                layout = _FLAT
        elif kind is nn.Softmax:
            h = F.softmax(h, dim=-1)
        elif kind is nn.LogSoftmax:
            h = F.log_softmax(h, dim=-1)
        else:  # pooling, element-wise activations, dropout (eval mode)
            h = module(h)
    return h


class _ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands the gradient on in channels-last memory format, so that
    the pooling and activation backward kernels before a ``Flatten`` see one format (mixing
    formats sends them down copy-heavy slow paths)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # noqa: D102
        return g.contiguous(memory_format=torch.channels_last)


def _batch_norm(module: nn.Module, h: Tensor, layout: str, m: int, w: Tensor | None,
                b: Tensor | None) -> Tensor:
    """Eval-mode batch norm with per-sample affine weights (m, C) and shared running stats."""
    mean, var = module.running_mean.repeat(m), module.running_var.repeat(m)
    wf, bf = (None if w is None else w.flatten()), (None if b is None else b.flatten())
    if layout == _SPATIAL:
        return F.batch_norm(h, mean, var, wf, bf, False, 0.0, module.eps)
    rows = h.shape[1]  # flat (m, R, F): features of all samples side by side, then back
    wide = h.transpose(0, 1).reshape(rows, -1)
    out = F.batch_norm(wide, mean, var, wf, bf, False, 0.0, module.eps)
    return out.reshape(rows, m, -1).transpose(0, 1)
