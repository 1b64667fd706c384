"""Benchmarks behind the performance figures of the book: ratios measured in one run.

``python -m mollify bench [--quick] [--device cpu|cuda] [--json FILE]`` prints a table with one
row per figure: the measured value, the goal beside it, and the raw numbers behind it (times as
min/median over repeats). Ratios, not absolute times, are what the book quotes: the machines
are noisy, and a ratio of two timings taken side by side in one process is far less so (the
functions compared are called in turn, round after round: :func:`timeit_interleaved`).

Figures (Monte Carlo integration, the book's Foundations part; then explaining and training):

* samples for equal error — how many times more plain-MC samples reach the error that
  randomized QMC (goal ≥ 4) or antithetic sampling (for comparison) reach at n = 4096, on a
  smooth 5-d integrand (MC error ∝ n^{-1/2}, so the factor is (RMSE_mc / RMSE_other)²);
* memory flat in n — peak extra resident memory of :func:`mollify.integrate` at 10·n over n
  (Linux: measured in a fresh process from /proc/self/status);
* throughput — time of :func:`mollify.integrate` over a bare torch expression evaluating the
  same integrand on as many Gaussian points (``f(torch.randn(n, d)).mean()``);
* SmoothGrad over one plain forward+backward pass through the same n·B noisy inputs, and over
  Captum's ``NoiseTunnel(Saliency)`` at the same n — on three workloads: the book's digits CNN
  (8×8, B = 32, n = 50) and :func:`mollify.data.resnet` at 64×64 (B = 8) and 224×224 (B = 2 on
  the CPU, 16 on CUDA);
* NoiseGrad (all weight samples in one pass: grouped layers, :mod:`mollify.grouped`, where the
  model allows, and vmap) over the reference's loop that deep-copies and perturbs the model once
  per sample, with the floor beside it: one pass of the unchanged model over the same n·B inputs
  with fixed weights (grouped layers can beat it: they pool before the activation and run in
  channels-last format);
* peak memory of chunked SmoothGrad at n = 1000 over n = 100 (CPU: resident memory of a fresh
  process; CUDA: ``torch.cuda.max_memory_allocated``);
* autocast (bfloat16 on the CPU, float16 on CUDA): the map's relative error against float32
  and the time ratio; on CUDA, the chunk size ``chunk_size="auto"`` picks;
* samples for equal map error on the digits CNN: plain MC over antithetic or RQMC noise;
* closed-form smoothed activations over the plain forward, and one GSmoothSGD step with
  n samples over n plain SGD steps.

The Monte Carlo figures always run on the CPU (:func:`mollify.integrate` there is what the book
uses); ``--device cuda`` moves the models, inputs and generators of every other figure.
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
    "timeit_interleaved",
    "steady_malloc",
    "peak_memory",
    "montecarlo_figures",
    "explain_figures",
    "training_figures",
    "describe",
    "results_markdown",
    "read_results",
    "record",
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
    """Return (min, median) wall-clock seconds of ``fn()`` over ``repeat`` runs after a warm-up.

    When CUDA is in use the device is synchronized before each clock reading, so a time covers
    the kernels ``fn`` launched, not only their launch.
    """
    return timeit_interleaved([fn], repeat)[0]


def timeit_interleaved(
    fns: list[Callable[[], object]], repeat: int = 5,
    clock: Callable[[], float] = time.perf_counter,
) -> list[tuple[float, float]]:
    """:func:`timeit` for several functions whose times will be compared: one warm-up each,
    then ``repeat`` rounds that call every function once, so that a drift of the machine's speed
    (frequency, other processes, memory state) weighs on all of them alike. Returns (min, median)
    seconds of ``clock`` per function: wall-clock by default; ``time.thread_time`` counts only
    the CPU time of the calling thread, which other processes on a shared machine do not
    inflate."""
    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else (lambda: None)
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, slot in zip(fns, times):
            sync()
            start = clock()
            fn()
            sync()
            slot.append(clock() - start)
    return [(min(t), statistics.median(t)) for t in times]


def _rmse(sampler: str, n: int, seeds: int) -> float:
    errors = [
        float(integrate(_smooth_5d, "gaussian", n, dim=_D, sampler=sampler,
                        generator=torch.Generator().manual_seed(s)).mean) - _TRUTH
        for s in range(seeds)
    ]
    return math.sqrt(sum(e * e for e in errors) / len(errors))


_PEAK_PROBE = r"""
import json, sys
def rss(field):  # bytes, from /proc/self/status
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
job = json.load(sys.stdin)
scope = {}
exec(job["setup"], scope)
exec(job["warmup"], scope)
peaks = {}
for key, statement in job["statements"]:
    before = rss("VmRSS:")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to now
    exec(statement, scope)
    peaks[key] = rss("VmHWM:") - before
