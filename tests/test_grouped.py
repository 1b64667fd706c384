"""mollify.grouped: m weight samples evaluated as one grouped model, against torch.func.vmap."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from mollify.data import resnet, small_cnn
from mollify.explain import MCGM, FusionGrad, NoiseGrad, VarGrad
from mollify.grouped import grouped_forward, grouped_plan
from mollify.nn import SmoothedReLU


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _seeded(build):
    torch.manual_seed(0)
    model = build().eval()
    for module in model.modules():  # non-trivial running statistics
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


class _Residual(nn.Module):
    """A residual block written with functions and tensor methods, as user code often is."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.head = nn.Linear(2 * 36, 3)

    def forward(self, x):
        h = F.relu(self.bn(self.conv1(x)))
        h = torch.tanh(self.conv2(h)) + x
        h = 2 * h - h.sigmoid()
        return self.head(torch.flatten(h, 1))


class _View(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 2, 3), nn.Linear(2 * 36, 2)

    def forward(self, x):
        h = self.conv(x)
        return self.head(h.view(h.size(0), -1))


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale, self.head = nn.Parameter(torch.ones(4)), nn.Linear(4, 2)

    def forward(self, x):
        return self.head(x * self.scale)


class _Branchy(nn.Linear):
    def forward(self, x):
        return super().forward(x) if x.sum() > 0 else -super().forward(x)


MODELS = {
    "resnet": (lambda: resnet(width=4, seed=0), (3, 32, 32)),
    "residual with functions": (_Residual, (2, 6, 6)),
    "digits cnn": (lambda: small_cnn(width=4, seed=0), (1, 8, 8)),
    "conv groups stride dilation bn": (lambda: nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=2, dilation=2), nn.BatchNorm2d(4), nn.LeakyReLU(0.1),
        nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding="same", groups=2, bias=False), nn.Hardtanh(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(24, 3)), (2, 12, 12)),
    "conv1d avgpool bn1d": (lambda: nn.Sequential(
        nn.Conv1d(3, 5, 3), nn.BatchNorm1d(5), nn.GELU(), nn.AvgPool1d(2), nn.Flatten(),
        nn.Linear(5 * 4, 4), nn.LogSoftmax(dim=1)), (3, 10)),
    "conv3d": (lambda: nn.Sequential(
        nn.Conv3d(1, 2, 2), nn.Tanh(), nn.MaxPool3d(2), nn.Flatten(), nn.Linear(2 * 8, 2)),
        (1, 5, 5, 5)),
    "mlp layernorm bn1d dropout": (lambda: nn.Sequential(
        nn.Linear(6, 8), nn.LayerNorm(8), nn.SiLU(), nn.Dropout(0.5),
        nn.Sequential(nn.Linear(8, 8, bias=False), nn.BatchNorm1d(8), SmoothedReLU(0.3)),
        nn.Linear(8, 3), nn.Softmax(dim=-1)), (6,)),
    "gelu before max-pool": (lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.GELU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 9, 2)),
        (1, 8, 8)),
}


def _weights(model, m, seed=1):
    g = _gen(seed)
    return {name: p.detach() * (1 + 0.3 * torch.randn((m, *p.shape), generator=g))
            for name, p in model.named_parameters()}


def _vmapped(model, weights, inputs, batched):
    buffers = dict(model.named_buffers())
    return vmap(lambda w, x: functional_call(model, (w, buffers), (x,)),
                in_dims=(0, 0 if batched else None))(weights, inputs)


