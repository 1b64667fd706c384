"""Tests of mollify.explain: agreement with Captum, ground truths (linear models, eps → 0),
invariances (chunking, generator, batch), model state restored, the explainer matrix, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mollify.data import small_cnn
from mollify.explain import (
    MCGM,
    FusionGrad,
    Gradient,
    NoiseGrad,
    SmoothGrad,
    VarGrad,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_cnn() -> nn.Module:
    return small_cnn(width=2, seed=0)


def images(b: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 1, 8, 8, generator=gen(seed))


def tanh_mlp(d: int = 6, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(d, 16), nn.Tanh(), nn.Linear(16, classes)).double()


# ----------------------------------------------------------------------------- Captum


def test_smoothgrad_agrees_with_captum_noise_tunnel():
    captum = pytest.importorskip("captum.attr")
    model, x, sigma, n = tiny_cnn(), images(3), 0.2, 2000
    target = torch.tensor([1, 4, 7])
    ours = SmoothGrad(model, eps=sigma, n=n).estimate(x, target, generator=gen(0))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        nt = captum.NoiseTunnel(captum.Saliency(model))
        ref = nt.attribute(x, nt_type="smoothgrad", nt_samples=n, nt_samples_batch_size=500,
                           stdevs=sigma, target=target, abs=False)
    assert ref.shape == ours.mean.shape
    tol = 5 * math.sqrt(2) * ours.stderr + 1e-7  # both are MC estimates with about this error
    assert bool(((ours.mean - ref).abs() <= tol).all())


def test_smoothgrad_squared_and_vargrad_agree_with_captum():
    captum = pytest.importorskip("captum.attr")
    model, x, sigma, n = tanh_mlp(), torch.randn(2, 6, dtype=F64, generator=gen(1)), 0.5, 4000
    sq = SmoothGrad(model, eps=sigma, n=n, square=True).estimate(x, 2, generator=gen(0))
    var = VarGrad(model, eps=sigma, n=n).attribute(x, 2, generator=gen(1))
    nt = captum.NoiseTunnel(captum.Saliency(model))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref_sq = nt.attribute(x, nt_type="smoothgrad_sq", nt_samples=n, stdevs=sigma,
                              target=2, abs=False)
        ref_var = nt.attribute(x, nt_type="vargrad", nt_samples=n, stdevs=sigma, target=2,
                               abs=False)
    assert bool(((sq.mean - ref_sq).abs() <= 5 * math.sqrt(2) * sq.stderr + 1e-12).all())
    assert float((var - ref_var).norm() / ref_var.norm()) < 0.1


# ----------------------------------------------------------------------------- ground truths


@pytest.mark.parametrize("kernel", ["uniform", "epanechnikov", "bump"])
def test_tiny_eps_with_compact_kernel_is_the_plain_gradient(kernel):
    """All samples stay in the input's linear region of the ReLU net: exactly the gradient."""
    model, x = tiny_cnn(), images(3)
    plain = Gradient(model).attribute(x, target=2)
    smooth = MCGM(model, kernel=kernel, eps=1e-6, n=8).attribute(x, 2, generator=gen(0))
    # equal up to the backend's batch-size dependence (bitwise on CPU here)
    assert torch.allclose(smooth, plain, rtol=1e-6, atol=1e-9)
    sq = SmoothGrad(model, kernel=kernel, eps=1e-6, n=4, square=True).attribute(x, 2)
    ab = SmoothGrad(model, kernel=kernel, eps=1e-6, n=4, abs=True).attribute(x, 2)
    assert torch.allclose(sq, plain * plain, rtol=1e-6, atol=1e-12)
    assert torch.allclose(ab, plain.abs(), rtol=1e-6, atol=1e-9)


def test_eps_to_zero_on_a_smooth_model():
    model, x = tanh_mlp(), torch.randn(4, 6, dtype=F64, generator=gen(0))
    plain = Gradient(model).attribute(x)
    for expl in (SmoothGrad(model, eps=1e-6, n=8), NoiseGrad(model, eps_param=1e-6, n=4),
                 FusionGrad(model, eps=1e-6, eps_param=1e-6, n=2, n_param=2)):
        assert torch.allclose(expl.attribute(x, generator=gen(0)), plain, atol=1e-6)