print(json.dumps(peaks))
"""


def peak_memory(
    statements: dict[str, str], setup: str = "", warmup: str | None = None
) -> dict[str, int] | None:
    """Peak resident memory, in bytes, that each statement adds: measured in one fresh Python
    process on Linux (None elsewhere), like :mod:`timeit` measures time.

    The process runs ``setup``, then ``warmup`` once (default: the first statement; it loads
    kernels and fills caches), then every statement in order: it reads the resident memory,
    resets its high-water mark (``/proc/self/clear_refs``), runs the statement and reports the
    new high-water mark (``VmHWM``) minus the memory before. glibc's ``malloc`` keeps freed
    blocks once its adaptive mmap threshold has grown, so a peak would depend on what ran
    before; the process therefore runs with ``MALLOC_MMAP_THRESHOLD_=65536``: every tensor
    buffer is its own mapping, returned when freed, and a peak is that of memory really live.

    >>> peaks = peak_memory({"1e6": "torch.ones(10**6).sum()"}, setup="import torch")
    >>> peaks is None or 3.5e6 < peaks["1e6"] < 6e6  # 4 MB of float32 (None off Linux)
    True
    """
    if not sys.platform.startswith("linux"):
        return None
    items = list(statements.items())
    job = {"setup": setup, "warmup": items[0][1] if warmup is None else warmup,
           "statements": items}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_ARENA_MAX": "2"}
    out = subprocess.run([sys.executable, "-c", _PEAK_PROBE], input=json.dumps(job),
                         capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


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
    peaks = peak_memory(
        {str(k): f"mollify.integrate(f, 'gaussian', {k}, dim=5, generator=g(0))"
         for k in (small, big)},
        setup="import torch, mollify\n"
              "f = lambda u: torch.exp(u @ torch.full((5,), 0.3, dtype=u.dtype))\n"
              "g = lambda s: torch.Generator().manual_seed(s)",
        warmup="mollify.integrate(f, 'gaussian', 2**16, dim=5)")
    if peaks is not None:
        extra_small, extra_big = peaks[str(small)], peaks[str(big)]
        ratio = extra_big / extra_small
        results.append(Result(
            f"peak memory: integrate n={big:.0e} / n={small:.0e}", ratio, "<= 1.2", ratio <= 1.2,
            f"peak extra RSS {extra_big / 2**20:.1f} MiB vs {extra_small / 2**20:.1f} MiB"))

    n_time = 2**20 if quick else 2**22
    gen = torch.Generator().manual_seed(0)
    t_int, t_bare = timeit_interleaved([
        lambda: integrate(_smooth_5d, "gaussian", n_time, dim=_D, generator=gen),
        lambda: _smooth_5d(torch.randn(n_time, _D, generator=gen, dtype=torch.float64)).mean(),
    ], repeat=3 if quick else 5)
    ratio = t_int[0] / t_bare[0]
    results.append(Result(
        f"throughput: integrate / bare torch (n={n_time}, d={_D})", ratio, "<= 1.5", ratio <= 1.5,
        f"min/median s: integrate {t_int[0]:.3f}/{t_int[1]:.3f}, bare {t_bare[0]:.3f}/"
        f"{t_bare[1]:.3f}"))
    return results


def _cuda_peak_extra(fn: Callable[[], object], device: str) -> int:
    """Peak CUDA memory allocated by ``fn()`` beyond what was allocated before it."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def _forward_backward(model: torch.nn.Module, batch: torch.Tensor, target: torch.Tensor) -> None:
    batch = batch.detach().requires_grad_()
    torch.autograd.grad(model(batch).gather(1, target[:, None]).sum(), batch)


