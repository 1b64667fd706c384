"""Shared fixtures. Unit tests never write to the user's cache: they get a fresh folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point ``MOLLIFY_CACHE`` at an empty temporary folder for one test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MOLLIFY_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def one_thread():
    """Run a module of tiny-model tests on one torch thread (restored afterwards): on a busy
    2-core machine two threads make millisecond operations hundreds of times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
