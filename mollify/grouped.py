"""Evaluating a model under m weight samples at once, as one m-times-wider grouped model.

NoiseGrad and FusionGrad (``MCGM(mode="parameter"|"joint")``) need the input gradients of the
same network under m perturbed weight vectors θ_1 … θ_m. ``torch.func.vmap`` does this for any
model, but on a CPU its batching rules for convolutions and pooling move the sample axis around
with copies. For the layer types that make up most vision and tabular networks there is a
direct formulation: put the m samples side by side in the **channel** axis and every layer becomes
one ordinary layer, m times wider and block-diagonal:

* a convolution with weights W_1 … W_m on inputs x_1 … x_m (each C_in channels, g groups) is one
  convolution with ``groups = m·g`` over the channel concatenation [x_1; …; x_m] with the weights
  [W_1; …; W_m] stacked along the output channels: output channels j·C_out … (j+1)·C_out − 1 are
  conv(x_j, W_j);
* a linear layer is a batched matrix product, y_j = x_j W_jᵀ + b_j (``torch.baddbmm`` over j);
* element-wise activations, dropout (eval), per-channel pooling and residual sums act on the
  wide tensors as they are;
* batch norm in eval mode is per channel: its stacked affine weights and m copies of its running
  statistics make it one wide batch norm;
* max-pooling commutes with a non-decreasing activation f, max(f(a), f(b)) = f(max(a, b)), so
  "activation, max-pool" is evaluated as "max-pool, activation": the activation and its backward
  then touch a quarter of the values (for 2×2 pools), with the same outputs and gradients.

Values flow in one of two layouts: *spatial* ``(R, m·C, *spatial)`` (samples side by side in the
channels; 2-d images in channels-last memory order, the CPU kernels' fastest) and *flat*
``(m, R, F)`` (sample axis first, for the batched matrix products); flattening turns the first
into the second. The result equals ``vmap(functional_call)`` up to floating-point rounding (tests
compare them) and is about 2× faster on a CPU for the book's digits CNN; ``python -m mollify
bench`` measures it.

The model is read with ``torch.fx`` (symbolic tracing), so residual networks qualify. Supported:
the modules ``Conv1d/2d/3d`` (zero padding), ``Linear``, ``BatchNorm1d/2d/3d`` with running
statistics, ``LayerNorm`` over the last axis (flat layout), ``Flatten()``, the pooling layers,
``Softmax``/``LogSoftmax`` over the classes, ``Dropout`` and parameter-free element-wise
activations (torch's and :mod:`mollify.nn`'s); the functions and tensor methods for element-wise
activations, sums, differences and products of two values of one layout or with a number, and
``torch.flatten(x, 1)``. :func:`grouped_plan` says why a model is not supported (a ``view``, a
hook, an unsupported layer), and MCGM then uses vmap.

Tracing runs the model's ``forward`` once on symbolic values (again only when the module tree
changes), so Python side effects in ``forward`` — counters, prints, stored activations — do
not happen on the grouped evaluations; use ``batching="vmap"`` for a model that relies on
them.
"""

from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass, field

import torch
import torch.fx
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
_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
              nn.AdaptiveMaxPool3d)
_ELEMENTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Softsign, nn.Hardtanh, nn.Hardswish,
    nn.Hardsigmoid, nn.Tanhshrink, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
    nn.AlphaDropout,
)
# functions and tensor methods of one tensor that act element by element
_UNARY_FUNCTIONS = {
    torch.relu, torch.sigmoid, torch.tanh, torch.abs, torch.exp, torch.neg, F.relu, F.relu6,
    F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish, F.softplus, F.hardtanh,
    F.hardswish, F.hardsigmoid, operator.neg,
}  # (not F.dropout: tracing would fix its training flag)
_UNARY_METHODS = {"relu", "sigmoid", "tanh", "abs", "exp", "neg", "contiguous"}
_BINARY_FUNCTIONS = {operator.add, operator.sub, operator.mul, torch.add, torch.sub, torch.mul}
_BINARY_METHODS = {"add", "sub", "mul"}
_SPATIAL, _FLAT = "spatial", "flat"


