"""A small, safe on-disk cache for trained weights.

Files live in :func:`cache_dir` (``$MOLLIFY_CACHE``, else ``$XDG_CACHE_HOME/mollify``, else
``~/.cache/mollify``). Writes are atomic (a temporary file in the same folder, then
:func:`os.replace`), so a crash never leaves a half-written file behind, and reads use
``torch.load(..., weights_only=True)``, so a cache file can never execute code.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

__all__ = ["cache_dir", "atomic_save", "cached_model"]

_FORMAT = 1


def cache_dir() -> Path:
    """Return the folder where mollify caches trained weights (created if missing).

    Set the environment variable ``MOLLIFY_CACHE`` to move it.

    >>> cache_dir().name in {"mollify"} or "MOLLIFY_CACHE" in __import__("os").environ
    True
    """
    env = os.environ.get("MOLLIFY_CACHE")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "mollify"
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically: temp file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_model(
    name: str,
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], dict],
    *,
    directory: Path | None = None,
    retrain: bool = False,
) -> nn.Module:
    """Return ``build()`` with weights from the cache, training and caching them on first use.

    Args:
        name: file stem of the cache entry (bump it when the architecture or recipe changes).
        build: makes the untrained model.
        train: trains the model in place and returns a dict of metadata (floats/ints/strs).
        directory: cache folder; defaults to :func:`cache_dir`.
        retrain: ignore an existing entry and train again.

    Returns:
        The model in eval mode. A corrupt or incompatible cache file is replaced with a warning.
    """
    path = Path(directory or cache_dir()) / f"{name}.pt"
    model = build()
    if path.exists() and not retrain:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
                raise ValueError("unknown cache format")
            model.load_state_dict(payload["state_dict"])
            return model.eval()
        except Exception as err:  # noqa: BLE001 - any unreadable file is retrained, never fatal
            warnings.warn(
                f"cached weights {path} are corrupt or incompatible ({type(err).__name__}: "
                f"{err}); retraining and replacing them",
                RuntimeWarning,
                stacklevel=2,
            )
            model = build()
    meta = train(model)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_save({"format": _FORMAT, "state_dict": state, "meta": meta}, path)
    return model.eval()
