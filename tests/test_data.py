"""mollify.data: the digits split, the tiny networks and the cached trained CNN."""

from __future__ import annotations

import warnings

import pytest
import torch

import mollify
from mollify import data
from mollify.data import accuracy, digits, small_cnn, small_mlp, trained_digits_cnn


# --- digits -------------------------------------------------------------------------------------


def test_digits_shapes_dtypes_and_range():
    x_train, y_train, x_test, y_test = digits()
    assert x_train.shape == (1347, 1, 8, 8) and x_test.shape == (450, 1, 8, 8)
    assert y_train.shape == (1347,) and y_test.shape == (450,)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert set(y_train.tolist()) == set(range(10)) == set(y_test.tolist())


def test_digits_split_is_fixed_disjoint_and_stratified():
    a, b = digits(), digits()
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    x_train, y_train, x_test, y_test = a
    # disjoint: no test image appears in the training set
    train_rows = {tuple(r) for r in x_train.flatten(1).tolist()}
    duplicates = sum(tuple(r) in train_rows for r in x_test.flatten(1).tolist())
    assert duplicates <= 2  # the source itself holds a couple of identical images
    # stratified: every class is 25 % test within one image
    for c in range(10):
        n_c = (y_train == c).sum() + (y_test == c).sum()
        assert abs((y_test == c).sum().item() - 0.25 * n_c.item()) <= 1


def test_digits_other_seed_gives_other_split():
    assert not torch.equal(digits(seed=1)[1], digits()[1])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"test_fraction": 0.0}, ValueError, "test_fraction"),
        ({"test_fraction": 1.5}, ValueError, "test_fraction"),
        ({"test_fraction": "half"}, TypeError, "test_fraction"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
    ],
)
def test_digits_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        digits(**kwargs)


# --- small networks -----------------------------------------------------------------------------


def test_small_networks_shapes():
    x = torch.rand(5, 1, 8, 8)
    assert small_cnn(seed=0)(x).shape == (5, 10)
    assert small_cnn(3, in_channels=2, width=4, seed=0)(torch.rand(2, 2, 8, 8)).shape == (2, 3)
    assert small_mlp(seed=0)(x).shape == (5, 10)
    assert small_mlp(1, 1, hidden=8, depth=3, seed=0)(torch.rand(7, 1)).shape == (7, 1)


def test_small_networks_are_relu_networks():
    for net in (small_cnn(seed=0), small_mlp(seed=0)):
        assert any(isinstance(m, torch.nn.ReLU) for m in net.modules())


def test_seeded_init_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b = small_cnn(seed=7), small_cnn(seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    c = small_cnn(seed=8)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


@pytest.mark.parametrize(
    "factory, kwargs, error",
    [
        (small_cnn, {"num_classes": 1}, ValueError),
        (small_cnn, {"width": 0}, ValueError),
        (small_cnn, {"seed": "zero"}, TypeError),
        (small_mlp, {"depth": 0}, ValueError),
        (small_mlp, {"hidden": 2.5}, TypeError),
        (small_mlp, {"in_features": True}, TypeError),
    ],
)
def test_small_networks_reject_bad_arguments(factory, kwargs, error):
    with pytest.raises(error, match=next(iter(kwargs))):
        factory(**kwargs)


# --- the trained, cached CNN --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_cache(tmp_path_factory):
    """Train once into a private cache folder shared by the tests below."""
    folder = tmp_path_factory.mktemp("digits-cache")
    model = trained_digits_cnn(cache=folder, progress=False)
    return folder, model


def test_trained_cnn_is_accurate_and_in_eval_mode(trained_cache):
    _, model = trained_cache
    x_train, y_train, x_test, y_test = digits()
    assert not model.training
    assert accuracy(model, x_test, y_test) >= 0.97


def test_cache_is_written_atomically_and_reused(trained_cache, monkeypatch):
    folder, model = trained_cache
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["digits_cnn_v1.pt"]  # no temporary file left behind

    def no_training(*args, **kwargs):
        raise AssertionError("the cached weights should have been loaded, not retrained")

    monkeypatch.setattr(data, "train_classifier", no_training)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = trained_digits_cnn(cache=folder)
    for p, q in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)


def test_training_is_deterministic(trained_cache, tmp_path):
    _, model = trained_cache
    fresh = trained_digits_cnn(cache=tmp_path, progress=False)
    for p, q in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(p, q)


@pytest.mark.parametrize(
    "payload",
    [
        b"this is not a torch file",
        "wrong-format",
        "wrong-shapes",
    ],
)
def test_corrupt_or_incompatible_cache_is_retrained_with_a_warning(
    trained_cache, tmp_path, payload
):
    _, reference = trained_cache
    path = tmp_path / "digits_cnn_v1.pt"
    if payload == "wrong-format":
        torch.save({"format": 99, "state_dict": {}}, path)
    elif payload == "wrong-shapes":
        torch.save({"format": 1, "state_dict": small_cnn(width=4, seed=0).state_dict()}, path)
    else:
        path.write_bytes(payload)
    with pytest.warns(RuntimeWarning, match="corrupt or incompatible"):
        model = trained_digits_cnn(cache=tmp_path, progress=False)
    for p, q in zip(model.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(p, q)
    # the bad file was replaced: the next call loads without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trained_digits_cnn(cache=tmp_path)


def test_cache_refuses_to_unpickle_code(tmp_path):
    """A cache file carrying an arbitrary Python object is not loaded (weights_only=True)."""
    import collections

    torch.save({"format": 1, "state_dict": collections.Counter(a=1)}, tmp_path / "digits_cnn_v1.pt")
    with pytest.warns(RuntimeWarning, match="corrupt or incompatible"):
        trained_digits_cnn(cache=tmp_path, progress=False)


def test_cache_dir_follows_environment_variable(isolated_cache):
    assert mollify.cache_dir() == isolated_cache
    assert isolated_cache.is_dir()


def test_resnet_shapes_seed_and_arguments():
    from mollify.data import resnet

    a, b = resnet(seed=3).eval(), resnet(seed=3).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a(x), b(x))  # seeded
    state = torch.random.get_rng_state()
    resnet(seed=4)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert resnet(5, seed=0).eval()(torch.rand(1, 3, 224, 224)).shape == (1, 5)
    assert resnet(in_channels=1, blocks=(2, 1), seed=0).eval()(torch.rand(3, 1, 32, 32)).shape == (
        3, 10)
    with pytest.raises(ValueError, match="blocks"):
        resnet(blocks=())
    with pytest.raises(ValueError, match="blocks"):
        resnet(blocks=(1, 0))
    with pytest.raises(ValueError, match="width"):
        resnet(width=0)


def test_explainers_run_on_the_resnet():
    from mollify.data import resnet
    from mollify.explain import NoiseGrad, SmoothGrad

    model = resnet(seed=0)
    model.train()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for explainer in (SmoothGrad(model, n=4), NoiseGrad(model, n=2)):
        a = explainer.attribute(x, target=1, generator=torch.Generator().manual_seed(0))
        assert a.shape == x.shape and bool(torch.isfinite(a).all())
    assert model.training  # mode restored, BatchNorm statistics untouched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
