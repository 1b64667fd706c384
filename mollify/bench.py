"""Benchmarks behind the performance figures of the book: ratios measured in one run.

``python -m mollify bench [--quick] [--device cpu|cuda] [--json FILE]`` prints a table with one
row per figure: the measured value, the goal beside it, and the raw numbers behind it (times as
min/median over repeats). Ratios, not absolute times, are what the book quotes: the machines
are noisy, and a ratio of two timings taken side by side in one process is far less so.

Figures (Monte Carlo integration, the book's Foundations part; then explaining and training):

* samples for equal error — how many times more plain-MC samples reach the error that
  randomized QMC (goal ≥ 4) or antithetic sampling (for comparison) reach at n = 4096, on a
  smooth 5-d integrand (MC error ∝ n^{-1/2}, so the factor is (RMSE_mc / RMSE_other)²);
* memory flat in n — peak extra resident memory of :func:`mollify.integrate` at 10·n over n
  (Linux: measured in a fresh process from /proc/self/status);
* throughput — time of :func:`mollify.integrate` over a bare torch expression evaluating the
  same integrand on as many Gaussian points (``f(torch.randn(n, d)).mean()``);
* SmoothGrad over one plain forward+backward pass through the same n·B noisy inputs, and over
  Captum's ``NoiseTunnel(Saliency)`` at the same n;
* NoiseGrad (vmap over stacked weight samples) over the reference's loop that deep-copies and
  perturbs the model once per sample;
* peak memory of chunked SmoothGrad at n = 1000 over n = 100;
* samples for equal map error on the digits CNN: plain MC over antithetic or RQMC noise;
* closed-form smoothed activations over the plain forward, and one GSmoothSGD step with
  n samples over n plain SGD steps.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from mollify.montecarlo import integrate

__all__ = [
    "Result",
    "timeit",
    "montecarlo_figures",
    "explain_figures",
    "training_figures",
    "run",
]

_D = 5
_A = torch.tensor([0.2, 0.3, 0.4, 0.5, 0.6], dtype=torch.float64)
_TRUTH = math.exp(0.5 * float((_A**2).sum()))  # E exp(a·u) for u ~ N(0, I)


def _smooth_5d(u: torch.Tensor) -> torch.Tensor:
    """exp(a·u), a smooth monotone integrand on R^5 with E = exp(|a|²/2) under the Gaussian."""
    return torch.exp(u @ _A.to(u))


@dataclass(frozen=True)
class Result:
    """One row of the benchmark table."""

    figure: str
    value: float
    goal: str
    passed: bool | None  # None: reported for information, no goal
    detail: str


def timeit(fn: Callable[[], object], repeat: int = 5) -> tuple[float, float]:
    """Return (min, median) wall-clock seconds of ``fn()`` over ``repeat`` runs after a warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def _rmse(sampler: str, n: int, seeds: int) -> float:
    errors = [
        float(integrate(_smooth_5d, "gaussian", n, dim=_D, sampler=sampler,
                        generator=torch.Generator().manual_seed(s)).mean) - _TRUTH
        for s in range(seeds)
    ]
    return math.sqrt(sum(e * e for e in errors) / len(errors))


_MEMORY_PROBE = r"""
import sys, torch, mollify
n = int(sys.argv[1])
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
f = lambda u: torch.exp(u @ torch.full((5,), 0.3, dtype=u.dtype))
mollify.integrate(f, "gaussian", 2**16, dim=5)          # warm up allocator and kernels
before = rss("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")          # reset the peak (VmHWM) to now
mollify.integrate(f, "gaussian", n, dim=5, generator=torch.Generator().manual_seed(0))
print(rss("VmHWM:") - before)
"""


def _peak_extra_memory(n: int, probe: str = _MEMORY_PROBE) -> int | None:
    """Peak resident memory added by the measured call of ``probe`` with size n, in a fresh
    process (Linux only: /proc/self/status; None elsewhere).

    glibc's malloc raises its mmap threshold as large blocks are freed, after which it keeps
    freed tensor buffers on its heap, so the resident peak depends on the allocation history
    (two runs of one probe differed by 1.7×). The probe runs with a fixed threshold of 64 KiB:
    every tensor buffer is then its own mapping, returned on free, and the peak is that of the
    memory actually live.
    """
    if not sys.platform.startswith("linux"):
        return None
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "2"}
    out = subprocess.run([sys.executable, "-c", probe, str(n)], capture_output=True,
                         text=True, check=True, env=env)
    return int(out.stdout.strip().splitlines()[-1])


