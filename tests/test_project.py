"""The project holds together: packaging, CI, configuration and the committed notebooks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONDA_TO_PYPI = {"pytorch": "torch"}
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


# --- packaging ----------------------------------------------------------------------------------


def test_distribution_name_is_not_the_unrelated_pypi_mollify():
    assert PYPROJECT["project"]["name"] == "mollify-book"


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep["pip"]
            continue
        req = Requirement(dep.replace(" ", ""))
        conda[CONDA_TO_PYPI.get(req.name, req.name)] = req.specifier
    conda.pop("pip")
    python = conda.pop("python")
    assert str(python) == PYPROJECT["project"]["requires-python"]
    declared = {
        (r := Requirement(d)).name: r.specifier for d in PYPROJECT["project"]["dependencies"]
    }
    assert conda == declared, "environment.yml and pyproject.toml list different dependencies"
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    assert pip == [f"-e .[{','.join(sorted(extras))}]"], "environment.yml must install every extra"


def test_book_extra_pins_jupyter_book_1():
    book = [Requirement(d) for d in PYPROJECT["project"]["optional-dependencies"]["book"]]
    jb = next(r for r in book if r.name == "jupyter-book")
    assert "1.0.4.post1" in jb.specifier and "2.0" not in jb.specifier


# --- README and CI ------------------------------------------------------------------------------


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", quick, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_quick_start_has_exactly_two_commands():
    build, test = _readme_commands()
    assert "jupyter-book build ." in build
    assert "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim():
    script = ROOT / ".ci" / "run"
    out = subprocess.run(
        ["bash", str(script), "--print-test-command"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == _readme_commands()[1]
    assert "jupyter-book build . -W -n --keep-going" in script.read_text()


# --- book configuration -------------------------------------------------------------------------


def test_config_has_colab_button_and_executes_nothing_twice():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["execute"]["execute_notebooks"] == "off"
    assert {"sphinx_proof", "sphinx_exercise"} <= set(config["sphinx"]["extra_extensions"])
    macros = config["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]
    assert {"eps", "E", "R"} <= set(macros)


def test_every_notebook_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert f"file: {path.relative_to(ROOT).with_suffix('').as_posix()}" in toc


def test_references_cite_the_three_papers_by_arxiv_id():
    bib = (ROOT / "book" / "references.bib").read_text()
    for arxiv in ("2407.00371", "2311.00531", "2405.11696"):
        assert f"eprint        = {{{arxiv}}}" in bib


# --- committed notebooks ------------------------------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_fully_executed(path):
    """The book renders stored outputs, so every code cell must have run, in order, without error."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), (
        f"{path.name} is not fully executed; run: python scripts/execute_notebooks.py {path}"
    )
    for cell in code:
        assert not [o for o in cell.outputs if o.output_type == "error"], _source(cell)[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_checks_its_key_numbers(path):
    nb = nbformat.read(path, as_version=4)
    checked = [c for c in nb.cells if c.cell_type == "code" and "# NBVAL_CHECK_OUTPUT" in _source(c)]
    assert checked, f"{path.name} marks no cell # NBVAL_CHECK_OUTPUT"
    assert all(c.outputs for c in checked)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_installs_mollify_only_in_colab(path):
    nb = nbformat.read(path, as_version=4)
    first = _source(next(c for c in nb.cells if c.cell_type == "code"))
    assert 'if "google.colab" in sys.modules:' in first
    assert "mollify-book @ git+" in first
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
