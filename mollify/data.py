"""Small data and models that need no download.

* :func:`digits` — scikit-learn's bundled 8×8 handwritten digits (1797 images) as tensors.
* :func:`small_cnn`, :func:`small_mlp` — tiny ReLU networks, seeded without touching the global
  random state.
* :func:`trained_digits_cnn` — the book's reference classifier: trained deterministically on
  first use (a few seconds on two CPU cores), then loaded from the cache.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from mollify._cache import cache_dir, cached_model
from mollify._validation import check_int, check_real

__all__ = [
    "cache_dir",
    "digits",
    "small_cnn",
    "small_mlp",
    "trained_digits_cnn",
    "train_classifier",
    "accuracy",
]


def digits(
    *, test_fraction: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return scikit-learn's 8×8 digits split into train and test sets.

    Pixels (integers 0–16 in the source) are divided by 16, so images lie in [0, 1]. The split is
    stratified by class and fixed by ``seed``: the same call always returns the same tensors.

    Args:
        test_fraction: share of the 1797 images held out for testing, in (0, 1).
        seed: seed of the split.

    Returns:
        ``(x_train, y_train, x_test, y_test)``: float32 images shaped ``(N, 1, 8, 8)`` and int64
        labels shaped ``(N,)``. With the defaults N = 1347 (train) and 450 (test).

    Raises:
        ValueError, TypeError: on a ``test_fraction`` outside (0, 1) or a non-int ``seed``.

    >>> x_train, y_train, x_test, y_test = digits()
    >>> tuple(x_train.shape), x_train.dtype, y_test.dtype
    ((1347, 1, 8, 8), torch.float32, torch.int64)
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    test_fraction = check_real("test_fraction", test_fraction, low=0, high=1, low_open=True,
                               high_open=True)
    seed = check_int("seed", seed, minimum=0)
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    idx = torch.arange(len(y)).numpy()
    train_idx, test_idx = train_test_split(
        idx, test_size=test_fraction, random_state=seed, stratify=y.numpy()
    )
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return x[train_idx], y[train_idx], x[test_idx], y[test_idx]


def _seeded(build, seed: int | None) -> nn.Module:
    """Call ``build()`` with torch's global RNG seeded by ``seed``, then restore the RNG state."""
    if seed is None:
        return build()
    seed = check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def small_cnn(
    num_classes: int = 10, *, in_channels: int = 1, width: int = 16, seed: int | None = None
) -> nn.Sequential:
    """A tiny ReLU convnet for 8×8 images: two 3×3 convolutions, a 2×2 max-pool, two linear layers.

    ``conv(in→w) → ReLU → conv(w→2w) → ReLU → maxpool 2 → flatten → linear(32w→64) → ReLU →
    linear(64→classes)``. It expects 8×8 images (4×4 after pooling), like :func:`digits`.

    Args:
        num_classes: number of output logits (>= 2).
        in_channels: image channels.
        width: channels of the first convolution.
        seed: if given, initialize the weights from this seed without changing torch's global
            random state; ``None`` uses the global RNG like any ``nn.Module``.

    Returns:
        An ``nn.Sequential`` mapping ``(B, in_channels, 8, 8)`` to logits ``(B, num_classes)``.

    >>> small_cnn(seed=0)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    in_channels = check_int("in_channels", in_channels, minimum=1)
    width = check_int("width", width, minimum=1)

    def build() -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    return _seeded(build, seed)


def small_mlp(
    in_features: int = 64,
    out_features: int = 10,
    *,
    hidden: int = 64,
    depth: int = 2,
    seed: int | None = None,
) -> nn.Sequential:
    """A fully connected ReLU network: flatten, ``depth`` hidden layers of width ``hidden``, linear.

    With ``in_features=1, out_features=1`` it is a function R → R, the book's first example of a
    piecewise-linear network.

    Args:
        in_features: size of the flattened input.
        out_features: number of outputs.
        hidden: width of each hidden layer.
        depth: number of hidden layers (>= 1).
        seed: as in :func:`small_cnn`.

    Returns:
        An ``nn.Sequential`` mapping ``(B, ...)`` with ``in_features`` entries per row to
        ``(B, out_features)``.

    >>> small_mlp(1, 1, hidden=8, seed=0)(torch.zeros(5, 1)).shape
    torch.Size([5, 1])
    """
    in_features = check_int("in_features", in_features, minimum=1)
    out_features = check_int("out_features", out_features, minimum=1)
    hidden = check_int("hidden", hidden, minimum=1)
    depth = check_int("depth", depth, minimum=1)

    def build() -> nn.Sequential:
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, out_features))
        return nn.Sequential(*layers)

    return _seeded(build, seed)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of rows of ``x`` whose arg-max logit equals the label in ``y``."""
    return (model(x).argmax(dim=1) == y).float().mean().item()


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 30,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train ``model`` in place with Adam on cross-entropy; deterministic for a given ``seed``.

    Mini-batches are shuffled with a private ``torch.Generator``; the global RNG is not used.

    Args:
        model: classifier mapping ``x`` to logits.
        x, y: training inputs ``(N, ...)`` and int64 labels ``(N,)``.
        epochs, lr, batch_size: the usual.
        seed: seed of the shuffling.
        progress: show a tqdm bar over epochs.

    Returns:
        The mean training loss of each epoch.
    """
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    lr = check_real("lr", lr, low=0, low_open=True)
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in tqdm(range(epochs), desc="training", disable=not progress, leave=False):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = perm[start : start + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    model.eval()
    return losses


def trained_digits_cnn(
    *, cache: str | Path | None = None, retrain: bool = False, progress: bool = True
) -> nn.Sequential:
    """The book's trained digits classifier (:func:`small_cnn`, ≥ 97 % test accuracy).

    Trained deterministically (weights seed 0, shuffling seed 0, Adam, 30 epochs) on the training
    split of :func:`digits` the first time it is asked for, which takes seconds on a laptop CPU;
    afterwards loaded from ``<cache>/digits_cnn_v1.pt`` with ``weights_only=True``. A corrupt or
    incompatible cache file is retrained and replaced with a ``RuntimeWarning``.

    Args:
        cache: cache folder; defaults to :func:`cache_dir` (``$MOLLIFY_CACHE`` overrides).
        retrain: train again even if a cached copy exists.
        progress: show a progress bar while training.

    Returns:
        The model on the CPU in eval mode.

    >>> model = trained_digits_cnn(progress=False)
    >>> model.training
    False
    """

    def train(model: nn.Module) -> dict:
        x_train, y_train, x_test, y_test = digits()
        losses = train_classifier(model, x_train, y_train, progress=progress)
        return {"final_loss": losses[-1], "test_accuracy": accuracy(model, x_test, y_test)}

    return cached_model(
        "digits_cnn_v1",
        lambda: small_cnn(seed=0),
        train,
        directory=Path(cache) if cache is not None else None,
        retrain=retrain,
    )
