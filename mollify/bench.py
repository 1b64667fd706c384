"""Benchmarks behind the performance figures of the book: ratios measured in one run.

``python -m mollify bench [--quick] [--device cpu|cuda] [--json FILE]`` prints a table with one
row per figure: the measured value, the goal beside it, and the raw numbers behind it (times as
min/median over repeats). Ratios, not absolute times, are what the book quotes: the machines
are noisy, and a ratio of two timings taken side by side in one process is far less so.

Figures so far (Monte Carlo integration, the book's Foundations part):

* samples for equal error — how many times more plain-MC samples reach the error that
  randomized QMC (goal ≥ 4) or antithetic sampling (for comparison) reach at n = 4096, on a
  smooth 5-d integrand (MC error ∝ n^{-1/2}, so the factor is (RMSE_mc / RMSE_other)²);
* memory flat in n — peak extra resident memory of :func:`mollify.integrate` at 10·n over n
  (Linux: measured in a fresh process from /proc/self/status);
* throughput — time of :func:`mollify.integrate` over a bare torch expression evaluating the
  same integrand on as many Gaussian points (``f(torch.randn(n, d)).mean()``).
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from mollify.montecarlo import integrate

__all__ = ["Result", "timeit", "montecarlo_figures", "run"]

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


def _peak_extra_memory(n: int) -> int | None:
    """Peak resident memory added by one ``integrate`` call of n points, in a fresh process."""
    if not sys.platform.startswith("linux"):
        return None
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(n)], capture_output=True,
                         text=True, check=True)
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


def run(quick: bool = False, device: str = "cpu", json_path: str | None = None) -> list[Result]:
    """Run every benchmark, print the table and optionally write it as JSON."""
    if device != "cpu" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    header = (f"mollify bench ({'quick' if quick else 'full'}) on {device}: torch "
              f"{torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}")
    print(header)
    results = montecarlo_figures(quick)
    width = max(len(r.figure) for r in results)
    print(f"{'figure':<{width}}  {'value':>8}  {'goal':>7}  ok   detail")
    for r in results:
        ok = {True: "yes", False: "NO", None: "-"}[r.passed]
        print(f"{r.figure:<{width}}  {r.value:8.2f}  {r.goal:>7}  {ok:<3}  {r.detail}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"header": header, "results": [asdict(r) for r in results]}, fh, indent=2)
    return results
