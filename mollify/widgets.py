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

Layout: the controls sit in rows of at most three, each control with a fixed width (so a slider
never shrinks to nothing) and each row wrapping onto a new line where the page is narrower than
the row (a book's text column is about 690 px wide). Figures use matplotlib's constrained layout,
recomputed at every draw, so titles that change with the controls are never clipped.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping

import ipywidgets as widgets
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from mollify._validation import check_choice, check_int, check_real
from mollify.kernels import KERNELS, kernel as get_kernel
from mollify.mollifier import mollify
from mollify.montecarlo import SAMPLERS, integrate

__all__ = [
    "ROUGH_FUNCTIONS",
    "kernel_explorer",
    "mollify_explorer",
    "montecarlo_explorer",
    "saliency_explorer",
    "landscape_explorer",
]

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


def _a(t: object):
    """A tensor as a NumPy array for matplotlib (which warns on tensors under NumPy 2)."""
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t


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


def _sized(control: widgets.Widget, width: str) -> widgets.Widget:
    """Give ``control`` a fixed width and a label as wide as its text (ipywidgets 7 and 8)."""
    control.layout.width = width
    control.layout.flex = "0 0 auto"  # never shrink below `width` inside a row
    control.layout.margin = "2px 16px 2px 2px"  # a gap before the next control's label
    control.style.description_width = "initial"
    return control


def _explorer(controls: dict[str, widgets.Widget], fig: Figure, redraw: Callable[[], None],
              rows: list[list[str]] | None = None):
    """Wire ``controls`` to ``redraw`` and return the VBox (rows of controls, then the figure).

    ``rows`` names the controls of each row (default: all in one row); a row wraps where the
    page is too narrow for it, rather than squeezing its controls.
    """
    out = widgets.Output()

    def refresh(_change: object = None) -> None:
        redraw()
        _show(out, fig)

    for control in controls.values():
        control.observe(refresh, names="value")
    rows = rows if rows is not None else [list(controls)]
    if sorted(sum(rows, [])) != sorted(controls):  # the library's own layout tables
        raise RuntimeError(f"every control must be in exactly one row: {rows} vs {list(controls)}")
    boxes = [widgets.HBox([controls[name] for name in row],
                          layout=widgets.Layout(flex_flow="row wrap", width="100%"))
             for row in rows]
    box = widgets.VBox([*boxes, out])
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
        "function": _sized(widgets.Dropdown(options=list(ROUGH_FUNCTIONS), value=function,
                                            description="f"), "220px"),
        "kernel": _sized(_kernel_dropdown(kernel), "240px"),
        "eps": _sized(_eps_slider(eps), "420px"),
    }
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax_k, ax_f = fig.subplots(1, 2)
    (kernel_line,) = ax_k.plot([], [], color="C1", lw=2)
    ax_k.set(xlabel="t", ylabel=r"$\eta_\varepsilon(t)$", title="kernel")
    (f_line,) = ax_f.plot(_a(x), _a(torch.zeros_like(x)), color="0.6", lw=2.5, label="f")
    (fe_line,) = ax_f.plot(_a(x), _a(torch.zeros_like(x)), color="C0", lw=1.8,
                           label=r"$f_\varepsilon = \eta_\varepsilon * f$")
    ax_f.set(xlabel="x", ylabel="value", title="function and its mollification")
    ax_f.legend(loc="best")  # placed at each draw, away from the curves of the chosen f

    def redraw() -> None:
        k, eps_now = get_kernel(controls["kernel"].value), controls["eps"].value
        f = ROUGH_FUNCTIONS[controls["function"].value]
        t = torch.linspace(-4 * max(eps_now, 0.2), 4 * max(eps_now, 0.2), 801,
                           dtype=torch.float64)
        kernel_line.set_data(_a(t), _a(k.scaled_pdf(t, eps_now)))
        ax_k.relim(), ax_k.autoscale_view()
        f_line.set_ydata(_a(f(x)))
        fe_line.set_ydata(_a(mollify(f, k, eps_now, method="exact", nodes=_NODES,
                                  breakpoints=[0.0])(x)))
        ax_f.relim(), ax_f.autoscale_view()
        ax_k.set_title(f"{k.name} kernel, ε = {eps_now:.3f}")

    return _explorer(controls, fig, redraw, rows=[["function", "kernel"], ["eps"]])


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
    controls = {"kernel": _sized(_kernel_dropdown(kernel), "240px"),
                "eps": _sized(_eps_slider(eps), "400px")}
    fig = Figure(figsize=(8, 5.4), layout="constrained")
    ax_f, ax_d = fig.subplots(2, 1, sharex=True)
    ax_f.plot(_a(x), _a(fx), color="0.6", lw=2.5, label="f")
    (fe_line,) = ax_f.plot(_a(x), _a(fx), color="C0", lw=1.8, label=r"$f_\varepsilon$")
    ax_f.set(ylabel="value", title="f and its mollification")
    ax_f.legend(loc="best")
    ax_d.plot(_a(x), _a(torch.gradient(fx, spacing=(x,))[0]), color="0.6", lw=1.5, label="f′")
    (de_line,) = ax_d.plot(_a(x), _a(fx), color="C3", lw=1.8, label=r"$f_\varepsilon'$")
    ax_d.set(xlabel="x", ylabel="derivative (central differences)")
    ax_d.legend(loc="best")

    def redraw() -> None:
        eps_now = controls["eps"].value
        with torch.no_grad():
            fe = mollify(f, controls["kernel"].value, eps_now, method="exact", nodes=_NODES,
                         breakpoints=breakpoints)(x).reshape(-1)
        fe_line.set_ydata(_a(fe))
        de_line.set_ydata(_a(torch.gradient(fe, spacing=(x,))[0]))
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
        "sampler": _sized(widgets.Dropdown(options=list(SAMPLERS), value=sampler,
                                           description="sampler"), "240px"),
        "kernel": _sized(_kernel_dropdown(kernel), "240px"),
        "n": _sized(widgets.SelectionSlider(options=[2**k for k in range(4, 17)], value=n,
                                            description="n", continuous_update=False), "420px"),
        "seed": _sized(widgets.BoundedIntText(value=seed, min=0, max=10**6, description="seed"),
                       "160px"),
    }
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.subplots()
    (est_line,) = ax.plot([], [], "o-", color="C0", ms=3, label="estimate")
    band = [ax.fill_between([1, 2], [0, 0], [0, 0], color="C0", alpha=0.2)]
    if truth is not None:
        ax.axhline(truth, color="k", ls="--", lw=1, label="exact value")
    ax.set_xscale("log", base=2)
    ax.set(xlabel="number of samples n", ylabel=r"estimate of $\mathbb{E}[f(u)]$")

    def redraw() -> None:
        ns = [2**k for k in range(4, int(math.log2(controls["n"].value)) + 1)]
        estimates = [
            integrate(f, controls["kernel"].value, m, dim=dim, sampler=controls["sampler"].value,
                      generator=torch.Generator().manual_seed(int(controls["seed"].value)))
            for m in ns
        ]
        mean = torch.stack([e.mean.reshape(()) for e in estimates])
        err = torch.stack([e.stderr.reshape(()) for e in estimates]).nan_to_num(0.0)
        est_line.set_data(ns, _a(mean))
        band[0].remove()
        band[0] = ax.fill_between(ns, _a(mean - 2 * err), _a(mean + 2 * err), color="C0", alpha=0.2,
                                  label="± 2 stderr")
        ax.relim(), ax.autoscale_view()
        # beside the axes, not on them: the band is widest at small n and the curve ends
        # at the right, so no corner inside the axes is free for every integrand
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        last = estimates[-1]
        ax.set_title(f"{controls['sampler'].value} with the {controls['kernel'].value} kernel: "
                     f"{last!r}", fontsize=10)

    return _explorer(controls, fig, redraw, rows=[["sampler", "kernel"], ["n", "seed"]])


