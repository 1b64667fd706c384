"""Tests of mollify.distributed: per-example seeds, shard bookkeeping, resumption after a crash or
a kill, stale shards, torchrun with two ranks (gloo on CPU), argument errors."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, IterableDataset, TensorDataset

from mollify.data import small_cnn
from mollify.distributed import _rank_shards, example_seed, explain_dataset, main
from mollify.explain import Gradient, NoiseGrad, SmoothGrad

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def data(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, 1, 8, 8, generator=gen(0)), torch.arange(n) % 10


def model() -> torch.nn.Module:
    return small_cnn(width=2, seed=0)


def per_example(explainer, x, y, seed: int) -> torch.Tensor:
    """What the module docstring promises for example i: its own generator, a batch of one."""
    return torch.cat([
        explainer.attribute(x[i : i + 1], None if y is None else y[i],
                            generator=gen(example_seed(seed, i)))
        for i in range(x.shape[0])
    ])


def counts(text: str) -> tuple[int, int, int]:
    """(computed, stale, reused) from explain_dataset's summary line."""
    m = re.search(r"(\d+) computed \((\d+) stale ones replaced\), (\d+) reused", text)
    assert m, f"no summary line in:\n{text}"
    return int(m[1]), int(m[2]), int(m[3])


class Crashing(SmoothGrad):
    """SmoothGrad that raises on its ``fail_at``-th call (a crash in the middle of a run)."""

    fail_at: int | None = None

    def attribute(self, *args, **kwargs):
        self.calls = getattr(self, "calls", 0) + 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise KeyError("simulated crash")
        return super().attribute(*args, **kwargs)


# ----------------------------------------------------------------------------- single process


@pytest.mark.parametrize("make", [lambda m: SmoothGrad(m, n=4), lambda m: NoiseGrad(m, n=3)],
                         ids=["smoothgrad", "noisegrad"])
def test_result_equals_per_example_calls_with_documented_seeds(tmp_path, make):
    x, y = data(10)
    explainer = make(model())
    out = tmp_path / "a.pt"
    a = explain_dataset(explainer, TensorDataset(x, y), out, batch_size=3, shard_size=4,
                        seed=7, progress=False)
    assert a.shape == x.shape and a.dtype == x.dtype and a.device.type == "cpu"
    assert torch.equal(a, per_example(explainer, x, y, seed=7))
    saved = torch.load(out, weights_only=True)
    assert torch.equal(saved["attributions"], a) and saved["config"]["seed"] == 7
    assert not (tmp_path / "a.pt.parts").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_result_does_not_depend_on_batch_or_shard_size(tmp_path):
    x, y = data(9)
    sg = SmoothGrad(model(), n=4)
    runs = [
        explain_dataset(sg, TensorDataset(x, y), tmp_path / f"{b}-{s}.pt", batch_size=b,
                        shard_size=s, progress=False)
        for b, s in [(1, 2), (4, 3), (16, 100)]
    ]
    assert all(torch.equal(runs[0], r) for r in runs[1:])
    other_seed = explain_dataset(sg, TensorDataset(x, y), tmp_path / "seed1.pt", batch_size=4,
                                 seed=1, progress=False)
    assert not torch.equal(runs[0], other_seed)


def test_bare_tensor_explains_the_predicted_class(tmp_path):
    x, _ = data(5)
    sg = SmoothGrad(model(), n=4)
    a = explain_dataset(sg, x, tmp_path / "a.pt", batch_size=2, progress=False)
    assert torch.equal(a, per_example(sg, x, None, seed=0))
    one = explain_dataset(sg, TensorDataset(x), tmp_path / "b.pt", batch_size=2, progress=False)
    assert torch.equal(a, one)