def montecarlo_figures(quick: bool = False) -> list[Result]:
    """Measure the Monte Carlo figures (see the module docstring)."""
    results = []
    n, seeds = 4096, (40 if quick else 100)
    rmse = {s: _rmse(s, n, seeds) for s in ("mc", "antithetic", "rqmc")}
    # The goal is met when either sampler reaches it; antithetic is reported for comparison (on
    # exp(a·u) its gain is limited by the integrand's large even part).
    for other, goal in (("rqmc", ">= 4"), ("antithetic", "info")):
        factor = (rmse["mc"] / rmse[other]) ** 2
        results.append(Result(
            f"samples for equal error: mc / {other} (smooth 5-d, n={n})", factor, goal,
            factor >= 4 if goal != "info" else None,
            f"RMSE over {seeds} seeds: mc {rmse['mc']:.2e}, {other} {rmse[other]:.2e}"))

    # Sizes well past the allocator's warm-up (about 60 chunks of 65536 points), ×10 apart.
    small, big = (4 * 10**6, 4 * 10**7) if quick else (10**7, 10**8)
    extra_small, extra_big = _peak_extra_memory(small), _peak_extra_memory(big)
    if extra_small is not None and extra_big is not None:
        ratio = extra_big / extra_small
        results.append(Result(
            f"peak memory: integrate n={big:.0e} / n={small:.0e}", ratio, "<= 1.2", ratio <= 1.2,
            f"peak extra RSS {extra_big / 2**20:.1f} MiB vs {extra_small / 2**20:.1f} MiB"))

    n_time = 2**20 if quick else 2**22
    gen = torch.Generator().manual_seed(0)
    t_int = timeit(lambda: integrate(_smooth_5d, "gaussian", n_time, dim=_D, generator=gen),
                   repeat=3 if quick else 5)
    t_bare = timeit(lambda: _smooth_5d(torch.randn(n_time, _D, generator=gen,
                                                   dtype=torch.float64)).mean(),
                    repeat=3 if quick else 5)
    ratio = t_int[0] / t_bare[0]
    results.append(Result(
        f"throughput: integrate / bare torch (n={n_time}, d={_D})", ratio, "<= 1.5", ratio <= 1.5,
        f"min/median s: integrate {t_int[0]:.3f}/{t_int[1]:.3f}, bare {t_bare[0]:.3f}/"
        f"{t_bare[1]:.3f}"))
    return results


_SMOOTHGRAD_MEMORY_PROBE = r"""
import sys, torch, mollify
n = int(sys.argv[1])
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
model = mollify.small_cnn(seed=0)
x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
explainer = mollify.SmoothGrad(model, n=n, chunk_size=32)   # passes of 32 x 64 noisy images
mollify.SmoothGrad(model, n=64, chunk_size=32).attribute(x, target=0)   # warm up
before = rss("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")
explainer.attribute(x, target=0, generator=torch.Generator().manual_seed(0))
print(rss("VmHWM:") - before)
"""


def _forward_backward(model: torch.nn.Module, batch: torch.Tensor, target: torch.Tensor) -> None:
    batch = batch.detach().requires_grad_()
    torch.autograd.grad(model(batch).gather(1, target[:, None]).sum(), batch)