@dataclass(frozen=True)
class _Workload:
    """A model and a batch to explain: the bench's unit of comparison."""

    name: str
    model: torch.nn.Module
    x: torch.Tensor
    target: torch.Tensor
    n: int


def _workloads(quick: bool, device: str) -> list[_Workload]:
    """The book's digits CNN (B=32, n=50) and the ResNet-style convnet at 64×64 and 224×224."""
    from mollify.data import digits, resnet, small_cnn

    x_test, y_test = digits()[2:]
    g = torch.Generator().manual_seed(0)
    net = resnet(seed=0).to(device).eval()
    big_b = 2 if device == "cpu" else 16
    return [
        _Workload("digits CNN 8x8", small_cnn(seed=0).to(device).eval(), x_test[:32].to(device),
                  y_test[:32].to(device), 50),
        _Workload("ResNet 64x64", net, torch.rand(8, 3, 64, 64, generator=g).to(device),
                  torch.arange(8, device=device) % 10, 10 if quick else 25),
        _Workload("ResNet 224x224", net, torch.rand(big_b, 3, 224, 224, generator=g).to(device),
                  torch.arange(big_b, device=device) % 10, 8 if quick else 25),
    ]


def _smoothgrad_rows(w: _Workload, repeat: int, device: str) -> list[Result]:
    """SmoothGrad against one plain forward+backward over the same n·B inputs, and Captum."""
    from mollify.explain import SmoothGrad

    n, b = w.n, len(w.x)
    noisy = (w.x.unsqueeze(0) + 0.1 * torch.randn((n, *w.x.shape), device=device)).flatten(0, 1)
    sg = SmoothGrad(w.model, eps=0.1, n=n, chunk_size=n)
    fns = [lambda: _forward_backward(w.model, noisy, w.target.repeat(n)),
           lambda: sg.attribute(w.x, target=w.target)]
    try:
        from captum.attr import NoiseTunnel, Saliency
    except ImportError:  # captum is a test extra
        tunnel = None
    else:
        tunnel = NoiseTunnel(Saliency(w.model))
        fns.append(lambda: tunnel.attribute(
            w.x, nt_type="smoothgrad", nt_samples=n, stdevs=0.1, target=w.target, abs=False))
    t_plain, t_sg, *t_rest = timeit_interleaved(fns, repeat)
    del noisy
    ratio = t_sg[0] / t_plain[0]
    out = [Result(
        f"SmoothGrad / one fwd+bwd over n*B inputs ({w.name}, n={n}, B={b})", ratio, "<= 1.10",
        ratio <= 1.10, f"min/median s: SmoothGrad {_fmt(t_sg)}, plain {_fmt(t_plain)}")]
    if tunnel is None:
        return out
    (t_captum,) = t_rest
    ratio = t_sg[0] / t_captum[0]
    out.append(Result(
        f"SmoothGrad / Captum NoiseTunnel(Saliency) ({w.name}, n={n})", ratio, "<= 1.0",
        ratio <= 1.0, f"min/median s: mollify {_fmt(t_sg)}, Captum {_fmt(t_captum)}"))
    return out


