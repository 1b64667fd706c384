"""Interactive explorers for the book: move a kernel, its width ε or the sample count n and watch.

Each explorer returns an ``ipywidgets.VBox`` (controls above a plot); make it the last expression
of a notebook cell. They work on ipywidgets 7.7 (what Colab ships) and 8: sliders use
``continuous_update=False`` (one redraw when the slider is released), the matplotlib figure is
built once and its artists are updated in place, then shown again in an ``Output`` widget — this
needs no interactive matplotlib backend, so it runs in Colab, JupyterLab and VS Code alike. The
static HTML of the book shows an explorer's first state only; chapters show a static figure too.

Every explorer exposes ``.figure`` (the matplotlib ``Figure``), ``.controls`` (a dict of the
control widgets by name) and ``.refresh()`` (recompute and redraw), which tests and curious
readers can use directly.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure

from mollify._validation import check_choice, check_int, check_real
from mollify.kernels import KERNELS, kernel as get_kernel
from mollify.mollifier import mollify
from mollify.montecarlo import SAMPLERS, integrate

__all__ = ["ROUGH_FUNCTIONS", "kernel_explorer", "mollify_explorer", "montecarlo_explorer"]

Function = Callable[[torch.Tensor], torch.Tensor]
_NODES = 1024  # quadrature nodes per mollification: ample for a plot, fast enough to feel live

#: Rough test functions of the book: a kink, a jump, a cusp, a sawtooth.
ROUGH_FUNCTIONS: Mapping[str, Function] = {
    "|x|": torch.abs,
    "relu(x)": torch.relu,
    "step H(x)": lambda x: (x > 0).to(x.dtype),
    "sign(x)": torch.sign,
    "sqrt|x|": lambda x: x.abs().sqrt(),
    "sawtooth": lambda x: x - torch.floor(x) - 0.5,
}


def _show(out: widgets.Output, fig: Figure) -> None:
    """Show ``fig`` as a PNG in ``out``, replacing what was there (only inside a Jupyter kernel).

    Rendering to PNG ourselves works whatever matplotlib backend the frontend has (or none).
    """
    from IPython import get_ipython
    from IPython.display import Image, clear_output, display

    if getattr(get_ipython(), "kernel", None) is None:  # a script or a test: nothing to show
        return
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    with out:
        clear_output(wait=True)
        display(Image(data=png.getvalue(), format="png"))


def _explorer(controls: dict[str, widgets.Widget], fig: Figure, redraw: Callable[[], None]):
    """Wire ``controls`` to ``redraw`` and return the VBox (controls, then the figure)."""
    out = widgets.Output()

    def refresh(_change: object = None) -> None:
        redraw()
        _show(out, fig)

    for control in controls.values():
        control.observe(refresh, names="value")
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    box.figure, box.controls, box.refresh = fig, controls, refresh
    refresh()
    return box


def _eps_slider(eps: float, description: str = "ε") -> widgets.FloatLogSlider:
    return widgets.FloatLogSlider(
        value=eps, base=10, min=-2, max=math.log10(2.0), step=0.05, description=description,
        continuous_update=False, readout_format=".3f",
    )


def _kernel_dropdown(name: str) -> widgets.Dropdown:
    return widgets.Dropdown(options=list(KERNELS), value=get_kernel(name).name,
                            description="kernel")


def _grid(xlim: tuple[float, float], points: int = 801) -> torch.Tensor:
    lo, hi = (check_real("xlim[0]", xlim[0]), check_real("xlim[1]", xlim[1]))
    if not lo < hi:
        raise ValueError(f"xlim must be an increasing pair, got {xlim}")
    return torch.linspace(lo, hi, points, dtype=torch.float64)


def kernel_explorer(
    function: str = "|x|", kernel: str = "gaussian", eps: float = 0.5,
    *, xlim: tuple[float, float] = (-3.0, 3.0),
) -> widgets.VBox:
    """Pick a kernel η, a width ε and a rough function f; see η_ε and f, f_ε = η_ε * f move.

    Left: the scaled kernel η_ε(t) = η(t/ε)/ε. Right: f and its mollification
    f_ε(x) = E_{u~η}[f(x − εu)], computed exactly by quadrature (:func:`mollify.mollify`).

    Args:
        function: initial entry of :data:`ROUGH_FUNCTIONS`.
        kernel: initial kernel name (one of ``KERNELS``).
        eps: initial width ε in [0.01, 2].
        xlim: plotted x-range.

    Returns:
        An ``ipywidgets.VBox`` with ``.figure``, ``.controls`` and ``.refresh()``.

    >>> box = kernel_explorer("relu(x)", "epanechnikov", 0.3)
    >>> box.controls["kernel"].value = "bump"   # redraws
    """
    check_choice("function", function, tuple(ROUGH_FUNCTIONS))
    eps = check_real("eps", eps, low=0.01, high=2.0)
    x = _grid(xlim)
    controls = {
        "function": widgets.Dropdown(options=list(ROUGH_FUNCTIONS), value=function,
                                     description="f"),
        "kernel": _kernel_dropdown(kernel),
        "eps": _eps_slider(eps),
    }
    fig = Figure(figsize=(10, 3.6))
    ax_k, ax_f = fig.subplots(1, 2)
    (kernel_line,) = ax_k.plot([], [], color="C1", lw=2)
    ax_k.set(xlabel="t", ylabel=r"$\eta_\varepsilon(t)$", title="kernel")
    (f_line,) = ax_f.plot(x, torch.zeros_like(x), color="0.6", lw=2.5, label="f")
    (fe_line,) = ax_f.plot(x, torch.zeros_like(x), color="C0", lw=1.8,
                           label=r"$f_\varepsilon = \eta_\varepsilon * f$")
    ax_f.set(xlabel="x", ylabel="value", title="function and its mollification")
    ax_f.legend(loc="upper left")
    fig.tight_layout()

    def redraw() -> None:
        k, eps_now = get_kernel(controls["kernel"].value), controls["eps"].value
        f = ROUGH_FUNCTIONS[controls["function"].value]
        t = torch.linspace(-4 * max(eps_now, 0.2), 4 * max(eps_now, 0.2), 801,
                           dtype=torch.float64)
        kernel_line.set_data(t, k.scaled_pdf(t, eps_now))
        ax_k.relim(), ax_k.autoscale_view()
        f_line.set_ydata(f(x))
        fe_line.set_ydata(mollify(f, k, eps_now, method="exact", nodes=_NODES, breakpoints=[0.0])(x))
        ax_f.relim(), ax_f.autoscale_view()
        ax_k.set_title(f"{k.name} kernel, ε = {eps_now:.3f}")

    return _explorer(controls, fig, redraw)


def mollify_explorer(
    f: Function, *, kernel: str = "gaussian", eps: float = 0.3,
    xlim: tuple[float, float] = (-3.0, 3.0), breakpoints: list[float] | None = None,
) -> widgets.VBox:
    """Mollify your own function f: R → R and compare f, f_ε and their derivatives.

    Top: f and f_ε (exact quadrature, :func:`mollify.mollify`). Bottom: the derivatives f′ and
    f_ε′ by central differences on the plotting grid — for a piecewise-linear f (a ReLU network)
    f′ is a staircase and f_ε′ is smooth.

    Args:
        f: vectorized torch function of a 1-D float64 tensor (elementwise, e.g. ``torch.relu``, or
            a module mapping ``(N, 1)`` to ``(N, 1)``).
        kernel: initial kernel name.
        eps: initial width ε in [0.01, 2].
        xlim: plotted x-range.
        breakpoints: known kinks of f, passed to :func:`mollify.mollify` for accuracy.

    Returns:
        An ``ipywidgets.VBox`` with ``.figure``, ``.controls`` and ``.refresh()``.

    >>> box = mollify_explorer(lambda x: x.abs() + torch.sin(3 * x), eps=0.2)
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    eps = check_real("eps", eps, low=0.01, high=2.0)
    x = _grid(xlim)
    with torch.no_grad():
        fx = mollify(f, "gaussian", 1.0)._call_f(x.reshape(-1, 1), True).reshape(-1)
    controls = {"kernel": _kernel_dropdown(kernel), "eps": _eps_slider(eps)}
    fig = Figure(figsize=(8, 5.4))
    ax_f, ax_d = fig.subplots(2, 1, sharex=True)
    ax_f.plot(x, fx, color="0.6", lw=2.5, label="f")
    (fe_line,) = ax_f.plot(x, fx, color="C0", lw=1.8, label=r"$f_\varepsilon$")
    ax_f.set(ylabel="value", title="f and its mollification")
    ax_f.legend(loc="best")
    ax_d.plot(x, torch.gradient(fx, spacing=(x,))[0], color="0.6", lw=1.5, label="f′")
    (de_line,) = ax_d.plot(x, fx, color="C3", lw=1.8, label=r"$f_\varepsilon'$")
    ax_d.set(xlabel="x", ylabel="derivative (central differences)")
    ax_d.legend(loc="best")
    fig.tight_layout()

    def redraw() -> None:
        eps_now = controls["eps"].value
        with torch.no_grad():
            fe = mollify(f, controls["kernel"].value, eps_now, method="exact", nodes=_NODES,
                         breakpoints=breakpoints)(x).reshape(-1)
        fe_line.set_ydata(fe)
        de_line.set_ydata(torch.gradient(fe, spacing=(x,))[0])
        ax_f.set_title(f"f and its mollification ({controls['kernel'].value}, ε = {eps_now:.3f})")
        for ax in (ax_f, ax_d):
            ax.relim(), ax.autoscale_view()

    return _explorer(controls, fig, redraw)


