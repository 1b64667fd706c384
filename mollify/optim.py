"""Gaussian-smoothing optimizers: descend the smoothed loss ``L_σ(θ) = E_z[L(θ + σz)]``.

Gaussian smoothing in the weights flattens small fluctuations of the loss landscape, so descent
is less likely to stall in poor local minima (Starnes & Webster, arXiv 2311.00531: GSmoothSGD,
GSmoothAdam). The optimizers here estimate

    ∇L_σ(θ) = E_z[∇L(θ + σz)],   z ~ N(0, I),

with the pathwise Monte Carlo estimator ``(1/n) Σ_i ∇L(θ + σz_i)`` and hand that estimate to the
unchanged update rule of ``torch.optim.SGD`` or ``torch.optim.Adam``.

Exactness by construction. :class:`GSmoothSGD` *is* a ``torch.optim.SGD`` (a subclass) and
:class:`GSmoothAdam` a ``torch.optim.Adam``. ``step`` first replaces every ``p.grad`` by the
Monte Carlo mean, then runs the parent class's own ``step`` code. Hence:

* with ``sigma = 0`` the closure is called once and the update is torch's, so the parameter
  trajectory equals ``torch.optim.SGD``/``Adam`` bit for bit, for any ``n_samples``;
* the optimizer state is torch's (``momentum_buffer``; ``step``, ``exp_avg``, ``exp_avg_sq``,
  ``max_exp_avg_sq``) and ``sigma`` is an ordinary per-group hyperparameter, so ``state_dict()``
  and ``load_state_dict()`` are torch's and round-trip everything; LR schedulers, per-group
  options and ``foreach`` work as usual.

The parent ``step`` is called without torch's step-hook wrapper, so hooks registered with
``register_step_pre_hook``/``register_step_post_hook`` run once per ``step``, around the whole
smoothed step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from mollify._validation import check_generator, check_int, check_real

__all__ = ["GSmoothSGD", "GSmoothAdam"]

_Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def _check_hyper(name: str, value: object, **bounds: Any) -> Any:
    """Validate a number with :func:`check_real`; tensors (allowed by torch for ``lr``) pass."""
    if isinstance(value, torch.Tensor):
        return value
    return check_real(name, value, **bounds)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _unhooked_step(cls: type[torch.optim.Optimizer]) -> Callable[..., Any]:
    """``cls.step`` without the profiling/hook wrapper ``torch.optim.Optimizer`` installs.

    ``Optimizer`` wraps a class's ``step`` (marking the wrapper ``hooked``, ``functools.wraps``
    keeps the original as ``__wrapped__``) the first time an instance of that class is built.
    Calling the wrapped parent ``step`` from our own (also wrapped) ``step`` would run the user's
    step hooks twice, and only when a plain ``SGD``/``Adam`` happened to exist.
    """
    fn = cls.step
    while getattr(fn, "hooked", False) and hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    return fn


class _GaussianSmoothing:
    """Mixin: Monte Carlo gradient of the Gaussian-smoothed loss, then the parent's update."""

    _base: type[torch.optim.Optimizer]
    param_groups: list[dict[str, Any]]
    defaults: dict[str, Any]

    def _init_smoothing(
        self, sigma: float, n_samples: int, antithetic: bool, generator: torch.Generator | None
    ) -> tuple[float, int, bool, torch.Generator | None]:
        sigma = check_real("sigma", sigma, low=0)
        n_samples = check_int("n_samples", n_samples, minimum=1)
        antithetic = _check_bool("antithetic", antithetic)
        if antithetic and n_samples % 2:
            raise ValueError(f"n_samples must be even when antithetic=True, got {n_samples}")
        check_generator(generator)
        self._sigma_default = sigma  # read by add_param_group while the parent __init__ runs
        return sigma, n_samples, antithetic, generator

    def __getstate__(self) -> dict[str, Any]:
        # torch's Optimizer pickles only defaults/state/param_groups; keep the sampling settings
        # so that copy.deepcopy and pickle give a working optimizer.
        state = super().__getstate__()  # type: ignore[misc]
        state.update(
            n_samples=self.n_samples,  # type: ignore[attr-defined]
            antithetic=self.antithetic,  # type: ignore[attr-defined]
            generator=self.generator,  # type: ignore[attr-defined]
        )
        return state

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group; it may set its own ``sigma`` (``>= 0``; 0: not perturbed).

        Raises:
            TypeError, ValueError: on a bad ``sigma`` in ``param_group``.
        """
        if "sigma" in param_group:
            param_group["sigma"] = check_real("sigma", param_group["sigma"], low=0)
        else:
            param_group["sigma"] = self.defaults.get("sigma", getattr(self, "_sigma_default", 0.0))
        super().add_param_group(param_group)  # type: ignore[misc]

    def _noise(self, p: torch.Tensor) -> torch.Tensor:
        gen = self.generator  # type: ignore[attr-defined]
        if gen is None:
            return torch.randn(p.shape, device=p.device, dtype=p.dtype)
        z = torch.randn(p.shape, generator=gen, device=gen.device, dtype=p.dtype)
        return z.to(p.device)

    def _smoothed_gradient(self, closure: Callable[[], Any]) -> Any:
        """Set each ``p.grad`` to the mean of ``n_samples`` perturbed gradients; return the loss."""
        n = check_int("n_samples", self.n_samples, minimum=1)  # type: ignore[attr-defined]
        antithetic = _check_bool("antithetic", self.antithetic)  # type: ignore[attr-defined]
        if antithetic and n % 2:
            raise ValueError(f"n_samples must be even when antithetic=True, got {n}")
        perturbed: list[tuple[torch.Tensor, float]] = []
        for group in self.param_groups:
            sigma = check_real("sigma", group.get("sigma", self.defaults["sigma"]), low=0)
            if sigma > 0.0:
                perturbed.extend((p, sigma) for p in group["params"] if p.requires_grad)
        if not perturbed:  # sigma = 0: exactly the parent's closure call
            with torch.enable_grad():
                return closure()

        params = [p for group in self.param_groups for p in group["params"]]
        with torch.no_grad():
            originals = [p.detach().clone() for p, _ in perturbed]
        sums: list[torch.Tensor | None] = [None] * len(params)
        losses: list[Any] = []
        noise: list[torch.Tensor] = []
        for i in range(n):
            with torch.no_grad():
                if not antithetic or i % 2 == 0:
                    noise = [self._noise(p) for p, _ in perturbed]
                    sign = 1.0
                else:
                    sign = -1.0
            try:
                with torch.no_grad():
                    for (p, sigma), z in zip(perturbed, noise):
                        p.add_(z, alpha=sign * sigma)
                with torch.enable_grad():
                    losses.append(closure())
            finally:  # never leave a parameter perturbed, even if the closure raises
                with torch.no_grad():
                    for (p, _), original in zip(perturbed, originals):
                        p.copy_(original)
            with torch.no_grad():
                for j, p in enumerate(params):
                    if p.grad is None:
                        continue
                    if sums[j] is None:
                        sums[j] = p.grad.detach().clone()
                    else:
                        sums[j].add_(p.grad)  # type: ignore[union-attr]
        with torch.no_grad():
            for p, total in zip(params, sums):
                if total is not None:
                    p.grad = total.div_(n)
        if any(loss is None for loss in losses):
            return None
        return torch.stack([torch.as_tensor(loss).detach() for loss in losses]).mean()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update along the Monte Carlo estimate of ``∇L_σ(θ) = E_z[∇L(θ + σz)]``.

        For ``i = 1..n_samples``: under ``torch.no_grad`` every trainable parameter of a group
        with ``sigma > 0`` is moved in place to ``θ + σ z_i`` (``z_i ~ N(0, I)`` from
        ``generator``; with ``antithetic=True`` the pairs ``+σz, −σz``), ``closure()`` is called,
        the gradients are accumulated and the parameters are copied back from a saved copy
        (exact restore, also when the closure raises). Then ``p.grad`` is set to the mean
        gradient and the parent optimizer's update (``torch.optim.SGD``/``Adam``) is applied.
        When every group has ``sigma = 0`` the closure is called once, exactly like torch.

        Cost: ``n_samples`` forward/backward passes per step; memory: a saved copy of the
        perturbed parameters, a gradient accumulator and the current noise.

        Args:
            closure: **required**. The usual closure contract: it zeroes the gradients, computes
                the loss at the current parameters, calls ``backward()`` and returns the loss,
                e.g. ``def closure(): opt.zero_grad(); loss = loss_fn(model(x), y);
                loss.backward(); return loss``. It must not modify the parameters itself.
                Gradients it leaves at ``None`` count as zero for that sample.

        Returns:
            With ``sigma > 0``: the mean of the closure's losses over the samples, a detached
            0-d tensor (``None`` if the closure returns ``None``). With ``sigma = 0``: the
            closure's return value, as torch optimizers return it.

        Raises:
            TypeError: if ``closure`` is missing or not callable.
            ValueError: if ``antithetic`` is on and ``n_samples`` is odd.
        """
        if closure is None:
            raise TypeError(
                f"{type(self).__name__}.step needs a closure: it evaluates the loss at perturbed "
                "parameters, e.g. def closure(): opt.zero_grad(); loss = loss_fn(model(x), y); "
                "loss.backward(); return loss  -- then call opt.step(closure)"
            )
        if not callable(closure):
            raise TypeError(f"closure must be callable, got {type(closure).__name__}")
        loss = self._smoothed_gradient(closure)
        _unhooked_step(self._base)(self)
        return loss


