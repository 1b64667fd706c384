"""Exercises with automatic feedback: check functions a student calls on their own answer.

Each check takes the student's answer (a function, a number or a mapping of numbers) as its
first argument, compares it with what the library computes, and returns a :class:`Feedback`:
``✓`` with what was verified, ``✗`` with what was expected, what was seen and a hint, or
``… not attempted`` when the answer is still the ``...`` stub (or returns ``None``/``...``, or
raises ``NotImplementedError``). A check never raises on a student's answer and never prints
the value that would give the answer away; it may print a tolerance, a property, a direction
("too large") or a function value at one test point. Arguments that a *teacher* passes
(a kernel name, a tolerance) are validated like everywhere in mollify and raise
``ValueError``/``TypeError``.

In a notebook, the check is the last line of its cell and its feedback is the cell's output.
A :class:`Feedback` also carries a machine-readable record (MIME type :data:`FEEDBACK_MIME`),
so a teacher can execute submitted notebooks and collect scores with :func:`grade_notebook`
(or read already executed ones with :func:`collect_feedback`).

**The answer-cell convention of the book.** An auto-checked exercise has one code cell tagged
``exercise-answer``, placed inside the exercise's gated solution (between the
```` ```{solution-start} ```` and ```` ```{solution-end} ```` cells), so that the published book
folds it into the solution dropdown. The cell holds the reference answer and ends with the check call, marked
``# NBVAL_CHECK_OUTPUT`` so that the test suite proves that the reference answer passes. The
parts of the cell that give the answer away are marked as in otter-grader:

* lines between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` are replaced by one ``...``;
* a line ending in ``# SOLUTION`` becomes ``name = ...`` (for ``name = value  # SOLUTION``),
  ``return ...`` or ``...``.

Everything else (imports, the ``def`` line and docstring, the check call) is the stub that a
student starts from. ``python -m mollify student-edition OUTDIR`` (:mod:`mollify.student_edition`)
removes the solutions and puts each answer cell's stub, with no output, where the solution was;
run, the stub reports "not attempted".

>>> import mollify.exercises as check
>>> result = check.unit_variance_kernel(lambda t: ..., "epanechnikov")
>>> result.status, result.passed, result.score
('not attempted', False, 0.0)
>>> check.sparseness_values({(0, 0, 0, 5): 0.75, (1, 1, 1, 1): 0.0}).passed
True
"""

from __future__ import annotations

import math
import numbers
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mollify._validation import check_choice, check_int, check_real
from mollify.kernels import kernel as _kernel
from mollify.metrics import sparseness as _sparseness
from mollify.mollifier import mollify as _mollify
from mollify.montecarlo import integrate as _integrate
from mollify.nn import smoothed_abs as _smoothed_abs
from mollify.nn import smoothed_hardtanh as _smoothed_hardtanh
from mollify.nn import smoothed_sign as _smoothed_sign

__all__ = [
    "FEEDBACK_MIME",
    "STATUSES",
    "Feedback",
    "CHECKS",
    "compare_values",
    "averaged_abs_derivative",
    "unit_variance_kernel",
    "monte_carlo_pi",
    "antithetic_variance_ratio",
    "smoothed_abs_gradient",
    "kernel_reach",
    "sparseness_values",
    "convexity_threshold",
    "smoothed_clip",
    "balanced_width",
    "passes_for_budget",
    "collect_feedback",
    "grade_notebook",
]

#: MIME type of the JSON record a :class:`Feedback` displays next to its text.
FEEDBACK_MIME = "application/vnd.mollify.feedback+json"
#: The three outcomes of a check.
STATUSES: tuple[str, ...] = ("passed", "failed", "not attempted")
_HEADS = {
    "passed": "✓ {} passed",
    "failed": "✗ {} not yet right",
    "not attempted": "… {} not attempted",
}
_WIDTH = 96
_F64 = torch.float64


# --------------------------------------------------------------------------------------------
# the result


@dataclass(frozen=True)
class Feedback:
    """The outcome of one check: which exercise, its status and a message for the student.

    Attributes:
        exercise: the exercise's label in the book, e.g. ``"ex-moll-epanechnikov"``.
        status: one of :data:`STATUSES`.
        message: what was verified (passed), or what was expected, what was seen and a hint.

    ``str(feedback)`` is the text a student sees; in Jupyter the object displays as that text
    plus a JSON record (:data:`FEEDBACK_MIME`) that :func:`collect_feedback` reads back.

    >>> fb = Feedback("ex-demo", "passed", "the value is 1.")
    >>> print(fb)
    ✓ ex-demo passed: the value is 1.
    >>> fb.passed, fb.score
    (True, 1.0)
    >>> Feedback.from_dict(fb.to_dict()) == fb
    True
    """

    exercise: str
    status: str
    message: str

    def __post_init__(self) -> None:
        check_choice("status", self.status, STATUSES)
        if not isinstance(self.exercise, str) or not isinstance(self.message, str):
            raise TypeError("exercise and message must be str")

    @property
    def passed(self) -> bool:
        """True if the answer passed the check."""
        return self.status == "passed"

    @property
    def attempted(self) -> bool:
        """False while the answer is still the stub."""
        return self.status != "not attempted"

    @property
    def score(self) -> float:
        """1.0 if passed, else 0.0 (sum these to grade)."""
        return 1.0 if self.passed else 0.0

    def __str__(self) -> str:
        first, _, rest = self.message.partition("\n")
        head = textwrap.fill(f"{_HEADS[self.status].format(self.exercise)}: {first}", _WIDTH,
                             subsequent_indent="  ", break_on_hyphens=False)
        return head + ("\n" + rest if rest else "")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython's plain-text display
        p.text(str(self))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, object]:
        return {"text/plain": str(self), FEEDBACK_MIME: self.to_dict()}

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready record: exercise, status, passed, message."""
        return {
            "exercise": self.exercise,
            "status": self.status,
            "passed": self.passed,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, object]) -> Feedback:
        """Rebuild a Feedback from :meth:`to_dict`'s record."""
        return cls(str(record["exercise"]), str(record["status"]), str(record["message"]))


# --------------------------------------------------------------------------------------------
# machinery shared by the checks: a check body raises _NotAttempted or _Wrong, _run turns that
# into a Feedback.


class _NotAttempted(Exception):
    pass


