"""Evaluating explanations: how sparse, faithful, robust, model-dependent and well placed they are.

Every metric takes attribution maps shaped like the inputs, ``(B, ...)``, and returns one value per
example, a tensor of shape ``(B,)`` on the inputs' device, so the mean and standard error over a
data set are one line for the caller::

    scores = deletion_auc(model, x, attributions, y)
    scores.mean(), scores.std() / len(scores) ** 0.5

=================================  =============  ============================================
metric                             property       better
=================================  =============  ============================================
:func:`sparseness`                 complexity     higher (a few features carry the map)
:func:`deletion_auc`               faithfulness   lower (the score drops fast)
:func:`insertion_auc`              faithfulness   higher (the score rises fast)
:func:`max_sensitivity`            robustness     lower (small input change, small map change)
:func:`randomization_consistency`  randomization  lower (the map depends on the weights)
:func:`localization`               localization   higher (mass on the ground truth)
=================================  =============  ============================================

:func:`perturbation_curve` returns the curves behind the two AUCs, and
:func:`randomize_parameters` makes the randomized model of Adebayo et al.'s sanity check.

Metrics that run a model put it (every submodule) in eval mode for the call and restore each
submodule's previous mode afterwards, and run it under ``torch.no_grad()``. Computations are done
in the attributions' floating dtype, at least float32.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from mollify._validation import check_choice, check_generator, check_int, check_real

__all__ = [
    "sparseness",
    "deletion_auc",
    "insertion_auc",
    "perturbation_curve",
    "max_sensitivity",
    "randomization_consistency",
    "randomize_parameters",
    "localization",
]

Target = int | torch.Tensor | None


# --- validation helpers -------------------------------------------------------------------------


def _check_tensor(name: str, value: object, *, floating_only: bool = False) -> torch.Tensor:
    """Check that ``value`` is a finite real tensor shaped ``(B, ...)`` with B >= 1 and features."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.is_complex():
        raise TypeError(f"{name} must be a real tensor, got dtype {value.dtype}")
    if floating_only and not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if value.ndim < 2 or value.shape[0] == 0 or value[0].numel() == 0:
        raise ValueError(
            f"{name} must be shaped (B, ...) with B >= 1 examples of at least one feature, "
            f"got shape {tuple(value.shape)}"
        )
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return value


def _as_float(value: torch.Tensor) -> torch.Tensor:
    """``value`` in a floating dtype of at least float32 precision."""
    dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
    return value.to(torch.promote_types(dtype, torch.float32))