@dataclass(frozen=True)
class GroupedPlan:
    """The outcome of :func:`grouped_plan`; true when the model is supported.

    ``graph`` is the model's ``torch.fx`` graph, ``model`` the model, ``layouts`` the layout of
    every tensor node, ``pool_first`` the (activation node, max-pool node) pairs evaluated in
    swapped order; ``reason`` says why the model is not supported (then ``graph`` is None).
    """

    graph: torch.fx.Graph | None
    model: nn.Module | None = None
    layouts: dict = field(default_factory=dict)
    pool_first: dict = field(default_factory=dict)
    reason: str = ""

    def __bool__(self) -> bool:
        return self.graph is not None

    @property
    def layers(self) -> list[tuple[str, nn.Module]]:
        """(qualified name, module) of every module call, in the order they are evaluated."""
        if self.graph is None:
            return []
        swapped = {act: pool for pool, act in self.pool_first.items()}
        out = []
        for node in self.graph.nodes:
            if node.op != "call_module" or node in swapped:
                continue
            out.append((node.target, self.model.get_submodule(node.target)))
            if node in self.pool_first:  # the max-pool, then the activation it was moved before
                act = self.pool_first[node]
                out.append((act.target, self.model.get_submodule(act.target)))
        return out


def _refuse(reason: str) -> GroupedPlan:
    return GroupedPlan(None, reason=reason)


class _Tracer(torch.fx.Tracer):
    """Symbolic tracer that keeps :mod:`mollify.nn`'s smoothed activations as single calls."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # noqa: D102
        return isinstance(m, _SmoothedActivation) or super().is_leaf_module(m, qualname)


_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _trace(model: nn.Module) -> torch.fx.Graph:
    """The model's fx graph, cached while its module tree is unchanged (same objects, names and
    training flags: tracing fixes whatever the forward reads from them)."""
    key = tuple((name, id(m), m.training)
                for name, m in model.named_modules(remove_duplicate=False))
    hit = _GRAPHS.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    graph = _Tracer().trace(model)
    _GRAPHS[model] = (key, graph)
    return graph


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or getattr(module, "_backward_pre_hooks", None))


def _module_layout(module: nn.Module, layout: str) -> str | None:
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


def _is_flatten(node: torch.fx.Node) -> bool:
    """``torch.flatten(x, 1)`` or ``x.flatten(1)`` (up to the last axis)."""
    if not ((node.op == "call_function" and node.target is torch.flatten)
            or (node.op == "call_method" and node.target == "flatten")):
        return False
    args = list(node.args[1:]) + [node.kwargs.get(k) for k in ("start_dim", "end_dim")
                                  if k in node.kwargs]
    return args[:1] == [1] and args[1:] in ([], [-1])


def _node_layout(node: torch.fx.Node, layouts: dict, model: nn.Module) -> str | None:
    """The layout of ``node``'s value; None if it cannot be evaluated grouped."""
    tensors = [a for a in node.all_input_nodes]
    if any(a not in layouts for a in tensors):
        return None  # an input that is not a tensor of the model (a size, an attribute, ...)
    if node.op == "call_module":
        if len(node.args) != 1 or node.kwargs or len(tensors) != 1:
            return None
        return _module_layout(model.get_submodule(node.target), layouts[tensors[0]])
    if node.op not in ("call_function", "call_method") or not tensors:
        return None
    first = layouts[tensors[0]]
    if _is_flatten(node):
        return _FLAT if len(tensors) == 1 else None
    unary = _UNARY_FUNCTIONS if node.op == "call_function" else _UNARY_METHODS
    binary = _BINARY_FUNCTIONS if node.op == "call_function" else _BINARY_METHODS
    constants_only = all(not isinstance(a, torch.fx.Node) for a in node.args[1:])
    if node.target in unary and len(tensors) == 1 and node.args[0] is tensors[0]:
        return first if constants_only else None
    if node.target in binary and len(node.args) == 2 and not node.kwargs.get("out"):
        if all(layouts[a] == first for a in tensors):  # two values of one layout, or a number
            return first if all(isinstance(a, (torch.fx.Node, int, float)) for a in node.args)\
                else None
    return None