def test_gradient_is_called_on_aligned_batches(tmp_path):
    x, y = data(10)
    grad = Gradient(model())
    a = explain_dataset(grad, TensorDataset(x, y), tmp_path / "g.pt", batch_size=3,
                        shard_size=5, progress=False)
    # batches [0,3) [3,5) [5,8) [8,10): cut at shard starts, whatever the world size
    ref = torch.cat([grad.attribute(x[i:j], y[i:j]) for i, j in [(0, 3), (3, 5), (5, 8),
                                                                (8, 10)]])
    assert torch.equal(a, ref)
    torch.testing.assert_close(a, grad.attribute(x, y), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("num_shards, world", [(1, 1), (6, 2), (5, 2), (7, 3), (2, 4)])
def test_ranks_share_the_shards_without_duplicates(num_shards, world):
    per_rank = [_rank_shards(num_shards, world, r) for r in range(world)]
    flat = [s for shards in per_rank for s in shards]
    assert sorted(flat) == list(range(num_shards))  # every shard once: no padding repeats
    for r, shards in enumerate(per_rank):  # and in DistributedSampler's order
        sampler = list(DistributedSampler(range(num_shards), num_replicas=world, rank=r,
                                          shuffle=False))
        assert shards == sampler[: len(shards)]


def test_crash_then_rerun_reuses_finished_shards(tmp_path, caplog):
    x, y = data(12)
    out = tmp_path / "a.pt"
    crashing = Crashing(model(), n=4)
    # one call per batch, batches [0,2) [2,3) | [3,5) [5,6) | [6,8) ...: the fifth call, the
    # first batch of shard [6,9), fails after shards [0,3) and [3,6) were written
    crashing.fail_at = 5
    with pytest.raises(KeyError, match="simulated crash"):
        explain_dataset(crashing, TensorDataset(x, y), out, batch_size=2, shard_size=3,
                        progress=False)
    assert not out.exists()  # never a partial output
    parts = sorted(p.name for p in (tmp_path / "a.pt.parts").glob("shard-*.pt"))
    assert parts == ["shard-0000000000-0000000003.pt", "shard-0000000003-0000000006.pt"]

    crashing.fail_at, crashing.calls = None, 0
    with caplog.at_level(logging.INFO, logger="mollify.distributed"):
        a = explain_dataset(crashing, TensorDataset(x, y), out, batch_size=2, shard_size=3,
                            progress=False)
    assert counts(caplog.text) == (2, 0, 2)
    assert crashing.calls == 4  # only the 4 batches of the two missing shards
    assert torch.equal(a, per_example(SmoothGrad(model(), n=4), x, y, seed=0))
    assert not (tmp_path / "a.pt.parts").exists()


@pytest.mark.parametrize("change", [{"seed": 1}, {"n": 5}, {"weights": True}],
                         ids=["seed", "n", "model weights"])
def test_changed_config_redoes_stale_shards(tmp_path, caplog, change):
    x, y = data(8)
    out = tmp_path / "a.pt"
    first = Crashing(model(), n=4)
    first.fail_at = 3  # one call per shard of 2: shards [0,2) [2,4) written
    with pytest.raises(KeyError):
        explain_dataset(first, TensorDataset(x, y), out, batch_size=2, shard_size=2,
                        progress=False)
    assert len(list((tmp_path / "a.pt.parts").glob("shard-*.pt"))) == 2

    net = model()
    if change.get("weights"):
        with torch.no_grad():
            net[0].bias.add_(0.1)
    second = Crashing(net, n=change.get("n", 4))
    seed = change.get("seed", 0)
    with caplog.at_level(logging.INFO, logger="mollify.distributed"):
        a = explain_dataset(second, TensorDataset(x, y), out, batch_size=2, shard_size=2,
                            seed=seed, progress=False)
    assert counts(caplog.text) == (4, 2, 0)  # all computed, the two old shards replaced
    fresh = explain_dataset(SmoothGrad(net, n=change.get("n", 4)), TensorDataset(x, y),
                            tmp_path / "fresh.pt", batch_size=2, seed=seed, progress=False)
    assert torch.equal(a, fresh)


def test_existing_output_is_reused_or_refused(tmp_path, caplog):
    x, y = data(4)
    out = tmp_path / "a.pt"
    sg = Crashing(model(), n=4)
    a = explain_dataset(sg, TensorDataset(x, y), out, batch_size=2, progress=False)
    sg.calls = 0
    (tmp_path / "a.pt.parts").mkdir()  # as if a crash came between the merge and the cleanup
    with caplog.at_level(logging.INFO, logger="mollify.distributed"):
        again = explain_dataset(sg, TensorDataset(x, y), out, batch_size=2, progress=False)
    assert sg.calls == 0 and torch.equal(a, again) and "nothing to do" in caplog.text
    assert not (tmp_path / "a.pt.parts").exists()

    stamp = out.stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="output .*overwrite=True"):
        explain_dataset(sg, TensorDataset(x, y), out, batch_size=2, seed=3, progress=False)
    assert out.stat().st_mtime_ns == stamp  # untouched
    b = explain_dataset(sg, TensorDataset(x, y), out, batch_size=2, seed=3, overwrite=True,
                        progress=False)
    assert not torch.equal(a, b)
    assert torch.equal(torch.load(out, weights_only=True)["attributions"], b)