def explain_figures(quick: bool = False, device: str = "cpu") -> list[Result]:
    """Cost of the explainers against the passes they consist of, and against the references."""
    import copy

    from mollify.data import digits, small_cnn, trained_digits_cnn
    from mollify.explain import MCGM, NoiseGrad, SmoothGrad

    repeat = 3 if quick else 7
    model = small_cnn(seed=0).to(device).eval()
    x_train, y_train, x_test, y_test = digits()
    x, target = x_test[:32].to(device), y_test[:32].to(device)
    n = 50
    results = []

    # SmoothGrad = n noisy copies of the batch through one forward+backward
    noisy = (x.unsqueeze(0) + 0.1 * torch.randn((n, *x.shape), device=device)).flatten(0, 1)
    t_plain = timeit(lambda: _forward_backward(model, noisy, target.repeat(n)), repeat)
    sg = SmoothGrad(model, eps=0.1, n=n, chunk_size=n)
    t_sg = timeit(lambda: sg.attribute(x, target=target), repeat)
    sg_default = SmoothGrad(model, eps=0.1, n=n)
    t_sg_default = timeit(lambda: sg_default.attribute(x, target=target), repeat)
    ratio = t_sg[0] / t_plain[0]
    results.append(Result(
        f"SmoothGrad / one forward+backward over n*B inputs (n={n}, B={len(x)})", ratio,
        "<= 1.10", ratio <= 1.10,
        f"min s: SmoothGrad {t_sg[0]:.4f} (default chunks: {t_sg_default[0]:.4f}), "
        f"plain {t_plain[0]:.4f}"))

    try:
        from captum.attr import NoiseTunnel, Saliency
    except ImportError:  # captum is a test extra
        NoiseTunnel = None
    if NoiseTunnel is not None:
        tunnel = NoiseTunnel(Saliency(model))
        t_captum = timeit(lambda: tunnel.attribute(
            x, nt_type="smoothgrad", nt_samples=n, stdevs=0.1, target=target, abs=False),
            repeat)
        ratio = t_sg[0] / t_captum[0]
        results.append(Result(
            f"SmoothGrad / Captum NoiseTunnel(Saliency) (n={n})", ratio, "<= 1.0", ratio <= 1.0,
            f"min s: mollify {t_sg[0]:.4f}, Captum {t_captum[0]:.4f}"))

    # NoiseGrad: vmap over stacked weight samples vs the reference's copy-per-sample loop
    n_param = 10
    ng = NoiseGrad(model, n=n_param)

    def copy_loop() -> torch.Tensor:
        total = torch.zeros_like(x)
        gen = torch.Generator(device=device).manual_seed(0)
        for _ in range(n_param):
            noisy_model = copy.deepcopy(model)
            with torch.no_grad():
                for p in noisy_model.parameters():
                    p.mul_(1 + 0.2 * torch.randn(p.shape, generator=gen, device=device))
            inp = x.detach().requires_grad_()
            out = noisy_model(inp).gather(1, target[:, None]).sum()
            total += torch.autograd.grad(out, inp)[0]
        return total / n_param

    t_vmap = timeit(lambda: ng.attribute(x, target=target), repeat)
    t_loop = timeit(copy_loop, repeat)
    ratio = t_vmap[0] / t_loop[0]
    results.append(Result(
        f"NoiseGrad (vmap) / model-copy loop (n={n_param}, B={len(x)})", ratio, "<= 0.33",
        ratio <= 0.33, f"min s: vmap {t_vmap[0]:.4f}, copy loop {t_loop[0]:.4f}"))

    if device == "cpu":
        small, big = 100, 1000
        m_small = _peak_extra_memory(small, _SMOOTHGRAD_MEMORY_PROBE)
        m_big = _peak_extra_memory(big, _SMOOTHGRAD_MEMORY_PROBE)
        if m_small is not None and m_big is not None:
            floor = 2**20  # 1 MiB: below that, allocator noise
            ratio = max(m_big, floor) / max(m_small, floor)
            results.append(Result(
                f"peak memory: SmoothGrad n={big} / n={small} (chunk_size=32)", ratio, "<= 1.2",
                ratio <= 1.2,
                f"peak extra RSS {m_big / 2**20:.1f} MiB vs {m_small / 2**20:.1f} MiB"))

    # samples for equal error on the trained digits CNN: map error against a large-n reference,
    # with the reference's own Monte Carlo variance (from its standard errors) subtracted
    model = trained_digits_cnn(progress=False).to(device)
    images, tgt = x[:8], target[:8]
    ref = MCGM(model, mode="input", eps_rel=0.15, n=2048 if quick else 4096).estimate(
        images, target=tgt, generator=torch.Generator().manual_seed(123))
    ref_var, ref_norm = float((ref.stderr**2).sum()), float((ref.mean**2).sum())
    n_eval, seeds = 32, (8 if quick else 16)

    def map_error(sampler: str) -> float:
        errs = []
        for s in range(seeds):
            est = MCGM(model, mode="input", eps_rel=0.15, n=n_eval, sampler=sampler).attribute(
                images, target=tgt, generator=torch.Generator().manual_seed(s))
            errs.append(float(((est - ref.mean) ** 2).sum()) - ref_var)
        return sum(errs) / len(errs) / ref_norm

    err = {s: map_error(s) for s in ("mc", "antithetic", "rqmc")}
    best = max(("antithetic", "rqmc"), key=lambda s: err["mc"] / err[s])
    factor = err["mc"] / err[best]  # squared errors: MC needs this many times the samples
    results.append(Result(
        f"samples for equal map error: mc / {best} (digits CNN, n={n_eval})", factor, ">= 2",
        factor >= 2,
        "relative squared error: " + ", ".join(f"{k} {v:.2e}" for k, v in err.items())))
    return results