def _noisegrad_rows(w: _Workload, repeat: int, device: str, goal: bool) -> list[Result]:
    """NoiseGrad (all weight samples in one pass, as ``batching="auto"`` picks: grouped layers
    for a model built from common layers, else vmap) against the reference's per-sample
    loop, which deep-copies and perturbs the model once per sample; vmap beside it when grouped
    layers were used; and the floor all share."""
    import copy

    from mollify.explain import NoiseGrad
    from mollify.grouped import grouped_plan

    n_param, x, target = 10, w.x, w.target

    def copy_loop() -> torch.Tensor:
        total = torch.zeros_like(x)
        gen = torch.Generator(device=device).manual_seed(0)
        for _ in range(n_param):
            noisy_model = copy.deepcopy(w.model)
            with torch.no_grad():
                for p in noisy_model.parameters():
                    p.mul_(1 + 0.2 * torch.randn(p.shape, generator=gen, device=device))
            inp = x.detach().requires_grad_()
            out = noisy_model(inp).gather(1, target[:, None]).sum()
            total += torch.autograd.grad(out, inp)[0]
        return total / n_param

    batchings = ["grouped", "vmap"] if grouped_plan(w.model, x.dim() - 1) else ["vmap"]
    fns = [lambda ng=NoiseGrad(w.model, n=n_param, batching=batching):
           ng.attribute(x, target=target) for batching in batchings]
    # the floor: the same n_param·B gradients with one fixed set of weights, in one pass
    stacked, rep = x.repeat(n_param, *[1] * (x.dim() - 1)), target.repeat(n_param)
    *t_ng, t_loop, t_floor = timeit_interleaved(
        [*fns, copy_loop, lambda: _forward_backward(w.model, stacked, rep)], repeat)
    times = dict(zip(batchings, t_ng))
    head = f"({w.name}, n={n_param}, B={len(x)})"
    rows = []
    for k, batching in enumerate(batchings):
        ratio, gated = times[batching][0] / t_loop[0], goal and k == 0
        rows.append(Result(
            f"NoiseGrad ({batching}) / model-copy loop {head}", ratio,
            "<= 0.33" if gated else "info", ratio <= 0.33 if gated else None,
            f"min/median s: {batching} {_fmt(times[batching])}, copy loop {_fmt(t_loop)}"))
    rows.append(Result(
        f"NoiseGrad floor / model-copy loop {head}", t_floor[0] / t_loop[0], "info", None,
        f"one fwd+bwd over n*B inputs with fixed weights {_fmt(t_floor)}: the copy loop's own "
        "layers can do no better"))
    return rows


def _memory_row(device: str) -> Result | None:
    """Peak memory of chunked SmoothGrad at n = 1000 over n = 100 (32 samples per pass)."""
    small, big = 100, 1000
    if device == "cpu":
        peaks = peak_memory(  # passes of 32 x 64 noisy images
            {str(k): f"mollify.SmoothGrad(model, n={k}, chunk_size=32).attribute("
                     "x, target=0, generator=torch.Generator().manual_seed(0))"
             for k in (small, big)},
            setup="import torch, mollify\nmodel = mollify.small_cnn(seed=0)\n"
                  "x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))",
            warmup="mollify.SmoothGrad(model, n=64, chunk_size=32).attribute(x, target=0)")
        if peaks is None:
            return None
        m_small, m_big = peaks[str(small)], peaks[str(big)]
        what = "peak extra RSS"
    else:
        from mollify.data import small_cnn
        from mollify.explain import SmoothGrad

        model = small_cnn(seed=0).to(device)
        x = torch.rand(64, 1, 8, 8, device=device)
        m_small, m_big = (
            _cuda_peak_extra(lambda k=k: SmoothGrad(model, n=k, chunk_size=32).attribute(
                x, target=0), device) for k in (small, big))
        what = "peak extra CUDA memory allocated"
    floor = 2**20  # 1 MiB: below that, allocator noise
    ratio = max(m_big, floor) / max(m_small, floor)
    return Result(f"peak memory: SmoothGrad n={big} / n={small} (chunk_size=32)", ratio,
                  "<= 1.2", ratio <= 1.2,
                  f"{what} {m_big / 2**20:.1f} MiB vs {m_small / 2**20:.1f} MiB")


def _autocast_rows(w: _Workload, repeat: int, device: str) -> list[Result]:
    """SmoothGrad under autocast (bf16 on CPU, fp16 on CUDA) against float32: time and error."""
    from mollify.explain import SmoothGrad

    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    full = SmoothGrad(w.model, eps=0.1, n=w.n)
    half = SmoothGrad(w.model, eps=0.1, n=w.n, autocast=dtype)

    def run(e):
        gen = torch.Generator(device=device).manual_seed(0)
        return e.attribute(w.x, target=w.target, generator=gen)

    a, b = run(full), run(half)
    err = float((b - a).norm() / a.norm())
    cos = float(torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).min())
    t_full, t_half = timeit_interleaved([lambda: run(full), lambda: run(half)], repeat)
    name = str(dtype).removeprefix("torch.")
    return [
        Result(f"autocast {name}: relative error of the map vs float32 ({w.name})", err,
               "<= 0.1", err <= 0.1, f"smallest cosine similarity per example {cos:.4f}"),
        Result(f"autocast {name}: time / float32 time ({w.name})", t_half[0] / t_full[0], "info",
               None, f"min/median s: {name} {_fmt(t_half)}, float32 {_fmt(t_full)}"),
    ]


