"""mollify.metrics: closed forms, invariances, faithfulness on a linear model, errors, modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mollify.metrics import (
    deletion_auc,
    insertion_auc,
    localization,
    max_sensitivity,
    perturbation_curve,
    randomization_consistency,
    randomize_parameters,
    sparseness,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _quantus_sparseness(a: np.ndarray) -> float:
    """Quantus 0.6's ``Sparseness.evaluate_instance`` (after its ``abs``), copied for reference."""
    a = np.array(np.reshape(np.abs(a), -1), dtype=np.float64)
    a += 0.0000001
    a = np.sort(a)
    n = a.shape[0]
    return float(np.sum((2 * np.arange(1, n + 1) - n - 1) * a) / (n * np.sum(a)))


def _linear_model(d: int = 12, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)  # test-only: the library never seeds the global RNG
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 2))


# --- sparseness ---------------------------------------------------------------------------------


def test_sparseness_closed_forms():
    n = 10
    one_hot = torch.zeros(3, n)
    one_hot[0, 0], one_hot[1, 5], one_hot[2, 9] = 1.0, -4.0, 0.5
    torch.testing.assert_close(sparseness(one_hot), torch.full((3,), 1 - 1 / n))
    torch.testing.assert_close(sparseness(torch.full((2, 1, 4, 4), -3.0)), torch.zeros(2))
    # two equal spikes among four features: G = (1 + 3)·1 / (4·2) = 0.5
    two_spikes = torch.tensor([[0.0, 2.0, 0.0, 2.0]])
    torch.testing.assert_close(sparseness(two_spikes), torch.tensor([0.5]))
    assert sparseness(torch.zeros(2, 5)).tolist() == [0.0, 0.0]  # no mass: defined as 0


def test_sparseness_invariances_and_range():
    a = torch.randn(6, 1, 5, 5, generator=_gen())
    g = sparseness(a)
    assert g.shape == (6,) and bool(((g >= 0) & (g <= 1 - 1 / 25)).all())
    perm = torch.randperm(25, generator=_gen(1))
    torch.testing.assert_close(sparseness(a.flatten(1)[:, perm]), g)
    torch.testing.assert_close(sparseness(-7.5 * a), g)
    torch.testing.assert_close(sparseness(a.double()), g.double())
    # sparser maps score higher
    spiky = a.clone()
    spiky[:, 0, 2, 2] = 100.0
    assert bool((sparseness(spiky) > g).all())


def test_sparseness_matches_quantus_formula():
    a = torch.rand(8, 3, 6, 6, generator=_gen(2)) - 0.3
    ours = sparseness(a).double()
    reference = torch.tensor([_quantus_sparseness(row) for row in a.numpy()], dtype=torch.float64)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)  # Quantus adds 1e-7 per value


def test_sparseness_accepts_integer_maps():
    assert sparseness(torch.tensor([[0, 0, 3]])).tolist() == pytest.approx([2 / 3])


# --- deletion / insertion -----------------------------------------------------------------------


def test_exact_attribution_beats_random_orders_on_a_linear_model():
    """For a 2-class linear model, p(target) is monotone in sum_j (w_t - w_o)_j x_j, so removing
    the largest terms first gives the pointwise lowest deletion curve (highest insertion curve)
    of all orders: gradient × input of the logit difference is the optimal explanation."""
    d, batch = 12, 16
    model = _linear_model(d)
    x = torch.randn(batch, d, generator=_gen(3))
    target = torch.randint(0, 2, (batch,), generator=_gen(4))
    w = model[1].weight.detach()
    exact = (w[target] - w[1 - target]) * x  # gradient × input of the log-odds
    kwargs = {"steps": d}
    best_del = deletion_auc(model, x, exact, target, **kwargs)
    best_ins = insertion_auc(model, x, exact, target, **kwargs)
    for seed in range(5):
        noise = torch.randn(batch, d, generator=_gen(10 + seed))
        assert bool((best_del <= deletion_auc(model, x, noise, target, **kwargs) + 1e-6).all())
        assert bool((best_ins >= insertion_auc(model, x, noise, target, **kwargs) - 1e-6).all())
    reverse = -exact
    assert bool((best_del < deletion_auc(model, x, reverse, target, **kwargs)).all())
    assert bool((best_ins > insertion_auc(model, x, reverse, target, **kwargs)).all())