@pytest.mark.parametrize("name", MODELS)
def test_outputs_and_input_gradients_match_vmap(name):
    build, shape = MODELS[name]
    model, m, rows = _seeded(build), 5, 4
    weights = _weights(model, m)
    inputs = torch.randn((m, rows, *shape), generator=_gen(2))
    plan = grouped_plan(model, len(shape))
    assert plan, plan.reason
    out = grouped_forward(plan, weights, inputs)
    ref = _vmapped(model, weights, inputs, batched=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)

    leaf = inputs.clone().requires_grad_()
    probe = torch.randn(ref.shape, generator=_gen(3))  # a random linear functional of the outputs
    g = torch.autograd.grad((grouped_forward(plan, weights, leaf) * probe).sum(), leaf)[0]

    def score(w, x, p):
        return (functional_call(model, (w, dict(model.named_buffers())), (x,)) * p).sum()

    g_ref = vmap(grad(score, argnums=1))(weights, inputs, probe)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)


def test_shared_input_expanded_view():
    model = _seeded(MODELS["digits cnn"][0])
    weights, x = _weights(model, 3), torch.rand(2, 1, 8, 8, generator=_gen(4))
    out = grouped_forward(grouped_plan(model, 3), weights, x.expand(3, *x.shape))
    torch.testing.assert_close(out, _vmapped(model, weights, x, batched=False))


def test_pool_first_swaps_only_non_decreasing_activations():
    relu = small_cnn(width=2, seed=0)
    kinds = [type(m).__name__ for _, m in grouped_plan(relu, 3).layers]
    assert kinds[2:5] == ["Conv2d", "MaxPool2d", "ReLU"]  # ReLU, MaxPool evaluated pool-first
    gelu = _seeded(MODELS["gelu before max-pool"][0])
    kinds = [type(m).__name__ for _, m in grouped_plan(gelu, 3).layers]
    assert kinds[:3] == ["Conv2d", "GELU", "MaxPool2d"]  # GELU is not monotone: kept in order


def test_saturated_hardtanh_ties_keep_the_gradient():
    """Max-pool over a window where Hardtanh saturates: pool-first must give the same (zero)
    gradient there as activation-first."""
    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.Hardtanh(), nn.MaxPool2d(2), nn.Flatten())
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    x = torch.tensor([[[[2.0, 5.0], [-3.0, 0.5]]]])  # saturates at 2 and 5
    weights = {k: v.detach().unsqueeze(0) for k, v in model.named_parameters()}
    leaf = x.unsqueeze(0).requires_grad_()
    out = grouped_forward(grouped_plan(model, 3), weights, leaf)
    assert out.item() == 1.0
    (g,) = torch.autograd.grad(out.sum(), leaf)
    assert torch.equal(g, torch.zeros_like(g))


@pytest.mark.parametrize(
    ("model", "dims", "reason"),
    [
        (_View(), 3, "call_method size is not supported on a spatial input"),
        (_Scaled(), 1, "'scale' is used outside a supported layer (get_attr)"),
        (_Branchy(4, 2), 1, "torch.fx cannot trace the model (TraceError"),
        (nn.Module(), 3, "torch.fx cannot trace the model"),
        ("not a module", 3, "the model is a str, not an nn.Module"),
        (nn.Sequential(nn.Linear(4, 4), nn.PReLU()), 1, "'1' (PReLU) is not supported on a flat"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)), 1,
         "'0' (Conv2d) is not supported on a flat input"),
        (nn.Sequential(nn.Linear(4, 4)), 3, "'0' (Linear) is not supported on a spatial input"),
        (nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect"), nn.Flatten()), 3,
         "(Conv2d) is not supported"),
        (nn.Sequential(nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 2)), 1,
         "(BatchNorm1d) is not supported"),
        (nn.Sequential(nn.Conv2d(1, 1, 3)), 3, "not flat"),
        (nn.Sequential(nn.Flatten(0), nn.Linear(4, 2)), 1, "(Flatten) is not supported"),
        (nn.Sequential(nn.Conv2d(1, 1, 1), nn.Softmax(dim=1), nn.Flatten()), 3,
         "(Softmax) is not supported on a spatial input"),
    ],
)
def test_unsupported_models_say_why(model, dims, reason):
    plan = grouped_plan(model, dims)
    assert not plan and reason in plan.reason
    with pytest.raises(ValueError, match="cannot be evaluated grouped"):
        grouped_forward(plan, {}, torch.zeros(1, 1, 4))