class _Wrong(Exception):
    def __init__(
        self, problem: str, *, expected: str | None = None, seen: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(problem)
        self.text = _lines(problem, expected=expected, seen=seen, hint=hint)


def _wrap(label: str, text: str) -> str:
    head = f"  {label + ':':9s} "
    return textwrap.fill(text, _WIDTH, initial_indent=head, subsequent_indent=" " * len(head),
                         break_on_hyphens=False)


def _lines(problem: str, *, expected: str | None, seen: str | None, hint: str | None) -> str:
    out = [problem]
    for label, text in (("expected", expected), ("seen", seen), ("hint", hint)):
        if text:
            out.append(_wrap(label, text))
    return "\n".join(out)


def _run(exercise: str, body: Callable[[], str]) -> Feedback:
    if not isinstance(exercise, str) or not exercise:
        raise TypeError(f"exercise must be a non-empty str, got {exercise!r}")
    try:
        message = body()
    except _NotAttempted as stub:
        return Feedback(exercise, "not attempted", str(stub))
    except _Wrong as wrong:
        return Feedback(exercise, "failed", wrong.text)
    return Feedback(exercise, "passed", message)


def _is_stub(value: object) -> bool:
    return value is None or value is Ellipsis


def _name(answer: object, default: str) -> str:
    name = getattr(answer, "__name__", "")
    return f"`{name}`" if name.isidentifier() else default


def _call_name(what: str, default: str) -> str:
    """The name to show in a call: the student's function's own name, else ``default``."""
    return what[1:-1] if what.startswith("`") else default


def _stub_message(what: str) -> str:
    return (
        f"{what} is still the stub `...`. Replace the `...` with your answer and run the cell "
        "again."
    )


def _need_callable(answer: object, what: str) -> Callable[..., object]:
    if _is_stub(answer):
        raise _NotAttempted(_stub_message(what))
    if not callable(answer):
        raise _Wrong(
            f"{what} must be a function, got a {type(answer).__name__}.",
            hint="define it with `def` (or a lambda) and pass the function itself, not its value.",
        )
    return answer  # type: ignore[return-value]


def _call(fn: Callable[..., object], what: str, args: tuple, shown: str) -> object:
    """Call the student's function; a stub result or NotImplementedError means not attempted."""
    try:
        out = fn(*args)
    except NotImplementedError:
        raise _NotAttempted(_stub_message(what)) from None
    except Exception as exc:  # the student's code: report, never crash the cell
        raise _Wrong(
            f"{what} raised {type(exc).__name__} when called as {shown}: {exc}",
            hint="call it on this input in a cell of its own and read the traceback.",
        ) from None
    if _is_stub(out):
        raise _NotAttempted(_stub_message(what))
    return out


def _tensor(value: object, what: str, shape: tuple[int, ...]) -> Tensor:
    """The student's output as a float64 tensor of the expected shape, or _Wrong."""
    if isinstance(value, Tensor):
        t = value.detach()
    else:
        try:
            t = torch.as_tensor(value)
        except Exception:
            raise _Wrong(
                f"{what} returned a {type(value).__name__}, not a tensor.",
                hint="work with torch operations on the input tensor and return the result.",
            ) from None
    if t.is_complex() or t.dtype == torch.bool:
        raise _Wrong(f"{what} returned a {t.dtype} tensor; a real floating-point one is needed.")
    t = t.to(_F64).cpu()
    if tuple(t.shape) != shape:
        raise _Wrong(
            f"{what} returned the wrong shape.",
            expected=f"shape {shape}",
            seen=f"shape {tuple(t.shape)}",
            hint="compute elementwise with torch operations (no Python loop, no reduction "
            "such as .sum() or .mean() over the input).",
        )
    if not bool(torch.isfinite(t).all()):
        raise _Wrong(
            f"{what} returned NaN or inf.",
            hint="look for a division by zero or a log/sqrt of a negative number.",
        )
    return t


def _number(value: object, what: str) -> float:
    """The student's numeric answer as a float, or _NotAttempted/_Wrong."""
    if _is_stub(value):
        raise _NotAttempted(_stub_message(what))
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    elif hasattr(value, "item") and getattr(value, "size", 0) == 1:  # numpy scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _Wrong(f"{what} must be a number, got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise _Wrong(f"{what} must be finite, got {value}.")
    return value


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _at(v: float) -> str:
    """A test point for a message: 3 decimals, no "-0.000"."""
    return f"{round(v, 3) + 0.0:.3f}"


def _vec(t: Tensor) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in t.tolist()) + "]"


def _worst(seen: Tensor, expected: Tensor, atol: float, rtol: float) -> int | None:
    """Index of the worst entry outside the tolerance, or None if all entries are within it."""
    excess = (seen - expected).abs() - (atol + rtol * expected.abs())
    if bool((excess <= 0).all()):
        return None
    return int(excess.argmax())


def _direction(seen: float, expected: float) -> str:
    return "too large" if seen > expected else "too small"


# --------------------------------------------------------------------------------------------
# generic: several numbers at once


