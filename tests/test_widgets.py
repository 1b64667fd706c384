"""mollify.widgets: the explorers build, react to every control, and reject bad arguments."""

from __future__ import annotations

import math

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from mollify.widgets import (
    ROUGH_FUNCTIONS,
    kernel_explorer,
    landscape_explorer,
    montecarlo_explorer,
    mollify_explorer,
    saliency_explorer,
)


def _sliders(box):
    return [c for c in box.controls.values() if hasattr(c, "continuous_update")]


def test_kernel_explorer_shows_the_gaussian_mollification_of_abs():
    box = kernel_explorer("|x|", "gaussian", 0.5)
    assert isinstance(box, ipywidgets.VBox)
    ax_f = box.figure.axes[1]
    x, fe = (np.asarray(a) for a in ax_f.lines[1].get_data())
    i0 = np.argmin(np.abs(x))
    assert fe[i0] == pytest.approx(0.5 * math.sqrt(2 / math.pi), rel=1e-6)  # f_eps(0) = eps E|u|
    # the kernel panel shows a density: it integrates to one
    t, k = (np.asarray(a) for a in box.figure.axes[0].lines[0].get_data())
    assert np.trapezoid(k, t) == pytest.approx(1.0, abs=1e-3)


def test_kernel_explorer_redraws_on_every_control():
    box = kernel_explorer()
    line = box.figure.axes[1].lines[1]
    seen = [np.asarray(line.get_ydata()).copy()]
    for name, value in (("kernel", "uniform"), ("eps", 0.1), ("function", "sawtooth")):
        box.controls[name].value = value
        seen.append(np.asarray(line.get_ydata()).copy())
        assert not np.allclose(seen[-1], seen[-2]), f"changing {name} did not redraw"
    assert set(ROUGH_FUNCTIONS) == set(box.controls["function"].options)


def test_mollify_explorer_derivative_of_relu_is_the_normal_cdf():
    box = mollify_explorer(torch.relu, kernel="gaussian", eps=0.3, breakpoints=[0.0])
    x, d = (np.asarray(a) for a in box.figure.axes[1].lines[1].get_data())
    inner = slice(5, -5)
    expected = 0.5 * (1 + np.vectorize(math.erf)(x[inner] / (0.3 * math.sqrt(2))))
    assert np.max(np.abs(d[inner] - expected)) < 1e-3
    box.controls["kernel"].value = "bump"
    assert not np.allclose(np.asarray(box.figure.axes[1].lines[1].get_ydata())[inner], expected)


def test_mollify_explorer_accepts_a_network():
    net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    net = net.double()
    box = mollify_explorer(net, eps=0.2)
    assert np.all(np.isfinite(np.asarray(box.figure.axes[0].lines[1].get_ydata())))


@pytest.mark.parametrize("sampler", ["mc", "antithetic", "qmc", "rqmc"])
def test_montecarlo_explorer_converges_to_the_truth(sampler):
    box = montecarlo_explorer(lambda u: u[:, 0] ** 2, truth=1.0, n=4096, sampler=sampler)
    ns, means = (np.asarray(a) for a in box.figure.axes[0].lines[0].get_data())
    assert list(ns) == [2**k for k in range(4, 13)]
    assert abs(means[-1] - 1.0) < 0.1


def test_montecarlo_explorer_reacts_to_controls():
    box = montecarlo_explorer(lambda u: u.sum(1), dim=3, truth=0.0, n=256)
    line = box.figure.axes[0].lines[0]
    before = np.asarray(line.get_ydata()).copy()
    box.controls["seed"].value = 5
    assert not np.allclose(before, np.asarray(line.get_ydata()))
    box.controls["n"].value = 1024
    assert len(line.get_xdata()) == 7


def test_sliders_update_only_on_release_and_no_pyplot_figures_leak():
    plt.close("all")
    boxes = [kernel_explorer(), mollify_explorer(torch.abs), montecarlo_explorer(torch.sin)]
    for box in boxes:
        assert _sliders(box) and all(not s.continuous_update for s in _sliders(box))
    assert plt.get_fignums() == []  # figures are not registered with pyplot: no double display


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: kernel_explorer("cubic"), ValueError, "function"),
        (lambda: kernel_explorer(kernel="box"), ValueError, "kernel"),
        (lambda: kernel_explorer(eps=0.0), ValueError, "eps"),
        (lambda: mollify_explorer("relu"), TypeError, "f must be callable"),
        (lambda: mollify_explorer(torch.relu, xlim=(1, -1)), ValueError, "xlim"),
        (lambda: montecarlo_explorer(torch.sin, n=100), ValueError, "power of two"),
        (lambda: montecarlo_explorer(torch.sin, sampler="sobol"), ValueError, "sampler"),
        (lambda: montecarlo_explorer(torch.sin, dim=0), ValueError, "dim"),
    ],
)
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- saliency and landscape explorers ------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cnn():
    from mollify.data import small_cnn

    return small_cnn(seed=0)


def test_saliency_explorer_shows_raw_and_smoothed_maps_and_restores_the_model(tiny_cnn):
    from mollify.explain import Gradient

    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    tiny_cnn.train()
    box = saliency_explorer(tiny_cnn, x, target=3, n=4)
    raw = box.figure.axes[1].images[0].get_array()
    expected = Gradient(tiny_cnn).attribute(x, target=3)[0, 0]
    assert np.allclose(raw, expected.numpy())
    before = np.asarray(box.figure.axes[2].images[0].get_array()).copy()
    for mode in ("parameter", "joint"):
        box.controls["mode"].value = mode
        after = np.asarray(box.figure.axes[2].images[0].get_array())
        assert not np.allclose(before, after), f"mode={mode} did not redraw"
    assert tiny_cnn.training  # the explainers restored the mode


def test_saliency_explorer_bad_input(tiny_cnn):
    with pytest.raises(ValueError, match="one image"):
        saliency_explorer(tiny_cnn, torch.rand(2, 1, 8, 8))
    with pytest.raises(TypeError, match="model"):
        saliency_explorer(lambda t: t, torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="mode"):
        saliency_explorer(tiny_cnn, torch.rand(1, 8, 8), mode="weights")


def test_landscape_explorer_smoothing_escapes_the_ripples():
    box = landscape_explorer(sigma=0.0, start=1.9, steps=150)
    gd, gs = (np.asarray(line.get_ydata()) for line in box.figure.axes[1].lines)
    assert np.array_equal(gd, gs)  # sigma = 0: GSmoothSGD is plain gradient descent
    assert abs(gd[-1]) > 1.5  # stuck in a ripple near the start
    box.controls["sigma"].value = 0.5
    gs = np.asarray(box.figure.axes[1].lines[1].get_ydata())
    assert abs(gs[-1]) < 0.5  # the smoothed descent reaches the central basin
    # the smoothed curve is the closed form  θ² + σ² + 1 − cos(10θ)·exp(−50σ²)
    theta, smooth = (np.asarray(a) for a in box.figure.axes[0].lines[1].get_data())
    closed = theta**2 + 0.25 + 1 - np.cos(10 * theta) * np.exp(-50 * 0.25)
    assert np.max(np.abs(smooth - closed)) < 1e-6


def test_landscape_explorer_bad_input():
    with pytest.raises(ValueError, match="sigma"):
        landscape_explorer(sigma=-0.1)
    with pytest.raises(ValueError, match="start"):
        landscape_explorer(start=10.0)
    with pytest.raises(TypeError, match="f must be callable"):
        landscape_explorer(f=3.0)