def test_noisegrad_on_a_linear_model_returns_its_weights():
    torch.manual_seed(0)
    model = nn.Linear(6, 4).double()
    x = torch.randn(3, 6, dtype=F64, generator=gen(0))
    target = torch.tensor([0, 3, 1])
    w = model.weight.detach()[target]
    est = NoiseGrad(model, n=400).estimate(x, target, generator=gen(0))
    assert est.n == 400
    assert bool(((est.mean - w).abs() <= 4 * est.stderr).all())
    add = NoiseGrad(model, n=400, noise="additive", eps_param=0.1)
    add = add.estimate(x, target, generator=gen(1))
    assert bool(((add.mean - w).abs() <= 4 * add.stderr).all())
    # antithetic pairs θ(1 ± σz) average to θ exactly (up to rounding)
    anti = NoiseGrad(model, n=4, sampler="antithetic").attribute(x, target, generator=gen(2))
    assert torch.allclose(anti, w, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "uniform"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_weight_noise_has_the_kernels_unit_variance(kernel, dtype):
    # On a linear model the gradient of sample j is w ∘ (1 + σ z_j), so the variance of the
    # gradients over weight samples is σ² w² for every unit-variance kernel. Gaussian noise is
    # drawn by torch.randn in the parameters' dtype, the others by inversion: check both paths.
    torch.manual_seed(0)
    model = nn.Linear(40, 2).to(dtype)
    x = torch.randn(1, 40, dtype=dtype, generator=gen(0))
    sigma, n = 0.2, 2000
    var = VarGrad(model, mode="parameter", kernel=kernel, eps_param=sigma, n_param=n)
    var = var.attribute(x, target=1, generator=gen(3))[0].double()
    w2 = model.weight.detach()[1].double() ** 2
    ratio = (var / (sigma**2 * w2)).mean()  # mean over 40 coordinates of var / expected
    # each coordinate's sample variance has relative sd ≈ √(2/n) (more for heavy tails)
    assert abs(float(ratio) - 1.0) < 0.05, float(ratio)
    mean = NoiseGrad(model, kernel=kernel, eps_param=sigma, n=n).attribute(x, 1, generator=gen(4))
    z = (mean[0].double() / model.weight.detach()[1].double() - 1) / sigma  # ≈ mean of n z's
    assert float(z.abs().max()) < 4.5 / math.sqrt(n) * 1.5

def test_joint_mode_on_a_linear_model():
    torch.manual_seed(0)
    model = nn.Linear(5, 2).double()
    x = torch.randn(2, 5, dtype=F64, generator=gen(0))
    est = FusionGrad(model, n=8, n_param=64).estimate(x, 1, generator=gen(0))
    assert est.n == 8 * 64
    w = model.weight.detach()[1].expand(2, 5)
    assert bool(((est.mean - w).abs() <= 4 * est.stderr).all())


def test_smoothgrad_of_a_quadratic_model_is_the_gradient():
    """f(x) = ½ xᵀAx + bx: ∇f_ε = ∇f for every symmetric kernel; antithetic is exact."""

    class Quadratic(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64))

        def forward(self, x):
            return 0.5 * ((x @ self.a) * x).sum(1)  # one score per example: target=None

    model, x = Quadratic(), torch.tensor([[1.0, -1.0], [0.5, 2.0]], dtype=F64)
    exact = x @ model.a.detach()
    for kernel in ("laplace", "triweight"):
        got = SmoothGrad(model, kernel=kernel, eps=0.7, n=6, sampler="antithetic").attribute(x)
        assert torch.allclose(got, exact, atol=1e-12)
    with pytest.raises(ValueError, match="target=None"):
        SmoothGrad(model, eps=0.1, n=2).attribute(x, target=0)


# ----------------------------------------------------------------------------- invariances


