"""Shared fixtures. Unit tests never write to the user's cache: they get a fresh folder."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point ``MOLLIFY_CACHE`` at an empty temporary folder for one test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("MOLLIFY_CACHE", str(folder))
    return folder
