"""The student edition: the book's notebooks and pages without solutions, and its HTML build.

``python -m mollify student-edition OUTDIR`` (or :func:`make_student_edition`) copies the book
sources — ``_config.yml``, ``_toc.yml`` and ``book/`` — into ``OUTDIR`` and removes from every
notebook and Markdown page

* ``{solution}`` directive blocks (backtick or colon fences of any length), and
* gated solutions: everything from a ```` ```{solution-start} ```` fence to the end of its
  ```` ```{solution-end} ```` fence, across cells — prose, code cells and their outputs — except
  cells tagged ``exercise-answer``, which are replaced by their stub (:func:`make_stub`, the
  convention of :mod:`mollify.exercises`) with no output, where the solution was.

Cells left empty are dropped; every other cell, with its stored output, is kept, so the student
book shows the chapters' figures. Teacher-only pages (:data:`TEACHER_ONLY`, the teaching guide)
are left out of the copy and its table of contents. The copied ``_config.yml`` gets
"(student edition)" in its title and an announcement banner; its repository and launch buttons
are kept (pass ``repository_url``/``branch`` to point the Colab buttons at the place where the
student notebooks are published — the original repository holds the solutions). Unless
``build=False``, ``jupyter-book build OUTDIR`` then writes the HTML into ``OUTDIR/_build/html``.

Needs ``nbformat`` and ``pyyaml`` (the ``book`` extra), and ``jupyter-book`` to build.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ANSWER_TAG",
    "TEACHER_ONLY",
    "StudentEdition",
    "make_stub",
    "strip_markdown",
    "strip_notebook",
    "make_student_edition",
]

#: Cell tag of an auto-checked exercise's answer cell (see :mod:`mollify.exercises`).
ANSWER_TAG = "exercise-answer"
#: Pages of the book, relative to its root, that the student edition leaves out.
TEACHER_ONLY: tuple[str, ...] = ("book/teaching.md",)

_SOURCES = ("_config.yml", "_toc.yml")
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
_DIRECTIVE = re.compile(r"^\{(?P<name>[\w:-]+)\}")
_BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION\s*$")
_END = re.compile(r"^\s*# END SOLUTION\s*$")
_LINE = re.compile(r"^(?P<indent>\s*)(?P<code>.*?)\s*# SOLUTION\s*$")
_ASSIGN = re.compile(r"^(?P<target>[A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*)\s*=(?!=)")
_NBVAL = re.compile(r"^\s*# NBVAL_\w+\s*$")


# --------------------------------------------------------------------------------------------
# stubs


def make_stub(source: str) -> str:
    """Return the student's stub of an answer cell: the solution parts replaced by ``...``.

    Lines from ``# BEGIN SOLUTION`` to ``# END SOLUTION`` become one ``...`` (indented like the
    marker); a line ending in ``# SOLUTION`` becomes ``name = ...`` for an assignment,
    ``return ...`` for a return, ``...`` otherwise; ``# NBVAL_...`` marker lines are dropped.

    Args:
        source: the answer cell's code.

    Returns:
        The stub's code, which is valid Python.

    Raises:
        ValueError: on unbalanced markers, or if the stub is not valid Python.

    >>> print(make_stub('''# NBVAL_CHECK_OUTPUT
    ... def pdf(t):
    ...     # BEGIN SOLUTION
    ...     return t.exp()
    ...     # END SOLUTION
    ... n = 4  # SOLUTION
    ... check.thing(pdf, n)'''))
    def pdf(t):
        ...
    n = ...
    check.thing(pdf, n)
    """
    import ast

    out: list[str] = []
    inside = False
    for line in source.splitlines():
        if _BEGIN.match(line):
            if inside:
                raise ValueError("nested '# BEGIN SOLUTION' in an answer cell")
            inside = True
            out.append(f"{_BEGIN.match(line)['indent']}...")
        elif _END.match(line):
            if not inside:
                raise ValueError("'# END SOLUTION' without '# BEGIN SOLUTION' in an answer cell")
            inside = False
        elif inside or _NBVAL.match(line):
            continue
        elif (m := _LINE.match(line)) is not None:
            code, indent = m["code"], m["indent"]
            if (a := _ASSIGN.match(code)) is not None:
                out.append(f"{indent}{a['target']} = ...")
            elif code == "return" or code.startswith("return "):
                out.append(f"{indent}return ...")
            else:
                out.append(f"{indent}...")
        else:
            out.append(line)
    if inside:
        raise ValueError("'# BEGIN SOLUTION' without '# END SOLUTION' in an answer cell")
    stub = "\n".join(out).strip("\n")
    try:
        ast.parse(stub)
    except SyntaxError as exc:
        raise ValueError(
            f"the stub of an answer cell is not valid Python ({exc}):\n{stub}"
        ) from None
    return stub


# --------------------------------------------------------------------------------------------
# solutions in Markdown


class _Stripper:
    """Removes solutions from a sequence of Markdown chunks (the cells of one notebook, or one
    page); ``gated`` carries an open ``solution-start`` from one chunk to the next."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.gated = False
        self.removed = 0

    def text(self, text: str) -> str:
        lines = text.splitlines(keepends=True)
        out: list[str] = []
        i, changed, after_removal = 0, self.gated, False
        while i < len(lines):
            m = _FENCE.match(lines[i].rstrip("\r\n"))
            if m is None or (self.gated and not _DIRECTIVE.match(m["info"].strip())):
                blank = not lines[i].strip()
                # where a block was removed, keep exactly one blank line between the paragraphs
                # around it (a directive ends a paragraph; without it they would merge)
                separated = not out or not out[-1].strip()
                if not self.gated and not (after_removal and blank and separated):
                    if after_removal and not blank and not separated:
                        out.append("\n")
                    out.append(lines[i])
                    after_removal = after_removal and blank
                i += 1
                continue
            end = _closing(lines, i, m["fence"])
            d = _DIRECTIVE.match(m["info"].strip())
            name = d["name"] if d else ""
            if name == "solution-start":
                if self.gated:
                    raise ValueError(f"{self.where}: solution-start inside an open solution-start")
                self.gated = True
                self.removed += 1
            elif name == "solution-end":
                if not self.gated:
                    raise ValueError(f"{self.where}: solution-end without a solution-start")
                self.gated = False
            elif name == "solution":
                self.removed += not self.gated
            elif not self.gated:  # any other fenced block is kept verbatim
                out.extend(lines[i : end + 1])
                i, after_removal = end + 1, False
                continue
            i, changed, after_removal = end + 1, True, True
        if not changed:
            return text
        return "".join(out).rstrip() + ("\n" if text.endswith("\n") and out else "")