def compare_values(
    answers: Mapping[str, object],
    expected: Mapping[str, float],
    *,
    exercise: str,
    rtol: float = 0.01,
    atol: float = 0.0,
    hints: Mapping[str, str] | None = None,
) -> Feedback:
    """Check numeric answers, each within ``atol + rtol·|expected|``, without revealing them.

    The building block of the numeric checks, and the easiest way for a teacher to auto-check a
    new exercise. Each wrong answer is reported with its name, the student's value, the
    direction ("too large"/"too small") and its hint; answers that are still ``...`` are listed
    as not attempted. The status is "failed" if any answer is wrong, else "not attempted" if any
    is missing, else "passed".

    Args:
        answers: the student's values by name (``...`` or None for "not attempted").
        expected: the exact values by the same names.
        exercise: the exercise label reported in the feedback.
        rtol, atol: relative and absolute tolerance, ``>= 0``.
        hints: optional hint per name, shown when that answer is wrong.

    Returns:
        A :class:`Feedback`.

    Raises:
        ValueError: if ``answers`` and ``expected`` name different things or a tolerance is
            negative.

    >>> print(compare_values({"n": 40_000}, {"n": 40_000.0}, exercise="ex-demo"))
    ✓ ex-demo passed: n is right (within 1 % of the exact value).
    >>> fb = compare_values({"n": 400}, {"n": 40_000.0}, exercise="ex-demo", hints={"n": "n ∝ σ²"})
    >>> print(fb)
    ✗ ex-demo not yet right: 1 of 1 answers is not yet right.
      n:        expected within 1 % of the exact value; seen 400, too small
      hint:     n ∝ σ²
    """
    rtol = check_real("rtol", rtol, low=0)
    atol = check_real("atol", atol, low=0)
    if not isinstance(answers, Mapping):
        raise TypeError(
            f"answers must be a mapping of names to values, got {type(answers).__name__}"
        )
    if set(answers) != set(expected):
        raise ValueError(f"answers and expected must name the same values: {sorted(answers)} "
                         f"vs {sorted(expected)}")
    hints = dict(hints or {})
    tolerance = _tolerance_text(rtol, atol)

    def body() -> str:
        wrong, missing, lines = [], [], []
        for name, value in answers.items():
            exact = float(expected[name])
            try:
                seen = _number(value, f"`{name}`")
            except _NotAttempted:
                missing.append(name)
                continue
            except _Wrong as w:
                wrong.append(name)
                lines.append(_wrap(str(name), w.text))
                continue
            if abs(seen - exact) > atol + rtol * abs(exact):
                wrong.append(name)
                lines.append(_wrap(str(name), f"expected {tolerance}; seen {_fmt(seen)}, "
                                              f"{_direction(seen, exact)}"))
        if wrong:
            for name in wrong:
                if name in hints:
                    lines.append(_wrap("hint", hints[name]))
            if missing:
                lines.append(_wrap("not attempted", ", ".join(map(str, missing))))
            raise _Wrong(f"{len(wrong)} of {len(answers)} answers is not yet right.\n"
                         + "\n".join(lines))
        if missing:
            done = len(answers) - len(missing)
            so_far = f" ({done} of {len(answers)} answered, all right so far)" if done else ""
            raise _NotAttempted(
                f"{', '.join(map(str, missing))} {'is' if len(missing) == 1 else 'are'} still "
                f"the stub `...`{so_far}. Replace each `...` with your answer and run the cell "
                "again."
            )
        names = ", ".join(map(str, answers))
        verb = "is" if len(answers) == 1 else "are all"
        return f"{names} {verb} right ({tolerance})."

    return _run(exercise, body)


def _tolerance_text(rtol: float, atol: float) -> str:
    parts = []
    if rtol:
        parts.append(f"{rtol * 100:g} % of the exact value")
    if atol:
        parts.append(f"{atol:g}")
    return "within " + (" + ".join(parts) if parts else "rounding")


# --------------------------------------------------------------------------------------------
# chapter 1


def averaged_abs_derivative(
    answer: Callable[[Tensor, float], Tensor], *, exercise: str = "ex-rough-abs"
) -> Feedback:
    """Check g_ε(x) = E[f'(x − εu)] for f(x) = |x| and u ~ N(0, 1) (chapter 1).

    ``answer(x, eps)`` takes a float64 tensor ``x`` and a float ``eps > 0`` and returns
    g_ε at every entry of ``x`` (same shape). It is compared with the library's closed form at
    61 points in [−3, 3] for ε ∈ {0.1, 0.5, 2}, to 1e-6.

    Args:
        answer: the student's function.
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    >>> averaged_abs_derivative(lambda x, eps: torch.sign(x)).passed
    False
    >>> averaged_abs_derivative(lambda x, eps: ...).status
    'not attempted'
    """
    x = torch.linspace(-3.0, 3.0, 61, dtype=_F64)

    def body() -> str:
        fn = _need_callable(answer, _name(answer, "your function"))
        what = _name(answer, "your function")
        for eps in (0.1, 0.5, 2.0):
            seen = _tensor(_call(fn, what, (x.clone(), eps), f"{_call_name(what, 'g')}(x, {eps})"),
                           what, tuple(x.shape))
            expected = _smoothed_sign(x, eps)
            i = _worst(seen, expected, 1e-6, 0.0)
            if i is None:
                continue
            if bool((seen.abs() > 1 + 1e-9).any()):
                hint = ("g_ε averages f' = ±1, so it lies in [−1, 1]; yours leaves that range.")
            elif bool((seen >= -1e-9).all()):
                hint = ("f'(x − εu) is −1 for some u and +1 for others, so g_ε is negative "
                        "for x < 0; yours never is. Subtract the probability of the −1 event.")
            elif not torch.allclose(seen, -seen.flip(0), atol=1e-6):
                hint = "f' is odd and u is symmetric, so g_ε(−x) = −g_ε(x); yours is not odd."
            else:
                hint = ("f'(x − εu) is +1 when u < x/ε and −1 when u > x/ε; write g_ε with the "
                        "normal distribution function Φ (torch.special.ndtr) or torch.erf, "
                        "and check the scale of its argument.")
            raise _Wrong(
                f"{what} differs from g_ε at x = {x[i].item():.1f}, ε = {eps}.",
                expected=f"{expected[i].item():.6f} (to 1e-6)",
                seen=f"{seen[i].item():.6f}",
                hint=hint,
            )
        return (f"{what} equals E[f'(x − εu)] for f = |x| at 61 points in [−3, 3] for "
                "ε = 0.1, 0.5 and 2 (to 1e-6).")

    return _run(exercise, body)


# --------------------------------------------------------------------------------------------
# chapter 2


