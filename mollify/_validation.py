"""Argument checks shared by the public functions.

Every check raises a ``TypeError`` or ``ValueError`` whose message names the argument and the
allowed range, e.g. ``eps must be > 0, got -1.0``. Booleans are rejected where numbers are meant
(``True`` is an ``int`` in Python, but never a sensible sample count).
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = [
    "check_int",
    "check_real",
    "check_choice",
    "check_finite_tensor",
    "check_generator",
]


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int`` after checking its type and lower bound.

    Raises:
        TypeError: if ``value`` is not an integer (``bool`` included).
        ValueError: if ``value < minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_real(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite ``float`` inside the given bounds.

    Ints are accepted where floats are meant; tensors are not (``.item()`` them: a silent
    conversion would drop their autograd history). ``low_open``/``high_open`` exclude the bound.

    Raises:
        TypeError: if ``value`` is not a real number.
        ValueError: if ``value`` is NaN/inf or outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: naming the valid choices otherwise.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value  # type: ignore[return-value]


def check_finite_tensor(name: str, x: object) -> torch.Tensor:
    """Return ``x`` as a real floating tensor with no NaN or inf (ints become the default dtype).

    Raises:
        TypeError: if ``x`` cannot be made a tensor or is complex.
        ValueError: if ``x`` holds NaN or inf.
    """
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except Exception:
            raise TypeError(f"{name} must be a tensor, got {type(x).__name__}") from None
    if x.is_complex():
        raise TypeError(f"{name} must be real, got dtype {x.dtype}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return x


def check_generator(generator: object) -> torch.Generator | None:
    """Return ``generator`` if it is a ``torch.Generator`` or None.

    Raises:
        TypeError: otherwise.
    """
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    return generator
