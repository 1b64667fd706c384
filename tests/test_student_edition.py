"""Coursework: the exercise checks give useful feedback, and the student edition keeps every
exercise, drops every solution (from the notebooks and from the built HTML), and its answer
stubs run and report "not attempted".

The solution texts are collected from the full notebooks by a parser written here, independent
of mollify.student_edition: every line of a {solution} block, of the prose and code cells of a
gated solution, of their text outputs, and the marked lines of the answer cells.
"""

from __future__ import annotations

import html
import math
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

import mollify.exercises as check
from mollify import smoothed_relu
from mollify.__main__ import main
from mollify.student_edition import (
    ANSWER_TAG,
    TEACHER_ONLY,
    make_student_edition,
    make_stub,
    strip_markdown,
)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p for p in (ROOT / "book").glob("*.ipynb"))
# every chapter (parts Foundations, Explaining networks, Training with smoothing, Scale) has an
# auto-checked exercise
CORE = [p for p in NOTEBOOKS if int(p.name[:2]) <= 11]
TOC = (ROOT / "_toc.yml").read_text()
MIN_LINE = 25  # solution lines shorter than this are too generic to prove a leak
MIN_SEGMENT = 20  # alphanumeric characters of a text segment searched for in the HTML
_SOLUTION = re.compile(r"^(`{3,}|:{3,})\{solution\}[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
_EXERCISE = re.compile(r"^(`{3,}|:{3,})\{exercise\}[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
_ROLE = re.compile(r"\{[\w:-]+\}`[^`]*`|\[[^\]]*\]\([^)]*\)|^:\w+:.*$", re.M)


def _text(source) -> str:
    return source if isinstance(source, str) else "".join(source)


def _outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(_text(out["text"]))
        elif "text/plain" in out.get("data", {}):
            parts.append(_text(out["data"]["text/plain"]))
    return "\n".join(parts)


def _marked_lines(source: str) -> list[str]:
    """The solution lines of an answer cell (between BEGIN/END SOLUTION, or ending # SOLUTION)."""
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip() == "# BEGIN SOLUTION":
            inside = True
        elif line.strip() == "# END SOLUTION":
            inside = False
        elif inside:
            lines.append(line)
        elif line.rstrip().endswith("# SOLUTION"):
            lines.append(line.rsplit("# SOLUTION", 1)[0])
    return lines


def _split(nb) -> tuple[list[str], list[str]]:
    """(solution texts, public texts) of a full notebook."""
    solution, public, gated = [], [], False
    for cell in nb.cells:
        src = _text(cell.source)
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code":
            if ANSWER_TAG in tags:
                marked = _marked_lines(src)
                solution += marked + [_outputs(cell)]
                public.append("\n".join(line for line in src.splitlines() if line not in marked))
            elif gated:
                solution += [src, _outputs(cell)]
            else:
                public += [src, _outputs(cell)]
            continue
        if gated or "{solution-start}" in src:
            before, start, after = src.partition("{solution-start}")
            if not gated:
                public.append(before)
                after = after.split("```", 1)[-1]  # the rest of the solution-start fence
            body, end, rest = (before + after if gated else after).partition("{solution-end}")
            solution.append(body)
            gated = not end
            public.append(rest)
            continue
        solution += [m.group(2) for m in _SOLUTION.finditer(src)]
        public.append(_SOLUTION.sub("", src))
    return solution, public


def _distinctive(texts: list[str], public: str) -> set[str]:
    lines = {line.strip() for text in texts for line in text.splitlines()}
    return {line for line in lines if len(line) >= MIN_LINE and line not in public}


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def _segments(line: str) -> list[str]:
    """Alphanumeric fragments of a source line that survive rendering (roles and links cut)."""
    return [s for s in map(_alnum, _ROLE.split(line)) if len(s) >= MIN_SEGMENT]


@pytest.fixture(scope="module")
def full():
    """Per notebook name: (solution lines, exercise texts, public text of the whole book).

    A solution line that also occurs in the book's public text (the chapters outside their
    solutions, the other pages) is no evidence of a leak and is left out."""
    split, public = {}, [p.read_text() for p in (ROOT / "book").glob("*.md")
                         if p.relative_to(ROOT).as_posix() not in TEACHER_ONLY]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        solution, public_parts = _split(nb)
        exercises = [m.group(2) for c in nb.cells if c.cell_type == "markdown"
                     for m in _EXERCISE.finditer(_text(c.source))]
        split[path.name] = (solution, exercises)
        public += public_parts
    public_text = "\n".join(public)
    return {name: (_distinctive(solution, public_text), exercises, public_text)
            for name, (solution, exercises) in split.items()}


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    """The student edition, built strictly (-W -n) once for the module (about a minute)."""
    out = tmp_path_factory.mktemp("student") / "edition"
    return make_student_edition(out, root=ROOT, build=True, strict=True)


# --- the full book ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_chapter_has_three_exercises_and_an_auto_checked_one(path, full):
    nb = nbformat.read(path, as_version=4)
    solutions, exercises, _ = full[path.name]
    assert len(exercises) >= 3
    assert len(solutions) >= 3, "the solution parser found (almost) no solution text"
    answers = [c for c in nb.cells if ANSWER_TAG in c.metadata.get("tags", [])]
    assert answers, f"{path.name} has no cell tagged {ANSWER_TAG}"
    for cell in answers:
        assert "# NBVAL_CHECK_OUTPUT" in cell.source  # nbval proves the reference answer passes
        feedback = check.collect_feedback({"cells": [cell]})
        assert [f.status for f in feedback] == ["passed"], _outputs(cell)
        assert feedback[0].exercise in check.CHECKS
        assert f":label: {feedback[0].exercise}" in "".join(c.source for c in nb.cells)
        assert _marked_lines(cell.source), "an answer cell must mark its solution lines"


# --- the student edition ------------------------------------------------------------------------


@pytest.mark.slow
def test_edition_has_every_notebook_and_no_teacher_pages(edition):
    written = sorted(p.name for p in (edition.outdir / "book").glob("*.ipynb"))
    assert written == [p.name for p in NOTEBOOKS]
    assert edition.stubs >= len(CORE) and edition.solutions >= 3 * len(CORE)
    toc = (edition.outdir / "_toc.yml").read_text()
    for page in TEACHER_ONLY:
        assert not (edition.outdir / page).exists()
        assert Path(page).with_suffix("").as_posix() not in toc
    config = (edition.outdir / "_config.yml").read_text()
    assert "(student edition)" in config and "announcement" in config
    assert "colab_url" in config and "https://github.com/" in config
    assert (edition.html / "index.html").is_file()


@pytest.mark.slow
def test_no_solution_text_in_student_notebooks(edition, full):
    for path in NOTEBOOKS:
        solutions, exercises, _ = full[path.name]
        nb = nbformat.read(edition.outdir / "book" / path.name, as_version=4)
        text = "\n".join(_text(c.source) + "\n" + _outputs(c) for c in nb.cells)
        leaked = sorted(line for line in solutions if line in text)
        assert not leaked, f"{path.name}: solution text survives: {leaked[:3]}"
        assert "{solution" not in text
        for exercise in exercises:  # the exercises themselves are all there
            assert exercise in text


def _site_text(html_dir: Path) -> str:
    """All text of a built book (tags stripped, entities decoded), alphanumerics only."""
    pages = [p for p in html_dir.rglob("*") if p.suffix in {".html", ".ipynb", ".txt", ".md"}
             and "_static" not in p.parts]
    return _alnum(html.unescape(re.sub(r"<[^>]+>", " ", "\n".join(
        p.read_text(errors="replace") for p in pages))))


def _solution_segments(full) -> dict[str, list[str]]:
    public = _alnum(next(iter(full.values()))[2])  # the book's public text, the same for all
    return {name: [seg for line in solutions for seg in _segments(line) if seg not in public]
            for name, (solutions, _, _) in full.items()}


@pytest.mark.slow
def test_no_solution_text_in_student_html(edition, full):
    site = _site_text(edition.html)
    for name, segments in _solution_segments(full).items():
        leaked = sorted(seg for seg in segments if seg in site)
        assert not leaked, f"{name}: solution text in the HTML: {leaked[:3]}"
        if f"file: book/{Path(name).stem}" in TOC:  # only pages in the table of contents are built
            shown = [seg for text in full[name][1] for line in text.splitlines()
                     for seg in _segments(line)]
            assert shown and all(seg in site for seg in shown), f"{name}: exercises missing"


@pytest.mark.slow
def test_the_html_search_finds_solutions_in_the_full_book(tmp_path, full):
    """Control: the search above is not blind — in the full book it finds most solutions (some
    lines render differently, e.g. around cross-references)."""
    subprocess.run([sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
                    "build", str(ROOT), "--path-output", str(tmp_path)], check=True,
                   capture_output=True)
    site = _site_text(tmp_path / "_build" / "html")
    segments = [seg for segs in _solution_segments(full).values() for seg in segs]
    found = sum(seg in site for seg in segments)
    assert len(segments) > 300 and found >= 0.75 * len(segments), (found, len(segments))


@pytest.mark.slow
def test_student_stubs_run_and_report_not_attempted(edition, tmp_path):
    stubs = []
    for path in NOTEBOOKS:
        nb = nbformat.read(edition.outdir / "book" / path.name, as_version=4)
        cells = [c for c in nb.cells if ANSWER_TAG in c.metadata.get("tags", [])]
        assert cells or path not in CORE
        assert all(not c.outputs and "..." in c.source for c in cells)
        assert all("BEGIN SOLUTION" not in c.source and "NBVAL" not in c.source for c in cells)
        stubs += cells
    # every stub is self-contained: run them all, alone, in one fresh kernel
    nb = nbformat.v4.new_notebook(cells=stubs)
    nbformat.write(nb, tmp_path / "stubs.ipynb")
    feedback = check.grade_notebook(tmp_path / "stubs.ipynb", timeout=120)
    assert [f.status for f in feedback] == ["not attempted"] * len(stubs)
    assert {f.exercise for f in feedback} == set(check.CHECKS)
    assert sum(f.score for f in feedback) == 0


def test_cli_writes_the_edition_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "edition"
    assert main(["student-edition", str(out), "--no-build", "--root", str(ROOT),
                 "--clear-outputs", "--repository-url", "https://github.com/me/course"]) == 0
    assert "solutions removed" in capsys.readouterr().out
    nb = nbformat.read(out / "book" / NOTEBOOKS[0].name, as_version=4)
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code")
    assert "https://github.com/me/course" in (out / "_config.yml").read_text()
    assert not (out / "_build").exists()
    with pytest.raises(SystemExit):
        main(["student-edition", str(out), "--no-build", "--root", str(ROOT)])
    assert main(["student-edition", str(out), "--no-build", "--root", str(ROOT), "--force"]) == 0
    with pytest.raises(SystemExit):  # never into the sources themselves
        main(["student-edition", str(ROOT / "book" / "x"), "--no-build", "--root", str(ROOT)])


# --- stripping ----------------------------------------------------------------------------------


def test_strip_markdown_handles_fences_and_gated_solutions():
    page = (
        "Text before.\n```{solution} ex-a\n:class: dropdown\nSECRET one\n```\nText after.\n\n"
        "````{solution} ex-b\n```python\nSECRET two\n```\n````\n\n"
        ":::{solution} ex-c\nSECRET three\n:::\n\n"
        "```python\n# {solution} in a code block is code\n```\n\n"
        "```{solution-start} ex-d\n:class: dropdown\n```\nSECRET four\n```{code-cell}\nx\n```\n"
        "```{solution-end}\n```\nThe end.\n"
    )
    out = strip_markdown(page)
    assert "SECRET" not in out and "{solution" not in out.replace("# {solution}", "")
    assert "Text before.\n\nText after." in out  # paragraphs stay apart
    assert "# {solution} in a code block is code" in out and out.endswith("The end.\n")
    with pytest.raises(ValueError, match="solution-start"):
        strip_markdown("```{solution-start} ex-a\n```\nSECRET\n")
    with pytest.raises(ValueError, match="solution-end"):
        strip_markdown("```{solution-end}\n```\n")


def test_make_stub_markers():
    source = (
        "# NBVAL_CHECK_OUTPUT\nimport mollify.exercises as check\n\n\ndef f(x):\n"
        "    '''doc'''\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n    # END SOLUTION\n\n\n"
        "a, b = 1, 2  # SOLUTION\nreturn_value = f(a)  # SOLUTION\nprint(a)  # SOLUTION\n"
        "check.thing(f)"
    )
    stub = make_stub(source)
    assert stub == (
        "import mollify.exercises as check\n\n\ndef f(x):\n    '''doc'''\n    ...\n\n\n"
        "a, b = ...\nreturn_value = ...\n...\ncheck.thing(f)"
    )
    with pytest.raises(ValueError, match="END SOLUTION"):
        make_stub("# BEGIN SOLUTION\nx = 1\n")
    with pytest.raises(ValueError, match="valid Python"):
        make_stub("if x:\n    # BEGIN SOLUTION\n    y = 1\n# END SOLUTION\n  z")


# --- the checks: a right answer passes, a wrong one gets expected/seen/hint, a stub is not
# attempted; no failure message gives the reference answer away ----------------------------------


def _stub(*args):
    ...


def _erf_grad(x, w, b, eps):
    return w * torch.erf((w @ x + b) / (math.sqrt(2) * eps * w.norm()))


def _clip(x, s, lo, hi):
    return lo + smoothed_relu(x - lo, s) - smoothed_relu(x - hi, s)


def _clip_grad(x, s, lo, hi):
    return torch.special.ndtr((x - lo) / s) - torch.special.ndtr((x - hi) / s)


def _epanechnikov(t):
    return torch.where(t.abs() <= 5**0.5, 0.75 / 5**0.5 * (1 - t * t / 5), 0.0)


def _sigma_star(A, a):
    return math.sqrt(2 * math.log(A * a * a / 2)) / a


CUBIC = lambda u: u[:, 0] ** 3 + u[:, 0] ** 2  # noqa: E731
GINI = [(0, 1, -1, 2), (0, 0, 0, 5), (1, 1, 1, 1)]
REACH = (math.sqrt(3) * 0.15, math.sqrt(5) * 0.15, 2 * (1 - 0.5 * (1 + math.erf(math.sqrt(1.5)))))

# label: (right answer, wrong answer, stub, strings that would give the answer away)
def _plan(free, per, n):
    chunk = min(n, max(1, int(0.5 * free // per)))
    return chunk, math.ceil(n / chunk)


CASES = {
    "ex-rough-abs": (
        lambda: check.averaged_abs_derivative(lambda x, e: torch.erf(x / (2**0.5 * e))),
        lambda: check.averaged_abs_derivative(lambda x, e: torch.special.ndtr(x / e)),
        lambda: check.averaged_abs_derivative(_stub),
        ["erf(x / (", "2**0.5"],
    ),
    "ex-moll-epanechnikov": (
        lambda: check.unit_variance_kernel(_epanechnikov),
        lambda: check.unit_variance_kernel(lambda t: 0.75 * (1 - t**2).clamp_min(0)),
        lambda: check.unit_variance_kernel(_stub),
        ["1/√5", "1/sqrt(5)", "0.4472"],
    ),
    "ex-mc-pi": (
        lambda: check.monte_carlo_pi(lambda u: 4.0 * ((u**2).sum(1) <= 3).double()),
        lambda: check.monte_carlo_pi(lambda u: 3.0 * ((u**2).sum(1) <= 3).double()),
        lambda: check.monte_carlo_pi(_stub),
        ["4.0 *", "4 *"],
    ),
    "ex-vr-cubic": (
        lambda: check.antithetic_variance_ratio(4 / 17, CUBIC),
        lambda: check.antithetic_variance_ratio(0.5, CUBIC),
        lambda: check.antithetic_variance_ratio(..., CUBIC),
        ["4/17", "0.235", "0.2353"],
    ),
    "ex-gm-abs": (
        lambda: check.smoothed_abs_gradient(_erf_grad),
        lambda: check.smoothed_abs_gradient(lambda x, w, b, e: w * torch.sign(w @ x + b)),
        lambda: check.smoothed_abs_gradient(_stub),
        ["w.norm()", "erf(c"],
    ),
    "ex-expl-relative": (
        lambda: check.kernel_reach(*REACH),
        lambda: check.kernel_reach(0.15, 0.15, 0.05),
        lambda: check.kernel_reach(..., ..., ...),
        ["0.2598", "0.260", "0.3354", "0.335", "0.0833", "0.083"],
    ),
    "ex-eval-gini-hand": (
        lambda: check.sparseness_values(dict(zip(GINI, (0.375, 0.75, 0.0)))),
        lambda: check.sparseness_values(dict(zip(GINI, (0.5, 0.7, 0.1)))),
        lambda: check.sparseness_values(dict(zip(GINI, (..., ..., ...)))),
        ["0.375", "0.75 ", "6/16"],
    ),
    "ex-gsl-convex": (
        lambda: check.convexity_threshold(_sigma_star),
        lambda: check.convexity_threshold(lambda A, a: 0.5 * _sigma_star(A, a)),
        lambda: check.convexity_threshold(_stub),
        ["0.2797", "0.280", "log(", "ln("],
    ),
    "ex-sn-hardtanh": (
        lambda: check.smoothed_clip(_clip, _clip_grad),
        lambda: check.smoothed_clip(lambda x, s, lo, hi: x.clamp(lo, hi), _clip_grad),
        lambda: check.smoothed_clip(_stub, _stub),
        ["ndtr((x - lo)", "relu_σ(x − ℓ) − relu_σ"],
    ),
    "ex-rates-balance": (
        lambda: check.balanced_width(lambda c, C, m, s, p: (p * C / (s * c * m)) ** (1 / (s + p))),
        lambda: check.balanced_width(lambda c, C, m, s, p: (C / (c * m)) ** (1 / (s + p))),
        lambda: check.balanced_width(_stub),
        ["1 / (s + p)", "1/(s+p)", "(s + p)"],
    ),
    "ex-scale-chunk": (
        lambda: check.passes_for_budget(_plan),
        lambda: check.passes_for_budget(lambda free, per, n: (max(1, int(free // per)), 1)),
        lambda: check.passes_for_budget(_stub),
        ["0.5 * free", "free / 2", "ceil"],
    ),
}


def test_every_book_check_is_tested():
    assert set(CASES) == set(check.CHECKS)


@pytest.mark.parametrize("label", sorted(CASES))
def test_check_feedback(label):
    right, wrong, stub, giveaways = CASES[label]
    result = right()
    assert result.passed and result.exercise == label and str(result).startswith("✓")
    result = wrong()
    assert result.status == "failed" and str(result).startswith("✗"), str(result)
    for word in ("expected", "seen", "hint"):
        assert word in result.message, f"{label}: no {word!r} in\n{result}"
    for text in giveaways:
        assert text not in result.message, f"{label}: the feedback gives away {text!r}"
    result = stub()
    assert result.status == "not attempted" and "not attempted" in str(result), str(result)


def test_checks_never_raise_on_a_broken_answer():
    def broken(*args):
        raise ZeroDivisionError("oops")

    for fn in (check.averaged_abs_derivative, check.unit_variance_kernel, check.monte_carlo_pi,
               check.smoothed_abs_gradient, check.convexity_threshold, check.smoothed_clip,
               check.balanced_width):
        for answer in (broken, lambda *a: "text", lambda *a: torch.zeros(3, 3), 42):
            result = fn(answer)
            assert result.status == "failed", (fn.__name__, str(result))
            assert "hint" in result.message or "must" in result.message, str(result)
    assert check.antithetic_variance_ratio("0.2", CUBIC).status == "failed"
    assert check.sparseness_values([0.375]).status == "failed"
    assert check.averaged_abs_derivative(lambda x, e: torch.full_like(x, math.nan)).status == \
        "failed"


def test_feedback_record_round_trips_through_a_notebook_output():
    fb = check.monte_carlo_pi(_stub)
    bundle = fb._repr_mimebundle_()
    assert bundle["text/plain"] == str(fb)
    output = nbformat.v4.new_output("execute_result", data=bundle, execution_count=1)
    cell = nbformat.v4.new_code_cell("check.monte_carlo_pi(f)", outputs=[output])
    assert check.collect_feedback(nbformat.v4.new_notebook(cells=[cell])) == [fb]
    with pytest.raises(ValueError, match="status"):
        check.Feedback("ex-a", "wrong", "x")
    with pytest.raises(ValueError, match="kernel"):  # a teacher's mistake raises
        check.unit_variance_kernel(_epanechnikov, "gauss")