def training_figures(quick: bool = False, device: str = "cpu") -> list[Result]:
    """Cost of closed-form smoothed activations and of Gaussian-smoothing optimizer steps."""
    from mollify.data import small_cnn
    from mollify.nn import smooth_activations
    from mollify.optim import GSmoothSGD

    repeat = 3 if quick else 7
    model = small_cnn(seed=0).to(device).eval()
    smooth = smooth_activations(model, 0.1)
    x = torch.rand(256, 1, 8, 8, generator=torch.Generator().manual_seed(0)).to(device)
    y = torch.arange(256, device=device) % 10
    with torch.no_grad():
        t_plain = timeit(lambda: model(x), repeat)
        t_smooth = timeit(lambda: smooth(x), repeat)
    ratio = t_smooth[0] / t_plain[0]
    results = [Result(
        "smoothed-activation forward / plain forward (small CNN, B=256)", ratio, "<= 3",
        ratio <= 3, f"min s: smoothed {t_smooth[0]:.5f}, plain {t_plain[0]:.5f}")]

    n_samples = 8
    train = small_cnn(seed=0).to(device)
    sgd = torch.optim.SGD(train.parameters(), lr=1e-3)
    gs = GSmoothSGD(train.parameters(), lr=1e-3, sigma=0.01, n_samples=n_samples,
                    generator=torch.Generator(device=device).manual_seed(0))

    def closure_for(opt):
        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(train(x), y)
            loss.backward()
            return loss
        return closure

    def plain_steps():
        for _ in range(n_samples):
            sgd.step(closure_for(sgd))

    t_plain_steps = timeit(plain_steps, repeat)
    t_gs = timeit(lambda: gs.step(closure_for(gs)), repeat)
    ratio = t_gs[0] / t_plain_steps[0]
    results.append(Result(
        f"GSmoothSGD step (n_samples={n_samples}) / {n_samples} plain SGD steps", ratio, "<= 1.2",
        ratio <= 1.2, f"min s: GSmoothSGD {t_gs[0]:.4f}, SGD x{n_samples} {t_plain_steps[0]:.4f}"))
    return results


def run(quick: bool = False, device: str = "cpu", json_path: str | None = None) -> list[Result]:
    """Run every benchmark, print the table and optionally write it as JSON."""
    if device != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    header = (f"mollify bench ({'quick' if quick else 'full'}) on {device}: torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    print(header, flush=True)
    results = montecarlo_figures(quick) if device == "cpu" else []
    results += explain_figures(quick, device) + training_figures(quick, device)
    width = max(len(r.figure) for r in results)
    print(f"{'figure':<{width}}  {'value':>8}  {'goal':>7}  ok   detail")
    for r in results:
        ok = {True: "yes", False: "NO", None: "-"}[r.passed]
        print(f"{r.figure:<{width}}  {r.value:8.2f}  {r.goal:>7}  {ok:<3}  {r.detail}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"header": header, "results": [asdict(r) for r in results]}, fh, indent=2)
    return results