def saliency_explorer(
    model: torch.nn.Module, x: torch.Tensor, *, target: int | None = None,
    kernel: str = "gaussian", mode: str = "input", eps_rel: float = 0.15,
    eps_param: float = 0.2, n: int = 16,
) -> widgets.VBox:
    """Choose a kernel, a smoothing mode, the widths and n; watch one image's saliency map change.

    Panels: the image, its raw gradient ∇_x f_c(x) (:class:`mollify.Gradient`) and the
    Monte Carlo gradient mollification (:class:`mollify.MCGM`) with the chosen settings — input
    noise ε = ``eps_rel``·(max x − min x), multiplicative weight noise of std ``eps_param``, or
    both (``mode="joint"``). The noise is seeded, so moving a control back restores the map.

    Args:
        model: a classifier mapping ``(B, C, H, W)`` to logits.
        x: one image, ``(C, H, W)`` or ``(1, C, H, W)``.
        target: class to explain (default: the predicted class).
        kernel, mode, eps_rel, eps_param, n: initial settings of the controls.

    Returns:
        An ``ipywidgets.VBox`` with ``.figure``, ``.controls`` and ``.refresh()``.

    >>> from mollify.data import small_cnn
    >>> box = saliency_explorer(small_cnn(seed=0), torch.rand(1, 8, 8), n=4)
    >>> box.controls["mode"].value = "parameter"
    """
    from mollify.explain import MODES, MCGM, Gradient

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4) or (x.dim() == 4 and len(x) != 1):
        raise ValueError("x must be one image shaped (C, H, W) or (1, C, H, W)")
    x = x.reshape(1, *x.shape[-3:]).detach()
    check_choice("mode", mode, MODES)
    n = check_int("n", n, minimum=1)
    if target is None:
        with torch.no_grad():
            target = int(model(x).argmax(1))
    raw = Gradient(model).attribute(x, target=target)[0]
    controls = {
        "kernel": _sized(_kernel_dropdown(kernel), "200px"),
        "mode": _sized(widgets.Dropdown(options=list(MODES), value=mode, description="mode"),
                       "170px"),
        "n": _sized(widgets.SelectionSlider(options=[1, 2, 4, 8, 16, 32, 64, 128], value=n,
                                            description="n", continuous_update=False), "240px"),
        "eps_rel": _sized(_eps_slider(check_real("eps_rel", eps_rel, low=0.01, high=2.0),
                                      "ε input"), "320px"),
        "eps_param": _sized(_eps_slider(check_real("eps_param", eps_param, low=0.01, high=2.0),
                                        "σ weights"), "320px"),
    }
    fig = Figure(figsize=(9, 3.3), layout="constrained")
    axes = fig.subplots(1, 3)
    channel = 0

    def show(ax, image, title, cmap="RdBu_r"):
        scale = float(image.abs().max()) or 1.0
        style = {"vmin": -scale, "vmax": scale} if cmap == "RdBu_r" else {}
        ax.imshow(_a(image), cmap=cmap, **style)
        ax.set_title(title)
        ax.set_xticks([]), ax.set_yticks([])

    show(axes[0], x[0, channel], f"image (class {target})", cmap="gray_r")
    show(axes[1], raw[channel], "raw gradient")
    # Each map is scaled to its own largest |value| (colours compare within a map, not across).
    bar = fig.colorbar(ScalarMappable(Normalize(-1.0, 1.0), "RdBu_r"), ax=list(axes[1:]),
                       shrink=0.85, ticks=[-1, 0, 1])
    bar.set_label(r"$\partial f_c/\partial x$ ÷ its max |·|" "\n(red: raises the score)",
                  fontsize=9)

    def redraw() -> None:
        c = controls
        explainer = MCGM(model, kernel=c["kernel"].value, mode=c["mode"].value,
                         eps_rel=c["eps_rel"].value, eps_param=c["eps_param"].value,
                         n=c["n"].value, n_param=c["n"].value)
        smooth = explainer.attribute(x, target=target,
                                     generator=torch.Generator().manual_seed(0))[0]
        axes[2].clear()
        show(axes[2], smooth[channel],
             f"{c['kernel'].value}, {c['mode'].value}, n = {c['n'].value}")

    return _explorer(controls, fig, redraw, rows=[["kernel", "mode", "n"],
                                                   ["eps_rel", "eps_param"]])