def _non_decreasing(module: nn.Module) -> bool:
    """Whether ``module`` is an element-wise non-decreasing function (commutes with max)."""
    if type(module) is nn.LeakyReLU:
        return module.negative_slope >= 0
    return type(module) in (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Sigmoid, nn.Tanh)


def _pool_first(graph: torch.fx.Graph, model: nn.Module) -> dict:
    """{max-pool node: activation node} for every non-decreasing activation module whose only
    user is a max-pool module."""
    out = {}
    for act in graph.nodes:
        if act.op != "call_module" or not _non_decreasing(model.get_submodule(act.target)):
            continue
        (pool, *others) = list(act.users) or [None]
        if (pool is not None and not others and pool.op == "call_module"
                and type(model.get_submodule(pool.target)) in _MAX_POOLS):
            out[pool] = act
    return out


def grouped_plan(model: nn.Module, input_dims: int) -> GroupedPlan:
    """Whether :func:`grouped_forward` can evaluate ``model`` on inputs ``(R, *S)`` with
    ``len(S) == input_dims``, and how.

    >>> from mollify.data import resnet, small_cnn
    >>> bool(grouped_plan(small_cnn(width=2, seed=0), 3)), bool(grouped_plan(resnet(seed=0), 3))
    (True, True)
    >>> grouped_plan(nn.Sequential(nn.Linear(4, 4), nn.PReLU()), 1).reason
    "'1' (PReLU) is not supported on a flat input"
    """
    if not isinstance(model, nn.Module):
        return _refuse(f"the model is a {type(model).__name__}, not an nn.Module")
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        return _refuse("global module hooks are registered")
    hooked = [name or "the model" for name, m in model.named_modules() if _has_hooks(m)]
    if hooked:
        return _refuse(f"{hooked[0]!r} has hooks")
    if input_dims < 1:
        return _refuse("inputs have no feature axis")
    try:
        graph = _trace(model)
    except Exception as err:  # noqa: BLE001 — any tracing failure means "use vmap"
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return _refuse(f"torch.fx cannot trace the model ({type(err).__name__}: {first})")
    layouts: dict = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            if layouts:
                return _refuse("the model takes more than one input")
            layouts[node] = _SPATIAL if input_dims >= 2 else _FLAT
        elif node.op == "output":
            out = node.args[0]
            if not (isinstance(out, torch.fx.Node) and layouts.get(out) == _FLAT):
                return _refuse("the model's output is not flat (N, classes)")
        else:
            if node.op == "get_attr":
                return _refuse(f"{node.target!r} is used outside a supported layer (get_attr)")
            layout = _node_layout(node, layouts, model)
            if layout is None:
                what = (f"{node.target!r} ({type(model.get_submodule(node.target)).__name__})"
                        if node.op == "call_module" else f"{node.op} {_name(node.target)}")
                inputs = {layouts.get(a) for a in node.all_input_nodes} - {None}
                where = f"on a {inputs.pop()} input" if len(inputs) == 1 else "here"
                return _refuse(f"{what} is not supported {where}")
            layouts[node] = layout
    return GroupedPlan(graph, model, layouts, _pool_first(graph, model))


def _name(target: object) -> str:
    return target if isinstance(target, str) else getattr(target, "__name__", repr(target))


def _stacked(weights: dict[str, Tensor], name: str, attr: str) -> Tensor | None:
    return weights.get(f"{name}.{attr}" if name else attr)