def montecarlo_explorer(
    f: Function, *, kernel: str = "gaussian", dim: int = 1, truth: float | None = None,
    n: int = 1024, sampler: str = "mc", seed: int = 0,
) -> widgets.VBox:
    """Watch a Monte Carlo estimate of E_{u~η^d}[f(u)] converge as n grows, with its error band.

    For n_k = 16, 32, …, n the explorer calls :func:`mollify.integrate` with the chosen sampler
    and the same seed, so the estimates share their first points (a running estimate), and draws
    mean ± 2·stderr (no band for ``"qmc"``, which reports no stderr) against n on a log axis.

    Args:
        f: vectorized integrand: points ``(N, dim)`` → values ``(N,)``.
        kernel: initial kernel name.
        dim: dimension d of u.
        truth: exact value, drawn as a dashed line when given.
        n: initial largest sample count (a power of two, 16 ≤ n ≤ 65536).
        sampler: initial sampler (one of ``SAMPLERS``).
        seed: initial seed of the random numbers.

    Returns:
        An ``ipywidgets.VBox`` with ``.figure``, ``.controls`` and ``.refresh()``.

    >>> box = montecarlo_explorer(lambda u: u[:, 0] ** 2, truth=1.0, n=256)
    >>> box.controls["sampler"].value = "rqmc"
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    dim = check_int("dim", dim, minimum=1)
    n = check_int("n", n, minimum=16)
    if n & (n - 1) or n > 2**16:
        raise ValueError(f"n must be a power of two between 16 and 65536, got {n}")
    check_choice("sampler", sampler, SAMPLERS)
    seed = check_int("seed", seed, minimum=0)
    if truth is not None:
        truth = check_real("truth", truth)
    controls = {
        "sampler": widgets.Dropdown(options=list(SAMPLERS), value=sampler, description="sampler"),
        "kernel": _kernel_dropdown(kernel),
        "n": widgets.SelectionSlider(options=[2**k for k in range(4, 17)], value=n,
                                     description="n", continuous_update=False),
        "seed": widgets.BoundedIntText(value=seed, min=0, max=10**6, description="seed",
                                       layout=widgets.Layout(width="150px")),
    }
    fig = Figure(figsize=(8, 3.8))
    ax = fig.subplots()
    (est_line,) = ax.plot([], [], "o-", color="C0", ms=3, label="estimate")
    band = [ax.fill_between([1, 2], [0, 0], [0, 0], color="C0", alpha=0.2)]
    if truth is not None:
        ax.axhline(truth, color="k", ls="--", lw=1, label="exact value")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="number of samples n", ylabel=r"estimate of $\mathbb{E}[f(u)]$")
    fig.tight_layout()

    def redraw() -> None:
        ns = [2**k for k in range(4, int(math.log2(controls["n"].value)) + 1)]
        estimates = [
            integrate(f, controls["kernel"].value, m, dim=dim, sampler=controls["sampler"].value,
                      generator=torch.Generator().manual_seed(int(controls["seed"].value)))
            for m in ns
        ]
        mean = torch.stack([e.mean.reshape(()) for e in estimates])
        err = torch.stack([e.stderr.reshape(()) for e in estimates]).nan_to_num(0.0)
        est_line.set_data(ns, mean)
        band[0].remove()
        band[0] = ax.fill_between(ns, mean - 2 * err, mean + 2 * err, color="C0", alpha=0.2,
                                  label="± 2 stderr")
        ax.relim(), ax.autoscale_view()
        ax.legend(loc="upper right")
        last = estimates[-1]
        ax.set_title(f"{controls['sampler'].value} with the {controls['kernel'].value} kernel: "
                     f"{last!r}")

    return _explorer(controls, fig, redraw)