def test_curve_endpoints_fractions_and_auc_range():
    model = nn.Sequential(nn.Flatten(), nn.Linear(27, 3))
    x = torch.rand(4, 3, 3, 3, generator=_gen(5))
    a = torch.randn(4, 3, 3, 3, generator=_gen(6))
    baseline = torch.rand(1, 3, 3, 3, generator=_gen(7))
    with torch.no_grad():
        p_x = torch.softmax(model(x), 1)[:, 2]
        p_base = torch.softmax(model(baseline.expand_as(x)), 1)[:, 2]
    fr, dele = perturbation_curve(model, x, a, 2, steps=5, baseline=baseline)
    _, ins = perturbation_curve(model, x, a, 2, mode="insertion", steps=5, baseline=baseline)
    assert fr.shape == (6,) and dele.shape == ins.shape == (4, 6)
    # m_k = floor(k·27/5) features changed: 0, 5, 10, 16, 21, 27
    torch.testing.assert_close(fr, torch.tensor([0, 5, 10, 16, 21, 27]) / 27)
    torch.testing.assert_close(dele[:, 0], p_x)
    torch.testing.assert_close(dele[:, -1], p_base)
    torch.testing.assert_close(ins[:, 0], p_base)
    torch.testing.assert_close(ins[:, -1], p_x)
    auc = deletion_auc(model, x, a, 2, steps=5, baseline=baseline)
    torch.testing.assert_close(auc, torch.trapezoid(dele, fr, dim=1))
    assert bool(((auc >= 0) & (auc <= 1)).all())


def test_deleting_one_feature_at_a_time_matches_a_loop():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(2, 6, generator=_gen(8))
    a = torch.randn(2, 6, generator=_gen(9))
    _, curve = perturbation_curve(model, x, a, torch.tensor([0, 2]), steps=6)
    with torch.no_grad():
        for b, t in enumerate([0, 2]):
            order = torch.argsort(a[b], descending=True)
            z = x[b].clone()
            expected = [torch.softmax(model(z[None]), 1)[0, t]]
            for j in order:
                z[j] = 0.0
                expected.append(torch.softmax(model(z[None]), 1)[0, t])
            torch.testing.assert_close(curve[b], torch.stack(expected))


def test_ties_are_broken_by_position_and_results_do_not_depend_on_batch_size():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 5))
    x = torch.randn(3, 1, 4, 4, generator=_gen(11))
    flat = torch.zeros(3, 1, 4, 4)
    by_index = -torch.arange(16.0).view(1, 1, 4, 4).expand(3, 1, 4, 4)
    for f in (deletion_auc, insertion_auc):
        torch.testing.assert_close(
            f(model, x, flat, 1, steps=16), f(model, x, by_index, 1, steps=16)
        )
        torch.testing.assert_close(
            f(model, x, by_index, 1, steps=7, batch_size=1),
            f(model, x, by_index, 1, steps=7, batch_size=1000),
        )


def test_target_forms_agree():
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(5, 8, generator=_gen(12))
    a = torch.randn(5, 8, generator=_gen(13))
    predicted = model(x).argmax(1)
    none = deletion_auc(model, x, a)
    torch.testing.assert_close(none, deletion_auc(model, x, a, predicted))
    torch.testing.assert_close(
        deletion_auc(model, x, a, 1), deletion_auc(model, x, a, torch.ones(5, dtype=torch.long))
    )
    torch.testing.assert_close(
        deletion_auc(model, x, a, 1), deletion_auc(model, x, a, torch.tensor(1))
    )


def test_shared_channel_attributions_remove_whole_pixels():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    x = torch.randn(2, 3, 4, 4, generator=_gen(14))
    pixel_map = torch.randn(2, 1, 4, 4, generator=_gen(15))
    fr, curve = perturbation_curve(model, x, pixel_map, 0, steps=16)
    _, full = perturbation_curve(model, x, pixel_map.expand_as(x) + 0 * x, 0, steps=48)
    torch.testing.assert_close(fr, torch.arange(17) / 16)
    # removing pixel by pixel = removing all three channels of each pixel at once
    torch.testing.assert_close(curve, full[:, ::3])