def test_uses_an_existing_process_group_and_keeps_it(tmp_path):
    x, y = data(5)
    sg = SmoothGrad(model(), n=4)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1)
    try:
        a = explain_dataset(sg, TensorDataset(x, y), tmp_path / "a.pt", batch_size=2,
                            shard_size=2, progress=False)
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
    assert torch.equal(a, per_example(sg, x, y, seed=0))


def test_inputs_of_different_shapes_are_refused(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten())  # takes images of any size
    items = [(torch.rand(1, 8, 8), 0), (torch.rand(1, 6, 6), 1)]
    with pytest.raises(ValueError, match="same shape"):
        explain_dataset(SmoothGrad(net, n=2), items, tmp_path / "a.pt", batch_size=2,
                        progress=False)
    assert not (tmp_path / "a.pt").exists()


class _Stream(IterableDataset):
    def __iter__(self):
        return iter([])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
        ({"shard_size": 0}, ValueError, "shard_size must be >= 1"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"num_workers": -1}, ValueError, "num_workers must be >= 0"),
        ({"progress": "yes"}, TypeError, "progress must be a bool"),
        ({"output": "missing/a.pt"}, ValueError, "output's directory .* does not exist"),
        ({"output": "."}, ValueError, "output must be a file path"),
        ({"output": 3}, TypeError, "output must be a str or os.PathLike"),
        ({"dataset": [torch.rand(1, 8, 8)]}, TypeError, "dataset items must be"),
        ({"dataset": [(0.5, 1)]}, TypeError, "dataset item 0: the input must be a torch.Tensor"),
        ({"dataset": {"x": 1}}, TypeError, "dataset must be a map-style"),
        ({"dataset": _Stream()}, TypeError, "dataset must be a map-style"),
        ({"dataset": torch.rand(0, 1, 8, 8)}, ValueError, "dataset must hold at least one"),
        ({"explainer": "smoothgrad"}, TypeError, "explainer must be a mollify.explain"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, monkeypatch, kwargs, error, match):
    monkeypatch.chdir(tmp_path)
    x, y = data(2)
    args = {"explainer": SmoothGrad(model(), n=2), "dataset": TensorDataset(x, y),
            "output": tmp_path / "a.pt", "batch_size": 2, "progress": False, **kwargs}
    with pytest.raises(error, match=match):
        explain_dataset(args.pop("explainer"), args.pop("dataset"), args.pop("output"), **args)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_main_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "torchrun" in capsys.readouterr().out


# ----------------------------------------------------------------------------- several processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    """One thread per process, this checkout first on the path, no inherited torchrun variables."""
    e = {k: v for k, v in os.environ.items()
         if k not in {"WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}}
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
             PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [e.get("PYTHONPATH")])]))
    return e


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
            "--master_addr=127.0.0.1", f"--master_port={free_port()}", *args]