def _fmt(t: tuple[float, float]) -> str:
    return f"{t[0]:.4f}/{t[1]:.4f}"


def explain_figures(quick: bool = False, device: str = "cpu") -> list[Result]:
    """Cost of the explainers against the passes they consist of and against the references,
    their memory, reduced precision, and the sample efficiency of antithetic/RQMC noise."""
    from mollify.data import trained_digits_cnn
    from mollify.explain import MCGM

    repeat = 3 if quick else 7
    loads = _workloads(quick, device)
    results = []
    for w in loads:
        results += _smoothgrad_rows(w, repeat, device)
    results += _noisegrad_rows(loads[0], repeat, device, goal=True)
    results += _noisegrad_rows(loads[1], repeat, device, goal=False)
    memory = _memory_row(device)
    if memory is not None:
        results.append(memory)
    results += _autocast_rows(loads[1], repeat, device)
    if device != "cpu":
        from mollify.explain import SmoothGrad

        w = loads[2]
        sg = SmoothGrad(w.model, eps=0.1, n=256)
        rows = sg._chunk(sg._config({}), w.x, w.target, int(w.target.max()), 256)
        results.append(Result(f"chunk_size='auto' ({w.name}, B={len(w.x)}, n=256)", rows, "info",
                              None, "noisy copies of the batch per pass, from free CUDA memory"))

    # samples for equal error on the trained digits CNN: map error against a large-n reference,
    # with the reference's own Monte Carlo variance (from its standard errors) subtracted
    model = trained_digits_cnn(progress=False).to(device)
    images, tgt = loads[0].x[:8], loads[0].target[:8]
    ref = MCGM(model, mode="input", eps_rel=0.15, n=2048 if quick else 4096).estimate(
        images, target=tgt, generator=torch.Generator(device=device).manual_seed(123))
    ref_var, ref_norm = float((ref.stderr**2).sum()), float((ref.mean**2).sum())
    n_eval, seeds = 32, (8 if quick else 16)

    def map_error(sampler: str) -> float:
        errs = []
        for s in range(seeds):
            est = MCGM(model, mode="input", eps_rel=0.15, n=n_eval, sampler=sampler).attribute(
                images, target=tgt, generator=torch.Generator(device=device).manual_seed(s))
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
        t_plain, t_smooth = timeit_interleaved([lambda: model(x), lambda: smooth(x)], repeat)
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

    t_plain_steps, t_gs = timeit_interleaved([plain_steps, lambda: gs.step(closure_for(gs))],
                                             repeat)
    ratio = t_gs[0] / t_plain_steps[0]
    results.append(Result(
        f"GSmoothSGD step (n_samples={n_samples}) / {n_samples} plain SGD steps", ratio, "<= 1.2",
        ratio <= 1.2, f"min s: GSmoothSGD {t_gs[0]:.4f}, SGD x{n_samples} {t_plain_steps[0]:.4f}"))
    return results


_RESULTS_INTRO = """# Benchmark results

Figures of `python -m mollify bench`, one section per device, each recorded in one run with
`python -m mollify bench [--device cuda] --record benchmarks/RESULTS.md`. Values are ratios
(see `mollify/bench.py` for what each measures); the line under each heading names the
versions, the device and the date. Chapter 11 (*Smoothing at scale*) reads this file.
"""