class GSmoothSGD(_GaussianSmoothing, torch.optim.SGD):
    """SGD on the Gaussian-smoothed loss ``L_σ(θ) = E_z[L(θ + σz)]`` (arXiv 2311.00531).

    Each :meth:`step` replaces the gradient by the pathwise Monte Carlo estimate
    ``g = (1/n) Σ_i ∇L(θ + σz_i)``, ``z_i ~ N(0, I)`` (unbiased for ``∇L_σ(θ)``), then applies
    ``torch.optim.SGD``'s own update to ``g``: ``g ← g + λθ``; ``b ← μb + (1 − τ)g`` (``b = g``
    at the first step); ``g ← g + μb`` (Nesterov) or ``g ← b``; ``θ ← θ − lr·g``. It is a
    subclass of ``torch.optim.SGD``, so with ``sigma = 0`` it reproduces ``torch.optim.SGD``
    exactly and its ``state_dict`` is SGD's plus a per-group ``sigma``.

    Args:
        params: parameters or parameter groups, as for ``torch.optim.SGD``; a group may set its
            own ``sigma`` (e.g. 0 for biases or normalization layers).
        lr: learning rate, ``>= 0`` (a float or a tensor, as torch allows).
        sigma: standard deviation of the weight noise, ``>= 0``; ``0`` is plain SGD. The default
            0.01 is the value that helped most in the paper's MNIST experiment.
        n_samples: Monte Carlo samples (closure calls) per step, ``>= 1``.
        momentum: momentum factor μ, ``>= 0``.
        dampening: dampening τ for momentum.
        weight_decay: L2 penalty λ, ``>= 0``.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
        antithetic: draw the noise in pairs ``+z, −z`` (exact for quadratic losses, lower
            variance in general); ``n_samples`` must then be even.
        generator: source of the noise. Noise for a parameter is drawn on the generator's device
            and moved to the parameter's. ``None`` uses torch's global RNG.
        maximize: maximize the objective instead, as in ``torch.optim.SGD``.
        foreach: use torch's multi-tensor implementation (``None``: torch's default).

    Raises:
        TypeError: on arguments of the wrong type (a non-``Generator`` ``generator``, ...).
        ValueError: on ``sigma < 0``, ``n_samples < 1``, ``lr < 0``, odd ``n_samples`` with
            ``antithetic=True``, or anything ``torch.optim.SGD`` rejects.

    Note:
        The generator is not part of ``state_dict()``; to resume a run bit for bit, save
        ``generator.get_state()`` with the state dict and restore it with ``set_state``.

    >>> model = torch.nn.Linear(3, 1)
    >>> opt = GSmoothSGD(model.parameters(), lr=0.1, sigma=0.05, n_samples=4,
    ...                  generator=torch.Generator().manual_seed(0))
    >>> x, y = torch.ones(8, 3), torch.zeros(8, 1)
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = ((model(x) - y) ** 2).mean()
    ...     loss.backward()
    ...     return loss
    >>> loss = opt.step(closure)  # mean loss over the 4 perturbed evaluations
    >>> loss.shape
    torch.Size([])
    """

    _base = torch.optim.SGD

    def __init__(
        self,
        params: _Params,
        lr: float | torch.Tensor = 1e-3,
        sigma: float = 0.01,
        n_samples: int = 1,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        antithetic: bool = False,
        generator: torch.Generator | None = None,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        sigma, n_samples, antithetic, generator = self._init_smoothing(
            sigma, n_samples, antithetic, generator
        )
        lr = _check_hyper("lr", lr, low=0)
        momentum = _check_hyper("momentum", momentum, low=0)
        dampening = _check_hyper("dampening", dampening)
        weight_decay = _check_hyper("weight_decay", weight_decay, low=0)
        nesterov = _check_bool("nesterov", nesterov)
        maximize = _check_bool("maximize", maximize)
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
        )
        self.defaults["sigma"] = sigma
        self.n_samples = n_samples
        self.antithetic = antithetic
        self.generator = generator