def unit_variance_kernel(
    answer: Callable[[Tensor], Tensor],
    name: str = "epanechnikov",
    *,
    exercise: str = "ex-moll-epanechnikov",
) -> Feedback:
    """Check a student's unit-variance kernel density η(t) against ``mollify.kernel(name)``.

    ``answer(t)`` takes a float64 tensor and returns η at every entry. Checked on 240 001
    points of [−12, 12], in this order, each with its own hint: the shape, η ≥ 0, ∫η = 1,
    ∫tη = 0 and ∫t²η = 1 (trapezoid rule, to 1e-3), and then the values against
    ``kernel(name).pdf`` (to 1e-5).

    Args:
        answer: the student's density.
        name: the kernel it should be (one of ``KERNELS``).
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    Raises:
        ValueError: if ``name`` is not a kernel of the library.

    >>> unit_variance_kernel(lambda t: torch.exp(-t**2 / 2) / math.sqrt(2 * math.pi),
    ...                      "gaussian").passed
    True
    >>> print(unit_variance_kernel(lambda t: 0.75 * (1 - t**2).clamp_min(0)))
    ✗ ex-moll-epanechnikov not yet right: your function is centred but has variance 0.2, not 1.
      expected: ∫t²η(t) dt = 1 (to 1e-3)
      seen:     ∫t²η(t) dt = 0.200000
      hint:     if x has density g and variance v, then t = x/s has density s·g(s·t) and variance
                v/s²; choose s so that this is 1.
    """
    k = _kernel(name)
    t = torch.linspace(-12.0, 12.0, 240_001, dtype=_F64)

    def body() -> str:
        what = _name(answer, "your function")
        fn = _need_callable(answer, what)
        eta = _tensor(_call(fn, what, (t.clone(),), f"{_call_name(what, 'pdf')}(t)"), what,
                      tuple(t.shape))
        if bool((eta < -1e-12).any()):
            i = int(eta.argmin())
            raise _Wrong(
                f"{what} is negative somewhere; a density never is.",
                expected="η(t) ≥ 0 for every t",
                seen=f"η({_at(t[i].item())}) = {eta[i].item():.4f}",
                hint="a formula like c(1 − t²/r²) holds only on the support |t| ≤ r; outside it "
                "the density is 0 (torch.where, or .clamp_min(0)).",
            )
        mass = torch.trapezoid(eta, t).item()
        if abs(mass - 1) > 1e-3:
            raise _Wrong(
                f"{what} does not integrate to 1.",
                expected="∫η(t) dt = 1 (to 1e-3)",
                seen=f"∫η(t) dt = {mass:.6f}",
                hint="rescaling t → s·t divides the mass by s: the density of t = x/s is "
                "s·g(s·t), with the factor s in front.",
            )
        mean = torch.trapezoid(t * eta, t).item()
        if abs(mean) > 1e-3:
            raise _Wrong(
                f"{what} is not centred at 0.",
                expected="∫tη(t) dt = 0 (a symmetric kernel)",
                seen=f"∫tη(t) dt = {mean:.6f}",
                hint="η must be an even function of t: use t² or |t|, not t.",
            )
        var = torch.trapezoid(t * t * eta, t).item()
        if abs(var - 1) > 1e-3:
            raise _Wrong(
                f"{what} is centred but has variance {var:.3g}, not 1.",
                expected="∫t²η(t) dt = 1 (to 1e-3)",
                seen=f"∫t²η(t) dt = {var:.6f}",
                hint="if x has density g and variance v, then t = x/s has density s·g(s·t) and "
                "variance v/s²; choose s so that this is 1.",
            )
        expected = k.pdf(t)
        i = _worst(eta, expected, 1e-5, 0.0)
        if i is not None:
            raise _Wrong(
                f"{what} has mass 1, mean 0 and variance 1, but is not the {k.name} kernel.",
                expected=f"η({_at(t[i].item())}) = {expected[i].item():.6f} (to 1e-5)",
                seen=f"η({_at(t[i].item())}) = {eta[i].item():.6f}",
                hint=f"many shapes have unit variance: start from the {k.name} profile g of the "
                "table and check its support.",
            )
        return (f"{what} is a density (≥ 0, ∫η = 1) with mean 0 and variance 1, and equals "
                f"kernel({k.name!r}).pdf to 1e-5 on [−12, 12].")

    return _run(exercise, body)


# --------------------------------------------------------------------------------------------
# chapter 3


def monte_carlo_pi(
    answer: Callable[[Tensor], Tensor],
    *,
    n: int = 100_000,
    seed: int = 0,
    exercise: str = "ex-mc-pi",
) -> Feedback:
    """Check an integrand whose mean under the uniform kernel on [−√3, √3]² is π.

    ``answer(u)`` takes points ``u`` of shape (N, 2) and returns values of shape (N,), the
    convention of :func:`mollify.integrate`. The check runs
    ``integrate(answer, "uniform", n, dim=2)`` with a seeded generator and passes if the estimate
    is within 4 standard errors of π (and the integrand is not a constant).

    Args:
        answer: the student's integrand.
        n: number of samples.
        seed: seed of the generator (same seed, same verdict).
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    >>> monte_carlo_pi(lambda u: torch.full((u.shape[0],), math.pi)).passed  # a constant
    False
    >>> def in_disc(u):
    ...     ...
    >>> print(monte_carlo_pi(in_disc))
    … ex-mc-pi not attempted: `in_disc` is still the stub `...`. Replace the `...` with your answer
      and run the cell again.
    """
    n = check_int("n", n, minimum=100)
    seed = check_int("seed", seed, minimum=0)

    def body() -> str:
        what = _name(answer, "your integrand")
        fn = _need_callable(answer, what)
        probe = _kernel("uniform").sample((8, 2), generator=torch.Generator().manual_seed(seed),
                                          dtype=_F64)
        _tensor(_call(fn, what, (probe,), f"{_call_name(what, 'f')}(u) with u of shape (8, 2)"),
                what, (8,))
        try:
            est = _integrate(fn, "uniform", n, dim=2,
                             generator=torch.Generator().manual_seed(seed))
        except Exception as exc:
            raise _Wrong(f"integrate({_call_name(what, 'f')}, 'uniform', {n}, dim=2) raised "
                         f"{type(exc).__name__}: {exc}") from None
        mean, err = float(est.mean.reshape(())), float(est.stderr.reshape(()))
        if err == 0:
            raise _Wrong(
                f"{what} is constant on the square, so its Monte Carlo estimate has no error "
                "bar and estimates nothing.",
                hint="the integrand should depend on whether u lies in the disc u₁² + u₂² ≤ 3.",
            )
        z = (mean - math.pi) / err
        if abs(z) > 4:
            quarter = abs(4 * mean - math.pi) <= 16 * err
            raise _Wrong(
                f"the Monte Carlo estimate of {what}'s mean is far from π.",
                expected=f"an estimate within 4 standard errors of π = {math.pi:.5f}",
                seen=f"{mean:.5f} ± {err:.5f} (z = {z:.1f}, with n = {n})",
                hint=("your estimate is about π/4: that is the fraction of the square inside "
                      "the disc; scale your integrand so its mean is π itself.") if quarter else
                     ("the disc u₁² + u₂² ≤ 3 covers the fraction π/4 of the square "
                      "[−√3, √3]²: the mean of its indicator is π/4."),
            )
        return (f"with n = {n:,} uniform points on the square, the estimate of {what}'s mean "
                "is within 4 standard errors of π.")

    return _run(exercise, body)


# --------------------------------------------------------------------------------------------
# chapter 4


def _expectation(g: Callable[[Tensor], Tensor], kern: Any) -> float:
    """E[g(u)] for u ~ kern (1-D, symmetric) by the library's exact quadrature."""
    x0 = torch.zeros(1, dtype=_F64)
    return float(_mollify(g, kern, 1.0, method="exact")(x0)[0])  # E g(0 − u) = E g(u)


