"""Small data and models that need no download.

* :func:`digits` — scikit-learn's bundled 8×8 handwritten digits (1797 images) as tensors.
* :func:`shapes` — generated 16×16 images whose class is a small pattern on a cluttered
  background, with masks marking the pattern: explanations with a known ground truth.
* :func:`small_cnn`, :func:`small_mlp` — tiny ReLU networks, seeded without touching the global
  random state; :func:`resnet` — a ResNet-style convnet for any image size (64×64, 224×224), the
  benchmarks' stand-in for real vision models.
* :func:`trained_digits_cnn` — the book's reference classifier: trained deterministically on
  first use (a few seconds on two CPU cores), then loaded from the cache;
  :func:`trained_shapes_cnn` is its counterpart for :func:`shapes`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from mollify._cache import cache_dir, cached_model
from mollify._validation import check_choice, check_int, check_real

__all__ = [
    "cache_dir",
    "digits",
    "shapes",
    "SHAPE_CLASSES",
    "small_cnn",
    "small_mlp",
    "resnet",
    "trained_digits_cnn",
    "trained_shapes_cnn",
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


#: Names of the :func:`shapes` classes, in label order.
SHAPE_CLASSES: tuple[str, ...] = ("plus", "cross", "square", "diagonal")

# The class patterns (3×3) and the distractor strokes (2×2). Every distractor fits in a 2×2 box
# and every pattern spans 3×3, and objects never touch (not even diagonally), so no distractor
# and no combination of distractors can look like a class pattern.
_PATTERNS = torch.tensor(
    [
        [[0, 1, 0], [1, 1, 1], [0, 1, 0]],  # plus
        [[1, 0, 1], [0, 1, 0], [1, 0, 1]],  # cross
        [[1, 1, 1], [1, 0, 1], [1, 1, 1]],  # square outline
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],  # diagonal line
    ],
    dtype=torch.bool,
)
_DISTRACTORS = torch.tensor(
    [
        [[1, 1], [0, 0]],  # horizontal dash
        [[1, 0], [1, 0]],  # vertical dash
        [[1, 0], [0, 1]],  # diagonal dash
        [[0, 1], [1, 0]],  # anti-diagonal dash
        [[1, 1], [1, 0]],  # four corners
        [[1, 1], [0, 1]],
        [[1, 0], [1, 1]],
        [[0, 1], [1, 1]],
    ],
    dtype=torch.bool,
)
_SPLITS = ("train", "test")


def _stamp(stamps: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, size: int) -> torch.Tensor:
    """Place ``stamps[i]`` (k×k, bool) with its top-left corner at ``(rows[i], cols[i])``."""
    n, k = stamps.shape[0], stamps.shape[-1]
    offsets = torch.arange(k)
    r = rows[:, None, None] + offsets[None, :, None]
    c = cols[:, None, None] + offsets[None, None, :]
    canvas = torch.zeros(n, size, size, dtype=torch.bool)
    canvas[torch.arange(n)[:, None, None], r, c] = stamps
    return canvas


def shapes(
    n: int = 1000,
    *,
    split: str = "train",
    size: int = 16,
    noise: float = 0.3,
    distractors: int = 4,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generated images whose class is a small pattern at a random place on a cluttered background.

    Each image holds one 3×3 class pattern (:data:`SHAPE_CLASSES`: 0 ``plus``, 1 ``cross``,
    2 ``square`` outline, 3 ``diagonal`` line) at a uniformly random position, drawn at intensity
    1 on a background of uniform noise in ``[0, noise]``, plus a uniformly random number (0 to
    ``distractors``) of distractor strokes, also at intensity 1: dashes (two pixels, any of four
    directions) and corners (three pixels of a 2×2 square). Objects never touch, not even at a
    corner, so every pattern and stroke is its own 8-connected blob and no stroke or group of
    strokes looks like a class pattern. The background (noise, strokes, their number) and the
    pattern's position are drawn independently of the label, so **the class is decided by the
    pattern's pixels alone**; ``mask`` marks exactly those pixels: the ground truth an
    explanation should highlight (compare with :func:`mollify.metrics.localization`).

    Labels are balanced: ``n // 4`` or ``n // 4 + 1`` of each class, in random order.

    A generated set has no fixed split; ``split`` chooses one of two independent random streams,
    so ``shapes(split="train")`` and ``shapes(split="test")`` never share a draw. The same
    arguments always give the same tensors (a private ``torch.Generator`` seeded by
    ``2·seed + (split == "test")``; the global RNG is not used).

    Args:
        n: number of images (>= 1).
        split: ``"train"`` or ``"test"``.
        size: side ``S`` of the square images (>= 8).
        noise: largest background intensity, in [0, 1).
        distractors: largest number of distractor strokes per image (>= 0).
        seed: seed of the set.

    Returns:
        ``(x, y, mask)``: float32 images ``(n, 1, S, S)`` in [0, 1], int64 labels ``(n,)`` in
        ``{0, 1, 2, 3}``, and bool masks ``(n, 1, S, S)`` that are ``True`` exactly on the
        pattern's pixels (``x`` is 1 there, and on the strokes' pixels).

    Raises:
        ValueError, TypeError: on an argument of the wrong type or outside its range.

    >>> x, y, mask = shapes(8, seed=0)
    >>> tuple(x.shape), x.dtype, y.dtype, mask.dtype
    ((8, 1, 16, 16), torch.float32, torch.int64, torch.bool)
    >>> bool((x[mask] == 1).all()), mask.flatten(1).sum(1).tolist() == [
    ...     [5, 5, 8, 3][c] for c in y]
    (True, True)
    """
    n = check_int("n", n, minimum=1)
    split = check_choice("split", split, _SPLITS)
    size = check_int("size", size, minimum=8)
    noise = check_real("noise", noise, low=0, high=1, high_open=True)
    distractors = check_int("distractors", distractors, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    gen = torch.Generator().manual_seed(2 * seed + _SPLITS.index(split))
    k = len(SHAPE_CLASSES)

    y = (torch.arange(n) % k)[torch.randperm(n, generator=gen)]
    rows = torch.randint(0, size - 2, (n,), generator=gen)
    cols = torch.randint(0, size - 2, (n,), generator=gen)
    pattern = _stamp(_PATTERNS[y], rows, cols, size)
    # ``taken`` (padded by one pixel on each side) is the union of every object's box grown by one
    # pixel; a stroke goes only where none of its pixels is taken, so objects never touch. The
    # pattern's whole 3×3 box counts, whatever the class, so where strokes may fall does not
    # depend on the label.
    taken = _stamp(torch.ones(n, 5, 5, dtype=torch.bool), rows, cols, size + 2)
    ink = pattern.clone()
    grown_stroke = torch.ones(n, 4, 4, dtype=torch.bool)
    count = torch.randint(0, distractors + 1, (n,), generator=gen)
    for slot in range(distractors):
        pending = count > slot
        for _ in range(4):  # a few tries per stroke; a stroke with no room is left out
            kind = torch.randint(0, len(_DISTRACTORS), (n,), generator=gen)
            r = torch.randint(0, size - 1, (n,), generator=gen)
            c = torch.randint(0, size - 1, (n,), generator=gen)
            stroke = _stamp(_DISTRACTORS[kind], r, c, size)
            fits = pending & ~(stroke & taken[:, 1:-1, 1:-1]).flatten(1).any(dim=1)
            ink |= stroke & fits[:, None, None]
            taken |= _stamp(grown_stroke, r, c, size + 2) & fits[:, None, None]
            pending &= ~fits
    background = noise * torch.rand(n, size, size, generator=gen)
    x = torch.where(ink, torch.ones(()), background)
    return x[:, None].float(), y, pattern[:, None]


def _seeded(build, seed: int | None) -> nn.Module:
    """Call ``build()`` with torch's global RNG seeded by ``seed``, then restore the RNG state."""
    if seed is None:
        return build()
    seed = check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def small_cnn(
    num_classes: int = 10,
    *,
    in_channels: int = 1,
    width: int = 16,
    image_size: int = 8,
    seed: int | None = None,
) -> nn.Sequential:
    """A tiny ReLU convnet: two 3×3 convolutions, a 2×2 max-pool, two linear layers.

    ``conv(in→w) → ReLU → conv(w→2w) → ReLU → maxpool 2 → flatten → linear(2w·(S/2)²→64) → ReLU →
    linear(64→classes)`` for ``S × S`` images. The default ``S = 8`` fits :func:`digits` (4×4
    after pooling); ``image_size=16`` fits :func:`shapes`. The layers and their parameter names
    are the same for every size; only the width of the first linear layer changes.

    Args:
        num_classes: number of output logits (>= 2).
        in_channels: image channels.
        width: channels of the first convolution.
        image_size: side ``S`` of the square input images (an even number >= 2).
        seed: if given, initialize the weights from this seed without changing torch's global
            random state; ``None`` uses the global RNG like any ``nn.Module``.

    Returns:
        An ``nn.Sequential`` mapping ``(B, in_channels, S, S)`` to logits ``(B, num_classes)``.

    Raises:
        ValueError, TypeError: on a non-int or out-of-range argument, or an odd ``image_size``.

    >>> small_cnn(seed=0)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> small_cnn(4, image_size=16, seed=0)(torch.zeros(2, 1, 16, 16)).shape
    torch.Size([2, 4])
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    in_channels = check_int("in_channels", in_channels, minimum=1)
    width = check_int("width", width, minimum=1)
    image_size = check_int("image_size", image_size, minimum=2)
    if image_size % 2:
        raise ValueError(f"image_size must be an even number, got {image_size}")
    pooled = (image_size // 2) ** 2

    def build() -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(2 * width * pooled, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    return _seeded(build, seed)


class _BasicBlock(nn.Module):
    """ResNet's basic block: x ↦ relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet(
    num_classes: int = 10,
    *,
    in_channels: int = 3,
    width: int = 16,
    blocks: tuple[int, ...] = (1, 1, 1, 1),
    seed: int | None = None,
) -> nn.Sequential:
    """A ResNet-style convnet (He et al., arXiv 1512.03385) for images of any size ≥ 32.

    Stem ``conv 3×3 (stride 2) → BN → ReLU``, then one stage per entry of ``blocks`` with that
    many basic blocks; stage k has ``width·2^k`` channels and halves the resolution (except the
    first); then global average pooling and a linear layer. The default (4 stages of one block,
    width 16) is a ResNet-10 at a quarter of ResNet-18's width: 0.3 M parameters, the same depth
    pattern and the same operations (convolutions, BatchNorm, residual sums) as the models
    explained in practice, small enough to time on a CPU at 64×64 and 224×224. Random weights
    are fine for timing; use ``.eval()`` so BatchNorm uses its running statistics.

    Args:
        num_classes: number of output logits (>= 2).
        in_channels: image channels.
        width: channels of the first stage (>= 1).
        blocks: basic blocks per stage (one to six stages, each >= 1).
        seed: initialize the weights from this seed without changing torch's global random
            state (``None``: the global RNG).

    Returns:
        An ``nn.Sequential`` mapping ``(B, in_channels, H, W)`` to logits ``(B, num_classes)``.

    Raises:
        ValueError, TypeError: on a non-int or out-of-range argument.

    >>> net = resnet(seed=0).eval()
    >>> net(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 10])
    >>> sum(p.numel() for p in net.parameters())
    308826
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    in_channels = check_int("in_channels", in_channels, minimum=1)
    width = check_int("width", width, minimum=1)
    if not isinstance(blocks, (tuple, list)) or not 1 <= len(blocks) <= 6:
        raise ValueError(f"blocks must be a tuple of 1 to 6 block counts, got {blocks!r}")
    blocks = tuple(check_int("blocks", b, minimum=1) for b in blocks)

    def build() -> nn.Sequential:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        cin = width
        for k, count in enumerate(blocks):
            cout = width * 2**k
            for i in range(count):
                layers.append(_BasicBlock(cin, cout, stride=2 if k > 0 and i == 0 else 1))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
        return nn.Sequential(*layers)

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


def trained_shapes_cnn(
    *, cache: str | Path | None = None, retrain: bool = False, progress: bool = True
) -> nn.Sequential:
    """A trained classifier of :func:`shapes` (``small_cnn(4, width=8, image_size=16)``, ≥ 95 %).

    Trained deterministically (weights seed 0, shuffling seed 0, Adam with learning rate 3e-3,
    8 epochs of batches of 64) on ``shapes(2000, split="train")`` the first time it is asked for,
    which takes about ten seconds on two CPU cores; afterwards loaded from
    ``<cache>/shapes_cnn_v1.pt`` with ``weights_only=True``. It scores about 99 % on
    ``shapes(1000, split="test")`` and chance (25 %) once the pattern's pixels are replaced by
    background noise: it looks at the pattern, which makes it the book's test bed for explanations
    with a known ground truth. A corrupt or incompatible cache file is retrained and replaced with
    a ``RuntimeWarning``.

    Args:
        cache: cache folder; defaults to :func:`cache_dir` (``$MOLLIFY_CACHE`` overrides).
        retrain: train again even if a cached copy exists.
        progress: show a progress bar while training.

    Returns:
        The model on the CPU in eval mode, mapping ``(B, 1, 16, 16)`` to logits ``(B, 4)``.

    >>> model = trained_shapes_cnn(progress=False)
    >>> x, y, mask = shapes(200, split="test")
    >>> model.training, accuracy(model, x, y) >= 0.95
    (False, True)
    """

    def train(model: nn.Module) -> dict:
        x_train, y_train, _ = shapes(2000, split="train")
        x_test, y_test, _ = shapes(1000, split="test")
        losses = train_classifier(model, x_train, y_train, epochs=8, lr=3e-3, progress=progress)
        return {"final_loss": losses[-1], "test_accuracy": accuracy(model, x_test, y_test)}

    return cached_model(
        "shapes_cnn_v1",
        lambda: small_cnn(len(SHAPE_CLASSES), width=8, image_size=16, seed=0),
        train,
        directory=Path(cache) if cache is not None else None,
        retrain=retrain,
    )