def grouped_forward(plan: GroupedPlan, weights: dict[str, Tensor], inputs: Tensor) -> Tensor:
    """Outputs of the model under every weight sample: ``(m, R, K)`` with row j, r equal to
    ``functional_call(model, θ_j, inputs[j])[r]``. Call it with the model in eval mode.

    Args:
        plan: :func:`grouped_plan` of the model (must be truthy).
        weights: {parameter name: ``(m, *shape)``}, every parameter of the model stacked over the
            m samples (as ``MCGM`` draws them).
        inputs: ``(m, R, *S)``, one batch per weight sample (an expanded view is fine).
    """
    if not plan:
        raise ValueError(f"the model cannot be evaluated grouped: {plan.reason}")
    m, rows = inputs.shape[0], inputs.shape[1]
    deferred = {act for act in plan.pool_first.values()}
    env: dict = {}
    for node in plan.graph.nodes:
        if node.op == "placeholder":
            env[node] = _widen(inputs) if plan.layouts[node] == _SPATIAL else inputs
        elif node.op == "output":
            return env[node.args[0]]
        elif node in deferred:
            continue  # evaluated after the max-pool it feeds
        elif node.op == "call_module":
            (arg,) = node.args
            if node in plan.pool_first:  # max-pool of the activation's input, then activation
                act = plan.pool_first[node]
                h = plan.model.get_submodule(node.target)(env[act.args[0]])
                env[node] = plan.model.get_submodule(act.target)(h)
            else:
                env[node] = _call_module(plan.model.get_submodule(node.target), node.target,
                                         weights, env[arg], plan.layouts[arg], m, rows)
        elif _is_flatten(node):
            (arg,) = node.all_input_nodes
            env[node] = _flatten(env[arg], plan.layouts[arg], m, rows)
        else:
            args = torch.fx.node.map_arg(node.args, lambda a: env[a])
            kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: env[a])
            if node.op == "call_function":
                env[node] = node.target(*args, **kwargs)
            else:
                env[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
    raise RuntimeError("the graph has no output")  # unreachable for a traced graph


def _widen(inputs: Tensor) -> Tensor:
    """(m, R, C, *sp) → (R, m·C, *sp): the samples side by side in the channels."""
    m, rows = inputs.shape[0], inputs.shape[1]
    h = inputs.movedim(0, 1).reshape(rows, m * inputs.shape[2], *inputs.shape[3:])
    if h.dim() == 4:
        h = h.contiguous(memory_format=torch.channels_last)
    return h


def _flatten(h: Tensor, layout: str, m: int, rows: int) -> Tensor:
    """Spatial (R, m·C, *sp) → flat (m, R, C·∏sp); a flat value is already flat."""
    if layout == _FLAT:
        return h
    if h.dim() == 4:
        h = _ChannelsLastGrad.apply(h)
    return h.reshape(rows, m, -1).transpose(0, 1)


def _call_module(module: nn.Module, name: str, weights: dict[str, Tensor], h: Tensor,
                 layout: str, m: int, rows: int) -> Tensor:
    kind = type(module)
    w, b = _stacked(weights, name, "weight"), _stacked(weights, name, "bias")
    if kind in _CONVS:
        wf = w.flatten(0, 1)
        if h.dim() == 4:
            wf = wf.contiguous(memory_format=torch.channels_last)
        return _CONVS[kind](h, wf, None if b is None else b.flatten(), module.stride,
                            module.padding, module.dilation, module.groups * m)
    if kind is nn.Linear:
        wt = w.transpose(1, 2)
        return torch.bmm(h, wt) if b is None else torch.baddbmm(b.unsqueeze(1), h, wt)
    if kind in _BATCHNORMS:
        return _batch_norm(module, h, layout, m, w, b)
    if kind is nn.LayerNorm:
        h = F.layer_norm(h, module.normalized_shape, None, None, module.eps)
        h = h if w is None else h * w.unsqueeze(1)
        return h if b is None else h + b.unsqueeze(1)
    if kind is nn.Flatten:
        return _flatten(h, layout, m, rows)
    if kind is nn.Softmax:
        return F.softmax(h, dim=-1)
    if kind is nn.LogSoftmax:
        return F.log_softmax(h, dim=-1)
    return module(h)  # pooling, element-wise activations, dropout (eval mode)


class _ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward hands the gradient on in channels-last memory format, so that
    the pooling and activation backward kernels before a flatten see one format (mixing
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