def antithetic_variance_ratio(
    answer: float,
    f: Callable[[Tensor], Tensor],
    *,
    kernel: str = "gaussian",
    rtol: float = 0.01,
    exercise: str = "ex-vr-cubic",
) -> Feedback:
    """Check a predicted antithetic variance ratio 1 + ρ = Var(antithetic)/Var(plain MC).

    ρ = Corr(f(u), f(−u)) for u from the 1-D ``kernel``, the ratio of the variances of the
    antithetic and the plain estimator at equal numbers of evaluations. The exact ratio is
    computed by the library's quadrature (:func:`mollify.mollify` with ``method="exact"``) from
    the variances of the even and odd parts of ``f``; the answer passes within ``rtol``.

    Args:
        answer: the student's predicted 1 + ρ.
        f: the integrand, in :func:`mollify.integrate`'s convention (points (N, 1) → (N,)).
        kernel: a symmetric kernel of the library.
        rtol: relative tolerance.
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    Raises:
        TypeError: if ``f`` is not callable. ValueError: if ``f`` is constant.

    >>> antithetic_variance_ratio(0.0, lambda u: u[:, 0] ** 3).passed  # odd: exact pairs
    True
    >>> antithetic_variance_ratio(1.0, lambda u: u[:, 0] ** 2).passed  # even: it doubles
    False
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    rtol = check_real("rtol", rtol, low=0, low_open=True)
    k = _kernel(kernel)

    def even(p: Tensor) -> Tensor:
        return 0.5 * (f(p) + f(-p))

    def odd(p: Tensor) -> Tensor:
        return 0.5 * (f(p) - f(-p))

    var_e = _expectation(lambda p: even(p) ** 2, k) - _expectation(even, k) ** 2
    var_o = _expectation(lambda p: odd(p) ** 2, k)
    if var_e + var_o <= 0:
        raise ValueError("f is constant: its variance is 0, so 1 + ρ is undefined")
    exact = 2 * var_e / (var_e + var_o)

    def body() -> str:
        seen = _number(answer, "your predicted ratio")
        if abs(seen - exact) <= max(rtol * exact, 1e-6):
            return (f"your prediction {seen:.4g} is 1 + ρ for this integrand under the "
                    f"{k.name} kernel (exact quadrature, to {rtol * 100:g} %).")
        if not 0 <= seen <= 2:
            problem = "1 + ρ lies in [0, 2], since ρ is a correlation."
        else:
            problem = f"your prediction is {_direction(seen, exact)}."
        raise _Wrong(
            problem,
            expected=f"1 + ρ for this integrand, to {rtol * 100:g} %",
            seen=f"{seen:.6g}",
            hint="split f into its even part f_e(u) = (f(u) + f(−u))/2 and odd part f_o; "
            "1 + ρ = 2 Var f_e / (Var f_e + Var f_o) (Proposition prop-vr-even-odd). For "
            "powers of a Gaussian u: E u² = 1, E u⁴ = 3, E u⁶ = 15.",
        )

    return _run(exercise, body)


# --------------------------------------------------------------------------------------------
# chapter 5


def _abs_cases() -> list[tuple[Tensor, Tensor, float, float]]:
    g = torch.Generator().manual_seed(5)
    cases = []
    for d, eps in ((1, 0.5), (3, 0.05), (3, 2.0), (5, 0.5)):
        w = torch.randn(d, generator=g, dtype=_F64)
        b = float(torch.randn((), generator=g, dtype=_F64))
        x = torch.randn(d, generator=g, dtype=_F64) * 0.3
        cases.append((x, w, b, eps))
    x, w, b, eps = cases[-1]
    cases.append((x - (w @ x + b) * w / (w @ w), w, b, eps))  # on the kink: w·x + b = 0
    return cases


def smoothed_abs_gradient(
    answer: Callable[[Tensor, Tensor, float, float], Tensor], *, exercise: str = "ex-gm-abs"
) -> Feedback:
    """Check ∇f_ε(x) for f(x) = |w·x + b| and the Gaussian kernel (chapter 5).

    ``answer(x, w, b, eps)`` takes float64 tensors ``x`` and ``w`` of shape (d,), a float
    ``b`` and a float ``eps > 0``, and returns the gradient, shape (d,). Compared, to 1e-8, with
    autograd through the library's closed-form smoothed absolute value at five points in
    d = 1, 3, 5, one of them on the kink w·x + b = 0.

    Args:
        answer: the student's function.
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    >>> smoothed_abs_gradient(lambda x, w, b, eps: w * torch.sign(w @ x + b)).passed
    False
    """

    def body() -> str:
        what = _name(answer, "your function")
        fn = _need_callable(answer, what)
        for case, (x, w, b, eps) in enumerate(_abs_cases(), 1):
            d = x.shape[0]
            seen = _tensor(_call(fn, what, (x.clone(), w.clone(), b, eps),
                                 f"{_call_name(what, 'grad')}(x, w, b, eps) with d = {d}"), what, (d,))
            xg = x.clone().requires_grad_()
            _smoothed_abs(w @ xg + b, eps * float(w.norm())).backward()
            expected = xg.grad
            if _worst(seen, expected, 1e-8, 1e-6) is None:
                continue
            c = float(w @ x + b)
            parallel = d == 1 or abs(float(torch.nn.functional.cosine_similarity(
                seen, w, dim=0))) > 1 - 1e-9 or float(seen.norm()) < 1e-12
            factor = float(seen @ w / (w @ w))
            if not parallel:
                hint = ("f depends on x only through c = w·x + b, so by the chain rule its "
                        "smoothed gradient is a multiple of w; yours is not.")
            elif abs(factor - math.erf(c / (math.sqrt(2) * eps))) < 1e-6:
                hint = ("the noise that reaches c = w·x + b is w·(εu), whose standard deviation "
                        "is ε‖w‖, not ε.")
            else:
                hint = ("use |z| = 2 relu(z) − z, linearity, and Proposition prop-gm-relu-unit "
                        "for the smoothed gradient of one ReLU unit.")
            where = "on the kink w·x + b = 0" if abs(c) < 1e-12 else f"with w·x + b = {c:.3f}"
            raise _Wrong(
                f"{what} is wrong at test point {case} (d = {d}, ε = {eps}, {where}).",
                expected=f"∇f_ε(x) = {_vec(expected)} (to 1e-8)",
                seen=_vec(seen),
                hint=hint,
            )
        return ("your gradient equals ∇f_ε(x) for f = |w·x + b| at 5 test points in d = 1, 3, 5 "
                "(one on the kink), to 1e-8.")

    return _run(exercise, body)


# --------------------------------------------------------------------------------------------
# chapter 6


def kernel_reach(
    uniform_reach: float,
    epanechnikov_reach: float,
    gaussian_tail: float,
    *,
    eps_rel: float = 0.15,
    rtol: float = 0.02,
    exercise: str = "ex-expl-relative",
) -> Feedback:
    """Check how far one pixel can move under SmoothGrad's noise with relative width ``eps_rel``.

    The answers: the largest shift of one pixel as a fraction of the input range, for the
    uniform and the Epanechnikov kernel (``eps_rel`` times the end of the kernel's support), and
    the probability that a Gaussian pixel moves further than the uniform's largest shift.
    Expected values come from ``mollify.kernel(...).support`` and ``.cdf``; each answer passes
    within ``rtol``.

    Args:
        uniform_reach, epanechnikov_reach, gaussian_tail: the student's three numbers.
        eps_rel: noise standard deviation as a fraction of the input range.
        rtol: relative tolerance.
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    >>> kernel_reach(..., ..., ...).status
    'not attempted'
    """
    eps_rel = check_real("eps_rel", eps_rel, low=0, low_open=True)
    end_uniform = _kernel("uniform").support[1]
    end_epan = _kernel("epanechnikov").support[1]
    tail = 2 * (1 - float(_kernel("gaussian").cdf(torch.tensor(end_uniform, dtype=_F64))))
    return compare_values(
        {"uniform_reach": uniform_reach, "epanechnikov_reach": epanechnikov_reach,
         "gaussian_tail": gaussian_tail},
        {"uniform_reach": end_uniform * eps_rel, "epanechnikov_reach": end_epan * eps_rel,
         "gaussian_tail": tail},
        exercise=exercise,
        rtol=rtol,
        hints={
            "uniform_reach": "a unit-variance kernel is scaled so that its standard deviation "
            "is 1; find where its support ends and multiply by eps_rel.",
            "epanechnikov_reach": "a unit-variance kernel is scaled so that its standard "
            "deviation is 1; find where its support ends and multiply by eps_rel.",
            "gaussian_tail": "a Gaussian coordinate moves further than the uniform's limit "
            "when |u| exceeds the end of the uniform kernel's support; both tails count.",
        },
    )


# --------------------------------------------------------------------------------------------
# chapter 7


def sparseness_values(
    answers: Mapping[tuple[float, ...], float],
    *,
    atol: float = 1e-3,
    exercise: str = "ex-eval-gini-hand",
) -> Feedback:
    """Check Gini indices computed by hand: ``{map: G(map)}`` against :func:`mollify.sparseness`.

    Args:
        answers: maps each attribution vector (a tuple of numbers) to the student's G.
        atol: absolute tolerance.
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    >>> print(sparseness_values({(0, 0, 0, 5): 0.75, (1, 1, 1, 1): 0.25}))
    ✗ ex-eval-gini-hand not yet right: 1 of 2 answers is not yet right.
      G(1, 1, 1, 1): expected within 0.001; seen 0.25, too large
      hint:     sort |a| increasingly, weight the i-th value by 2i − d − 1, and divide by d·Σ|a|
                (the definition of the sparseness G).
    """
    atol = check_real("atol", atol, low=0, low_open=True)
    if not isinstance(answers, Mapping):

        def not_a_mapping() -> str:
            if _is_stub(answers):
                raise _NotAttempted(_stub_message("your answer"))
            raise _Wrong(f"answers must be a dict {{map: G}}, got {type(answers).__name__}.")

        return _run(exercise, not_a_mapping)
    named, expected, hints = {}, {}, {}
    for key, value in answers.items():
        vec = torch.as_tensor([list(key)], dtype=_F64)
        label = "G(" + ", ".join(_fmt(v) for v in vec[0].tolist()) + ")"
        named[label] = value
        expected[label] = float(_sparseness(vec)[0])
        hints[label] = ("sort |a| increasingly, weight the i-th value by 2i − d − 1, and divide "
                        "by d·Σ|a| (the definition of the sparseness G).")
    return compare_values(named, expected, exercise=exercise, rtol=0.0, atol=atol, hints=hints)


# --------------------------------------------------------------------------------------------
# chapter 8


def _min_curvature(A: float, a: float, sigma: float) -> float:
    """min over θ of L_σ''(θ) for L(θ) = θ² + A(1 − cos aθ), by mollifying L'' (exact rule)."""
    theta = torch.arange(64, dtype=_F64) * (2 * math.pi / (64 * a))  # one period, θ = π/a in it
    second = lambda p: 2.0 + A * a * a * torch.cos(a * p[:, 0])  # noqa: E731
    return float(_mollify(second, "gaussian", sigma, method="exact")(theta).min())


def convexity_threshold(
    answer: Callable[[float, float], float], *, exercise: str = "ex-gsl-convex"
) -> Feedback:
    """Check σ*(A, a), the smallest σ for which L_σ is convex, L(θ) = θ² + A(1 − cos aθ).

    ``answer(A, a)`` returns σ* for A > 0, a > 0 with A a² > 2. Property-based: for four
    (A, a), L_σ'' = (L'')_σ is computed with the library's exact Gaussian mollification on a
    grid over one period of θ; the answer passes if min L_σ'' ≥ 0 at σ = 1.001 σ* and < 0 at
    σ = 0.999 σ* (σ* right to 0.1 %).

    Args:
        answer: the student's function.
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    >>> convexity_threshold(lambda A, a: 1.0).passed
    False
    """

    def body() -> str:
        what = _name(answer, "your function")
        fn = _need_callable(answer, what)
        for A, a in ((1.0, 10.0), (2.0, 3.0), (0.5, 4.0), (5.0, 1.0)):
            shown = f"{_call_name(what, 'sigma_star')}({A:g}, {a:g})"
            s = _number(_call(fn, what, (A, a), shown), f"{what}'s value")
            if s <= 0:
                raise _Wrong(
                    f"{shown} = {_fmt(s)}, but σ* > 0: L itself is not convex when A a² > 2.",
                    hint="L''(θ) = 2 + A a² cos(aθ) is negative where cos(aθ) = −1.")
            above, below = _min_curvature(A, a, 1.001 * s), _min_curvature(A, a, 0.999 * s)
            hint = ("L_σ'' is the smoothing of L''(θ) = 2 + A a² cos(aθ), and Gaussian smoothing "
                    "damps cos(aθ) by a factor that depends on aσ (Proposition prop-gsl-cosine); "
                    "σ* is where the minimum over θ of L_σ'' reaches 0.")
            if above < 0:
                raise _Wrong(
                    f"for A = {A:g}, a = {a:g} your σ* = {_fmt(s)} is too small.",
                    expected="L_σ convex (min over θ of L_σ'' ≥ 0) just above σ*",
                    seen=f"min L_σ'' = {above:.4f} < 0 at σ = 1.001·σ*",
                    hint=hint)
            if below >= 0:
                raise _Wrong(
                    f"for A = {A:g}, a = {a:g} your σ* = {_fmt(s)} is too large.",
                    expected="L_σ not convex (min over θ of L_σ'' < 0) just below σ*",
                    seen=f"min L_σ'' = {below:.4f} ≥ 0 already at σ = 0.999·σ*",
                    hint=hint)
        return ("for 4 choices of (A, a), L_σ is convex at σ = 1.001·σ* and not convex at "
                "σ = 0.999·σ*: your σ* is the threshold to 0.1 %.")

    return _run(exercise, body)


# --------------------------------------------------------------------------------------------
# chapter 9


def smoothed_clip(
    answer: Callable[[Tensor, float, float, float], Tensor],
    derivative: Callable[[Tensor, float, float, float], Tensor] | None = None,
    *,
    exercise: str = "ex-sn-hardtanh",
) -> Feedback:
    """Check the smoothed hardtanh clip_σ(x) = E[clip(x + σZ, ℓ, u)] and, if given, its derivative.

    ``answer(x, sigma, low, high)`` and ``derivative(x, sigma, low, high)`` take a float64
    tensor ``x`` and floats and return tensors shaped like ``x``. Compared, to 1e-8, with
    :func:`mollify.smoothed_hardtanh` and its autograd derivative at 81 points of [−8, 8] for
    three (σ, ℓ, u).

    Args:
        answer: the student's smoothed clip.
        derivative: the student's derivative of it (optional).
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    >>> smoothed_clip(lambda x, s, lo, hi: x.clamp(lo, hi)).passed
    False
    """
    x = torch.linspace(-8.0, 8.0, 81, dtype=_F64)
    cases = ((0.5, -1.0, 1.0), (1.0, 0.0, 6.0), (0.1, -2.0, 0.5))

    def compare(fn: Callable, what: str, which: str, hint: str) -> None:
        for sigma, lo, hi in cases:
            shown = f"{_call_name(what, which)}(x, {sigma}, {lo}, {hi})"
            seen = _tensor(_call(fn, what, (x.clone(), sigma, lo, hi), shown), what,
                           tuple(x.shape))
            xg = x.clone().requires_grad_()
            value = _smoothed_hardtanh(xg, sigma, lo, hi)
            expected = (value.detach() if which == "clip"
                        else torch.autograd.grad(value.sum(), xg)[0])
            i = _worst(seen, expected, 1e-8, 1e-8)
            if i is not None:
                target = "E[clip(x + σZ, ℓ, u)]" if which == "clip" else "its derivative"
                raise _Wrong(
                    f"{what} differs from {target} at x = {x[i].item():g} "
                    f"(σ = {sigma}, ℓ = {lo}, u = {hi}).",
                    expected=f"{expected[i].item():.8f} (to 1e-8)",
                    seen=f"{seen[i].item():.8f}",
                    hint=hint,
                )

    def body() -> str:
        what = _name(answer, "your smoothed clip")
        fn = _need_callable(answer, what)
        compare(fn, what, "clip",
                "clip(y) = ℓ + relu(y − ℓ) − relu(y − u), and the mean of a sum is the sum of the "
                "means: smooth each ReLU with mollify.smoothed_relu, with the same σ.")
        done = (f"{what} equals E[clip(x + σZ, ℓ, u)] at 81 points in [−8, 8] for 3 choices of "
                "(σ, ℓ, u), to 1e-8")
        if derivative is None:
            return done + "."
        dwhat = _name(derivative, "your derivative")
        try:
            dfn = _need_callable(derivative, dwhat)
            compare(dfn, dwhat, "derivative",
                    "differentiate term by term: the derivative of relu_σ(x) is Φ(x/σ) "
                    "(Theorem thm-sn-relu).")
        except _NotAttempted:
            raise _NotAttempted(f"{done}; {_stub_message(dwhat)}") from None
        except _Wrong as wrong:
            raise _Wrong(f"{done}, but {wrong.text}") from None
        return f"{done}; {dwhat} equals its derivative there."

    return _run(exercise, body)


# --------------------------------------------------------------------------------------------
# chapter 10


def _bound(c: float, C: float, m: float, s: float, p: float, eps: float) -> float:
    return c * eps**s + C / (eps**p * m)


def _best_log_eps(c: float, C: float, m: float, s: float, p: float) -> float:
    """argmin over y = log ε of c e^{sy} + (C/m) e^{−py} (convex in y), by golden section."""
    lo, hi = -60.0, 60.0
    f = lambda y: _bound(c, C, m, s, p, math.exp(y))  # noqa: E731
    g = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        y1, y2 = hi - g * (hi - lo), lo + g * (hi - lo)
        if f(y1) < f(y2):
            hi = y2
        else:
            lo = y1
    return 0.5 * (lo + hi)


def balanced_width(
    answer: Callable[[float, float, float, float, float], float],
    *,
    exercise: str = "ex-rates-balance",
) -> Feedback:
    """Check ε*(c, C, m, s, p), the width that minimizes the bound c ε^s + C/(ε^p m).

    ``answer(c, C, m, s, p)`` returns ε* > 0. Compared, to 0.1 %, with a numerical minimization
    of the bound over log ε (it is convex there) for four parameter sets, the first two with
    s = 1/2, p = 1 (part (a) of the exercise).

    Args:
        answer: the student's function.
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    >>> balanced_width(lambda c, C, m, s, p: 1 / m).passed
    False
    """

    def body() -> str:
        what = _name(answer, "your function")
        fn = _need_callable(answer, what)
        for c, C, m, s, p in ((1.0, 1.0, 100, 0.5, 1.0), (2.0, 0.5, 1000, 0.5, 1.0),
                              (1.0, 1.0, 64, 1.0, 2.0), (0.3, 3.0, 10, 2.0, 0.5)):
            shown = f"{_call_name(what, 'eps_star')}({c:g}, {C:g}, {m}, {s:g}, {p:g})"
            eps = _number(_call(fn, what, (c, C, m, s, p), shown), f"{what}'s value")
            if eps <= 0:
                raise _Wrong(f"{shown} = {_fmt(eps)}, but a width ε must be > 0.")
            best = math.exp(_best_log_eps(c, C, m, s, p))
            if abs(eps - best) > 1e-3 * best:
                raise _Wrong(
                    f"for c = {c:g}, C = {C:g}, m = {m}, s = {s:g}, p = {p:g} your ε* = "
                    f"{_fmt(eps)} is {_direction(eps, best)}.",
                    expected=f"the ε that minimizes the bound (to 0.1 %); its minimum is "
                    f"{_bound(c, C, m, s, p, best):.5g}",
                    seen=f"the bound at your ε is {_bound(c, C, m, s, p, eps):.5g}",
                    hint="set the derivative of c ε^s + C ε^(−p)/m with respect to ε to zero "
                    "and solve for ε.",
                )
        return ("your ε* minimizes c ε^s + C/(ε^p m) for 4 parameter sets (s = 1/2, 1, 2; "
                "p = 1/2, 1, 2), to 0.1 %.")

    return _run(exercise, body)


def passes_for_budget(
    answer: Callable[[float, float, int], tuple[int, int]],
    *,
    exercise: str = "ex-scale-chunk",
) -> Feedback:
    """Check ``answer(free_bytes, bytes_per_copy, n) -> (chunk, passes)``: the chunk size that
    ``chunk_size="auto"`` picks for a memory budget, and the passes a map of n samples takes.

    The chunk is ⌊½·free / per copy⌋ clamped to [1, n] (:func:`mollify.explain.chunk_for_memory`)
    and the passes ⌈n / chunk⌉; compared exactly on five budgets, including one too small for a
    single copy and one that holds all n.

    Args:
        answer: the student's function.
        exercise: the label reported in the feedback.

    Returns:
        A :class:`Feedback`.

    >>> passes_for_budget(lambda free, per, n: (int(free // per), 1)).passed
    False
    """
    from mollify.explain import chunk_for_memory

    def body() -> str:
        what = _name(answer, "your function")
        fn = _need_callable(answer, what)
        gib, mib = 2**30, 2**20
        for free, per, n in ((24 * gib, 40 * mib, 1000), (gib, 1.8 * mib, 1000),
                             (8 * gib, 3 * gib, 50), (80 * gib, 10 * mib, 64),
                             (6 * gib, 100 * mib, 30)):
            shown = f"{_call_name(what, 'plan')}({free / gib:g} GiB, {per / mib:g} MiB, n={n})"
            out = _call(fn, what, (free, per, n), shown)
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise _Wrong(f"{shown} returned {out!r}.", expected="a pair (chunk, passes)",
                             seen=type(out).__name__, hint="return chunk, passes")
            chunk, passes = (_number(v, f"{what}'s {k}") for k, v in zip(("chunk", "passes"), out))
            right = chunk_for_memory(int(free), per, limit=n)
            if chunk != right:
                raise _Wrong(
                    f"{shown}: the chunk {_fmt(chunk)} is {_direction(chunk, right)}.",
                    expected="the number of noisy copies that fit in half the free memory, at "
                    "least 1 and at most n",
                    seen=f"chunk = {_fmt(chunk)}",
                    hint="the budget is only half of the free memory; a pass holds a whole "
                    "number of copies, never fewer than one and never more than the n samples.",
                )
            if passes != math.ceil(n / right):
                raise _Wrong(
                    f"{shown}: with your (correct) chunk, {_fmt(passes)} passes is "
                    f"{_direction(passes, math.ceil(n / right))}.",
                    expected="the number of passes that covers all n samples",
                    seen=f"passes = {_fmt(passes)}",
                    hint="the last pass may be partly empty: round n / chunk up.",
                )
        return ("your chunk and pass counts match chunk_for_memory on 5 budgets, including one "
                "smaller than a single copy and one that holds all n samples.")

    return _run(exercise, body)


# --------------------------------------------------------------------------------------------
# the book's auto-checked exercises, and grading


#: The book's auto-checked exercises: label → the check its answer cell calls.
CHECKS: dict[str, Callable[..., Feedback]] = {
    "ex-rough-abs": averaged_abs_derivative,
    "ex-moll-epanechnikov": unit_variance_kernel,
    "ex-mc-pi": monte_carlo_pi,
    "ex-vr-cubic": antithetic_variance_ratio,
    "ex-gm-abs": smoothed_abs_gradient,
    "ex-expl-relative": kernel_reach,
    "ex-eval-gini-hand": sparseness_values,
    "ex-gsl-convex": convexity_threshold,
    "ex-sn-hardtanh": smoothed_clip,
    "ex-rates-balance": balanced_width,
    "ex-scale-chunk": passes_for_budget,
}


def collect_feedback(nb: Any) -> list[Feedback]:
    """Return the :class:`Feedback` records displayed in an executed notebook, in order.

    Args:
        nb: a notebook (``nbformat.NotebookNode``, or the dict of a loaded ``.ipynb``).

    Returns:
        One Feedback per displayed check result.

    >>> cell = {"cell_type": "code", "outputs": [{"output_type": "execute_result",
    ...         "data": {FEEDBACK_MIME: Feedback("ex-a", "passed", "ok.").to_dict()}}]}
    >>> [f.exercise for f in collect_feedback({"cells": [cell]})]
    ['ex-a']
    """
    found = []
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            record = out.get("data", {}).get(FEEDBACK_MIME)
            if record is not None:
                found.append(Feedback.from_dict(record))
    return found


def grade_notebook(
    path: str | Path,
    *,
    timeout: int = 600,
    kernel_name: str = "python3",
    append: tuple[str, ...] = (),
) -> list[Feedback]:
    """Execute a submitted notebook (errors allowed) and return the feedback of its checks.

    The notebook runs from its own folder with ``nbclient`` (install the ``book`` or ``test``
    extra); a cell that raises does not stop the run, so later exercises are still graded.
    ``append`` adds code cells at the end, e.g. grader-owned check calls on the student's
    names (``"import mollify.exercises as check\\ncheck.monte_carlo_pi(in_disc)"``), which a
    student cannot edit. The file itself is not changed.

    Args:
        path: the ``.ipynb`` file.
        timeout: seconds allowed per cell.
        kernel_name: Jupyter kernel to run it with.
        append: source code of extra cells to run after the notebook's own.

    Returns:
        The Feedback of every check displayed, in order (sum ``f.score`` to grade).
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    timeout = check_int("timeout", timeout, minimum=1)
    nb = nbformat.read(path, as_version=4)
    for source in append:
        nb.cells.append(nbformat.v4.new_code_cell(source))
    NotebookClient(
        nb, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    return collect_feedback(nb)