def results_markdown(header: str, results: list[Result]) -> str:
    """A markdown table of ``results`` under the ``header`` line."""
    rows = [f"`{header}`", "", "| figure | value | goal | ok | detail |", "|---|---|---|---|---|"]
    for r in results:
        ok = {True: "yes", False: "NO", None: "-"}[r.passed]
        cells = [r.figure, f"{r.value:.2f}", r.goal, ok, r.detail]
        rows.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def read_results(path: str | os.PathLike) -> dict[str, tuple[str, list[Result]]]:
    """Parse a results file written by :func:`record`: {device: (header, results)}.

    Missing file: an empty dict.
    """
    if not os.path.exists(path):
        return {}
    out: dict[str, tuple[str, list[Result]]] = {}
    device, header, rows = None, "", []
    for line in open(path, encoding="utf-8").read().splitlines() + ["## end"]:
        if line.startswith("## "):
            if device is not None:
                out[device] = (header, rows)
            device, header, rows = line[3:].strip(), "", []
        elif device and line.startswith("`") and not header:
            header = line.strip("`")
        elif device and line.startswith("| ") and not line.startswith(("| figure", "|---")):
            figure, value, goal, ok, detail = [c.strip() for c in line.strip("|").split(" | ")]
            passed = {"yes": True, "NO": False}.get(ok)
            rows.append(Result(figure, float(value), goal, passed, detail))
    return out


def record(path: str | os.PathLike, device: str, header: str, results: list[Result]) -> None:
    """Write ``results`` as the section ``## <device>`` of the markdown file ``path``, keeping
    the other devices' sections (atomic replace)."""
    sections = {d: results_markdown(h, r) for d, (h, r) in read_results(path).items()}
    sections[device] = results_markdown(header, results)
    text = _RESULTS_INTRO + "".join(f"\n## {d}\n\n{t}" for d, t in sorted(sections.items()))
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters of glibc's <malloc.h>


def steady_malloc(threshold: int = 1 << 30) -> bool:
    """Keep freed memory in this process (Linux, glibc): returns whether it could be set.

    glibc's ``malloc`` serves a large block (a batch of activations) from fresh ``mmap`` pages and
    gives it back to the system when it is freed, and trims the top of its heap likewise; the next
    pass then page-faults every page in again, and the kernel zeroes each one. On a ResNet pass
    over a batch of 224×224 images that is hundreds of thousands of page faults and more system
    time than computation. Setting the mmap and trim thresholds (``mallopt``; the environment
    variables ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` do the same for a new
    process) keeps the freed pages for reuse. ``python -m mollify bench`` calls it first, so that
    its ratios compare computation, not the allocator's history. Memory once used is then not
    returned to the system until the process ends.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold)
                    and libc.mallopt(_M_TRIM_THRESHOLD, 2 * threshold))
    except (OSError, AttributeError):  # not glibc
        return False


def describe(device: str, quick: bool) -> str:
    """One line naming what the figures were measured with: versions, device, threads, date."""
    from mollify import __version__

    try:
        from importlib.metadata import version

        captum = version("captum")
    except Exception:  # noqa: BLE001 - any failure means "not installed"
        captum = "not installed"
    cpu = platform.processor() or platform.machine()
    where = (torch.cuda.get_device_name(0) if device == "cuda"
             else f"{cpu}, {_plural(os.cpu_count() or 1, 'core')}")
    return (f"mollify bench ({'quick' if quick else 'full'}) {time.strftime('%Y-%m-%d')}: "
            f"device {device} ({where}), {_plural(torch.get_num_threads(), 'thread')}; mollify "
            f"{__version__}, torch {torch.__version__}, captum {captum}, python "
            f"{platform.python_version()}")


def run(
    quick: bool = False,
    device: str = "cpu",
    json_path: str | None = None,
    record_path: str | None = None,
) -> list[Result]:
    """Run every benchmark, print the table; optionally write it as JSON (``json_path``) and as
    this device's section of a markdown results file (``record_path``, see :func:`record`)."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    header = describe(device, quick)
    if steady_malloc():
        header += "; glibc malloc keeps freed memory (steady_malloc)"
    print(header, flush=True)
    results = montecarlo_figures(quick)  # integrate runs on the CPU: device-independent figures
    results += explain_figures(quick, device) + training_figures(quick, device)
    width = max(len(r.figure) for r in results)
    print(f"{'figure':<{width}}  {'value':>8}  {'goal':>7}  ok   detail")
    for r in results:
        ok = {True: "yes", False: "NO", None: "-"}[r.passed]
        print(f"{r.figure:<{width}}  {r.value:8.2f}  {r.goal:>7}  {ok:<3}  {r.detail}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"header": header, "results": [asdict(r) for r in results]}, fh, indent=2)
    if record_path:
        record(record_path, device, header, results)
    return results