def _closing(lines: list[str], start: int, fence: str) -> int:
    """Index of the line closing the fence opened at ``start`` (the last line if none)."""
    closer = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
    for j in range(start + 1, len(lines)):
        if closer.match(lines[j].rstrip("\r\n")):
            return j
    return len(lines) - 1


def strip_markdown(text: str, *, where: str = "page") -> str:
    """Return a MyST Markdown page without its ``{solution}`` blocks and gated solutions.

    Args:
        text: the page.
        where: its name, for error messages.

    Returns:
        The page without solutions.

    Raises:
        ValueError: on a ``solution-start`` without ``solution-end`` or the reverse.

    >>> page = "Intro.\\n\\n```{exercise}\\n:label: ex-a\\nDo it.\\n```\\n\\n" \\
    ...        "```{solution} ex-a\\n:class: dropdown\\nDone.\\n```\\n\\nMore.\\n"
    >>> print(strip_markdown(page))
    Intro.
    <BLANKLINE>
    ```{exercise}
    :label: ex-a
    Do it.
    ```
    <BLANKLINE>
    More.
    <BLANKLINE>
    """
    stripper = _Stripper(where)
    out = stripper.text(text)
    if stripper.gated:
        raise ValueError(f"{where}: solution-start without solution-end")
    return out


def _source(cell: Any) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def strip_notebook(nb: Any, *, where: str = "notebook") -> tuple[Any, int, int]:
    """Return a copy of a notebook without solutions, its answer cells replaced by stubs.

    Args:
        nb: an ``nbformat`` notebook (version 4).
        where: its name, for error messages.

    Returns:
        ``(stripped notebook, solutions removed, answer cells made stubs)``.

    Raises:
        ValueError: on unbalanced ``solution-start``/``solution-end`` or solution markers.
    """
    nb = copy.deepcopy(nb)
    stripper = _Stripper(where)
    cells, stubs = [], 0
    for cell in nb.cells:
        if ANSWER_TAG in cell.get("metadata", {}).get("tags", []):
            if cell.cell_type != "code":
                raise ValueError(f"{where}: a {cell.cell_type} cell is tagged {ANSWER_TAG!r}")
            cell.source = make_stub(_source(cell))
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
            cells.append(cell)
            stubs += 1
        elif cell.cell_type == "code":
            if not stripper.gated:
                cells.append(cell)
        else:
            text = stripper.text(_source(cell))
            if text.strip():
                cell.source = text
                cells.append(cell)
    if stripper.gated:
        raise ValueError(f"{where}: solution-start without solution-end")
    nb.cells = cells
    return nb, stripper.removed, stubs


# --------------------------------------------------------------------------------------------
# the edition


@dataclass(frozen=True)
class StudentEdition:
    """What :func:`make_student_edition` wrote.

    Attributes:
        outdir: the folder with ``_config.yml``, ``_toc.yml`` and ``book/``.
        notebooks: number of notebooks written.
        solutions: number of solutions removed.
        stubs: number of answer cells replaced by their stubs.
        html: ``outdir/_build/html`` if the book was built, else None.
    """

    outdir: Path
    notebooks: int
    solutions: int
    stubs: int
    html: Path | None

    def __str__(self) -> str:
        text = (f"student edition in {self.outdir}: {self.notebooks} notebooks, "
                f"{self.solutions} solutions removed, {self.stubs} answer cells left as stubs")
        return text + (f"; book in {self.html / 'index.html'}" if self.html else "")


