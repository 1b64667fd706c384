"""`python -m mollify bench`: runs end to end and reports every figure (values are not judged:
performance claims are ratios printed by the benchmark, never timed assertions)."""

import json
import math
import subprocess
import sys

import pytest

from mollify.bench import Result, run, timeit, timeit_interleaved


def test_timeit_reports_min_and_median():
    calls = []
    lo, med = timeit(lambda: calls.append(1), repeat=4)
    assert len(calls) == 5 and 0 <= lo <= med


def test_timeit_interleaved_calls_the_functions_in_turn():
    calls = []
    times = timeit_interleaved([lambda: calls.append("a"), lambda: calls.append("b")], repeat=3)
    assert calls == ["a", "b"] * 4  # one warm-up each, then three rounds
    assert len(times) == 2 and all(0 <= lo <= med for lo, med in times)


@pytest.mark.slow
def test_bench_quick_prints_every_figure_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "mollify", "bench", "--quick", "--json", str(out), "--record",
         str(tmp_path / "RESULTS.md")],
        capture_output=True, text=True, check=True,
    )
    report = json.loads(out.read_text())
    figures = [r["figure"] for r in report["results"]]
    assert any("rqmc" in f for f in figures) and any("throughput" in f for f in figures)
    for row in report["results"]:
        assert math.isfinite(row["value"]) and row["value"] > 0
        assert row["figure"] in proc.stdout and row["goal"]
    for name in ("SmoothGrad / one fwd+bwd", "Captum", "NoiseGrad (grouped)", "NoiseGrad (vmap)",
                 "peak memory: Smooth", "autocast", "smoothed-activation", "GSmoothSGD", "ResNet 224x224"):
        assert any(name in f for f in figures), name
    from mollify.bench import read_results

    recorded = read_results(tmp_path / "RESULTS.md")["cpu"]
    assert recorded[0] == report["header"] and len(recorded[1]) == len(figures)


def test_bench_rejects_a_missing_device():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        run(quick=True, device="cuda")


def test_result_is_a_frozen_row():
    r = Result("x", 1.0, ">= 1", True, "")
    with pytest.raises(AttributeError):
        r.value = 2.0


def test_results_file_round_trips_and_keeps_other_devices(tmp_path):
    from mollify.bench import read_results, record

    path = tmp_path / "RESULTS.md"
    assert read_results(path) == {}
    cpu = [Result("a / b (x|y)", 1.234, "<= 1.10", False, "min s 0.1/0.2"),
           Result("c", 3.0, "info", None, "")]
    record(path, "cpu", "header cpu", cpu)
    record(path, "cuda", "header cuda", cpu[1:])
    record(path, "cpu", "header cpu 2", cpu[:1])  # replaces cpu, keeps cuda
    back = read_results(path)
    assert set(back) == {"cpu", "cuda"}
    assert back["cpu"] == ("header cpu 2", [Result("a / b (x/y)", 1.23, "<= 1.10", False,
                                                   "min s 0.1/0.2")])
    assert back["cuda"] == ("header cuda", [Result("c", 3.0, "info", None, "")])
    assert "| figure | value | goal | ok | detail |" in path.read_text()


_FAULTS = """
import resource, sys, torch
from mollify.bench import steady_malloc
applied = steady_malloc() if sys.argv[1] == "steady" else None
torch.ones(1 << 24).sum()  # 64 MiB, allocated once before counting
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(1 << 24).sum()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_steady_malloc_stops_page_faults_on_reused_blocks():
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True,
                             text=True, check=True).stdout.split()
        return out[0], int(out[1])

    applied, steady = faults("steady")
    _, default = faults("default")
    assert applied == "True"
    assert default > 10 * 16_000 * 0.9  # every 64 MiB block faults in its 16384 pages again
    assert steady <= 2 * 16_384 + 2_000  # at most a block or two faulted in (allocator slack)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status")
def test_peak_memory_measures_each_statement_in_turn():
    from mollify.bench import peak_memory

    peaks = peak_memory({"small": "torch.ones(10**6).sum()", "big": "torch.ones(10**7).sum()",
                         "again": "torch.ones(10**6).sum()"}, setup="import torch")
    assert list(peaks) == ["small", "big", "again"]
    assert 3.5e6 < peaks["small"] < 6e6 and 3.8e7 < peaks["big"] < 4.4e7  # float32 buffers
    assert peaks["again"] < 6e6  # the big buffer was returned: the peak is per statement