def test_metrics_restore_each_submodules_mode_and_leave_no_gradients():
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    model[3].eval()  # a mixed state must come back as it was
    x = torch.randn(4, 8, generator=_gen(16))
    a = torch.randn(4, 8, generator=_gen(17))
    first = deletion_auc(model, x, a, 0)
    second = deletion_auc(model, x, a, 0)
    torch.testing.assert_close(first, second)  # dropout was off: eval mode during the call
    assert [m.training for m in model] == [True, True, True, False]
    assert all(p.grad is None for p in model.parameters())
    assert not first.requires_grad

    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    boom = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        insertion_auc(boom, x, a, 0)
    assert boom.training


def test_plain_callables_work_as_models():
    linear = _linear_model(4)
    x = torch.randn(3, 4, generator=_gen(18))
    a = torch.randn(3, 4, generator=_gen(19))
    torch.testing.assert_close(
        deletion_auc(lambda z: linear(z), x, a, 0), deletion_auc(linear, x, a, 0)
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"attributions": torch.zeros(3, 5)}, ValueError, "attributions must have the shape"),
        ({"attributions": torch.full((3, 4), torch.nan)}, ValueError, "attributions must be fin"),
        ({"inputs": torch.full((3, 4), torch.inf)}, ValueError, "inputs must be finite"),
        ({"inputs": torch.ones(3, 4, dtype=torch.long)}, TypeError, "inputs must be a floating"),
        ({"inputs": torch.zeros(3)}, ValueError, "inputs must be shaped"),
        ({"inputs": np.zeros((3, 4))}, TypeError, "inputs must be a torch.Tensor"),
        ({"target": 2}, ValueError, "target must be < the number of classes 2"),
        ({"target": -1}, ValueError, "target"),
        ({"target": 0.5}, TypeError, "target"),
        ({"target": torch.zeros(2, dtype=torch.long)}, ValueError, "target must be an int or"),
        ({"target": torch.zeros(3)}, TypeError, "target must hold integer"),
        ({"steps": 0}, ValueError, "steps must be >= 1"),
        ({"steps": 2.5}, TypeError, "steps"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"baseline": float("nan")}, ValueError, "baseline"),
        ({"baseline": torch.zeros(5)}, ValueError, "baseline must broadcast"),
        ({"baseline": "zero"}, TypeError, "baseline"),
        ({"model": "net"}, TypeError, "model"),
        ({"model": lambda z: z.sum(1)}, ValueError, "model must map a batch"),
    ],
)
def test_faithfulness_rejects_bad_arguments(kwargs, error, match):
    args = {
        "model": _linear_model(4),
        "inputs": torch.ones(3, 4),
        "attributions": torch.ones(3, 4),
        "target": 0,
    } | kwargs
    positional = [args.pop(k) for k in ("model", "inputs", "attributions", "target")]
    for f in (deletion_auc, insertion_auc):
        with pytest.raises(error, match=match):
            f(*positional, **args)


def test_perturbation_curve_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        perturbation_curve(_linear_model(4), torch.ones(3, 4), torch.ones(3, 4), 0, mode="both")


# --- max-sensitivity ----------------------------------------------------------------------------


def test_max_sensitivity_of_constant_and_input_independent_explanations_is_zero():
    x = torch.rand(5, 1, 4, 4, generator=_gen(20))
    s = max_sensitivity(lambda z, t: torch.ones_like(z), x, 0, generator=_gen(0))
    assert s.shape == (5,) and s.tolist() == [0.0] * 5
    model = _linear_model(16)

    def gradient(z, t):
        z = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model(z)[:, t].sum(), z)
        return g

    # the gradient of a linear model does not depend on x: sensitivity 0
    torch.testing.assert_close(max_sensitivity(gradient, x, 1, generator=_gen(0)), torch.zeros(5))


