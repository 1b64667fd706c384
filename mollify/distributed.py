"""Explaining a whole data set across processes and machines with ``torch.distributed``.

:func:`explain_dataset` runs any explainer of :mod:`mollify.explain` over every example of a data
set, split over the processes that ``torchrun`` starts, and writes one file of attributions. It
can be stopped at any moment (a crash, a killed job, a pre-empted node) and run again: finished
work is kept, nothing is computed twice, and the output file either holds the complete result or
does not exist.

Determinism. Example ``i`` draws its noise from its own generator,
``torch.Generator(device).manual_seed(example_seed(seed, i))`` — a SplitMix64 hash of the pair
``(seed, i)`` — so its attribution depends only on the explainer, the example and its index.
Examples are still explained ``batch_size`` at a time, in one batched call with one generator
per example (``attribute(x, y, generator=[g_i, …])``: the noise of each example from its own
generator, all of them in the same forward/backward passes; with weight noise, which a batch
cannot share, the explainer takes such examples one by one). Batches are cut from the shards, so
the merged result is **bitwise identical for any number of processes**; for models that treat
every row of a batch alike (the book's, on a CPU) it is also bitwise what explaining each
example alone gives, whatever ``shard_size`` and ``batch_size``, and otherwise the same to
rounding. The same device type and torch version give the same bits; CPU and GPU differ in
rounding. One example's attribution, as the file holds it, is reproduced by::

    g = torch.Generator().manual_seed(example_seed(seed, i))
    explainer.attribute(x[i : i + 1], y[i], generator=g)[0]

Shards. Examples are cut into shards of ``shard_size`` consecutive global indices, shard ``s``
holding ``[s·shard_size, min(N, (s+1)·shard_size))``. The shards depend on N and ``shard_size``
only, never on the number of processes, so a run can resume with a different world size. Shard
ids are dealt to the ranks by ``DistributedSampler(range(num_shards), shuffle=False)``, i.e. rank
``r`` of ``W`` gets shards ``r, r + W, r + 2W, …`` (the sampler's padding, which repeats the first
shards to even out the ranks, is dropped: no shard is computed twice). Files::

    <output>                               the merged result (written last, atomically)
    <output>.parts/                        scratch folder, removed after the merge
        shard-0000000000-0000000256.pt     examples [0, 256)
        shard-0000000256-0000000512.pt     examples [256, 512)
        ...

Each shard file is written atomically (temporary file in the same folder, then ``os.replace``; see
:func:`mollify._cache.atomic_save`) and holds ``{"format", "fingerprint", "start", "stop",
"attributions"}``. The *fingerprint* is a SHA-256 over everything that changes the numbers: the
explainer's class and options, the model's architecture and weights, the seed, N, the shape and
dtype of an input, ``batch_size``, the device type and the torch version. On a
rerun, a shard file is reused only if it loads (``weights_only=True``) and its fingerprint and
index range match; otherwise it is computed again and replaced, so a rerun with another seed, ``n``
or model never mixes old and new shards. The fingerprint does not hash the data itself (that
would mean reading the whole data set twice): write to a new ``output`` when the data change.

Merging. After every rank has finished its shards (an ``all_reduce``, which is also how a failure
on one rank is reported on all of them), rank 0 loads the shards in index order, concatenates
them, writes ``output`` atomically and removes ``<output>.parts``; it logs (logger
``mollify.distributed``, level INFO) how many shards were computed, replaced as stale and reused,
and shows a tqdm bar over its own examples (other ranks print nothing). The output is a
``torch.save`` of a dict::

    {"format": 1, "attributions": Tensor (N, *S) on the CPU, dtype of the inputs,
     "fingerprint": str, "config": dict (what went into the fingerprint, readable)}

read with ``torch.load(output, weights_only=True)["attributions"]``. A process killed while writing
a file leaves at most a hidden ``.<name>.*.tmp`` file next to it (the parts folder's are removed
with it; one next to ``output`` may be deleted by hand). If ``output`` already exists
with the same fingerprint, it is returned without computing anything (and a leftover parts folder
is removed); with a different fingerprint :func:`explain_dataset` refuses (``FileExistsError``)
unless ``overwrite=True``, in which case the old file stays intact until the new one replaces it.

Process group. If ``torch.distributed`` is already initialized, its group is used (and left
initialized). Otherwise, if ``WORLD_SIZE`` > 1 (set by ``torchrun``), the group is created from
the usual environment variables (``MASTER_ADDR``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``) with
the ``nccl`` backend when the explainer's model is on a CUDA device and ``gloo`` otherwise, and
destroyed at the end. Without either, everything runs in the calling process. The explainer runs
on its model's device: under ``torchrun`` on GPUs, move the model to :func:`local_device`
(``cuda:$LOCAL_RANK``) first. Every rank returns the merged tensor (loaded from ``output``).

Launching. The demo :func:`main` explains the digits test set with SmoothGrad of the book's CNN::

    # one process
    python -m mollify.distributed attributions.pt     # --help lists the options
    # one machine, 4 processes (one per GPU, or CPU processes with gloo)
    torchrun --nproc_per_node=4 -m mollify.distributed attributions.pt
    # two machines with 4 processes each: run on every machine, node_rank 0 and 1
    torchrun --nnodes=2 --nproc_per_node=4 --node_rank=0 \\
        --rdzv_backend=c10d --rdzv_endpoint=host0.example.org:29500 \\
        -m mollify.distributed /shared/attributions.pt

A script of your own calls :func:`explain_dataset` the same way and is launched with
``torchrun ... script.py``. With several machines, ``output`` (hence ``<output>.parts``) **must
be on storage that every machine sees** (NFS, Lustre, a mounted bucket with atomic renames): the
ranks exchange results only through those files. ``torchrun`` sets ``OMP_NUM_THREADS=1`` for
its workers when it starts several per machine; raise it for CPU-only runs with few processes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, Subset
from tqdm.auto import tqdm

from mollify._cache import atomic_save
from mollify._validation import check_int
from mollify.explain import Explainer, Gradient
from mollify.kernels import Kernel
from mollify.montecarlo import _mix

__all__ = ["explain_dataset", "example_seed", "local_device", "main"]

_FORMAT = 1
_LOG = logging.getLogger(__name__)


def example_seed(seed: int, index: int) -> int:
    """The seed of the generator that explains example ``index`` (SplitMix64 of (seed, index)).

    Args:
        seed: the run's seed (>= 0), as given to :func:`explain_dataset`.
        index: the example's position in the data set (>= 0).

    Returns:
        An int in [0, 2^63), for ``torch.Generator().manual_seed``.

    >>> example_seed(0, 0) == example_seed(0, 0) != example_seed(0, 1)
    True
    """
    seed = check_int("seed", seed, minimum=0)
    index = check_int("index", index, minimum=0)
    return _mix(seed, index)


def local_device() -> torch.device:
    """The device this process should use: ``cuda:$LOCAL_RANK`` if CUDA is available, else CPU.

    ``torchrun`` sets ``LOCAL_RANK`` (the process's number on its machine); outside it, 0.

    >>> local_device().type in {"cpu", "cuda"}
    True
    """
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# helpers


class _Inputs(Dataset):
    """A tensor of inputs as a data set of ``(input, None)`` items."""

    def __init__(self, x: Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, None]:
        return self.x[i], None


def _as_list(items: list) -> list:
    """DataLoader ``collate_fn``: keep the items as they are (targets may be None)."""
    return items


def _check_dataset(dataset: object) -> Dataset | Sequence:
    if isinstance(dataset, Tensor):
        if dataset.dim() < 1:
            raise ValueError("dataset must have a leading axis of examples, got a 0-d tensor")
        return _Inputs(dataset.detach())
    if isinstance(dataset, IterableDataset) or not (
        isinstance(dataset, (Dataset, Sequence)) and not isinstance(dataset, (str, bytes))
    ):
        raise TypeError(
            "dataset must be a map-style torch.utils.data.Dataset (or sequence) of (input, "
            f"target) items, or a tensor of inputs; got {type(dataset).__name__}"
        )
    try:
        len(dataset)
    except TypeError:
        raise TypeError(
            f"dataset must have a length (map-style Dataset with __len__), got "
            f"{type(dataset).__name__}"
        ) from None
    return dataset


def _split_item(item: object, index: int) -> tuple[Tensor, Any]:
    """(input, target) of one data set item; target None when the item has no target."""
    if isinstance(item, (tuple, list)) and len(item) in (1, 2):
        x, t = item[0], (item[1] if len(item) == 2 else None)
    else:
        raise TypeError(
            f"dataset items must be (input, target) pairs, got {type(item).__name__} at index "
            f"{index}" + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
        )
    if not isinstance(x, Tensor):
        raise TypeError(
            f"dataset item {index}: the input must be a torch.Tensor, got {type(x).__name__}"
        )
    return x, t


def _check_output(output: object) -> Path:
    if not isinstance(output, (str, os.PathLike)):
        raise TypeError(f"output must be a str or os.PathLike path, got {type(output).__name__}")
    path = Path(output).expanduser().absolute()
    if path.is_dir():
        raise ValueError(f"output must be a file path, but {path} is a directory")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(
            f"output's directory {parent} does not exist (create it first; with several "
            "machines it must be on shared storage)"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"output's directory {parent} is not writable")
    return path


def _model_device(explainer: Explainer) -> torch.device:
    for t in explainer.model.parameters():
        return t.device
    for t in explainer.model.buffers():
        return t.device
    return torch.device("cpu")


def _model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of the model's architecture (its repr) and every parameter and buffer's bytes."""
    h = hashlib.sha256(repr(model).encode())
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _describe(value: object) -> object:
    if isinstance(value, Kernel):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _config(
    explainer: Explainer, first: Tensor, count: int, seed: int, batch_size: int | None,
    device: torch.device,
) -> dict[str, Any]:
    """Everything that changes the numbers (the data themselves excepted), JSON-serializable."""
    cls = type(explainer)
    return {
        "explainer": f"{cls.__module__}.{cls.__qualname__}",
        "options": {k: _describe(v) for k, v in sorted(explainer._options.items())},
        "model": _model_digest(explainer.model),
        "examples": count,
        "input_shape": list(first.shape),
        "input_dtype": str(first.dtype),
        "seed": seed,
        "batch_size": batch_size,
        "device": device.type,
        "torch": str(torch.__version__),  # a plain str: TorchVersion is no weights_only type
    }


def _fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _rank_shards(num_shards: int, world: int, rank: int) -> list[int]:
    """Shard ids of ``rank``: DistributedSampler's deal, without its padding duplicates."""
    sampler = DistributedSampler(
        range(num_shards), num_replicas=world, rank=rank, shuffle=False, drop_last=False
    )
    # the sampler pads the list range(num_shards) to a multiple of world with repeats from its
    # start; rank r takes positions r, r + world, ...: positions >= num_shards are the repeats
    return [s for k, s in enumerate(sampler) if rank + k * world < num_shards]


def _shard_path(parts: Path, start: int, stop: int) -> Path:
    return parts / f"shard-{start:010d}-{stop:010d}.pt"


def _load(path: Path) -> dict | None:
    """A mollify result file as a dict; None if missing, unreadable or of another format."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - missing, truncated or foreign files are redone, not fatal
        return None
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        return None
    if not isinstance(payload.get("attributions"), Tensor):
        return None
    return payload


def _load_shard(path: Path, fingerprint: str, start: int, stop: int) -> tuple[Tensor | None, bool]:
    """(attributions, stale): the shard if it is valid for this run; ``stale`` if a file existed."""
    if not path.is_file():
        return None, False
    p = _load(path)
    if (
        p is None
        or p.get("fingerprint") != fingerprint
        or p.get("start") != start
        or p.get("stop") != stop
        or p["attributions"].shape[0] != stop - start
    ):
        return None, True
    return p["attributions"], False


def _process_group(device: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, created): join or create the process group (see the module docs)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        local = os.environ.get("LOCAL_RANK")
        if local is not None and device.index is not None and device.index != int(local):
            warnings.warn(
                f"the model is on {device} but LOCAL_RANK={local}; under torchrun put it on "
                "mollify.distributed.local_device() so that each process has its own GPU",
                RuntimeWarning,
                stacklevel=3,
            )
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), True


def _sum(values: list[int], world: int) -> list[int]:
    """All-reduce (sum) a few ints over the ranks; also a barrier. Identity without a group."""
    if world == 1:
        return values
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl" else torch.device("cpu")
    )
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(t)
    return [int(v) for v in t.tolist()]


def _explain_shard(
    explainer: Explainer, data: Dataset | Sequence, start: int, stop: int, *, seed: int,
    batch_size: int, num_workers: int, device: torch.device, bar: tqdm,
) -> Tensor:
    """Attributions (stop − start, *S) of examples [start, stop), on the CPU."""
    loader = DataLoader(
        Subset(data, range(start, stop)), batch_size=batch_size, num_workers=num_workers,
        collate_fn=_as_list,
    )
    out: list[Tensor] = []
    index = start
    for items in loader:
        pairs = [_split_item(item, index + k) for k, item in enumerate(items)]
        # one shape within the batch (before stacking) and across the shard so far
        shapes = {tuple(p[0].shape) for p in pairs}
        if out:
            shapes.add(tuple(out[0].shape[1:]))
        if len(shapes) > 1:
            raise ValueError(
                f"dataset inputs must all have the same shape; examples {start}.."
                f"{index + len(pairs) - 1} have shapes {sorted(shapes)}"
            )
        x = torch.stack([p[0] for p in pairs]).to(device)
        ts = [p[1] for p in pairs]
        if all(t is None for t in ts):
            target = None
        elif any(t is None for t in ts):
            raise TypeError(
                f"dataset items {index}..{index + len(ts) - 1} mix None and class targets"
            )
        else:
            target = torch.stack([torch.as_tensor(t).reshape(()) for t in ts])
        if isinstance(explainer, Gradient):  # draws no noise
            out.append(explainer.attribute(x, target).detach().cpu())
        else:  # example i's noise from its own generator, all examples in one batched call
            gens = [torch.Generator(device=device).manual_seed(_mix(seed, index + k))
                    for k in range(len(pairs))]
            out.append(explainer.attribute(x, target, generator=gens).detach().cpu())
        index += len(items)
        bar.update(len(items))
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# public


def explain_dataset(
    explainer: Explainer,
    dataset: Dataset | Sequence | Tensor,
    output: str | os.PathLike,
    *,
    batch_size: int,
    seed: int = 0,
    shard_size: int = 256,
    num_workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> Tensor:
    """Explain every example of ``dataset``, split over the ranks of ``torchrun``, into one file.

    Call it the same way on every rank (see the module docstring for the launch commands, the
    file layout, resumption and determinism). Example ``i`` gets
    ``explainer.attribute(x_i[None], y_i, generator=torch.Generator(device).manual_seed(
    example_seed(seed, i)))[0]`` (computed ``batch_size`` examples at a time, with a generator
    per example), so the result is the same for any number of processes.

    Args:
        explainer: a :mod:`mollify.explain` explainer (``SmoothGrad``, ``NoiseGrad``, ``MCGM``,
            ``Gradient``, …); it runs on its model's device.
        dataset: a map-style ``Dataset`` (or sequence) whose items are ``(input, target)`` pairs
            with inputs shaped ``S`` (no batch axis), e.g. ``TensorDataset(x, y)``; an item
            ``(input,)`` or a bare tensor of inputs ``(N, *S)`` means target None (the predicted
            class).
        output: path of the result file; its folder must exist (shared storage for several
            machines). ``<output>.parts/`` holds the shards meanwhile.
        batch_size: examples per batched call of the explainer (>= 1). Does not change the
            noise of any example.
        seed: seed of the run (>= 0); example ``i`` uses ``example_seed(seed, i)``.
        shard_size: examples per shard (>= 1): the unit of work per rank, and of what a crash
            can lose.
        num_workers: ``DataLoader`` worker processes per rank for loading the data (>= 0).
        overwrite: replace an existing ``output`` written with another configuration (a file
            with the same configuration is returned as it is).
        progress: show a tqdm bar on rank 0 (other ranks never print).

    Returns:
        Attributions ``(N, *S)`` on the CPU, in dataset order, with the inputs' dtype — on every
        rank (rank 0 writes ``output``; the other ranks load it after the merge).

    Raises:
        TypeError: if ``explainer`` is not an Explainer, ``dataset`` is not a map-style data set
            or tensor (or yields items that are not ``(input, target)``), ``output`` is not a
            path, or an int argument is not an int.
        ValueError: if ``batch_size``/``shard_size`` < 1, ``seed``/``num_workers`` < 0,
            ``dataset`` is empty or its inputs differ in shape, or ``output`` is a directory or
            its folder is missing or read-only.
        FileExistsError: if ``output`` exists with another configuration and not ``overwrite``.
        RuntimeError: on every rank, when another rank failed.

    >>> import tempfile
    >>> from torch.utils.data import TensorDataset
    >>> from mollify import SmoothGrad, small_cnn
    >>> x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> y = torch.arange(6)
    >>> sg = SmoothGrad(small_cnn(width=2, seed=0), n=8)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     a = explain_dataset(sg, TensorDataset(x, y), f"{folder}/sg.pt", batch_size=4,
    ...                         progress=False)
    >>> a.shape
    torch.Size([6, 1, 8, 8])
    >>> g = torch.Generator().manual_seed(example_seed(0, 5))
    >>> torch.equal(a[5], sg.attribute(x[5:6], y[5], generator=g)[0])
    True
    """
    if not isinstance(explainer, Explainer):
        raise TypeError(
            f"explainer must be a mollify.explain.Explainer (e.g. SmoothGrad(model)), got "
            f"{type(explainer).__name__}"
        )
    data = _check_dataset(dataset)
    output = _check_output(output)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    shard_size = check_int("shard_size", shard_size, minimum=1)
    num_workers = check_int("num_workers", num_workers, minimum=0)
    for name, flag in (("overwrite", overwrite), ("progress", progress)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    count = len(data)
    if count == 0:
        raise ValueError("dataset must hold at least one example, got an empty one")
    first, _ = _split_item(data[0], 0)
    device = _model_device(explainer)
    config = _config(explainer, first, count, seed, batch_size, device)
    fingerprint = _fingerprint(config)
    parts = output.with_name(output.name + ".parts")

    rank, world, created = _process_group(device)
    try:
        if output.exists():
            done = _load(output)
            if done is not None and done.get("fingerprint") == fingerprint:
                if rank == 0:
                    shutil.rmtree(parts, ignore_errors=True)
                    _LOG.info("explain_dataset: %s is complete; nothing to do", output)
                return done["attributions"]
            if not overwrite:
                raise FileExistsError(
                    f"output {output} exists and was not written by this configuration "
                    "(explainer, model, seed or data size differ, or it is not a mollify result);"
                    " pass overwrite=True to replace it, or choose another path"
                )

        num_shards = -(-count // shard_size)
        ranges = [(s * shard_size, min(count, (s + 1) * shard_size)) for s in range(num_shards)]
        mine = _rank_shards(num_shards, world, rank)
        error: Exception | None = None
        computed = reused = stale = 0
        bar = tqdm(
            total=sum(ranges[s][1] - ranges[s][0] for s in mine), desc="explain_dataset",
            unit="ex", disable=not (progress and rank == 0), leave=False,
        )
        try:
            for s in mine:
                start, stop = ranges[s]
                path = _shard_path(parts, start, stop)
                shard, old = _load_shard(path, fingerprint, start, stop)
                if shard is not None:
                    reused += 1
                    bar.update(stop - start)
                    continue
                stale += old
                shard = _explain_shard(
                    explainer, data, start, stop, seed=seed, batch_size=batch_size,
                    num_workers=num_workers, device=device, bar=bar,
                )
                atomic_save(
                    {"format": _FORMAT, "fingerprint": fingerprint, "start": start, "stop": stop,
                     "attributions": shard},
                    path,
                )
                computed += 1
        except Exception as err:  # noqa: BLE001 - re-raised below, after telling the other ranks
            error = err
        finally:
            bar.close()
        failed, computed, reused, stale = _sum([error is not None, computed, reused, stale], world)
        if error is not None:
            raise error
        if failed:
            raise RuntimeError(f"explain_dataset failed on {failed} other rank(s); see their logs")

        result: Tensor | None = None
        if rank == 0:
            try:
                _LOG.info(
                    "explain_dataset: %d shards of up to %d examples on %d rank(s): %d computed "
                    "(%d stale ones replaced), %d reused",
                    num_shards, shard_size, world, computed, stale, reused,
                )
                pieces = []
                for start, stop in ranges:
                    shard, _ = _load_shard(_shard_path(parts, start, stop), fingerprint, start,
                                           stop)
                    if shard is None:
                        raise RuntimeError(
                            f"shard [{start}, {stop}) is missing from {parts} after all ranks "
                            "finished; is the folder on storage that every rank sees?"
                        )
                    pieces.append(shard)
                shapes = {tuple(p.shape[1:]) for p in pieces}
                if len(shapes) > 1:
                    raise ValueError(
                        f"dataset inputs must all have the same shape, got {sorted(shapes)}"
                    )
                result = torch.cat(pieces)
                atomic_save(
                    {"format": _FORMAT, "attributions": result, "fingerprint": fingerprint,
                     "config": config},
                    output,
                )
                shutil.rmtree(parts, ignore_errors=True)
            except Exception as err:  # noqa: BLE001 - re-raised below, after telling the others
                error = err
        (failed,) = _sum([error is not None], world)
        if error is not None:
            raise error
        if failed:
            raise RuntimeError("explain_dataset: rank 0 failed to merge the shards; see its log")
        if result is None:
            done = _load(output)
            if done is None or done.get("fingerprint") != fingerprint:
                raise RuntimeError(
                    f"rank {rank} cannot read the merged {output}; is it on shared storage?"
                )
            result = done["attributions"]
        return result
    finally:
        if created:
            dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# command line


def main(argv: list[str] | None = None) -> int:
    """``python -m mollify.distributed OUTPUT``: explain the digits test set into ``OUTPUT``.

    Runs :func:`explain_dataset` on the test split of :func:`mollify.data.digits` (450 images,
    with their true labels as targets) with an explainer of the book's digits CNN, on
    :func:`local_device`. Launch it with ``torchrun`` for several processes (module docstring).
    ``--model trained`` (default) trains and caches the CNN on first use: do that once before a
    multi-process run (``python -c "import mollify; mollify.trained_digits_cnn()"``), or every
    rank trains its own copy. ``--help`` lists the options.

    Returns:
        0 on success (rank 0 prints the output path and the shape of the result).
    """
    from torch.utils.data import TensorDataset

    from mollify.data import digits, small_cnn, trained_digits_cnn
    from mollify.explain import FusionGrad, NoiseGrad, SmoothGrad

    explainers = {"smoothgrad": SmoothGrad, "noisegrad": NoiseGrad, "fusiongrad": FusionGrad,
                  "gradient": Gradient}
    parser = argparse.ArgumentParser(
        prog="python -m mollify.distributed",
        description="Explain the digits test set with torch.distributed (run under torchrun for "
        "several processes); resumable, writes one file atomically.",
    )
    parser.add_argument("output", help="result file (its folder must exist)")
    parser.add_argument("--explainer", choices=sorted(explainers), default="smoothgrad")
    # (not "--n": torchrun's parser would take it for an abbreviation of its --nnodes)
    parser.add_argument("--samples", type=int, default=None,
                        help="the explainer's n: noise samples per example (default: its own)")
    parser.add_argument("--model", choices=("trained", "untrained"), default="trained",
                        help="the cached trained CNN, or small_cnn(seed=0) untrained (fast)")
    parser.add_argument("--limit", type=int, default=None,
                        help="explain only the first LIMIT test images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (default: leave torch's setting)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an output written with another configuration")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.explainer == "gradient" and args.samples is not None:
        parser.error("--samples does not apply to --explainer gradient (it draws no noise)")
    if args.threads is not None:
        torch.set_num_threads(check_int("threads", args.threads, minimum=1))
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    device = local_device()
    model = trained_digits_cnn(progress=False) if args.model == "trained" else small_cnn(seed=0)
    _, _, x, y = digits()
    if args.limit is not None:
        limit = check_int("limit", args.limit, minimum=1)
        x, y = x[:limit], y[:limit]
    options = {} if args.samples is None else {"n": args.samples}
    explainer = explainers[args.explainer](model.to(device), **options)
    result = explain_dataset(
        explainer, TensorDataset(x, y), args.output, batch_size=args.batch_size,
        seed=args.seed, shard_size=args.shard_size, num_workers=args.num_workers,
        overwrite=args.overwrite, progress=not args.no_progress,
    )
    if os.environ.get("RANK", "0") == "0":
        print(f"wrote {args.output}: attributions of shape {tuple(result.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