class Elementwise(nn.Module):
    """Scores computed row by row with elementwise ops: bitwise independent of the batch size."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.linspace(-1.0, 1.0, 64).reshape(1, 1, 8, 8))

    def forward(self, x):
        return torch.stack([torch.tanh(x * self.a).flatten(1).sum(1), (x * x).flatten(1).sum(1)], 1)


@pytest.mark.parametrize("sampler", ["mc", "antithetic", "rqmc"])
def test_input_mode_is_chunk_invariant(sampler):
    """Bitwise for a row-wise model; for the CNN up to the backend's batch-size dependence."""
    x = images(3)
    for model, exact in ((Elementwise(), True), (tiny_cnn(), False)):
        sg = SmoothGrad(model, n=32, sampler=sampler)
        ref = sg.estimate(x, generator=gen(0))
        for chunk in (1, 2, 5, 64):
            got = sg.estimate(x, generator=gen(0), chunk_size=chunk)
            if exact:
                assert torch.equal(got.mean, ref.mean) and torch.equal(got.stderr, ref.stderr)
            else:
                assert torch.allclose(got.mean, ref.mean, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "make",
    [lambda m: NoiseGrad(m, n=6), lambda m: FusionGrad(m, n=3, n_param=4),
     lambda m: MCGM(m, mode="joint", eps=0.1, n=4, n_param=2, sampler="antithetic"),
     lambda m: VarGrad(m, mode="parameter", n_param=5)],
)
def test_vmapped_modes_are_chunk_invariant(make):
    model, x = tiny_cnn(), images(2)
    expl = make(model)
    ref = expl.attribute(x, generator=gen(0))
    for chunk in (1, 2, 5, 100):
        got = expl.attribute(x, generator=gen(0), chunk_size=chunk)
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-7)


def test_same_generator_same_result():
    model, x = tiny_cnn(), images(2)
    for expl in (SmoothGrad(model, n=4), NoiseGrad(model, n=2), FusionGrad(model, n=2, n_param=2)):
        a = expl.attribute(x, generator=gen(3))
        assert torch.equal(a, expl.attribute(x, generator=gen(3)))
        assert not torch.equal(a, expl.attribute(x, generator=gen(4)))


def test_mcgm_equals_the_named_methods():
    model, x = tiny_cnn(), images(3)
    pairs = [
        (MCGM(model, mode="input", kernel="gaussian", eps_rel=0.15), SmoothGrad(model)),
        (MCGM(model, mode="parameter", n_param=10), NoiseGrad(model)),
        (MCGM(model, mode="joint", eps_rel=0.4, n=10, n_param=10), FusionGrad(model)),
    ]
    for general, named in pairs:
        assert torch.equal(general.attribute(x, 5, generator=gen(1)),
                           named.attribute(x, 5, generator=gen(1)))


def test_eps_rel_scales_with_each_examples_range_and_batch_does_not_matter():
    model = tiny_cnn()
    x = images(3) * torch.tensor([1.0, 2.0, 0.5]).reshape(3, 1, 1, 1)
    batched = SmoothGrad(model, eps_rel=0.2, n=8).attribute(x, 4, generator=gen(0))
    for b in range(3):
        span = float(x[b].max() - x[b].min())
        alone = SmoothGrad(model, eps=0.2 * span, n=8).attribute(x[b : b + 1], 4, generator=gen(0))
        assert torch.allclose(alone[0], batched[b], rtol=1e-5, atol=1e-7)


def test_overrides_apply_to_one_call():
    model, x = tiny_cnn(), images(2)
    sg = SmoothGrad(model, n=4)
    a = sg.attribute(x, generator=gen(0), eps=0.05, n=8)
    assert sg.last_evaluations == 16
    b = SmoothGrad(model, eps=0.05, n=8).attribute(x, generator=gen(0))
    assert torch.equal(a, b)
    sg.attribute(x, generator=gen(0))
    assert sg.last_evaluations == 8