def _default_landscape(theta: torch.Tensor) -> torch.Tensor:
    """L(θ) = θ² + 1 − cos(10θ): a bowl with ripples, many local minima, global minimum at 0."""
    return theta**2 + 1 - torch.cos(10 * theta)


def landscape_explorer(
    f: Function | None = None, *, sigma: float = 0.3, start: float = 1.9, lr: float = 0.01,
    steps: int = 150, n_samples: int = 8, xlim: tuple[float, float] = (-2.5, 2.5),
) -> widgets.VBox:
    """A 1-D non-convex loss, its Gaussian smoothing L_σ, and descent on each.

    Left: L and L_σ(θ) = E_z[L(θ + σz)] (exact quadrature, :func:`mollify.mollify`), with the end
    points of plain gradient descent (``torch.optim.SGD``) and of :class:`mollify.GSmoothSGD`
    (``n_samples`` Gaussian perturbations per step, seeded) started from the same θ₀. Right: the
    two paths θ_t against the step t.

    Args:
        f: vectorized loss of a 1-D tensor of θ values; default θ² + 1 − cos(10θ).
        sigma: initial σ in [0, 1] (0 makes both optimizers plain gradient descent).
        start: initial θ₀ (inside ``xlim``).
        lr, steps, n_samples: learning rate, number of steps, samples per smoothed step.
        xlim: plotted θ-range.

    Returns:
        An ``ipywidgets.VBox`` with ``.figure``, ``.controls`` and ``.refresh()``.

    >>> box = landscape_explorer(sigma=0.2, steps=20)
    >>> box.controls["sigma"].value = 0.5
    """
    from mollify.optim import GSmoothSGD

    loss = f if f is not None else _default_landscape
    if not callable(loss):
        raise TypeError(f"f must be callable, got {type(loss).__name__}")
    sigma = check_real("sigma", sigma, low=0.0, high=1.0)
    lr = check_real("lr", lr, low=0.0, low_open=True)
    steps = check_int("steps", steps, minimum=1)
    n_samples = check_int("n_samples", n_samples, minimum=1)
    theta = _grid(xlim)
    start = check_real("start", start, low=float(theta[0]), high=float(theta[-1]))
    controls = {
        "sigma": _sized(widgets.FloatSlider(value=sigma, min=0.0, max=1.0, step=0.01,
                                            description="σ", continuous_update=False), "320px"),
        "start": _sized(widgets.FloatSlider(value=start, min=float(theta[0]),
                                            max=float(theta[-1]), step=0.05, description="θ₀",
                                            continuous_update=False), "320px"),
    }
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax_l, ax_p = fig.subplots(1, 2)
    ax_l.plot(_a(theta), _a(loss(theta)), color="0.6", lw=1.5, label="L")
    (smooth_line,) = ax_l.plot(_a(theta), _a(loss(theta)), color="C0", lw=2, label=r"$L_\sigma$")
    (gd_dot,) = ax_l.plot([], [], "o", color="C3", ms=8, label="end of GD")
    (gs_dot,) = ax_l.plot([], [], "*", color="C2", ms=12, label="end of GSmoothSGD")
    ax_l.set(xlabel=r"weight $\theta$", ylabel="loss", title="landscape")
    ax_l.legend(loc="upper center", fontsize=8)
    (gd_path,) = ax_p.plot([], [], color="C3", label="gradient descent on L")
    (gs_path,) = ax_p.plot([], [], color="C2", label=r"GSmoothSGD ($\nabla L_\sigma$ by MC)")
    ax_p.set(xlabel="step t", ylabel=r"$\theta_t$", title="paths from the same start")
    ax_p.legend(loc="best", fontsize=8)

    def descend(smoothed: bool) -> list[float]:
        param = torch.tensor([controls["start"].value], dtype=torch.float64, requires_grad=True)
        opt = (GSmoothSGD([param], lr=lr, sigma=controls["sigma"].value, n_samples=n_samples,
                          generator=torch.Generator().manual_seed(0))
               if smoothed else torch.optim.SGD([param], lr=lr))

        def closure():
            opt.zero_grad()
            value = loss(param).sum()
            value.backward()
            return value

        path = [param.item()]
        for _ in range(steps):
            opt.step(closure)
            path.append(param.item())
        return path

    def redraw() -> None:
        sigma_now = controls["sigma"].value
        smooth = loss(theta) if sigma_now == 0 else mollify(loss, "gaussian", sigma_now,
                                                             method="exact", nodes=_NODES)(theta)
        smooth_line.set_ydata(_a(smooth))
        ax_l.relim(), ax_l.autoscale_view()
        for dot, line, path in ((gd_dot, gd_path, descend(False)),
                                (gs_dot, gs_path, descend(True))):
            end = torch.tensor([path[-1]], dtype=torch.float64)
            dot.set_data([path[-1]], _a(loss(end)))
            line.set_data(range(len(path)), path)
        ax_p.relim(), ax_p.autoscale_view()
        ax_l.set_title(f"landscape, σ = {sigma_now:.2f}")

    return _explorer(controls, fig, redraw)