def test_hooks_are_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    handle = model[1].register_forward_hook(lambda *a: None)
    assert grouped_plan(model, 1).reason == "'1' has hooks"
    handle.remove()
    assert grouped_plan(model, 1)


def test_a_module_used_twice_shares_its_weight_sample():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.Tanh(), shared)
    weights, x = _weights(model, 3), torch.randn(3, 2, 4, generator=_gen(1))
    out = grouped_forward(grouped_plan(model, 1), weights, x)
    torch.testing.assert_close(out, _vmapped(model, weights, x, batched=True))


def test_the_graph_is_retraced_when_the_model_changes():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    assert grouped_plan(model, 1)
    model[1] = nn.PReLU()
    assert "(PReLU) is not supported" in grouped_plan(model, 1).reason


CASES = [
    (NoiseGrad, {}),
    (NoiseGrad, {"noise": "additive", "eps_param": 0.05, "sampler": "antithetic", "n": 6}),
    (NoiseGrad, {"kernel": "laplace", "square": True, "n": 4}),
    (FusionGrad, {"n": 3, "n_param": 4}),
    (VarGrad, {"mode": "parameter", "n_param": 5}),
    (MCGM, {"mode": "joint", "kernel": "bump", "eps": 0.1, "n": 4, "n_param": 3, "abs": True}),
]


@pytest.mark.parametrize(("cls", "options"), CASES)
def test_explainers_grouped_equal_vmap(cls, options):
    model = small_cnn(width=4, seed=0)
    x = torch.rand(3, 1, 8, 8, generator=_gen(5))
    maps = {
        batching: cls(model, batching=batching, **options).attribute(
            x, target=[0, 1, 2], generator=_gen(6))
        for batching in ("grouped", "vmap", "auto")
    }
    assert torch.equal(maps["grouped"], maps["auto"])
    torch.testing.assert_close(maps["grouped"], maps["vmap"], rtol=1e-4, atol=1e-7)


def test_grouped_chunk_invariance_and_model_untouched():
    model = small_cnn(width=4, seed=0).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 1, 8, 8, generator=_gen(7))
    maps = [NoiseGrad(model, n=7, chunk_size=c).attribute(x, target=1, generator=_gen(8))
            for c in (1, 3, 7)]
    for other in maps[1:]:
        torch.testing.assert_close(other, maps[0], rtol=1e-5, atol=1e-8)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_batching_option_errors_and_fallback():
    model = _View()
    x = torch.rand(1, 1, 8, 8, generator=_gen(9))
    with pytest.raises(ValueError, match="batching='grouped' cannot evaluate this model: "
                                         "call_method size"):
        NoiseGrad(model, n=2, batching="grouped").attribute(x, target=0)
    with pytest.raises(ValueError, match="batching"):
        NoiseGrad(model, batching="loop")
    auto = NoiseGrad(model, n=2).attribute(x, target=0, generator=_gen(1))  # falls back to vmap
    vm = NoiseGrad(model, n=2, batching="vmap").attribute(x, target=0, generator=_gen(1))
    assert torch.equal(auto, vm)


def test_auto_batching_takes_the_grouped_path_where_it_can(monkeypatch):
    import mollify.explain

    calls = []
    forward = mollify.explain.grouped_forward
    monkeypatch.setattr(mollify.explain, "grouped_forward",
                        lambda *args: calls.append(1) or forward(*args))
    x = torch.rand(2, 1, 8, 8, generator=_gen(3))
    NoiseGrad(small_cnn(width=2, seed=0), n=3).attribute(x, target=0)
    assert len(calls) == 1  # one pass for all three weight samples
    NoiseGrad(_View(), n=3).attribute(x, target=0)  # not readable: vmap, no grouped call
    assert len(calls) == 1