def _check_shares_shape(name: str, value: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    """``value`` must have ``ref``'s shape, except that non-batch dimensions may be 1."""
    ok = value.ndim == ref.ndim and value.shape[0] == ref.shape[0]
    ok = ok and all(v in (r, 1) for v, r in zip(value.shape[1:], ref.shape[1:]))
    if not ok:
        raise ValueError(
            f"{name} must have the shape of {ref_name} {tuple(ref.shape)} (a non-batch dimension "
            f"may be 1 to be shared, e.g. (B, 1, H, W) for (B, 3, H, W)), "
            f"got {tuple(value.shape)}"
        )


def _check_target(target: object, batch: int) -> int | torch.Tensor | None:
    """An int, a 0-d or ``(B,)`` integer tensor, or None; negative labels are rejected."""
    if target is None:
        return None
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
        if target.ndim == 0:
            target = check_int("target", int(target), minimum=0)
        elif target.shape != (batch,):
            raise ValueError(
                f"target must be an int or a tensor shaped (B,) = ({batch},), "
                f"got shape {tuple(target.shape)}"
            )
        elif bool((target < 0).any()):
            raise ValueError("target must hold class indices >= 0")
        else:
            return target
    return check_int("target", target, minimum=0)


def _check_model(model: object) -> Callable[[torch.Tensor], torch.Tensor]:
    if not callable(model):
        raise TypeError(
            f"model must be a torch.nn.Module or a callable, got {type(model).__name__}"
        )
    return model  # type: ignore[return-value]


@contextlib.contextmanager
def _evaluating(model: object) -> Iterator[None]:
    """Eval mode and no gradients inside; every submodule's own mode restored afterwards."""
    modes = [(m, m.training) for m in model.modules()] if isinstance(model, nn.Module) else []
    try:
        if isinstance(model, nn.Module):
            model.eval()
        with torch.no_grad():
            yield
    finally:
        for module, mode in modes:
            module.training = mode


def _logits(model: Callable, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"model must map a batch (N, ...) to logits shaped (N, classes), got {shape} "
            f"for N = {x.shape[0]}"
        )
    return out


# --- complexity ---------------------------------------------------------------------------------


def sparseness(attributions: torch.Tensor) -> torch.Tensor:
    r"""Gini index of the absolute attributions of each example (Chalasani et al., 2020).

    With :math:`a_{(1)} \le \dots \le a_{(n)}` the sorted values of :math:`|a|` over all
    ``n`` features of one example,

    .. math:: G = \frac{\sum_{i=1}^{n} (2i - n - 1)\, a_{(i)}}{n \sum_{i=1}^{n} a_{(i)}}
              \in [0, 1 - 1/n],

    as in Quantus' ``Sparseness``: 0 when all features share the attribution equally,
    ``1 - 1/n`` when one feature carries all of it. The index is invariant to permuting the
    features, to the sign of each attribution and to scaling the map by any ``c != 0``. An
    all-zero map has no mass to be spread; it is given ``G = 0`` (Quantus adds ``1e-7`` to every
    value, which gives the same limit).

    Args:
        attributions: ``(B, ...)`` attribution maps.

    Returns:
        ``(B,)`` Gini indices (higher = sparser, i.e. simpler explanation).

    Raises:
        TypeError: if ``attributions`` is not a real tensor.
        ValueError: if it is not shaped ``(B, ...)`` or holds NaN/inf.

    >>> sparseness(torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]))
    tensor([0.7500, 0.0000])
    """
    a = _as_float(_check_tensor("attributions", attributions)).flatten(1).abs()
    n = a.shape[1]
    a = a.sort(dim=1).values
    i = torch.arange(1, n + 1, device=a.device, dtype=a.dtype)
    total = a.sum(dim=1)
    gini = ((2 * i - n - 1) * a).sum(dim=1) / (n * total.clamp_min(torch.finfo(a.dtype).tiny))
    return torch.where(total > 0, gini, torch.zeros_like(gini))


# --- faithfulness -------------------------------------------------------------------------------


def perturbation_curve(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target: Target = None,
    *,
    mode: str = "deletion",
    steps: int = 64,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The deletion or insertion curve of Petsiuk et al. (2018, RISE), arXiv:1806.07421.

    Features are ranked by decreasing attribution (the signed value: most positive evidence
    first; pass ``attributions.abs()`` to rank by magnitude); ties are broken by position in the
    flattened map (lower index first), so the curve is deterministic. At step
    :math:`k = 0, \dots, K` (``K = steps``) the first :math:`m_k = \lfloor k n / K \rfloor` of the
    ``n`` ranked features are

    * ``"deletion"``: set to ``baseline`` in the input, the rest kept;
    * ``"insertion"``: copied from the input into the baseline, the rest left at the baseline,

    and the curve records the model's softmax probability of the ``target`` class,
    :math:`p_k = \mathrm{softmax}(f(x^{(k)}))_t`, against the fraction :math:`m_k / n` changed.
    All ``B·(K+1)`` perturbed inputs are built by masking and run through the model in batches
    of ``batch_size``: no Python loop over features or examples.

    Attributions may have size 1 in a non-batch dimension to share one rank across it, e.g. a
    ``(B, 1, H, W)`` map for ``(B, 3, H, W)`` images: then each step removes whole pixels.

    Args:
        model: classifier mapping ``(N, ...)`` inputs to logits ``(N, classes)``; an
            ``nn.Module`` is put in eval mode for the call and its modes are restored.
        inputs: ``(B, ...)`` floating-point inputs.
        attributions: ``(B, ...)`` maps shaped like ``inputs`` (or with 1 in shared dims).
        target: class whose probability is tracked: an int, a ``(B,)`` integer tensor, or
            ``None`` for the model's predicted class on ``inputs``.
        mode: ``"deletion"`` or ``"insertion"``.
        steps: number of steps ``K`` (>= 1); ``K = n`` changes one feature per step. The
            default 64 is exact for 8×8 images.
        baseline: value of a removed feature: a number or a tensor broadcastable to
            ``inputs`` (e.g. a blurred copy, as RISE uses for insertion).
        batch_size: perturbed inputs per forward pass (bounds memory; results do not depend
            on it).

    Returns:
        ``(fractions, probabilities)``: the fractions :math:`m_k / n` changed, shaped
        ``(K + 1,)`` from 0 to 1, and the probabilities :math:`p_k`, shaped ``(B, K + 1)``.

    Raises:
        TypeError, ValueError: on a bad argument, mismatched shapes, NaN/inf values, a model
            that does not return ``(N, classes)`` logits, or a target out of range.

    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    >>> x = torch.ones(3, 1, 2, 2)
    >>> fractions, probs = perturbation_curve(model, x, torch.rand(3, 1, 2, 2), 0, steps=4)
    >>> fractions.tolist(), tuple(probs.shape)
    ([0.0, 0.25, 0.5, 0.75, 1.0], (3, 5))
    """
    model = _check_model(model)
    inputs = _check_tensor("inputs", inputs, floating_only=True)
    attributions = _as_float(_check_tensor("attributions", attributions))
    _check_shares_shape("attributions", attributions, "inputs", inputs)
    batch = inputs.shape[0]
    target = _check_target(target, batch)
    mode = check_choice("mode", mode, ("deletion", "insertion"))
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if isinstance(baseline, torch.Tensor):
        base = _as_float(baseline) if not baseline.is_floating_point() else baseline
        if not bool(torch.isfinite(base).all()):
            raise ValueError("baseline must be finite (no NaN or inf)")
        try:
            base = base.to(device=inputs.device, dtype=inputs.dtype).expand_as(inputs)
        except RuntimeError as err:
            raise ValueError(
                f"baseline must broadcast to the inputs' shape {tuple(inputs.shape)}, "
                f"got {tuple(baseline.shape)}"
            ) from err
    else:
        value = check_real("baseline", baseline)
        base = torch.full((), value, device=inputs.device, dtype=inputs.dtype).expand_as(inputs)

    # rank[b, j] = position of feature j in example b's order (0 = largest attribution)
    dtype = torch.promote_types(attributions.dtype, inputs.dtype)
    flat = attributions.to(device=inputs.device, dtype=dtype).flatten(1)
    n = flat.shape[1]
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=order.device).expand(batch, n))
    counts = torch.arange(steps + 1, device=inputs.device) * n // steps
    fractions = counts.to(flat.dtype) / n
    points = steps + 1
    shape_a = attributions.shape[1:]

    probs = torch.empty(batch * points, device=inputs.device, dtype=flat.dtype)
    with _evaluating(model):
        if target is None:
            target = torch.cat(
                [_logits(model, inputs[i : i + batch_size]).argmax(dim=1)
                 for i in range(0, batch, batch_size)]
            )
        if isinstance(target, int):
            target = torch.full((batch,), target, dtype=torch.int64, device=inputs.device)
        target = target.to(inputs.device)
        for start in range(0, batch * points, batch_size):
            idx = torch.arange(start, min(start + batch_size, batch * points), device=inputs.device)
            b, k = idx // points, idx % points
            changed = (rank[b] < counts[k, None]).view(len(idx), *shape_a).expand(
                len(idx), *inputs.shape[1:]
            )
            if mode == "deletion":
                x = torch.where(changed, base[b], inputs[b])
            else:
                x = torch.where(changed, inputs[b], base[b])
            logits = _logits(model, x)
            if start == 0 and int(target.max()) >= logits.shape[1]:
                raise ValueError(
                    f"target must be < the number of classes {logits.shape[1]}, "
                    f"got {int(target.max())}"
                )
            p = torch.softmax(logits.to(flat.dtype), dim=1)
            probs[idx] = p.gather(1, target[b, None]).squeeze(1)
    return fractions, probs.view(batch, points)


def _auc(fractions: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """Trapezoid rule over the (possibly uneven) fractions."""
    widths = fractions[1:] - fractions[:-1]
    return (widths * (probabilities[:, 1:] + probabilities[:, :-1]) / 2).sum(dim=1)


def deletion_auc(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target: Target = None,
    *,
    steps: int = 64,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 256,
) -> torch.Tensor:
    r"""Area under the deletion curve (Petsiuk et al., 2018, RISE), arXiv:1806.07421.

    Remove (set to ``baseline``) the features in order of decreasing attribution, ``steps``
    steps from none to all of them, and integrate the model's softmax probability of the target
    class over the fraction removed with the trapezoid rule:

    .. math:: \mathrm{AUC} = \sum_{k=0}^{K-1} (u_{k+1} - u_k)\,\frac{p_k + p_{k+1}}{2},
              \qquad u_k = m_k / n \in [0, 1].

    A faithful explanation names first the features the model relies on, so the probability
    drops fast: **lower is better**. The value lies in [0, 1]. See :func:`perturbation_curve`
    for the ranking, tie-breaking, target and baseline conventions and the curve itself.

    Args:
        model, inputs, attributions, target, steps, baseline, batch_size: as in
            :func:`perturbation_curve`.

    Returns:
        ``(B,)`` areas under the deletion curves.

    Raises:
        TypeError, ValueError: as in :func:`perturbation_curve`.

    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    >>> with torch.no_grad():
    ...     _ = model[1].weight.copy_(torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    ...     _ = model[1].bias.zero_()
    >>> x = torch.ones(1, 3)
    >>> good, bad = torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([[0.0, 1.0, 3.0]])
    >>> bool(deletion_auc(model, x, good, 0, steps=3) < deletion_auc(model, x, bad, 0, steps=3))
    True
    """
    fractions, probs = perturbation_curve(
        model, inputs, attributions, target, mode="deletion", steps=steps, baseline=baseline,
        batch_size=batch_size,
    )
    return _auc(fractions, probs)


def insertion_auc(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    target: Target = None,
    *,
    steps: int = 64,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int = 256,
) -> torch.Tensor:
    r"""Area under the insertion curve (Petsiuk et al., 2018, RISE), arXiv:1806.07421.

    Start from ``baseline`` and insert the input's features in order of decreasing attribution,
    ``steps`` steps from none to all; integrate the softmax probability of the target class over
    the fraction inserted with the trapezoid rule (the formula of :func:`deletion_auc`). A
    faithful explanation names first the features that make the class, so the probability rises
    fast: **higher is better**. The value lies in [0, 1]. See :func:`perturbation_curve` for the
    conventions; RISE uses a blurred copy of the input as the insertion baseline, which a
    ``baseline`` tensor allows.

    Args:
        model, inputs, attributions, target, steps, baseline, batch_size: as in
            :func:`perturbation_curve`.

    Returns:
        ``(B,)`` areas under the insertion curves.

    Raises:
        TypeError, ValueError: as in :func:`perturbation_curve`.

    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3, 2))
    >>> with torch.no_grad():
    ...     _ = model[1].weight.copy_(torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    ...     _ = model[1].bias.zero_()
    >>> x = torch.ones(1, 3)
    >>> good, bad = torch.tensor([[3.0, 1.0, 0.0]]), torch.tensor([[0.0, 1.0, 3.0]])
    >>> bool(insertion_auc(model, x, good, 0, steps=3) > insertion_auc(model, x, bad, 0, steps=3))
    True
    """
    fractions, probs = perturbation_curve(
        model, inputs, attributions, target, mode="insertion", steps=steps, baseline=baseline,
        batch_size=batch_size,
    )
    return _auc(fractions, probs)


# --- robustness ---------------------------------------------------------------------------------


def max_sensitivity(
    explain_fn: Callable[[torch.Tensor, Target], torch.Tensor],
    inputs: torch.Tensor,
    target: Target = None,
    *,
    radius: float = 0.1,
    n: int = 10,
    normalize: bool = True,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Largest change of an explanation under small input perturbations (Yeh et al., 2019).

    Monte Carlo estimate of the max-sensitivity of arXiv:1901.09392 over the L∞ ball of radius
    ``r``: draw :math:`\delta_1, \dots, \delta_n \sim U([-r, r]^d)` independently per example and
    return

    .. math:: \mathrm{SENS}_{\max}(x) = \max_{j \le n}
              \frac{\lVert e(x + \delta_j) - e(x) \rVert_2}{\lVert e(x) \rVert_2}

    with Frobenius (flattened L2) norms, as Quantus' ``MaxSensitivity`` does by default. The
    denominator makes the value invariant to the explanation's scale (Yeh et al. define it
    without; ``normalize=False`` gives their unnormalized form). When :math:`e(x) = 0` the ratio
    is 0 if every :math:`e(x + \delta_j)` is 0 too, and ``inf`` otherwise. Perturbed inputs are not
    clipped to the data range. **Lower is better.**

    ``explain_fn`` is called once on ``inputs`` and then on the ``n·B`` perturbed inputs, stacked
    as ``n`` blocks of ``B`` (all at once, or ``batch_size`` rows per call). It runs with
    gradients enabled as the caller has them; it is responsible for its model's mode.

    Args:
        explain_fn: ``explain_fn(inputs, target) -> attributions`` shaped like its inputs, e.g.
            ``SmoothGrad(model).attribute`` or a lambda around it. For the perturbed batch a
            tensor ``target`` is repeated to match (``target.repeat(n)``); an int or ``None`` is
            passed on as is.
        inputs: ``(B, ...)`` floating-point inputs.
        target: passed to ``explain_fn``: an int, a ``(B,)`` integer tensor, or ``None``.
        radius: half-width ``r`` of the L∞ ball (> 0), in input units.
        n: number of perturbations per example (>= 1).
        normalize: divide by :math:`\lVert e(x) \rVert_2`.
        batch_size: rows per call of ``explain_fn`` on the perturbed inputs (``None``: all).
        generator: source of the perturbations; the same generator state gives the same result
            (if ``explain_fn`` is deterministic). Draws are made on the generator's device.

    Returns:
        ``(B,)`` max-sensitivities, on the inputs' device.

    Raises:
        TypeError, ValueError: on a bad argument, NaN/inf inputs, or an ``explain_fn`` that
            returns something not shaped like its inputs or not finite.

    >>> explain = lambda x, target: x ** 2  # a toy explanation
    >>> x = torch.ones(2, 3)
    >>> s = max_sensitivity(explain, x, radius=0.01, generator=torch.Generator().manual_seed(0))
    >>> s.shape, bool((s > 0).all() and (s < 0.03).all())
    (torch.Size([2]), True)
    """
    if not callable(explain_fn):
        raise TypeError(f"explain_fn must be callable, got {type(explain_fn).__name__}")
    inputs = _check_tensor("inputs", inputs, floating_only=True)
    batch = inputs.shape[0]
    target = _check_target(target, batch)
    radius = check_real("radius", radius, low=0, low_open=True)
    n = check_int("n", n, minimum=1)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1)
    generator = check_generator(generator)

    def explain(x: torch.Tensor, t: Target) -> torch.Tensor:
        out = explain_fn(x, t)
        if not isinstance(out, torch.Tensor) or out.shape != x.shape:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"explain_fn must return attributions shaped like its inputs {tuple(x.shape)}, "
                f"got {shape}"
            )
        out = _as_float(out.detach())
        if not bool(torch.isfinite(out).all()):
            raise ValueError("explain_fn returned NaN or inf attributions")
        return out

    reference = explain(inputs, target).flatten(1)
    device = generator.device if generator is not None else inputs.device
    delta = torch.rand((n, *inputs.shape), generator=generator, device=device, dtype=inputs.dtype)
    perturbed = (inputs + radius * (2 * delta.to(inputs.device) - 1)).flatten(0, 1)
    targets = target.repeat(n) if isinstance(target, torch.Tensor) else target
    step = batch_size or n * batch
    parts = []
    for start in range(0, n * batch, step):
        t = targets[start : start + step] if isinstance(targets, torch.Tensor) else targets
        parts.append(explain(perturbed[start : start + step], t))
    explained = torch.cat(parts).view(n, batch, -1).to(reference.dtype)
    worst = (explained - reference).norm(dim=2).amax(dim=0)
    if not normalize:
        return worst
    scale = reference.norm(dim=1)
    ratio = worst / scale.clamp_min(torch.finfo(scale.dtype).tiny)
    degenerate = torch.where(worst > 0, torch.full_like(worst, math.inf), torch.zeros_like(worst))
    return torch.where(scale > 0, ratio, degenerate)


