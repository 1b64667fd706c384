"""CPU/CUDA agreement of every explainer, estimator and optimizer, and no silent CPU fallback.

Marked ``gpu``: skipped where CUDA is absent. Random streams differ between devices (CUDA's
Philox generator is not the CPU's Mersenne twister), so results that use noise are compared
statistically, within a few standard errors of the difference; noise-free or deterministic ones
(Sobol points, σ = 0) are compared to float32 rounding.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

import mollify
from mollify.data import resnet, small_cnn

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]

CUDA = torch.device("cuda")


def gen(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


class CPUWork(TorchFunctionMode):
    """Records every torch function that returns a CPU tensor with more than one element."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        for o in outs:
            if isinstance(o, torch.Tensor) and o.device.type == "cpu" and o.numel() > 1:
                self.calls.append(getattr(func, "__name__", str(func)))
        return out


def agree_within(a_est, b_est, k: float = 5.0) -> None:
    diff = (a_est.mean.cpu().double() - b_est.mean.cpu().double()).abs()
    se = (a_est.stderr.cpu().double() ** 2 + b_est.stderr.cpu().double() ** 2).sqrt()
    assert bool((diff <= k * se + 1e-6).all()), float((diff / (se + 1e-12)).max())


def explainers(model):
    return {
        "SmoothGrad": mollify.SmoothGrad(model, n=256),
        "SmoothGrad-antithetic": mollify.SmoothGrad(model, n=256, sampler="antithetic"),
        "NoiseGrad": mollify.NoiseGrad(model, n=256),
        "FusionGrad": mollify.FusionGrad(model, n=16, n_param=32),
        "MCGM-laplace": mollify.MCGM(model, kernel="laplace", eps_rel=0.1, n=256),
    }


@pytest.mark.parametrize("name", list(explainers(small_cnn(seed=0))))
def test_every_explainer_agrees_between_cpu_and_cuda(name):
    model = small_cnn(seed=0).double()
    x = torch.rand(3, 1, 8, 8, generator=gen(0), dtype=torch.float64)
    cpu = explainers(model)[name].estimate(x, target=2, generator=gen(1))
    model_gpu = small_cnn(seed=0).double().to(CUDA)
    gpu = explainers(model_gpu)[name].estimate(x.to(CUDA), target=2, generator=gen(1, CUDA))
    assert gpu.mean.device.type == "cuda" and gpu.stderr.device.type == "cuda"
    agree_within(cpu, gpu)


def test_deterministic_paths_agree_to_rounding():
    model = small_cnn(seed=0)
    x = torch.rand(4, 1, 8, 8, generator=gen(0))
    model_gpu = small_cnn(seed=0).to(CUDA)
    for make in (lambda m: mollify.Gradient(m), lambda m: mollify.SmoothGrad(m, n=64, sampler="qmc")):
        a = make(model).attribute(x, target=[0, 1, 2, 3])
        b = make(model_gpu).attribute(x.to(CUDA), target=[0, 1, 2, 3])
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("estimator", mollify.ESTIMATORS)
def test_every_estimator_agrees_between_cpu_and_cuda(estimator):
    w = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)

    def f(x):
        return torch.relu(x @ w.to(x.device) + 0.3)

    x = torch.tensor([[0.1, 0.2, -0.1]], dtype=torch.float64)
    cpu = mollify.smoothed_grad(f, x, "gaussian", 0.5, 4096, estimator=estimator,
                                generator=gen(0))
    gpu = mollify.smoothed_grad(f, x.to(CUDA), "gaussian", 0.5, 4096, estimator=estimator,
                                generator=gen(0, CUDA))
    assert gpu.mean.device.type == "cuda"
    agree_within(cpu, gpu)


@pytest.mark.parametrize("optimizer", [mollify.GSmoothSGD, mollify.GSmoothAdam])
def test_optimizers_match_torch_at_sigma_zero_and_stay_on_cuda(optimizer):
    torch.manual_seed(0)
    x, y = torch.randn(64, 5, device=CUDA), torch.randn(64, 1, device=CUDA)
    plain_cls = torch.optim.SGD if optimizer is mollify.GSmoothSGD else torch.optim.Adam
    nets = [torch.nn.Linear(5, 1).to(CUDA) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [optimizer(nets[0].parameters(), lr=0.01, sigma=0.0, n_samples=2),
            plain_cls(nets[1].parameters(), lr=0.01)]
    for _ in range(5):
        for net, opt in zip(nets, opts):
            def closure(net=net, opt=opt):
                opt.zero_grad()
                loss = torch.nn.functional.mse_loss(net(x), y)
                loss.backward()
                return loss
            opt.step(closure)
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        assert p.device.type == "cuda"
        torch.testing.assert_close(p, q)
    # with noise, the step runs on CUDA with a CUDA generator and no CPU tensor work
    net = torch.nn.Linear(5, 1).to(CUDA)
    opt = optimizer(net.parameters(), lr=0.01, sigma=0.1, n_samples=4, generator=gen(0, CUDA))

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        loss.backward()
        return loss

    with CPUWork() as mode:
        opt.step(closure)
    assert not mode.calls, mode.calls


@pytest.mark.parametrize("make", [
    lambda m: mollify.SmoothGrad(m, n=32),
    lambda m: mollify.SmoothGrad(m, n=32, sampler="antithetic"),
    lambda m: mollify.NoiseGrad(m, n=8),
    lambda m: mollify.FusionGrad(m, n=4, n_param=4),
])
def test_no_step_falls_back_to_the_cpu(make):
    model = resnet(seed=0).to(CUDA)
    x = torch.rand(2, 3, 64, 64, device=CUDA)
    explainer = make(model)
    with CPUWork() as mode:
        out = explainer.attribute(x, target=1, generator=gen(0, CUDA))
    assert out.device.type == "cuda"
    assert not mode.calls, f"CPU tensor work during a CUDA attribution: {mode.calls}"


def test_auto_chunk_fits_memory_and_keeps_the_result():
    model = resnet(seed=0).to(CUDA)
    x = torch.rand(4, 3, 64, 64, device=CUDA)
    auto = mollify.SmoothGrad(model, n=64).attribute(x, target=0, generator=gen(3, CUDA))
    fixed = mollify.SmoothGrad(model, n=64, chunk_size=5).attribute(
        x, target=0, generator=gen(3, CUDA))
    torch.testing.assert_close(auto, fixed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("explainer", "model", "shape"),
    [(lambda m, **o: mollify.SmoothGrad(m, n=32, **o), resnet, (4, 3, 64, 64)),
     (lambda m, **o: mollify.NoiseGrad(m, n=8, **o), small_cnn, (8, 1, 8, 8))],  # grouped
    ids=["smoothgrad-resnet", "noisegrad-cnn"],
)
def test_fp16_autocast_on_cuda_is_close_to_float32(explainer, model, shape):
    net = model(seed=0).to(CUDA)
    x = torch.rand(shape, device=CUDA)
    full = explainer(net).attribute(x, target=0, generator=gen(3, CUDA))
    half = explainer(net, autocast=torch.float16).attribute(x, target=0, generator=gen(3, CUDA))
    assert half.dtype == torch.float32
    assert float((half - full).norm() / full.norm()) < 0.05
