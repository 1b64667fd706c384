"""mollify.data.shapes: a generated data set with ground-truth masks, and its trained CNN."""

from __future__ import annotations

import warnings

import pytest
import torch

from mollify import data
from mollify.data import (
    SHAPE_CLASSES,
    accuracy,
    shapes,
    small_cnn,
    trained_shapes_cnn,
)

PATTERNS = data._PATTERNS  # the four 3×3 class patterns, in label order


def _grow(mask: torch.Tensor) -> torch.Tensor:
    """Grow a bool (N, 1, S, S) mask by one pixel in all eight directions."""
    return torch.nn.functional.max_pool2d(mask.float(), 3, stride=1, padding=1) > 0


# --- the generated images -----------------------------------------------------------------------


def test_shapes_dtypes_and_range():
    x, y, mask = shapes(64)
    assert x.shape == (64, 1, 16, 16) and x.dtype == torch.float32
    assert y.shape == (64,) and y.dtype == torch.int64
    assert mask.shape == (64, 1, 16, 16) and mask.dtype == torch.bool
    assert x.min() >= 0 and x.max() == 1
    assert set(y.tolist()) <= set(range(len(SHAPE_CLASSES))) and len(SHAPE_CLASSES) == 4
    x, _, mask = shapes(5, size=24, noise=0.0, distractors=0)
    assert x.shape == mask.shape == (5, 1, 24, 24)
    assert torch.equal(x, mask.float())  # no noise, no strokes: the image is the pattern


def test_shapes_is_deterministic_and_seeded_privately():
    state = torch.get_rng_state()
    a, b = shapes(50, seed=3), shapes(50, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    assert not torch.equal(shapes(50, seed=4)[0], a[0])
    assert not torch.equal(shapes(50, split="test", seed=3)[0], a[0])
    # the two splits of one seed and the splits of neighbouring seeds are different streams
    assert not torch.equal(shapes(50, split="test", seed=0)[0], shapes(50, seed=1)[0])


def test_mask_marks_exactly_the_class_pattern():
    x, y, mask = shapes(300, seed=1)
    assert torch.equal(x[mask], torch.ones(int(mask.sum())))
    for image, label, m in zip(x, y, mask):
        rows = m[0].any(dim=1).nonzero().flatten()
        cols = m[0].any(dim=0).nonzero().flatten()
        r, c = int(rows[0]), int(cols[0])
        assert torch.equal(m[0, r : r + 3, c : c + 3], PATTERNS[label])
        assert int(m.sum()) == int(PATTERNS[label].sum())  # nothing outside the 3×3 box
        assert torch.equal(image[0, r : r + 3, c : c + 3] == 1, PATTERNS[label])


def test_strokes_never_touch_the_pattern_and_are_not_patterns():
    x, _, mask = shapes(500, seed=2)
    ink = x == 1
    strokes = ink & ~mask
    assert strokes.any()  # there is clutter
    assert not (strokes & _grow(mask)).any()  # no stroke pixel touches the pattern
    # every stroke fits in a 2×2 box, so no 3×3 window outside the pattern holds 3 ink pixels on
    # a line (a diagonal, a row or a column): strokes cannot imitate a class pattern
    s = strokes[:, 0].float()
    lines = [
        s[:, :-2, :-2] + s[:, 1:-1, 1:-1] + s[:, 2:, 2:],
        s[:, :-2, 2:] + s[:, 1:-1, 1:-1] + s[:, 2:, :-2],
        s[:, :, :-2] + s[:, :, 1:-1] + s[:, :, 2:],
        s[:, :-2, :] + s[:, 1:-1, :] + s[:, 2:, :],
    ]
    assert all(line.max() < 3 for line in lines)


def test_labels_are_balanced():
    for n in (4, 101, 1000):
        counts = torch.bincount(shapes(n)[1], minlength=4)
        assert counts.sum() == n and counts.max() - counts.min() <= 1


def test_background_and_position_do_not_depend_on_the_label():
    """Stroke count, background intensity and pattern position have the same law in every class."""
    x, y, mask = shapes(4000, seed=5)
    strokes = ((x == 1) & ~mask).flatten(1).sum(1).float()
    background = torch.where((x == 1) | mask, torch.nan, x).flatten(1).nanmean(1)
    top = mask[:, 0].any(dim=2).int().argmax(dim=1).float()  # argmax: first True row
    left = mask[:, 0].any(dim=1).int().argmax(dim=1).float()
    for stat in (strokes, background, top, left):
        overall, spread = stat.mean(), stat.std()
        for c in range(4):
            s = stat[y == c]
            assert abs(s.mean() - overall) < 4 * spread / len(s) ** 0.5


def test_split_is_a_choice_and_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        shapes(10, split="validation")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n": 0}, ValueError, "n must"),
        ({"n": 2.0}, TypeError, "n must"),
        ({"size": 7}, ValueError, "size"),
        ({"noise": 1.0}, ValueError, "noise"),
        ({"noise": -0.1}, ValueError, "noise"),
        ({"noise": "low"}, TypeError, "noise"),
        ({"distractors": -1}, ValueError, "distractors"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": True}, TypeError, "seed"),
    ],
)
def test_shapes_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        shapes(**kwargs)