def test_max_sensitivity_is_positive_bounded_and_reproducible():
    x = torch.rand(4, 10, generator=_gen(21)) + 1.0
    identity = lambda z, t: z  # noqa: E731 - e(x) = x: ‖δ‖₂ / ‖x‖₂ ≤ r √d / ‖x‖₂
    s = max_sensitivity(identity, x, radius=0.05, n=20, generator=_gen(1))
    assert bool((s > 0).all())
    assert bool((s <= 0.05 * 10**0.5 / x.norm(dim=1) + 1e-6).all())
    again = max_sensitivity(identity, x, radius=0.05, n=20, generator=_gen(1))
    torch.testing.assert_close(s, again)
    assert not torch.equal(s, max_sensitivity(identity, x, radius=0.05, n=20, generator=_gen(2)))
    # the same draws in a ball ten times larger give ten times the value
    big = max_sensitivity(identity, x, radius=0.5, n=20, generator=_gen(1))
    torch.testing.assert_close(big, 10 * s)
    raw = max_sensitivity(identity, x, radius=0.05, n=20, normalize=False, generator=_gen(1))
    torch.testing.assert_close(raw, s * x.norm(dim=1))


def test_max_sensitivity_batches_and_targets():
    calls = []

    def explain(z, t):
        calls.append((z.shape[0], t if not isinstance(t, torch.Tensor) else t.tolist()))
        return z**2

    x = torch.rand(3, 2, generator=_gen(22))
    target = torch.tensor([0, 1, 2])
    whole = max_sensitivity(explain, x, target, n=4, generator=_gen(3))
    assert calls == [(3, [0, 1, 2]), (12, [0, 1, 2] * 4)]
    calls.clear()
    chunked = max_sensitivity(explain, x, target, n=4, batch_size=5, generator=_gen(3))
    assert [c[0] for c in calls] == [3, 5, 5, 2]
    torch.testing.assert_close(whole, chunked)
    calls.clear()
    max_sensitivity(explain, x, 7, n=2, generator=_gen(3))
    assert calls == [(3, 7), (6, 7)]


def test_max_sensitivity_zero_explanation_edge_case():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    s = max_sensitivity(lambda z, t: z.clamp_min(0) * (z.sum(1, keepdim=True) > 1), x,
                        radius=0.1, generator=_gen(4))
    # first example: e(x) = 0 and e(x + δ) = 0 → 0; second: finite and positive
    assert s[0] == 0 and 0 < s[1] < 1


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"explain_fn": "saliency"}, TypeError, "explain_fn must be callable"),
        ({"explain_fn": lambda z, t: z[:, :1]}, ValueError, "explain_fn must return"),
        ({"explain_fn": lambda z, t: z * torch.nan}, ValueError, "NaN or inf"),
        ({"inputs": torch.tensor([[torch.nan, 1.0]])}, ValueError, "inputs must be finite"),
        ({"radius": 0}, ValueError, "radius must be > 0"),
        ({"radius": "small"}, TypeError, "radius"),
        ({"n": 0}, ValueError, "n must be >= 1"),
        ({"normalize": 1}, TypeError, "normalize"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"generator": 0}, TypeError, "generator"),
        ({"target": torch.zeros(5, dtype=torch.long)}, ValueError, "target"),
    ],
)
def test_max_sensitivity_rejects_bad_arguments(kwargs, error, match):
    args = {"explain_fn": lambda z, t: z, "inputs": torch.ones(2, 2), "target": None} | kwargs
    fn, inputs, target = args.pop("explain_fn"), args.pop("inputs"), args.pop("target")
    with pytest.raises(error, match=match):
        max_sensitivity(fn, inputs, target, **args)


# --- randomization ------------------------------------------------------------------------------


def test_spearman_closed_forms():
    a = torch.randn(4, 2, 3, 3, generator=_gen(23))
    ones = torch.ones(4)
    torch.testing.assert_close(randomization_consistency(a, torch.exp(3 * a) + 1), ones)
    torch.testing.assert_close(randomization_consistency(a, -a**3), -ones)
    torch.testing.assert_close(randomization_consistency(a, -a, abs=True), ones)
    flat = a.flatten(1)
    reversed_ = flat.flip(1)
    torch.testing.assert_close(
        randomization_consistency(flat, reversed_), randomization_consistency(reversed_, flat)
    )
    r = randomization_consistency(a, torch.randn(4, 2, 3, 3, generator=_gen(24)))
    assert r.shape == (4,) and bool(((r >= -1) & (r <= 1)).all())


