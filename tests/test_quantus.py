"""mollify.metrics against Quantus itself (Hedström et al., JMLR 2023) where the definitions
coincide: sparseness (Gini index), attribution localisation (both of its modes) and the
Spearman similarity of the randomization sanity check.

Quantus pulls in OpenCV, pandas and scikit-image, so it is not part of the ``test`` extra: CI
installs it in a separate step and runs this file with ``MOLLIFY_REQUIRE_QUANTUS=1``, which
turns a missing Quantus into a failure instead of a skip.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from mollify.data import shapes, small_cnn
from mollify.explain import Gradient, SmoothGrad
from mollify.metrics import localization, randomization_consistency, sparseness

if os.environ.get("MOLLIFY_REQUIRE_QUANTUS") == "1":
    import quantus  # noqa: F401 - must be importable in this CI step
else:
    quantus = pytest.importorskip("quantus")

from quantus.functions.similarity_func import correlation_spearman  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch():
    """Maps of an untrained 16×16 CNN on shapes images: generic, signed, with ties nowhere."""
    x, y, mask = shapes(12, split="test", seed=1)
    model = small_cnn(4, image_size=16, seed=0).eval()
    maps = SmoothGrad(model, n=8).attribute(x, y, generator=torch.Generator().manual_seed(0))
    return model, x, y, mask, maps


def _quantus(metric, model, x, y, a, s=None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                        s_batch=None if s is None else s.numpy(), device="cpu")
    return np.asarray(scores, dtype=np.float64)


def test_sparseness_equals_quantus(batch):
    model, x, y, _, maps = batch
    ours = sparseness(maps).double().numpy()
    theirs = _quantus(quantus.Sparseness(abs=True, normalise=False, disable_warnings=True),
                      model, x, y, maps)
    # Quantus adds 1e-7 to every |a| before the Gini index; the maps' values are ~1e-2
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)
    assert np.ptp(ours) > 1e-3  # the maps differ, so agreement is not a coincidence


@pytest.mark.parametrize("mode, abs_, positive", [("absolute", True, False),
                                                  ("positive", False, True)])
def test_localization_equals_quantus_attribution_localisation(batch, mode, abs_, positive):
    model, x, y, mask, maps = batch
    ours = localization(maps, mask, mode=mode).double().numpy()
    metric = quantus.AttributionLocalisation(abs=abs_, positive_attributions=positive,
                                             normalise=False, disable_warnings=True)
    theirs = _quantus(metric, model, x, y, maps, mask)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)  # Quantus adds 1e-9 below


def test_randomization_consistency_equals_quantus_spearman(batch):
    model, x, y, _, maps = batch
    other = Gradient(small_cnn(4, image_size=16, seed=1).eval()).attribute(x, y)
    ours = randomization_consistency(maps, other).double().numpy()
    theirs = correlation_spearman(maps.flatten(1).numpy(), other.flatten(1).numpy(),
                                  batched=True)
    np.testing.assert_allclose(ours, np.asarray(theirs, dtype=np.float64), rtol=0, atol=1e-6)