def test_antithetic_beats_plain_monte_carlo_at_equal_n():
    model, x = tanh_mlp(), torch.randn(3, 6, dtype=F64, generator=gen(0))
    ref = SmoothGrad(model, eps=0.3, n=8192, sampler="antithetic")
    ref = ref.attribute(x, 0, generator=gen(99))
    err = {"mc": [], "antithetic": []}
    for seed in range(5):
        for sampler in err:
            sg = SmoothGrad(model, eps=0.3, n=16, sampler=sampler)
            got = sg.attribute(x, 0, generator=gen(seed))
            err[sampler].append(float((got - ref).pow(2).sum()))
    assert sum(err["antithetic"]) < 0.25 * sum(err["mc"])


# ----------------------------------------------------------------------------- model state


class Flaky(nn.Module):
    """A CNN with dropout and batch norm that raises on its second forward pass."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Dropout(0.5),
            nn.Flatten(), nn.Linear(128, 3),
        )
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("boom")
        return self.body(x)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "make",
    # vmap runs Flaky's forward itself; batching="grouped" would trace it once (a forward with
    # side effects is the documented case for batching="vmap") and is covered below
    [Gradient, lambda m: SmoothGrad(m, n=2), lambda m: NoiseGrad(m, n=2, batching="vmap"),
     lambda m: FusionGrad(m, n=2, n_param=2, batching="vmap"), lambda m: VarGrad(m, n=2)],
)
def test_model_state_is_restored_after_an_exception(make):
    model = Flaky()
    model.train()
    model.body[3].eval()  # mixed flags must come back as they were
    model.body[0].bias.requires_grad_(False)
    before = _snapshot(model)
    flags = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    assert grads == [True, False, True, True, True, True]
    with pytest.raises(RuntimeError, match="boom"):
        make(model).attribute(images(2))
    assert [m.training for m in model.modules()] == flags
    after = _snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in model.parameters()] == grads
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("mode", ["parameter", "joint"])
def test_model_state_is_restored_after_an_exception_in_grouped_layers(mode, monkeypatch):
    import mollify.grouped

    model = Flaky()
    model.calls = 2  # past Flaky's own failure: the grouped evaluation fails instead
    model.train()
    model.body[3].eval()
    before, flags = _snapshot(model), [m.training for m in model.modules()]
    calls = []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom in a grouped layer")
        return call_module(*args)

    call_module = mollify.grouped._call_module
    monkeypatch.setattr(mollify.grouped, "_call_module", failing)
    explainer = MCGM(model, mode=mode, eps=0.1, n=2, n_param=2, batching="grouped")
    with pytest.raises(RuntimeError, match="boom in a grouped layer"):
        explainer.attribute(images(2), target=0)
    assert [m.training for m in model.modules()] == flags
    after = _snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in model.parameters())


def test_batchnorm_model_in_parameter_and_joint_modes():
    model = Flaky()
    model.calls = 2  # past the failure
    with torch.no_grad():  # non-trivial running statistics
        model.body[1].running_mean.fill_(0.3)
        model.body[1].running_var.fill_(2.0)
    model.train()
    before = _snapshot(model)
    x = images(3)
    plain = Gradient(model).attribute(x, 1)
    assert torch.equal(plain, Gradient(model).attribute(x, 1))  # eval mode: dropout is off
    for expl in (NoiseGrad(model, n=4), FusionGrad(model, n=2, n_param=2)):
        out = expl.attribute(x, 1, generator=gen(0))
        assert out.shape == x.shape and torch.isfinite(out).all()
    tiny = NoiseGrad(model, n=2, eps_param=1e-7).attribute(x, 1, generator=gen(0))
    assert torch.allclose(tiny, plain, atol=1e-5)
    assert model.training and all(m.training for m in model.modules())
    after = _snapshot(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_inputs_are_not_modified_and_need_not_require_grad():
    model = tiny_cnn()
    leaf = images(2).requires_grad_(True)
    x = leaf * 1.0  # a non-leaf that requires grad
    keep = x.detach().clone()
    with torch.no_grad():
        a = SmoothGrad(model, n=2).attribute(x, generator=gen(0))
    b = SmoothGrad(model, n=2).attribute(keep, generator=gen(0))
    assert torch.equal(a, b) and torch.equal(x.detach(), keep)
    assert leaf.grad is None and not a.requires_grad


# ----------------------------------------------------------------------------- the matrix

KERNEL_NAMES = ["gaussian", "laplace", "uniform", "epanechnikov", "bump"]
EXPLAINERS = {
    "SmoothGrad": lambda m, k: SmoothGrad(m, kernel=k, n=2),
    "VarGrad-input": lambda m, k: VarGrad(m, kernel=k, n=2),
    "VarGrad-parameter": lambda m, k: VarGrad(m, kernel=k, mode="parameter", n_param=2),
    "NoiseGrad": lambda m, k: NoiseGrad(m, kernel=k, n=2),
    "FusionGrad": lambda m, k: FusionGrad(m, kernel=k, n=2, n_param=2),
    "MCGM-input": lambda m, k: MCGM(m, kernel=k, mode="input", eps=0.1, n=2),
    "MCGM-parameter-additive": lambda m, k: MCGM(m, kernel=k, mode="parameter", noise="additive",
                                                 eps_param=0.05, n_param=2),
    "MCGM-joint-antithetic": lambda m, k: MCGM(m, kernel=k, mode="joint", eps_rel=0.3, n=2,
                                               n_param=2, sampler="antithetic"),
}


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("name", list(EXPLAINERS))
def test_matrix_every_explainer_kernel_mode_target_batch(name, kernel):
    model = tiny_cnn()
    expl = EXPLAINERS[name](model, kernel)
    for batch in (1, 3):
        x = images(batch, seed=batch)
        targets = [None, 7, torch.arange(batch) % 10]
        outs = [expl.attribute(x, t, generator=gen(0)) for t in targets]
        for out in outs:
            assert out.shape == x.shape and out.dtype == x.dtype
            assert torch.isfinite(out).all()
        pred = model(x).argmax(1)
        assert torch.equal(outs[0], expl.attribute(x, pred, generator=gen(0)))


@pytest.mark.parametrize("batch", [1, 3])
def test_gradient_matches_autograd_for_every_target_form(batch):
    model, x = tiny_cnn(), images(batch)
    xg = x.clone().requires_grad_(True)
    logits = model(xg)
    (want,) = torch.autograd.grad(logits[:, 3].sum(), xg)
    g = Gradient(model)
    for target in (3, torch.tensor(3), torch.full((batch,), 3), [3] * batch):
        assert torch.allclose(g.attribute(x, target), want, atol=1e-7)
    assert g.attribute(x).shape == x.shape


# ----------------------------------------------------------------------------- bad input


def test_bad_arguments_raise_clear_errors():
    model, x = tiny_cnn(), images(3)
    sg = SmoothGrad(model, n=2)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        sg.attribute(x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        sg.attribute(x, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="number of classes"):
        sg.attribute(x, 10)
    with pytest.raises(ValueError, match=">= 0"):
        sg.attribute(x, -1)
    with pytest.raises(TypeError, match="integers"):
        sg.attribute(x, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="floating-point"):
        sg.attribute((x * 255).long())
    with pytest.raises(TypeError, match="torch.Tensor"):
        sg.attribute(x.numpy())
    with pytest.raises(ValueError, match="finite"):
        sg.attribute(x.masked_fill(x > 0.5, math.nan))
    with pytest.raises(TypeError, match="unexpected option"):
        sg.attribute(x, mode="parameter")
    with pytest.raises(TypeError, match="nn.Module"):
        SmoothGrad(lambda t: t)
    with pytest.raises(ValueError, match="n must be >= 1"):
        SmoothGrad(model, n=0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        NoiseGrad(model, n=0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        sg.attribute(x, n=0)
    with pytest.raises(ValueError, match="eps must be > 0"):
        SmoothGrad(model, eps=0.0)
    with pytest.raises(ValueError, match="eps_rel must be > 0"):
        SmoothGrad(model, eps_rel=-0.1)
    with pytest.raises(ValueError, match="eps_param must be > 0"):
        NoiseGrad(model, eps_param=0)
    with pytest.raises(ValueError, match="both"):
        SmoothGrad(model, eps=0.1, eps_rel=0.1)
    with pytest.raises(ValueError, match="neither"):
        MCGM(model, mode="input")
    with pytest.raises(ValueError, match="unknown kernel"):
        SmoothGrad(model, kernel="gauss")
    with pytest.raises(ValueError, match="mode must be one of"):
        MCGM(model, mode="inputs", eps=0.1)
    with pytest.raises(ValueError, match="noise must be one of"):
        NoiseGrad(model, noise="mult")
    with pytest.raises(ValueError, match="sampler must be one of"):
        SmoothGrad(model, sampler="sobol")
    with pytest.raises(ValueError, match="weight noise"):
        NoiseGrad(model, sampler="rqmc")
    with pytest.raises(ValueError, match="even"):
        SmoothGrad(model, n=3, sampler="antithetic")
    with pytest.raises(ValueError, match="n must be even"):
        NoiseGrad(model, n=3, sampler="antithetic")
    with pytest.raises(ValueError, match="multiple of replicates"):
        SmoothGrad(model, n=50, sampler="rqmc")
    with pytest.raises(TypeError, match="abs must be a bool"):
        SmoothGrad(model, abs=1)
    with pytest.raises(TypeError, match="generator"):
        sg.attribute(x, generator=1)


def test_last_evaluations_counts_noisy_gradients():
    model, x = tiny_cnn(), images(3)
    fg = FusionGrad(model, n=4, n_param=3, chunk_size=4)
    fg.attribute(x, 0, generator=gen(0))
    assert fg.last_evaluations == 3 * 4 * 3
    assert fg.last_model_calls == 3
    ng = NoiseGrad(model, n=6, chunk_size=4)
    ng.attribute(x, generator=gen(0))
    assert ng.last_evaluations == 18 and ng.last_model_calls == 3  # target forward + 2 passes


def test_bfloat16_autocast_agrees_with_float32():
    # bf16 keeps 8 bits of mantissa: the map moves by a few per cent, its direction barely
    model = small_cnn(seed=0)
    x = images(4)
    full = SmoothGrad(model, n=16).attribute(x, 3, generator=gen(0))
    half = SmoothGrad(model, n=16, autocast=torch.bfloat16).attribute(x, 3, generator=gen(0))
    assert half.dtype == torch.float32 and not torch.equal(half, full)  # it did run in bf16
    rel = float((half - full).norm() / full.norm())
    cos = torch.nn.functional.cosine_similarity(half.flatten(1), full.flatten(1))
    assert rel < 0.1 and float(cos.min()) > 0.99, (rel, cos)


AC = {"autocast": torch.bfloat16}


@pytest.mark.parametrize("make", [lambda m: NoiseGrad(m, n=4, **AC),
                                  lambda m: FusionGrad(m, n=2, n_param=2, **AC)])
def test_bfloat16_autocast_with_weight_noise_runs_the_grouped_layers(make):
    model, x = small_cnn(seed=0), images(4)
    half = make(model).attribute(x, 3, generator=gen(0))
    full = make(model).attribute(x, 3, generator=gen(0), autocast=None)
    assert half.dtype == torch.float32 and not torch.equal(half, full)
    assert float((half - full).norm() / full.norm()) < 0.1


def test_autocast_with_weight_noise_needs_a_readable_model():
    class Viewing(nn.Module):  # a view: mollify.grouped cannot read it, vmap would be needed
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(64, 3)

        def forward(self, x):
            return self.head(x.view(x.shape[0], -1))

    with pytest.raises(ValueError, match="autocast with weight noise needs the grouped"):
        NoiseGrad(Viewing(), n=2, **AC).attribute(images(2), 0)


def test_autocast_and_chunk_size_are_checked():
    model = tiny_cnn()
    with pytest.raises(TypeError, match="autocast"):
        SmoothGrad(model, autocast=torch.float64)
    with pytest.raises(ValueError, match="autocast with weight noise .* needs batching='grouped'"):
        NoiseGrad(model, autocast=torch.bfloat16, batching="vmap")
    with pytest.raises(ValueError, match="chunk_size"):
        SmoothGrad(model, chunk_size="big")
    with pytest.raises(ValueError, match="chunk_size"):
        SmoothGrad(model, chunk_size=0)


def test_auto_chunk_size_off_cuda_is_the_default():
    model, x = tiny_cnn(), images(3)
    auto = SmoothGrad(model, n=20, chunk_size="auto").attribute(x, 1, generator=gen(5))
    default = SmoothGrad(model, n=20).attribute(x, 1, generator=gen(5))
    assert torch.equal(auto, default)


def test_chunk_for_memory():
    from mollify.explain import chunk_for_memory

    gib, mib = 2**30, 2**20
    assert chunk_for_memory(10 * gib, 100 * mib, limit=10_000) == 51  # half of 10 GiB
    assert chunk_for_memory(10 * gib, 100 * mib, limit=8) == 8
    assert chunk_for_memory(mib, gib, limit=8) == 1  # never zero: one sample per pass
    assert chunk_for_memory(10 * gib, 100 * mib, limit=10_000, fraction=0.25) == 25
    with pytest.raises(ValueError, match="fraction"):
        chunk_for_memory(gib, mib, limit=8, fraction=0)
    with pytest.raises(ValueError, match="limit"):
        chunk_for_memory(gib, mib, limit=0)


@pytest.mark.parametrize("make", [
    lambda m: SmoothGrad(m, n=12, chunk_size=5),
    lambda m: SmoothGrad(m, n=12, sampler="antithetic", chunk_size=3),
    lambda m: MCGM(m, eps=0.1, n=16, sampler="rqmc", replicates=4),
    lambda m: NoiseGrad(m, n=6, chunk_size=4),
    lambda m: FusionGrad(m, n=4, n_param=3, chunk_size=5),
])
def test_attribute_is_estimates_mean_bit_for_bit(make):
    # attribute() skips the sums of squares behind the standard error; the mean must not move
    explainer, x = make(tiny_cnn()), images(3)
    est = explainer.estimate(x, 2, generator=gen(8))
    assert torch.equal(explainer.attribute(x, 2, generator=gen(8)), est.mean)
    assert bool(torch.isfinite(est.stderr).all())


@pytest.mark.parametrize(
    "make",
    [lambda m: SmoothGrad(m, n=8), lambda m: SmoothGrad(m, n=8, sampler="antithetic"),
     lambda m: MCGM(m, kernel="laplace", eps=0.1, n=8, sampler="rqmc", replicates=4),
     lambda m: VarGrad(m, n=6), lambda m: NoiseGrad(m, n=3),
     lambda m: FusionGrad(m, n=2, n_param=2)],
    ids=["smoothgrad", "antithetic", "rqmc", "vargrad", "noisegrad", "fusiongrad"],
)
def test_one_generator_per_example_equals_explaining_each_alone(make):
    model, x = small_cnn(width=4, seed=0), images(5)
    explainer = make(model)
    gens = [torch.Generator().manual_seed(50 + i) for i in range(5)]
    batched = explainer.estimate(x, [3, 1, 4, 1, 5], generator=gens)
    alone = [explainer.estimate(x[i : i + 1], t, generator=torch.Generator().manual_seed(50 + i))
             for i, t in enumerate([3, 1, 4, 1, 5])]
    assert torch.equal(batched.mean, torch.cat([a.mean for a in alone]))  # rows alike: bitwise
    assert torch.equal(batched.stderr.nan_to_num(-1.0),
                       torch.cat([a.stderr for a in alone]).nan_to_num(-1.0))
    shared = explainer.attribute(x, [3, 1, 4, 1, 5], generator=torch.Generator().manual_seed(50))
    assert not torch.equal(batched.mean[1:], shared[1:])  # a shared draw is another estimate


def test_generator_sequences_are_checked():
    sg = SmoothGrad(small_cnn(width=2, seed=0), n=2)
    x = images(3)
    with pytest.raises(ValueError, match=r"one per example \(3\), got a sequence of 2"):
        sg.attribute(x, generator=[torch.Generator(), torch.Generator()])
    with pytest.raises(TypeError, match=r"generator\[1\] must be a torch.Generator, got int"):
        sg.attribute(x, generator=[torch.Generator(), 7, torch.Generator()])
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got str"):
        sg.attribute(x, generator="seed")