# --- randomization ------------------------------------------------------------------------------


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n along dim 1 with ties given their average rank (``scipy.stats.rankdata``)."""
    batch, n = values.shape
    sorted_values, order = values.sort(dim=1, stable=True)
    new_group = torch.ones_like(sorted_values, dtype=torch.bool)
    new_group[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    group = new_group.cumsum(dim=1) - 1  # tie group of each sorted position, 0-based
    positions = torch.arange(1, n + 1, device=values.device, dtype=values.dtype).expand(batch, n)
    sums = torch.zeros_like(values).scatter_add_(1, group, positions)
    sizes = torch.zeros_like(values).scatter_add_(1, group, torch.ones_like(values))
    sorted_ranks = (sums / sizes.clamp_min(1)).gather(1, group)
    return torch.empty_like(values).scatter_(1, order, sorted_ranks)


def randomization_consistency(
    explanations_a: torch.Tensor, explanations_b: torch.Tensor, *, abs: bool = False
) -> torch.Tensor:
    r"""Spearman rank correlation between two explanations of each example.

    The model-randomization sanity check of Adebayo et al. (2018), arXiv:1810.03292: explain the
    trained model and a copy with randomized weights (:func:`randomize_parameters`) and compare
    the maps. With :math:`R(a)` the ranks of the ``n`` features of one map (ties get their
    average rank, as ``scipy.stats.rankdata``),

    .. math:: \rho = \frac{\sum_j (R(a)_j - \bar R)(R(b)_j - \bar R)}
              {\sqrt{\sum_j (R(a)_j - \bar R)^2 \sum_j (R(b)_j - \bar R)^2}}
              \in [-1, 1],

    the Pearson correlation of the ranks (equal to ``scipy.stats.spearmanr``). An explanation that
    reflects what the model learned changes when the weights are randomized: **lower (near 0)
    is better**; a value near 1 means the map ignores the model (e.g. an edge detector). Adebayo
    et al. report it with and without absolute values (``abs=True`` ranks :math:`|a|`, since
    randomization may flip signs). A constant map has no ranking: its correlation is undefined
    and returned as NaN, like SciPy does (use ``nanmean`` to average).

    Args:
        explanations_a: ``(B, ...)`` first maps, e.g. of the trained model.
        explanations_b: ``(B, ...)`` second maps, same shape, e.g. of the randomized model.
        abs: rank absolute values.

    Returns:
        ``(B,)`` Spearman correlations.

    Raises:
        TypeError, ValueError: on non-tensors, different shapes or NaN/inf values.

    >>> a = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    >>> randomization_consistency(a, a ** 3), randomization_consistency(a, -a)
    (tensor([1.]), tensor([-1.]))
    """
    a = _as_float(_check_tensor("explanations_a", explanations_a))
    b = _as_float(_check_tensor("explanations_b", explanations_b))
    if a.shape != b.shape:
        raise ValueError(
            f"explanations_a and explanations_b must have the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if not isinstance(abs, bool):
        raise TypeError(f"abs must be a bool, got {type(abs).__name__}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype).flatten(1), b.to(device=a.device, dtype=dtype).flatten(1)
    if abs:
        a, b = a.abs(), b.abs()
    ra, rb = _average_ranks(a), _average_ranks(b)
    ra = ra - ra.mean(dim=1, keepdim=True)
    rb = rb - rb.mean(dim=1, keepdim=True)
    return (ra * rb).sum(dim=1) / ((ra**2).sum(dim=1) * (rb**2).sum(dim=1)).sqrt()


def _parameterized(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Submodules that own parameters directly, in registration (for Sequential: forward) order."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if next(module.parameters(recurse=False), None) is not None
    ]


def randomize_parameters(
    model: nn.Module,
    *,
    layers: int | str | Iterable[str] | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A copy of ``model`` with the weights of some or all layers re-initialized.

    The randomized model of the sanity checks of Adebayo et al. (2018), arXiv:1810.03292. The
    "layers" are the submodules that own parameters, in registration order (for an
    ``nn.Sequential``, input to output). Each chosen layer is re-initialized by its own
    ``reset_parameters()`` (PyTorch's default initialization: what an untrained model has); a
    layer without one gets each of its parameters' entries randomly permuted, which keeps their
    distribution but destroys what was learned. The model is deep-copied once; the original is
    left untouched, and the copy keeps its devices, dtypes, modes and ``requires_grad`` flags.

    Args:
        model: the trained model.
        layers: ``None`` randomizes every layer (full randomization); an int ``k`` randomizes
            the last ``k`` layers (Adebayo et al.'s *cascading* randomization from the logits
            down; ``k = 1, 2, …`` gives the cascade); a name or list of names from
            ``model.named_modules()`` randomizes exactly those layers (*independent*
            randomization).
        generator: CPU or other ``torch.Generator`` seeding the re-initialization; the same
            generator state gives the same weights, and the global RNG state is left as it
            was. ``None`` draws the seed from the global RNG, like building a new module.

    Returns:
        The randomized copy.

    Raises:
        TypeError: if ``model`` is not an ``nn.Module`` or ``layers``/``generator`` has the wrong
            type.
        ValueError: if the model has no parameters, ``k`` exceeds the number of layers, or a
            name is not a layer with parameters.

    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> top = randomize_parameters(model, layers=1, generator=torch.Generator().manual_seed(0))
    >>> torch.equal(top[0].weight, model[0].weight), torch.equal(top[2].weight, model[2].weight)
    (True, False)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    generator = check_generator(generator)
    available = [name for name, _ in _parameterized(model)]
    if not available:
        raise ValueError("model has no parameters to randomize")
    if layers is None:
        chosen = available
    elif isinstance(layers, numbers.Integral) and not isinstance(layers, bool):
        k = check_int("layers", layers, minimum=1)
        if k > len(available):
            raise ValueError(f"layers must be <= the number of layers {len(available)}, got {k}")
        chosen = available[-k:]
    elif isinstance(layers, str) or (
        isinstance(layers, Iterable) and not isinstance(layers, (bytes, torch.Tensor))
    ):
        chosen = [layers] if isinstance(layers, str) else list(layers)
        if not all(isinstance(name, str) for name in chosen):
            raise TypeError("layers must be None, an int, a module name or a list of names")
        unknown = [name for name in chosen if name not in available]
        if unknown or not chosen:
            raise ValueError(
                f"layers must name modules with parameters, one of {available}; got {chosen}"
            )
    else:
        raise TypeError(
            f"layers must be None, an int, a module name or a list of names, "
            f"got {type(layers).__name__}"
        )

    if generator is not None:
        seed = int(torch.randint(0, 2**62, (), generator=generator, device=generator.device))
    else:
        seed = int(torch.randint(0, 2**62, ()))
    randomized = copy.deepcopy(model)
    modules = dict(randomized.named_modules())
    # Initialize on the CPU with a private seed: fork_rng restores the global CPU state, and no
    # accelerator RNG is touched.
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        with torch.no_grad():
            for name in chosen:
                module = modules[name]
                own = list(module.named_parameters(recurse=False))
                fresh = copy.deepcopy(module).to("cpu")
                if callable(getattr(fresh, "reset_parameters", None)):
                    fresh.reset_parameters()
                    values = dict(fresh.named_parameters(recurse=False))
                else:
                    values = {
                        pname: p.flatten()[torch.randperm(p.numel())].view_as(p)
                        for pname, p in fresh.named_parameters(recurse=False)
                    }
                for pname, p in own:
                    p.copy_(values[pname].to(device=p.device, dtype=p.dtype))
    return randomized


# --- localization -------------------------------------------------------------------------------


def localization(
    attributions: torch.Tensor, mask: torch.Tensor, *, mode: str = "positive"
) -> torch.Tensor:
    r"""Share of the attribution mass that falls inside a ground-truth mask.

    "Attribution localisation" (Kohlbrenner et al., arXiv 1910.09840; Arras et al., CLEVR-XAI, arXiv 2003.07258; as in Quantus):

    .. math:: L = \frac{\sum_{j \in M} a_j^+}{\sum_j a_j^+} \in [0, 1],

    with :math:`a^+ = \max(a, 0)` (``mode="positive"``, the default: evidence *for* the class;
    negative attributions count for nothing) or :math:`a^+ = |a|` (``mode="absolute"``).
    **Higher is better**: 1 when all mass is inside the mask, 0 when none is. A map that spreads
    its mass uniformly scores the mask's share of the features, ``mask.float().mean()``, which is
    the chance level to compare with (Quantus' ``weighted`` variant divides by it). A map with no
    mass (all zero, or no positive value in ``"positive"`` mode) is given 0.

    Args:
        attributions: ``(B, ...)`` attribution maps.
        mask: ``(B, ...)`` bool ground truth, ``True`` on the relevant features, e.g. the ``mask``
            of :func:`mollify.data.shapes`; a non-batch dimension may be 1 to be shared (a
            ``(B, 1, H, W)`` mask for ``(B, 3, H, W)`` maps).
        mode: ``"positive"`` or ``"absolute"``.

    Returns:
        ``(B,)`` shares of mass inside the mask.

    Raises:
        TypeError: if ``mask`` is not a bool tensor or ``attributions`` not a real tensor.
        ValueError: on mismatched shapes, NaN/inf attributions or an unknown ``mode``.

    >>> a = torch.tensor([[3.0, 1.0, -2.0, 0.0]])
    >>> mask = torch.tensor([[True, False, True, False]])
    >>> localization(a, mask), localization(a, mask, mode="absolute")
    (tensor([0.7500]), tensor([0.8333]))
    """
    a = _as_float(_check_tensor("attributions", attributions))
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        kind = f"dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"mask must be a bool tensor (use mask.bool()), got {kind}")
    _check_shares_shape("mask", mask, "attributions", a)
    mode = check_choice("mode", mode, ("positive", "absolute"))
    mass = a.clamp_min(0) if mode == "positive" else a.abs()
    inside = (mass * mask.to(a.device).expand_as(a)).flatten(1).sum(dim=1)
    total = mass.flatten(1).sum(dim=1)
    share = inside / total.clamp_min(torch.finfo(total.dtype).tiny)
    return torch.where(total > 0, share, torch.zeros_like(share))