def test_spearman_with_ties_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    a = torch.randint(0, 5, (6, 40), generator=_gen(25)).float()  # many ties
    b = (a + torch.randint(0, 3, (6, 40), generator=_gen(26))).double()
    ours = randomization_consistency(a, b)
    expected = [stats.spearmanr(u, v).statistic for u, v in zip(a.numpy(), b.numpy())]
    torch.testing.assert_close(ours, torch.tensor(expected), rtol=1e-10, atol=1e-12)
    rank = stats.rankdata(a[0].numpy())
    from mollify.metrics import _average_ranks

    torch.testing.assert_close(_average_ranks(a[:1].double())[0], torch.from_numpy(rank))


def test_spearman_of_a_constant_map_is_nan():
    r = randomization_consistency(torch.zeros(2, 5), torch.randn(2, 5, generator=_gen(27)))
    assert bool(torch.isnan(r).all())


def test_spearman_rejects_bad_arguments():
    with pytest.raises(ValueError, match="same shape"):
        randomization_consistency(torch.ones(2, 4), torch.ones(2, 5))
    with pytest.raises(ValueError, match="explanations_b must be finite"):
        randomization_consistency(torch.ones(2, 4), torch.full((2, 4), torch.inf))
    with pytest.raises(TypeError, match="explanations_a"):
        randomization_consistency([[1.0, 2.0]], torch.ones(1, 2))
    with pytest.raises(TypeError, match="abs"):
        randomization_consistency(torch.ones(1, 2), torch.ones(1, 2), abs="yes")


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)  # test-only
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def test_randomize_parameters_layers_and_reproducibility():
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    top = randomize_parameters(model, layers=1, generator=_gen(0))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original kept
    same = lambda m, i: torch.equal(m[i].weight, model[i].weight)  # noqa: E731
    assert same(top, 0) and same(top, 2) and not same(top, 4)
    two = randomize_parameters(model, layers=2, generator=_gen(0))
    assert same(two, 0) and not same(two, 2) and not same(two, 4)
    full = randomize_parameters(model, generator=_gen(0))
    assert not any(same(full, i) for i in (0, 2, 4))
    named = randomize_parameters(model, layers=["2"], generator=_gen(0))
    assert same(named, 0) and not same(named, 2) and same(named, 4)
    again = randomize_parameters(model, generator=_gen(0))
    for p, q in zip(full.parameters(), again.parameters()):
        assert torch.equal(p, q)
    other = randomize_parameters(model, generator=_gen(1))
    assert not torch.equal(other[0].weight, full[0].weight)
    # re-initialized like a fresh nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert full[0].weight.abs().max() <= 6**-0.5


def test_randomize_parameters_keeps_modes_and_permutes_modules_without_reset():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.arange(10.0))

        def forward(self, x):
            return x * self.gain

    model = nn.Sequential(Scale(), nn.Linear(10, 2)).eval()
    model[1].weight.requires_grad_(False)
    out = randomize_parameters(model, generator=_gen(5))
    assert not out.training and not out[1].weight.requires_grad
    assert sorted(out[0].gain.tolist()) == list(range(10))
    assert not torch.equal(out[0].gain, model[0].gain)


def test_randomized_model_changes_the_gradient_explanation():
    """The sanity check end to end: gradients of a model vs. of its randomized copy."""
    model = _mlp()
    x = torch.randn(8, 6, generator=_gen(28))

    def gradient(net):
        z = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(z)[:, 0].sum(), z)
        return g

    g = gradient(model)
    torch.testing.assert_close(randomization_consistency(g, gradient(model)), torch.ones(8))
    rho = randomization_consistency(g, gradient(randomize_parameters(model, generator=_gen(0))))
    assert rho.mean() < 0.9


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"layers": 0}, ValueError, "layers must be >= 1"),
        ({"layers": 4}, ValueError, "layers must be <= the number of layers 3"),
        ({"layers": ["1"]}, ValueError, "layers must name modules with parameters"),
        ({"layers": "nope"}, ValueError, "layers must name"),
        ({"layers": 1.5}, TypeError, "layers"),
        ({"layers": True}, TypeError, "layers"),
        ({"generator": 3}, TypeError, "generator"),
    ],
)
def test_randomize_parameters_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        randomize_parameters(_mlp(), **kwargs)