# --- small_cnn for other image sizes ------------------------------------------------------------


def test_small_cnn_image_size_keeps_the_8x8_architecture():
    default = small_cnn(seed=0).state_dict()
    assert default["6.weight"].shape == (64, 2 * 16 * 16)  # what the digits cache stores
    explicit = small_cnn(image_size=8, seed=0).state_dict()
    assert all(torch.equal(default[k], explicit[k]) for k in default)
    big = small_cnn(4, width=8, image_size=16, seed=0)
    assert list(big.state_dict()) == list(default)
    assert big(torch.zeros(3, 1, 16, 16)).shape == (3, 4)
    with pytest.raises(ValueError, match="image_size"):
        small_cnn(image_size=9)
    with pytest.raises(TypeError, match="image_size"):
        small_cnn(image_size=8.0)


# --- the trained, cached CNN --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train once into a private cache folder shared by the tests below."""
    folder = tmp_path_factory.mktemp("shapes-cache")
    return folder, trained_shapes_cnn(cache=folder, progress=False)


@pytest.fixture(scope="module")
def test_set():
    return shapes(1000, split="test")


def test_trained_cnn_is_accurate_and_in_eval_mode(trained, test_set):
    _, model = trained
    x, y, _ = test_set
    assert not model.training
    assert accuracy(model, x, y) >= 0.95


def test_trained_cnn_looks_at_the_pattern_only(trained, test_set):
    """Without its pattern an image is classified at chance; with another one, as that one."""
    _, model = trained
    x, y, mask = test_set
    gen = torch.Generator().manual_seed(0)
    noise = 0.3 * torch.rand(x.shape, generator=gen)
    erased = torch.where(mask, noise, x)
    assert accuracy(model, erased, y) < 0.4
    # move every pattern onto another image's background (at the other image's place)
    perm = torch.roll(torch.arange(len(x)), 1)
    swapped = torch.where(mask[perm], torch.ones(()), erased)
    assert accuracy(model, swapped, y[perm]) >= 0.9


def test_cache_is_written_once_and_reused(trained, monkeypatch):
    folder, model = trained
    assert sorted(p.name for p in folder.iterdir()) == ["shapes_cnn_v1.pt"]

    def no_training(*args, **kwargs):
        raise AssertionError("the cached weights should have been loaded, not retrained")

    monkeypatch.setattr(data, "train_classifier", no_training)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = trained_shapes_cnn(cache=folder)
    assert not again.training
    for p, q in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)


def test_shapes_and_digits_caches_do_not_collide(trained, tmp_path):
    """The shapes model has its own cache file: a digits file in the same folder is ignored."""
    _, model = trained
    torch.save({"format": 1, "state_dict": small_cnn(seed=0).state_dict()},
               tmp_path / "digits_cnn_v1.pt")
    (tmp_path / "shapes_cnn_v1.pt").write_bytes((trained[0] / "shapes_cnn_v1.pt").read_bytes())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = trained_shapes_cnn(cache=tmp_path)
    for p, q in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)

