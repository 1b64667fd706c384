"""mollify.optim: exact agreement with torch at sigma = 0, unbiasedness, state dicts, safety."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from mollify.optim import GSmoothAdam, GSmoothSGD


def _model(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def _data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


def _closure(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor):
    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    return closure


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> list[torch.Tensor]:
    x, y = _data()
    closure = _closure(model, opt, x, y)
    losses = [opt.step(closure) for _ in range(steps)]
    return losses


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _assert_params_equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for u, v in zip(a, b):
        assert torch.equal(u, v)


# --- sigma = 0 is exactly torch -----------------------------------------------------------------

SGD_CONFIGS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2},
    {"momentum": 0.5, "dampening": 0.3, "weight_decay": 1e-3},
    {"momentum": 0.9, "maximize": True},
]
ADAM_CONFIGS = [
    {},
    {"weight_decay": 1e-2},
    {"amsgrad": True, "weight_decay": 1e-2, "betas": (0.8, 0.99)},
    {"decoupled_weight_decay": True, "weight_decay": 0.1},
]


@pytest.mark.parametrize("n_samples", [1, 4])
@pytest.mark.parametrize("config", SGD_CONFIGS)
def test_sigma_zero_equals_torch_sgd(config, n_samples):
    m_ref, m_ours = _model(), _model()
    ref = torch.optim.SGD(m_ref.parameters(), lr=0.1, **config)
    ours = GSmoothSGD(m_ours.parameters(), lr=0.1, sigma=0.0, n_samples=n_samples, **config)
    loss_ref = _train(m_ref, ref, 20)
    loss_ours = _train(m_ours, ours, 20)
    _assert_params_equal(_params(m_ref), _params(m_ours))
    assert all(torch.equal(a, b) for a, b in zip(loss_ref, loss_ours))


@pytest.mark.parametrize("n_samples", [1, 4])
@pytest.mark.parametrize("config", ADAM_CONFIGS)
def test_sigma_zero_equals_torch_adam(config, n_samples):
    m_ref, m_ours = _model(), _model()
    ref = torch.optim.Adam(m_ref.parameters(), lr=1e-2, **config)
    ours = GSmoothAdam(m_ours.parameters(), lr=1e-2, sigma=0.0, n_samples=n_samples, **config)
    _train(m_ref, ref, 20)
    _train(m_ours, ours, 20)
    _assert_params_equal(_params(m_ref), _params(m_ours))
    for p_ref, p_ours in zip(m_ref.parameters(), m_ours.parameters()):
        for key, value in ref.state[p_ref].items():
            assert torch.equal(value, ours.state[p_ours][key])


def test_is_a_torch_optimizer_and_works_with_lr_scheduler():
    model = _model()
    opt = GSmoothSGD(model.parameters(), lr=0.1, sigma=0.01)
    assert isinstance(opt, torch.optim.Optimizer) and isinstance(opt, torch.optim.SGD)
    assert isinstance(GSmoothAdam(model.parameters()), torch.optim.Adam)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    x, y = _data()
    for _ in range(4):
        opt.step(_closure(model, opt, x, y))
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)


def test_step_hooks_run_once_per_step():
    torch.optim.SGD(_model().parameters())  # makes torch wrap SGD.step with its hook wrapper
    model = _model()
    opt = GSmoothSGD(model.parameters(), lr=0.1, sigma=0.1, n_samples=3,
                     generator=torch.Generator().manual_seed(0))
    calls = {"pre": 0, "post": 0}
    opt.register_step_pre_hook(lambda *a: calls.__setitem__("pre", calls["pre"] + 1))
    opt.register_step_post_hook(lambda *a: calls.__setitem__("post", calls["post"] + 1))
    _train(model, opt, 2)
    assert calls == {"pre": 2, "post": 2}


# --- the Monte Carlo gradient -------------------------------------------------------------------


def _grad_samples(loss_fn, theta0, sigma, steps, n_samples=1, antithetic=False, seed=0):
    """Gradient estimates left in ``p.grad`` by ``steps`` steps with lr = 0 (θ never moves)."""
    theta = nn.Parameter(theta0.clone())
    opt = GSmoothSGD([theta], lr=0.0, sigma=sigma, n_samples=n_samples, antithetic=antithetic,
                     generator=torch.Generator().manual_seed(seed))

    def closure():
        opt.zero_grad()
        loss = loss_fn(theta)
        loss.backward()
        return loss

    grads = []
    for _ in range(steps):
        opt.step(closure)
        grads.append(theta.grad.clone())
    assert torch.equal(theta.detach(), theta0)
    return torch.stack(grads)


def test_gradient_unbiased_for_quadratic():
    # L(θ) = ½ θᵀAθ + bᵀθ: L_σ = L + const, so E[estimate] = ∇L(θ) = Aθ + b.
    g = torch.Generator().manual_seed(0)
    m = torch.randn(3, 3, generator=g, dtype=torch.float64)
    a = m @ m.T + torch.eye(3, dtype=torch.float64)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    theta0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    grads = _grad_samples(lambda t: 0.5 * t @ a @ t + b @ t, theta0, sigma=0.7, steps=400)
    mean, stderr = grads.mean(0), grads.std(0) / math.sqrt(len(grads))
    assert ((mean - (a @ theta0 + b)).abs() < 4 * stderr).all()
    assert (stderr > 0).all()


def test_antithetic_is_exact_for_quadratic():
    a = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    theta0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    grads = _grad_samples(lambda t: 0.5 * t @ a @ t, theta0, sigma=1.3, steps=3, n_samples=2,
                          antithetic=True)
    torch.testing.assert_close(grads, (a @ theta0).expand(3, 2), rtol=1e-12, atol=1e-12)


def test_gradient_unbiased_for_known_smoothed_gradient():
    # L(θ) = Σ sin θ_i: L_σ(θ) = e^{−σ²/2} Σ sin θ_i, so ∇L_σ = e^{−σ²/2} cos θ (≠ ∇L).
    sigma = 0.8
    theta0 = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64)
    grads = _grad_samples(lambda t: t.sin().sum(), theta0, sigma, steps=100, n_samples=10)
    expected = math.exp(-sigma**2 / 2) * theta0.cos()
    mean, stderr = grads.mean(0), grads.std(0) / math.sqrt(len(grads))
    assert ((mean - expected).abs() < 4 * stderr).all()
    assert (mean - theta0.cos()).abs().max() > 10 * stderr.max()  # and it is not the plain ∇L


def test_returns_mean_loss_over_samples():
    theta = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = GSmoothSGD([theta], lr=0.0, sigma=0.5, n_samples=4,
                     generator=torch.Generator().manual_seed(3))
    seen = []

    def closure():
        opt.zero_grad()
        loss = (theta**2).sum()
        loss.backward()
        seen.append(loss.detach())
        return loss

    loss = opt.step(closure)
    assert loss.shape == () and not loss.requires_grad
    torch.testing.assert_close(loss, torch.stack(seen).mean())
    assert len(seen) == 4 and len(set(v.item() for v in seen)) == 4


# --- escaping a local minimum -------------------------------------------------------------------


def _rastrigin_1d(theta: torch.Tensor) -> torch.Tensor:
    # Global minimum 0 at θ = 0, local minima near θ = 0.63 k. Smoothed with σ:
    # θ² + σ² + 1 − e^{−50σ²} cos 10θ, convex for σ = 0.3 (curvature 2 − 100 e^{−4.5} > 0).
    return (theta**2 + 1 - torch.cos(10 * theta)).sum()


def _smoothed_rastrigin(theta: float, sigma: float) -> float:
    return theta**2 + sigma**2 + 1 - math.exp(-50 * sigma**2) * math.cos(10 * theta)


def _descend(opt_cls, steps=200, **kwargs) -> float:
    theta = nn.Parameter(torch.tensor([1.9], dtype=torch.float64))
    opt = opt_cls([theta], **kwargs)

    def closure():
        opt.zero_grad()
        loss = _rastrigin_1d(theta)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return theta.item()


def test_gsmooth_sgd_escapes_local_minimum_where_sgd_is_stuck():
    sigma = 0.3
    stuck = _descend(torch.optim.SGD, lr=0.01)
    assert 1.7 < stuck < 2.0  # plain SGD stays in the local minimum near 1.85
    for seed in (0, 1):
        escaped = _descend(GSmoothSGD, lr=0.01, sigma=sigma, n_samples=4,
                           generator=torch.Generator().manual_seed(seed))
        assert abs(escaped) < 0.5
        assert _smoothed_rastrigin(escaped, sigma) < _smoothed_rastrigin(stuck, sigma) - 2.0
        assert _rastrigin_1d(torch.tensor(escaped)) < _rastrigin_1d(torch.tensor(stuck)) - 1.0


# --- reproducibility and state dicts ------------------------------------------------------------


@pytest.mark.parametrize("cls", [GSmoothSGD, GSmoothAdam])
def test_same_generator_seed_same_trajectory(cls):
    runs = []
    for seed in (0, 0, 1):
        model = _model()
        opt = cls(model.parameters(), lr=1e-2, sigma=0.1, n_samples=2,
                  generator=torch.Generator().manual_seed(seed))
        _train(model, opt, 5)
        runs.append(_params(model))
    _assert_params_equal(runs[0], runs[1])
    assert not torch.equal(runs[0][0], runs[2][0])


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (GSmoothSGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
        (GSmoothAdam, {"lr": 1e-2, "amsgrad": True, "weight_decay": 1e-3}),
    ],
)
def test_state_dict_round_trip_continues_identically(cls, kwargs):
    gen = torch.Generator().manual_seed(0)
    model = _model()
    opt = cls(model.parameters(), sigma=0.05, n_samples=3, generator=gen, **kwargs)
    _train(model, opt, 5)
    checkpoint = {
        "model": copy.deepcopy(model.state_dict()),
        "opt": copy.deepcopy(opt.state_dict()),
        "gen": gen.get_state(),
    }
    saved = checkpoint["opt"]
    assert saved["param_groups"][0]["sigma"] == 0.05
    first = saved["state"][0]
    if cls is GSmoothAdam:
        assert {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"} <= set(first)
        assert float(first["step"]) == 5
    else:
        assert "momentum_buffer" in first
    _train(model, opt, 5)
    expected = _params(model)

    gen2 = torch.Generator()
    gen2.set_state(checkpoint["gen"])
    model2 = _model(seed=123)  # different initial weights: everything comes from the checkpoint
    model2.load_state_dict(checkpoint["model"])
    opt2 = cls(model2.parameters(), sigma=0.9, n_samples=3, generator=gen2, **kwargs)
    opt2.load_state_dict(checkpoint["opt"])  # restores sigma = 0.05 too
    _train(model2, opt2, 5)
    _assert_params_equal(expected, _params(model2))


def test_deepcopy_keeps_sampling_settings():
    model = _model()
    opt = GSmoothSGD(model.parameters(), lr=0.1, sigma=0.2, n_samples=4, antithetic=True,
                     generator=torch.Generator().manual_seed(0))
    clone = copy.deepcopy(opt)
    assert (clone.n_samples, clone.antithetic) == (4, True)
    assert isinstance(clone.generator, torch.Generator)


# --- parameters are never left perturbed --------------------------------------------------------


@pytest.mark.parametrize("cls", [GSmoothSGD, GSmoothAdam])
def test_parameters_restored_when_closure_raises(cls):
    model = _model()
    before = _params(model)
    opt = cls(model.parameters(), lr=0.1, sigma=0.5, n_samples=4,
              generator=torch.Generator().manual_seed(0))
    x, y = _data()
    calls = {"n": 0}
    inner = _closure(model, opt, x, y)

    def closure():
        calls["n"] += 1
        if calls["n"] == 2:
            _assert_perturbed(model, before)
            raise RuntimeError("boom")
        return inner()

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(closure)
    _assert_params_equal(before, _params(model))
    assert opt.state == {} or all(not s for s in opt.state.values())  # no update was applied


def _assert_perturbed(model: nn.Module, before: list[torch.Tensor]) -> None:
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_parameters_restored_exactly_after_step_with_lr_zero():
    model = _model()
    before = _params(model)
    opt = GSmoothAdam(model.parameters(), lr=0.0, sigma=0.3, n_samples=5,
                      generator=torch.Generator().manual_seed(0))
    _train(model, opt, 3)
    _assert_params_equal(before, _params(model))


def test_per_group_sigma_and_frozen_parameters():
    model = _model()
    frozen = model[0].bias
    frozen.requires_grad_(False)
    weights = [model[0].weight, model[2].weight]
    opt = GSmoothSGD(
        [{"params": weights}, {"params": [model[2].bias, frozen], "sigma": 0.0}],
        lr=0.0, sigma=0.5, n_samples=3, generator=torch.Generator().manual_seed(0),
    )
    before = _params(model)
    seen = []
    x, y = _data()
    inner = _closure(model, opt, x, y)

    def closure():
        seen.append(_params(model))
        return inner()

    opt.step(closure)
    assert opt.param_groups[0]["sigma"] == 0.5 and opt.param_groups[1]["sigma"] == 0.0
    for params in seen:
        assert not torch.equal(params[0], before[0])  # model[0].weight: perturbed
        assert torch.equal(params[1], before[1])  # frozen bias: never perturbed
        assert not torch.equal(params[2], before[2])  # model[2].weight: perturbed
        assert torch.equal(params[3], before[3])  # sigma = 0 group: not perturbed
    assert model[2].bias.grad is not None and frozen.grad is None


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [GSmoothSGD, GSmoothAdam])
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"sigma": -1.0}, ValueError, "sigma must be >= 0"),
        ({"sigma": float("nan")}, ValueError, "sigma must be finite"),
        ({"sigma": "0.1"}, TypeError, "sigma must be a real number"),
        ({"n_samples": 0}, ValueError, "n_samples must be >= 1"),
        ({"n_samples": 2.0}, TypeError, "n_samples must be an int"),
        ({"lr": -0.1}, ValueError, "lr must be >= 0"),
        ({"n_samples": 3, "antithetic": True}, ValueError, "n_samples must be even"),
        ({"antithetic": 1}, TypeError, "antithetic must be a bool"),
        ({"generator": 0}, TypeError, "generator must be a torch.Generator"),
        ({"weight_decay": -1.0}, ValueError, "weight_decay must be >= 0"),
    ],
)
def test_bad_arguments(cls, kwargs, error, message):
    with pytest.raises(error, match=message):
        cls(_model().parameters(), **kwargs)


def test_bad_optimizer_specific_arguments():
    params = list(_model().parameters())
    with pytest.raises(ValueError, match="momentum must be >= 0"):
        GSmoothSGD(params, momentum=-0.5)
    with pytest.raises(ValueError, match="Nesterov"):
        GSmoothSGD(params, nesterov=True)  # torch's own check: needs momentum
    with pytest.raises(ValueError, match=r"betas\[1\] must be < 1"):
        GSmoothAdam(params, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="eps must be >= 0"):
        GSmoothAdam(params, eps=-1e-8)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        GSmoothSGD([{"params": params, "sigma": -0.1}])


@pytest.mark.parametrize("cls", [GSmoothSGD, GSmoothAdam])
def test_step_needs_a_callable_closure(cls):
    opt = cls(_model().parameters())
    with pytest.raises(TypeError, match="needs a closure"):
        opt.step()
    with pytest.raises(TypeError, match="closure must be callable"):
        opt.step(1.0)


def test_antithetic_with_odd_samples_set_later_fails_at_step():
    model = _model()
    opt = GSmoothSGD(model.parameters(), sigma=0.1, n_samples=2, antithetic=True)
    opt.n_samples = 3
    x, y = _data()
    with pytest.raises(ValueError, match="n_samples must be even"):
        opt.step(_closure(model, opt, x, y))