def test_randomize_parameters_needs_a_module_with_parameters():
    with pytest.raises(TypeError, match="model"):
        randomize_parameters(lambda x: x)
    with pytest.raises(ValueError, match="no parameters"):
        randomize_parameters(nn.ReLU())


# --- localization -------------------------------------------------------------------------------


def test_localization_closed_forms():
    mask = torch.zeros(3, 1, 4, 4, dtype=torch.bool)
    mask[:, :, 1:3, 1:3] = True
    inside = torch.where(mask, torch.rand(3, 1, 4, 4, generator=_gen(29)) + 0.1, torch.zeros(()))
    torch.testing.assert_close(localization(inside, mask), torch.ones(3))
    torch.testing.assert_close(localization(inside, ~mask), torch.zeros(3))
    torch.testing.assert_close(localization(torch.ones(3, 1, 4, 4), mask), torch.full((3,), 0.25))
    # negative evidence outside the mask is ignored by default, counted in absolute mode
    signed = inside - 3.0 * (~mask).float()
    torch.testing.assert_close(localization(signed, mask), torch.ones(3))
    assert bool((localization(signed, mask, mode="absolute") < 0.2).all())
    assert localization(-inside, mask).tolist() == [0.0] * 3  # no positive mass: defined as 0


def test_localization_with_a_shared_channel_mask():
    a = torch.rand(2, 3, 4, 4, generator=_gen(30))
    mask = torch.rand(2, 1, 4, 4, generator=_gen(31)) > 0.5
    torch.testing.assert_close(localization(a, mask), localization(a, mask.expand_as(a)))


def test_localization_on_the_shapes_data_set():
    from mollify.data import shapes

    x, _, mask = shapes(20)
    assert localization(mask.float(), mask).tolist() == [1.0] * 20
    uniform = localization(torch.ones_like(x), mask)
    torch.testing.assert_close(uniform, mask.flatten(1).float().mean(1))


@pytest.mark.parametrize(
    "attributions, mask, kwargs, error, match",
    [
        (torch.ones(2, 4), torch.ones(2, 4), {}, TypeError, "mask must be a bool tensor"),
        (torch.ones(2, 4), [[True] * 4] * 2, {}, TypeError, "mask must be a bool tensor"),
        (torch.ones(2, 4), torch.ones(2, 5, dtype=torch.bool), {}, ValueError, "mask must have"),
        (torch.ones(2, 4), torch.ones(3, 4, dtype=torch.bool), {}, ValueError, "mask must have"),
        (torch.full((2, 4), torch.nan), torch.ones(2, 4, dtype=torch.bool), {}, ValueError,
         "attributions must be finite"),
        (torch.ones(2, 4), torch.ones(2, 4, dtype=torch.bool), {"mode": "negative"}, ValueError,
         "mode"),
    ],
)
def test_localization_rejects_bad_arguments(attributions, mask, kwargs, error, match):
    with pytest.raises(error, match=match):
        localization(attributions, mask, **kwargs)


# --- shapes of every metric's output ------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
def test_every_metric_returns_one_value_per_example(batch):
    model = nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 4))
    x = torch.rand(batch, 2, 3, 3, generator=_gen(32))
    a = torch.randn(batch, 2, 3, 3, generator=_gen(33))
    mask = a > 0
    outs = [
        sparseness(a),
        deletion_auc(model, x, a, 0, steps=4),
        insertion_auc(model, x, a, torch.zeros(batch, dtype=torch.long), steps=4),
        max_sensitivity(lambda z, t: z**2, x, 0, n=3, generator=_gen(0)),
        randomization_consistency(a, a + x),
        localization(a, mask),
    ]
    for out in outs:
        assert out.shape == (batch,) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_metrics_follow_a_float64_dtype():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3)).double()
    x = torch.rand(2, 6, dtype=torch.float64, generator=_gen(34))
    a = torch.randn(2, 6, dtype=torch.float64, generator=_gen(35))
    outs = [
        sparseness(a),
        deletion_auc(model, x, a, 1),
        insertion_auc(model, x, a, 1),
        max_sensitivity(lambda z, t: z**2, x, 1, generator=_gen(0)),
        randomization_consistency(a, a**3),
        localization(a, a > 0),
    ]
    assert all(out.dtype == torch.float64 for out in outs)