class GSmoothAdam(_GaussianSmoothing, torch.optim.Adam):
    """Adam on the Gaussian-smoothed loss ``L_σ(θ) = E_z[L(θ + σz)]`` (arXiv 2311.00531).

    Each :meth:`step` replaces the gradient by ``g = (1/n) Σ_i ∇L(θ + σz_i)``, ``z_i ~ N(0, I)``,
    then applies ``torch.optim.Adam``'s own update to ``g``: ``m ← β₁m + (1 − β₁)g``,
    ``v ← β₂v + (1 − β₂)g²`` (``v̂ = max`` of all ``v`` with ``amsgrad``),
    ``θ ← θ − lr·(m/(1 − β₁ᵗ)) / (√(v/(1 − β₂ᵗ)) + ε)``; weight decay adds ``λθ`` to ``g``, or
    with ``decoupled_weight_decay=True`` (AdamW) multiplies ``θ`` by ``1 − lr·λ``. It is a
    subclass of ``torch.optim.Adam``: with ``sigma = 0`` it reproduces ``torch.optim.Adam``
    exactly and its ``state_dict`` (``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``) is
    Adam's plus a per-group ``sigma``.

    Args:
        params: parameters or parameter groups; a group may set its own ``sigma``.
        lr: learning rate, ``>= 0`` (a float or a tensor, as torch allows).
        sigma: standard deviation of the weight noise, ``>= 0``; ``0`` is plain Adam.
        n_samples: Monte Carlo samples (closure calls) per step, ``>= 1``.
        betas: ``(β₁, β₂)``, each in [0, 1).
        eps: ε added to the denominator, ``>= 0``.
        weight_decay: weight decay λ, ``>= 0``.
        amsgrad: use the AMSGrad variant.
        antithetic: draw the noise in pairs ``+z, −z``; ``n_samples`` must then be even.
        generator: source of the noise (drawn on its device, moved to the parameter's);
            ``None`` uses torch's global RNG.
        maximize: maximize the objective instead.
        foreach: use torch's multi-tensor implementation (``None``: torch's default).
        decoupled_weight_decay: AdamW-style weight decay (needs a torch that has this option of
            ``torch.optim.Adam``, 2.7 or later).

    Raises:
        TypeError: on arguments of the wrong type.
        ValueError: on ``sigma < 0``, ``n_samples < 1``, ``lr < 0``, betas outside [0, 1),
            odd ``n_samples`` with ``antithetic=True``, or anything ``torch.optim.Adam`` rejects.

    Note:
        The generator is not part of ``state_dict()``; to resume a run bit for bit, save
        ``generator.get_state()`` with the state dict and restore it with ``set_state``.

    >>> model = torch.nn.Linear(3, 1)
    >>> opt = GSmoothAdam(model.parameters(), lr=1e-2, sigma=0.05, n_samples=2, antithetic=True)
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = model(torch.ones(4, 3)).pow(2).mean()
    ...     loss.backward()
    ...     return loss
    >>> _ = opt.step(closure)
    >>> sorted(opt.state[model.weight])
    ['exp_avg', 'exp_avg_sq', 'step']
    """

    _base = torch.optim.Adam

    def __init__(
        self,
        params: _Params,
        lr: float | torch.Tensor = 1e-3,
        sigma: float = 0.01,
        n_samples: int = 1,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        antithetic: bool = False,
        generator: torch.Generator | None = None,
        maximize: bool = False,
        foreach: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        sigma, n_samples, antithetic, generator = self._init_smoothing(
            sigma, n_samples, antithetic, generator
        )
        lr = _check_hyper("lr", lr, low=0)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        betas = (
            _check_hyper("betas[0]", betas[0], low=0.0, high=1.0, high_open=True),
            _check_hyper("betas[1]", betas[1], low=0.0, high=1.0, high_open=True),
        )
        eps = _check_hyper("eps", eps, low=0)
        weight_decay = _check_hyper("weight_decay", weight_decay, low=0)
        amsgrad = _check_bool("amsgrad", amsgrad)
        maximize = _check_bool("maximize", maximize)
        extra: dict[str, Any] = {}
        if _check_bool("decoupled_weight_decay", decoupled_weight_decay):
            extra["decoupled_weight_decay"] = True  # only passed when asked: torch < 2.7 lacks it
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            **extra,
        )
        self.defaults["sigma"] = sigma
        self.n_samples = n_samples
        self.antithetic = antithetic
        self.generator = generator