def children(pid: int) -> list[int]:
    """Child pids of ``pid`` (Linux /proc); torchrun starts its workers in their own sessions."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def kill_if(pid: int, marker: str) -> None:
    """SIGKILL ``pid`` if it is still one of ours (its command line holds ``marker``)."""
    try:
        if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass


def stop(proc: subprocess.Popen, marker: str) -> None:
    """End a torchrun launch and its workers, whatever state they are in."""
    workers = children(proc.pid)
    if proc.poll() is None:
        proc.terminate()  # torchrun's agent stops its workers on SIGTERM
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for pid in workers:
        kill_if(pid, marker)


def launch(cmd: list[str], log: Path, marker: str, timeout: float = 240) -> str:
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env(), stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        finally:
            stop(proc, marker)
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    return text


def test_torchrun_two_ranks_equal_one_process(tmp_path):
    args = ["--model", "untrained", "--limit", "40", "--samples", "8", "--batch-size", "8",
            "--shard-size", "8", "--seed", "3", "--threads", "1", "--no-progress"]
    out2 = tmp_path / "two.pt"
    text = launch(torchrun("-m", "mollify.distributed", str(out2), *args), tmp_path / "log",
                  marker=str(out2))
    assert counts(text) == (5, 0, 0) and "on 2 rank(s)" in text
    assert main([str(tmp_path / "one.pt"), *args]) == 0
    two = torch.load(out2, weights_only=True)
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    assert two["attributions"].shape == (40, 1, 8, 8)
    assert torch.equal(two["attributions"], one["attributions"])
    assert two["fingerprint"] == one["fingerprint"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log", "one.pt", "two.pt"]


SLOW_SCRIPT = """
import logging, os, sys, time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from mollify.data import small_cnn
from mollify.distributed import explain_dataset
from mollify.explain import SmoothGrad

torch.set_num_threads(1)
output, delay = sys.argv[1], float(sys.argv[2])
Path(f"{output}.pid{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))


class SlowSmoothGrad(SmoothGrad):
    def attribute(self, *args, **kwargs):
        time.sleep(delay)
        return super().attribute(*args, **kwargs)


logging.basicConfig(level=logging.INFO, format="%(message)s")
x = torch.rand(N_EXAMPLES, 1, 8, 8, generator=torch.Generator().manual_seed(0))
y = torch.arange(N_EXAMPLES) % 10
explain_dataset(SlowSmoothGrad(small_cnn(width=2, seed=0), n=4), TensorDataset(x, y), output,
                batch_size=2, shard_size=SHARD_SIZE, progress=False)
"""


def test_killed_rank_then_rerun_loses_nothing(tmp_path):
    n, shard = 24, 2  # 12 shards, 6 per rank, 0.4 s each: killed after 3 shards
    script = tmp_path / "slow.py"
    script.write_text(SLOW_SCRIPT.replace("N_EXAMPLES", str(n)).replace("SHARD_SIZE", str(shard)))
    out = tmp_path / "a.pt"
    parts = tmp_path / "a.pt.parts"
    pid1 = tmp_path / "a.pt.pid1"
    with open(tmp_path / "log", "w") as fh:
        proc = subprocess.Popen(torchrun(str(script), str(out), "0.2"), env=env(), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while not (pid1.exists() and pid1.read_text() and len(list(parts.glob("shard-*.pt")))
                       >= 3):
                assert proc.poll() is None, (tmp_path / "log").read_text()[-4000:]
                assert time.monotonic() < deadline, "no shard was written in time"
                time.sleep(0.02)
            assert not out.exists()
            os.kill(int(pid1.read_text()), signal.SIGKILL)  # rank 1 dies mid-run
            proc.wait(timeout=60)
        finally:
            stop(proc, str(script))
            for rank in (0, 1):
                pid = tmp_path / f"a.pt.pid{rank}"
                if pid.exists() and pid.read_text():
                    kill_if(int(pid.read_text()), str(script))
    assert proc.returncode != 0
    assert not out.exists()  # no partial output
    survived = sorted(p.name for p in parts.glob("shard-*.pt"))
    assert 3 <= len(survived) < n // shard

    # rerun with another world size (one process): reuses every finished shard
    text = launch([sys.executable, str(script), str(out), "0"], tmp_path / "log2",
                  marker=str(script))
    assert counts(text) == (n // shard - len(survived), 0, len(survived))
    x = torch.rand(n, 1, 8, 8, generator=gen(0))
    y = torch.arange(n) % 10
    ref = explain_dataset(SmoothGrad(model(), n=4), TensorDataset(x, y), tmp_path / "ref.pt",
                          batch_size=5, progress=False)
    assert torch.equal(torch.load(out, weights_only=True)["attributions"], ref)
    assert not parts.exists()