def _default_root() -> Path:
    for candidate in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if all((candidate / name).is_file() for name in _SOURCES) and (candidate / "book").is_dir():
            return candidate
    raise ValueError(
        "no book sources (_config.yml, _toc.yml, book/) in the current folder or next to the "
        "mollify package; run from a clone of the repository or pass root"
    )


def _config(text: str, *, repository_url: str | None, branch: str | None) -> str:
    import yaml

    config = yaml.safe_load(text) or {}
    title = config.get("title", "Book")
    config["title"] = f"{title} (student edition)"
    html = config.setdefault("html", {})
    html["announcement"] = ("Student edition: the exercises are here, their solutions are not. "
                            "Run each answer cell to check your answer.")
    repo = config.setdefault("repository", {})
    if repository_url is not None:
        repo["url"] = repository_url
    if branch is not None:
        repo["branch"] = branch
    header = "# Generated by `python -m mollify student-edition`: the book without solutions.\n"
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)


def _toc(text: str) -> str:
    for page in TEACHER_ONLY:
        stem = re.escape(str(Path(page).with_suffix("")))
        text = re.sub(rf"(?m)^[ \t]*- file:[ \t]*{stem}(\.md|\.ipynb)?[ \t]*\n", "", text)
    return text


def make_student_edition(
    outdir: str | Path,
    *,
    root: str | Path | None = None,
    build: bool = True,
    strict: bool = False,
    overwrite: bool = False,
    clear_outputs: bool = False,
    repository_url: str | None = None,
    branch: str | None = None,
) -> StudentEdition:
    """Write the student edition of the book into ``outdir`` and (by default) build it.

    Args:
        outdir: folder to write; must be empty or absent unless ``overwrite``.
        root: the repository with ``_config.yml``, ``_toc.yml`` and ``book/`` (default: the
            current folder if it has them, else the checkout that holds this package).
        build: run ``jupyter-book build outdir`` (HTML in ``outdir/_build/html``).
        strict: build with ``-W -n --keep-going`` (fail on any warning).
        overwrite: replace ``_config.yml``, ``_toc.yml``, ``book/`` and ``_build/`` in an
            existing ``outdir`` (nothing else there is touched).
        clear_outputs: also clear every stored output of the written notebooks (after the
            build, so the HTML still shows the figures).
        repository_url, branch: where the student notebooks will be published, for the
            repository and Colab buttons of the built book.

    Returns:
        A :class:`StudentEdition` summary.

    Raises:
        ValueError: if ``root`` has no book sources, ``outdir`` is not empty (without
            ``overwrite``) or overlaps the sources, or a notebook's solution markers are
            unbalanced.
        subprocess.CalledProcessError: if the build fails.
    """
    import nbformat

    root = _default_root() if root is None else Path(root)
    if not all((root / name).is_file() for name in _SOURCES) or not (root / "book").is_dir():
        raise ValueError(f"root must hold _config.yml, _toc.yml and book/; {root} does not")
    outdir = Path(outdir)
    src, dst = root.resolve(), outdir.resolve()
    if dst == src or src / "book" in (dst, *dst.parents) or dst in src.parents:
        raise ValueError(f"outdir {outdir} must be outside the book's sources in {root}")
    if dst.exists() and any(dst.iterdir()):
        if not overwrite:
            raise ValueError(f"outdir {outdir} is not empty; choose another or pass overwrite")
        for name in ("book", "_build"):
            shutil.rmtree(dst / name, ignore_errors=True)
    dst.mkdir(parents=True, exist_ok=True)

    shutil.copytree(root / "book", dst / "book", ignore=shutil.ignore_patterns(
        ".ipynb_checkpoints", "__pycache__", "_build", "*.pyc"))
    for page in TEACHER_ONLY:
        (dst / page).unlink(missing_ok=True)
    (dst / "_config.yml").write_text(_config((root / "_config.yml").read_text(),
                                             repository_url=repository_url, branch=branch))
    (dst / "_toc.yml").write_text(_toc((root / "_toc.yml").read_text()))

    notebooks = solutions = stubs = 0
    for path in sorted((dst / "book").rglob("*.md")):
        stripper = _Stripper(str(path.relative_to(dst)))
        text = stripper.text(path.read_text())
        if stripper.gated:
            raise ValueError(f"{stripper.where}: solution-start without solution-end")
        path.write_text(text)
        solutions += stripper.removed
    for path in sorted((dst / "book").rglob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        stripped, removed, made = strip_notebook(nb, where=str(path.relative_to(dst)))
        nbformat.write(stripped, path)
        notebooks, solutions, stubs = notebooks + 1, solutions + removed, stubs + made

    html = None
    if build:
        cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()",
               "build", str(dst)]
        if strict:
            cmd += ["-W", "-n", "--keep-going"]
        subprocess.run(cmd, check=True)
        html = dst / "_build" / "html"
    if clear_outputs:
        for path in sorted((dst / "book").rglob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "code":
                    cell.outputs, cell.execution_count = [], None
            nb.metadata.pop("widgets", None)
            nbformat.write(nb, path)
    return StudentEdition(outdir, notebooks, solutions, stubs, html)
